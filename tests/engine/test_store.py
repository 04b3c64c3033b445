"""The fingerprint store: the same search as the full store, in a few bytes a state."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmsim.demos import DEMOS
from kvmsim.engine import Model, Options, Result, check
from kvmsim.engine.codec import StateCodec
from kvmsim.engine.store import FingerprintGraph
from kvmsim.engine.system import System
from kvmsim.machine import build_model
from kvmsim.scenarios import SCENARIOS
from kvmsim.variants import get_variant

from .bench import counters
from .test_simplest import OPS, random_model, zigzag_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))
from mutants import no_wait  # noqa: E402


def comparable(result: Result) -> dict[str, Any]:
    """as_dict without timings, memory and notes (the store's own note differs)."""
    d = result.as_dict()
    d["stats"] = {k: d["stats"][k] for k in ("states", "transitions", "max_depth")}
    d.pop("notes")
    d.pop("collision_probability", None)
    return d


def same_search(model: Model, **options: Any) -> Result:
    full = check(model, Options(**options))
    compact = check(model, Options(store="fingerprint", **options))
    assert comparable(compact) == comparable(full)
    return compact


@pytest.mark.parametrize("model", list(DEMOS.values()), ids=lambda m: m.name)
def test_demos_give_the_same_results(model: Model) -> None:
    same_search(model)
    same_search(model, liveness=False)


@pytest.mark.parametrize(
    "options",
    [{}, {"stop_at_first": True}, {"max_states": 500}, {"max_depth": 9}, {"simplest": False}],
    ids=str,
)
def test_bounds_and_stops_give_the_same_results(options: dict[str, Any]) -> None:
    same_search(counters(3, 2), **options)
    same_search(DEMOS["philosophers"], **options)


def test_kvm_model_same_verdicts_both_ways() -> None:
    holds = same_search(build_model(get_variant("v6.5"), SCENARIOS["migrate"]), liveness=False)
    assert holds.verdict == "holds" and holds.stats.states > 1000
    broken = same_search(build_model(no_wait, SCENARIOS["migrate"]), liveness=False)
    assert "INV-WAIT" in broken.violated()


def test_simplest_counterexample_rebuilt_by_expanding_layers_again() -> None:
    result = same_search(zigzag_model())
    trace = result.violation("not both").trace
    assert trace is not None and [s.actor for s in trace.steps] == ["B", "B", "A", "A"]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.lists(OPS, min_size=1, max_size=4).map(tuple), min_size=2, max_size=3),
    st.tuples(st.integers(0, 4), st.integers(0, 4)),
)
def test_random_models_same_results(
    progs: list[tuple[tuple[str, int], ...]], target: tuple[int, int]
) -> None:
    same_search(random_model(progs, target))


def test_result_reports_the_collision_probability() -> None:
    result = check(counters(3, 2), Options(store="fingerprint"))
    p = result.collision_probability
    n, m = result.stats.states, result.stats.transitions
    assert p is not None and p == pytest.approx(n * m / 2.0**64)
    assert result.as_dict()["collision_probability"] == p
    assert any(
        "probability that a fingerprint collision omitted a state" in x for x in result.notes
    )
    assert check(counters(3, 2)).collision_probability is None


def test_liveness_and_costs_keep_the_full_store() -> None:
    starved = check(DEMOS["retry-starved"], Options(store="fingerprint"))
    assert starved.violated() == ["progress: spinner"]
    assert any("full store was used" in n for n in starved.notes)
    assert starved.collision_probability is None


def test_unknown_store_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown store"):
        check(counters(2, 1), Options(store="disk"))


def test_lookup_add_grow_and_paths() -> None:
    system = System(counters(2, 2))
    g = FingerprintGraph(system, system.initial)
    assert g.find(system.initial) == 0
    for fp in range(1, 5000):
        g._append(fp << 20, fp - 1, (fp % 2, (fp % 3,)), fp)
    assert all(g.find_fp(fp << 20) == fp for fp in range(1, 5000))
    assert g.find_fp(12345) is None
    assert g.path_to(3) == [(1, (1,)), (0, (2,)), (1, (0,))]
    assert g.mask + 1 >= 2 * len(g) and g.nbytes() / len(g) < 40


def test_a_colliding_fingerprint_omits_states(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side: the store really keeps only fingerprints, so a bad hash loses states
    (which is what the reported probability is about)."""
    model = counters(3, 2)
    full = check(model)
    real = StateCodec.part_fingerprint
    monkeypatch.setattr(StateCodec, "part_fingerprint", lambda self, s: real(self, s) & 0xF)
    coarse = check(model, Options(store="fingerprint"))
    assert full.stats.states > 100 and coarse.stats.states <= 16
