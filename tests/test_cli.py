"""The kvmsim command line, run in-process (and once as the installed console script)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kvmsim import study as study_module
from kvmsim.cli import split_target
from kvmsim.demos import DEMOS
from kvmsim.study import Entry, Expectation

from .cli_support import run, write

ROOT = Path(__file__).resolve().parent.parent

HOLDS = """
from kvmsim import Model, Setup, Struct, await_

class Lock(Struct):
    holder: str | None = None
    inside: int = 0

def thread(lock, me):
    await_(lock.holder is None)
    lock.holder = me
    yield "lock"
    lock.inside += 1
    yield "enter"
    lock.inside -= 1
    lock.holder = None
    yield "unlock"

model = Model("good-lock", "test-and-set in one step", expect="holds")

@model.setup
def setup(s: Setup) -> Lock:
    lock = Lock()
    s.actor("A", thread, lock, "A", must_finish=True)
    s.actor("B", thread, lock, "B", must_finish=True)
    return lock

@model.invariant("mutual exclusion", "At most one thread is inside.")
def mutex(lock):
    return lock.inside <= 1
"""

VIOLATES = HOLDS.replace(
    """    await_(lock.holder is None)
    lock.holder = me
    yield "lock\"""",
    """    await_(lock.holder is None)
    yield "test"
    lock.holder = me
    yield "set\"""",
).replace('"good-lock"', '"bad-lock"')

RAISES = """
from kvmsim import Model, Setup, Struct

class W(Struct):
    n: int = 0

def worker(w):
    w.n += 1
    yield "inc"
    w.n = 10 // (w.n - 1)
    yield "divide"

model = Model("crash")

@model.setup
def setup(s: Setup) -> W:
    w = W()
    s.actor("t", worker, w, lane="CPU0")
    return w
"""


def assert_one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kvmsim: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, err)


def expected_exit(expect: str) -> int:
    return 0 if expect == "holds" else 1


# -- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["--help"], ["demo", "--help"], ["check", "--help"], ["study", "--help"]]
)
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 0
    assert "usage: kvmsim" in out
    assert err == ""


def test_top_level_help_names_the_commands_and_exit_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, "--help")
    for word in ("demo", "check", "study", "exit status"):
        assert word in out


def test_check_help_warns_that_loading_runs_code(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "check", "--help")
    text = " ".join(out.split())
    assert "runs its code with your permissions" in text
    assert "Never check a file from a source you do not trust" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("kvmsim ")


def test_no_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2
    assert_one_line_error(err, "no command")


# -- demo -----------------------------------------------------------------------------------


def test_demo_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--list")
    assert code == 0
    for name, model in DEMOS.items():
        assert name in out
        assert model.expect in out


def test_demo_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--list", "--json")
    assert code == 0
    assert [d["name"] for d in json.loads(out)] == list(DEMOS)


@pytest.mark.parametrize("name", list(DEMOS))
def test_each_demo_exits_by_its_verdict(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = run(capsys, "demo", name)
    assert code == expected_exit(DEMOS[name].expect), out + err
    assert "coverage: exhaustive" in out


@pytest.mark.parametrize("name", list(DEMOS))
def test_demo_json_lists_the_violated_properties(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, out, _ = run(capsys, "demo", name, "--json")
    doc = json.loads(out)
    assert doc["format"] == "kvmsim-result/1"
    assert doc["model"] == name
    exp = Expectation.parse(DEMOS[name].expect)
    assert exp is not None
    if exp.holds:
        assert (code, doc["verdict"], doc["violated"]) == (0, "holds", [])
    else:
        assert code == 1
        assert doc["violated"] == [exp.prop]
        assert doc["violations"][0]["trace"]["steps"]
    assert doc["stats"]["states"] > 0


def test_demo_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "broken-lock", "--quiet")
    assert code == 1
    assert "+---" not in out
    assert "verdict: violated: mutual exclusion" in out
    assert err == ""


def test_unknown_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "nope")
    assert code == 2
    assert out == ""
    assert_one_line_error(err, "unknown demo 'nope'", "peterson")


def test_demo_without_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "demo")
    assert code == 2
    assert_one_line_error(err, "--list")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--max-depth", "-1"], ["--max-depth", "-1"]),
        (["--max-depth", "two"], ["--max-depth", "two"]),
        (["--max-states", "0"], ["--max-states"]),
        (["--mode", "sideways"], ["--mode", "sideways"]),
        (["--runs", "5"], ["--runs", "random"]),
        (["--mode", "random", "--runs", "0"], ["--runs"]),
        (["--frobnicate"], ["--frobnicate"]),
    ],
)
def test_bad_options(capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]) -> None:
    code, out, err = run(capsys, "demo", "peterson", *argv)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, *words)


def test_bounded_runs_do_not_print_a_bare_holds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "peterson", "--max-depth", "4")
    assert code == 0
    assert "verdict: holds, bounded (depth 4)" in out
    assert "coverage: bounded (depth 4)" in out
    code, out, _ = run(capsys, "demo", "peterson", "--mode", "random", "--runs", "3", "--seed", "7")
    assert code == 0
    assert "verdict: holds, bounded (3 random runs" in out
    code, out, _ = run(capsys, "demo", "peterson", "--max-states", "10", "--json")
    assert json.loads(out)["verdict"] == "holds, bounded (10 states)"


def test_dfs_and_stop_at_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "broken-lock", "--mode", "dfs", "--stop-at-first")
    assert code == 1
    assert "verdict: violated: mutual exclusion" in out


# -- check FILE -------------------------------------------------------------------------------


def test_check_a_model_that_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "good.py", HOLDS)
    code, out, err = run(capsys, "check", path)
    assert code == 0, err
    assert "good-lock" in out
    assert "verdict: holds" in out
    assert "coverage: exhaustive" in out


def test_check_a_model_that_violates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.py", VIOLATES)
    code, out, err = run(capsys, "check", path)
    assert code == 1, err
    assert "counterexample 1 of 1: mutual exclusion (invariant)" in out
    assert "inside: 1→2" in out
    assert "At most one thread is inside." in out
    code, out, _ = run(capsys, "check", path, "--json")
    assert json.loads(out)["violated"] == ["mutual exclusion"]


def test_a_crash_inside_a_step_is_a_counterexample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "crash.py", RAISES)
    code, out, err = run(capsys, "check", path)
    assert code == 1
    assert "Traceback" not in out + err
    assert "✗ error: ZeroDivisionError" in out
    assert "crash.py:10" in out
    code, out, _ = run(capsys, "check", path, "--json")
    doc = json.loads(out)
    (violation,) = doc["violations"]
    assert violation["kind"] == "error"
    assert [s["label"] for s in violation["trace"]["steps"]] == ["inc", "error"]
    assert "ZeroDivisionError" in violation["message"]


def test_syntax_error_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "broken.py", "from kvmsim import Model\nx = 1\ndef f(:\n    pass\n")
    code, out, err = run(capsys, "check", path)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, f"{path}:3:", "syntax error")


def test_import_failure_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "imports.py", "import os\n\nimport no_such_module_anywhere\n")
    code, _, err = run(capsys, "check", path)
    assert code == 2
    assert_one_line_error(err, f"{path}:3:", "ModuleNotFoundError", "no_such_module_anywhere")


def test_a_file_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "empty.py", "x = 1\n")
    code, _, err = run(capsys, "check", path)
    assert code == 2
    assert_one_line_error(err, path, "no kvmsim Model")


def test_two_models_need_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = HOLDS + "\nother = Model('other-model')\n"
    path = write(tmp_path, "two.py", source)
    code, _, err = run(capsys, "check", path)
    assert code == 2
    assert_one_line_error(err, "2 models", "model", "other", f"{path}:NAME")
    # by variable name, then by the model's own name
    code, out, _ = run(capsys, "check", f"{path}:model")
    assert code == 0
    assert "good-lock" in out
    code, out, _ = run(capsys, "check", f"{path}:good-lock", "--quiet")
    assert code == 0
    code, _, err = run(capsys, "check", f"{path}:nothing")
    assert code == 2
    assert_one_line_error(err, "no model named 'nothing'")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "absent.py"))
    assert code == 2
    assert_one_line_error(err, "no such file", "absent.py")


def test_check_without_a_file_checks_the_kvm_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--scenario", "migrate", "--quiet")
    assert code == 0
    assert "v6.5 / migrate" in out  # more in test_cli_kvm.py


@pytest.mark.parametrize(
    "source, words",
    [
        (
            """
            from kvmsim import Model
            m = Model("no-setup")
            """,
            ["'no-setup'", "no setup"],
        ),
        (
            """
            from kvmsim import Model
            m = Model("setup-raises")
            @m.setup
            def setup(s):
                return {}["missing"]
            """,
            ["'setup-raises'", "KeyError", "model.py:6"],
        ),
        (
            """
            from kvmsim import Model, Struct
            class W(Struct):
                n: int = 0
            def actor(w):
                try:
                    yield "a"
                finally:
                    pass
            m = Model("uncompilable")
            @m.setup
            def setup(s):
                w = W()
                s.actor("a", actor, w)
                return w
            """,
            ["'uncompilable'", "try"],
        ),
        (
            """
            from kvmsim import Model, Struct
            class W(Struct):
                n: int = 0
            def actor(w):
                w.n += 1
                yield "a"
            m = Model("bad-invariant")
            @m.setup
            def setup(s):
                w = W()
                s.actor("a", actor, w)
                return w
            @m.invariant("divides")
            def divides(w):
                return 1 // w.n
            """,
            ["'bad-invariant'", "ZeroDivisionError", "model.py:16"],
        ),
    ],
)
def test_broken_models_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, words: list[str]
) -> None:
    path = write(tmp_path, "model.py", source)
    code, out, err = run(capsys, "check", path)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, *words)


def test_model_file_can_import_its_neighbours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "helpers_for_kvmsim_test.py", "LIMIT = 1\n")
    source = HOLDS.replace("return lock.inside <= 1", "return lock.inside <= LIMIT")
    path = write(tmp_path, "main.py", "from helpers_for_kvmsim_test import LIMIT\n" + source)
    code, _, err = run(capsys, "check", path)
    assert code == 0, err
    assert str(tmp_path) not in sys.path


def test_split_target() -> None:
    assert split_target("models/a.py:naive") == ("models/a.py", "naive")
    assert split_target("a.py") == ("a.py", None)
    assert split_target("a.py:") == ("a.py:", None)


# -- interruption -----------------------------------------------------------------------------

INTERRUPTED = """
from kvmsim import Model, Setup, Struct

class W(Struct):
    n: int = 0
    bad: int = 0

def counter(w):
    while True:
        if w.n >= 3:
            raise KeyboardInterrupt  # as if Ctrl-C were pressed here
        w.n += 1
        yield "count"

def breaker(w):
    w.bad += 1
    yield "break"

model = Model("interrupted")

@model.setup
def setup(s: Setup) -> W:
    w = W()
    s.actor("c", counter, w)
    if VIOLATE:
        s.actor("b", breaker, w)
    return w

@model.invariant("never broken")
def fine(w):
    return w.bad == 0
"""


@pytest.mark.parametrize("violate", [False, True])
def test_ctrl_c_reports_what_was_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], violate: bool
) -> None:
    path = write(tmp_path, "intr.py", f"VIOLATE = {violate}\n" + INTERRUPTED)
    code, out, err = run(capsys, "check", path)
    assert "coverage: incomplete (interrupted)" in out
    if violate:
        assert code == 1
        assert "verdict: violated: never broken" in out
    else:
        assert code == 2
        assert "verdict: holds, incomplete (interrupted)" in out
        assert err.strip() == "kvmsim: interrupted: incomplete"


# -- demo --all: the textbook models against their expected verdicts -----------------------


def test_study_writes_markdown_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "study"
    code, out, err = run(capsys, "demo", "--all", "--out", str(out_dir))
    assert code == 0, out + err
    for name in DEMOS:
        assert name in out
    md = (out_dir / "study.md").read_text()
    assert "| model | expected | verdict | states | transitions | seconds | match |" in md
    doc = json.loads((out_dir / "study.json").read_text())
    assert doc["format"] == "kvmsim-study/1"
    assert doc["all_matched"] is True
    rows = {row["model"]: row for row in doc["models"]}
    assert list(rows) == list(DEMOS)
    for name, model in DEMOS.items():
        exp = Expectation.parse(model.expect)
        assert exp is not None
        assert rows[name]["violated"] == ([] if exp.holds else [exp.prop])
        assert rows[name]["matched"] is True
        assert rows[name]["stats"]["states"] > 0


def test_study_json_on_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--all", "--out", str(tmp_path), "--json")
    assert code == 0
    assert json.loads(out)["models"][0]["model"] == "peterson"


def test_study_mismatch_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def models() -> list[Entry]:
        wrong = DEMOS["peterson"]
        bad = type(wrong)(wrong.name, wrong.description, "violates: mutual exclusion")
        bad._setup, bad.properties = wrong._setup, wrong.properties
        return [Entry(DEMOS["broken-lock"]), Entry(bad)]

    monkeypatch.setattr(study_module, "study_models", models)
    code, out, _ = run(capsys, "demo", "--all", "--out", str(tmp_path))
    assert code == 1
    assert "did not match the expected verdict: peterson" in out
    doc = json.loads((tmp_path / "study.json").read_text())
    assert [row["matched"] for row in doc["models"]] == [True, False]


def test_study_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "demo", "--all", "--out", str(blocker / "sub"))
    assert code == 2
    assert_one_line_error(err, "cannot create")


@pytest.mark.parametrize(
    "expect, parsed",
    [
        ("holds", Expectation(True)),
        ("violates: deadlock (3 steps)", Expectation(False, "deadlock", 3)),
        (
            "violates: progress: spinner (a lasso)",
            Expectation(False, "progress: spinner", None, True),
        ),
        ("violates: no lost update", Expectation(False, "no lost update")),
        ("maybe", None),
    ],
)
def test_expectations(expect: str, parsed: Expectation | None) -> None:
    assert Expectation.parse(expect) == parsed


# -- documentation stays true ------------------------------------------------------------------


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/writing-a-model.md"])
def test_documented_example_checks_as_documented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: str
) -> None:
    blocks = [b for b in _python_blocks(ROOT / doc) if "Model(" in b]
    assert blocks, f"{doc} has no example model"
    path = write(tmp_path, "reload.py", blocks[0])
    assert run(capsys, "check", f"{path}:retrying")[0] == 0
    code, out, _ = run(capsys, "check", f"{path}:naive")
    assert code == 1
    assert "verdict: violated: fresh mapping" in out


# -- the installed command ---------------------------------------------------------------------


def _console_script() -> str:
    here = Path(sys.executable).parent / "kvmsim"
    found = str(here) if here.exists() else shutil.which("kvmsim")
    assert found, "the kvmsim console script is not installed (pip install -e '.[test]')"
    return found


def test_installed_console_script_help() -> None:
    proc = subprocess.run(
        [_console_script(), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: kvmsim" in proc.stdout


def test_installed_console_script_exit_status_and_plain_output(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "30"}
    proc = subprocess.run(
        [_console_script(), "demo", "broken-lock"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert "\x1b[" not in proc.stdout
    assert "| 6 |" in proc.stdout
    bad = subprocess.run(
        [_console_script(), "check", str(tmp_path / "nope.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1


def test_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kvmsim", "demo", "peterson", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verdict: holds" in proc.stdout
