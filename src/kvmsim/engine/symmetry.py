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
does not depend on) are sorted in the key.

A declaration the model does not honour would make the search unsound, so it is checked: the
initial state must be its own image under every transposition of members, and on a sample of
the states explored (``audit``), swapping two members must give the same invariant verdicts
and, up to symmetry, the same successors (kinds, properties failed, canonical children).

Liveness and exact costs are not proven preserved here (fairness is per actor, and a cycle of
the quotient is not a cycle of the full graph): the search turns the reduction off for them.
"""

from __future__ import annotations

import enum
from collections import Counter
from itertools import permutations, product
from types import FunctionType
from typing import Any

from .compiler import UNSET
from .system import State, System
from .world import ModelError, Struct

AUDIT_FIRST = 300  # audit every one of the first states explored...
AUDIT_EVERY = 64  # ...then one in this many
CACHE_LIMIT = 400_000  # entries per memo table before it is cleared

Renaming = tuple[dict[int, Any], dict[str, str]]  # object id -> object, actor name -> name


class _Group:
    """One declared symmetry, resolved to actor indices and object slots."""

    def __init__(self, actors: list[int], slots: list[tuple[int, ...]], names: list[str]) -> None:
        self.actors = actors
        self.slots = slots
        self.names = names

    @property
    def size(self) -> int:
        return len(self.actors)


class SymmetryReducer:
    """Canonical keys for a system's states under its declared symmetries."""

    def __init__(self, system: System) -> None:
        self.system = system
        world = system.world
        self.slot_of = {id(o): i for i, o in enumerate(world.objects)}
        self.objects = world.objects
        self.groups: list[_Group] = []
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
            group = _Group(actors, slots, [system.actors[a].name for a in actors])
            self.groups.append(group)
            for member in slots:
                for slot in member:
                    fields = world.fields[slot]
                    self.identity[slot] = tuple(
                        i for i, f in enumerate(fields) if f in sym.identity
                    )
            for obj, fname in sym.unordered:
                if id(obj) not in self.slot_of:
                    raise ModelError(f"symmetry: {obj!r} (unordered) is not part of the state")
                slot = self.slot_of[id(obj)]
                self.unordered.setdefault(slot, set()).add(world.fields[slot].index(fname))
        self.audited = 0
        self._plans: dict[tuple[tuple[int, ...], ...], Any] = {}
        self._sorted_cache: dict[Any, Any] = {}
        self._sigs: dict[Any, Any] = {}
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
        plan = self._plan(tuple(perms))
        objs, strs, slot_dest, actor_dest, cache = plan
        world, actors = state
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        new_world: list[Any] = list(world)
        for src, vals in enumerate(world):
            dst = slot_dest[src]
            out = cache.get(vals)
            if out is None:
                out = tuple([_rename(v, objs, strs) for v in vals]) if objs else vals
                cache[vals] = out
            fix = self.identity.get(dst)
            unordered = self.unordered.get(dst) if sort else None
            if (fix and src != dst) or unordered:
                changed = list(out)
                if src != dst:
                    for k in fix or ():
                        changed[k] = world[dst][k]
                for k in unordered or ():
                    changed[k] = self._sorted(changed[k])
                out = tuple(changed)
            new_world[dst] = out
        new_actors: list[Any] = list(actors)
        for a, frames in enumerate(actors):
            if frames is not None and objs:
                got = cache.get(frames)
                if got is None:
                    got = tuple((f, pc, _rename(vals, objs, strs)) for f, pc, vals in frames)
                    cache[frames] = got
                frames = got
            new_actors[actor_dest[a]] = frames
        return (tuple(new_world), tuple(new_actors))

    def _plan(self, perms: tuple[tuple[int, ...], ...]) -> Any:
        """How perms moves objects and actors, with a cache of renamed values."""
        plan = self._plans.get(perms)
        if plan is None:
            objs, strs = self.renaming(list(perms))
            slot_dest = list(range(len(self.objects)))
            actor_dest = list(range(len(self.system.actors)))
            for group, perm in zip(self.groups, perms):
                for i, j in enumerate(perm):
                    actor_dest[group.actors[i]] = group.actors[j]
                    for src, dst in zip(group.slots[i], group.slots[j]):
                        slot_dest[src] = dst
            plan = self._plans[perms] = (objs, strs, slot_dest, actor_dest, {})
        return plan

    def _sorted(self, value: Any) -> Any:
        got = self._sorted_cache.get(value)
        if got is None:
            got = tuple(sorted(value, key=self.stable))
            if len(self._sorted_cache) > CACHE_LIMIT:
                self._sorted_cache.clear()
            self._sorted_cache[value] = got
        return got

    # -- the canonical key -----------------------------------------------------------------
    def key(self, state: State) -> State:
        """The canonical representative of state's orbit (equal keys: symmetric states)."""
        perms: list[list[tuple[int, ...]]] = []
        for group in self.groups:
            sigs = [self.signature(state, group, i) for i in range(group.size)]
            order = sorted(range(group.size), key=lambda i: sigs[i])
            # ties: members with equal signatures, in runs of the sorted order
            runs: list[list[int]] = []
            for i in order:
                if runs and sigs[runs[-1][0]] == sigs[i]:
                    runs[-1].append(i)
                else:
                    runs.append([i])
            choices: list[tuple[int, ...]] = []
            for combo in product(*(permutations(r) for r in runs)):
                flat = [i for run in combo for i in run]
                perm = [0] * group.size
                for pos, i in enumerate(flat):
                    perm[i] = pos
                choices.append(tuple(perm))
            perms.append(choices)
        candidates = list(product(*perms))
        if len(candidates) == 1:
            return self.permute(state, list(candidates[0]), sort=True)
        best: tuple[Any, State] | None = None
        for cand in candidates:
            img = self.permute(state, list(cand), sort=True)
            enc = self.stable(img)
            if best is None or enc < best[0]:
                best = (enc, img)
        assert best is not None
        return best[1]

    def signature(self, state: State, group: _Group, i: int) -> Any:
        """Member i's own data, with references into the group abstracted (stable order)."""
        world, actors = state
        memo = (id(group), i, tuple(world[s] for s in group.slots[i]), actors[group.actors[i]])
        got = self._sigs.get(memo)
        if got is None:
            got = self._signature(state, group, i)
            if len(self._sigs) > CACHE_LIMIT:
                self._sigs.clear()
            self._sigs[memo] = got
        return got

    def _signature(self, state: State, group: _Group, i: int) -> Any:
        own = {id(self.objects[s]): ("own", j) for j, s in enumerate(group.slots[i])}
        mem: dict[int, Any] = {}
        for k, slots in enumerate(group.slots):
            if k != i:
                for j, s in enumerate(slots):
                    mem[id(self.objects[s])] = ("member", j)
        names = {n: ("member-name",) for n in group.names}
        names[group.names[i]] = ("own-name",)
        tokens = (own | mem, names)
        world, actors = state
        parts: list[Any] = []
        for s in group.slots[i]:
            skip = self.identity.get(s, ())
            parts.append(
                tuple(self.stable(v, tokens) for k, v in enumerate(world[s]) if k not in skip)
            )
        parts.append(self.stable(actors[group.actors[i]], tokens))
        return tuple(parts)

    def stable(
        self, value: Any, tokens: tuple[dict[int, Any], dict[str, Any]] | None = None
    ) -> Any:
        """A totally ordered, process-independent encoding of a value."""
        t = type(value)
        if t is bool:
            return ("b", value)
        if t is int:
            return ("i", value)
        if t is str:
            if tokens is not None and value in tokens[1]:
                return ("m", tokens[1][value])
            return ("s", value)
        if value is None:
            return ("n",)
        if t is tuple:
            return ("t", tuple(self.stable(v, tokens) for v in value))
        if t is frozenset:
            return ("F", tuple(sorted(self.stable(v, tokens) for v in value)))
        if isinstance(value, Struct):
            if tokens is not None and id(value) in tokens[0]:
                return ("m", tokens[0][id(value)])
            return ("S", self.slot_of.get(id(value), -1))
        if value is UNSET:
            return ("u",)
        if isinstance(value, enum.Enum):
            return ("e", type(value).__qualname__, value.name)
        if isinstance(value, float):
            return ("f", value)
        if isinstance(value, FunctionType):
            return ("c", value.__module__, value.__qualname__)
        return ("r", t.__qualname__, repr(value))

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


def _rename(value: Any, objs: dict[int, Any], strs: dict[str, str]) -> Any:
    t = type(value)
    if t is int or t is bool or value is None:
        return value
    if t is str:
        return strs.get(value, value)
    if t is tuple:
        return tuple([_rename(v, objs, strs) for v in value])
    if t is frozenset:
        return frozenset([_rename(v, objs, strs) for v in value])
    if isinstance(value, Struct):
        return objs.get(id(value), value)
    return value
