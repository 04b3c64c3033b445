"""What the parallel searches share: building the model in a worker, and the rules a
step must follow there to report exactly as the one-process search does.

A model holds functions and live objects, so it is never sent to a worker: the worker calls
a *builder*, a picklable callable that returns the model (a module-level function, a
``functools.partial`` of one, or an object such as ``kvmsim.builders.ModelBuilder``). With
no builder, local workers are forked and inherit the model; Ray workers need one.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .model import Model
from .system import Outcome, State, System

Builder = Callable[[], Model]
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
PARENT_POLL = 0.5  # seconds between a worker's checks that its parent is still there
VALIDATE_STATES = 2000  # as the one-process search: the first states are checked in full


def context(builder: Builder | None) -> Any:
    """The multiprocessing context: fork when there is no builder (the model is inherited)
    or when no other thread runs (a lock held at the fork would stay held), spawn else."""
    if builder is None:
        if not sys.platform.startswith("linux"):
            raise ValueError("worker processes need a model builder on this platform")
        return multiprocessing.get_context("fork")
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def become_worker() -> None:
    """Set up a worker process. It leaves Ctrl-C to the parent, which stops it and reports
    what was found; SIGTERM kills it (a forked worker inherits the parent's handler, which
    would turn the parent's terminate() into a KeyboardInterrupt the worker survives); and
    it exits when the parent is gone (killed, say), since a worker waiting for a batch
    from another worker would otherwise wait for ever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()
    if _kill_me_with_parent():
        if os.getppid() != parent:  # the parent died before the kernel was asked
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os._exit(1)

    threading.Thread(target=watch, name="kvmsim-parent-watch", daemon=True).start()


def _kill_me_with_parent() -> bool:
    """Ask Linux to send this process SIGKILL when its parent exits (prctl
    PR_SET_PDEATHSIG): no thread, so nothing competes with the search for the GIL. False
    where that is not available (then a thread watches the parent)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# -- what the one-process search says, word for word -------------------------------------


def invariant_message(prop: str) -> str:
    return f"invariant {prop!r} is false"


def failure_name(out: Outcome) -> tuple[str, str]:
    """(property, kind) of a step that did not complete: a fail(), an assertion, a crash."""
    if out.kind == "property":
        return out.prop, "property"
    if out.kind == "assertion":
        return "assertion", "assertion"
    return "model error", "error"


def deadlock_message(system: System, state: State) -> str | None:
    """The deadlock report for a state where no actor can move, None if all finished."""
    stuck = system.unfinished(state)
    if not stuck:
        return None
    names = system.names()
    return "no actor can move; waiting: " + ", ".join(
        f"{n} at {system.location(state, names.index(n))}" for n in stuck
    )


def check_hashable(system: System, state: State) -> int:
    """hash(state), or the ModelError that says which value cannot be hashed."""
    try:
        return hash(state)
    except TypeError:
        system.validate_state(state)
        raise


def reproduce_hint(seed: int, max_steps: int) -> str:
    limit = "" if max_steps == 1000 else f" --max-depth {max_steps}"
    return f"--mode random --runs 1 --seed {seed}{limit}"


def portable(exc: BaseException) -> BaseException:
    """exc if it survives pickling (a ModelError does), else a RuntimeError that says it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")
