"""The terminal report: timeline layout, state changes, lassos, verdict and statistics."""

from __future__ import annotations

import json
import re
from collections.abc import Generator

import pytest

from kvmsim import Model, Options, Setup, Struct, check, choose
from kvmsim.demos import DEMOS
from kvmsim.engine import Result, Stats, fail, note
from kvmsim.report import FORMAT, render_result, result_document
from kvmsim.report.json import dumps
from kvmsim.report.text import stats_line, verdict_text

Steps = Generator[str, None, None]
ANSI = re.compile(r"\x1b\[")


class Box(Struct):
    value: int = 0
    flushes: int = 0


def chooser(b: Box) -> Steps:
    b.value = choose((1, 2), "value")
    yield "pick a value"
    if b.value == 2:
        note("tlb flush")
        b.flushes += 1
    yield "maybe flush"


def checker(b: Box) -> Steps:
    if b.flushes:
        fail("never flushed", f"{b.flushes} flush seen")
    yield "look"


def _box_model() -> Model:
    model = Model("box", "choices, cost events and an event property")

    @model.setup
    def setup(s: Setup) -> Box:
        b = Box()
        s.actor("picker", chooser, b, lane="CPU0")
        s.actor("looker", checker, b, lane="CPU0")
        return b

    return model


def text(name: str, **kw: object) -> str:
    model = DEMOS[name]
    return render_result(check(model), model, **kw)  # type: ignore[arg-type]


def test_broken_lock_timeline_has_a_column_per_lane_and_a_row_per_step() -> None:
    out = text("broken-lock")
    header = next(line for line in out.splitlines() if "T0" in line and "#" in line)
    assert header.index("T0") < header.index("T1")
    rows = [line for line in out.splitlines() if re.match(r"\| +\d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert "broken_lock_thread" in out  # the function (top of the call stack)
    assert "set: lock = true" in out  # the step's label
    assert "locked: False→True" in out  # what changed
    assert "in_critical: 1→2" in out


def test_unchanged_state_is_hidden() -> None:
    out = text("broken-lock")
    first_row = out.split("test: lock is free")[0]
    assert "→" not in first_row
    assert "locked: True→True" not in out


def test_violated_property_comes_last_with_its_meaning() -> None:
    out = text("broken-lock")
    table_end = out.rindex("+---")
    prop = out.index("✗ mutual exclusion")
    assert prop > table_end
    assert "At most one thread is in its critical section." in out[prop:]
    assert out.index("verdict: violated: mutual exclusion") > prop


def test_lasso_marks_the_loop() -> None:
    out = text("retry-starved")
    assert "── loop ──" in out
    assert "repeat forever" in out
    assert "1-step prefix then a 1-step loop" in out
    assert "weak fairness" in out  # the meaning of a progress violation


def test_deadlock_explains_itself() -> None:
    out = text("philosophers")
    assert "✗ deadlock: no actor can move" in out
    assert "No actor can take a step" in out


def test_choices_events_and_shared_lanes() -> None:
    model = _box_model()
    result = check(model)
    assert result.violated() == ["never flushed"]
    out = render_result(result, model)
    assert "chose value=2" in out
    assert "cost: tlb flush" in out
    assert "flushes: 0→1" in out
    assert "picker: chooser" in out  # actor named when it is not its lane's name
    assert "looker: checker" in out
    assert "✗ 1 flush seen" in out
    # both actors share CPU0: one lane column
    header = next(line for line in out.splitlines() if "CPU0" in line)
    assert header.count("|") == 3


def test_holds_prints_verdict_and_exhaustive_statistics() -> None:
    out = text("peterson")
    assert "verdict: holds, exhaustive\n" in out
    stats = out.strip().splitlines()[-1]
    for word in ("distinct states", "transitions", "max depth", "states/s", "peak memory"):
        assert word in stats
    assert stats.endswith("coverage: exhaustive")


def test_bounded_run_never_says_a_bare_holds() -> None:
    model = DEMOS["peterson"]
    result = check(model, Options(max_depth=3))
    out = render_result(result, model)
    assert "verdict: holds, bounded (depth 3)" in out
    assert "verdict: holds\n" not in out
    assert "coverage: bounded (depth 3)" in out


def test_interrupted_run_is_incomplete() -> None:
    result = Result("m", "bfs", Stats(states=5), interrupted=True)
    assert "holds, incomplete (interrupted)" in verdict_text(result).plain
    assert "coverage: incomplete (interrupted)" in stats_line(result)


def test_plain_output_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    narrow = text("philosophers")
    monkeypatch.setenv("COLUMNS", "400")
    wide = text("philosophers")
    strip = re.compile(r"[\d,.]+ states/s|peak memory [\d,.]+ MB|[\d.]+ s;")
    assert strip.sub("", narrow) == strip.sub("", wide)
    assert not ANSI.search(narrow)
    assert "forks: (None, None, None)→(0, None, None)" in narrow  # no wrapping


def test_colour_output_uses_ansi() -> None:
    assert ANSI.search(text("broken-lock", color=True))


def test_quiet_gives_one_line_per_counterexample() -> None:
    out = text("broken-lock", quiet=True)
    assert "+---" not in out
    assert "✗ mutual exclusion (invariant), 6 steps" in out


def test_error_step_shows_the_exception_and_where() -> None:
    model = Model("crash")

    class W(Struct):
        n: int = 0

    def crasher(w: W) -> Steps:
        w.n = 1 // w.n
        yield "divide"

    @model.setup
    def setup(s: Setup) -> W:
        w = W()
        s.actor("t", crasher, w)
        return w

    result = check(model)
    assert [v.kind for v in result.violations] == ["error"]
    out = render_result(result, model)
    assert "✗ error: ZeroDivisionError" in out
    assert "test_text.py:" in out


def test_json_document_is_versioned_and_carries_the_trace() -> None:
    model = DEMOS["broken-lock"]
    result = check(model)
    doc = json.loads(dumps(result_document(result, model, Options())))
    assert doc["format"] == FORMAT == "kvmsim-result/1"
    assert doc["violated"] == ["mutual exclusion"]
    assert doc["expect"] == model.expect
    assert doc["options"]["mode"] == "bfs"
    steps = doc["violations"][0]["trace"]["steps"]
    assert len(steps) == 6
    assert steps[2]["changes"] == [{"var": "locked", "before": False, "after": True}]
    assert re.search(r"demos\.py:\d+$", steps[0]["line"])
