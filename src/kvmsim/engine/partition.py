"""Hash-partitioned, level-synchronous breadth-first search over N workers.

Worker w owns the states whose fingerprint is w modulo N. Each level, every worker expands
the states of its frontier, sends each successor (encoded by the state codec) to its owner,
and absorbs what it is sent: a state not yet in its table joins the next frontier. A barrier
per level keeps the search breadth-first, so every counterexample is a shortest one.

Every choice is made by a least key, never by arrival order, so the result does not depend
on N: a state keeps, per actor, the least (parent fingerprint, choices) among the shortest
ways to reach it with the fewest context switches (the dynamic program of
``explore._simplest``, carried along the levels), and a property's counterexample is the
least by (length, context switches, encoding, step). The path is rebuilt by walking those
parent links back across the partitions, then replayed in the main process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .codec import StateCodec
from .model import Model
from .system import State, System
from .workers import VALIDATE_STATES, deadlock_message, failure_name, invariant_message
from .world import ModelError

# (fewest context switches, actors that can take the last step of such a path, per such
# actor the least (actor, parent fingerprint, choices)) of a state in its owner's table.
Entry = tuple[int, int, tuple[tuple[int, int, tuple[int, ...]], ...]]
# A successor on its way to its owner: (fp, encoding, switches, last-actor mask, parents
# {actor: (parent fingerprint, choices)}).
Candidate = tuple[int, bytes, int, int, dict[int, tuple[int, tuple[int, ...]]]]
# Where a property is violated: (fingerprint of the state, actor, choices); actor -1 for a
# violating state, else the violating step from that state.
Endpoint = tuple[int, int, tuple[int, ...]]
# The order among violations of a property: (length, switches, encoding, actor, choices).
Key = tuple[int, int, bytes, int, tuple[int, ...]]


@dataclass
class Found:
    prop: str
    kind: str
    message: str
    key: Key
    at: Endpoint


@dataclass
class LevelReport:
    """What one worker did in one level (summed over the workers by the coordinator)."""

    new_states: int = 0
    transitions: int = 0
    frontier: int = 0  # states waiting for the next level
    bounded: bool = False  # a state at max_depth could still move
    found: dict[str, Found] = field(default_factory=dict)
    sometimes: set[str] = field(default_factory=set)
    terminal: list[bytes] = field(default_factory=list)
    cpu: float = 0.0  # the worker's CPU seconds so far (the largest, once merged)

    def merge(self, other: LevelReport) -> None:
        self.new_states += other.new_states
        self.transitions += other.transitions
        self.frontier += other.frontier
        self.bounded |= other.bounded
        for f in other.found.values():
            keep_least(self.found, f)
        self.sometimes |= other.sometimes
        self.terminal += other.terminal
        self.cpu = max(self.cpu, other.cpu)


def keep_least(found: dict[str, Found], f: Found) -> None:
    old = found.get(f.prop)
    if old is None or f.key < old.key:
        found[f.prop] = f


@dataclass(frozen=True)
class SearchSpec:
    """What every worker needs to know about the search (plain data)."""

    workers: int
    max_depth: int | None
    simplest: bool
    collect_terminal: bool
    must_finish: tuple[int, ...] = ()  # keep the graph of these actors' progress (liveness)


# The graph a liveness check needs, per expanded state: (enabled actors, edges (target
# fingerprint, actor, choices), must-finish actors not finished as bits, the encoding when
# such an actor waits there forever with no actor able to move, else b"").
Node = tuple[int, list[tuple[int, int, tuple[int, ...]]], int, bytes]


class Partition:
    """One worker's share of the search: its table, its frontier and its findings."""

    def __init__(self, index: int, model: Model, spec: SearchSpec) -> None:
        self.index = index
        self.n = spec.workers
        self.spec = spec
        self.model = model
        self.system = System(model)
        self.codec = StateCodec(self.system)
        self.table: dict[int, Entry] = {}
        # (fp, encoding, the state itself when this worker made it: no need to decode it)
        self.frontier: list[tuple[int, bytes, State | None]] = []
        self.own: dict[int, list[Any]] = {}  # this level's successors this worker owns
        self.pending = {p.name for p in model.sometimes_props}
        self.best: dict[str, Found] = {}
        self.sent: dict[State, int] = {}  # the last level's successors (see expand)
        self.graph: dict[int, Node] = {}  # with spec.must_finish: every expanded state
        self.checked = 0

    def owner(self, fp: int) -> int:
        return fp % self.n

    def encode(self, state: State) -> bytes:
        try:
            return self.codec.encode(state)
        except (ModelError, TypeError):
            self.system.validate_state(state)  # the one-process search's words for it
            raise

    def initial(self) -> tuple[int, bytes]:
        data = self.encode(self.system.initial)
        return self.codec.fingerprint_bytes(data), data

    def seed(self, fp: int, data: bytes) -> LevelReport:
        """Take the initial state (this worker owns it): it may move from any actor."""
        self.table[fp] = (0, -1, ())
        self.frontier = [(fp, data, None)]
        return LevelReport(new_states=1, frontier=1)

    def entry(self, fp: int) -> Entry:
        return self.table[fp]

    # -- one level -------------------------------------------------------------------------
    def expand(self, depth: int) -> tuple[list[list[Candidate]], LevelReport]:
        """Expand the frontier (at depth): the candidates for each other owner (its own
        are kept for absorb; their slot is empty), and a report."""
        report = LevelReport()
        maps: list[dict[int, list[Any]]] = [{} for _ in range(self.n)]
        system, codec, table = self.system, self.codec, self.table
        fingerprint = codec.fingerprint_bytes
        simplest, n, me = self.spec.simplest, self.n, self.index
        limit = self.spec.max_depth
        # States known to their owners (this level's, and the last level's successors, sent
        # then) and this level's successors so far: a state met again is neither encoded
        # again nor sent twice. Cheaper than the codec: Python's own hash of the tuples.
        known = self.sent
        fresh: dict[State, int] = {}
        for fp, data, live in self.frontier:
            state = codec.decode(data) if live is None else live
            known[state] = fp
            edges: list[tuple[int, int, tuple[int, ...]]] | None = (
                [] if self.spec.must_finish else None
            )
            fewest, last, _ = table[fp]
            self._check_state(fp, data, state, depth, fewest, report)
            if limit is not None and depth >= limit:
                if any(o.kind != "blocked" for _, _, o in system.successors(state)):
                    report.bounded = True
                else:
                    self._stuck(fp, data, state, depth, fewest, report)
                    if edges is not None:
                        self._node(fp, data, state, 0, edges)
                continue
            mask = 0
            for actor, script, out in system.successors(state):
                if out.kind == "blocked":
                    continue
                mask |= 1 << actor
                report.transitions += 1
                cost = (fewest if (last >> actor) & 1 else fewest + 1) if simplest else 0
                if out.kind != "ok":
                    prop, kind = failure_name(out)
                    self._found(
                        prop, kind, out.message, (depth + 1, cost, data, actor, script), report
                    )
                    continue
                for prop, message in out.failures:
                    key = (depth + 1, cost, data, actor, script)
                    self._found(prop, "property", message, key, report)
                child = out.state
                assert child is not None
                try:
                    cfp = known.get(child)
                    if cfp is not None:
                        if edges is not None:
                            edges.append((cfp, actor, script))
                        continue
                    cfp = fresh.get(child)
                except TypeError:
                    system.validate_state(child)  # says which value cannot be hashed
                    raise
                if cfp is None:
                    cdata = self.encode(child)
                    cfp = fresh[child] = fingerprint(cdata)
                    if edges is not None:
                        edges.append((cfp, actor, script))
                    if cfp % n == me and cfp in table:
                        continue
                    maps[cfp % n][cfp] = [cdata, cost, 1 << actor, {actor: (fp, script)}, child]
                    continue
                if edges is not None:
                    edges.append((cfp, actor, script))
                cand = maps[cfp % n].get(cfp)
                link = (fp, script)
                if cand is None:  # known to its owner already
                    continue
                if cost < cand[1]:
                    cand[1], cand[2], cand[3] = cost, 1 << actor, {actor: link}
                elif cost == cand[1]:
                    cand[2] |= 1 << actor
                    old = cand[3].get(actor)
                    if old is None or link < old:
                        cand[3][actor] = link
            if not mask:
                self._stuck(fp, data, state, depth, fewest, report)
            if edges is not None:
                self._node(fp, data, state, mask, edges)
        self.frontier = []
        self.sent = fresh
        self.own = maps[me]
        maps[me] = {}
        outgoing: list[list[Candidate]] = [
            [(cfp, c[0], c[1], c[2], c[3]) for cfp, c in bucket.items()] for bucket in maps
        ]
        return outgoing, report

    def absorb(self, batches: list[list[Candidate]]) -> LevelReport:
        """Take this worker's own successors and those the others sent it: the states not in
        its table form the next frontier."""
        table = self.table
        merged, self.own = self.own, {}
        for batch in batches:
            for cfp, cdata, cost, mask, links in batch:
                if cfp in table:
                    continue
                cand = merged.get(cfp)
                if cand is None:
                    merged[cfp] = [cdata, cost, mask, links, None]
                elif cost < cand[1]:
                    cand[1], cand[2], cand[3] = cost, mask, links
                elif cost == cand[1]:
                    cand[2] |= mask
                    mine = cand[3]
                    for a, link in links.items():
                        old = mine.get(a)
                        if old is None or link < old:
                            mine[a] = link
        for cfp, (cdata, cost, mask, links, live) in merged.items():
            table[cfp] = (cost, mask, tuple((a, p, s) for a, (p, s) in sorted(links.items())))
            self.frontier.append((cfp, cdata, live))
        return LevelReport(new_states=len(merged), frontier=len(merged), cpu=time.process_time())

    def _node(
        self,
        fp: int,
        data: bytes,
        state: State,
        mask: int,
        edges: list[tuple[int, int, tuple[int, ...]]],
    ) -> None:
        waiting = 0
        for a in self.spec.must_finish:
            if state[1][a] is not None:
                waiting |= 1 << a
        self.graph[fp] = (mask, edges, waiting, data if waiting and not mask else b"")

    def take_graph(self) -> dict[int, Node]:
        """The graph kept for the liveness check (handed over once, then dropped here)."""
        graph, self.graph = self.graph, {}
        return graph

    # -- what a state or step breaks ---------------------------------------------------------
    def _check_state(
        self, fp: int, data: bytes, state: State, depth: int, fewest: int, report: LevelReport
    ) -> None:
        system = self.system
        self.checked += 1
        if self.checked <= VALIDATE_STATES:
            system.validate_state(state)
        for prop, _desc in system.check_invariants(state):
            key = (depth, fewest, data, -1, ())
            self._found(prop, "invariant", invariant_message(prop), key, report)
        if self.pending:
            for prop in system.check_sometimes(state, self.pending):
                self.pending.discard(prop)
                report.sometimes.add(prop)

    def _stuck(
        self, fp: int, data: bytes, state: State, depth: int, fewest: int, report: LevelReport
    ) -> None:
        if self.spec.collect_terminal:
            report.terminal.append(data)
        if not self.model.deadlock:
            return
        message = deadlock_message(self.system, state)
        if message is not None:
            self._found("deadlock", "deadlock", message, (depth, fewest, data, -1, ()), report)

    def _found(self, prop: str, kind: str, message: str, key: Key, report: LevelReport) -> None:
        """Report a violation when it is the least of its property this worker has seen."""
        old = self.best.get(prop)
        if old is not None and old.key <= key:
            return
        fp = self.codec.fingerprint_bytes(key[2])
        f = Found(prop, kind, message, key, (fp, key[3], key[4]))
        self.best[prop] = f
        report.found[prop] = f


def lowest(mask: int) -> int:
    return (mask & -mask).bit_length() - 1
