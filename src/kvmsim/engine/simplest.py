"""Among the shortest counterexamples of a property, the one with the fewest context switches
(a timeline that a reader can follow): a dynamic program over the breadth-first layers."""

from __future__ import annotations

from bisect import bisect_left
from itertools import islice
from typing import TYPE_CHECKING

from .store import FingerprintGraph, Graph
from .system import State
from .trace import Path

if TYPE_CHECKING:
    from .explore import Endpoint, _Search

AnyGraph = Graph | FingerprintGraph


def switches(path: Path) -> int:
    """Context switches of a path: consecutive steps taken by different actors."""
    return sum(1 for (a, _), (b, _) in zip(path, path[1:]) if a != b)


def _lowest(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def simplest(s: _Search, g: AnyGraph) -> None:
    """Replace each bfs counterexample by one of the same length with the fewest context
    switches, among every violation of the same property at that length the search saw.

    A shortest counterexample of length d climbs the breadth-first layers one step at a time
    (its i-th state was first found at depth i, or a shorter counterexample would exist), so
    it only uses transitions from a state of depth k to one of depth k + 1. A dynamic program
    over those transitions, layer by layer below d, gives every state the fewest switches of
    a path of its depth to it, with the set of actors that can take the last step of such a
    path: that is enough, since a step by actor a from state p then costs fewest(p) if a is in
    p's set and fewest(p) + 1 otherwise. The transitions come from the stored graph when the
    search kept it, else the states below d are expanded again (no state is added and the
    statistics are untouched). A counterexample that is already optimal is kept as found.
    With stop_at_first only the violations found before the search stopped compete.
    """
    todo = {
        prop: eps
        for prop, eps in s.endpoints.items()
        if s.found[prop][4] is None and switches(s.found[prop][2]) > 0
    }
    if not todo:
        return
    depth = g.depth
    # The deepest layer whose values are needed: a violating state's own, or the layer
    # below a violating step.
    top = 0
    for prop, eps in todo.items():
        length = len(s.found[prop][2])
        top = max(top, length if any(ep[1] < 0 for ep in eps) else length - 1)
    below = bisect_left(depth, top)  # states 0 .. below-1 lie in the layers under top
    upto = bisect_left(depth, top + 1)
    many = 1 << 62
    fewest = [many] * upto
    last = [0] * upto
    fewest[0], last[0] = 0, -1  # the first step switches from nobody: any actor is free
    ups: list[list[tuple[int, int, tuple[int, ...]]]] = []
    keys: list[State] | None = None

    def via(p: int, a: int) -> int:
        """The fewest switches of a path through p whose next step is actor a's."""
        return fewest[p] if (last[p] >> a) & 1 else fewest[p] + 1

    sys = s.system
    for idx in range(below):
        k1 = depth[idx] + 1
        if g.keep_graph and idx < s.expanded:
            edges = [(c, a, sc) for c, a, sc in g.edges[idx] if depth[c] == k1]
        else:
            if keys is None:
                keys = _states_below(s, g, below)
            edges = []
            for a, sc, out in sys.successors(keys[idx]):
                if out.kind == "ok" and out.state is not None:
                    c = g.find(out.state)
                    if c is not None and depth[c] == k1:
                        edges.append((c, a, sc))
        ups.append(edges)
        for c, a, _sc in edges:
            cost = via(idx, a)
            if cost < fewest[c]:
                fewest[c], last[c] = cost, 1 << a
            elif cost == fewest[c]:
                last[c] |= 1 << a

    def into(e: int, a: int) -> Path:
        """A path of depth[e] steps to e with fewest[e] switches whose last step is a's."""
        out: Path = []
        while e != 0:
            start, end = bisect_left(depth, depth[e] - 1), bisect_left(depth, depth[e])
            need = fewest[e]
            step = next(
                (p, sc)
                for p in range(start, end)
                for c, b, sc in ups[p]
                if c == e and b == a and via(p, a) == need
            )
            out.append((a, step[1]))
            e = step[0]
            if not (last[e] >> a) & 1:
                a = _lowest(last[e])
        out.reverse()
        return out

    chosen: dict[str, tuple[str, Path]] = {}
    for prop, eps in todo.items():
        best: tuple[int, Endpoint] | None = None
        for ep in eps:
            idx, actor, _sc, _msg = ep
            cost = fewest[idx] if actor < 0 else via(idx, actor)
            if best is None or cost < best[0]:
                best = (cost, ep)
        assert best is not None
        cost, (idx, actor, script, message) = best
        if cost >= switches(s.found[prop][2]):
            continue
        if actor < 0:
            path = into(idx, _lowest(last[idx]))
        else:
            a = actor if (last[idx] >> actor) & 1 else _lowest(last[idx])
            path = into(idx, a) + [(actor, script)]
        assert len(path) == len(s.found[prop][2]) and switches(path) == cost
        chosen[prop] = (message, path)
    for prop, (message, path) in chosen.items():
        kind, _message, _path, desc, loop = s.found[prop]
        s.found[prop] = (kind, message, path, desc, loop)


def _states_below(s: _Search, g: AnyGraph, below: int) -> list[State]:
    """States 0 .. below-1: from the full store, or rebuilt layer by layer by expanding each
    layer again (a fingerprint store keeps no states; layer k + 1 is every successor of layer
    k first found at depth k + 1, in index order)."""
    if isinstance(g, Graph):
        return list(islice(g.index, below))
    sys = s.system
    states = [sys.initial]
    start = 0
    while len(states) < below:
        layer_end = len(states)
        k1 = g.depth[start] + 1
        found: dict[int, State] = {}
        for state in states[start:layer_end]:
            for _a, _sc, out in sys.successors(state):
                if out.kind == "ok" and out.state is not None:
                    c = g.find(out.state)
                    if c is not None and g.depth[c] == k1 and c not in found:
                        found[c] = out.state
        if not found:
            break
        assert min(found) == layer_end and max(found) == layer_end + len(found) - 1
        states.extend(found[c] for c in sorted(found))
        start = layer_end
    return states[:below]
