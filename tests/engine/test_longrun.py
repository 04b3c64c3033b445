"""Long runs: memory limits (stop or degrade), checkpoints, and resuming to the same answer."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from kvmsim.demos import DEMOS
from kvmsim.engine import Model, Options, Progress, Result, check, memory
from kvmsim.engine import checkpoint as ck
from kvmsim.engine.memory import describe_size, parse_size
from kvmsim.machine import build_model
from kvmsim.scenarios import SCENARIOS
from kvmsim.variants import get_variant

from .bench import counters
from .test_store import comparable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))
from mutants import no_wait  # noqa: E402


class StopAfter:
    """A progress display that presses Ctrl-C once n states are found (the test hook)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, p: Progress) -> None:
        if p.states >= self.n:
            raise KeyboardInterrupt


def interrupted_then_resumed(model: Model, n: int, directory: Path, **options: Any) -> Result:
    first = check(
        model,
        Options(
            progress=StopAfter(n), progress_interval=0, checkpoint_dir=str(directory), **options
        ),
    )
    assert first.interrupted and first.verdict != "holds"
    assert (directory / ck.FILENAME).exists()
    resumed = check(
        model, Options(resume_from=str(directory), checkpoint_dir=str(directory), **options)
    )
    assert not (directory / ck.FILENAME).exists()  # a finished search leaves none behind
    return resumed


# -- checkpoint and resume --------------------------------------------------------------------

CASES = [
    ("counters", lambda: counters(3, 2), {}),
    ("counters-fingerprints", lambda: counters(3, 2), {"store": "fingerprint"}),
    ("philosophers", lambda: DEMOS["philosophers"], {}),
    ("kvm-mutant", lambda: build_model(no_wait, SCENARIOS["migrate"]), {}),
    ("kvm-mutant-fp", lambda: build_model(no_wait, SCENARIOS["migrate"]), {"liveness": False}),
    (
        "kvm-mutant-first",
        lambda: build_model(no_wait, SCENARIOS["migrate"]),
        {"stop_at_first": True},
    ),
]


@pytest.mark.parametrize(("name", "make", "options"), CASES, ids=[c[0] for c in CASES])
def test_resumed_search_ends_as_an_uninterrupted_one(
    name: str, make: Any, options: dict[str, Any], tmp_path: Path
) -> None:
    model = make()
    if name == "kvm-mutant-fp":
        options = dict(options, store="fingerprint")
    whole = check(model, Options(**options))
    points = [n for n in (3, 40, 400, 2000) if n < whole.stats.states - 5]
    for n in points:
        resumed = interrupted_then_resumed(model, n, tmp_path / str(n), **options)
        assert comparable(resumed) == comparable(whole), n
        assert resumed.collision_probability == whole.collision_probability
    if "kvm" in name:
        assert whole.violations and len(points) >= 2


def test_resume_twice(tmp_path: Path) -> None:
    model = counters(3, 2)
    whole = check(model)
    first = check(
        model, Options(progress=StopAfter(100), progress_interval=0, checkpoint_dir=str(tmp_path))
    )
    second = check(
        model,
        Options(
            progress=StopAfter(900),
            progress_interval=0,
            resume_from=str(tmp_path),
            checkpoint_dir=str(tmp_path),
        ),
    )
    assert first.interrupted and second.interrupted and second.stats.states >= 900
    third = check(model, Options(resume_from=str(tmp_path), checkpoint_dir=str(tmp_path)))
    assert comparable(third) == comparable(whole)


def test_a_signal_is_acted_on_between_two_states(tmp_path: Path) -> None:
    """SIGINT (and SIGTERM) during a checkpointing search: noted, then a checkpoint and a stop
    at the next state boundary."""

    def send(p: Progress) -> None:
        if p.states >= 200:
            os.kill(os.getpid(), signal.SIGTERM)

    model = counters(3, 2)
    result = check(model, Options(progress=send, progress_interval=0, checkpoint_dir=str(tmp_path)))
    assert result.interrupted
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back
    resumed = check(model, Options(resume_from=str(tmp_path), checkpoint_dir=str(tmp_path)))
    assert comparable(resumed) == comparable(check(model))


def test_checkpoints_at_an_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real = ck.write

    def counting(directory: str, header: dict[str, Any], payload: dict[str, Any]) -> str:
        writes.append(header["progress"]["states"])
        return real(directory, header, payload)

    monkeypatch.setattr(ck, "write", counting)
    small = counters(2, 2)
    states = check(small, Options(checkpoint_dir=str(tmp_path), checkpoint_every=1e-9)).stats.states
    assert len(writes) > states / 2 and writes == sorted(writes)
    writes.clear()
    check(small, Options(checkpoint_dir=str(tmp_path), checkpoint_every=3600))
    assert writes == []


def test_a_crash_while_writing_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = counters(3, 2)
    check(
        model, Options(progress=StopAfter(100), progress_interval=0, checkpoint_dir=str(tmp_path))
    )
    before = (tmp_path / ck.FILENAME).read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        ck.write(str(tmp_path), {"x": 1}, {"y": 2})
    monkeypatch.undo()
    assert (tmp_path / ck.FILENAME).read_bytes() == before
    resumed = check(model, Options(resume_from=str(tmp_path), checkpoint_dir=str(tmp_path)))
    assert comparable(resumed) == comparable(check(model))


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ck.CheckpointError, match="no checkpoint"):
        ck.read(str(tmp_path))
    ck.write(str(tmp_path), {"kvmsim": "x"}, {"a": 1})
    path = tmp_path / ck.FILENAME
    good = path.read_bytes()
    assert ck.read(str(tmp_path))[1] == {"a": 1}
    path.write_bytes(good[:-3] + bytes(3))
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.read(str(tmp_path))
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.read(str(tmp_path))
    path.write_bytes(b"something else\n{}\n")
    with pytest.raises(ck.CheckpointError, match="not a kvmsim checkpoint"):
        ck.read(str(tmp_path))
    path.write_bytes(ck.MAGIC + b'{"format": "kvmsim-checkpoint/0"}\n')
    with pytest.raises(ck.CheckpointError, match="format"):
        ck.read_header(str(tmp_path))


# -- memory limits ----------------------------------------------------------------------------


class FakeMeter:
    """Resident memory as a function of the states found: deterministic, unlike the
    process's own (which other tests in the same process have grown)."""

    def __init__(self, per_state: int, after_switch: int | None = None) -> None:
        self.per_state = per_state
        self.after_switch = after_switch
        self.states = 0
        self.switched_at: int | None = None

    def __call__(self) -> int:
        if self.switched_at is not None and self.after_switch is not None:
            return self.switched_at * self.after_switch + self.states * self.after_switch
        return self.states * self.per_state


def metered(monkeypatch: pytest.MonkeyPatch, meter: FakeMeter) -> None:
    monkeypatch.setattr(memory, "resident_bytes", meter)
    real = memory.MemoryGuard.check

    def check_with(self: memory.MemoryGuard, extra: int = 0) -> str:
        action = real(self, extra)
        if action == "degrade":
            meter.switched_at = meter.states
        return action

    monkeypatch.setattr(memory.MemoryGuard, "check", check_with)


def progress_into(meter: FakeMeter) -> Any:
    def update(p: Progress) -> None:
        meter.states = p.states

    return update


def test_a_memory_limited_search_is_incomplete_and_never_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = counters(3, 3)
    whole = check(model)
    meter = FakeMeter(per_state=1000)
    metered(monkeypatch, meter)
    limit = 3000 * 1000
    result = check(
        model, Options(max_memory=limit, progress=progress_into(meter), progress_interval=0)
    )
    assert result.incomplete.startswith("memory limit")
    assert result.coverage.startswith("incomplete (memory limit")
    assert result.verdict.startswith("holds, incomplete") and not result.complete
    assert not result.as_dict()["exhaustive"] and result.as_dict()["incomplete"]
    assert 1000 < result.stats.states < 3000 < whole.stats.states
    assert any("stopped at the memory limit" in n for n in result.notes)
    # a bug found before the limit is still reported: violated, with its counterexample
    bad = check(
        DEMOS["philosophers"],
        Options(max_memory=10**12, progress=progress_into(meter), progress_interval=0),
    )
    assert bad.violated() == check(DEMOS["philosophers"]).violated()


def test_degrade_switches_to_fingerprints_and_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    model = counters(3, 3)
    whole = check(model)
    meter = FakeMeter(per_state=1000, after_switch=100)
    metered(monkeypatch, meter)
    options = Options(
        max_memory=3000 * 1000, degrade=True, progress=progress_into(meter), progress_interval=0
    )
    result = check(model, options)
    assert comparable(result) == comparable(whole)
    assert result.verdict == "holds" and result.collision_probability is not None
    assert any("switched from the full store to 64-bit fingerprints" in n for n in result.notes)
    # after the switch the limit still holds: a second time, the search stops
    meter2 = FakeMeter(per_state=1000, after_switch=1000)
    metered(monkeypatch, meter2)
    stopped = check(
        model,
        Options(
            max_memory=3000 * 1000,
            degrade=True,
            progress=progress_into(meter2),
            progress_interval=0,
        ),
    )
    assert stopped.incomplete and stopped.verdict.startswith("holds, incomplete")


def test_degrade_drops_the_liveness_check_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model(get_variant("v6.5"), SCENARIOS["migrate"])
    meter = FakeMeter(per_state=1000, after_switch=10)
    metered(monkeypatch, meter)
    result = check(
        model,
        Options(
            max_memory=1500 * 1000, degrade=True, progress=progress_into(meter), progress_interval=0
        ),
    )
    assert result.caveat.startswith("progress of must-finish actors not checked")
    assert result.verdict == f"holds, exhaustive ({result.caveat})"
    assert result.stats.states == check(model).stats.states


def test_sizes() -> None:
    assert parse_size("2G") == 2 << 30 and parse_size("500M") == 500 << 20
    assert parse_size("1.5g") == 3 << 29 and parse_size("750MB") == 750 << 20
    assert parse_size("4096") == 4096 and parse_size("64KiB") == 64 << 10
    for bad in ("", "lots", "2X", "-1G", "0"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    assert describe_size(3 << 29) == "1.5 GB"


@pytest.mark.parametrize("store", ["full", "fingerprint"])
def test_resume_from_the_last_of_many_checkpoints(tmp_path: Path, store: str) -> None:
    """Checkpoints after every state (the full store's are written incrementally)."""
    model = counters(3, 2)
    first = check(
        model,
        Options(
            store=store,
            progress=StopAfter(300),
            progress_interval=0,
            checkpoint_dir=str(tmp_path),
            checkpoint_every=1e-9,
        ),
    )
    assert first.interrupted
    resumed = check(
        model, Options(store=store, resume_from=str(tmp_path), checkpoint_dir=str(tmp_path))
    )
    assert comparable(resumed) == comparable(check(model, Options(store=store)))


def test_a_search_stopped_by_the_memory_limit_resumes_with_more(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = counters(3, 3)
    whole = check(model)
    meter = FakeMeter(per_state=1000)
    metered(monkeypatch, meter)
    stopped = check(
        model,
        Options(
            max_memory=3000 * 1000,
            progress=progress_into(meter),
            progress_interval=0,
            checkpoint_dir=str(tmp_path),
        ),
    )
    assert stopped.incomplete and (tmp_path / ck.FILENAME).exists()
    monkeypatch.undo()
    resumed = check(model, Options(resume_from=str(tmp_path), checkpoint_dir=str(tmp_path)))
    assert comparable(resumed) == comparable(whole) and resumed.verdict == "holds"
