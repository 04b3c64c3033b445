"""Fair-cycle detection for must-finish actors (weak fairness).

Within a strongly connected component C of the states where the actor has not finished,
a single cycle can traverse every state and edge of C. Such a cycle is weakly fair iff every
actor either takes a step inside C or is disabled in some state of C: an actor enabled in
every state of C whose steps all leave C is continuously enabled and never taken on any
cycle in C. So C contains a fair starving cycle exactly when that test passes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Edge = tuple[int, int, tuple[int, ...]]  # (target, actor, choices)
Step = tuple[int, tuple[int, ...]]


def strongly_connected(edges: list[list[Edge]], keep: list[bool]) -> list[list[int]]:
    """Tarjan's algorithm, iterative, over the states marked keep."""
    n = len(edges)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    comps: list[list[int]] = []
    counter = 0
    for root in range(n):
        if not keep[root] or index[root] != -1:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, i = work[-1]
            out = edges[v]
            if i < len(out):
                work[-1] = (v, i + 1)
                w = out[i][0]
                if not keep[w]:
                    continue
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack[w] = False
                        comp.append(w)
                        if w == v:
                            break
                    comps.append(comp)
    return comps


def _path_within(
    edges: list[list[Edge]], members: set[int], start: int, goal: Callable[[int], object]
) -> list[tuple[int, Step]]:
    """Shortest path inside members from start to the first state goal accepts.

    goal(v) is truthy to stop at v; if it returns an Edge, that edge is taken last.
    Returns [(state reached, (actor, choices)), ...].
    """
    prev: dict[int, tuple[int, Step] | None] = {start: None}
    todo = deque([start])
    while todo:
        v = todo.popleft()
        hit = goal(v)
        if hit:
            path: list[tuple[int, Step]] = []
            u = v
            while (link := prev[u]) is not None:
                path.append((u, link[1]))
                u = link[0]
            path.reverse()
            if isinstance(hit, tuple):
                path.append((hit[0], (hit[1], hit[2])))
            return path
        for w, actor, choices in edges[v]:
            if w in members and w not in prev:
                prev[w] = (v, (actor, choices))
                todo.append(w)
    raise AssertionError("no path inside a strongly connected component")


def find_fair_lasso(
    edges: list[list[Edge]], enabled: list[int], unfinished: list[bool], n_actors: int
) -> tuple[int, list[Step]] | None:
    """A weakly fair cycle among unfinished states: (entry state, steps of the cycle)."""
    for comp in sorted(strongly_connected(edges, unfinished), key=min):
        members = set(comp)
        internal = [(v, e) for v in comp for e in edges[v] if e[0] in members]
        if not internal:
            continue  # a single state without a self-loop
        taken = 0
        for _v, (_w, actor, _c) in internal:
            taken |= 1 << actor
        disabled_somewhere = 0
        for v in comp:
            disabled_somewhere |= ~enabled[v] & ((1 << n_actors) - 1)
        if (taken | disabled_somewhere) != (1 << n_actors) - 1:
            continue
        entry = min(comp)
        cycle: list[Step] = []
        here = entry
        for b in range(n_actors):
            bit = 1 << b

            def goal(v: int, bit: int = bit, b: int = b) -> object:
                if not enabled[v] & bit:
                    return True
                for e in edges[v]:
                    if e[1] == b and e[0] in members:
                        return e
                return False

            seg = _path_within(edges, members, here, goal)
            cycle.extend(step for _, step in seg)
            if seg:
                here = seg[-1][0]
        if not cycle:  # every actor is disabled at entry: still take one step round
            e = next(e for e in edges[entry] if e[0] in members)
            cycle.append((e[1], e[2]))
            here = e[0]
        cycle.extend(step for _, step in _path_within(edges, members, here, lambda v: v == entry))
        return entry, cycle
    return None
