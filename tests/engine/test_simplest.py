"""Shortest and simplest: among the shortest counterexamples of a property, breadth-first
search reports one with the fewest context switches, without changing verdicts or counts.

The reference is brute force: every path of the shortest length, enumerated step by step.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmsim.demos import DEMOS
from kvmsim.engine import Model, Options, Result, Setup, Struct, await_, check, fail
from kvmsim.engine.simplest import switches
from kvmsim.engine.system import State, System

from .support import Steps


class XY(Struct):
    x: int = 0
    y: int = 0


def needs_y(w: XY) -> Steps:
    await_(w.y >= 1)
    w.x += 1
    yield "x = 1"
    w.x += 1
    yield "x = 2"


def makes_y(w: XY) -> Steps:
    w.y += 1
    yield "y = 1"
    w.y += 1
    yield "y = 2"


def zigzag_model(event: bool = False, must_finish: bool = False) -> Model:
    """A waits for B's first step. The first shortest path breadth-first search finds to
    x = y = 2 is B A A B (it prefers actor A at every state); B B A A has one switch less."""
    model = Model("zigzag")

    @model.setup
    def setup(s: Setup) -> XY:
        w = XY()
        s.actor("A", needs_y, w, must_finish=must_finish)
        s.actor("B", makes_y, w, must_finish=must_finish)
        if event:
            s.actor("watch", watcher, w)
        return w

    if not event:

        @model.invariant("not both")
        def not_both(w: XY) -> bool:
            return not (w.x == 2 and w.y == 2)

    return model


def watcher(w: XY) -> Steps:
    await_(w.x == 2 and w.y == 2)
    fail("not both", "both reached 2")
    yield "saw both"


def actors(result: Result, prop: str) -> list[str]:
    trace = result.violation(prop).trace
    assert trace is not None
    return [s.actor for s in trace.steps]


def test_the_first_shortest_trace_has_a_needless_switch_and_is_replaced() -> None:
    model = zigzag_model()
    plain = check(model, Options(simplest=False))
    simple = check(model)
    assert actors(plain, "not both") == ["B", "A", "A", "B"]
    assert actors(simple, "not both") == ["B", "B", "A", "A"]
    # same verdict, same search
    assert simple.violated() == plain.violated()
    assert (simple.stats.states, simple.stats.transitions) == (
        plain.stats.states,
        plain.stats.transitions,
    )
    # the trace replays: the last state breaks the invariant
    trace = simple.violation("not both").trace
    assert trace is not None and (trace.final["x"], trace.final["y"]) == (2, 2)


def test_event_properties_are_simplified_too() -> None:
    model = zigzag_model(event=True)
    plain = check(model, Options(simplest=False))
    simple = check(model)
    assert actors(plain, "not both") == ["B", "A", "A", "B", "watch"]
    assert actors(simple, "not both") == ["B", "B", "A", "A", "watch"]
    assert simple.violation("not both").message == "both reached 2"


@pytest.mark.parametrize("must_finish", [False, True])
def test_from_the_stored_graph_or_by_expanding_the_layers_again(must_finish: bool) -> None:
    # With must-finish actors the search keeps its graph (for liveness) and the transitions
    # come from it; without, the layers below the violation are expanded again.
    model = zigzag_model(must_finish=must_finish)
    assert actors(check(model), "not both") == ["B", "B", "A", "A"]
    if must_finish:  # liveness off: no stored graph either
        assert actors(check(model, Options(liveness=False)), "not both") == ["B", "B", "A", "A"]


# -- brute force ------------------------------------------------------------------------------


def brute_force(model: Model, prop: str, kind: str, length: int) -> int:
    """The fewest switches of any path of exactly length steps that violates prop."""
    sys = System(model)
    best = [1 << 30]

    def violates_at(state: State) -> bool:
        if kind == "invariant":
            return prop in [p for p, _ in sys.check_invariants(state)]
        if kind == "deadlock":
            outs = [o for _, _, o in sys.successors(state) if o.kind != "blocked"]
            return not outs and bool(sys.unfinished(state))
        return False

    def walk(state: State, path: list[tuple[int, tuple[int, ...]]]) -> None:
        if len(path) == length:
            if violates_at(state):
                best[0] = min(best[0], switches(path))
            return
        for actor, script, out in list(sys.successors(state)):
            if out.kind == "blocked":
                continue
            step = path + [(actor, script)]
            if len(step) == length:
                failed = out.kind == kind and (out.prop == prop or kind != "property")
                if out.kind == "ok" and prop in [p for p, _ in out.failures]:
                    failed = True
                if failed:
                    best[0] = min(best[0], switches(step))
            if out.kind == "ok" and out.state is not None:
                walk(out.state, step)

    walk(sys.initial, [])
    return best[0]


def assert_simplest(model: Model) -> Result:
    result = check(model)
    plain = check(model, Options(simplest=False))
    assert result.violated() == plain.violated()
    assert (result.stats.states, result.stats.transitions) == (
        plain.stats.states,
        plain.stats.transitions,
    )
    for v in result.violations:
        if v.trace is None or v.trace.loop_start is not None or not v.trace.steps:
            continue
        w = plain.violation(v.prop)
        assert w.trace is not None
        assert len(v.trace) == len(w.trace)  # still shortest
        assert v.trace.steps[-1].kind == w.trace.steps[-1].kind
        assert switches(v.trace.path) == brute_force(model, v.prop, v.kind, len(v.trace))
    return result


def test_demos_get_the_simplest_shortest_counterexample() -> None:
    for name in ("broken-lock", "lost-update", "philosophers"):
        assert_simplest(DEMOS[name])


# -- random models ----------------------------------------------------------------------------


class Vars(Struct):
    x: int = 0
    y: int = 0


def program(w: Vars, ops: tuple[tuple[str, int], ...], target: tuple[int, int]) -> Steps:
    i = 0
    while i < len(ops):
        op, k = ops[i]
        if op == "x+":
            w.x += k
        elif op == "y+":
            w.y += k
        elif op == "await-x":
            await_(w.x >= k)
        elif op == "copy":
            w.x = w.y
        elif op == "check" and (w.x, w.y) == target:
            fail("step", f"saw x={w.x}, y={w.y}")
        yield f"op {i}"
        i += 1


OPS = st.tuples(st.sampled_from(["x+", "y+", "await-x", "copy", "check"]), st.integers(1, 2))


def random_model(progs: list[tuple[tuple[str, int], ...]], target: tuple[int, int]) -> Model:
    model = Model("random")

    @model.setup
    def setup(s: Setup) -> Vars:
        w = Vars()
        for i, ops in enumerate(progs):
            s.actor(f"T{i}", program, w, ops, target)
        return w

    @model.invariant("not target")
    def not_target(w: Vars) -> bool:
        return (w.x, w.y) != target

    return model


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(OPS, min_size=1, max_size=4).map(tuple), min_size=2, max_size=3),
    st.tuples(st.integers(0, 4), st.integers(0, 4)),
)
def test_random_models_match_brute_force(
    progs: list[tuple[tuple[str, int], ...]], target: tuple[int, int]
) -> None:
    assert_simplest(random_model(progs, target))


def test_stop_at_first_still_gives_a_shortest_counterexample() -> None:
    model = zigzag_model()
    first: Any = check(model, Options(stop_at_first=True))
    assert len(first.violation("not both").trace) == 4
