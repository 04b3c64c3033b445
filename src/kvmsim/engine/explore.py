"""Search the state graph: breadth-first, depth-first with a bound, or random simulation.

Breadth-first search stores every distinct state once and remembers only how it was first
reached (parent, actor, choices), so the first violation found for a property is a shortest
counterexample and is rebuilt by replay. Liveness (must-finish actors under weak fairness) is
decided on the stored graph after an exhaustive search, as SCCs with a fair cycle.
"""

from __future__ import annotations

import random
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .liveness import find_fair_lasso
from .model import Model
from .system import State, System
from .trace import Path, Trace, replay

VALIDATE_STATES = 2000  # the first states are checked in full for mutable or stray values


@dataclass
class Options:
    mode: str = "bfs"  # bfs | dfs | random
    max_depth: int | None = None  # bfs/dfs: do not expand deeper; random: steps per run
    max_states: int | None = None
    runs: int = 100  # random mode
    seed: int = 0  # random mode
    stop_at_first: bool = False  # stop at the first violation of any property
    liveness: bool = True
    progress: Callable[[Progress], None] | None = None
    progress_interval: float = 0.25


@dataclass
class Progress:
    states: int
    transitions: int
    depth: int
    queue: int
    seconds: float

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Stats:
    states: int = 0
    transitions: int = 0
    max_depth: int = 0
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    runs: int = 0

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "states": self.states,
            "transitions": self.transitions,
            "max_depth": self.max_depth,
            "seconds": round(self.seconds, 3),
            "states_per_second": round(self.states_per_second, 1),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            **({"runs": self.runs} if self.runs else {}),
        }


@dataclass
class Violation:
    prop: str
    kind: str  # invariant | assertion | deadlock | progress | error | sometimes
    message: str
    trace: Trace | None
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "property": self.prop,
            "kind": self.kind,
            "message": self.message,
            "description": self.description,
            "trace": self.trace.as_dict() if self.trace is not None else None,
            "length": len(self.trace) if self.trace is not None else None,
        }


@dataclass
class Result:
    model: str
    mode: str
    stats: Stats
    violations: list[Violation] = field(default_factory=list)
    sometimes: dict[str, bool] = field(default_factory=dict)
    exhaustive: bool = True
    bound: str = ""  # what limited a non-exhaustive search
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.violations

    def violated(self) -> list[str]:
        return [v.prop for v in self.violations]

    def violation(self, prop: str) -> Violation:
        for v in self.violations:
            if v.prop == prop:
                return v
        raise KeyError(prop)

    @property
    def coverage(self) -> str:
        if self.interrupted:
            return "incomplete (interrupted)"
        if self.exhaustive:
            return "exhaustive"
        return f"bounded ({self.bound})" if self.bound else "incomplete"

    @property
    def verdict(self) -> str:
        if self.violations:
            return "violated"
        return "holds" if self.exhaustive and not self.interrupted else f"holds, {self.coverage}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mode": self.mode,
            "verdict": self.verdict,
            "holds": self.holds,
            "coverage": self.coverage,
            "exhaustive": self.exhaustive and not self.interrupted,
            "interrupted": self.interrupted,
            "violated": self.violated(),
            "violations": [v.as_dict() for v in self.violations],
            "sometimes": self.sometimes,
            "stats": self.stats.as_dict(),
            "notes": self.notes,
        }


class _Search:
    def __init__(self, model: Model, options: Options) -> None:
        self.model = model
        self.opt = options
        self.system = System(model)
        self.stats = Stats()
        self.found: dict[str, tuple[str, str, Path, str, int | None]] = {}
        self.sometimes_pending = {p.name for p in model.sometimes_props}
        self.start = time.perf_counter()
        self.last_progress = self.start
        self.exhaustive = True
        self.bound = ""
        self.interrupted = False
        self.notes: list[str] = []
        self.descriptions = {p.name: p.description for p in model.properties}

    # -- recording ----------------------------------------------------------------------
    def record(
        self, prop: str, kind: str, message: str, path: Path, loop: int | None = None
    ) -> None:
        if prop not in self.found:
            self.found[prop] = (kind, message, list(path), self.descriptions.get(prop, ""), loop)

    def done(self) -> bool:
        return self.opt.stop_at_first and bool(self.found)

    def on_new_state(self, state: State, path_fn: Callable[[], Path]) -> None:
        sys = self.system
        if self.stats.states <= VALIDATE_STATES:
            sys.validate_state(state)
        for prop, _desc in sys.check_invariants(state):
            if prop not in self.found:
                self.record(prop, "invariant", f"invariant {prop!r} is false", path_fn())
        if self.sometimes_pending:
            for prop in sys.check_sometimes(state, self.sometimes_pending):
                self.sometimes_pending.discard(prop)

    def on_outcome_failure(self, kind: str, message: str, path: Path, prop: str = "") -> None:
        if kind == "property":
            self.record(prop, "property", message, path)
        elif kind == "assertion":
            self.record("assertion", "assertion", message, path)
        else:
            self.record("model error", "error", message, path)

    def tick(self, depth: int, queue: int) -> None:
        now = time.perf_counter()
        if self.opt.progress is not None and now - self.last_progress >= self.opt.progress_interval:
            self.last_progress = now
            self.opt.progress(
                Progress(self.stats.states, self.stats.transitions, depth, queue, now - self.start)
            )

    # -- results ------------------------------------------------------------------------
    def result(self) -> Result:
        self.stats.seconds = time.perf_counter() - self.start
        self.stats.peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        violations = []
        for prop, (kind, message, path, desc, loop) in self.found.items():
            trace, _ = replay(self.system, path, loop)
            violations.append(Violation(prop, kind, message, trace, desc))
        complete = self.exhaustive and not self.interrupted
        sometimes = {
            p.name: p.name not in self.sometimes_pending for p in self.model.sometimes_props
        }
        if complete and not self.done():
            for p in self.model.sometimes_props:
                if p.name in self.sometimes_pending:
                    violations.append(
                        Violation(
                            p.name,
                            "sometimes",
                            f"no reachable state satisfies {p.name!r}: the scenario is vacuous",
                            None,
                            p.description,
                        )
                    )
        return Result(
            self.model.name,
            self.opt.mode,
            self.stats,
            violations,
            sometimes,
            self.exhaustive,
            self.bound,
            self.interrupted,
            self.notes,
        )


def check(model: Model, options: Options | None = None) -> Result:
    """Explore model under options and return the verdict, statistics and counterexamples."""
    opt = options or Options()
    search = _Search(model, opt)
    runner = {"bfs": _bfs, "dfs": _dfs, "random": _random}.get(opt.mode)
    if runner is None:
        raise ValueError(f"unknown search mode {opt.mode!r} (bfs, dfs or random)")
    try:
        runner(search)
    except KeyboardInterrupt:
        search.interrupted = True
    return search.result()


# -- breadth-first ---------------------------------------------------------------------


def _bfs(s: _Search) -> None:
    sys = s.system
    opt = s.opt
    must_finish = [i for i, a in enumerate(sys.actors) if a.must_finish]
    keep_graph = opt.liveness and bool(must_finish)
    init = sys.initial
    index: dict[State, int] = {init: 0}
    parent = [-1]
    via: list[tuple[int, tuple[int, ...]]] = [(-1, ())]
    depth = [0]
    edges: list[list[tuple[int, int, tuple[int, ...]]]] = []
    enabled: list[int] = []
    s.stats.states = 1

    def path_to(i: int) -> Path:
        out: Path = []
        while i > 0:
            out.append(via[i])
            i = parent[i]
        out.reverse()
        return out

    s.on_new_state(init, lambda: [])
    queue: deque[tuple[State, int]] = deque([(init, 0)])
    while queue and not s.done():
        state, idx = queue.popleft()
        d = depth[idx]
        s.stats.max_depth = max(s.stats.max_depth, d)
        if keep_graph:
            while len(edges) <= idx:
                edges.append([])
                enabled.append(0)
        if opt.max_depth is not None and d >= opt.max_depth:
            if any(True for _ in sys.successors(state)):
                s.exhaustive = False
                s.bound = f"depth {opt.max_depth}"
            continue
        moved = False
        mask = 0
        for actor, script, out in sys.successors(state):
            if out.kind == "blocked":
                continue
            mask |= 1 << actor
            moved = True
            s.stats.transitions += 1
            if out.kind != "ok":
                s.on_outcome_failure(out.kind, out.message, path_to(idx) + [(actor, script)], out.prop)
                continue
            child = out.state
            assert child is not None
            cidx = index.get(child)
            if cidx is None:
                if opt.max_states is not None and s.stats.states >= opt.max_states:
                    s.exhaustive = False
                    s.bound = f"{opt.max_states} states"
                    continue
                cidx = len(parent)
                index[child] = cidx
                parent.append(idx)
                via.append((actor, script))
                depth.append(d + 1)
                s.stats.states += 1
                s.on_new_state(child, lambda c=cidx: path_to(c))  # type: ignore[misc]
                queue.append((child, cidx))
            if keep_graph:
                edges[idx].append((cidx, actor, script))
        if keep_graph:
            enabled[idx] = mask
        if not moved:
            stuck = sys.unfinished(state)
            if stuck:
                s.record(
                    "deadlock",
                    "deadlock",
                    "no actor can move; waiting: "
                    + ", ".join(
                        f"{n} at {sys.location(state, sys.names().index(n))}" for n in stuck
                    ),
                    path_to(idx),
                )
        s.tick(d, len(queue))
    if queue:
        s.exhaustive = False
        s.bound = s.bound or "stopped at first violation"
    if keep_graph and s.exhaustive and not s.interrupted and not s.done():
        while len(edges) < len(parent):
            edges.append([])
            enabled.append(0)
        states_by_index = [st for st, _ in sorted(index.items(), key=lambda kv: kv[1])]
        for a in must_finish:
            name = sys.actors[a].name
            unfinished = [st[1][a] is not None for st in states_by_index]
            lasso = find_fair_lasso(edges, enabled, unfinished, len(sys.actors))
            if lasso is not None:
                prefix_end, cycle = lasso
                path = path_to(prefix_end) + cycle
                s.record(
                    f"progress: {name}",
                    "progress",
                    f"{name} can be starved forever under weak fairness (a fair cycle in which "
                    f"it never finishes)",
                    path,
                    loop=len(path) - len(cycle),
                )
            if s.done():
                break
    elif must_finish and not opt.liveness:
        s.notes.append("progress of must-finish actors not checked (liveness off)")


# -- depth-first -----------------------------------------------------------------------


def _dfs(s: _Search) -> None:
    sys = s.system
    opt = s.opt
    if any(a.must_finish for a in sys.actors):
        s.notes.append("progress (must-finish actors) is checked only by breadth-first search")
    seen: dict[State, int] = {sys.initial: 0}
    s.stats.states = 1
    path: Path = []
    s.on_new_state(sys.initial, lambda: [])
    stack: list[tuple[State, Any]] = [(sys.initial, sys.successors(sys.initial))]
    moved_flags = [False]
    while stack and not s.done():
        state, it = stack[-1]
        d = len(stack) - 1
        s.stats.max_depth = max(s.stats.max_depth, d)
        if opt.max_depth is not None and d >= opt.max_depth:
            if any(True for _ in it):
                s.exhaustive = False
                s.bound = f"depth {opt.max_depth}"
            stack.pop()
            moved_flags.pop()
            if path:
                path.pop()
            continue
        nxt = next(it, None)
        if nxt is None:
            if not moved_flags[-1] and sys.unfinished(state):
                s.record("deadlock", "deadlock", "no actor can move", list(path))
            stack.pop()
            moved_flags.pop()
            if path:
                path.pop()
            continue
        actor, script, out = nxt
        if out.kind == "blocked":
            continue
        moved_flags[-1] = True
        s.stats.transitions += 1
        if out.kind != "ok":
            s.on_outcome_failure(out.kind, out.message, path + [(actor, script)], out.prop)
            continue
        child = out.state
        assert child is not None
        prev = seen.get(child)
        if prev is not None and prev <= d + 1:
            continue
        if prev is None:
            if opt.max_states is not None and s.stats.states >= opt.max_states:
                s.exhaustive = False
                s.bound = f"{opt.max_states} states"
                continue
            s.stats.states += 1
            path.append((actor, script))
            s.on_new_state(child, lambda: list(path))
        else:
            path.append((actor, script))
        seen[child] = d + 1
        stack.append((child, sys.successors(child)))
        moved_flags.append(False)
        s.tick(d, len(stack))
    if stack:
        s.exhaustive = False
        s.bound = s.bound or "stopped at first violation"


# -- random simulation -----------------------------------------------------------------


def _random(s: _Search) -> None:
    sys = s.system
    opt = s.opt
    rng = random.Random(opt.seed)
    limit = opt.max_depth or 1000
    seen: set[State] = {sys.initial}
    s.exhaustive = False
    s.bound = f"{opt.runs} random runs of at most {limit} steps, seed {opt.seed}"
    if any(a.must_finish for a in sys.actors):
        s.notes.append("progress (must-finish actors) is checked only by breadth-first search")
    s.on_new_state(sys.initial, lambda: [])
    s.stats.states = 1
    for _run in range(opt.runs):
        if s.done():
            break
        s.stats.runs += 1
        state = sys.initial
        path: Path = []
        for _ in range(limit):
            outs = [(a, sc, o) for a, sc, o in sys.successors(state) if o.kind != "blocked"]
            if not outs:
                if sys.unfinished(state):
                    s.record("deadlock", "deadlock", "no actor can move", list(path))
                break
            actor, script, out = outs[rng.randrange(len(outs))]
            s.stats.transitions += 1
            if out.kind != "ok":
                s.on_outcome_failure(out.kind, out.message, path + [(actor, script)], out.prop)
                break
            assert out.state is not None
            state = out.state
            path.append((actor, script))
            s.stats.max_depth = max(s.stats.max_depth, len(path))
            if state not in seen:
                seen.add(state)
                s.stats.states += 1
            s.on_new_state(state, lambda: list(path))
            s.tick(len(path), opt.runs - s.stats.runs)
