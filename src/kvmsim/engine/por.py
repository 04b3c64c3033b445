"""Partial-order reduction: expand one actor's next step when it commutes with everything
the other actors can still do.

In each state the search may expand, instead of every actor's step, the step (all its choice
outcomes) of a single enabled actor p, when

1. *persistence*: no other actor can, from its current position and whatever it does from
   there, write a field p's step reads or writes, or read a field p's step writes. The
   other actors' futures come from running their code abstractly from where they stand
   (engine/futures.py: the locals that steer it, such as a pc or a loop counter, keep their
   values, so a counted loop ends), falling back to every block still reachable in their
   code (engine/footprint.py); steps they cannot take yet are included. Looking only at the
   steps other actors can take *now* is unsound: a step that becomes enabled later may race
   with p (design note 8c). p's step is judged first from the same reading of its code up to
   its next yield (no step is run for an actor that cannot be ample); failing that, from
   the fields it reads and writes when run in this state (field reads through a hook on
   Struct attribute access, writes through one on assignment, and whatever changed), which
   is sharper where the step branches on shared state;
2. *invisibility*: p's step writes no field an invariant or a `sometimes` witness reads
   (their functions are analysed the same way), so no state a property looks at is
   skipped;
3. *cycle proviso*: no successor of p's step is a state the search found before at the same
   or a smaller depth (``seen`` says so; the depth-first search passes "found at all"). In
   breadth-first order an edge of a cycle must lead to a state no deeper than its source,
   found by then, so every cycle of the reduced graph contains a fully expanded state and no
   step is postponed forever (design note 8d: the proviso holds for every successor).

Otherwise the state is fully expanded. Then every deadlock and terminal state, every
violated invariant, assertion and fail() event of the full graph is found (a persistent,
invisible set with the proviso preserves reachability of these), but not necessarily by a
shortest path, and the graph is not fit for liveness or exact costs: the search turns the
reduction off for those.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from types import FunctionType
from typing import Any

from .compiler import UNSET, compile_actor
from .footprint import TOP, Analyzer, Summary, reachable_values, satisfiable, struct_methods
from .futures import Futures
from .model import Model
from .system import Outcome, Remembered, State, System, remembered
from .world import Struct

RECORDED_SIZE = 100_000  # recorded steps PartialOrder._record remembers
PLANS_SIZE = 100_000  # static plans (per actors' call stacks) PartialOrder remembers
Step = tuple[int, tuple[int, ...], Outcome]
Field = tuple[int, str]  # (object slot, field name)
# live actors, static candidates, hopeful actors, every actor's future (see _static_plan)
StaticPlan = tuple[list[int], list[int], list[int], list["Footprint | None"]]
_SERIALS = itertools.count()


class Footprint:
    """Fields some code may touch: exactly (slot, field) or by name on any object."""

    __slots__ = ("reads", "writes", "read_names", "write_names", "anything", "serial")

    def __init__(self) -> None:
        self.serial = next(_SERIALS)  # names a cached footprint in memos
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

    def clashes(self, other: Footprint) -> bool:
        """Whether code with this footprint (a step) may not commute with other's code."""
        if self.anything or other.anything:
            return True
        o_reads, o_writes = other.reads, other.writes
        o_read_names = other.read_names | {f[1] for f in o_reads}
        o_write_names = other.write_names | {f[1] for f in o_writes}
        for f in self.writes:
            if f in o_reads or f in o_writes or f[1] in other.read_names:
                return True
            if f[1] in other.write_names:
                return True
        for f in self.reads:
            if f in o_writes or f[1] in other.write_names:
                return True
        for name in self.write_names:
            if name in o_read_names or name in o_write_names:
                return True
        return any(name in o_write_names for name in self.read_names)


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
        self.visible_names = self.visible.read_names | {f[1] for f in self.visible.reads}
        self._cache: dict[Any, Footprint] = {}
        # _record(): (actor, its frames, world) -> its remembered outcomes and footprint
        self._recorded: dict[Any, tuple[list[Remembered], Footprint]] = {}
        self._plans: dict[Any, StaticPlan] = {}  # per actors' call stacks
        self.reused = 0  # recorded steps taken from _recorded
        self._stacks: dict[Any, Footprint] = {}
        self._next: dict[Any, Footprint] = {}
        self._certain: dict[Any, Footprint] = {}
        self._pairs: dict[tuple[int, int], bool] = {}  # (step, future) serials: clash?
        self._invisible: dict[int, bool] = {}
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

    def _frame_future(self, func: FunctionType, pc: int, values: tuple[Any, ...]) -> Footprint:
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
        return got

    def future(self, frames: Any) -> Footprint:
        """Everything an actor with this call stack may still read or write."""
        got = self._stacks.get(frames)
        if got is None:
            got = Footprint()
            for func, pc, values in frames:
                got.add(self._frame_future(func, pc, values))
            if len(self._stacks) > 200_000:
                self._stacks.clear()
            self._stacks[frames] = got
        return got

    def next_step(self, frames: Any) -> Footprint:
        """What an actor with this call stack may read or write in its next step: its top
        frame's code up to the next yield and, where that may return, its callers'."""
        got = self._next.get(frames)
        if got is None:
            got = Footprint()
            for func, pc, values in reversed(frames):
                code = self.futures.function(func)
                found = None if code is None else code.next_step(pc, values)
                if found is None:
                    got.anything = True
                    break
                got.add(self._resolve(found[0], values))
                if not found[1]:
                    break
            if len(self._next) > 200_000:
                self._next.clear()
            self._next[frames] = got
        return got

    def certain(self, frames: Any) -> Footprint:
        """What the top frame's next step touches whatever the state (see
        FunctionFutures.certain)."""
        got = self._certain.get(frames)
        if got is None:
            func, pc, values = frames[-1]
            code = self.futures.function(func)
            got = Footprint() if code is None else self._resolve(code.certain(pc, values), values)
            if len(self._certain) > 200_000:
                self._certain.clear()
            self._certain[frames] = got
        return got

    # -- the reduction -------------------------------------------------------------------------
    def successors(self, state: State, seen: Callable[[State], bool]) -> Iterator[Step]:
        """The steps to expand from state: one actor's (an ample set) or everyone's.

        First from the static footprints of the actors' next steps (no step is run for an
        actor that cannot be ample); failing that, from the fields each step reads and
        writes when run in this state, which is sharper where a step branches on shared
        state (a loop that ends, a lock that is free)."""
        stacks = state[1]
        plan = self._plans.get(stacks)
        if plan is None:
            plan = self._static_plan(stacks)
        live, candidates, hopeful, futures = plan
        if len(live) < 2:
            self.full_states += 1
            return (step for a in live for step in self._run(state, a))
        ran: dict[int, list[Step]] = {}
        for actor in candidates:
            steps = ran[actor] = self._run(state, actor)
            if self._ample(steps, seen):
                return iter(steps)
        if not hopeful:
            self.full_states += 1
            return (step for a in live for step in (ran[a] if a in ran else self._run(state, a)))
        recorded = self._record(state, hopeful)
        ran.update((a, steps) for a, (steps, _fp) in recorded.items())
        ran.update((a, self._run(state, a)) for a in live if a not in ran)
        enabled = [a for a in live if any(o.kind != "blocked" for _a, _s, o in ran[a])]
        if len(enabled) > 1:
            for actor in sorted(recorded, key=lambda a: len(ran[a])):
                steps, step = recorded[actor]
                if (
                    actor in enabled
                    and actor not in self.opaque
                    and self._independent(actor, step, futures, memo=False)
                    and self._ample(steps, seen)
                ):
                    return iter(steps)
        self.full_states += 1
        return (step for a in live for step in ran[a])

    def _static_plan(self, stacks: tuple[Any, ...]) -> StaticPlan:
        """What the code alone says for these call stacks (so it is remembered per stacks):
        the live actors; those whose next step is independent on every path (candidates,
        in order); those whose step may prove independent when run and recorded (hopeful);
        and every actor's future."""
        live = [a for a, frames in enumerate(stacks) if frames is not None]
        futures = [None if f is None else self.future(f) for f in stacks]
        candidates: list[int] = []
        hopeful: list[int] = []
        if len(live) >= 2:
            for a in live:
                if a in self.opaque:
                    continue
                if self._independent(a, self.next_step(stacks[a]), futures):
                    candidates.append(a)
                elif self._independent(a, self.certain(stacks[a]), futures):
                    hopeful.append(a)
        plan = (live, candidates, hopeful, futures)
        if len(self._plans) >= PLANS_SIZE:
            self._plans.clear()
        self._plans[stacks] = plan
        return plan

    def _ample(self, steps: list[Step], seen: Callable[[State], bool]) -> bool:
        """Whether steps (one actor's) may be expanded alone: the actor is enabled, and the
        cycle proviso holds for every successor."""
        if any(out.kind != "blocked" for _a, _s, out in steps) and all(
            out.state is None or not seen(out.state) for _a, _s, out in steps
        ):
            self.ample_states += 1
            return True
        return False

    def _run(self, state: State, actor: int) -> list[Step]:
        return [(actor, sc, out) for sc, out in self.system.outcomes(state, actor)]

    def _record(self, state: State, actors: list[int]) -> dict[int, tuple[list[Step], Footprint]]:
        """Every outcome of each actor's next step, and the fields those runs touched (field
        reads through a hook on Struct attribute access, writes through one on assignment,
        and whatever else changed). Like the outcomes, the fields are a function of (actor,
        its frames, the world), so both are remembered for states that share the triple."""
        out: dict[int, tuple[list[Step], Footprint]] = {}
        system, memo = self.system, self._recorded
        world, stacks = state
        fresh: list[int] = []
        for actor in actors:
            try:
                known = memo.get((actor, stacks[actor], world))
            except TypeError:  # unhashable: the search reports where it is stored
                known = None
            if known is None:
                fresh.append(actor)
            else:
                self.reused += 1
                steps = [(actor, *system.rebuilt(state, actor, r)) for r in known[0]]
                out[actor] = (steps, known[1])
        if not fresh:
            return out
        Struct.__getattribute__ = _recording_get  # type: ignore[method-assign,assignment]
        Struct.__setattr__ = _recording_set  # type: ignore[method-assign,assignment]
        try:
            for actor in fresh:
                _READS.clear()
                _WRITES.clear()
                # not system.outcomes: a remembered step would run no code for the hooks
                steps = [(actor, sc, o) for sc, o in system._outcomes(state, actor)]
                fp = Footprint()
                fp.reads = self._fields_of(_READS)
                fp.writes = self._fields_of(_WRITES)
                out[actor] = (steps, fp)
        finally:
            del Struct.__getattribute__
            del Struct.__setattr__
        before = state[0]
        fields = system.world.fields
        for actor in fresh:
            steps, fp = out[actor]
            for _a, _sc, o in steps:  # a write through __dict__ skips the hook
                if o.state is not None:
                    for slot, (old, new) in enumerate(zip(before, o.state[0])):
                        if old is not new and old != new:
                            fp.writes.update(
                                (slot, fields[slot][k]) for k in range(len(old)) if old[k] != new[k]
                            )
            if len(memo) >= RECORDED_SIZE:
                memo.clear()
            with contextlib.suppress(TypeError):
                memo[(actor, stacks[actor], world)] = (
                    [remembered(sc, o, actor) for _a, sc, o in steps],
                    fp,
                )
        return out

    def _fields_of(self, accesses: set[tuple[int, str]]) -> set[Field]:
        got: set[Field] = set()
        for oid, name in accesses:
            slot = self.slot_of.get(oid)
            if slot is not None and name in self.fields[slot]:
                got.add((slot, name))
        return got

    def _independent(
        self, actor: int, step: Footprint, futures: list[Footprint | None], memo: bool = True
    ) -> bool:
        """Whether a step of actor with this footprint is invisible and commutes with
        everything every other actor may still do (memo: step is a cached footprint)."""
        if step.anything:
            return False
        invisible = self._invisible.get(step.serial) if memo else None
        if invisible is None:
            invisible = self._is_invisible(step)
            if memo:
                self._invisible[step.serial] = invisible
        if not invisible:
            return False
        pairs = self._pairs
        if len(pairs) > 1_000_000:
            pairs.clear()
            self._invisible.clear()
        for other, fut in enumerate(futures):
            if fut is None or other == actor:
                continue
            if not memo:
                if step.clashes(fut):
                    return False
                continue
            key = (step.serial, fut.serial)
            clash = pairs.get(key)
            if clash is None:
                clash = pairs[key] = step.clashes(fut)
            if clash:
                return False
        return True

    def _is_invisible(self, step: Footprint) -> bool:
        """Whether the step writes no field a property reads."""
        vis = self.visible
        if vis.anything and (step.writes or step.write_names):
            return False
        if any(f in vis.reads or f[1] in vis.read_names for f in step.writes):
            return False
        return not any(n in self.visible_names for n in step.write_names)


_READS: set[tuple[int, str]] = set()
_WRITES: set[tuple[int, str]] = set()


def _recording_get(self: Struct, name: str) -> Any:
    _READS.add((id(self), name))
    return object.__getattribute__(self, name)


def _recording_set(self: Struct, name: str, value: Any) -> None:
    _WRITES.add((id(self), name))
    object.__setattr__(self, name, value)
