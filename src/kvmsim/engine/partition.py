"""Hash-partitioned, level-synchronous breadth-first search over N workers.

Worker w owns the states whose fingerprint (``StateCodec.part_fingerprint``, stable across
processes and machines) is w modulo N. Each level, every worker expands the states of its
frontier, sends each new successor it does not own (encoded by the state codec, part by
part) to its owner, and absorbs what it is sent: a state not yet in its table joins the next
frontier. A barrier
per level keeps the search breadth-first, so every counterexample is a shortest one.

Every choice is made by a least key, never by arrival order, so the result does not depend
on N: a state keeps, per actor, the least (parent fingerprint, choices) among the shortest
ways to reach it with the fewest context switches (the dynamic program of
``simplest.simplest``, carried along the levels), and a property's counterexample is the
least by (length, context switches, fingerprint, step). The path is rebuilt by walking those
parent links back across the partitions, then replayed in the main process.
"""

from __future__ import annotations

import gc
import marshal
import time
from dataclasses import dataclass, field
from typing import Any

from .codec import MARSHAL_VERSION, StateCodec
from .model import Model
from .system import State, System
from .workers import VALIDATE_STATES, deadlock_message, failure_name, invariant_message
from .world import ModelError

# (fewest context switches, actors that can take the last step of such a path, per such
# actor the least (actor, parent fingerprint, choices)) of a state in its owner's table.
Entry = tuple[int, int, tuple[tuple[int, int, tuple[int, ...]], ...]]
# A state's encoding, part by part (``StateCodec.encode_parts``): a batch pickles each
# distinct part once, and the receiver decodes without unmarshalling the whole.
Parts = tuple[bytes, ...]
# A successor on its way to its owner: (fp, encoding, switches, last-actor mask, parents
# {actor: (parent fingerprint, choices)}).
Candidate = tuple[int, Parts, int, int, dict[int, tuple[int, tuple[int, ...]]]]
# Where a property is violated: (fingerprint of the state, actor, choices); actor -1 for a
# violating state, else the violating step from that state.
Endpoint = tuple[int, int, tuple[int, ...]]
# The order among violations of a property: (length, switches, fingerprint, actor, choices).
Key = tuple[int, int, int, int, tuple[int, ...]]


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
        # (fp, encoding when sent, the state itself when this worker made it)
        self.frontier: list[tuple[int, Parts | None, State | None]] = []
        self.own: dict[int, list[Any]] = {}  # this level's successors this worker owns
        self.pending = {p.name for p in model.sometimes_props}
        self.best: dict[str, Found] = {}
        self.sent: set[int] = set()  # the last level's successors sent to others
        self.graph: dict[int, Node] = {}  # with spec.must_finish: every expanded state
        self.checked = 0
        self.gc_enabled = gc.isenabled()

    def owner(self, fp: int) -> int:
        return fp % self.n

    def encode_parts(self, state: State) -> Parts:
        try:
            return tuple(self.codec.encode_parts(state))
        except (ModelError, TypeError):
            self.system.validate_state(state)  # the one-process search's words for it
            raise

    def encode(self, state: State) -> bytes:
        return marshal.dumps(self.encode_parts(state), MARSHAL_VERSION)

    def seed(self, fp: int, parts: Parts) -> LevelReport:
        """Take the initial state (this worker owns it): it may move from any actor."""
        self.table[fp] = (0, -1, ())
        self.frontier = [(fp, parts, None)]
        return LevelReport(new_states=1, frontier=1)

    def entry(self, fp: int) -> Entry:
        return self.table[fp]

    # -- one level -------------------------------------------------------------------------
    def expand(self, depth: int) -> tuple[list[list[Candidate]], LevelReport]:
        """Expand the frontier (at depth): the candidates for each other owner (its own
        are kept for absorb; their slot is empty), and a report.

        Each successor is named by its ``part_fingerprint``, computed from its parent's (a
        cache lookup for each part the step changed): it says the owner and whether the
        state is known. Only a new state for another worker is encoded, once, when the
        level's batches are made; a state this worker owns stays live, never encoded."""
        self.gc_enabled = gc.isenabled()
        gc.disable()  # until absorb: see there
        report = LevelReport()
        maps: list[dict[int, list[Any]]] = [{} for _ in range(self.n)]
        system, table = self.system, self.table
        fingerprints, decode = self.codec.part_fingerprints, self.codec.decode_parts
        fingerprint = self.codec.child_fingerprint
        simplest, n, me = self.spec.simplest, self.n, self.index
        mine = maps[me]
        limit = self.spec.max_depth
        # Successors sent in the last level are known to their owners: not sent again.
        sent = self.sent
        for fp, parts, live in self.frontier:
            state = decode(parts) if live is None else live
            edges: list[tuple[int, int, tuple[int, ...]]] | None = (
                [] if self.spec.must_finish else None
            )
            fewest, last, _ = table[fp]
            self._check_state(fp, state, depth, fewest, report)
            if limit is not None and depth >= limit:
                if any(o.kind != "blocked" for _, _, o in system.successors(state)):
                    report.bounded = True
                else:
                    self._stuck(fp, state, depth, fewest, report)
                    if edges is not None:
                        self._node(fp, state, 0, edges)
                continue
            mask = 0
            hs, total = fingerprints(state)
            for actor, script, out in system.successors(state):
                if out.kind == "blocked":
                    continue
                mask |= 1 << actor
                report.transitions += 1
                cost = (fewest if (last >> actor) & 1 else fewest + 1) if simplest else 0
                if out.kind != "ok":
                    prop, kind = failure_name(out)
                    self._found(
                        prop, kind, out.message, (depth + 1, cost, fp, actor, script), report
                    )
                    continue
                for prop, message in out.failures:
                    key = (depth + 1, cost, fp, actor, script)
                    self._found(prop, "property", message, key, report)
                child = out.state
                assert child is not None
                try:
                    cfp = fingerprint(child, state, hs, total)
                except (ModelError, TypeError):
                    system.validate_state(child)  # the one-process search's words for it
                    raise
                if edges is not None:
                    edges.append((cfp, actor, script))
                owner = cfp % n
                bucket = mine if owner == me else maps[owner]
                cand = bucket.get(cfp)
                link = (fp, script)
                if cand is None:
                    if owner == me:
                        if cfp not in table:
                            mine[cfp] = [None, cost, 1 << actor, {actor: link}, child]
                    elif cfp not in sent:
                        bucket[cfp] = [child, cost, 1 << actor, {actor: link}, None]
                elif cost < cand[1]:
                    cand[1], cand[2], cand[3] = cost, 1 << actor, {actor: link}
                elif cost == cand[1]:
                    cand[2] |= 1 << actor
                    old = cand[3].get(actor)
                    if old is None or link < old:
                        cand[3][actor] = link
            if not mask:
                self._stuck(fp, state, depth, fewest, report)
            if edges is not None:
                self._node(fp, state, mask, edges)
        self.frontier = []
        self.own = mine
        maps[me] = {}
        self.sent = set()
        encode = self.encode_parts
        outgoing: list[list[Candidate]] = []
        for bucket in maps:
            self.sent.update(bucket)
            outgoing.append([(cfp, encode(c[0]), c[1], c[2], c[3]) for cfp, c in bucket.items()])
        return outgoing, report

    def absorb(self, batches: list[list[Candidate]]) -> LevelReport:
        """Take this worker's own successors and those the others sent it: the states not in
        its table form the next frontier (those sent are decoded when expanded)."""
        table = self.table
        merged, self.own = self.own, {}
        for batch in batches:
            for cfp, parts, cost, mask, links in batch:
                if cfp in table:
                    continue
                cand = merged.get(cfp)
                if cand is None:
                    merged[cfp] = [parts, cost, mask, links, None]
                elif cost < cand[1]:
                    cand[1], cand[2], cand[3] = cost, mask, links
                elif cost == cand[1]:
                    cand[2] |= mask
                    mine = cand[3]
                    for a, link in links.items():
                        old = mine.get(a)
                        if old is None or link < old:
                            mine[a] = link
        frontier = self.frontier
        for cfp, (parts, cost, mask, links, live) in merged.items():
            if len(links) == 1:
                ((a, (p, s)),) = links.items()
                table[cfp] = (cost, mask, ((a, p, s),))
            else:
                table[cfp] = (cost, mask, tuple((a, p, s) for a, (p, s) in sorted(links.items())))
            frontier.append((cfp, parts, live))
        # The cyclic garbage collector stays off through the level, and what the level
        # kept is then frozen (never walked again): left on, the collector walks the ever
        # larger table again and again (half a worker's time on a model of 200,000 states),
        # and even one walk of each level's new tuples costs a sixth. States and the table
        # hold no cycles; a step makes none in the models we know (the one-process search
        # collects a few hundred objects in a whole run), and refcounting frees the rest.
        gc.freeze()
        if self.gc_enabled:
            gc.enable()
        new = len(merged)
        return LevelReport(new_states=new, frontier=new, cpu=time.process_time())

    def _node(
        self,
        fp: int,
        state: State,
        mask: int,
        edges: list[tuple[int, int, tuple[int, ...]]],
    ) -> None:
        waiting = 0
        for a in self.spec.must_finish:
            if state[1][a] is not None:
                waiting |= 1 << a
        self.graph[fp] = (mask, edges, waiting, self.encode(state) if waiting and not mask else b"")

    def take_graph(self) -> dict[int, Node]:
        """The graph kept for the liveness check (handed over once, then dropped here)."""
        graph, self.graph = self.graph, {}
        return graph

    # -- what a state or step breaks ---------------------------------------------------------
    def _check_state(
        self, fp: int, state: State, depth: int, fewest: int, report: LevelReport
    ) -> None:
        system = self.system
        self.checked += 1
        if self.checked <= VALIDATE_STATES:
            system.validate_state(state)
        for prop, _desc in system.check_invariants(state):
            key = (depth, fewest, fp, -1, ())
            self._found(prop, "invariant", invariant_message(prop), key, report)
        if self.pending:
            for prop in system.check_sometimes(state, self.pending):
                self.pending.discard(prop)
                report.sometimes.add(prop)

    def _stuck(self, fp: int, state: State, depth: int, fewest: int, report: LevelReport) -> None:
        if self.spec.collect_terminal:
            report.terminal.append(self.encode(state))
        if not self.model.deadlock:
            return
        message = deadlock_message(self.system, state)
        if message is not None:
            self._found("deadlock", "deadlock", message, (depth, fewest, fp, -1, ()), report)

    def _found(self, prop: str, kind: str, message: str, key: Key, report: LevelReport) -> None:
        """Report a violation when it is the least of its property this worker has seen."""
        old = self.best.get(prop)
        if old is not None and old.key <= key:
            return
        f = Found(prop, kind, message, key, (key[2], key[3], key[4]))
        self.best[prop] = f
        report.found[prop] = f


def lowest(mask: int) -> int:
    return (mask & -mask).bit_length() - 1
