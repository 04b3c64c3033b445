"""The pytest plugin: a kernel developer's tests run in a sub-pytest (pytester)."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import kvmsim

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(kvmsim.__file__).resolve().parent.parent
MUTANTS = Path(__file__).resolve().parent / "kernel" / "mutants.py"

LOCKS = """
from kvmsim import Model, Setup, Struct, await_

class Lock(Struct):
    holder: str | None = None
    inside: int = 0

def thread(lock, me, atomic):
    await_(lock.holder is None)
    if atomic:
        lock.holder = me  # test and set in one step
    yield "test"
    lock.holder = me
    lock.inside += 1
    yield "enter"
    lock.inside -= 1
    lock.holder = None
    yield "unlock"

def make(name, atomic):
    model = Model(name)

    @model.setup
    def setup(s: Setup) -> Lock:
        lock = Lock()
        s.actor("A", thread, lock, "A", atomic)
        s.actor("B", thread, lock, "B", atomic)
        return lock

    @model.invariant("mutual exclusion", "At most one thread is inside.")
    def mutex(lock):
        return lock.inside <= 1

    return model

good = make("good", True)
bad = make("bad", False)
"""

TESTS = """
def test_patch_holds(kvmsim):
    kvmsim.check("patch.py:fix", scenario="migrate").holds()

def test_mutant_holds(kvmsim):
    kvmsim.check("mutants.py:no_late_check", scenario="migrate").holds()

def test_mutant_violates(kvmsim):
    checked = kvmsim.check("mutants.py:no_late_check", scenario="migrate").violates("INV-REQ")
    assert "INV-REQ" in checked.violated and checked.states > 0

def test_model_holds(kvmsim):
    kvmsim.check("models/locks.py:good").holds()

def test_model_expected_to_break(kvmsim):
    kvmsim.check("models/locks.py:good").violates("mutual exclusion")

def test_bad_model(kvmsim):
    kvmsim.check("models/locks.py:bad").holds()

def test_broken_file(kvmsim):
    kvmsim.check("models/broken.py").holds()
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A kernel developer's test folder: a patch, a mutant, models, and tests using them."""
    monkeypatch.setenv("PYTHONPATH", str(SRC))  # this checkout's kvmsim in the sub-pytest
    pytester.makepyfile(
        patch="from kvmsim.variants import Variant\n\nfix = Variant('fix', base='v6.5')\n"
    )
    shutil.copy(MUTANTS, pytester.path / "mutants.py")
    models = pytester.mkpydir("models")
    (models / "locks.py").write_text(LOCKS)
    (models / "broken.py").write_text("x = 1\ndef f(:\n")
    return pytester


def plugin_args() -> list[str]:
    """-p the plugin unless the installed kvmsim already registers it (entry point)."""
    installed = any(ep.name == "kvmsim" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "kvmsim.pytest_plugin"]


def test_the_fixture_checks_and_shows_the_timeline(project: pytest.Pytester) -> None:
    project.makepyfile(test_patch=TESTS)
    result = project.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=3, failed=4)
    out = result.stdout.str()
    for name in ("test_patch_holds", "test_mutant_violates", "test_model_holds"):
        assert f"PASSED test_patch.py::{name}" in out
    # the mutant's counterexample, drawn per CPU as kvmsim check draws it
    result.stdout.fnmatch_lines(
        [
            "*CheckFailed: violated: INV-REQ*",
            "*counterexample 1 of 4: INV-REQ*",
            "*| # | CPU0 *",
            "*replay: kvmsim replay kvmsim1:*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*CheckFailed: expected a violation of mutual exclusion, but every property holds*",
        ]
    )
    result.stdout.fnmatch_lines(["*counterexample 1 of 1: mutual exclusion*", "*| # | *"])
    result.stdout.fnmatch_lines(["*BadInput: *models/broken.py:2: syntax error*"])


def test_relative_paths_are_relative_to_the_test_file(project: pytest.Pytester) -> None:
    sub = project.mkdir("deeper")
    (sub / "test_here.py").write_text(
        "def test_here(kvmsim):\n"
        "    kvmsim.check('../models/locks.py:bad').violates()\n"
        "    kvmsim.check('v6.5', scenario='migrate').holds()\n"
    )
    result = project.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "deeper")
    result.assert_outcomes(passed=1)


def test_the_plugin_imports_nothing_of_kvmsim_at_start_up() -> None:
    code = (
        "import sys, kvmsim.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith('kvmsim')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
    ).stdout
    assert out.strip() == "['kvmsim', 'kvmsim.pytest_plugin']"


def test_the_entry_point_is_declared() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {"kvmsim": "kvmsim.pytest_plugin"}
