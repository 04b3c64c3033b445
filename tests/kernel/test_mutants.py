"""Mutation tests: each property can fail. Every mutant of v6.5 removes one mechanism and
must give a shortest counterexample for the property that mechanism protects."""

from __future__ import annotations

import pytest
from mutants import no_late_check, no_remote_flush, no_retry, no_wait

from kvmsim.engine import check
from kvmsim.machine import build_model
from kvmsim.scenarios import get_scenario
from kvmsim.variants import Variant

# (mutant, scenario, violated property, shortest counterexample length)
CASES: list[tuple[Variant, str, str, int]] = [
    (no_retry, "migrate", "INV-APIC", 33),
    (no_retry, "zap-anon", "INV-APIC", 31),
    (no_remote_flush, "migrate", "LIVE-FLUSH", 14),
    (no_remote_flush, "zap-anon", "LIVE-FLUSH", 9),
    (no_late_check, "migrate", "INV-REQ", 8),
    (no_wait, "migrate", "INV-WAIT", 10),
    (no_wait, "zap-anon", "INV-WAIT", 9),
]


@pytest.mark.parametrize(
    ("mutant", "scenario", "prop", "length"),
    CASES,
    ids=[f"{m.name}-{s}" for m, s, _, _ in CASES],
)
def test_mutant_breaks_its_property(mutant: Variant, scenario: str, prop: str, length: int) -> None:
    result = check(build_model(mutant, get_scenario(scenario)))
    assert result.violated() == [prop]
    violation = result.violation(prop)
    assert violation.trace is not None
    assert len(violation.trace) == length
    # The counterexample is a real run of the model: it replays to the same violation.
    last = violation.trace.steps[-1]
    if violation.kind == "property":
        assert last.kind == "property"


def test_mutant_without_retry_maps_a_stale_page() -> None:
    """The no-retry reload writes the old page into vmcs01 while the EPT maps the new one."""
    result = check(build_model(no_retry, get_scenario("migrate")))
    trace = result.violation("INV-APIC").trace
    assert trace is not None
    final = trace.final
    assert final["vcpu0.in_guest"] is True
    assert final["vcpu0.apic_access_addr"] != final["mm.pte"][0]
