"""Swarm search: many independent random runs with different seeds, in worker processes.

For bug hunting in models too large to exhaust. Run r starts from the initial state with
``random.Random(seed + r)`` and takes one enabled transition at a time, chosen uniformly, as
the single run of ``--mode random --runs 1 --seed seed+r`` does: every counterexample is
reproducible from its seed alone. Runs go out in small chunks to N local processes (or Ray
actors, ``ray_backend``); each property keeps the shortest counterexample found (ties: the
lowest run), so a swarm that completes its runs reports the same whatever the number of
workers. A time budget stops it early; so does Ctrl-C, which keeps what was found.
"""

from __future__ import annotations

import queue
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .longrun import terminate_as_interrupt
from .model import Model
from .system import State, System
from .trace import Path, replay
from .workers import (
    VALIDATE_STATES,
    Builder,
    become_worker,
    check_hashable,
    context,
    deadlock_message,
    failure_name,
    invariant_message,
    portable,
    reproduce_hint,
)

CHUNK_RUNS = 16  # runs per chunk at most: small enough for a responsive stop and progress


@dataclass(frozen=True)
class Chunk:
    """Runs first .. first+count-1; stop starting runs after ``seconds`` (worker clock)."""

    first: int
    count: int
    seed: int
    max_steps: int
    seconds: float | None = None
    stop_at_first: bool = False


@dataclass
class Found:
    prop: str
    kind: str
    message: str
    path: Path
    run: int

    @property
    def key(self) -> tuple[int, int]:
        return len(self.path), self.run


@dataclass
class ChunkResult:
    runs: int = 0
    transitions: int = 0
    states: int = 0  # states this worker had not seen before
    max_depth: int = 0
    found: dict[str, Found] = field(default_factory=dict)
    sometimes: set[str] = field(default_factory=set)


def keep_best(found: dict[str, Found], f: Found) -> None:
    old = found.get(f.prop)
    if old is None or f.key < old.key:
        found[f.prop] = f


class SwarmRunner:
    """One worker's model, and the states it has seen (as hashes: counted, not kept)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.system = System(model)
        self.seen: set[int] = set()
        self.pending = {p.name for p in model.sometimes_props}

    def run_chunk(self, chunk: Chunk) -> ChunkResult:
        out = ChunkResult()
        deadline = None if chunk.seconds is None else time.perf_counter() + chunk.seconds
        for run in range(chunk.first, chunk.first + chunk.count):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            self._walk(run, chunk, out)
            out.runs += 1
            if chunk.stop_at_first and out.found:
                break
        return out

    def _walk(self, run: int, chunk: Chunk, out: ChunkResult) -> None:
        system = self.system
        rng = random.Random(chunk.seed + run)
        state = system.initial
        path: Path = []
        self._visit(state, path, run, out)
        for _ in range(chunk.max_steps):
            moves = [(a, sc, o) for a, sc, o in system.successors(state) if o.kind != "blocked"]
            if not moves:
                message = deadlock_message(system, state) if self.model.deadlock else None
                if message is not None:
                    keep_best(out.found, Found("deadlock", "deadlock", message, list(path), run))
                return
            actor, script, step = moves[rng.randrange(len(moves))]
            out.transitions += 1
            taken = path + [(actor, script)]
            if step.kind != "ok":
                prop, kind = failure_name(step)
                keep_best(out.found, Found(prop, kind, step.message, taken, run))
                return
            for prop, message in step.failures:
                keep_best(out.found, Found(prop, "property", message, taken, run))
            assert step.state is not None
            state, path = step.state, taken
            out.max_depth = max(out.max_depth, len(path))
            self._visit(state, path, run, out)

    def _visit(self, state: State, path: Path, run: int, out: ChunkResult) -> None:
        system = self.system
        h = check_hashable(system, state)
        if h not in self.seen:
            self.seen.add(h)
            out.states += 1
            if len(self.seen) <= VALIDATE_STATES:
                system.validate_state(state)
        for prop, _desc in system.check_invariants(state):
            keep_best(out.found, Found(prop, "invariant", invariant_message(prop), list(path), run))
        if self.pending:
            for prop in system.check_sometimes(state, self.pending):
                self.pending.discard(prop)
                out.sometimes.add(prop)


# -- where the chunks run ------------------------------------------------------------------


class ChunkPool(Protocol):
    """Runs chunks somewhere: local processes or Ray actors."""

    in_flight: int

    def submit(self, chunk: Chunk) -> None: ...

    def results(self, timeout: float) -> list[ChunkResult | BaseException]: ...

    def close(self, now: bool) -> None: ...


def _serve(source: Model | Builder, tasks: Any, done: Any) -> None:
    """A worker process: run the chunks it is given until it gets None. The model is built
    on the first chunk, so that an error in it is that chunk's result."""
    become_worker()
    runner: SwarmRunner | None = None
    while True:
        chunk = tasks.get()
        if chunk is None:
            return
        try:
            if runner is None:
                runner = SwarmRunner(source if isinstance(source, Model) else source())
            done.put(runner.run_chunk(chunk))
        except BaseException as exc:  # noqa: BLE001 - the coordinator raises it
            done.put(portable(exc))


class LocalPool:
    """Chunks in N worker processes, through a task queue and a result queue. A worker that
    dies (killed, out of memory) is an error, not a wait for a result that never comes."""

    def __init__(self, model: Model, builder: Builder | None, workers: int) -> None:
        ctx = context(builder)
        source: Model | Builder = builder if builder is not None else model
        self.tasks = ctx.Queue()
        self.done = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_serve,
                args=(source, self.tasks, self.done),
                name=f"kvmsim-swarm-{w}",
                daemon=True,
            )
            for w in range(workers)
        ]
        for proc in self.procs:
            proc.start()
        self.in_flight = 0
        self.closed = False

    def submit(self, chunk: Chunk) -> None:
        self.in_flight += 1
        self.tasks.put(chunk)

    def results(self, timeout: float) -> list[ChunkResult | BaseException]:
        got: list[ChunkResult | BaseException] = []
        try:
            got.append(self.done.get(timeout=timeout))
            while True:
                got.append(self.done.get_nowait())
        except queue.Empty:
            pass
        self.in_flight -= len(got)
        if not got and self.in_flight:
            dead = next((p for p in self.procs if not p.is_alive()), None)
            if dead is not None:
                got.append(RuntimeError(f"a swarm worker died (exit status {dead.exitcode})"))
        return got

    def close(self, now: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if not now:
            for _ in self.procs:
                self.tasks.put(None)
        for proc in self.procs:
            if not now:
                proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
            proc.join()
        for q in (self.tasks, self.done):
            q.cancel_join_thread()
            q.close()


# -- the coordinator -------------------------------------------------------------------------


@dataclass
class SwarmOutcome:
    """What a swarm found: merged chunk results, for explore.Result."""

    runs: int = 0
    transitions: int = 0
    states: int = 0
    max_depth: int = 0
    found: dict[str, Found] = field(default_factory=dict)
    sometimes: set[str] = field(default_factory=set)
    interrupted: bool = False
    out_of_time: bool = False

    def merge(self, r: ChunkResult) -> None:
        self.runs += r.runs
        self.transitions += r.transitions
        self.states += r.states
        self.max_depth = max(self.max_depth, r.max_depth)
        for f in r.found.values():
            keep_best(self.found, f)
        self.sometimes |= r.sometimes


def run_swarm(
    pool: ChunkPool,
    *,
    runs: int,
    seed: int,
    max_steps: int,
    workers: int,
    seconds: float | None,
    stop_at_first: bool,
    tick: Callable[[SwarmOutcome, int], None],
    interval: float = 0.25,
) -> SwarmOutcome:
    """Hand out the runs in chunks, a few per worker in flight, and merge what comes back."""
    start = time.perf_counter()
    out = SwarmOutcome()
    size = max(1, min(CHUNK_RUNS, runs // (workers * 8) or 1))
    window = 2 * workers
    next_run = 0
    stopping = False
    try:
        with terminate_as_interrupt():  # `kill` stops a background swarm too
            while True:
                elapsed = time.perf_counter() - start
                if seconds is not None and elapsed >= seconds:
                    out.out_of_time = next_run < runs
                    stopping = True
                while not stopping and pool.in_flight < window and next_run < runs:
                    n = min(size, runs - next_run)
                    left = None if seconds is None else seconds - elapsed
                    pool.submit(Chunk(next_run, n, seed, max_steps, left, stop_at_first))
                    next_run += n
                if pool.in_flight == 0:
                    break
                for got in pool.results(interval):
                    if isinstance(got, BaseException):
                        pool.close(now=True)
                        raise got
                    out.merge(got)
                    if stop_at_first and out.found:
                        stopping = True
                if stop_at_first and out.found:
                    break
                tick(out, runs - out.runs)
    except KeyboardInterrupt:
        out.interrupted = True
        pool.close(now=True)
    pool.close(now=stop_at_first)
    return out


def swarm_check(model: Model, opt: Any) -> Any:
    """explore.check for mode "swarm": the result of opt.runs random runs in opt.workers
    workers (local processes, or Ray with opt.ray_address or opt.backend "ray")."""
    from .explore import Progress, Result, Stats, Violation

    start = time.perf_counter()
    system = System(model)  # the model builds here first: its errors are reported as usual
    max_steps = opt.max_depth or 1000
    workers = max(1, opt.workers)

    def tick(o: SwarmOutcome, left: int) -> None:
        if opt.progress is not None:
            now = time.perf_counter() - start
            left = max(0, left) if opt.runs < sys.maxsize else 0  # no limit: time budget
            opt.progress(Progress(o.states, o.transitions, o.max_depth, left, now))

    if getattr(opt, "backend", "local") == "ray":
        from .ray_backend import RaySwarmPool

        pool: ChunkPool = RaySwarmPool(model, opt.builder, workers, opt.ray_address)
    else:
        pool = LocalPool(model, opt.builder, workers)
    out = run_swarm(
        pool,
        runs=opt.runs,
        seed=opt.seed,
        max_steps=max_steps,
        workers=workers,
        seconds=opt.time_budget,
        stop_at_first=opt.stop_at_first,
        tick=tick,
    )
    stats = Stats(
        states=out.states,
        transitions=out.transitions,
        max_depth=out.max_depth,
        seconds=time.perf_counter() - start,
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        runs=out.runs,
    )
    descriptions = {p.name: p.description for p in model.properties}
    violations = []
    notes = []
    for f in sorted(out.found.values(), key=lambda f: (*f.key, f.prop)):
        trace, _ = replay(system, f.path)
        violations.append(Violation(f.prop, f.kind, f.message, trace, descriptions.get(f.prop, "")))
        notes.append(
            f"{f.prop!r} found by run {f.run} (seed {opt.seed + f.run}); the same check with "
            f"{reproduce_hint(opt.seed + f.run, max_steps)} reproduces it"
        )
    notes.append(
        f"swarm of {workers} workers: states are the distinct states each worker saw, summed"
    )
    if any(a.must_finish for a in system.actors):
        notes.append(
            "progress (must-finish actors) is checked only by exhaustive search (bfs or dfs)"
        )
    budget = f" within {opt.time_budget:g} s" if opt.time_budget is not None else ""
    bound = (
        f"{out.runs} random runs{budget} of at most {max_steps} steps, "
        f"seeds {opt.seed} + run number"
    )
    return Result(
        model.name,
        "swarm",
        stats,
        violations,
        {p.name: p.name in out.sometimes for p in model.sometimes_props},
        exhaustive=False,
        bound=bound,
        interrupted=out.interrupted,
        notes=notes,
    )
