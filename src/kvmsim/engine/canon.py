"""The parts of symmetry reduction's canonical key that run per state (see symmetry.py).

A member's *signature* is its own data (its objects' fields but the identity ones, then its
actor's frames) encoded with tokens for references into the group: its own objects, other
members' objects, its own name and other members' names. A permutation p maps member i of a
state to member p(i) of the image with an equal signature, so sorting members by signature
is a function of the orbit; only members whose signatures tie need to be tried in each order.

Everything here is cached by value: a member's raw data (its objects' tuples and its frames)
takes few distinct values in a search (hundreds, for the SPIN model's vCPUs), so its signature
and its renaming under each permutation are computed once per value; the parts outside the
group (shared objects, other actors) are renamed through a per-permutation cache.
"""

from __future__ import annotations

import enum
import marshal
from collections.abc import Callable
from itertools import permutations, product
from operator import itemgetter, lt
from types import FunctionType
from typing import Any

from .compiler import UNSET
from .system import ActorState
from .world import Struct, WorldTuple

CACHE_LIMIT = 200_000  # entries per cache before it is cleared
Tokens = tuple[dict[int, Any], dict[str, Any]]  # object id -> token, name -> token
# a member's cached data: [signature, {plan: (renamed objects, renamed frames)}, raw data,
# {plan: the hash of its image in the orbit fingerprint (orbit_fp.py)}]
Entry = list[Any]


class Group:
    """One declared symmetry: its members' actors, object slots and names."""

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
        self.single = all(len(s) == 1 for s in slots)  # one object per member: no tuple
        # per member: a getter of its objects' tuples (one, or a tuple of them), its actor,
        # its entries by raw data, and its signature's tokens and skipped identity fields
        self.members: list[tuple[Callable[[Any], Any], int, dict[Any, Entry], Any]] = []
        for i, own_slots in enumerate(slots):
            objs = {id(objects[s]): ("own", j) for j, s in enumerate(own_slots)}
            for k, other in enumerate(slots):
                if k != i:
                    for j, s in enumerate(other):
                        objs[id(objects[s])] = ("member", j)
            strs: dict[str, Any] = {n: ("member-name",) for n in names}
            strs[names[i]] = ("own-name",)
            skips = [identity.get(s, ()) for s in own_slots]
            getter = itemgetter(*own_slots)
            self.members.append((getter, actors[i], {}, (slot_of, (objs, strs), skips)))

    @property
    def size(self) -> int:
        return len(self.actors)

    def entries(self, world: WorldTuple, actors: tuple[ActorState, ...]) -> list[Entry]:
        """Every member's entry in state (world, actors), in member order."""
        out = []
        for own, a, cache, how in self.members:
            raw = (own(world), actors[a])
            entry = cache.get(raw)
            if entry is None:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                entry = cache[raw] = [signature(raw, *how), {}, raw, {}]
            out.append(entry)
        return out


def signature(
    raw: tuple[Any, ActorState], slot_of: dict[int, int], tokens: Tokens, skips: list[Any]
) -> bytes:
    """A member's signature from its raw data (objects' tuples, frames). Bytes (marshal
    format 2, which depends on values alone) compare fast and alike in every process."""
    objs = raw[0] if len(skips) > 1 else (raw[0],)
    out: list[Any] = [
        tuple(stable(v, slot_of, tokens) for k, v in enumerate(vals) if k not in skip)
        for skip, vals in zip(skips, objs)
    ]
    out.append(stable(raw[1], slot_of, tokens))
    return marshal.dumps(tuple(out), 2)


def in_order(sigs: list[bytes]) -> bool:
    """Members already strictly sorted by signature (no ties)?"""
    return all(map(lt, sigs, sigs[1:]))


def sorting_choices(groups: list[Group], found: list[list[Entry]]) -> list[list[tuple[int, ...]]]:
    """Per group (its members' entries found), the permutations that sort its members by
    signature: the identity alone when they are in order already."""
    choices = []
    for group, entries in zip(groups, found):
        sigs = [e[0] for e in entries]
        choices.append([group.identity] if in_order(sigs) else orders(sigs))
    return choices


def orders(sigs: list[bytes]) -> list[tuple[int, ...]]:
    """The permutations that sort members by signature (perm[i]: member i's new place):
    one per ordering of each run of equal signatures."""
    n = len(sigs)
    order = sorted(range(n), key=sigs.__getitem__)
    ranked = [sigs[i] for i in order]
    if in_order(ranked):  # no ties: one permutation
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


class Plan:
    """How one permutation (one per group) moves a state's parts and renames references."""

    def __init__(
        self,
        groups: list[Group],
        perms: tuple[tuple[int, ...], ...],
        nobjects: int,
        nactors: int,
        objects: list[Any],
        identity: dict[int, tuple[int, ...]],
    ) -> None:
        self.perms = perms
        # per group, per member: the slots and the actor it moves to
        self.places = [
            [(group.slots[j], group.actors[j]) for j in perm] for group, perm in zip(groups, perms)
        ]
        objs: dict[int, Any] = {}
        strs: dict[str, str] = {}
        member_slots: set[int] = set()
        member_actors: set[int] = set()
        self.fixes: list[tuple[int, tuple[int, ...]]] = []
        for group, perm in zip(groups, perms):
            member_actors.update(group.actors)
            for i, j in enumerate(perm):
                member_slots.update(group.slots[i])
                if i == j:
                    continue
                for src, dst in zip(group.slots[i], group.slots[j]):
                    objs[id(objects[src])] = objects[dst]
                    if identity.get(dst):
                        self.fixes.append((dst, identity[dst]))
                strs[group.names[i]] = group.names[j]
        self.objs, self.strs = objs, strs
        self.renames = bool(objs or strs)
        self.other_slots = [s for s in range(nobjects) if s not in member_slots]
        self.other_actors = [a for a in range(nactors) if a not in member_actors]
        self.cache: dict[Any, Any] = {}

    def rename(self, value: Any) -> Any:
        return rename(value, self.objs, self.strs)

    def renamed(self, part: Any) -> Any:
        """A part outside the groups with references renamed (cached by value)."""
        cache = self.cache
        got = cache.get(part)
        if got is None:
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            got = cache[part] = rename(part, self.objs, self.strs)
        return got


def image(
    world: WorldTuple,
    actors: tuple[ActorState, ...],
    plan: Plan,
    groups: list[Group],
    found: list[list[Entry]],
) -> tuple[list[Any], list[Any]]:
    """The parts of plan's image of a state whose members' entries are found (per group)."""
    new_world: list[Any] = list(world)
    new_actors: list[Any] = list(actors)
    for group, entries, places in zip(groups, found, plan.places):
        for entry, (slots, actor) in zip(entries, places):
            got = entry[1].get(plan)
            if got is None:
                objs, frames = entry[2]
                got = entry[1][plan] = (plan.rename(objs), plan.rename(frames))
            if group.single:
                new_world[slots[0]] = got[0]
            else:
                for dst, vals in zip(slots, got[0]):
                    new_world[dst] = vals
            new_actors[actor] = got[1]
    if plan.renames:
        renamed = plan.renamed
        for s in plan.other_slots:
            new_world[s] = renamed(world[s])
        for a in plan.other_actors:
            frames = actors[a]
            if frames is not None:
                new_actors[a] = renamed(frames)
    for dst, fix in plan.fixes:  # identity fields stay with the object they name
        changed = list(new_world[dst])
        for k in fix:
            changed[k] = world[dst][k]
        new_world[dst] = tuple(changed)
    return new_world, new_actors


def stable(value: Any, slot_of: dict[int, int], tokens: Tokens | None = None) -> Any:
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


def rename(value: Any, objs: dict[int, Any], strs: dict[str, str]) -> Any:
    """value with objects and names renamed (value itself when nothing is)."""
    t = type(value)
    if t is int or t is bool or value is None:
        return value
    if t is str:
        return strs.get(value, value)
    if t is tuple:
        out = [rename(v, objs, strs) for v in value]
        return value if all(a is b for a, b in zip(out, value)) else tuple(out)
    if t is frozenset:
        return frozenset([rename(v, objs, strs) for v in value])
    if isinstance(value, Struct):
        return objs.get(id(value), value)
    return value
