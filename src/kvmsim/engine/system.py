"""Runs one atomic step of one actor from a stored state: the explorer's only primitive.

A state is ``(world, actors)``: the world's field tuples and, per actor, ``None`` once it has
finished or its call stack of frames ``(function, block, live locals)``. Both are plain tuples,
so a state is its own fingerprint.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from inspect import CO_GENERATOR
from types import CoroutineType, FunctionType, GeneratorType
from typing import Any

from .compiler import CALL, JUMP, UNSET, YIELD, CompileError, Program, compile_actor
from .model import ActorSpec, Model, Symmetry
from .runtime import SCRIPT, Blocked, NeedChoice, PropertyFailure
from .world import ModelError, World, WorldTuple, check_value, remember_checked

Frame = tuple[FunctionType, int, tuple[Any, ...]]
ActorState = tuple[Frame, ...] | None
State = tuple[WorldTuple, tuple[ActorState, ...]]

STEP_BUDGET = 100_000  # blocks one step may run before it is declared non-terminating
MEMO_SIZE = 100_000  # (actor, frames, world) triples whose outcomes successors() remembers
MEMO_TRIAL = 5_000  # ... given up after this many look-ups if fewer than a fifth found one
RECHECK_FIRST = 200  # remembered outcomes run again to check them: the first ones...
RECHECK_EVERY = 1_000  # ...then one in this many


class StepClock:
    """Steps (and invariant evaluations) started and finished in this process: a watchdog
    (kvmsim.watchdog) that sees the same one still running twice in a row has found the
    model's code stuck in plain Python, where the block budget cannot see it (a helper
    function's or an invariant's endless loop)."""

    __slots__ = ("started", "finished")

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0


CLOCK = StepClock()


@dataclass(slots=True)
class Outcome:
    """What one step did. kind: ok, blocked, assertion, error. (Not frozen: a frozen
    dataclass pays an object.__setattr__ per field, and one is made per transition.)"""

    kind: str
    state: State | None = None
    label: str = ""
    # kernel-function-like call stack at the step's end (for a successful step, only when
    # run with detail=True: replay and step_with; successors() leave it empty)
    stack: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    message: str = ""
    line: str = ""  # file:line of the yield (or the failure); like stack for detail
    prop: str = ""  # for kind "property": the property the step violated
    events: tuple[str, ...] = ()  # cost events noted during the step
    failures: tuple[tuple[str, str], ...] = ()  # (property, message) reported by fail()


class System:
    """A model instantiated once: the live world objects and the compiled actors."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._programs: dict[FunctionType, Program] = {}
        root, setup = model.build_setup()
        actors = setup.actors
        self.root = root
        self.actors: list[ActorSpec] = actors
        self._names = [a.name for a in actors]
        self.symmetries: list[Symmetry] = setup.symmetries
        roots: list[tuple[str, Any]] = [("", root)]
        for spec in actors:
            for i, arg in enumerate(spec.args):
                roots.append((f"{spec.name}.arg{i}", arg))
            for key, arg in spec.kwargs:
                roots.append((f"{spec.name}.{key}", arg))
        self.world = World(roots)
        self._made: tuple[State, int, Sequence[Sequence[Any]]] | None = None  # the last step
        # successors(): (actor, its frames, world) -> what its step did (see there)
        self._memo: dict[tuple[int, ActorState, WorldTuple], list[Remembered]] = {}
        self._verdicts: dict[WorldTuple, list[tuple[str, str]]] = {}  # check_invariants()
        self.memo_size = MEMO_SIZE
        self.verdicts_size = MEMO_SIZE
        self._lookups = self._hits = 0
        self._checked: dict[int, Any] = {}  # validate_state(): frames that passed, by id
        try:
            self.world.validate(self.world.loaded)
        except ModelError as exc:
            raise ModelError(f"{self._origin_of(None)}: {exc}") from None
        frames: list[ActorState] = []
        for spec in actors:
            prog = compile_actor(spec.func)
            values = prog.bind(spec.func, spec.args, dict(spec.kwargs))  # type: ignore[arg-type]
            frames.append(((spec.func, 0, tuple(values)),))  # type: ignore[arg-type]
        self.initial: State = (self.world.loaded, tuple(frames))
        self.validate_state(self.initial)
        self.validated = 0

    # -- helpers --------------------------------------------------------------------
    def program(self, func: FunctionType) -> Program:
        """func's compiled program, looked up by the function object itself (the step
        loop's hot path; compile_actor's own cache key costs more to build)."""
        prog = self._programs.get(func)
        if prog is None:
            prog = self._programs[func] = compile_actor(func)
        return prog

    def names(self) -> list[str]:
        return [a.name for a in self.actors]

    def validate_state(self, state: State) -> None:
        """Raise ModelError naming the first value in state that is mutable or unhashable,
        with where it was stored: the setup, or the step that made state (if it was the
        last step run)."""
        try:
            self.world.validate(state[0])
        except ModelError as exc:
            raise ModelError(f"{self._origin_of(state)}: {exc}") from None
        known = self.world.known_ids
        checked = self._checked
        for spec, frames in zip(self.actors, state[1]):
            if frames is None:
                continue
            for frame in frames:
                if checked.get(id(frame)) is frame:  # this very frame passed before
                    continue
                func, pc, values = frame
                prog = self.program(func)
                for name, value in zip(prog.local_names, values):
                    try:
                        check_value(value, "", known)
                    except ModelError:  # again, saying where
                        at = f"{prog.filename}:{prog.block_lines[pc]}"
                        check_value(
                            value,
                            f"{at}: local {name!r} of {prog.qualname} (actor {spec.name}), "
                            "kept across this yield,",
                            known,
                        )
                remember_checked(checked, frame)
        hash(state)

    def _origin_of(self, state: State | None) -> str:
        """file:line where state's world was written: the step that made it, or the setup."""
        made = self._made
        if made is not None and made[0] is state:
            _state, actor, frames = made
            who = self.actors[actor].name
            if frames:
                return f"{self._yield_line(frames)}: in the step of actor {who} ending here"
            return f"in the last step of actor {who}"
        setup = self.model._setup
        code = getattr(setup, "__code__", None)
        if code is None:
            return "in the setup"
        return f"{code.co_filename}:{code.co_firstlineno}: in the setup"

    def enabled(self, state: State, actor: int) -> bool:
        return any(o.kind != "blocked" for o in self.successors_of(state, actor))

    # -- the step -------------------------------------------------------------------
    def step(
        self, state: State, actor: int, choices: tuple[int, ...], detail: bool = True
    ) -> Outcome | NeedChoice:
        """Run actor's next step from state with the given choice script.

        detail=False leaves out the call stack and source line of a successful step, which
        only traces need (the search asks for them when it replays a path).
        """
        clock = CLOCK
        clock.started += 1
        try:
            return self._step(state, actor, choices, detail)
        finally:
            clock.finished = clock.started

    def _step(
        self, state: State, actor: int, choices: tuple[int, ...], detail: bool
    ) -> Outcome | NeedChoice:
        frames_in = state[1][actor]
        assert frames_in is not None
        self.world.load(state[0])
        # The running frame lives in locals (func, pc, values, prog); the frames it called
        # into during this step wait in `entered`. Only the innermost stored frame is
        # copied; a caller's frame is copied when a return reaches it, and the callers
        # below that (frames_in[:below]) stay shared with the stored state.
        below = len(frames_in) - 1
        func, pc, stored = frames_in[below]
        values = list(stored)
        programs = self._programs
        prog = programs.get(func) or self.program(func)
        entered: list[tuple[FunctionType, int, list[Any], Program]] = []
        script = SCRIPT
        script.reset(choices)
        script.actor = self._names[actor]
        sent: Any = None
        budget = STEP_BUDGET
        label: Any = ""
        finished = False
        try:
            while True:
                act = prog.blocks[pc](values, sent, func.__closure__)
                kind = act[0]
                if kind == YIELD:
                    pc = act[1]
                    label = act[2]
                    break
                sent = None
                if kind == JUMP:
                    pc = act[1]
                elif kind == CALL:
                    callee = act[2]
                    if not isinstance(callee, FunctionType):
                        raise ModelError(f"`yield from` needs a generator function, got {callee!r}")
                    cprog = programs.get(callee) or self.program(callee)
                    cvalues = cprog.bind(callee, act[3], act[4])
                    entered.append((func, act[1], values, prog))
                    func, pc, values, prog = callee, 0, cvalues, cprog
                else:  # RETURN
                    sent = act[1]
                    if entered:
                        func, pc, values, prog = entered.pop()
                    elif below:
                        below -= 1
                        func, pc, stored = frames_in[below]
                        values = list(stored)
                        prog = programs.get(func) or self.program(func)
                    else:
                        finished = True
                        label = "return"
                        break
                budget -= 1
                if budget == 0:
                    raise ModelError(
                        f"{prog.filename}:{prog.block_lines[pc]}: a step of "
                        f"{prog.qualname} ran {STEP_BUDGET:,} blocks without reaching a yield: "
                        "a loop between two yields never ends; make every pass through the "
                        "loop yield, or let the loop end"
                    )
        except NeedChoice as need:
            self._restore()
            return need
        except Blocked:
            self._restore()
            return Outcome("blocked")
        except (ModelError, CompileError):  # the model breaks the engine's rules: stop
            self._restore()
            raise
        except Exception as exc:  # the model failed: a failure with a trace, not a crash
            self._restore()
            live = [f[:3] for f in entered] + [(func, pc, values)]
            return _failure(exc, _stack_names(frames_in[:below], live))
        world = self.world.snapshot(state[0])
        self.world.loaded = world
        top = (func, pc, values)
        if finished:
            new_frames: ActorState = None
        elif not entered:  # the usual case: the frame that yielded is the only one copied
            new_frames = frames_in[:below] + (_freeze(func, pc, values, prog),)
        else:
            new_frames = frames_in[:below] + tuple(_freeze(*f) for f in entered)
            new_frames += (_freeze(func, pc, values, prog),)
        actors = state[1][:actor] + (new_frames,) + state[1][actor + 1 :]
        new_state = (world, actors)
        self._made = (new_state, actor, () if finished else (top,))  # for validate_state
        text = label if isinstance(label, str) else self._label_text(label, (top,))
        if detail:
            live = [] if finished else [f[:3] for f in entered] + [top]
            stack = _stack_names(frames_in[:below], live)
            line = self._yield_line(live)
        else:
            stack, line = (), ""
        made, events, failures = script.made, script.events, script.failures
        return Outcome(
            "ok",
            new_state,
            text,
            stack,
            tuple(made) if made else (),
            "",
            line,
            "",
            tuple(events) if events else (),
            tuple(failures) if failures else (),
        )

    def _label_text(self, label: Any, frames: Sequence[Sequence[Any]]) -> str:
        """A non-string label as text; a generator there is a forgotten ``yield from``."""
        if isinstance(label, (GeneratorType, CoroutineType)) or (
            isinstance(label, FunctionType) and label.__code__.co_flags & CO_GENERATOR
        ):
            name = getattr(label, "__qualname__", type(label).__name__)
            where = self._yield_line(frames) if frames else "a finished actor"
            raise ModelError(
                f"{where}: `yield {name}(...)` yields the generator instead of running it: "
                f"write `yield from {name}(...)` to run its steps as part of this actor"
            )
        return repr(label)

    def _yield_line(self, frames: Sequence[Sequence[Any]]) -> str:
        if not frames:
            return ""
        func, pc, _ = frames[-1]
        prog = self.program(func)
        return f"{prog.filename}:{prog.block_lines[pc]}"

    def _restore(self) -> None:
        """Undo a step's partial effects: write the stored state back into the objects."""
        self.world.restore()

    def reload(self) -> None:
        """Make the live objects hold the last loaded state again, whatever a step (perhaps
        interrupted half-way) wrote into them."""
        self._restore()

    def _outcomes(self, state: State, actor: int) -> Iterator[tuple[tuple[int, ...], Outcome]]:
        """(choice script, outcome) of actor's next step, one per combination of choices."""
        if state[1][actor] is None:
            return
        pending: list[tuple[int, ...]] = [()]
        while pending:
            script = pending.pop(0)
            out = self.step(state, actor, script, detail=False)
            if isinstance(out, NeedChoice):
                pending[0:0] = [script + (i,) for i in range(out.options)]
                continue
            yield script, out

    def successors_of(self, state: State, actor: int) -> Iterator[Outcome]:
        """Every outcome of actor's next step, one per combination of choices."""
        for _script, out in self._outcomes(state, actor):
            yield out

    def step_with(self, state: State, actor: int, choices: tuple[int, ...]) -> Outcome:
        """Replay one recorded step (its choices known)."""
        out = self.step(state, actor, choices)
        if isinstance(out, NeedChoice):
            raise ModelError(
                "replay diverged: the step asked for a choice it did not ask for before"
            )
        return out

    def successors(self, state: State) -> Iterator[tuple[int, tuple[int, ...], Outcome]]:
        """(actor, choice script, outcome) for every transition out of state."""
        for i in range(len(state[1])):
            for script, out in self.outcomes(state, i):
                yield i, script, out

    def outcomes(self, state: State, i: int) -> list[tuple[tuple[int, ...], Outcome]]:
        """(choice script, outcome) of actor i's next step, one per combination of choices.

        An actor's step reads only the world and its own frames, so its outcomes are a
        function of (actor, its frames, the world): many states share that triple (they
        differ in the other actors' frames), and the outcomes found for it are remembered
        (up to memo_size triples) and reused with the other actors' frames of each state.
        """
        world, actors = state
        frames = actors[i]
        if frames is None:
            return []
        if not self.memo_size:
            return list(self._outcomes(state, i))
        memo = self._memo
        key = (i, frames, world)
        try:
            known = memo.get(key)
            hashable = True
        except TypeError:  # an unhashable value: the search reports it where it is stored
            known = None
            hashable = False
        self._lookups += 1
        if known is not None:
            self._hits += 1
            if self._hits <= RECHECK_FIRST or self._hits % RECHECK_EVERY == 0:
                self._recheck(state, i, known)
            return [self.rebuilt(state, i, r) for r in known]
        found = list(self._outcomes(state, i))
        if hashable:
            if len(memo) >= self.memo_size:
                memo.clear()
            memo[key] = [remembered(script, out, i) for script, out in found]
        if self._lookups == MEMO_TRIAL and self._hits * 5 < MEMO_TRIAL:
            self.memo_size = 0  # rarely reused: remembering costs more than it saves
            memo.clear()
        return found

    def _recheck(self, state: State, i: int, known: list[Remembered]) -> None:
        """Run a remembered step again: the memo is sound only if a step depends on the world
        and its own locals alone, which Python cannot enforce (a module global, a closure
        variable changed by another step), so a sample of reuses is checked."""
        again = [remembered(script, out, i) for script, out in self._outcomes(state, i)]
        if [r[:4] + r[4][:1] for r in again] != [r[:4] + r[4][:1] for r in known]:
            raise ModelError(
                f"the step of {self.actors[i].name} at {self.location(state, i)} did something "
                "else when run again from the same state: a step must depend only on the "
                "state (the world's objects and the actor's own locals), not on a module "
                "global or closure variable that steps change, nor on values compared by "
                "identity"
            )

    def rebuilt(self, state: State, i: int, known: Remembered) -> tuple[tuple[int, ...], Outcome]:
        """A remembered outcome of actor i's step, with state's other actors' frames."""
        script, kind, new_world, new_frames, fields = known
        if kind != "ok":
            return script, Outcome(kind, None, *fields)
        actors = state[1]
        new_state = (new_world, actors[:i] + (new_frames,) + actors[i + 1 :])
        self._made = (new_state, i, new_frames or ())
        return script, Outcome(kind, new_state, *fields)

    def unfinished(self, state: State, include_daemons: bool = False) -> list[str]:
        return [
            spec.name
            for spec, frames in zip(self.actors, state[1])
            if frames is not None and (include_daemons or not spec.daemon)
        ]

    def check_invariants(self, state: State) -> list[tuple[str, str]]:
        """[(property, message)] for every invariant false in state.

        Invariants read only the world, so their verdicts are remembered per world (up to
        verdicts_size worlds): states that differ only in the actors' frames share them.
        """
        invariants = self.model.invariants
        if not invariants:
            return []  # nothing to load the state for
        world = state[0]
        memo = self._verdicts
        try:
            known = memo.get(world)
        except TypeError:  # an unhashable value: the search reports it where it is stored
            return self._evaluate(invariants, world)
        if known is None:
            known = self._evaluate(invariants, world)
            if self.verdicts_size:
                if len(memo) >= self.verdicts_size:
                    memo.clear()
                memo[world] = known
        return list(known)

    def _evaluate(self, invariants: list[Any], world: WorldTuple) -> list[tuple[str, str]]:
        self.world.load(world)
        bad = []
        clock = CLOCK
        for prop in invariants:
            assert prop.check is not None
            clock.started += 1  # the watchdog sees an invariant that never returns too
            try:
                ok = prop.check(self.root)
            except ModelError:  # the watchdog stopped it: the message says where
                raise
            except Exception as exc:  # an invariant that raises is a broken model
                raise ModelError(
                    f"invariant {prop.name!r} raised {type(exc).__name__}: {exc}\n"
                    + "".join(traceback.format_exception(exc)[-2:])
                ) from None
            finally:
                clock.finished = clock.started
            if not ok:
                bad.append((prop.name, prop.description))
        return bad

    def check_sometimes(self, state: State, pending: set[str]) -> list[str]:
        self.world.load(state[0])
        hit = []
        for prop in self.model.sometimes_props:
            if prop.name in pending:
                assert prop.check is not None
                if prop.check(self.root):
                    hit.append(prop.name)
        return hit

    def location(self, state: State, actor: int) -> str:
        frames = state[1][actor]
        if frames is None:
            return "finished"
        func, pc, _ = frames[-1]
        prog = compile_actor(func)
        return f"{prog.name}:{prog.block_lines[pc]}"


# What successors() remembers of one outcome: (script, kind, world and frames after the
# step (ok only), the other fields of the Outcome in order)
Remembered = tuple[tuple[int, ...], str, WorldTuple, ActorState, tuple[Any, ...]]


def remembered(script: tuple[int, ...], out: Outcome, actor: int) -> Remembered:
    fields = (
        out.label, out.stack, out.choices, out.message, out.line, out.prop, out.events,
        out.failures,
    )  # fmt: skip
    if out.state is None:
        return (script, out.kind, (), None, fields)
    return (script, out.kind, out.state[0], out.state[1][actor], fields)


def _freeze(func: FunctionType, pc: int, values: list[Any], prog: Program) -> Frame:
    """The frame as stored in a state: locals dead at its resume point are dropped."""
    for i in prog.dead[pc]:
        values[i] = UNSET  # the list belongs to this step, which is over
    return (func, pc, tuple(values))


def _failure(exc: Exception, stack: tuple[str, ...]) -> Outcome:
    """The outcome of a step the model ended with fail(), a failed assert or an exception."""
    script = SCRIPT
    if isinstance(exc, PropertyFailure):
        return Outcome(
            "property",
            message=exc.message,
            stack=stack,
            choices=tuple(script.made),
            line=_failure_line(exc),
            prop=exc.prop,
            events=tuple(script.events),
        )
    if isinstance(exc, AssertionError):
        return Outcome(
            "assertion",
            message=str(exc) or "assertion failed",
            stack=stack,
            choices=tuple(script.made),
            line=_failure_line(exc),
        )
    return Outcome(
        "error",
        message=f"{type(exc).__name__}: {exc}",
        stack=stack,
        choices=tuple(script.made),
        line=_failure_line(exc),
    )


def _stack_names(callers: tuple[Frame, ...], frames: Sequence[Sequence[Any]]) -> tuple[str, ...]:
    return tuple(f[0].__name__ for f in callers) + tuple(f[0].__name__ for f in frames)


def _failure_line(exc: BaseException) -> str:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    return f"{last.tb_frame.f_code.co_filename}:{last.tb_lineno}"
