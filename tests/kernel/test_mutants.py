"""Mutation tests: each property can fail. Every mutant of v6.5 removes one mechanism and
must give a shortest counterexample for the property that mechanism protects."""

from __future__ import annotations

import pytest
from mutants import (
    no_ctl_requests,
    no_late_check,
    no_nested_rerequest,
    no_release,
    no_remote_flush,
    no_retry,
    no_wait,
)

from kvmsim.engine import Options, check
from kvmsim.machine import build_model
from kvmsim.scenarios import get_scenario
from kvmsim.variants import Variant

# (mutant, scenario, the property it targets, shortest counterexample, everything it breaks)
CASES: list[tuple[Variant, str, str, int, list[str]]] = [
    (no_retry, "migrate", "INV-APIC", 33, ["INV-APIC"]),
    (no_retry, "zap-anon", "INV-APIC", 31, ["INV-APIC"]),
    (no_remote_flush, "migrate", "LIVE-FLUSH", 14, ["LIVE-FLUSH"]),
    (no_remote_flush, "zap-anon", "LIVE-FLUSH", 9, ["LIVE-FLUSH"]),
    (no_late_check, "migrate", "INV-REQ", 8, ["INV-REQ", "INV-WAIT", "LIVE-FLUSH", "INV-NOFREE"]),
    (no_wait, "migrate", "INV-WAIT", 10, ["INV-WAIT", "LIVE-FLUSH", "INV-NOFREE"]),
    (no_wait, "zap-anon", "INV-WAIT", 9, ["INV-WAIT", "LIVE-FLUSH", "INV-NOFREE"]),
]


@pytest.mark.parametrize(
    ("mutant", "scenario", "prop", "length", "broken"),
    CASES,
    ids=[f"{m.name}-{s}" for m, s, _, _, _ in CASES],
)
def test_mutant_breaks_its_property(
    mutant: Variant, scenario: str, prop: str, length: int, broken: list[str]
) -> None:
    result = check(build_model(mutant, get_scenario(scenario)))
    assert result.violated() == broken
    violation = result.violation(prop)
    assert violation.trace is not None
    assert len(violation.trace) == length
    # The step that broke an event property is marked in the replayed trace.
    if violation.kind == "property":
        assert violation.trace.steps[-1].kind == "property"
        assert violation.trace.steps[-1].message == violation.message


def test_mutant_without_retry_maps_a_stale_page() -> None:
    """The no-retry reload writes the old page into vmcs01 while the EPT maps the new one."""
    result = check(build_model(no_retry, get_scenario("migrate")))
    trace = result.violation("INV-APIC").trace
    assert trace is not None
    final = trace.final
    assert final["vcpu0.in_guest"] is True
    assert final["vcpu0.apic_access_addr"] != final["mm.pte"][0]


# Mutants for the remaining event properties. A leaked reference grows the refcount forever,
# so the state space is infinite: these stop at the first (shortest) counterexample.
FIRST_CASES: list[tuple[Variant, str, str, int]] = [
    (no_release, "migrate", "INV-REF", 23),
    (no_nested_rerequest, "nested", "INV-NESTED", 30),
    (no_ctl_requests, "x2apic-switch", "INV-CTL", 25),
]


@pytest.mark.parametrize(
    ("mutant", "scenario", "prop", "length"),
    FIRST_CASES,
    ids=[f"{m.name}-{s}" for m, s, _, _ in FIRST_CASES],
)
def test_mutant_breaks_event_property(
    mutant: Variant, scenario: str, prop: str, length: int
) -> None:
    result = check(build_model(mutant, get_scenario(scenario)), Options(stop_at_first=True))
    assert result.violated() == [prop]
    trace = result.violation(prop).trace
    assert trace is not None and len(trace) == length
