"""Where breadth-first search keeps the states it has found, and how each was first reached.

Two stores number states in discovery order and remember, per state, its parent and the step
(actor, choices) that reached it, so a counterexample is rebuilt by replay from the initial
state:

* ``Graph`` (store "full") keys a dict by the states themselves. It can also keep every
  transition, which the liveness check and the exact cost ranges need.
* ``FingerprintGraph`` (store "fingerprint") keeps a 64-bit fingerprint of each state
  (codec.py's part fingerprint; with symmetry, its orbit's, orbit_fp.py) in flat arrays
  with an open-addressing index, about 30 bytes a state. Two states with one fingerprint
  would be taken for one, so the search may omit a state; ``collision_probability`` bounds
  that chance as TLC does.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from .codec import StateCodec
from .system import State, System
from .trace import Path

Step = tuple[int, tuple[int, ...]]
Edge = tuple[int, int, tuple[int, ...]]

STORES = ("full", "fingerprint")
RECENT = 64  # fingerprint store: lookups remembered (one state's successors, and a few)


class Graph:
    """The states found so far, numbered in discovery order, and how each was reached.

    parent/via give a path from the initial state to every state (the first one found by
    breadth-first search, so a shortest one). With keep_graph, every transition and each
    state's set of enabled actors are kept too, for the liveness check.
    """

    kind = "full"

    def __init__(self, initial: State, keep_graph: bool) -> None:
        self.index: dict[State, int] = {initial: 0}
        self.find = self.index.get  # the search's hot lookup: state -> its number, or None
        self.parent = [-1]
        self.via: list[Step] = [(-1, ())]
        self.depth = [0]
        self.keep_graph = keep_graph
        self.edges: list[list[Edge]] = [[]] if keep_graph else []
        self.enabled: list[int] = [0] if keep_graph else []
        self.weights: list[list[dict[str, int] | None]] = [[]] if keep_graph else []
        self.final: set[int] = set()

    def __len__(self) -> int:
        return len(self.parent)

    def add(self, state: State, parent: int, step: Step) -> int:
        idx = len(self.parent)
        self.index[state] = idx
        self.parent.append(parent)
        self.via.append(step)
        self.depth.append(self.depth[parent] + 1)
        if self.keep_graph:
            self.edges.append([])
            self.enabled.append(0)
            self.weights.append([])
        return idx

    def path_to(self, i: int) -> Path:
        out: Path = []
        while i > 0:
            out.append(self.via[i])
            i = self.parent[i]
        out.reverse()
        return out

    def states(self) -> list[State] | None:
        """Every state in index order (None for a store that does not keep them)."""
        return list(self.index)

    def pending_bytes(self, more: int) -> int:
        return 0

    def nbytes(self) -> int:
        """A rough size of the store (the states themselves excluded: they share parts)."""
        n = len(self.parent)
        return n * 120 + (sum(len(e) for e in self.edges) * 80 if self.keep_graph else 0)


class FingerprintGraph:
    """States as 64-bit fingerprints in flat arrays; no transitions are kept.

    fps[i], parent[i], step[i] (an interned (actor, choices) pair) and depth[i] describe
    state i; slots is an open-addressing table (linear probing, at most half full) of i + 1
    for each state, 0 for an empty slot.
    """

    kind = "fingerprint"
    keep_graph = False
    edges: list[list[Edge]] = []
    enabled: list[int] = []
    weights: list[list[dict[str, int] | None]] = []

    def __init__(
        self,
        system: System,
        initial: State,
        codec: StateCodec | None = None,
        fingerprint: Callable[[State], int] | None = None,
    ) -> None:
        self.codec = codec or StateCodec(system)
        # state -> its fingerprint: the codec's part fingerprint, or a reduction's name for
        # the state's orbit (engine/orbit_fp.py)
        self.fingerprint = fingerprint or self.codec.part_fingerprint
        self.fps = array("Q")
        self.parent = array("i")
        self.step = array("I")
        self.depth = array("I")
        self.steps: list[Step] = []
        self.step_ids: dict[Step, int] = {}
        self.final: set[int] = set()
        self.slots = array("I", bytes(4 * 1024))
        self.mask = 1023
        # the fingerprints of the states looked up last (a reduction may look a child up
        # before the search does), holding the states so that their ids stay theirs
        self._recent: dict[int, tuple[State, int]] = {}
        self._append(self.fingerprint(initial), -1, (-1, ()), 0)

    def __len__(self) -> int:
        return len(self.fps)

    def find(self, state: State) -> int | None:
        return self.find_fp(self._fingerprint(state))

    def _fingerprint(self, state: State) -> int:
        hit = self._recent.get(id(state))
        if hit is not None and hit[0] is state:
            return hit[1]
        fp = self.fingerprint(state)
        if len(self._recent) >= RECENT:
            self._recent.clear()
        self._recent[id(state)] = (state, fp)
        return fp

    def find_fp(self, fp: int) -> int | None:
        slots, fps, mask = self.slots, self.fps, self.mask
        h = fp & mask
        while True:
            i = slots[h]
            if i == 0:
                return None
            if fps[i - 1] == fp:
                return i - 1
            h = (h + 1) & mask

    def add(self, state: State, parent: int, step: Step) -> int:
        return self._append(self._fingerprint(state), parent, step, self.depth[parent] + 1)

    def _append(self, fp: int, parent: int, step: Step, depth: int) -> int:
        idx = len(self.fps)
        sid = self.step_ids.get(step)
        if sid is None:
            sid = self.step_ids[step] = len(self.steps)
            self.steps.append(step)
        self.fps.append(fp)
        self.parent.append(parent)
        self.step.append(sid)
        self.depth.append(depth)
        if 2 * (idx + 1) > self.mask + 1:
            self._grow()
        else:
            self._place(fp, idx)
        return idx

    def _place(self, fp: int, idx: int) -> None:
        slots, mask = self.slots, self.mask
        h = fp & mask
        while slots[h]:
            h = (h + 1) & mask
        slots[h] = idx + 1

    def _grow(self) -> None:
        self.rebuild_index(2 * (self.mask + 1))

    def rebuild_index(self, size: int = 1024) -> None:
        """Make the index anew (at least half empty) from fps."""
        while size < 2 * len(self.fps):
            size *= 2
        self.slots = array("I", bytes(4 * size))
        self.mask = size - 1
        for idx, fp in enumerate(self.fps):
            self._place(fp, idx)

    def pending_bytes(self, more: int) -> int:
        """What adding more states allocates at once (the index doubling), to check a
        memory limit before it happens."""
        return 8 * (self.mask + 1) if 2 * (len(self.fps) + more) > self.mask + 1 else 0

    def path_to(self, i: int) -> Path:
        out: Path = []
        while i > 0:
            out.append(self.steps[self.step[i]])
            i = self.parent[i]
        out.reverse()
        return out

    def states(self) -> list[State] | None:
        return None

    def nbytes(self) -> int:
        """The store's size: its arrays (each with its spare capacity) and the step table."""
        arrays = (self.fps, self.parent, self.step, self.depth, self.slots)
        return sum(_array_bytes(a) for a in arrays) + 200 * len(self.steps)

    def collision_probability(self, transitions: int) -> float:
        """An upper bound on the chance that a fingerprint collision omitted a state: each of
        the transitions' lookups can falsely match one of the stored fingerprints."""
        return min(1.0, transitions * len(self.fps) / 2.0**64)

    @classmethod
    def from_graph(
        cls,
        g: Graph,
        system: System,
        codec: StateCodec | None = None,
        fingerprint: Callable[[State], int] | None = None,
    ) -> FingerprintGraph:
        """The same states, numbering and paths as g, as fingerprints (to save memory)."""
        states = g.states()
        assert states is not None
        fg = cls(system, states[0], codec, fingerprint)
        for i in range(1, len(states)):
            fg._append(fg.fingerprint(states[i]), g.parent[i], g.via[i], g.depth[i])
        return fg


def _array_bytes(a: array[Any]) -> int:
    return a.buffer_info()[1] * a.itemsize


def describe_probability(p: float) -> str:
    return "0" if p == 0 else f"{p:.1g}"
