"""Failures of the model (a violation with a trace) versus misuse of the engine (ModelError)."""

from __future__ import annotations

import re
import typing
from typing import Any, ClassVar

import pytest

from kvmsim.demos import peterson
from kvmsim.engine import (
    CompileError,
    Model,
    ModelError,
    Options,
    Progress,
    Setup,
    Struct,
    check,
    maybe,
)
from kvmsim.engine import explore as explore_module

from .support import Steps, marked_line

ClassVarLike = int


class Box(Struct):
    value: Any = 0
    other: Any = None


def _model(*actors: Any, root: Any = None) -> Model:
    model = Model("errors")

    @model.setup
    def setup(s: Setup) -> Any:
        w = root if root is not None else Box()
        for i, actor in enumerate(actors):
            s.actor(f"a{i}", actor, w)
        return w

    return model


# -- the model fails: a violation with a trace, not a crash ------------------------------------


def divides(w: Box) -> Steps:
    w.value = 1
    yield "one"
    if maybe("divide"):
        w.value = w.value / 0  # <- here
    yield "two"


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_exception_in_a_step_is_an_error_violation(mode: str) -> None:
    result = check(_model(divides), Options(mode=mode, runs=20))
    assert result.violated() == ["model error"]
    v = result.violation("model error")
    assert v.kind == "error"
    assert v.message == "ZeroDivisionError: division by zero"
    assert v.trace is not None
    assert [s.kind for s in v.trace.steps] == ["ok", "error"]
    assert v.trace.steps[0].label == "one"
    last = v.trace.steps[-1]
    assert last.message == v.message
    assert last.choices == ("divide=True",)
    assert last.line == f"{__file__}:{marked_line(divides)}"
    assert last.stack == ("divides",)
    assert v.trace.final == {"value": 1, "other": None}  # the failed step changed nothing


def checked(w: Box) -> Steps:
    w.value += 1
    yield "bump"
    assert w.value < 1, f"value reached {w.value}"
    yield "never"


def test_assertion_in_an_actor() -> None:
    result = check(_model(checked))
    assert result.violated() == ["assertion"]
    v = result.violation("assertion")
    assert v.kind == "assertion"
    assert v.message == "value reached 1"
    assert v.trace is not None
    assert [s.kind for s in v.trace.steps] == ["ok", "assertion"]
    assert v.trace.steps[-1].message == "value reached 1"


def callee_raises(w: Box, n: int) -> Steps:
    yield "in callee"
    table: dict[int, int] = {}
    return table[n]


def caller(w: Box) -> Steps:
    yield from callee_raises(w, 3)


def test_error_in_a_callee_shows_the_call_stack() -> None:
    v = check(_model(caller)).violation("model error")
    assert v.message == "KeyError: 3"
    assert v.trace is not None and v.trace.steps[-1].stack == ("caller", "callee_raises")


# -- the model breaks the engine's rules: ModelError naming the culprit --------------------------


def stores_list(w: Box) -> Steps:
    yield "start"
    w.other = [1, 2]
    yield "stored a list"  # <- here


def keeps_list(w: Box) -> Steps:
    pending = [w.value]
    yield "made a list"  # <- here
    w.value = pending[0]
    yield "used it"


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_list_in_a_field(mode: str) -> None:
    where = re.escape(f"{__file__}:{marked_line(stores_list)}")
    with pytest.raises(
        ModelError,
        match=rf"^{where}: in the step of actor a0 ending here: other holds a list, which is "
        "mutable or unhashable; use a tuple, frozenset or int instead$",
    ):
        check(_model(stores_list), Options(mode=mode))


def test_list_in_a_field_at_setup() -> None:
    with pytest.raises(ModelError, match=r": in the setup: value holds a list"):
        check(_model(stores_list, root=Box(value=[])))


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_list_in_a_local_across_a_yield(mode: str) -> None:
    where = re.escape(f"{__file__}:{marked_line(keeps_list)}")
    with pytest.raises(
        ModelError,
        match=rf"^{where}: local 'pending' of keeps_list \(actor a0\), kept across this yield, "
        "holds a list",
    ):
        check(_model(keeps_list), Options(mode=mode))


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_unhashable_state_past_validation(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the first states are validated in full; later, the state table's hash fails first.
    # That must still end in the ModelError that names the value, not a bare TypeError.
    monkeypatch.setattr(explore_module, "VALIDATE_STATES", 0)
    with pytest.raises(ModelError, match=r"local 'pending' of keeps_list"):
        check(_model(keeps_list), Options(mode=mode))
    with pytest.raises(ModelError, match=r"ending here: other holds a list"):
        check(_model(stores_list), Options(mode=mode))


def creates_struct(w: Box) -> Steps:
    w.other = Box()
    yield "created"


def test_struct_created_after_setup() -> None:
    with pytest.raises(ModelError, match=r"ending here: other refers to a Box created after setup"):
        check(_model(creates_struct))


def adds_attribute(w: Box) -> Steps:
    w.extra = 1  # type: ignore[attr-defined]
    yield "added"


def test_undeclared_attribute() -> None:
    with pytest.raises(ModelError, match=r"extra is not a declared field of Box"):
        check(_model(adds_attribute))


def spins(w: Box) -> Steps:
    while True:
        if w.value > 0:  # <- here
            yield "never: value stays 0"


def test_step_that_never_yields() -> None:
    where = re.escape(f"{__file__}:{marked_line(spins)}")
    with pytest.raises(
        ModelError,
        match=rf"^{where}: a step of spins ran 100,000 blocks without reaching a yield: a loop "
        "between two yields never ends; make every pass",
    ):
        check(_model(spins))


def helper_steps(w: Box) -> Steps:
    w.value += 1
    yield "helper"


def forgets_yield_from(w: Box) -> Steps:
    yield "before"
    yield helper_steps(w)  # <- here


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_yielding_a_generator_instead_of_running_it(mode: str) -> None:
    where = re.escape(f"{__file__}:{marked_line(forgets_yield_from)}")
    with pytest.raises(
        ModelError,
        match=rf"^{where}: `yield helper_steps\(...\)` yields the generator instead of running "
        r"it: write `yield from helper_steps\(...\)`",
    ):
        check(_model(forgets_yield_from), Options(mode=mode))


def plain_function(w: Box) -> int:
    return 1


def calls_plain(w: Box) -> Steps:
    yield "before"
    yield from plain_function(w)  # type: ignore[misc]


def test_yield_from_a_plain_function() -> None:
    with pytest.raises(CompileError, match="must be a generator function"):
        check(_model(calls_plain))


def test_invariant_that_raises() -> None:
    model = _model(checked)

    @model.invariant("broken")
    def broken(w: Box) -> bool:
        return bool(w.value / 0)

    with pytest.raises(ModelError, match="invariant 'broken' raised ZeroDivisionError"):
        check(model)


def test_struct_rules() -> None:
    with pytest.raises(TypeError, match="needs a value"):

        class NoDefault(Struct):
            x: int

        NoDefault()
    with pytest.raises(TypeError, match="has no field 'y'"):
        Box(y=1)

    class WithClassVars(Struct):
        kind: ClassVar[str] = "box"
        limit: typing.ClassVar[int] = 3
        size: int = 1
        tags: tuple[ClassVarLike, ...] = ()  # a field, though its type's name has ClassVar

    assert WithClassVars._fields == ("size", "tags")


# -- interrupting the search -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_keyboard_interrupt_returns_a_partial_result(mode: str) -> None:
    calls: list[Progress] = []

    def progress(p: Progress) -> None:
        calls.append(p)
        if p.states >= 5:
            raise KeyboardInterrupt

    result = check(
        peterson, Options(mode=mode, progress=progress, progress_interval=0.0, runs=1000)
    )
    assert result.interrupted
    assert calls and result.stats.states >= 5 and result.stats.seconds > 0
    assert result.stats.states < 46 or mode == "random"
    assert result.coverage == "incomplete (interrupted)"
    assert result.verdict == "holds, incomplete (interrupted)"
    assert result.as_dict()["exhaustive"] is False


class Counter(Struct):
    count: int = 0
    junk: Any = None


def counts_then_interrupts(w: Counter) -> Steps:
    w.count += 1
    yield "count"
    w.junk.value = 99  # half a step...
    raise KeyboardInterrupt  # ...then the user presses ^C


def test_interrupt_inside_a_step_leaves_traces_intact() -> None:
    model = Model("interrupted")

    @model.setup
    def setup(s: Setup) -> Counter:
        w = Counter(junk=Box())
        s.actor("a", counts_then_interrupts, w)
        return w

    @model.invariant("count stays zero")
    def zero(w: Counter) -> bool:
        return w.count == 0

    result = check(model)
    assert result.interrupted
    v = result.violation("count stays zero")
    assert v.trace is not None and len(v.trace) == 1
    # the trace is replayed from clean objects: the interrupted step's write is gone
    assert v.trace.initial["junk.value"] == 0
    assert v.trace.final["junk.value"] == 0 and v.trace.final["count"] == 1
