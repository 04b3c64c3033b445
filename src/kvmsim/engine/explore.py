"""Search the state graph: breadth-first, depth-first with a bound, or random simulation.

Breadth-first search stores every distinct state once and remembers only how it was first
reached (parent, actor, choices), so the first violation found for a property is a shortest
counterexample and is rebuilt by replay. Among the counterexamples of that shortest length
the search then reports one with the fewest context switches (see ``_simplest``). Liveness
(must-finish actors under weak fairness) is decided on the stored graph after an exhaustive
search, as SCCs with a fair cycle.
"""

from __future__ import annotations

import gc
import random
import resource
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import checkpoint
from .codec import StateCodec
from .costs import CostGraph, CostRange
from .liveness import find_fair_lasso
from .longrun import LongRun
from .model import Model
from .reduction import Reductions
from .simplest import simplest
from .store import STORES, FingerprintGraph, Graph, describe_probability
from .system import Outcome, State, System
from .trace import Path, Trace, replay
from .world import ModelError

AnyGraph = Graph | FingerprintGraph

FREEZE_EVERY = 5_000  # new states between two gc.freeze() calls (see _Search.tick)
VALIDATE_STATES = 2000  # the first states are checked in full for mutable or stray values

# A way to violate a property found by bfs: (state index, -1, (), message) for a violating
# state (an invariant, a deadlock), (source state index, actor, choices, message) for a
# violating step (an event property, an assertion, an error).
Endpoint = tuple[int, int, tuple[int, ...], str]
# bfs: where a step starts: (source state index, actor, choices, length of the path it ends)
StepAt = tuple[int, int, tuple[int, ...], int]


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
    collect_terminal: bool = False  # fill Result.terminal (see there)
    costs: bool = False  # bfs: exact min/max of every cost over complete behaviours
    # bfs: among the shortest counterexamples of a property, report one with the fewest
    # context switches (changes of acting actor between consecutive steps)
    simplest: bool = True
    # bfs: "full" keeps every state; "fingerprint" keeps 64-bit fingerprints of them (about
    # 30 bytes a state, a tiny chance of omitting one; see store.py)
    store: str = "full"
    # bfs: stop (or, with degrade, move to the fingerprint store once) before the process's
    # resident memory passes max_memory bytes
    max_memory: int | None = None
    degrade: bool = False
    # bfs: write the search's progress to checkpoint_dir every checkpoint_every seconds and
    # on Ctrl-C or SIGTERM; checkpoint_header is the caller's identity of the model and run
    checkpoint_dir: str | None = None
    checkpoint_every: float = 60.0
    checkpoint_header: dict[str, Any] = field(default_factory=dict)
    # bfs: continue the search saved in this checkpoint directory
    resume_from: str | None = None
    # bfs/dfs: store one state per renaming of the actors a model declares interchangeable
    # (Setup.symmetric), and expand one actor's step where that is sound (partial-order
    # reduction); both off for liveness and costs (see engine/reduction.py)
    symmetry: bool = False
    por: bool = False
    # parallel and distributed search (engine.parallel, engine.swarm): worker processes or
    # Ray actors; each builds the model with builder (picklable; None: forked workers
    # inherit it). mode "swarm": opt.runs random runs in all, within time_budget seconds.
    workers: int = 1
    builder: Callable[[], Model] | None = None
    backend: str = "local"  # local | ray
    ray_address: str | None = None  # a Ray cluster to join (None: start a local one)
    time_budget: float | None = None


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
    # With Options(collect_terminal=True): the world ({path: value}, as in traces) of every
    # state found in which no actor can take a step (all finished, or a deadlock), once
    # per distinct state, in the order found.
    terminal: list[dict[str, Any]] = field(default_factory=list)
    # With Options(costs=True) after an exhaustive search: every cost's exact range.
    costs: dict[str, CostRange] = field(default_factory=dict)
    # bfs with the fingerprint store: an upper bound on the chance a collision omitted a state
    collision_probability: float | None = None
    incomplete: str = ""  # why a search stopped before it was done (a memory limit)
    caveat: str = ""  # what an exhaustive search could not check (after a store switch)

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
        if self.incomplete:
            return f"incomplete ({self.incomplete})"
        if self.exhaustive:
            return f"exhaustive ({self.caveat})" if self.caveat else "exhaustive"
        return f"bounded ({self.bound})" if self.bound else "incomplete"

    @property
    def complete(self) -> bool:
        """Whether every reachable state was explored (nothing bounded or cut short)."""
        return self.exhaustive and not self.interrupted and not self.incomplete

    @property
    def verdict(self) -> str:
        if self.violations:
            return "violated"
        return "holds" if self.complete and not self.caveat else f"holds, {self.coverage}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mode": self.mode,
            "verdict": self.verdict,
            "holds": self.holds,
            "coverage": self.coverage,
            "exhaustive": self.complete,
            "interrupted": self.interrupted,
            "violated": self.violated(),
            "violations": [v.as_dict() for v in self.violations],
            "sometimes": self.sometimes,
            "stats": self.stats.as_dict(),
            "notes": self.notes,
            **({"costs": {k: c.as_dict() for k, c in self.costs.items()}} if self.costs else {}),
            **(
                {"collision_probability": self.collision_probability}
                if self.collision_probability is not None
                else {}
            ),
            **({"incomplete": self.incomplete} if self.incomplete else {}),
            **({"caveat": self.caveat} if self.caveat else {}),
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
        self.next_freeze = FREEZE_EVERY  # small searches never freeze
        self.froze = False
        self.exhaustive = True
        self.bound = ""
        self.interrupted = False
        self.notes: list[str] = []
        self.descriptions = {p.name: p.description for p in model.properties}
        self.costs: dict[str, CostRange] = {}
        self.terminal: dict[State, None] = {}  # an ordered set
        # bfs: every way found to violate a property at its shortest length (see _simplest)
        self.endpoints: dict[str, list[Endpoint]] = {}
        self.expanded = 0  # bfs: states 0 .. expanded-1 have had all their successors explored
        self.collision_probability: float | None = None  # bfs with the fingerprint store
        self.incomplete = ""  # see Result
        self.caveat = ""  # see Result
        self.degraded_at = 0  # bfs: states when a memory limit switched to fingerprints
        self.resumed_seconds = 0.0  # bfs: time spent before the checkpoint resumed from
        self.checkpoint_written = False
        self._codec: StateCodec | None = None
        self.longrun = LongRun(self)  # bfs: memory limit, checkpoints
        self.reduce = Reductions(
            self.system,
            model,
            symmetry=options.symmetry,
            por=options.por,
            mode=options.mode,
            liveness=options.liveness,
            costs=options.costs,
            notes=self.notes,
        )

    def codec(self) -> StateCodec:
        """The state codec of this search's System (made when first needed)."""
        if self._codec is None:
            self._codec = StateCodec(self.system)
        return self._codec

    def elapsed(self) -> float:
        return time.perf_counter() - self.start + self.resumed_seconds

    # -- recording ----------------------------------------------------------------------
    def record(
        self,
        prop: str,
        kind: str,
        message: str,
        path: Path,
        loop: int | None = None,
        at: Endpoint | None = None,
    ) -> None:
        if prop not in self.found:
            self.found[prop] = (kind, message, list(path), self.descriptions.get(prop, ""), loop)
            if at is not None:
                self.endpoints[prop] = [at]

    def also(self, prop: str, length: int, at: Endpoint | None) -> None:
        """Another violation of an already recorded prop, of length steps (bfs): kept when
        it is as short as the recorded one, for _simplest to choose from."""
        eps = self.endpoints.get(prop)
        if at is not None and eps is not None and len(self.found[prop][2]) == length:
            eps.append(at)

    def done(self) -> bool:
        return self.opt.stop_at_first and bool(self.found)

    def on_new_state(
        self, state: State, path_fn: Callable[[], Path], at: tuple[int, int] | None = None
    ) -> None:
        """at (bfs): the state's (index, depth)."""
        sys = self.system
        if self.stats.states <= VALIDATE_STATES:
            sys.validate_state(state)
        for prop, _desc in sys.check_invariants(state):
            message = f"invariant {prop!r} is false"
            ep = None if at is None else (at[0], -1, (), message)
            if prop not in self.found:
                self.record(prop, "invariant", message, path_fn(), at=ep)
            elif at is not None:
                self.also(prop, at[1], ep)
        if self.sometimes_pending:
            for prop in sys.check_sometimes(state, self.sometimes_pending):
                self.sometimes_pending.discard(prop)

    def on_step_failures(
        self, out: Outcome, path_fn: Callable[[], Path], at: StepAt | None = None
    ) -> None:
        """Event properties a completed step reported with fail()."""
        for prop, message in out.failures:
            ep = None if at is None else (at[0], at[1], at[2], message)
            if prop not in self.found:
                self.record(prop, "property", message, path_fn(), at=ep)
            elif at is not None:
                self.also(prop, at[3], ep)

    def on_outcome_failure(
        self, kind: str, message: str, path: Path, prop: str = "", at: StepAt | None = None
    ) -> None:
        if kind == "property":
            name = prop
        elif kind == "assertion":
            name = "assertion"
        else:
            name, kind = "model error", "error"
        ep = None if at is None else (at[0], at[1], at[2], message)
        if name not in self.found:
            self.record(name, kind, message, path, at=ep)
        elif at is not None:
            self.also(name, at[3], ep)

    def on_stuck(
        self, state: State, path_fn: Callable[[], Path], at: tuple[int, int] | None = None
    ) -> None:
        """No actor can take a step in state: a final state, or a deadlock."""
        sys = self.system
        if self.opt.collect_terminal:
            self.terminal[state] = None
        if not self.model.deadlock:
            return
        if "deadlock" in self.found and (at is None or "deadlock" not in self.endpoints):
            return
        names = sys.names()
        stuck = sys.unfinished(state)
        if stuck:
            message = "no actor can move; waiting: " + ", ".join(
                f"{n} at {sys.location(state, names.index(n))}" for n in stuck
            )
            ep = None if at is None else (at[0], -1, (), message)
            if "deadlock" not in self.found:
                self.record("deadlock", "deadlock", message, path_fn(), at=ep)
            elif at is not None:
                self.also("deadlock", at[1], ep)

    def unhashable(self, state: State) -> None:
        """A new state could not be hashed: raise the ModelError that says which value."""
        self.system.validate_state(state)

    def tick(self, depth: int, queue: int) -> None:
        if self.stats.states >= self.next_freeze:
            # Stored states live until the search ends and hold no reference cycles, yet
            # each full collection would walk all of them again (a sixth of the time on
            # big searches): move what exists now out of the collector's sight. The
            # collector stays on for the young objects a step makes.
            gc.freeze()
            self.froze = True
            self.next_freeze = self.stats.states + FREEZE_EVERY
        now = time.perf_counter()
        if self.opt.progress is not None and now - self.last_progress >= self.opt.progress_interval:
            self.last_progress = now
            try:
                self.opt.progress(
                    Progress(
                        self.stats.states, self.stats.transitions, depth, queue, self.elapsed()
                    )
                )
            except KeyboardInterrupt:
                if not self.longrun.defer_interrupt():
                    raise

    # -- results ------------------------------------------------------------------------
    def result(self) -> Result:
        self.stats.seconds = self.elapsed()
        self.stats.peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.reduce.report(self.notes)
        violations = []
        for prop, (kind, message, path, desc, loop) in self.found.items():
            trace, _ = replay(self.system, path, loop)
            violations.append(Violation(prop, kind, message, trace, desc))
        complete = self.exhaustive and not self.interrupted and not self.incomplete
        sometimes = {
            p.name: p.name not in self.sometimes_pending for p in self.model.sometimes_props
        }
        if complete and not self.done():
            for p in self.model.sometimes_props:
                if p.name in self.sometimes_pending and p.required:
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
            [self.system.world.describe(st[0]) for st in self.terminal],
            self._cost_figures(),
            self.collision_probability,
            self.incomplete,
            self.caveat,
        )

    def _cost_figures(self) -> dict[str, CostRange]:
        """The cost ranges with their witness traces replayed."""
        for figure in self.costs.values():
            figure.min_trace, _ = replay(self.system, figure.min_path)
            figure.max_trace, _ = replay(self.system, figure.max_path, figure.max_loop_start)
        return dict(sorted(self.costs.items()))


def check(model: Model, options: Options | None = None) -> Result:
    """Explore model under options and return the verdict, statistics and counterexamples."""
    opt = options or Options()
    if opt.mode == "swarm" or opt.workers > 1 or opt.backend != "local":
        from .parallel import parallel_check

        one_process = [
            name
            for name, on in (
                ("symmetry", opt.symmetry),
                ("por", opt.por),
                ("store", opt.store != "full"),
                ("max_memory", opt.max_memory is not None),
                ("checkpoint_dir", opt.checkpoint_dir is not None),
                ("resume_from", opt.resume_from is not None),
            )
            if on
        ]
        if one_process:
            raise ValueError(
                f"Options.{one_process[0]} applies to a search in one process, not to the "
                "partitioned or swarm search"
            )

        return parallel_check(model, opt)
    search = _Search(model, opt)
    runner = {"bfs": _bfs, "dfs": _dfs, "random": _random}.get(opt.mode)
    if runner is None:
        raise ValueError(f"unknown search mode {opt.mode!r} (bfs, dfs or random)")
    try:
        with search.longrun.signals():
            runner(search)
        search.longrun.finished()
    except KeyboardInterrupt:
        search.interrupted = True
        # The interrupt may have landed inside a step, between two writes to the world:
        # put the stored state back before replaying counterexamples.
        search.system.reload()
    except MemoryError:
        search.incomplete = "out of memory"
        search.exhaustive = False
        search.system.reload()
    finally:
        if search.froze:
            gc.unfreeze()  # what the search froze is the collector's again (cycles freed)
    return search.result()


# -- breadth-first ---------------------------------------------------------------------


def _expandable(s: _Search, state: State) -> bool:
    """Whether some actor can take a step in state (a blocked step is no step)."""
    return any(out.kind != "blocked" for _, _, out in s.system.successors(state))


def _bfs(s: _Search) -> None:
    sys = s.system
    opt = s.opt
    must_finish = [i for i, a in enumerate(sys.actors) if a.must_finish]
    red = s.reduce
    state_cost = s.model.state_cost if opt.costs else None
    g: AnyGraph
    if opt.resume_from is not None:
        g, queue = checkpoint.restore(s, checkpoint.read(opt.resume_from)[1])
    else:
        g = _new_graph(s, opt.costs or (opt.liveness and bool(must_finish)))
        s.stats.states = 1
        s.on_new_state(sys.initial, lambda: [])
        queue = deque([sys.initial])
    find, depth = g.find, g.depth
    red.bind_store(g)
    d = 0

    def seen(key: State) -> bool:
        # for the cycle proviso (engine/por.py): found already, at most as deep as state
        at = find(key)
        return at is not None and depth[at] <= d

    run = s.longrun
    # The queue holds the states numbered idx .. len(g) - 1, in order: every state found is
    # appended, and popped in turn (so it needs no index beside each state).
    idx = len(g) - len(queue) - 1
    while queue and not s.done():
        if run.active:  # between two states: memory limit, checkpoints, signals
            old = g
            g = run.boundary(g, queue)
            if s.incomplete:
                break
            if g is not old:
                find, depth = g.find, g.depth
                red.bind_store(g)
                del old
                run.released()
        state = queue.popleft()
        idx += 1
        d = depth[idx]
        s.stats.max_depth = max(s.stats.max_depth, d)
        if opt.max_depth is not None and d >= opt.max_depth:
            if _expandable(s, state):
                s.exhaustive = False
                s.bound = f"depth {opt.max_depth}"
            else:
                s.on_stuck(state, lambda i=idx: g.path_to(i), (idx, d))  # type: ignore[misc]
            continue
        s.expanded = idx + 1
        mask = 0
        base: dict[str, int] = {}
        if state_cost is not None:
            sys.world.load(state[0])
            base = {k: v for k, v in state_cost(sys.root).items() if v}
        for actor, script, out in red.successors(state, seen):
            if out.kind == "blocked":
                continue
            mask |= 1 << actor
            s.stats.transitions += 1
            if out.kind != "ok":
                s.on_outcome_failure(
                    out.kind,
                    out.message,
                    g.path_to(idx) + [(actor, script)],
                    out.prop,
                    (idx, actor, script, d + 1),
                )
                continue
            if out.failures:
                s.on_step_failures(
                    out,
                    lambda a=actor, c=script: g.path_to(idx) + [(a, c)],  # type: ignore[misc]
                    (idx, actor, script, d + 1),
                )
            child = out.state
            assert child is not None
            try:
                key = red.key(child)
                cidx = find(key)
            except (TypeError, ModelError):
                s.unhashable(child)
                raise
            if cidx is None:
                if opt.max_states is not None and s.stats.states >= opt.max_states:
                    s.exhaustive = False
                    s.bound = f"{opt.max_states} states"
                    continue
                cidx = g.add(key, idx, (actor, script))
                s.stats.states += 1
                s.on_new_state(child, lambda c=cidx: g.path_to(c), (cidx, d + 1))  # type: ignore[misc]
                red.reached(child, cidx, d + 1)
                queue.append(child)
            if g.keep_graph:
                g.edges[idx].append((cidx, actor, script))
                if opt.costs:
                    g.weights[idx].append(_edge_cost(base, out.events))
        if g.keep_graph:
            g.enabled[idx] = mask
        if not mask:
            s.on_stuck(state, lambda i=idx: g.path_to(i), (idx, d))  # type: ignore[misc]
            if g.keep_graph and not sys.unfinished(state):
                g.final.add(idx)
        s.tick(d, len(queue))
    if queue and not s.incomplete:
        s.exhaustive = False
        s.bound = s.bound or "stopped at first violation"
    _note_store(s, g)
    if opt.simplest and not red.active:
        simplest(s, g)
    _check_progress(s, g, must_finish)
    if opt.costs:
        _compute_costs(s, g)


def _new_graph(s: _Search, keep_graph: bool) -> AnyGraph:
    """The store the options ask for; the full one when the stored graph is needed."""
    opt, sys = s.opt, s.system
    if opt.store not in STORES:
        raise ValueError(f"unknown store {opt.store!r} (full or fingerprint)")
    initial = s.reduce.key(sys.initial)
    if opt.store == "full":
        return Graph(initial, keep_graph)
    if keep_graph:
        need = "exact cost ranges" if opt.costs else "the progress check of must-finish actors"
        s.notes.append(
            f"the full store was used instead of fingerprints: {need} needs every transition"
        )
        return Graph(initial, keep_graph)
    return FingerprintGraph(sys, initial, s.codec(), s.reduce.fingerprint(s.codec()))


def _note_store(s: _Search, g: AnyGraph) -> None:
    """With fingerprints, the chance that a collision omitted a state (as TLC reports it)."""
    if isinstance(g, FingerprintGraph):
        p = g.collision_probability(s.stats.transitions)
        s.collision_probability = p
        s.notes.append(
            f"fingerprint store: {len(g):,} states kept as 64-bit fingerprints "
            f"({g.nbytes() / max(1, len(g)):.0f} bytes a state); probability that a "
            f"fingerprint collision omitted a state: at most {describe_probability(p)}"
        )


def _edge_cost(base: dict[str, int], events: tuple[str, ...]) -> dict[str, int] | None:
    if not base and not events:
        return None
    w = dict(base)
    for e in events:
        w[e] = w.get(e, 0) + 1
    return w


def _compute_costs(s: _Search, g: AnyGraph) -> None:
    """Exact cost ranges, only over a complete graph (a bounded one would understate)."""
    if not (s.exhaustive and not s.interrupted):
        s.notes.append("cost figures not computed: the search is not exhaustive")
        return
    if not g.keep_graph:
        return  # switched to fingerprints: the caveat says so
    graph = CostGraph(g.edges, g.weights, g.final)
    for metric in graph.metrics():
        figure = graph.range_of(metric, g.path_to)
        if figure is not None:
            s.costs[metric] = figure


def _check_progress(s: _Search, g: AnyGraph, must_finish: list[int]) -> None:
    """Look for a weakly fair cycle that starves a must-finish actor, on the whole graph."""
    if not must_finish:
        return
    if not s.opt.liveness:
        s.notes.append("progress of must-finish actors not checked (liveness off)")
        return
    if s.degraded_at and not g.keep_graph:
        return  # the caveat says so
    if not (g.keep_graph and s.exhaustive and not s.interrupted):
        if not s.done():
            why = "incomplete" if s.incomplete or s.interrupted else "bounded"
            s.notes.append(f"progress of must-finish actors not checked: the search is {why}")
        return
    if s.done():
        return
    sys = s.system
    states = g.states()  # insertion order is index order
    assert states is not None
    for a in must_finish:
        name = sys.actors[a].name
        unfinished = [st[1][a] is not None for st in states]
        lasso = find_fair_lasso(g.edges, g.enabled, unfinished, len(sys.actors))
        if lasso is not None:
            prefix_end, cycle = lasso
            path = g.path_to(prefix_end) + cycle
            s.record(
                f"progress: {name}",
                "progress",
                f"{name} can be starved forever under weak fairness (a fair cycle in which "
                f"it never finishes)",
                path,
                loop=len(path) - len(cycle),
            )
        elif not s.model.deadlock or sys.actors[a].daemon:
            # Stuck for good in a state where nobody can move is starvation too. It is
            # usually reported as a deadlock; only when that report is off (Model.deadlock
            # False, or the actor is a daemon) must it be reported here.
            stuck = next(
                (i for i in range(len(states)) if unfinished[i] and not g.enabled[i]), None
            )
            if stuck is not None:
                s.record(
                    f"progress: {name}",
                    "progress",
                    f"{name} waits forever: it has not finished and no actor can move "
                    f"(at {sys.location(states[stuck], a)})",
                    g.path_to(stuck),
                )
        if s.done():
            break


# -- depth-first -----------------------------------------------------------------------


def _dfs(s: _Search) -> None:
    """Depth-first search; with max_depth, a state reached again by a shorter path is
    explored again, so that everything within the bound is covered."""
    sys = s.system
    opt = s.opt
    bounded = opt.max_depth is not None
    must_finish = [i for i, a in enumerate(sys.actors) if a.must_finish]
    g = Graph(s.reduce.key(sys.initial), opt.liveness and bool(must_finish) and not bounded)
    index, depth = g.index, g.depth
    red = s.reduce
    s.stats.states = 1
    path: Path = []  # the steps that led to the top of the stack
    s.on_new_state(sys.initial, lambda: [])
    stack: list[tuple[State, int, Iterator[tuple[int, tuple[int, ...], Outcome]]]] = [
        (sys.initial, 0, red.successors(sys.initial, index.__contains__))
    ]
    masks = [0]
    while stack and not s.done():
        state, idx, it = stack[-1]
        d = len(stack) - 1
        s.stats.max_depth = max(s.stats.max_depth, d)
        if opt.max_depth is not None and d >= opt.max_depth:
            if _expandable(s, state):
                s.exhaustive = False
                s.bound = f"depth {opt.max_depth}"
            else:
                s.on_stuck(state, lambda: list(path))
            stack.pop()
            masks.pop()
            if path:
                path.pop()
            continue
        nxt = next(it, None)
        if nxt is None:
            if g.keep_graph:
                g.enabled[idx] = masks[-1]
            if not masks[-1]:
                s.on_stuck(state, lambda: list(path))
            stack.pop()
            masks.pop()
            if path:
                path.pop()
            s.tick(d, len(stack))
            continue
        actor, script, out = nxt
        if out.kind == "blocked":
            continue
        masks[-1] |= 1 << actor
        s.stats.transitions += 1
        if out.kind != "ok":
            s.on_outcome_failure(out.kind, out.message, path + [(actor, script)], out.prop)
            continue
        if out.failures:
            s.on_step_failures(out, lambda a=actor, c=script: path + [(a, c)])  # type: ignore[misc]
        child = out.state
        assert child is not None
        try:
            key = red.key(child)
            cidx = index.get(key)
        except TypeError:
            s.unhashable(child)
            raise
        if cidx is None:
            if opt.max_states is not None and s.stats.states >= opt.max_states:
                s.exhaustive = False
                s.bound = f"{opt.max_states} states"
                continue
            cidx = g.add(key, idx, (actor, script))
            depth[cidx] = d + 1
            s.stats.states += 1
            path.append((actor, script))
            s.on_new_state(child, lambda: list(path))
            red.reached(child, cidx, d + 1)
        elif bounded and depth[cidx] > d + 1:
            # Found again by a shorter path: explore it again, its subtree may now fit.
            depth[cidx] = d + 1
            g.parent[cidx] = idx
            g.via[cidx] = (actor, script)
            path.append((actor, script))
        else:
            if g.keep_graph:
                g.edges[idx].append((cidx, actor, script))
            continue
        if g.keep_graph:
            g.edges[idx].append((cidx, actor, script))
        stack.append((child, cidx, red.successors(child, index.__contains__)))
        masks.append(0)
    if stack:
        s.exhaustive = False
        s.bound = s.bound or "stopped at first violation"
    _check_progress(s, g, must_finish)


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
        s.notes.append(
            "progress (must-finish actors) is checked only by exhaustive search (bfs or dfs)"
        )
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
                s.on_stuck(state, lambda: list(path))
                break
            actor, script, out = outs[rng.randrange(len(outs))]
            s.stats.transitions += 1
            if out.kind != "ok":
                s.on_outcome_failure(out.kind, out.message, path + [(actor, script)], out.prop)
                break
            if out.failures:
                s.on_step_failures(out, lambda a=actor, c=script: path + [(a, c)])  # type: ignore[misc]
            assert out.state is not None
            state = out.state
            path.append((actor, script))
            s.stats.max_depth = max(s.stats.max_depth, len(path))
            try:
                new = state not in seen
            except TypeError:
                s.unhashable(state)
                raise
            if new:
                seen.add(state)
                s.stats.states += 1
            s.on_new_state(state, lambda: list(path))
            s.tick(len(path), opt.runs - s.stats.runs)
            if s.done():
                break
