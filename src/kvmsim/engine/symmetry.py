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
import marshal
from collections import Counter
from collections.abc import Callable
from functools import partial
from itertools import permutations, product
from operator import itemgetter, lt
from types import FunctionType
from typing import Any

from .compiler import UNSET
from .system import ActorState, State, System
from .world import ModelError, Struct, WorldTuple

AUDIT_FIRST = 300  # audit every one of the first states explored...
AUDIT_EVERY = 64  # ...then one in this many
CACHE_LIMIT = 200_000  # entries per memo table before it is cleared
_MISSING = object()

Renaming = tuple[dict[int, Any], dict[str, str]]  # object id -> object, actor name -> name


class _Memo:
    """fn(part), cached by the part's identity (states share unchanged parts with their
    parent, so this hits most often) and then by value; bounded. An entry holds its part, so
    the id it is filed under cannot be reused while it is there."""

    __slots__ = ("fn", "ids", "values")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.ids: dict[int, tuple[Any, Any]] = {}
        self.values: dict[Any, Any] = {}

    def __call__(self, part: Any) -> Any:
        hit = self.ids.get(id(part))
        if hit is not None and hit[0] is part:
            return hit[1]
        got = self.values.get(part, _MISSING)
        if got is _MISSING:
            got = self.fn(part)
            if len(self.values) >= CACHE_LIMIT:
                self.values.clear()
            self.values[part] = got
        if len(self.ids) >= CACHE_LIMIT:
            self.ids.clear()
        self.ids[id(part)] = (part, got)
        return got


class _Group:
    """One declared symmetry, resolved to actor indices and object slots, with each
    member's signature: its own data (objects' fields but identity ones, actor frames) with
    references to its own objects, to other members' objects and to actor names abstracted,
    so that member i of a state and member p(i) of its image under p have equal ones."""

    def __init__(
        self,
        actors: list[int],
        slots: list[tuple[int, ...]],
        names: list[str],
        slot_of: dict[int, int],
        objects: list[Any],
        identity: dict[int, tuple[int, ...]],
    ) -> None:
        self.actors = actors
        self.slots = slots
        self.names = names
        self.identity = tuple(range(len(actors)))
        # per member: its objects' tuples (one, or a tuple of them), its actor, the
        # signatures by raw parts seen so far and how to compute a new one
        self._members: list[
            tuple[Callable[[Any], Any], int, dict[Any, bytes], Callable[[Any], bytes]]
        ] = []
        for i, own_slots in enumerate(slots):
            objs = {id(objects[s]): ("own", j) for j, s in enumerate(own_slots)}
            for k, other in enumerate(slots):
                if k != i:
                    for j, s in enumerate(other):
                        objs[id(objects[s])] = ("member", j)
            strs: dict[str, Any] = {n: ("member-name",) for n in names}
            strs[names[i]] = ("own-name",)
            skips = [identity.get(s, ()) for s in own_slots]
            compute = partial(_member_signature, slot_of, (objs, strs), skips)
            self._members.append((itemgetter(*own_slots), actors[i], {}, compute))

    @property
    def size(self) -> int:
        return len(self.actors)

    def signatures(self, world: WorldTuple, actors: tuple[ActorState, ...]) -> list[bytes]:
        """Every member's signature in state (world, actors), in member order."""
        out = []
        for own, a, cache, compute in self._members:
            raw = (own(world), actors[a])
            sig = cache.get(raw)
            if sig is None:
                sig = compute(raw)
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[raw] = sig
            out.append(sig)
        return out


class _Plan:
    """How one permutation moves a state's parts, with its renaming cached per part."""

    def __init__(self, red: SymmetryReducer, perms: tuple[tuple[int, ...], ...]) -> None:
        objs, strs = red.renaming(list(perms))
        self.renames = bool(objs or strs)
        slot_src = list(range(len(red.objects)))  # slot_src[dst]: the slot moved to dst
        actor_src = list(range(len(red.system.actors)))
        for group, perm in zip(red.groups, perms):
            for i, j in enumerate(perm):
                actor_src[group.actors[j]] = group.actors[i]
                for src, dst in zip(group.slots[i], group.slots[j]):
                    slot_src[dst] = src
        self.slot_src = slot_src
        self.actor_src = actor_src
        self.fixes = [
            (dst, red.identity[dst])
            for dst, src in enumerate(slot_src)
            if src != dst and red.identity.get(dst)
        ]
        self.cache: dict[Any, Any] = {}
        self._rename = partial(_rename, objs=objs, strs=strs)

    def renamed(self, parts: list[Any]) -> list[Any]:
        """parts with references renamed, each looked up in (or added to) the cache."""
        cache = self.cache
        out = [cache.get(p) for p in parts]
        if None in out:
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            for k, p in enumerate(parts):
                if out[k] is None:
                    if p is None:
                        continue
                    got = cache[p] = self._rename(p)
                    out[k] = got
        return out


def _orders(sigs: list[bytes]) -> list[tuple[int, ...]]:
    """The permutations that sort members by signature (perm[i]: member i's new place):
    one per ordering of each run of equal signatures."""
    n = len(sigs)
    order = sorted(range(n), key=sigs.__getitem__)
    ranked = [sigs[i] for i in order]
    if all(map(lt, ranked, ranked[1:])):  # no ties: one permutation
        perm = [0] * n
        for pos, i in enumerate(order):
            perm[i] = pos
        return [tuple(perm)]
    runs: list[list[int]] = []
    for i in order:
        if runs and sigs[runs[-1][0]] == sigs[i]:
            runs[-1].append(i)
        else:
            runs.append([i])
    out: list[tuple[int, ...]] = []
    for combo in product(*(permutations(r) for r in runs)):
        perm = [0] * n
        for pos, i in enumerate(i for run in combo for i in run):
            perm[i] = pos
        out.append(tuple(perm))
    return out


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
            for member in slots:
                for slot in member:
                    fields = world.fields[slot]
                    self.identity[slot] = tuple(
                        i for i, f in enumerate(fields) if f in sym.identity
                    )
            names_ = [system.actors[a].name for a in actors]
            self.groups.append(
                _Group(actors, slots, names_, self.slot_of, self.objects, self.identity)
            )
            for obj, fname in sym.unordered:
                if id(obj) not in self.slot_of:
                    raise ModelError(f"symmetry: {obj!r} (unordered) is not part of the state")
                slot = self.slot_of[id(obj)]
                self.unordered.setdefault(slot, set()).add(world.fields[slot].index(fname))
        self.audited = 0
        self._plans: dict[tuple[tuple[int, ...], ...], _Plan] = {}
        self._sorted_cache: dict[Any, Any] = {}
        self._part_stable = _Memo(partial(stable, slot_of=self.slot_of))
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
        world, actors = state
        if plan.renames:
            new_world = plan.renamed([world[s] for s in plan.slot_src])
            new_actors = plan.renamed([actors[a] for a in plan.actor_src])
        else:
            new_world = [world[s] for s in plan.slot_src]
            new_actors = [actors[a] for a in plan.actor_src]
        for dst, fix in plan.fixes:  # identity fields stay with the object they name
            changed = list(new_world[dst])
            for k in fix:
                changed[k] = world[dst][k]
            new_world[dst] = tuple(changed)
        if sort and self.unordered:
            self._sort_unordered(new_world)
        return (tuple(new_world), tuple(new_actors))

    def _plan(self, perms: tuple[tuple[int, ...], ...]) -> _Plan:
        plan = self._plans.get(perms)
        if plan is None:
            plan = self._plans[perms] = _Plan(self, perms)
        return plan

    def _sort_unordered(self, world: list[Any]) -> None:
        """Sort the unordered fields of world (a list of object tuples) in place."""
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
        unordered fields), so most states cost one signature per member and no copy."""
        world, actors = state
        choices: list[list[tuple[int, ...]]] = []
        moved = False
        for group in self.groups:
            sigs = group.signatures(world, actors)
            if all(map(lt, sigs, sigs[1:])):
                choices.append([group.identity])
                continue
            moved = True
            choices.append(_orders(sigs))
        if not moved:
            if not self.unordered:
                return state
            new_world = list(world)
            self._sort_unordered(new_world)
            return (tuple(new_world), actors)
        if len(choices) == 1:
            candidates: list[tuple[tuple[int, ...], ...]] = [(c,) for c in choices[0]]
        else:
            candidates = list(product(*choices))
        if len(candidates) == 1:
            return self.permute(state, list(candidates[0]), sort=True)
        images = {self.permute(state, list(c), sort=True) for c in candidates}
        if len(images) == 1:
            return images.pop()
        return min(images, key=self._encoding)

    def _encoding(self, state: State) -> Any:
        """A stable, totally ordered encoding of state (tie-breaks between candidate keys),
        built from cached encodings of its parts."""
        enc = self._part_stable
        world, actors = state
        return (tuple([enc(v) for v in world]), tuple([enc(f) for f in actors]))

    def signature(self, state: State, group: _Group, i: int) -> Any:
        """Member i's own data, with references into the group abstracted (stable order)."""
        return group.signatures(state[0], state[1])[i]

    def stable(
        self, value: Any, tokens: tuple[dict[int, Any], dict[str, Any]] | None = None
    ) -> Any:
        """A totally ordered, process-independent encoding of a value."""
        return stable(value, self.slot_of, tokens)

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


def _member_signature(
    slot_of: dict[int, int],
    tokens: tuple[dict[int, Any], dict[str, Any]],
    skips: list[tuple[int, ...]],
    raw: tuple[Any, ...],
) -> bytes:
    """A member's signature from its raw parts (its objects' tuples, one or a tuple of them,
    then its frames): each object's fields but the identity ones, then the frames, encoded
    with tokens for the group's objects and names. Bytes (marshal format 2, which depends on
    values alone) compare fast and in the same order in every process."""
    objs = raw[0] if len(skips) > 1 else (raw[0],)
    out: list[Any] = [
        tuple(stable(v, slot_of, tokens) for k, v in enumerate(vals) if k not in skip)
        for skip, vals in zip(skips, objs)
    ]
    out.append(stable(raw[1], slot_of, tokens))
    return marshal.dumps(tuple(out), 2)


def stable(
    value: Any,
    slot_of: dict[int, int],
    tokens: tuple[dict[int, Any], dict[str, Any]] | None = None,
) -> Any:
    """A totally ordered, process-independent encoding of a value; tokens: what to write
    for some objects (by id) and strings instead of their own encoding."""
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
        return ("t", tuple([stable(v, slot_of, tokens) for v in value]))
    if t is frozenset:
        return ("F", tuple(sorted([stable(v, slot_of, tokens) for v in value])))
    if isinstance(value, Struct):
        if tokens is not None and id(value) in tokens[0]:
            return ("m", tokens[0][id(value)])
        return ("S", slot_of.get(id(value), -1))
    if value is UNSET:
        return ("u",)
    if isinstance(value, enum.Enum):
        return ("e", type(value).__qualname__, value.name)
    if isinstance(value, float):
        return ("f", value)
    if isinstance(value, FunctionType):
        return ("c", value.__module__, value.__qualname__)
    return ("r", t.__qualname__, repr(value))


def _rename(value: Any, objs: dict[int, Any], strs: dict[str, str]) -> Any:
    """value with objects and names renamed (value itself when nothing is)."""
    t = type(value)
    if t is int or t is bool or value is None:
        return value
    if t is str:
        return strs.get(value, value)
    if t is tuple:
        out = [_rename(v, objs, strs) for v in value]
        return value if all(a is b for a, b in zip(out, value)) else tuple(out)
    if t is frozenset:
        return frozenset([_rename(v, objs, strs) for v in value])
    if isinstance(value, Struct):
        return objs.get(id(value), value)
    return value
