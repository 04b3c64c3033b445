"""Cost figures over all complete behaviours: exact minimum and maximum, with witnesses.

A transition carries costs (the events a step noted, plus a per-state charge the model may
define). A complete behaviour is a path from the initial state to a state where every actor
has finished. Over the stored graph:

* the minimum of a cost is a shortest path (Dial's bucket queue: weights are small integers);
* the maximum is unbounded if a cycle with a positive cost lies on some path to a final state
  (the witness is a lasso: the cycle may be repeated any number of times before leaving), and
  otherwise a longest path over the DAG of strongly connected components.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .liveness import Edge, strongly_connected

Step = tuple[int, tuple[int, ...]]
Weights = dict[str, int]


@dataclass
class CostRange:
    """One cost's range over every complete behaviour, with a witness path for each end."""

    name: str
    min: int
    max: int | None  # None: unbounded (a positive cycle)
    min_path: list[Step] = field(default_factory=list)
    max_path: list[Step] = field(default_factory=list)
    max_loop_start: int | None = None  # for an unbounded maximum: where the cycle starts
    min_trace: Any = None  # Trace of the witnesses, filled in by the search
    max_trace: Any = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "min": self.min,
            "max": "unbounded" if self.max is None else self.max,
            "min_witness_length": len(self.min_path),
            "max_witness_length": len(self.max_path),
        }


def _weight(w: Weights | None, metric: str) -> int:
    return w.get(metric, 0) if w else 0


def _minimum(
    edges: list[list[Edge]], weights: list[list[Weights | None]], final: set[int], metric: str
) -> tuple[int, list[Step]] | None:
    n = len(edges)
    inf = float("inf")
    dist: list[float] = [inf] * n
    prev: list[tuple[int, Step] | None] = [None] * n
    dist[0] = 0
    buckets: dict[int, deque[int]] = {0: deque([0])}
    current = 0
    remaining = 1
    while remaining:
        while current not in buckets or not buckets[current]:
            buckets.pop(current, None)
            current += 1
        u = buckets[current].popleft()
        remaining -= 1
        if dist[u] != current:
            continue
        if u in final:
            path: list[Step] = []
            v = u
            while (link := prev[v]) is not None:
                path.append(link[1])
                v = link[0]
            path.reverse()
            return current, path
        for (v, actor, choices), w in zip(edges[u], weights[u]):
            nd = current + _weight(w, metric)
            if nd < dist[v]:
                dist[v] = nd
                prev[v] = (u, (actor, choices))
                buckets.setdefault(nd, deque()).append(v)
                remaining += 1
    return None


def _coreachable(edges: list[list[Edge]], final: set[int]) -> list[bool]:
    back: list[list[int]] = [[] for _ in edges]
    for u, out in enumerate(edges):
        for v, _a, _c in out:
            back[v].append(u)
    keep = [False] * len(edges)
    todo = deque(final)
    for f in final:
        keep[f] = True
    while todo:
        v = todo.popleft()
        for u in back[v]:
            if not keep[u]:
                keep[u] = True
                todo.append(u)
    return keep


def _path_inside(
    edges: list[list[Edge]], members: set[int], start: int, goal: int
) -> list[tuple[int, Step]]:
    if start == goal:
        return []
    prev: dict[int, tuple[int, Step]] = {}
    seen = {start}
    todo = deque([start])
    while todo:
        u = todo.popleft()
        for v, actor, choices in edges[u]:
            if v in members and v not in seen:
                seen.add(v)
                prev[v] = (u, (actor, choices))
                if v == goal:
                    out: list[tuple[int, Step]] = []
                    while v != start:
                        p, step = prev[v]
                        out.append((v, step))
                        v = p
                    out.reverse()
                    return out
                todo.append(v)
    raise AssertionError("no path inside a strongly connected component")


class CostGraph:
    """The stored graph with per-edge weights, analysed once for every cost."""

    def __init__(
        self,
        edges: list[list[Edge]],
        weights: list[list[Weights | None]],
        final: set[int],
    ) -> None:
        self.edges = edges
        self.weights = weights
        self.final = final
        keep = _coreachable(edges, final)
        self.keep = keep
        self.comps = strongly_connected(edges, keep)  # reverse topological order
        self.comp_of = [-1] * len(edges)
        for i, comp in enumerate(self.comps):
            for v in comp:
                self.comp_of[v] = i

    def metrics(self) -> list[str]:
        names: set[str] = set()
        for out in self.weights:
            for w in out:
                if w:
                    names.update(k for k, v in w.items() if v)
        return sorted(names)

    def range_of(self, metric: str, path_to: Callable[[int], list[Step]]) -> CostRange | None:
        low = _minimum(self.edges, self.weights, self.final, metric)
        if low is None or not self.keep[0]:
            return None
        result = CostRange(metric, low[0], None, low[1])
        cycle = self._positive_cycle(metric)
        if cycle is not None:
            entry, loop = cycle
            prefix = path_to(entry)
            result.max_path = prefix + loop
            result.max_loop_start = len(prefix)
            return result
        result.max, result.max_path = self._longest(metric)
        return result

    def _positive_cycle(self, metric: str) -> tuple[int, list[Step]] | None:
        for comp in self.comps:
            if len(comp) == 1 and not any(e[0] == comp[0] for e in self.edges[comp[0]]):
                continue
            members = set(comp)
            for u in sorted(comp):
                for (v, actor, choices), w in zip(self.edges[u], self.weights[u]):
                    if v in members and _weight(w, metric) > 0:
                        back = _path_inside(self.edges, members, v, u)
                        return u, [(actor, choices)] + [step for _, step in back]
        return None

    def _longest(self, metric: str) -> tuple[int, list[Step]]:
        """Longest path from the initial state to a final state; SCCs have no positive edge."""
        best: list[int] = [-1] * len(self.comps)
        choice: list[tuple[int, int, Step] | None] = [None] * len(self.comps)
        for ci, comp in enumerate(self.comps):  # sinks first
            if any(v in self.final for v in comp):
                best[ci] = 0
            for u in comp:
                for (v, actor, choices), w in zip(self.edges[u], self.weights[u]):
                    cj = self.comp_of[v]
                    if cj == ci or cj < 0 or best[cj] < 0:
                        continue
                    total = _weight(w, metric) + best[cj]
                    if total > best[ci]:
                        best[ci] = total
                        choice[ci] = (u, v, (actor, choices))
        path: list[Step] = []
        here = 0
        ci = self.comp_of[0]
        while (picked := choice[ci]) is not None:
            u, v, step = picked
            members = set(self.comps[ci])
            path.extend(s for _, s in _path_inside(self.edges, members, here, u))
            path.append(step)
            here = v
            ci = self.comp_of[v]
        if here not in self.final:  # walk to a final state inside the last component
            members = set(self.comps[ci])
            target = next(v for v in self.comps[ci] if v in self.final)
            path.extend(s for _, s in _path_inside(self.edges, members, here, target))
        return best[self.comp_of[0]], path
