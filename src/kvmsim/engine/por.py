"""Partial-order reduction: expand one actor's next step when it commutes with everything
the other actors can still do.

In each state the search may expand, instead of every actor's step, the step (all its choice
outcomes) of a single enabled actor p, when

1. *persistence*: no other actor can, from its current position and whatever it does from
   there, write a field p's step reads or writes, or read a field p's step writes. p's step
   is recorded as it runs (field reads through a hook on Struct attribute access, writes
   through one on assignment); the other actors' futures come from a static analysis of
   every block still reachable in their code, steps they cannot take yet included
   (engine/footprint.py). Looking only at the steps other actors can take *now* is unsound:
   a step that becomes enabled later may race with p (design note 8c);
2. *invisibility*: p's step writes no field an invariant or a `sometimes` witness reads
   (their functions are analysed the same way), so no state a property looks at is
   skipped;
3. *cycle proviso*: every successor of p's step is a state not seen before. A cycle of the
   reduced graph then always contains a fully expanded state (its first-discovered state's
   predecessor found it already seen), so no step is postponed forever (design note 8d).

Otherwise the state is fully expanded. Then every deadlock and terminal state, every
violated invariant, assertion and fail() event of the full graph is found (a persistent,
invisible set with the proviso preserves reachability of these), but not necessarily by a
shortest path, and the graph is not fit for liveness or exact costs: the search turns the
reduction off for those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import FunctionType
from typing import Any

from .compiler import UNSET, compile_actor
from .footprint import TOP, Analyzer, Summary, reachable_values, satisfiable, struct_methods
from .futures import Futures
from .model import Model
from .system import Outcome, State, System
from .world import Struct

Step = tuple[int, tuple[int, ...], Outcome]
Field = tuple[int, str]  # (object slot, field name)


class Footprint:
    """Fields some code may touch: exactly (slot, field) or by name on any object."""

    __slots__ = ("reads", "writes", "read_names", "write_names", "anything")

    def __init__(self) -> None:
        self.reads: set[Field] = set()
        self.writes: set[Field] = set()
        self.read_names: set[str] = set()
        self.write_names: set[str] = set()
        self.anything = False

    def add(self, other: Footprint) -> None:
        self.reads |= other.reads
        self.writes |= other.writes
        self.read_names |= other.read_names
        self.write_names |= other.write_names
        self.anything = self.anything or other.anything

    def conflicts(self, reads: set[Field], writes: set[Field]) -> bool:
        """Whether a step that read and wrote these fields may not commute with this code."""
        if self.anything:
            return True
        for f in writes:
            if f in self.reads or f in self.writes or f[1] in self.read_names:
                return True
            if f[1] in self.write_names:
                return True
        for f in reads:
            if f in self.writes or f[1] in self.write_names:
                return True
        return False


_READS: set[tuple[int, str]] = set()
_WRITES: set[tuple[int, str]] = set()


def _recording_get(self: Struct, name: str) -> Any:
    _READS.add((id(self), name))
    return object.__getattribute__(self, name)


def _recording_set(self: Struct, name: str, value: Any) -> None:
    _WRITES.add((id(self), name))
    object.__setattr__(self, name, value)


class PartialOrder:
    """Chooses, per state, the steps the search must expand."""

    def __init__(self, system: System, model: Model) -> None:
        self.system = system
        world = system.world
        self.objects = world.objects
        self.slot_of = {id(o): i for i, o in enumerate(world.objects)}
        self.fields = [set(f) for f in world.fields]
        classes = {type(o) for o in world.objects}
        names = {f for c in classes for f in c._fields}
        self.analyzer = Analyzer(self.slot_of, struct_methods(classes), names)
        self.futures = Futures(self.analyzer)
        whole = Summary()
        # An actor whose code the analysis cannot follow may also read fields the hooks do
        # not see (through __dict__, getattr): its steps are never expanded alone.
        self.opaque: set[int] = set()
        hooked = any(
            name in vars(klass)
            for c in classes
            for klass in c.__mro__
            if klass not in (Struct, object)
            for name in ("__getattribute__", "__getattr__", "__setattr__")
        )
        for a, spec in enumerate(system.actors):
            summary = (
                self.analyzer.function(spec.func)
                if isinstance(spec.func, FunctionType)
                else Summary(anything=True)
            )
            whole.add(summary)
            for arg in [*spec.args, *(v for _k, v in spec.kwargs)]:
                if isinstance(arg, FunctionType):  # may be called through a parameter
                    whole.add(self.analyzer.function(arg).detached())
            if summary.anything or hooked:
                self.opaque.add(a)
        self.written = {f for _r, _c, f, w, _g in whole.accesses if w}
        if whole.anything:
            self.written = set(names)
        seen: Summary = Summary()
        for prop in model.properties:
            if isinstance(prop.check, FunctionType):
                seen.add(self.analyzer.function(prop.check))
            elif prop.check is not None:
                seen.anything = True
        self.visible = self._resolve(seen, (system.root,))
        self._cache: dict[Any, Footprint] = {}
        self.ample_states = 0  # states expanded with one actor's step
        self.full_states = 0

    # -- resolving static summaries against a state -----------------------------------------
    def _resolve(
        self, summary: Summary, params: tuple[Any, ...], func: FunctionType | None = None
    ) -> Footprint:
        """The fields summary's accesses reach with these parameter (locals) values; for a
        frame of func, only the accesses the control locals' reachable values allow."""
        out = Footprint()
        out.anything = summary.anything
        values: dict[str, set[Any] | None] = {}
        if func is not None and summary.transitions | {a for a in summary.accesses if a[4]}:
            names = compile_actor(func).local_names
            for name in {c[0] for a in summary.accesses for c in a[4]} | {
                t[0] for t in summary.transitions
            }:
                at = names.index(name) if name in names else -1
                value = params[at] if 0 <= at < len(params) else UNSET
                values[name] = set() if value is UNSET else {value}
            values = reachable_values(summary, values)
        for i, guard in summary.calls:
            if guard and func is not None and not satisfiable(guard, values):
                continue
            if i >= len(params):
                out.anything = True  # a parameter whose value is not known here
                continue
            called = params[i]
            if isinstance(called, FunctionType):
                out.add(self._resolve(self.analyzer.function(called), ()))
            elif called is not UNSET and called is not None:
                out.anything = True
        for root, chain, fname, write, guard in summary.accesses:
            if guard and func is not None and not satisfiable(guard, values):
                continue
            obj: Any = None
            if root[0] == "p" and root[1] < len(params):
                obj = params[root[1]]
            elif root[0] == "o":
                obj = self.objects[root[1]]
            elif root != TOP:
                obj = None
            for attr in chain:
                if (
                    isinstance(obj, Struct)
                    and attr not in self.written
                    and attr in type(obj)._fields
                ):
                    obj = obj.__dict__[attr]
                else:
                    obj = None
                    break
            slot = self.slot_of.get(id(obj)) if isinstance(obj, Struct) else None
            if slot is None:
                (out.write_names if write else out.read_names).add(fname)
            else:
                (out.writes if write else out.reads).add((slot, fname))
        return out

    def future(self, frames: Any) -> Footprint:
        """Everything an actor with this call stack may still read or write."""
        out = Footprint()
        for func, pc, values in frames:
            key = (func, pc, values)
            got = self._cache.get(key)
            if got is None:
                summary = self.futures.summary(func, pc, values)
                if summary is None:  # too many positions: every block still reachable
                    got = self._resolve(self.analyzer.future(func, pc), values, func)
                else:
                    got = self._resolve(summary, values)
                if len(self._cache) > 200_000:
                    self._cache.clear()
                self._cache[key] = got
            out.add(got)
        return out

    # -- the reduction -------------------------------------------------------------------------
    def _run(self, state: State, actor: int) -> tuple[list[Step], set[Field], set[Field]]:
        """Every outcome of actor's next step, and the fields those runs read and wrote."""
        _READS.clear()
        _WRITES.clear()
        Struct.__getattribute__ = _recording_get  # type: ignore[method-assign,assignment]
        Struct.__setattr__ = _recording_set  # type: ignore[method-assign,assignment]
        try:
            steps = [(actor, sc, out) for sc, out in self.system._outcomes(state, actor)]
        finally:
            del Struct.__getattribute__
            del Struct.__setattr__
        writes = self._fields_of(_WRITES)
        # and whatever changed by other means (a write through __dict__ skips the hook)
        before = state[0]
        for _a, _sc, out in steps:
            if out.state is not None:
                for slot, (old, new) in enumerate(zip(before, out.state[0])):
                    if old is not new and old != new:
                        names = self.system.world.fields[slot]
                        writes.update((slot, names[k]) for k in range(len(old)) if old[k] != new[k])
        return steps, self._fields_of(_READS), writes

    def _fields_of(self, accesses: set[tuple[int, str]]) -> set[Field]:
        out: set[Field] = set()
        for oid, name in accesses:
            slot = self.slot_of.get(oid)
            if slot is not None and name in self.fields[slot]:
                out.add((slot, name))
        return out

    def successors(self, state: State, seen: Callable[[State], bool]) -> Iterator[Step]:
        """The steps to expand from state: one actor's (an ample set) or everyone's."""
        runs: list[tuple[int, list[Step], set[Field], set[Field]]] = []
        for actor, frames in enumerate(state[1]):
            if frames is None:
                continue
            steps, reads, writes = self._run(state, actor)
            runs.append((actor, steps, reads, writes))
        enabled = [r for r in runs if any(out.kind != "blocked" for _a, _s, out in r[1])]
        if len(enabled) > 1:
            futures = {a: self.future(state[1][a]) for a, _s, _r, _w in runs}
            for actor, steps, reads, writes in sorted(enabled, key=lambda r: len(r[1])):
                if self._ample(actor, steps, reads, writes, futures, seen):
                    self.ample_states += 1
                    return iter(steps)
        self.full_states += 1
        return (step for _a, steps, _r, _w in runs for step in steps)

    def _ample(
        self,
        actor: int,
        steps: list[Step],
        reads: set[Field],
        writes: set[Field],
        futures: dict[int, Footprint],
        seen: Callable[[State], bool],
    ) -> bool:
        if actor in self.opaque:
            return False
        vis = self.visible
        if vis.anything and writes:
            return False
        if any(f in vis.reads or f[1] in vis.read_names for f in writes):
            return False
        for other, fut in futures.items():
            if other != actor and fut.conflicts(reads, writes):
                return False
        # the cycle proviso, for every successor
        return all(out.state is None or not seen(out.state) for _a, _s, out in steps)
