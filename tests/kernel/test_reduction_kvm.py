"""Symmetry and partial-order reduction on the KVM model: the same verdict as the full search.

The vCPUs are interchangeable only when requests and kicks visit them in any order (design
note 8a), so the reduced searches run on the any-order scenarios and are compared with the
full search of the same scenario. Every variant is compared under the `slow` marker.
"""

from __future__ import annotations

import pytest

from kvmsim.engine import Options, Result, check
from kvmsim.machine import build_model
from kvmsim.scenarios import get_scenario
from kvmsim.variants import all_variants, get_variant


def verdict(variant: str, scenario: str, **reduce: bool) -> Result:
    model = build_model(get_variant(variant), get_scenario(scenario))
    return check(model, Options(liveness=False, **reduce))


def assert_agree(variant: str, scenario: str) -> None:
    full = verdict(variant, scenario)
    red = verdict(variant, scenario, symmetry=True, por=True)
    assert (red.verdict, sorted(red.violated())) == (full.verdict, sorted(full.violated()))
    assert red.stats.states < full.stats.states
    assert any("symmetry reduction" in n for n in red.notes)


@pytest.mark.parametrize("variant", ["v4.13", "pinned"])
def test_reduced_kvm_search_agrees(variant: str) -> None:
    assert_agree(variant, "two-vcpus-any-order")


def test_v413_counterexample_survives_symmetry() -> None:
    red = verdict("v4.13", "two-vcpus-any-order", symmetry=True)
    assert red.violated() == ["INV-APIC"]
    trace = red.violation("INV-APIC").trace
    assert trace is not None and {s.actor for s in trace.steps} <= {"vcpu0", "vcpu1", "host0"}


@pytest.mark.slow
@pytest.mark.parametrize("variant", [v.name for v in all_variants()])
def test_every_variant_agrees_reduced(variant: str) -> None:
    assert_agree(variant, "two-vcpus-any-order")
