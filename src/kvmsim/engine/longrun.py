"""What a long breadth-first search does between two states: honour a memory limit, write
checkpoints at an interval, and turn Ctrl-C or SIGTERM into a last checkpoint (without
checkpoints, SIGTERM stops the search as Ctrl-C does).

Between two states of the queue the search is consistent (see checkpoint.py), so that is the
only place where it stops, switches store or is written down. With checkpoints on, a signal
is only noted when it arrives and acted on at the next such point (a second Ctrl-C stops at
once, leaving the previous checkpoint).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from . import checkpoint
from .memory import EVERY, MemoryGuard, describe_size
from .store import FingerprintGraph, Graph
from .system import State

if TYPE_CHECKING:
    from .explore import _Search

AnyGraph = Graph | FingerprintGraph


def _main() -> bool:
    """In the main thread of the main process (a pool's worker obeys its pool's signals)."""
    return (
        threading.current_thread() is threading.main_thread()
        and multiprocessing.parent_process() is None
    )


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, which a search turns into its result so far."""
    if not _main():
        yield
        return

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class LongRun:
    """The memory limit and the checkpoints of one search; inert when neither is asked for."""

    def __init__(self, search: _Search) -> None:
        opt = search.opt
        self.s = search
        self.guard = MemoryGuard(opt.max_memory, opt.degrade) if opt.max_memory else None
        self.directory = opt.checkpoint_dir
        self.every = opt.checkpoint_every
        self.header = dict(opt.checkpoint_header)
        self.last_save = time.monotonic()
        self.next_check = 0  # the first check is before the first state is expanded
        self.signal: int | None = None
        self.parts = checkpoint.Parts(search.codec()) if self.directory is not None else None
        self.active = opt.mode == "bfs" and (self.guard is not None or self.directory is not None)

    def defer_interrupt(self) -> bool:
        """A KeyboardInterrupt raised between two states (by a progress display): with
        checkpoints, note it like a signal, to be acted on in boundary()."""
        if self.directory is None or self.s.opt.mode != "bfs":
            return False
        self.signal = signal.SIGINT
        return True

    @contextmanager
    def signals(self) -> Iterator[None]:
        """With checkpoints, Ctrl-C and SIGTERM are noted here and acted on in boundary().
        Without, SIGTERM stops the search like Ctrl-C (the result so far is reported): a
        background job ignores SIGINT, so `kill` is how one stops it."""
        if not _main():
            yield
            return
        if self.directory is None or self.s.opt.mode != "bfs":
            with terminate_as_interrupt():
                yield
            return

        def note(signum: int, _frame: FrameType | None) -> None:
            if self.signal is not None:
                raise KeyboardInterrupt  # asked twice: stop now
            self.signal = signum

        old = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def boundary(self, g: AnyGraph, queue: deque[State]) -> AnyGraph:
        """Between two states: act on a signal, the memory limit and the checkpoint interval.
        Returns the store to go on with (another one after a switch to fingerprints)."""
        s = self.s
        if self.signal is not None:
            self.save(g, queue)
            raise KeyboardInterrupt
        if self.guard is not None and s.stats.states >= self.next_check:
            self.next_check = s.stats.states + EVERY
            action = self.guard.check(g.pending_bytes(EVERY))
            if action == "degrade" and isinstance(g, Graph):
                return self._degrade(g)
            if action != "ok":
                if self.directory is not None:  # as it stands: resumable with more memory
                    self.save(g, queue)
                s.incomplete = self.guard.reason()
                s.exhaustive = False
                s.notes.append(
                    f"the search stopped at the memory limit: of the {len(g):,} states found, "
                    f"{len(queue):,} were not expanded, and what lies beyond them was not "
                    "explored (a larger limit, or the fingerprint store, may let it finish)"
                )
                return g
        if self.directory is not None and time.monotonic() - self.last_save >= self.every:
            self.save(g, queue)
        return g

    def finished(self) -> None:
        """The search ended by itself: a finished search leaves no checkpoint to resume (one
        stopped by the memory limit keeps it, to be resumed with more memory)."""
        if self.active and self.directory is not None and not self.s.incomplete:
            try:
                os.remove(os.path.join(self.directory, checkpoint.FILENAME))
            except FileNotFoundError:
                pass

    def released(self) -> None:
        """The old store is gone: give its memory back and measure afresh."""
        if self.guard is not None:
            self.guard.after_degrade()

    def save(self, g: AnyGraph, queue: deque[State]) -> None:
        if self.directory is None:
            return
        s = self.s
        header = dict(self.header)
        header["progress"] = {
            "states": s.stats.states,
            "transitions": s.stats.transitions,
            "queue": len(queue),
            "store": g.kind,
        }
        checkpoint.write(self.directory, header, checkpoint.capture(s, g, queue))
        s.checkpoint_written = True
        self.last_save = time.monotonic()

    def _degrade(self, g: Graph) -> FingerprintGraph:
        s = self.s
        assert self.guard is not None
        fg = FingerprintGraph.from_graph(g, s.system, s.codec(), s.reduce.fingerprint(s.codec()))
        s.degraded_at = len(g)
        if g.keep_graph:
            lost = []
            if s.opt.costs:
                lost.append("cost ranges")
            if any(a.must_finish for a in s.system.actors) and s.opt.liveness:
                lost.append("progress of must-finish actors")
            s.caveat = " and ".join(lost) + " not checked: the stored graph was dropped"
        s.notes.append(
            f"{self.guard.reason()} after {len(g):,} states ({describe_size(self.guard.last)} "
            "resident): switched from the full store to 64-bit fingerprints. Until then no "
            "state could be missed; from then on a fingerprint collision may omit one (the "
            "bound on that probability is in the fingerprint store's note)"
        )
        return fg
