"""The progress of must-finish actors after a partitioned search: the workers hand over the
graph they kept (per state: enabled actors, edges, unfinished actors) and the coordinator
looks for a weakly fair starving cycle on it, as the one-process search does on its own
stored graph (``liveness.find_fair_lasso``), with the same messages.

States are numbered by breadth-first distance from the initial state, then fingerprint, so
the choice among several starving cycles never depends on the number of workers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .liveness import Edge, find_fair_lasso
from .partition import Node
from .system import State, System
from .trace import Path

# (property, message, path, loop start or None)
Starved = tuple[str, str, Path, int | None]


def number(graph: dict[int, Node], root: int) -> list[int]:
    """The fingerprints in order of distance from root, then value."""
    dist = {root: 0}
    todo = deque([root])
    while todo:
        fp = todo.popleft()
        for target, _a, _c in graph[fp][1]:
            if target not in dist:
                dist[target] = dist[fp] + 1
                todo.append(target)
    return sorted(dist, key=lambda fp: (dist[fp], fp))


def starved(
    system: System,
    graph: dict[int, Node],
    root: int,
    must_finish: list[int],
    path_to: Callable[[int], Path],
    decode: Callable[[bytes], State],
    deadlock_reported: bool,
) -> list[Starved]:
    """Every must-finish actor that can be starved forever, with its counterexample.

    deadlock_reported: the model reports deadlocks (a state where nobody can move), so one
    where a non-daemon actor waits for good is reported as that, not here."""
    order = number(graph, root)
    index = {fp: i for i, fp in enumerate(order)}
    edges: list[list[Edge]] = [[(index[t], a, c) for t, a, c in graph[fp][1]] for fp in order]
    enabled = [graph[fp][0] for fp in order]
    out: list[Starved] = []
    for a in must_finish:
        name = system.actors[a].name
        unfinished = [bool(graph[fp][2] >> a & 1) for fp in order]
        lasso = find_fair_lasso(edges, enabled, unfinished, len(system.actors))
        if lasso is not None:
            prefix_end, cycle = lasso
            path = path_to(order[prefix_end]) + cycle
            message = (
                f"{name} can be starved forever under weak fairness (a fair cycle in which "
                f"it never finishes)"
            )
            out.append((f"progress: {name}", message, path, len(path) - len(cycle)))
        elif not deadlock_reported or system.actors[a].daemon:
            stuck = next((i for i in range(len(order)) if unfinished[i] and not enabled[i]), None)
            if stuck is not None:
                fp = order[stuck]
                state = decode(graph[fp][3])
                out.append(
                    (
                        f"progress: {name}",
                        f"{name} waits forever: it has not finished and no actor can move "
                        f"(at {system.location(state, a)})",
                        path_to(fp),
                        None,
                    )
                )
    return out
