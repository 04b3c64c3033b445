"""The live progress line: shown on a terminal during long searches, never otherwise (not a
terminal, NO_COLOR set, TERM=dumb, --quiet), and never in what a pipe receives."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kvmsim.cli_kvm
import kvmsim.report.progress as progress_module
from kvmsim.cli import main
from kvmsim.engine import Options, Progress
from kvmsim.report.progress import LiveProgress, wanted

ROOT = Path(__file__).resolve().parent.parent.parent


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def as_terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    """stderr is a terminal (set inside the test: pytest's capture resets sys.stderr
    between a fixture's setup and the test)."""
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    return term


def test_wanted_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    as_terminal(monkeypatch)
    assert wanted(quiet=False)
    assert not wanted(quiet=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wanted(quiet=False)
    monkeypatch.setenv("NO_COLOR", "")  # an empty NO_COLOR does not count (no-color.org)
    assert wanted(quiet=False)
    monkeypatch.setenv("TERM", "dumb")
    assert not wanted(quiet=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert not wanted(quiet=False)


def test_the_line_shows_states_speed_depth_and_queue() -> None:
    p = LiveProgress("m", "bfs", enabled=True)
    text = p.render(Progress(states=12345, transitions=1, depth=7, queue=89, seconds=2.0)).plain
    assert "12,345 states" in text and "6,172 states/s" in text
    assert "depth 7" in text and "queue 89" in text
    dfs = LiveProgress("m", "dfs", enabled=True)
    assert "stack 89" in dfs.render(Progress(1, 1, 1, 89, 1.0)).plain


def test_a_disabled_display_never_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = as_terminal(monkeypatch)
    with LiveProgress("m", "bfs", enabled=False, delay=0) as p:
        p(Progress(10, 10, 1, 1, 5.0))
        assert p.live is None
    assert terminal.getvalue() == ""


def _long_check(monkeypatch: pytest.MonkeyPatch, *extra: str) -> None:
    """A KVM check (about half a second) with the display shown from the start."""
    real = LiveProgress.__init__

    def no_delay(self: LiveProgress, label: str, mode: str, *, enabled: bool, delay: float = 1):
        real(self, label, mode, enabled=enabled, delay=0)

    monkeypatch.setattr(progress_module.LiveProgress, "__init__", no_delay)
    real_options = kvmsim.cli_kvm.options_from

    def every_state(*args: Any) -> Options:
        return dataclasses.replace(real_options(*args), progress_interval=0)

    monkeypatch.setattr(kvmsim.cli_kvm, "options_from", every_state)
    code = main(["check", "--scenario", "migrate", "--variant", "v6.5", *extra])
    assert code == 0


def test_the_cli_shows_progress_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = as_terminal(monkeypatch)
    _long_check(monkeypatch)
    assert "states/s" in terminal.getvalue()


@pytest.mark.parametrize("how", ["quiet", "NO_COLOR", "pipe"])
def test_the_cli_shows_no_progress_otherwise(
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    terminal = as_terminal(monkeypatch)
    if how == "NO_COLOR":
        monkeypatch.setenv("NO_COLOR", "1")
    if how == "pipe":
        monkeypatch.setattr(sys, "stderr", io.StringIO())
    _long_check(monkeypatch, *(["--quiet"] if how == "quiet" else []))
    assert "states/s" not in terminal.getvalue()


def test_a_pipe_gets_no_progress() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kvmsim", "check", "--scenario", "migrate"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0
    assert out.stderr == ""
    assert "\x1b[" not in out.stdout
