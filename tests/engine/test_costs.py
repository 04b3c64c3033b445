"""Exact cost ranges over complete behaviours, with witnesses."""

from __future__ import annotations

from collections.abc import Generator

from kvmsim.engine import Model, Options, Setup, Struct, check, choose, note


class Shared(Struct):
    busy: bool = True
    done: int = 0


def worker(w: Shared) -> Generator[str, None, None]:
    n = choose((1, 2, 3), "how many flushes")
    for _ in range(n):
        note("flush")
        yield "flush"
    w.done += 1
    yield "done"


def spinner(w: Shared) -> Generator[str, None, None]:
    while w.busy:
        note("spin")
        yield "spin"
    yield "out"


def releaser(w: Shared) -> Generator[str, None, None]:
    w.busy = False
    yield "release"


def model() -> Model:
    m = Model("costs")

    @m.setup
    def setup(s: Setup) -> Shared:
        w = Shared()
        s.actor("worker", worker, w)
        s.actor("spinner", spinner, w)
        s.actor("releaser", releaser, w)
        return w

    @m.cost
    def waiting(w: Shared) -> dict[str, int]:
        return {"busy_steps": int(w.busy)}

    return m


def test_min_and_max_with_witnesses() -> None:
    result = check(model(), Options(costs=True))
    assert result.holds
    flush = result.costs["flush"]
    assert (flush.min, flush.max) == (1, 3)
    assert sum("flush" in s.events for s in flush.min_trace.steps) == 1
    assert sum("flush" in s.events for s in flush.max_trace.steps) == 3


def test_a_positive_cycle_is_unbounded_with_a_lasso() -> None:
    result = check(model(), Options(costs=True))
    spin = result.costs["spin"]
    assert spin.min == 0  # the releaser may run first
    assert spin.max is None
    assert spin.max_trace.loop_start is not None
    loop = spin.max_trace.steps[spin.max_trace.loop_start :]
    assert [s.label for s in loop] == ["spin"]


def test_state_costs_are_charged_per_step() -> None:
    result = check(model(), Options(costs=True))
    busy = result.costs["busy_steps"]
    assert busy.min == 1  # the releaser's own step leaves a busy state
    assert busy.max is None  # the spinner may spin any number of times first


def test_no_costs_unless_asked_or_when_bounded() -> None:
    assert check(model()).costs == {}
    bounded = check(model(), Options(costs=True, max_depth=3))
    assert bounded.costs == {}
    assert any("cost figures not computed" in n for n in bounded.notes)
