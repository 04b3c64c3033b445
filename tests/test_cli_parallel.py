"""``kvmsim check --workers N``, ``--swarm N`` and ``--ray`` on the command line: results,
errors as one process reports them, bad option combinations, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .cli_support import counters_source, run, write

BROKEN_LOCK = """
from kvmsim import Model, Setup, Struct


class Lock(Struct):
    locked: bool = False
    inside: int = 0


def thread(lock):
    while True:
        if not lock.locked:
            yield "saw it free"
            lock.locked = True
            lock.inside += 1
            yield "enter"
            lock.inside -= 1
            lock.locked = False
            yield "leave"
        else:
            yield "spin"


model = Model("file-lock")


@model.setup
def setup(s: Setup) -> Lock:
    lock = Lock()
    s.actor("t0", thread, lock)
    s.actor("t1", thread, lock)
    return lock


@model.invariant("mutual exclusion")
def mutex(lock):
    return lock.inside <= 1


@model.invariant("raises past three")
def raises(lock):
    if {raise_it}:
        return 1 // (lock.inside - 2) != 5
    return True
"""


def test_workers_give_the_same_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "lock.py", BROKEN_LOCK.replace("{raise_it}", "False"))
    code1, out1, _ = run(capsys, "check", path, "--json")
    code2, out2, _ = run(capsys, "check", path, "--json", "--workers", "2")
    one, two = json.loads(out1), json.loads(out2)
    assert code1 == code2 == 1
    for key in ("verdict", "violated", "coverage"):
        assert one[key] == two[key]
    for k in ("states", "transitions", "max_depth"):
        assert one["stats"][k] == two["stats"][k]
    assert [v["length"] for v in one["violations"]] == [v["length"] for v in two["violations"]]
    assert two["options"]["workers"] == 2


def test_a_raising_invariant_is_the_same_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "raising.py", BROKEN_LOCK.replace("{raise_it}", "True"))
    code1, _, err1 = run(capsys, "check", path)
    code2, _, err2 = run(capsys, "check", path, "--workers", "2")
    code3, _, err3 = run(capsys, "check", path, "--swarm", "2", "--runs", "5")
    assert code1 == code2 == code3 == 2
    assert err1 == err2 == err3
    assert err1.count("\n") == 1 and "ZeroDivisionError" in err1


def test_kvm_check_with_workers(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("check", "--variant", "v4.15", "--scenario", "migrate", "--quiet")
    code, out, _ = run(capsys, *argv, "--workers", "2", "--no-liveness")
    assert code == 1
    assert "INV-APIC" in out and "2 workers" in out
    code, out, _ = run(capsys, *argv, "--workers", "2")
    assert code == 1
    assert "INV-APIC" in out and "2 workers" in out and "liveness off" not in out


def test_swarm_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "broken-lock", "--swarm", "2", "--runs", "40", "--quiet")
    assert code == 1
    assert "found by run" in out and "--mode random --runs 1 --seed" in out
    code, out, _ = run(
        capsys, "demo", "peterson", "--mode", "swarm", "--workers", "2", "--time", "0.5", "--json"
    )
    doc = json.loads(out)
    assert code == 0 and doc["mode"] == "swarm" and doc["stats"]["runs"] > 0
    assert doc["options"]["time_budget"] == 0.5


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--swarm", "2", "--mode", "dfs"], "--swarm N is --mode swarm"),
        (["--time", "5"], "--time applies only to --mode swarm"),
        (["--workers", "2", "--mode", "random"], "--workers applies to --mode bfs and swarm"),
        (["--workers", "2", "--runs", "3"], "--runs and --seed apply only"),
        (["--swarm", "2", "--max-states", "9"], "--max-states does not apply"),
        (["--swarm", "2", "--time", "0"], "must be more than 0"),
        (["--workers", "0"], "must be at least 1"),
    ],
)
def test_bad_combinations(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, _, err = run(capsys, "demo", "peterson", *argv)
    assert code == 2
    assert err.count("\n") == 1 and words in err


def test_ray_missing_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    code, _, err = run(capsys, "demo", "peterson", "--ray")
    assert code == 2 and "pip install 'kvmsim[ray]'" in err and err.count("\n") == 1


# -- Ctrl-C -------------------------------------------------------------------------------------


def interrupt_after(argv: list[str], seconds: float) -> tuple[int, str, str, float]:
    """Run kvmsim in its own process group, Ctrl-C the whole group (as a terminal does)
    after ``seconds``; (status, stdout, stderr, seconds it took to stop). Fails if any
    process of the group (a worker) is still there afterwards."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvmsim", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env=env,
    )
    time.sleep(seconds)
    assert proc.poll() is None, "finished before the interrupt: make the search longer"
    os.killpg(proc.pid, signal.SIGINT)
    began = time.perf_counter()
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("kvmsim did not stop after Ctrl-C") from None
    took = time.perf_counter() - began
    for _ in range(50):  # workers are gone with their parent
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("a worker outlived kvmsim")
    return proc.returncode, out, err, took


def test_ctrl_c_stops_the_partitioned_search(tmp_path: Path) -> None:
    path = write(tmp_path, "counters.py", counters_source(4, 8, name="big-counters"))
    code, out, err, took = interrupt_after(["check", path, "--workers", "2", "--quiet"], 4.0)
    assert code == 2, (out, err)
    assert "interrupted" in err and "incomplete (interrupted)" in out
    assert took < 20


def test_ctrl_c_keeps_what_the_swarm_found() -> None:
    argv = ["demo", "broken-lock", "--swarm", "2", "--time", "120", "--quiet"]
    code, out, err, took = interrupt_after(argv, 4.0)
    assert code == 1, (out, err)
    assert "mutual exclusion" in out and "found by run" in out
    assert "incomplete (interrupted)" in out
    assert took < 20
