"""Long runs on the command line: --store, --max-memory/--degrade, --checkpoint and resume,
and verdict lines that always say how far the search went."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kvmsim.engine import checkpoint as ck
from kvmsim.engine.longrun import LongRun

from ..cli_support import counters_source, run, write

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "tests" / "kernel" / "mutants.py"


def model_file(tmp_path: Path, times: int = 2, limit: int = 99) -> str:
    return write(tmp_path, "counters.py", counters_source(3, times, limit))


def without_timings(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {
            k: without_timings(v)
            for k, v in doc.items()
            if k not in ("seconds", "states_per_second", "peak_memory_mb", "notes")
        }
    if isinstance(doc, list):
        return [without_timings(v) for v in doc]
    return doc


def interrupt_after(monkeypatch: pytest.MonkeyPatch, states: int) -> None:
    """Press Ctrl-C (as a signal noted by the search) once states are found."""
    real = LongRun.boundary

    def boundary(self: LongRun, g: Any, queue: Any) -> Any:
        if self.s.stats.states >= states and self.signal is None:
            self.signal = signal.SIGINT
        return real(self, g, queue)

    monkeypatch.setattr(LongRun, "boundary", boundary)


# -- --store ----------------------------------------------------------------------------------


def test_fingerprint_store_same_statistics_and_the_probability(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = model_file(tmp_path)
    code, full, _ = run(capsys, "check", path, "--json", "--quiet")
    code2, compact, _ = run(capsys, "check", path, "--json", "--quiet", "--store", "fingerprint")
    assert code == code2 == 0
    a, b = json.loads(full), json.loads(compact)
    assert without_timings(a) == {
        k: v for k, v in without_timings(b).items() if k != "collision_probability"
    }
    assert 0 < b["collision_probability"] < 1e-10
    code, out, _ = run(capsys, "check", path, "--quiet", "--store", "fingerprint")
    assert "probability that a fingerprint collision omitted a state: at most" in out


# -- --max-memory -----------------------------------------------------------------------------


def test_memory_limit_gives_an_incomplete_result_never_holds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "check", model_file(tmp_path), "--quiet", "--max-memory", "1M")
    assert code == 2
    assert "verdict: holds, incomplete (memory limit 1.0 MB reached)" in out
    assert "verdict: holds\n" not in out and "verdict: holds, exhaustive" not in out
    assert "coverage: incomplete (memory limit" in out
    assert "memory limit 1.0 MB reached: incomplete" in err
    code, out, err = run(
        capsys, "check", model_file(tmp_path), "--quiet", "--max-memory", "1M", "--json"
    )
    doc = json.loads(out)
    assert code == 2 and not doc["exhaustive"] and doc["verdict"].startswith("holds, incomplete")


def test_memory_limit_with_a_violation_still_reports_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = model_file(tmp_path, limit=2)
    code, out, _ = run(capsys, "check", path, "--quiet", "--max-memory", "64G")
    assert code == 1 and "verdict: violated: small (search exhaustive)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--degrade"], "--degrade needs --max-memory"),
        (["--max-memory", "lots"], "not a size"),
        (["--max-memory", "1G", "--mode", "dfs"], "--max-memory applies only to --mode bfs"),
        (["--store", "fingerprint", "--mode", "random"], "--store applies only to --mode bfs"),
        (["--store", "disk"], "invalid choice"),
        (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint"),
        (["--checkpoint", "DIR", "--checkpoint-every", "0"], "more than 0 seconds"),
    ],
)
def test_bad_long_run_options_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "check", model_file(tmp_path), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out


def test_checkpoint_needs_one_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", "--checkpoint", str(tmp_path / "ck"))
    assert code == 2 and "--checkpoint needs one model" in err


# -- --checkpoint and resume ------------------------------------------------------------------


@pytest.mark.parametrize("store", ["full", "fingerprint"])
def test_interrupted_check_resumes_to_the_same_counterexample(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    args = ["--variant", f"{MUTANTS}:no_wait", "--scenario", "migrate", "--json", "--quiet"]
    args += ["--store", store]
    code, whole, _ = run(capsys, "check", *args)
    assert code == 1
    directory = str(tmp_path / "ck")
    interrupt_after(monkeypatch, 300)
    code, partial, err = run(capsys, "check", *args, "--checkpoint", directory)
    assert code == (1 if json.loads(partial)["violations"] else 2)
    assert f"continue with: kvmsim resume {directory}" in err
    assert json.loads(partial)["coverage"] == "incomplete (interrupted)"
    monkeypatch.undo()
    code, resumed, _ = run(capsys, "resume", directory, "--json", "--quiet")
    assert code == 1
    a, b = json.loads(whole), json.loads(resumed)
    assert b["violations"] and without_timings(b["violations"]) == without_timings(a["violations"])
    assert b["stats"]["states"] == a["stats"]["states"]
    assert b["stats"]["transitions"] == a["stats"]["transitions"]
    assert b["verdict"] == a["verdict"] and b["coverage"] == a["coverage"]
    assert not os.path.exists(os.path.join(directory, ck.FILENAME))


def test_resume_refuses_a_changed_model_a_corrupt_file_and_a_used_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = model_file(tmp_path)
    directory = str(tmp_path / "ck")
    interrupt_after(monkeypatch, 100)
    code, _, _ = run(capsys, "check", path, "--quiet", "--checkpoint", directory)
    monkeypatch.undo()
    assert code == 2
    code, _, err = run(capsys, "check", path, "--quiet", "--checkpoint", directory)
    assert code == 2 and "already holds a checkpoint" in err
    good = (Path(directory) / ck.FILENAME).read_bytes()
    Path(path).write_text(counters_source(3, 2, 98))  # the invariant's limit changed
    code, out, err = run(capsys, "resume", directory)
    assert code == 2 and "changed since the checkpoint" in err and not out
    assert len(err.strip().splitlines()) == 1
    model_file(tmp_path)  # the model as it was: resuming works again
    (Path(directory) / ck.FILENAME).write_bytes(good[:-10] + b"0123456789")
    code, out, err = run(capsys, "resume", directory)
    assert code == 2 and "corrupt" in err and not out
    code, _, err = run(capsys, "resume", str(tmp_path / "nothing"))
    assert code == 2 and "no checkpoint" in err
    header = json.loads(good.split(b"\n")[1])
    header["kvmsim"] = "0.0.1"
    (Path(directory) / ck.FILENAME).write_bytes(
        ck.MAGIC + json.dumps(header).encode() + b"\n" + good.split(b"\n", 2)[2]
    )
    code, _, err = run(capsys, "resume", directory)
    assert code == 2 and "written by kvmsim 0.0.1" in err


def test_sigint_to_a_running_check_leaves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    """The real thing: a separate process, Ctrl-C (SIGINT) mid-search, then resume."""
    path = model_file(tmp_path, times=3)
    directory = tmp_path / "ck"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "kvmsim"]
    proc = subprocess.Popen(
        [*cmd, "check", path, "--json", "--quiet", "--checkpoint", str(directory)]
        + ["--checkpoint-every", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (directory / ck.FILENAME).exists():  # the search is under way
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.skip("the search finished before it could be interrupted")
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the search finished before the signal (a very fast machine)")
    assert proc.returncode == 2 and "continue with: kvmsim resume" in err
    assert json.loads(out)["interrupted"]
    resumed = subprocess.run(
        [*cmd, "resume", str(directory), "--json", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    whole = subprocess.run(
        [*cmd, "check", path, "--json", "--quiet"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == whole.returncode == 0
    assert without_timings(json.loads(resumed.stdout)) == without_timings(json.loads(whole.stdout))


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_a_background_check_with_its_result_so_far(
    tmp_path: Path, workers: int
) -> None:
    """A background job ignores SIGINT (as a non-interactive shell starts it): `kill`
    (SIGTERM) still stops the search, which reports what it found, marked interrupted,
    without a checkpoint (one process, and the partitioned search's coordinator)."""
    path = model_file(tmp_path, times=8)  # millions of states: well over the wait below
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvmsim", "check", path, "--json", "--quiet"]
        + ["--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)  # ignored, as by a background job
    time.sleep(0.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "interrupted" in err
    doc = json.loads(out)
    assert doc["interrupted"] and doc["stats"]["states"] > 1


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then the parent),
    None for a process that is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def running(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def children_of(pid: int) -> list[int]:
    """The running processes whose parent is pid (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def left_running(pids: list[int], seconds: float) -> list[int]:
    """Those of pids still running after waiting up to seconds for them to exit; they are
    then killed, so that a failing test leaves nothing behind."""
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if running(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("flag", ["--workers", "--swarm"])
def test_no_worker_outlives_a_killed_coordinator(tmp_path: Path, flag: str) -> None:
    """SIGKILL leaves the coordinator no chance to stop its workers: they notice that their
    parent is gone and exit, instead of waiting for ever for each other's batches."""
    path = model_file(tmp_path, times=8)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvmsim", "check", path, "--quiet", flag, "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = children_of(proc.pid)
    assert len(workers) >= 2, "the workers did not start"
    time.sleep(1.0)  # into the search
    proc.kill()
    proc.wait()
    assert not left_running(workers, 20)


# -- verdict lines ----------------------------------------------------------------------------


def test_every_verdict_line_says_how_far_the_search_went(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = model_file(tmp_path)
    bad = str(tmp_path / "bad.py")
    Path(bad).write_text(counters_source(3, 2, 2))
    cases = [
        ([path], "verdict: holds, exhaustive"),
        ([path, "--max-depth", "3"], "verdict: holds, bounded (depth 3)"),
        ([path, "--max-states", "10"], "verdict: holds, bounded (10 states)"),
        ([path, "--mode", "random", "--runs", "2"], "verdict: holds, bounded (2 random runs"),
        ([bad], "verdict: violated: small (search exhaustive)"),
        ([bad, "--stop-at-first"], "verdict: violated: small (search bounded (stopped at first"),
    ]
    for argv, line in cases:
        _code, out, _ = run(capsys, "check", *argv, "--quiet")
        verdicts = [x for x in out.splitlines() if x.startswith("verdict:")]
        assert len(verdicts) == 1 and verdicts[0].startswith(line), (argv, verdicts)


WATCHED = """
import multiprocessing, os, sys, time
from kvmsim.engine import workers

def child() -> None:
    workers.become_worker()
    time.sleep(60)

if __name__ == "__main__":
    if sys.argv[1] == "thread":
        workers._kill_me_with_parent = lambda: False  # as on a system without prctl
    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    time.sleep(0.5)
    print(proc.pid, flush=True)
    os._exit(0)  # gone without a word to the child
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks; reads /proc")
@pytest.mark.parametrize("how", ["prctl", "thread"])
def test_a_worker_exits_when_its_parent_is_gone(tmp_path: Path, how: str) -> None:
    """Both ways a worker notices its parent is gone: Linux's parent-death signal, and the
    watcher thread used where that is not available."""
    script = tmp_path / "watched.py"
    script.write_text(WATCHED)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        [sys.executable, str(script), how], env=env, capture_output=True, text=True, timeout=60
    )
    assert not left_running([int(out.stdout.split()[0])], 10)
