"""Symmetry reduction: one stored state per renaming of interchangeable actors.

A model declares a group of interchangeable actors with ``Setup.symmetric``: per member, its
actor and the Struct objects it owns (a vCPU thread and its ``Vcpu``, its physical CPU). A
permutation of the members moves each member's actor frames and owned objects' field values
to another member, renames every reference to an owned object (and every string equal to a
member's actor name, as ``current_actor()`` stores) consistently, and keeps *identity* fields
(``name``, an index) with the object they name. When the model treats members alike, such a
permutation maps behaviours to behaviours, so the search may store states by a canonical
representative of their orbit (``key``) and still expand the concrete state it reached: paths
stay concrete, so counterexamples replay from the real initial state with real actor names,
and breadth-first depths (shortest counterexamples) are unchanged.

The representative is the permuted state whose members are sorted by a stable signature of
their own data (no salted ``hash()``); members with equal signatures are ordered by trying
their permutations and keeping the least stable encoding of the whole state. Declared
*unordered* fields (a tuple listing the group's objects in an order the model's behaviour
does not depend on) are sorted in the key. Why this is a function of the orbit: the image
under p of member i has the same signature as member i, so the set of sorting permutations
of p(s) is that of s composed with p^-1, and gives the same images; the key is one of s's own
images, so states of two orbits never share it. The per-state work (cached signatures, one
image when nothing ties, none when members are already in order) is in canon.py.

A declaration the model does not honour would make the search unsound, so it is checked: the
initial state must be its own image under every transposition of members, and on a sample of
the states explored (``audit``), swapping two members must give the same invariant verdicts
and, up to symmetry, the same successors (kinds, properties failed, canonical children).

Liveness and exact costs are not proven preserved here (fairness is per actor, and a cycle of
the quotient is not a cycle of the full graph): the search turns the reduction off for them.
"""

from __future__ import annotations

from collections import Counter
from itertools import product
from operator import lt
from typing import Any

from .canon import CACHE_LIMIT, Entry, Group, Plan, image, orders, sorting_choices, stable
from .system import State, System
from .world import ModelError

AUDIT_FIRST = 300  # audit every one of the first states explored...
AUDIT_EVERY = 128  # ...then one in this many

Renaming = tuple[dict[int, Any], dict[str, str]]  # object id -> object, actor name -> name


class SymmetryReducer:
    """Canonical keys for a system's states under its declared symmetries."""

    def __init__(self, system: System) -> None:
        self.system = system
        world = system.world
        self.slot_of = {id(o): i for i, o in enumerate(world.objects)}
        self.objects = world.objects
        self.groups: list[Group] = []
        self.unordered: dict[int, set[int]] = {}
        self.identity: dict[int, tuple[int, ...]] = {}
        names = system.names()
        seen_actors: set[int] = set()
        seen_slots: set[int] = set()
        for sym in system.symmetries:
            actors: list[int] = []
            slots: list[tuple[int, ...]] = []
            for name, objs in sym.members:
                if name not in names:
                    raise ModelError(f"symmetry: no actor is named {name!r}")
                a = names.index(name)
                own: list[int] = []
                for obj in objs:
                    if id(obj) not in self.slot_of:
                        raise ModelError(
                            f"symmetry: {obj!r} (owned by {name}) is not part of the state"
                        )
                    own.append(self.slot_of[id(obj)])
                if a in seen_actors or seen_slots & set(own):
                    raise ModelError(f"symmetry: {name} or its objects belong to two members")
                seen_actors.add(a)
                seen_slots |= set(own)
                actors.append(a)
                slots.append(tuple(own))
            first = system.actors[actors[0]]
            for a in actors[1:]:
                spec = system.actors[a]
                if (spec.func, spec.must_finish, spec.daemon) != (
                    first.func,
                    first.must_finish,
                    first.daemon,
                ):
                    raise ModelError(
                        f"symmetry: {spec.name} and {first.name} do not run the same function "
                        "with the same flags (must_finish, daemon)"
                    )
            for member in slots:
                for slot in member:
                    fields = world.fields[slot]
                    self.identity[slot] = tuple(
                        i for i, f in enumerate(fields) if f in sym.identity
                    )
            names_ = [system.actors[a].name for a in actors]
            self.groups.append(
                Group(actors, slots, names_, self.slot_of, self.objects, self.identity)
            )
            for obj, fname in sym.unordered:
                if id(obj) not in self.slot_of:
                    raise ModelError(f"symmetry: {obj!r} (unordered) is not part of the state")
                slot = self.slot_of[id(obj)]
                self.unordered.setdefault(slot, set()).add(world.fields[slot].index(fname))
        self.audited = 0
        self._plans: dict[tuple[tuple[int, ...], ...], Plan] = {}
        self._sorted_cache: dict[Any, Any] = {}
        self._stable_parts: dict[Any, Any] = {}
        self.check_initial()

    # -- permuting a state ---------------------------------------------------------------
    def renaming(self, perms: list[tuple[int, ...]]) -> Renaming:
        """perms[g][i]: where member i of group g goes."""
        objs: dict[int, Any] = {}
        strs: dict[str, str] = {}
        for group, perm in zip(self.groups, perms):
            for i, j in enumerate(perm):
                if i == j:
                    continue
                for src, dst in zip(group.slots[i], group.slots[j]):
                    objs[id(self.objects[src])] = self.objects[dst]
                strs[group.names[i]] = group.names[j]
        return objs, strs

    def permute(self, state: State, perms: list[tuple[int, ...]], sort: bool) -> State:
        """The state with the members moved by perms; sort: put the unordered fields back in
        creation order (so that a tuple indexed by an identity field still finds the member
        that index names)."""
        world, actors = state
        found = [g.entries(world, actors) for g in self.groups]
        return self._image(state, self._plan(tuple(perms)), found, sort)

    def _image(self, state: State, plan: Plan, found: list[list[Entry]], sort: bool) -> State:
        new_world, new_actors = image(state[0], state[1], plan, self.groups, found)
        if sort and self.unordered:
            self._sort_unordered(new_world)
        return (tuple(new_world), tuple(new_actors))

    def _plan(self, perms: tuple[tuple[int, ...], ...]) -> Plan:
        plan = self._plans.get(perms)
        if plan is None:
            plan = self._plans[perms] = Plan(
                self.groups,
                perms,
                len(self.objects),
                len(self.system.actors),
                self.objects,
                self.identity,
            )
        return plan

    def _sort_unordered(self, world: list[Any]) -> bool:
        """Sort the unordered fields of world (a list of object tuples) in place; whether
        any was out of order."""
        changed = False
        for slot, fields in self.unordered.items():
            vals = world[slot]
            out = None
            for k in fields:
                got = self._sorted(vals[k])
                if got is not vals[k]:
                    out = out or list(vals)
                    out[k] = got
            if out is not None:
                world[slot] = tuple(out)
                changed = True
        return changed

    def _sorted(self, value: Any) -> Any:
        """value in creation order (value itself when it already is)."""
        got = self._sorted_cache.get(value)
        if got is None:
            got = tuple(sorted(value, key=self.stable))
            if got == value:
                got = value
            if len(self._sorted_cache) > CACHE_LIMIT:
                self._sorted_cache.clear()
            self._sorted_cache[value] = got
        return got

    # -- the canonical key -----------------------------------------------------------------
    def key(self, state: State) -> State:
        """The canonical representative of state's orbit (equal keys: symmetric states).

        Members are sorted by their signatures; only members whose signatures tie are tried
        in every order, keeping the image with the least stable encoding. A state whose
        members are already in strict signature order is its own key (after sorting the
        unordered fields), so most states cost one cached lookup per member and no copy."""
        world, actors = state
        if len(self.groups) == 1:  # the usual case, without the general bookkeeping
            entries = self.groups[0].entries(world, actors)
            sigs = [e[0] for e in entries]
            if all(map(lt, sigs, sigs[1:])):
                return self._sorted_state(state)
            perms = orders(sigs)
            if len(perms) == 1:
                plan = self._plans.get(tuple(perms)) or self._plan(tuple(perms))
                return self._image(state, plan, [entries], True)
        found = [g.entries(world, actors) for g in self.groups]
        choices = sorting_choices(self.groups, found)
        if all(c == [g.identity] for c, g in zip(choices, self.groups)):  # none moves
            return self._sorted_state(state)
        if all(len(c) == 1 for c in choices):
            return self._image(state, self._plan(tuple(c[0] for c in choices)), found, True)
        images = {self._image(state, self._plan(c), found, True) for c in product(*choices)}
        if len(images) == 1:
            return images.pop()
        return min(images, key=self._encoding)

    def _sorted_state(self, state: State) -> State:
        """state with its unordered fields sorted (state itself when they are)."""
        if self.unordered:
            new_world = list(state[0])
            if self._sort_unordered(new_world):
                return (tuple(new_world), state[1])
        return state

    def _encoding(self, state: State) -> Any:
        """A stable, totally ordered encoding of state (tie-breaks between candidate keys),
        built from cached encodings of its parts."""
        cache = self._stable_parts
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        out = []
        for part in (*state[0], *state[1]):
            enc = cache.get(part)
            if enc is None:
                enc = cache[part] = stable(part, self.slot_of)
            out.append(enc)
        return tuple(out)

    def signature(self, state: State, group: Group, i: int) -> bytes:
        """Member i's own data, with references into the group abstracted (stable order)."""
        sig: bytes = group.entries(state[0], state[1])[i][0]
        return sig

    def stable(self, value: Any) -> Any:
        """A totally ordered, process-independent encoding of a value."""
        return stable(value, self.slot_of)

    # -- checking the declaration ------------------------------------------------------------
    def check_initial(self) -> None:
        """Refuse a declaration that the initial state itself breaks."""
        initial = self.system.initial
        base = self.permute(initial, [tuple(range(g.size)) for g in self.groups], sort=True)
        if base != initial:
            raise ModelError(
                f"symmetry: {self._difference(initial, base)} is declared unordered but does "
                "not list its objects in the order they were created"
            )
        for gi, group in enumerate(self.groups):
            for i in range(1, group.size):
                perms = [tuple(range(g.size)) for g in self.groups]
                perm = list(range(group.size))
                perm[0], perm[i] = i, 0
                perms[gi] = tuple(perm)
                img = self.permute(initial, perms, sort=True)
                if img != base:
                    raise ModelError(
                        f"symmetry of {', '.join(group.names)} does not hold in the initial "
                        f"state: swapping {group.names[0]} and {group.names[i]} changes "
                        f"{self._difference(base, img)} (declare a field that only names a "
                        "member as identity, and a tuple of members whose order does not "
                        "matter as unordered)"
                    )

    def _difference(self, a: State, b: State) -> str:
        world = self.system.world
        for slot, (va, vb) in enumerate(zip(a[0], b[0])):
            for fname, x, y in zip(world.fields[slot], va, vb):
                if x != y:
                    return f"{world.names[slot]}.{fname}"
        for spec, fa, fb in zip(self.system.actors, a[1], b[1]):
            if fa != fb:
                return f"the local state of actor {spec.name}"
        return "the state"

    def wants_audit(self, number: int) -> bool:
        return number < AUDIT_FIRST or number % AUDIT_EVERY == 0

    def audit(self, state: State, depth: int) -> None:
        """Swap each pair of members in a reached state: verdicts and successors must agree."""
        sys = self.system
        self.audited += 1
        mine = self._behaviour(state)
        for gi, group in enumerate(self.groups):
            for i in range(group.size):
                for j in range(i + 1, group.size):
                    perms = [tuple(range(g.size)) for g in self.groups]
                    perm = list(range(group.size))
                    perm[i], perm[j] = j, i
                    perms[gi] = tuple(perm)
                    other = self.permute(state, perms, sort=True)
                    if self._behaviour(other) != mine:
                        sys.reload()
                        raise ModelError(
                            f"symmetry of {', '.join(group.names)} is not honoured: in a state "
                            f"reached in {depth} steps, swapping {group.names[i]} and "
                            f"{group.names[j]} changes the invariants' verdicts or what can "
                            "happen next; the members must run the same code on their own "
                            "objects and the rest of the model must treat them alike (for "
                            "example, kick vCPUs in any order rather than by index)"
                        )
        sys.reload()

    def _behaviour(self, state: State) -> tuple[frozenset[str], Counter[Any]]:
        sys = self.system
        bad = frozenset(p for p, _ in sys.check_invariants(state))
        outs: Counter[Any] = Counter()
        for _actor, _script, out in sys.successors(state):
            if out.kind == "blocked":
                continue
            child = self.key(out.state) if out.state is not None else None
            outs[(out.kind, out.prop, frozenset(p for p, _ in out.failures), child)] += 1
        return bad, outs
