"""Hash-partitioned, level-synchronous breadth-first search over N workers.

Worker w owns the table entries of the states whose fingerprint
(``StateCodec.part_fingerprint``, stable across processes and machines) is w modulo N, and
decides which of them are new. A state need not live with its owner, though: it is expanded
by a worker that holds it, normally one that found it. Each level has two exchanges. First,
every worker expands the states it holds and claims each successor it does not own from its
owner by fingerprint alone (a few integers), and ships only a share of them, encoded part by
part, to rebalance the load: the coordinator asks a worker that holds more than its share to
ship more. Then each owner merges the claims, enters the new states in its table, and grants
each new state that nobody shipped to the lowest worker that claimed it, with its table
entry's figures; a worker keeps the states it is granted and drops the rest. Most successors
thus stay where they were made, never encoded and never decoded, and each worker's step memo
sees states like the ones it has already stepped. A barrier per level keeps the search
breadth-first, so every counterexample is a shortest one.

Every choice is made by a least key, never by arrival order or by who holds a state, so the
result does not depend on N: a state keeps, per actor, the least (parent fingerprint,
choices) among the shortest ways to reach it with the fewest context switches (the dynamic
program of ``simplest.simplest``, carried along the levels), and a property's
counterexample is the least by (length, context switches, fingerprint, step). The path is
rebuilt by walking those parent links back across the owners' tables, then replayed in the
main process.
"""

from __future__ import annotations

import gc
import marshal
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from .codec import MARSHAL_VERSION, StateCodec
from .model import Model
from .system import State, System
from .workers import VALIDATE_STATES, deadlock_message, failure_name, invariant_message
from .world import ModelError

# (fewest context switches, actors that can take the last step of such a path, per such
# actor the least (actor, parent fingerprint, choices)) of a state in its owner's table.
Entry = tuple[int, int, tuple[tuple[int, int, tuple[int, ...]], ...]]
# A state's encoding, part by part (``StateCodec.encode_parts``): a batch carries each
# distinct part once, and the receiver decodes without unmarshalling the whole.
Parts = tuple[bytes, ...]
# A successor claimed from its owner: (fp, its encoding when shipped else None, switches,
# last-actor mask, parents {actor: (parent fingerprint, choices)}).
Candidate = tuple[int, Parts | None, int, int, dict[int, tuple[int, tuple[int, ...]]]]
# A new state granted to the worker that claimed it: (fp, switches, last-actor mask).
Grant = tuple[int, int, int]
# A state waiting to be expanded: (order, fp, encoding when shipped, the state and its part
# hashes when made or kept here, fewest switches, last-actor mask). Order is when this
# worker found it (shipped states after all of those).
Held = tuple[int, int, Parts | None, State | None, list[int] | None, int, int]
# The order given to shipped states: after every state a worker finds in a level.
SHIPPED_ORDER = 1 << 62
# The share of ``SHIP_SCALE`` of its claims a worker ships (fingerprint bits 32..47 below it).
SHIP_SCALE = 1 << 16
# The share shipped by a worker that holds no more than its even share: enough to undo the
# drift of chance, small enough that most states never leave the worker that made them.
BASE_SHIP = 1 / 16
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
        self.frontier: list[Held] = []  # the states this worker expands next
        self.own: dict[int, list[Any]] = {}  # this level's successors this worker owns
        # this level's claimed, unshipped successors: (the order they were found in, the
        # state, its part hashes)
        self.kept: dict[int, tuple[int, State, list[int]]] = {}
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
        self.frontier = [(0, fp, parts, None, None, 0, -1)]
        return LevelReport(new_states=1, frontier=1)

    def entry(self, fp: int) -> Entry:
        return self.table[fp]

    # -- one level -------------------------------------------------------------------------
    def expand(self, depth: int, ship: float = 1.0) -> tuple[list[list[Candidate]], LevelReport]:
        """Expand the states held here (at depth): the claims for each other owner (its own
        successors are kept for ``settle``; their slot is empty), and a report.

        Each successor is named by its ``part_fingerprint``, computed from its parent's (a
        cache lookup for each part the step changed): it says the owner and whether the
        state is known. A claim carries the state's encoding only for the ``ship`` share of
        fingerprints (a state every claimant ships lives with its owner); the rest stay
        here, live, until ``hold`` learns which of them this worker is to expand."""
        self.gc_enabled = gc.isenabled()
        gc.disable()  # until hold: see there
        report = LevelReport()
        maps: list[dict[int, list[Any]]] = [{} for _ in range(self.n)]
        system, table = self.system, self.table
        fingerprints, decode = self.codec.part_fingerprints, self.codec.decode_parts
        child_fingerprints = self.codec.child_fingerprints
        simplest, n, me = self.spec.simplest, self.n, self.index
        mine = maps[me]
        limit = self.spec.max_depth
        # Successors claimed in the last level are known to their owners: not claimed again.
        sent = self.sent
        found = 0  # successors found so far, new to this worker: their order (see hold)
        for _, fp, parts, live, hs, fewest, last in self.frontier:
            if live is None:  # shipped here
                state = decode(parts)
                hs = fingerprints(state)[0]
            else:
                state = live
            edges: list[tuple[int, int, tuple[int, ...]]] | None = (
                [] if self.spec.must_finish else None
            )
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
            assert hs is not None
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
                    chs, cfp = child_fingerprints(child, state, hs)
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
                            links = {actor: link}
                            mine[cfp] = [None, cost, 1 << actor, links, child, -1, found, chs]
                            found += 1
                    elif cfp not in sent:
                        bucket[cfp] = [child, cost, 1 << actor, {actor: link}, found, chs]
                        found += 1
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
        encode, kept = self.encode_parts, self.kept
        below = int(ship * SHIP_SCALE)
        outgoing: list[list[Candidate]] = []
        for bucket in maps:
            self.sent.update(bucket)
            claims: list[Candidate] = []
            for cfp, (child, cost, mask, links, order, chs) in bucket.items():
                if (cfp >> 32) % SHIP_SCALE < below:
                    claims.append((cfp, encode(child), cost, mask, links))
                else:
                    kept[cfp] = (order, child, chs)
                    claims.append((cfp, None, cost, mask, links))
            outgoing.append(claims)
        return outgoing, report

    def settle(self, claims: list[list[Candidate]]) -> tuple[list[list[Grant]], LevelReport]:
        """As owner: merge this worker's own successors with the claims (``claims[w]`` is
        worker w's; this worker's own slot is ignored), enter the new states in the table,
        and say who expands each: this worker when it made the state or was shipped it,
        else the lowest worker that kept it (the grants, per worker)."""
        table, me = self.table, self.index
        merged, self.own = self.own, {}
        arrived = SHIPPED_ORDER  # shipped states are expanded after those found here
        for sender, batch in enumerate(claims):
            if sender == me:
                continue
            for cfp, parts, cost, mask, links in batch:
                if cfp in table:
                    continue
                cand = merged.get(cfp)
                if cand is None:
                    keeper = -1 if parts is not None else sender
                    merged[cfp] = [parts, cost, mask, links, None, keeper, arrived, None]
                    arrived += 1
                    continue
                if cand[4] is None and cand[0] is None:
                    if parts is not None:
                        cand[0], cand[5] = parts, -1
                    elif sender < cand[5]:
                        cand[5] = sender
                if cost < cand[1]:
                    cand[1], cand[2], cand[3] = cost, mask, links
                elif cost == cand[1]:
                    cand[2] |= mask
                    mine = cand[3]
                    for a, link in links.items():
                        old = mine.get(a)
                        if old is None or link < old:
                            mine[a] = link
        frontier = self.frontier
        grants: list[list[Grant]] = [[] for _ in range(self.n)]
        for cfp, (parts, cost, mask, links, live, keeper, order, hs) in merged.items():
            if len(links) == 1:
                ((a, (p, s)),) = links.items()
                table[cfp] = (cost, mask, ((a, p, s),))
            else:
                table[cfp] = (cost, mask, tuple((a, p, s) for a, (p, s) in sorted(links.items())))
            if keeper < 0:
                frontier.append((order, cfp, parts, live, hs, cost, mask))
            else:
                grants[keeper].append((cfp, cost, mask))
        return grants, LevelReport(new_states=len(merged))

    def hold(self, grants: list[list[Grant]]) -> LevelReport:
        """Keep the states the owners granted this worker (``grants[w]`` from worker w), drop
        the other kept successors, and report what this worker will expand next level."""
        frontier, kept = self.frontier, self.kept
        for batch in grants:
            for cfp, cost, mask in batch:
                order, live, hs = kept[cfp]
                frontier.append((order, cfp, None, live, hs, cost, mask))
        self.kept = {}
        # Expand in the order the states were found, as the one-process search does: a
        # state's successors are then stepped one after another, and they share most parts
        # and step-memo entries with each other, which the processor's caches still hold
        # (shuffled, one partition's search of spin:2x2 took half as long again).
        frontier.sort(key=itemgetter(0))
        # The cyclic garbage collector stays off through the level, and what the level
        # kept is then frozen (never walked again): left on, the collector walks the ever
        # larger table again and again (half a worker's time on a model of 200,000 states),
        # and even one walk of each level's new tuples costs a sixth. States and the table
        # hold no cycles; a step makes none in the models we know (the one-process search
        # collects a few hundred objects in a whole run), and refcounting frees the rest.
        gc.freeze()
        if self.gc_enabled:
            gc.enable()
        return LevelReport(frontier=len(frontier), cpu=time.process_time())

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


def ship_shares(held: list[int], base: float = BASE_SHIP) -> list[float]:
    """The share of its claims each worker is to ship in the next level, given how many
    states each holds: the base share, plus twice the fraction it holds beyond an even
    share (a worker holding everything ships all it does not own)."""
    mean = sum(held) / len(held)
    return [min(1.0, base + 2 * max(0.0, (h - mean) / h)) if h else base for h in held]


def lowest(mask: int) -> int:
    return (mask & -mask).bit_length() - 1
