"""The search's two hooks for state-space reductions, and when each reduction applies.

``key`` names the state the search stores (symmetry: the canonical representative of the
state's orbit, engine/symmetry.py) and ``successors`` the steps it expands (partial-order
reduction: one actor's, when that is sound, engine/por.py). Both are the identity when the
reductions are off. Neither is proven to preserve liveness (fair cycles of must-finish actors)
or exact cost ranges, so they are switched off, with a note, for a search that checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .codec import StateCodec
from .model import Model
from .orbit_fp import OrbitFingerprint
from .por import PartialOrder, Step
from .symmetry import SymmetryReducer
from .system import State, System


class Reductions:
    def __init__(
        self,
        system: System,
        model: Model,
        *,
        symmetry: bool,
        por: bool,
        mode: str,
        liveness: bool,
        costs: bool,
        notes: list[str],
    ) -> None:
        self.system = system
        self.symmetry: SymmetryReducer | None = None
        self.por: PartialOrder | None = None
        self._orbit_fp: OrbitFingerprint | None = None
        self._memo: dict[int, State] = {}
        # the store names orbits itself (fingerprints of orbits): key is then the identity
        self.store_canonical = False
        if not (symmetry or por):
            return
        asked = " and ".join(
            n for n, on in (("symmetry", symmetry), ("partial-order reduction", por)) if on
        )
        must_finish = any(a.must_finish for a in system.actors)
        if costs:
            notes.append(f"{asked} off: exact costs are computed on the full graph")
            return
        if liveness and must_finish and mode != "random":
            notes.append(
                f"{asked} off: progress of must-finish actors is checked on the full graph "
                "(turn liveness off, --no-liveness, to reduce the safety search)"
            )
            return
        if mode == "random":
            notes.append(f"{asked} not used by random simulation")
            return
        if symmetry:
            if system.symmetries:
                self.symmetry = SymmetryReducer(system)
            else:
                notes.append("symmetry: the model declares no interchangeable actors")
        if por:
            self.por = PartialOrder(system, model)

    @property
    def active(self) -> bool:
        return self.symmetry is not None or self.por is not None

    def fingerprint(self, codec: StateCodec) -> Callable[[State], int]:
        """What the fingerprint store should name a state by: with symmetry, its orbit (so
        the search need not build the canonical state at all); else the state itself."""
        if self.symmetry is None:
            return codec.part_fingerprint
        if self._orbit_fp is None or self._orbit_fp.codec is not codec:
            self._orbit_fp = OrbitFingerprint(self.symmetry, codec)
        return self._orbit_fp

    def bind_store(self, store: object) -> None:
        """The search now stores into store: a fingerprint store made with ``fingerprint``
        names orbits itself, so key need not canonicalise."""
        self.store_canonical = (
            self._orbit_fp is not None and getattr(store, "fingerprint", None) is self._orbit_fp
        )

    def key(self, state: State) -> State:
        """The state the search stores for state."""
        if self.symmetry is None or self.store_canonical:
            return state
        got = self._memo.get(id(state))
        return got if got is not None else self.symmetry.key(state)

    def successors(self, state: State, seen: Callable[[State], bool]) -> Iterator[Step]:
        """The steps to expand from state; seen(key) tells whether a stored state exists."""
        if self.por is None:
            return self.system.successors(state)
        self._memo.clear()
        sym = self.symmetry

        def new_child(child: State) -> bool:
            if sym is None or self.store_canonical:
                return seen(child)
            k = sym.key(child)
            self._memo[id(child)] = k
            return seen(k)

        return self.por.successors(state, new_child)

    def reached(self, state: State, number: int, depth: int) -> None:
        """A new state was stored (the number-th): audit the symmetry declaration on it."""
        if self.symmetry is not None and self.symmetry.wants_audit(number):
            self.symmetry.audit(state, depth)

    def report(self, notes: list[str]) -> None:
        if self.symmetry is not None:
            groups = "; ".join(", ".join(g.names) for g in self.symmetry.groups)
            notes.append(
                f"symmetry reduction: one state stored per renaming of {groups} "
                f"(declaration audited on {self.symmetry.audited} states)"
            )
        if self.por is not None:
            total = self.por.ample_states + self.por.full_states
            notes.append(
                f"partial-order reduction: {self.por.ample_states} of {total} states expanded "
                "with one actor's step; counterexamples need not be the shortest"
            )
