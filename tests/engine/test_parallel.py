"""The partitioned breadth-first search in several processes against the one-process search,
and the swarm: same verdicts, violated properties, counterexample lengths and counts."""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest

from kvmsim.builders import ModelBuilder
from kvmsim.demos import DEMOS
from kvmsim.engine import Model, ModelError, Options, Result, Setup, Struct, check
from kvmsim.engine.inline import InlineCluster
from kvmsim.engine.parallel_bfs import partitioned_check
from kvmsim.engine.partition import BASE_SHIP, LevelReport, SearchSpec, ship_shares
from kvmsim.engine.simplest import switches
from kvmsim.machine import build_model
from kvmsim.replay import ModelRef
from kvmsim.scenarios import get_scenario
from kvmsim.variants import get_variant

from . import bench
from .support import Steps
from .test_codec import bag_model


def summary(r: Result) -> tuple[Any, ...]:
    """Everything a parallel search must reproduce; for each counterexample its length and
    context switches (the counterexample itself may be another of the same shape)."""
    return (
        r.verdict,
        r.violated(),
        [
            (v.kind, v.message, len(v.trace), switches(v.trace.path))
            for v in r.violations
            if v.trace
        ],
        r.stats.states,
        r.stats.transitions,
        r.stats.max_depth,
        r.sometimes,
        r.exhaustive,
    )


def demo(name: str) -> ModelBuilder:
    return ModelBuilder.of(ModelRef("demo", name))


@pytest.mark.parametrize("name", list(DEMOS))
def test_textbook_models_agree(name: str) -> None:
    model = DEMOS[name]
    one = check(model, Options(liveness=False))
    two = check(model, Options(liveness=False, workers=2, builder=demo(name)))
    assert summary(two) == summary(one)
    assert any("2 workers" in n for n in two.notes)


def test_one_and_three_partitions_agree() -> None:
    """The partitioned search with one partition, and with three, in forked workers."""
    model = DEMOS["philosophers"]
    one = check(model, Options(liveness=False))
    for n in (1, 3):
        assert summary(partitioned_check(model, Options(liveness=False, workers=n))) == summary(one)


@pytest.mark.parametrize(
    "make", [functools.partial(bench.filter_lock, 3), functools.partial(bench.counters, 2, 3)]
)
def test_bench_models_agree(make: functools.partial[Model]) -> None:
    model = make()
    one = check(model, Options(liveness=False))
    two = check(model, Options(liveness=False, workers=2, builder=make))
    assert summary(two) == summary(one)
    assert two.stats.states == one.stats.states > 100


@pytest.mark.parametrize("variant", ["v6.5", "v4.15"])
def test_kvm_model_agrees(variant: str) -> None:
    """With the progress of the vCPUs and host threads checked (the default)."""
    model = build_model(get_variant(variant), get_scenario("migrate"))
    builder = ModelBuilder.of(ModelRef("kvm", variant, "migrate"))
    one = check(model, Options())
    two = check(model, Options(workers=2, builder=builder))
    assert summary(two) == summary(one)
    if variant == "v4.15":
        assert two.violated() == ["INV-APIC"]
    else:
        assert two.holds and two.stats.states > 2000


def kvm_migrate(variant: str) -> Model:
    return build_model(get_variant(variant), get_scenario("migrate"))


def inline(
    variant: str, n: int, ship: float | None, clusters: list[InlineCluster] | None = None
) -> Result:
    """The partitioned search of n partitions in this process, every worker shipping the
    given share of its claims (None: the balancing policy's shares)."""

    def cluster_for(spec: SearchSpec) -> InlineCluster:
        cluster = InlineCluster([kvm_migrate(variant) for _ in range(n)], spec, ship)
        if clusters is not None:
            clusters.append(cluster)
        return cluster

    return partitioned_check(kvm_migrate(variant), Options(workers=n), cluster_for)


@pytest.mark.parametrize("variant", ["v6.5", "v4.15"])
def test_who_holds_a_state_does_not_change_the_result(variant: str) -> None:
    """Whether every claimed state is shipped to its owner (1.0), kept by the worker that
    made it (0.0), or shipped as the balancing policy says (None), the result is the one
    process's, and the counterexample is the same path for every share and number."""
    one = check(kvm_migrate(variant), Options())
    paths = []
    for n in (2, 3):
        for ship in (0.0, 1.0, None):
            result = inline(variant, n, ship)
            assert summary(result) == summary(one), (n, ship)
            paths.append([v.trace.path for v in result.violations if v.trace])
    assert all(p == paths[0] for p in paths)
    assert bool(paths[0]) == (variant == "v4.15")


def test_states_stay_where_they_were_made_unless_shipped() -> None:
    """Shipping nothing, the seed's worker makes and keeps every state; the policy ships
    enough that each of two workers expands between a third and two thirds of them."""
    for ship, low, high in ((0.0, 1.0, 1.0), (None, 0.33, 0.67)):
        clusters: list[InlineCluster] = []
        result = inline("v6.5", 2, ship, clusters)
        expanded = [p.checked for p in clusters[0].parts]
        assert sum(expanded) == result.stats.states
        assert low <= max(expanded) / result.stats.states <= high, (ship, expanded)


def test_a_worker_expands_its_states_in_the_order_it_found_them() -> None:
    """Successors a worker owns and successors it keeps for another owner are expanded
    together in the order found (one state's successors one after another, as in the
    one-process search), never first the owned ones and then the kept ones."""
    levels = []

    def cluster_for(spec: SearchSpec) -> InlineCluster:
        cluster = InlineCluster([kvm_migrate("v6.5") for _ in range(2)], spec)
        level = cluster.level

        def checked(depth: int, ship: list[float]) -> list[LevelReport]:
            reports = level(depth, ship)
            for part in cluster.parts:
                found = [(order, fp % 2) for order, fp, parts, *_ in part.frontier if parts is None]
                levels.append(found)
            return reports

        cluster.level = checked  # type: ignore[method-assign]
        return cluster

    partitioned_check(kvm_migrate("v6.5"), Options(workers=2), cluster_for)
    assert all(found == sorted(found) for found in levels)
    # Owned and kept states interleave: the owner changes more than once along a level.
    assert any(sum(a[1] != b[1] for a, b in zip(f, f[1:])) > 1 for f in levels)


def test_ship_shares() -> None:
    assert ship_shares([10, 0]) == [1.0, BASE_SHIP]
    assert ship_shares([5, 5, 5]) == [BASE_SHIP] * 3
    assert ship_shares([6, 4]) == pytest.approx([BASE_SHIP + 2 * 1 / 6, BASE_SHIP])


def test_states_of_live_objects_agree() -> None:
    """States holding frozensets, enums, Struct references and functions (two of one
    name): the workers name them alike, so they split and merge them as one process."""
    model = bag_model()
    one = check(model, Options(liveness=False))
    for n in (2, 3):
        assert summary(partitioned_check(model, Options(liveness=False, workers=n))) == summary(one)


def test_bounds_and_stop_at_first_agree() -> None:
    model = DEMOS["broken-lock"]
    for opt in (
        dict(max_depth=4),
        dict(stop_at_first=True),
    ):
        one = check(model, Options(liveness=False, **opt))  # type: ignore[arg-type]
        two = check(model, Options(liveness=False, workers=2, builder=demo("broken-lock"), **opt))  # type: ignore[arg-type]
        assert (two.verdict, two.violated(), two.coverage) == (
            one.verdict,
            one.violated(),
            one.coverage,
        )
        assert [len(v.trace or ()) for v in two.violations] == [
            len(v.trace or ()) for v in one.violations
        ]
    bounded = check(model, Options(liveness=False, max_depth=4, workers=2))
    assert summary(bounded)[3:6] == summary(check(model, Options(liveness=False, max_depth=4)))[3:6]


def test_liveness_agrees() -> None:
    model = DEMOS["retry-starved"]
    one = check(model, Options())
    two = check(model, Options(workers=2, builder=demo("retry-starved")))
    assert summary(two) == summary(one)
    assert two.violated() == ["progress: spinner"]
    assert two.violations[0].trace is not None and two.violations[0].trace.loop_start is not None
    assert any("2 workers" in n for n in two.notes)


def test_costs_run_in_one_process_with_a_note() -> None:
    model = DEMOS["retry"]
    one = check(model, Options(costs=True))
    two = check(model, Options(costs=True, workers=2, builder=demo("retry")))
    assert summary(two) == summary(one)
    assert any("ran in one process, not 2 workers" in n for n in two.notes)


def test_collect_terminal_agrees() -> None:
    model = DEMOS["lost-update"]
    one = check(model, Options(collect_terminal=True, liveness=False))
    two = check(model, Options(collect_terminal=True, liveness=False, workers=2))
    key = sorted(map(repr, one.terminal))
    assert sorted(map(repr, two.terminal)) == key and key


# -- a model that breaks in a step, and one that breaks the engine's rules -------------------


class Cell(Struct):
    value: int = 0


def divider(c: Cell, by: int) -> Steps:
    c.value += 1
    yield "add"
    c.value = 10 // (c.value - 2 * by)  # divides by zero in some interleavings
    yield "divide"


def crashing() -> Model:
    model = Model("crashing")

    @model.setup
    def setup(s: Setup) -> Cell:
        c = Cell()
        s.actor("a", divider, c, 1)
        s.actor("b", divider, c, 1)
        return c

    return model


def bad_invariant() -> Model:
    model = crashing()

    @model.invariant("raises")
    def raises(c: Cell) -> bool:
        return 1 // (c.value - 1) >= 0  # raises once value is 1

    return model


def test_a_step_that_raises_is_the_same_violation() -> None:
    one = check(crashing(), Options(liveness=False))
    two = check(crashing(), Options(liveness=False, workers=2, builder=crashing))
    assert summary(two) == summary(one)
    assert two.violated() == ["model error"]
    assert "ZeroDivisionError" in two.violations[0].message


def test_an_invariant_that_raises_is_the_same_error() -> None:
    with pytest.raises(ModelError) as one:
        check(bad_invariant(), Options(liveness=False))
    with pytest.raises(ModelError) as two:
        check(bad_invariant(), Options(liveness=False, workers=2, builder=bad_invariant))
    assert str(two.value).splitlines()[0] == str(one.value).splitlines()[0]


def test_no_parallel_dfs() -> None:
    with pytest.raises(ValueError, match="no parallel form"):
        check(DEMOS["peterson"], Options(mode="dfs", workers=2))


# -- swarm -------------------------------------------------------------------------------------


def test_swarm_finds_the_v415_bug_and_its_seed_reproduces_it() -> None:
    variant, scenario = get_variant("v4.15"), get_scenario("migrate")
    model = build_model(variant, scenario)
    builder = ModelBuilder.of(ModelRef("kvm", "v4.15", "migrate"))
    result = check(model, Options(mode="swarm", workers=2, runs=200, seed=1, builder=builder))
    assert result.violated() == ["INV-APIC"]
    assert result.stats.runs == 200 and not result.exhaustive
    note = next(n for n in result.notes if "'INV-APIC' found by run" in n)
    seed = int(note.split("--seed ")[1].split()[0])
    again = check(model, Options(mode="random", runs=1, seed=seed))
    assert again.violated() == ["INV-APIC"]
    trace, replayed = result.violations[0].trace, again.violations[0].trace
    assert trace is not None and replayed is not None
    assert trace.path == replayed.path


def test_swarm_does_not_depend_on_the_number_of_workers() -> None:
    model = DEMOS["broken-lock"]
    results = [
        check(model, Options(mode="swarm", workers=w, runs=60, seed=3, builder=demo("broken-lock")))
        for w in (1, 3)
    ]
    a, b = results
    assert a.violated() == b.violated() == ["mutual exclusion"]
    assert a.violations[0].trace is not None and b.violations[0].trace is not None
    assert a.violations[0].trace.path == b.violations[0].trace.path
    assert (a.stats.runs, a.stats.transitions) == (b.stats.runs, b.stats.transitions)


def test_swarm_on_a_correct_model_and_with_a_time_budget() -> None:
    model = DEMOS["peterson"]
    result = check(
        model,
        Options(mode="swarm", workers=2, runs=10**9, time_budget=1.0, builder=demo("peterson")),
    )
    assert result.holds and not result.exhaustive and not result.interrupted
    assert 0 < result.stats.runs < 10**9
    assert "within 1 s" in result.bound


def test_swarm_reports_a_crash_in_a_step_as_one_process_does() -> None:
    one = check(crashing(), Options(mode="random", runs=50, seed=0))
    swarm = check(crashing(), Options(mode="swarm", workers=2, runs=50, builder=crashing))
    assert swarm.violated() == one.violated() == ["model error"]
    assert swarm.violations[0].message == one.violations[0].message
    with pytest.raises(ModelError):
        check(bad_invariant(), Options(mode="swarm", workers=2, runs=5, builder=bad_invariant))


def exits(c: Cell) -> Steps:
    c.value += 1
    yield "add"
    os._exit(9)  # the worker process dies here, as if killed
    yield "never"


def dying() -> Model:
    model = Model("dying")

    @model.setup
    def setup(s: Setup) -> Cell:
        c = Cell()
        s.actor("a", exits, c)
        return c

    return model


@pytest.mark.parametrize("mode", ["bfs", "swarm"])
def test_a_worker_that_dies_is_an_error_not_a_hang(mode: str) -> None:
    with pytest.raises(RuntimeError, match="died"):
        check(dying(), Options(mode=mode, workers=2, runs=4, liveness=False, builder=dying))
