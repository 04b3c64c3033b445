"""Every search mode gives a random model the same answer as plain breadth-first search.

SEARCHES lists the modes compared with BFS. A mode that explores every state without
reduction must count exactly BFS's states; one that promises shortest counterexamples must
find them as short as BFS's. Reduced searches (symmetry, partial order) and parallel ones are
added here with the promises they keep.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings

from kvmsim.engine import Options, Result, check

from .random_models import Spec, build, invariant_name, specs


@dataclass(frozen=True)
class Search:
    name: str
    options: Options
    exact_states: bool  # explores exactly BFS's states (no reduction)
    shortest: bool  # its counterexamples are shortest


SEARCHES: list[Search] = [
    Search("dfs", Options(mode="dfs"), exact_states=True, shortest=False),
    Search("fingerprint store", Options(store="fingerprint"), exact_states=True, shortest=True),
    Search("partial-order reduction", Options(por=True), exact_states=False, shortest=False),
    Search("dfs with partial-order reduction", Options(mode="dfs", por=True), False, False),
    Search("2 workers", Options(workers=2), exact_states=True, shortest=True),
]

REFERENCE = Options(mode="bfs")


def assert_sound(result: Result, spec: Spec) -> None:
    """Each invariant counterexample really ends in a state that breaks the invariant."""
    for f, g, total in spec.invariants:
        name = invariant_name(f, g, total)
        if name in result.violated():
            trace = result.violation(name).trace
            assert trace is not None
            assert trace.final[f] + trace.final[g] == total


def lengths(result: Result) -> dict[str, int]:
    return {v.prop: len(v.trace) for v in result.violations if v.trace is not None}


@settings(deadline=None)
@given(specs)
def test_every_search_agrees_with_bfs(spec: Spec) -> None:
    model = build(spec)
    ref = check(model, REFERENCE)
    assert ref.exhaustive and not ref.interrupted
    assert_sound(ref, spec)
    for search in SEARCHES:
        got = check(model, search.options)
        label = f"{search.name} vs bfs"
        assert got.verdict == ref.verdict, label
        assert set(got.violated()) == set(ref.violated()), label
        if search.exact_states:
            assert got.stats.states == ref.stats.states, label
        else:
            assert got.stats.states <= ref.stats.states, label
        for prop, n in lengths(got).items():
            shortest = lengths(ref)[prop]
            assert n == shortest if search.shortest else n >= shortest, (label, prop)
        assert_sound(got, spec)
