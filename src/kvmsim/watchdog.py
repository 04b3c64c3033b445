"""A watchdog for steps (and invariants) stuck in plain Python code.

The engine's block budget (``STEP_BUDGET``) catches a loop between two yields of an actor,
but not a loop inside an ordinary function a step calls, or in an invariant: such code would
hang the search forever. While a check runs, the watchdog ticks
every ``seconds`` (``SIGALRM``); when a tick finds the step it saw at the previous tick still
running, it raises ``ModelError`` from inside that step, naming the file and line the step is
stuck at. The step's effects are undone and the command reports a one-line error.

It runs only in the main thread and only when nothing else uses ``SIGALRM`` (pytest-timeout,
say): otherwise it stays off, and such a step is left to the user's Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from .engine import ModelError
from .engine.system import CLOCK

STEP_SECONDS = 20.0  # a step still running at two ticks this far apart is stuck

_ENGINE = str(Path(__file__).resolve().parent)


@contextmanager
def step_watchdog(seconds: float | None = None) -> Iterator[None]:
    """Raise ModelError inside any step that runs for more than seconds (to twice that)."""
    interval = STEP_SECONDS if seconds is None else seconds
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    if not usable:
        yield
        return
    seen = [-1]

    def tick(_signum: int, frame: FrameType | None) -> None:
        if CLOCK.started == CLOCK.finished:
            seen[0] = -1  # between steps (an invariant, the search itself): not ours to judge
            return
        if seen[0] != CLOCK.started:
            seen[0] = CLOCK.started
            return
        raise ModelError(
            f"{_user_location(frame)}: the model's code has run for more than {interval:g} s "
            "without returning (a step that never reaches a yield, or an invariant that never "
            "returns): a loop in it never ends; make the loop end, or, in a step, make it a "
            "generator the actor runs with `yield from` so each pass is a step"
        )

    previous = signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0, 0.0)
        signal.signal(signal.SIGALRM, previous)


def _user_location(frame: FrameType | None) -> str:
    """file:line of the innermost frame outside kvmsim (the model's own code)."""
    f = frame
    while f is not None:
        filename = f.f_code.co_filename
        if not filename.startswith(_ENGINE):
            return f"{filename}:{f.f_lineno}"
        f = f.f_back
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
