"""The step's shortcuts must be invisible: successors() reusing the outcomes of an (actor,
frames, world) triple it has met, invariant verdicts reused per world, World.load rewriting
only what the last step changed, and a failed step restoring only the objects that differ."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings

from kvmsim.engine import Model, Options, Setup, Struct, await_, check, choose
from kvmsim.engine import system as system_module
from kvmsim.engine.system import Outcome, State, System
from kvmsim.engine.world import ModelError

from .bench import counters
from .random_models import build, specs
from .support import Steps


def view(actor: int, script: tuple[int, ...], out: Outcome) -> tuple[Any, ...]:
    return (actor, script, out.kind, out.state, out.label, out.choices, out.message,
            out.prop, out.events, out.failures)  # fmt: skip


def fresh(system: System, state: State) -> list[tuple[Any, ...]]:
    """Every outcome from state by running each step (never the remembered outcomes)."""
    return [
        view(i, script, out)
        for i in range(len(system.actors))
        for script, out in system._outcomes(state, i)
    ]


def reachable(system: System) -> list[State]:
    seen = {system.initial}
    todo = deque([system.initial])
    order = []
    while todo:
        state = todo.popleft()
        order.append(state)
        for _i, _script, out in system.successors(state):
            if out.state is not None and out.state not in seen:
                seen.add(out.state)
                todo.append(out.state)
    return order


def assert_shortcuts_invisible(system: System) -> None:
    for state in reachable(system):
        expected = fresh(system, state)
        for _ in range(2):  # the second time round every triple is remembered
            got = []
            for i, script, out in system.successors(state):
                got.append(view(i, script, out))
                # whatever the step left in the objects, loading state brings it back
                system.world.load(state[0])
                assert system.world.snapshot_full() == state[0]
            assert got == expected


@settings(deadline=None, max_examples=40)
@given(specs)
def test_remembered_outcomes_equal_fresh_ones(spec: Any) -> None:
    system = System(build(spec))
    assert_shortcuts_invisible(system)
    assert system._hits > 0


def test_remembered_outcomes_on_a_bigger_model() -> None:
    system = System(counters(2, 3))
    assert_shortcuts_invisible(system)
    assert system._hits > system._lookups / 2


class Cell(Struct):
    x: int = 0
    y: int = 0


def local_counter(c: Cell, n: int) -> Steps:
    i = 0
    while i < n:
        i += 1
        yield "tick"


def writer(c: Cell) -> Steps:
    while True:
        c.x = choose((0, 1), "x")
        yield "write"


def pair_model(n: int, calls: list[int]) -> Model:
    """Two actors that only count locally and one that writes x: few worlds, many states."""
    model = Model("pairs")

    @model.setup
    def setup(s: Setup) -> Cell:
        c = Cell()
        s.actor("a", local_counter, c, n)
        s.actor("b", local_counter, c, n)
        s.actor("w", writer, c, daemon=True)
        return c

    @model.invariant("x below 2")
    def small(c: Cell) -> bool:
        calls.append(1)
        return c.x < 2

    return model


def test_invariants_are_evaluated_once_per_world() -> None:
    calls: list[int] = []
    result = check(pair_model(6, calls), Options(liveness=False))
    assert not result.violations and result.stats.states > 50
    assert len(calls) == 2  # x = 0 and x = 1, not once per state


def test_results_do_not_depend_on_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    with_memo = check(pair_model(4, []), Options())
    monkeypatch.setattr(system_module, "MEMO_SIZE", 0)
    without = check(pair_model(4, []), Options())
    assert with_memo.stats.states == without.stats.states
    assert with_memo.stats.transitions == without.stats.transitions
    assert with_memo.verdict == without.verdict


def test_the_memo_gives_up_when_triples_do_not_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system_module, "MEMO_TRIAL", 50)
    model = Model("one counter")

    @model.setup
    def setup(s: Setup) -> Cell:
        c = Cell()
        s.actor("a", local_counter, c, 200)
        return c

    system = System(model)
    assert len(reachable(system)) == 202  # entry, 200 ticks, finished
    assert system.memo_size == 0  # every triple was new: remembering them only cost time
    again = System(pair_model(6, []))
    reachable(again)
    assert again.memo_size == system_module.MEMO_SIZE


def spoiler(c: Cell, how: str) -> Steps:
    c.x = 1
    c.__dict__["stray"] = 5
    if how == "block":
        await_(False)
    elif how == "raise":
        raise ValueError("boom")
    yield "never"


@pytest.mark.parametrize(("how", "kind"), [("block", "blocked"), ("raise", "error")])
def test_a_failed_step_leaves_the_world_as_it_was(how: str, kind: str) -> None:
    model = Model("spoiler")

    @model.setup
    def setup(s: Setup) -> Cell:
        c = Cell()
        s.actor("a", spoiler, c, how)
        return c

    system = System(model)
    (out,) = [o for _i, _s, o in system.successors(system.initial)]
    assert out.kind == kind
    assert system.world.snapshot_full() == system.initial[0]
    assert vars(system.root) == {"x": 0, "y": 0}


@pytest.mark.parametrize(("variant", "expect"), [("pinned", "holds"), ("v4.13", "violated")])
def test_por_remembered_recordings_are_invisible(
    monkeypatch: pytest.MonkeyPatch, variant: str, expect: str
) -> None:
    """The partial-order reduction remembers each recorded step (outcomes and the fields it
    touched) per (actor, frames, world): the reduced search is the same without that."""
    from kvmsim.engine import por as por_module
    from kvmsim.engine.reduction import Reductions
    from kvmsim.machine import build_model
    from kvmsim.scenarios import get_scenario
    from kvmsim.variants import get_variant

    model = build_model(get_variant(variant), get_scenario("two-vcpus-any-order"))
    options = Options(liveness=False, por=True, symmetry=True)
    made: list[Reductions] = []
    real_init = Reductions.__init__

    def spy(self: Reductions, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Reductions, "__init__", spy)
    remembering = check(model, options)
    monkeypatch.setattr(por_module, "RECORDED_SIZE", 0)  # cleared before every insertion
    monkeypatch.setattr(system_module, "MEMO_SIZE", 0)  # and no outcome remembered
    forgetting = check(model, options)
    first, second = (r.por for r in made)
    assert first is not None and second is not None
    assert first.reused > 10 * second.reused
    assert remembering.verdict == forgetting.verdict == expect
    assert remembering.violated() == forgetting.violated()
    assert (remembering.stats.states, remembering.stats.transitions) == (
        forgetting.stats.states,
        forgetting.stats.transitions,
    )


# -- a model that breaks the rule the memo rests on ---------------------------------------------

FLAG = [0]  # a module global that steps change: not part of the state


class Seen(Struct):
    value: int = 0


def reader(w: Seen) -> Steps:
    while True:
        w.value = FLAG[0]  # reads the global
        yield "read"


def flipper(w: Seen) -> Steps:
    for _ in range(3):
        FLAG[0] ^= 1  # changes it, invisibly to the state
        yield "flip"


def global_model(honest: bool) -> Model:
    model = Model("reads a global" if not honest else "reads its own state")

    @model.setup
    def setup(s: Setup) -> Seen:
        FLAG[0] = 0
        w = Seen()
        s.actor("reader", reader if not honest else _honest_reader, w)
        s.actor("flipper", flipper if not honest else _honest_flipper, w)
        return w

    return model


def _honest_reader(w: Seen) -> Steps:
    while True:
        w.value = w.value  # reads only the world
        yield "read"


def _honest_flipper(w: Seen) -> Steps:
    for _ in range(3):
        w.value ^= 1
        yield "flip"


def test_a_step_that_reads_a_changing_global_is_reported() -> None:
    """The memo reuses a step's outcomes per (actor, frames, world); a step that reads a
    module global another step changes would get stale outcomes. Re-running a sample of
    reused steps catches it, with the actor and its location."""
    with pytest.raises(ModelError, match=r"the step of reader at reader:\d+ did something else"):
        check(global_model(honest=False), Options(liveness=False))


def test_an_honest_model_passes_the_recheck() -> None:
    res = check(global_model(honest=True), Options(liveness=False))
    assert res.holds and res.exhaustive
