"""The fingerprint store's name for a state's orbit, computed without building its image.

With symmetry and the fingerprint store, the search needs only a 64-bit name for the orbit
of each state it reaches, never the canonical state itself (it expands the concrete state).
A state's ``part_fingerprint`` (codec.py) is a sum of per-position hashes of its parts, so the
fingerprint of a permuted image is a sum of hashes of renamed parts at their new positions,
each cached by value per permutation, and the image need not be assembled, encoded or hashed
whole. The orbit's fingerprint is the least of these over the permutations that sort the
members by signature (canon.py). That set of images is a function of the orbit (symmetry.py
explains why), so its least fingerprint is too; it may be another image than the one
``SymmetryReducer.key`` keeps when signatures tie, which does not matter: the two are never
mixed in one store.

Identity fields are declared never to change, so an image's identity fields are taken from
the initial state, and a member whose identity field changed is refused as a model error.
"""

from __future__ import annotations

from itertools import product
from operator import lt
from typing import TYPE_CHECKING, Any

from .canon import CACHE_LIMIT, Entry, Group, Plan, orders, sorting_choices
from .codec import StateCodec
from .system import State
from .world import ModelError

if TYPE_CHECKING:
    from .symmetry import SymmetryReducer

_MASK64 = (1 << 64) - 1


class OrbitFingerprint:
    """Callable: state -> the fingerprint of its orbit under the reducer's symmetries."""

    def __init__(self, reducer: SymmetryReducer, codec: StateCodec) -> None:
        self.reducer = reducer
        self.codec = codec
        self.nobjects = len(reducer.objects)
        initial = reducer.system.initial[0]
        # per slot with identity fields: (field index, its value) pairs, as created
        self.identity = {
            slot: tuple((k, initial[slot][k]) for k in fields)
            for slot, fields in reducer.identity.items()
            if fields
        }
        self.unordered = reducer.unordered
        self.plain = reducer._plan(tuple(g.identity for g in reducer.groups))
        # per plan, per position outside the groups: part -> hash of its renamed image
        self._caches: dict[Plan, list[dict[Any, int]]] = {}
        # one group's members in sorted order (member numbers) -> the plan that sorts them
        self._by_order: dict[tuple[int, ...], Plan] = {}

    def __call__(self, state: State) -> int:
        red = self.reducer
        world, actors = state
        if len(red.groups) == 1:  # the usual case, without the general bookkeeping
            entries = red.groups[0].entries(world, actors)
            found = [entries]
            sigs = [e[0] for e in entries]
            if all(map(lt, sigs, sigs[1:])):  # in order already: the state is its image
                return self._image_fp(state, self.plain, found)
            order = tuple(sorted(range(len(sigs)), key=sigs.__getitem__))
            plan = self._by_order.get(order)
            if plan is not None:
                ranked = [sigs[i] for i in order]
                if all(map(lt, ranked, ranked[1:])):  # no ties: one sorting permutation
                    return self._image_fp(state, plan, found)
            plans = self._sorting_plans(sigs)
        else:
            found = [g.entries(world, actors) for g in red.groups]
            plans = [red._plan(c) for c in product(*sorting_choices(red.groups, found))]
        if len(plans) == 1:
            return self._image_fp(state, plans[0], found)
        return min(self._image_fp(state, plan, found) for plan in plans)

    def _sorting_plans(self, sigs: list[bytes]) -> list[Plan]:
        """The plans that sort one group's members of these signatures; a plan without
        ties is remembered by the order it puts members in."""
        perms = orders(sigs)
        plans = [self.reducer._plan((perm,)) for perm in perms]
        if len(perms) == 1:
            order = [0] * len(sigs)
            for i, place in enumerate(perms[0]):
                order[place] = i
            self._by_order[tuple(order)] = plans[0]
        return plans

    def _image_fp(self, state: State, plan: Plan, found: list[list[Entry]]) -> int:
        """part_fingerprint of plan's image of state (with unordered fields sorted)."""
        world, actors = state
        total = 0
        for group, entries, places in zip(self.reducer.groups, found, plan.places):
            for entry, (slots, actor) in zip(entries, places):
                h = entry[3].get(plan)
                if h is None:
                    if not entry[3] and self.identity:
                        self._check_identity(group, entries, entry)
                    h = entry[3][plan] = self._member_hash(entry, plan, slots, actor, group.single)
                total += h
        caches = self._caches.get(plan)
        if caches is None:
            caches = self._caches[plan] = [{} for _ in range(self.nobjects + len(actors))]
        for s in plan.other_slots:
            part = world[s]
            h = caches[s].get(part)
            if h is None:
                h = self._remember(caches[s], part, self._slot_hash(s, plan.renamed(part)))
            total += h
        base = self.nobjects
        for a in plan.other_actors:
            frames = actors[a]
            h = caches[base + a].get(frames)
            if h is None:
                image = plan.renamed(frames) if frames is not None else None
                h = self._remember(
                    caches[base + a], frames, self.codec.part_hash(base + a, image, True)
                )
            total += h
        return total & _MASK64

    def _member_hash(
        self, entry: Entry, plan: Plan, slots: tuple[int, ...], actor: int, single: bool
    ) -> int:
        """The hashes of one member's renamed objects and frames at the places plan sends
        them (slots, actor)."""
        got = entry[1].get(plan)
        if got is None:
            objs, frames = entry[2]
            got = entry[1][plan] = (plan.rename(objs), plan.rename(frames))
        images = (got[0],) if single else got[0]
        h = sum(self._slot_hash(dst, vals) for dst, vals in zip(slots, images))
        return h + self.codec.part_hash(self.nobjects + actor, got[1], True)

    def _check_identity(self, group: Group, entries: list[Entry], entry: Entry) -> None:
        """A member's identity fields must be as created: the declaration says they never
        change, and images take them from the initial state."""
        i = next(k for k, e in enumerate(entries) if e is entry)
        objs = entry[2][0]
        world = self.reducer.system.world
        for slot, vals in zip(group.slots[i], (objs,) if group.single else objs):
            for k, value in self.identity.get(slot, ()):
                if vals[k] != value:
                    raise ModelError(
                        f"symmetry: {world.names[slot]}.{world.fields[slot][k]} is declared "
                        f"an identity field but changed from {value!r} to {vals[k]!r}"
                    )

    def _slot_hash(self, slot: int, vals: Any) -> int:
        """The hash of an object's image tuple at slot: identity fields as created,
        unordered fields sorted."""
        fix = self.identity.get(slot)
        fields = self.unordered.get(slot)
        if fix or fields:
            out = list(vals)
            for k, value in fix or ():
                out[k] = value
            for k in fields or ():
                out[k] = self.reducer._sorted(out[k])
            vals = tuple(out)
        return self.codec.part_hash(slot, vals, False)

    @staticmethod
    def _remember(cache: dict[Any, int], part: Any, h: int) -> int:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[part] = h
        return h
