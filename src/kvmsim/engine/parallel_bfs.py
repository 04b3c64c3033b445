"""The coordinator of the hash-partitioned breadth-first search (see ``partition``).

It seeds the owner of the initial state, runs the levels one by one on a ``Cluster`` (local
processes or Ray actors), merges the workers' reports and rebuilds each counterexample as
soon as its property is first violated, so that a Ctrl-C keeps what was found. The
progress of must-finish actors is decided on the graph the workers kept, gathered here at
the end (``parallel_liveness``); exact costs need the graph with its costs in one process:
that search runs in one process instead, with a note that says why.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from .codec import StateCodec
from .longrun import terminate_as_interrupt
from .model import Model
from .parallel_liveness import Starved, starved
from .partition import Entry, Found, LevelReport, Node, Parts, SearchSpec, lowest, ship_shares
from .system import System
from .trace import Path, replay

if TYPE_CHECKING:
    from .explore import Options, Result


class Cluster(Protocol):
    """The workers of a partitioned search: local processes or Ray actors."""

    def seed(self, w: int, fp: int, parts: Parts) -> LevelReport: ...

    def level(self, depth: int, ship: list[float]) -> list[LevelReport]: ...

    def entry(self, w: int, fp: int) -> Entry: ...

    def graph(self, w: int) -> dict[int, Node]: ...

    def close(self) -> None: ...


def partitioned_check(
    model: Model, opt: Options, cluster_for: Callable[[SearchSpec], Cluster] | None = None
) -> Result:
    """The search of ``opt.workers`` partitions, on local processes or Ray (as opt says), or
    on the cluster ``cluster_for`` makes (the in-process one of the tests and benchmarks)."""
    from .explore import check

    if opt.costs:
        result = check(model, replace(opt, workers=1, backend="local"))
        result.notes.append(
            f"ran in one process, not {opt.workers} workers: exact cost figures need the "
            "whole state graph with its costs in one process"
        )
        return result
    search = _Coordinator(model, opt)
    spec = SearchSpec(
        max(1, opt.workers),
        opt.max_depth,
        opt.simplest,
        opt.collect_terminal,
        tuple(search.must_finish) if opt.liveness else (),
    )
    cluster: Cluster
    if cluster_for is not None:
        cluster = cluster_for(spec)
    elif opt.backend == "ray":
        from .ray_backend import RayCluster

        cluster = RayCluster(model, opt.builder, spec, opt.ray_address)
    else:
        from .processes import LocalCluster

        cluster = LocalCluster(model, opt.builder, spec)
    try:
        with terminate_as_interrupt():
            search.run(cluster)
            search.check_progress(cluster)
    except KeyboardInterrupt:
        search.interrupted = True
    finally:
        cluster.close()
    return search.result()


class _Coordinator:
    """Drives the levels, merges the workers' reports, rebuilds counterexamples."""

    def __init__(self, model: Model, opt: Options) -> None:
        self.model = model
        self.opt = opt
        self.n = max(1, opt.workers)
        self.system = System(model)
        self.codec = StateCodec(self.system)
        self.start = time.perf_counter()
        self.states = 0
        self.transitions = 0
        self.max_depth = 0
        self.found: dict[str, Found] = {}
        self.paths: dict[str, Path] = {}
        self.sometimes: set[str] = set()
        self.terminal: list[bytes] = []
        self.exhaustive = True
        self.bound = ""
        self.interrupted = False
        self.notes: list[str] = []
        self.cpu = [0.0] * self.n  # each worker's CPU seconds
        self.must_finish = [i for i, a in enumerate(self.system.actors) if a.must_finish]
        self.starved: list[Starved] = []

    def run(self, cluster: Cluster) -> None:
        opt = self.opt
        initial = self.system.initial
        self.root = self.codec.part_fingerprint(initial)
        parts = tuple(self.codec.encode_parts(initial))
        self.states = cluster.seed(self.root % self.n, self.root, parts).new_states
        depth = 0
        held = [0] * self.n
        held[self.root % self.n] = 1
        while True:
            level = LevelReport()
            for w, report in enumerate(cluster.level(depth, ship_shares(held))):
                level.merge(report)
                self.cpu[w] = report.cpu
                held[w] = report.frontier
            self.max_depth = depth
            self.transitions += level.transitions
            self.states += level.new_states
            self.sometimes |= level.sometimes
            self.terminal += level.terminal
            if level.bounded:
                self.exhaustive, self.bound = False, f"depth {opt.max_depth}"
            for f in sorted(level.found.values(), key=lambda f: f.key):
                if f.prop not in self.found:  # later levels only find longer ones
                    self.paths[f.prop] = self._path(cluster, f)
                    self.found[f.prop] = f
            self._tick(depth, level.frontier)
            if opt.stop_at_first and self.found:
                first = min(self.found.values(), key=lambda f: f.key)
                self.found = {first.prop: first}
                if level.frontier:
                    self.exhaustive = False
                    self.bound = self.bound or "stopped at first violation"
                return
            if not level.frontier:
                return
            if opt.max_states is not None and self.states >= opt.max_states:
                self.exhaustive, self.bound = False, f"{opt.max_states} states"
                self.notes.append(
                    f"with {self.n} workers the state bound is applied at the end of a level"
                )
                return
            depth += 1

    def check_progress(self, cluster: Cluster) -> None:
        """Must-finish actors, on the graph the workers kept (as the one-process search)."""
        if not self.must_finish:
            return
        if not self.opt.liveness:
            self.notes.append("progress of must-finish actors not checked (liveness off)")
            return
        stopped = self.opt.stop_at_first and bool(self.found)
        if not (self.exhaustive and not self.interrupted):
            if not stopped:
                self.notes.append(
                    "progress of must-finish actors not checked: the search is bounded"
                )
            return
        if stopped:
            return
        graph: dict[int, Node] = {}
        for w in range(self.n):
            graph.update(cluster.graph(w))
        found = starved(
            self.system,
            graph,
            self.root,
            self.must_finish,
            lambda fp: self._walk(cluster, fp, -1, ()),
            self.codec.decode,
            self.model.deadlock,
        )
        self.starved = found[:1] if self.opt.stop_at_first else found

    def _path(self, cluster: Cluster, f: Found) -> Path:
        """Walk the parent links back from the violation, across the partitions."""
        path = self._walk(cluster, *f.at)
        assert len(path) == f.key[0], (len(path), f.key)
        return path

    def _walk(self, cluster: Cluster, fp: int, actor: int, script: tuple[int, ...]) -> Path:
        """A shortest path to the state fp (and then actor's step, unless actor is -1), with
        the fewest context switches."""
        entry = cluster.entry(fp % self.n, fp)
        if actor < 0:
            a, tail = lowest(entry[1]), []
        else:
            a = actor if (entry[1] >> actor) & 1 else lowest(entry[1])
            tail = [(actor, script)]
        steps: Path = []
        while fp != self.root:
            parent, choices = next((p, s) for b, p, s in entry[2] if b == a)
            steps.append((a, choices))
            fp = parent
            entry = cluster.entry(fp % self.n, fp)
            if not (entry[1] >> a) & 1:
                a = lowest(entry[1])
        steps.reverse()
        return steps + tail

    def _tick(self, depth: int, queue: int) -> None:
        if self.opt.progress is not None:
            from .explore import Progress

            now = time.perf_counter() - self.start
            self.opt.progress(Progress(self.states, self.transitions, depth, queue, now))

    def result(self) -> Result:
        from .explore import Result, Stats, Violation

        stats = Stats(
            states=self.states,
            transitions=self.transitions,
            max_depth=self.max_depth,
            seconds=time.perf_counter() - self.start,
            peak_memory_mb=_peak_memory_mb(),
        )
        descriptions = {p.name: p.description for p in self.model.properties}
        violations = []
        for prop, f in self.found.items():
            if prop not in self.paths:
                continue  # interrupted before its path was rebuilt
            trace, _ = replay(self.system, self.paths[prop])
            violations.append(Violation(prop, f.kind, f.message, trace, descriptions.get(prop, "")))
        for prop, message, path, loop in self.starved:
            trace, _ = replay(self.system, path, loop)
            violations.append(
                Violation(prop, "progress", message, trace, descriptions.get(prop, ""))
            )
        complete = self.exhaustive and not self.interrupted
        stopped = self.opt.stop_at_first and bool(self.found)
        if complete and not stopped:
            for p in self.model.sometimes_props:
                if p.name not in self.sometimes and p.required:
                    violations.append(
                        Violation(
                            p.name,
                            "sometimes",
                            f"no reachable state satisfies {p.name!r}: the scenario is vacuous",
                            None,
                            p.description,
                        )
                    )
        cpu = ", ".join(f"{c:.1f}" for c in self.cpu)
        self.notes.append(
            f"{self.n} workers ({self.opt.backend}; CPU seconds {cpu}), states told apart by "
            "64-bit fingerprints"
        )
        terminal = [self.system.world.describe(self.codec.decode(d)[0]) for d in self.terminal]
        return Result(
            self.model.name,
            "bfs",
            stats,
            violations,
            {p.name: p.name in self.sometimes for p in self.model.sometimes_props},
            self.exhaustive,
            self.bound,
            self.interrupted,
            self.notes,
            terminal,
        )


def _peak_memory_mb() -> float:
    """Peak resident memory of this process and its largest worker, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024
