"""The partial-order reduction's per-position futures (engine/futures.py).

A frame's future is found by running its code abstractly over the locals that steer it, so a
loop bounded by a counter ends in the analysis as it does in the model. The reduced search
must still agree with the full one: a buggy model whose race comes after a counted loop, or
after a loop whose counter moves by a value read from shared state, keeps its counterexample
(and loses it when the analysis is replaced by one that claims the loop never ends).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from kvmsim.engine import Model, Options, Result, Setup, Struct, await_, check, choose
from kvmsim.engine.footprint import Summary
from kvmsim.engine.futures import Futures
from kvmsim.engine.por import Footprint, PartialOrder
from kvmsim.engine.system import State, System

Steps = Generator[str, None, None]
ROUNDS = 3


class Regs(Struct):
    x: int = 0
    y: int = 0
    z: int = 0
    step: int = 1


def looping_writer(r: Regs, hop: int = 0, pc: int = 0) -> Steps:
    """ROUNDS rounds of writing x (an explicit pc, as in SPIN models), then one write of z."""
    while True:
        if pc == 0:
            r.x += 1
            pc = 1
        elif pc == 1:
            hop += 1
            pc = 0 if hop < ROUNDS else 2
        elif pc == 2:
            r.z += 1
            pc = 3
        else:
            return
        yield "writer"


def x_reader(r: Regs, n: int = 0) -> Steps:
    while n < 2:
        r.y = r.y + r.x
        n += 1
        yield "read"


def counted_model() -> Model:
    model = Model("bounded loop counter")

    @model.setup
    def setup(st: Setup) -> Regs:
        r = Regs()
        st.actor("writer", looping_writer, r)
        st.actor("reader", x_reader, r)
        return r

    return model


def late_writer(r: Regs, hop: int = 0) -> Steps:
    """Counts ROUNDS steps on z, then writes x: the race with the reader comes last."""
    while hop < ROUNDS:
        hop += 1
        r.z += 1
        yield "count"
    r.x = 1
    yield "x = 1"


def shared_step_writer(r: Regs, hop: int = 0) -> Steps:
    """The same, but the counter moves by a value read from shared state (unknown to the
    analysis, so the loop may end at any time)."""
    while hop < ROUNDS:
        hop += r.step
        r.z += 1
        yield "count"
    r.x = 1
    yield "x = 1"


def stable_reader(r: Regs) -> Steps:
    seen = r.x
    yield "read x"
    assert r.x == seen, "x changed under the reader"
    yield "check"


def race_model(writer: Any) -> Model:
    model = Model(f"race after {writer.__name__}")

    @model.setup
    def setup(st: Setup) -> Regs:
        r = Regs()
        st.actor("writer", writer, r)
        st.actor("reader", stable_reader, r)
        return r

    return model


def safety(**kw: Any) -> Options:
    return Options(liveness=False, **kw)


def states_after(system: System, actor: int, steps: int) -> State:
    """The state after actor's first `steps` steps from the initial state."""
    state = system.initial
    for _ in range(steps):
        state = next(o for a, _s, o in system.successors(state) if a == actor).state
        assert state is not None
    return state


def x_field(system: System) -> tuple[int, str]:
    return (system.world.objects.index(system.root), "x")


def writes_x(fp: Footprint, x: tuple[int, str]) -> bool:
    return fp.anything or x in fp.writes or "x" in fp.write_names


def coarse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fall back to the block-level analysis everywhere (the analysis before futures.py)."""
    monkeypatch.setattr(Futures, "summary", lambda self, func, block, values: None)


# -- the analysis --------------------------------------------------------------------------


def test_future_ends_with_the_counted_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    model = counted_model()
    system = System(model)
    x = x_field(system)
    por = PartialOrder(system, model)
    assert writes_x(por.future(system.initial[1][0]), x)
    last_x = states_after(system, 0, 2 * ROUNDS - 2)  # pc 0: about to write x a last time
    assert writes_x(por.future(last_x[1][0]), x) and writes_x(por.next_step(last_x[1][0]), x)
    ending = states_after(system, 0, 2 * ROUNDS - 1)  # pc 1, hop 2: the rounds end here
    future = por.future(ending[1][0])
    assert not writes_x(future, x) and (x[0], "z") in future.writes
    assert not por.next_step(ending[1][0]).writes  # the counting step touches no field
    # the block-level analysis cannot bound the counter: x stays in the future
    coarse(monkeypatch)
    assert writes_x(PartialOrder(system, model).future(ending[1][0]), x)


def test_counted_loop_is_reduced_only_with_futures(monkeypatch: pytest.MonkeyPatch) -> None:
    model = counted_model()
    full = check(model, safety())
    red = check(model, safety(por=True))
    assert (red.verdict, red.exhaustive) == (full.verdict, full.exhaustive) == ("holds", True)
    coarse(monkeypatch)
    old = check(model, safety(por=True))
    assert old.verdict == "holds"
    assert red.stats.states < old.stats.states <= full.stats.states


def test_a_step_blocked_for_good_has_no_future() -> None:
    def parked(r: Regs, done: bool = False) -> Steps:
        while True:
            await_(not done)
            r.x += 1
            done = True
            yield "once"

    futures = PartialOrder(System(_single(parked)), _single(parked)).futures
    summary = futures.summary(parked, 0, (None, False))
    assert summary is not None and any(a[2] == "x" for a in summary.accesses)
    after = futures.function(parked)
    assert after is not None
    # from any block with done = True, the await_ never passes again
    for block in range(len(after.cfg)):
        got = futures.summary(parked, block, (None, True))
        assert got is not None and not any(a[2] == "x" for a in got.accesses)


def short_circuit(r: Regs, flag: int = 1) -> Steps:
    while True:
        if flag or choose(()):  # choose(()) blocks, but only runs when flag is 0
            r.x += 1
        yield "x"


def test_and_or_evaluate_operands_only_as_python_does() -> None:
    model = _single(short_circuit)
    futures = PartialOrder(System(model), model).futures
    for flag, touches in ((1, True), (0, False)):
        got = futures.summary(short_circuit, 0, (None, flag))
        assert got is not None
        assert any(a[2] == "x" for a in got.accesses) is touches


def unbounded(r: Regs, n: int = 0) -> Steps:
    while True:
        n += 1
        if n % 2:
            r.x += 1
        else:
            r.y += 1
        yield "tick"


def test_too_many_positions_fall_back_to_every_block() -> None:
    model = _single(unbounded)
    system = System(model)
    por = PartialOrder(system, model)
    assert por.futures.summary(unbounded, 0, (system.root, 0)) is None  # too many
    future = por.future(system.initial[1][0])
    slot = system.world.objects.index(system.root)
    assert {(slot, "x"), (slot, "y")} <= future.writes


def _single(func: Any) -> Model:
    model = Model(f"just {func.__name__}")

    @model.setup
    def setup(st: Setup) -> Regs:
        r = Regs()
        st.actor("a", func, r)
        return r

    return model


# -- a race after a loop: the reduced search keeps it ------------------------------------


def agree(model: Model) -> tuple[Result, Result]:
    full = check(model, safety())
    red = check(model, safety(por=True))
    assert (red.verdict, red.violated()) == (full.verdict, full.violated())
    assert red.exhaustive and full.exhaustive
    return full, red


@pytest.mark.parametrize("writer", [late_writer, shared_step_writer])
def test_race_after_a_loop_is_found(writer: Any) -> None:
    full, red = agree(race_model(writer))
    assert red.violated() == ["assertion"]
    assert red.stats.states < full.stats.states  # the counting steps are independent


@pytest.mark.parametrize("writer", [late_writer, shared_step_writer])
def test_race_is_missed_by_a_bound_that_ends_the_writer_early(
    writer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race needs the writer's future to keep x: an analysis that says the writer
    touches nothing more (as an unsound loop bound would) loses the counterexample."""
    real = Futures.summary

    def unsound(self: Futures, func: Any, block: int, values: tuple[Any, ...]) -> Summary | None:
        return Summary() if func is writer else real(self, func, block, values)

    monkeypatch.setattr(Futures, "summary", unsound)
    red = check(race_model(writer), safety(por=True))
    assert red.verdict == "holds"
