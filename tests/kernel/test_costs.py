"""Cost figures of v6.4, v6.5 and v6.6, asserted exactly (min, max; None = unbounded).

Minima and maxima are over every complete behaviour of the scenario. An unbounded maximum
is a cycle the schedule can repeat at will: a v6.5 vCPU retrying its reload while the
invalidator is preempted, or a v6.4 vCPU re-faulting on a zapped SPTE.
"""

from __future__ import annotations

import pytest

from kvmsim.engine import Options, check
from kvmsim.machine import build_model
from kvmsim.scenarios import get_scenario
from kvmsim.variants import get_variant

Figures = dict[str, tuple[int, int | None]]

EXPECTED: dict[tuple[str, str], Figures] = {
    ("v6.4", "migrate"): {
        "bail": (0, 2),
        "fault_retry": (0, None),
        "flush_all": (0, 1),
        "flush_current": (0, 1),
        "ipi": (0, 2),
        "migrate_fail": (0, 1),
        "out_of_guest_steps": (0, 35),
        "pass": (1, None),
        "reload_request": (0, 1),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (1, None),
    },  # noqa: E501
    ("v6.4", "zap-anon"): {
        "bail": (0, 3),
        "fault_retry": (0, None),
        "flush_all": (0, 1),
        "flush_current": (0, 2),
        "ipi": (0, 3),
        "out_of_guest_steps": (0, 50),
        "pass": (1, None),
        "reload_request": (0, 2),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (1, None),
    },  # noqa: E501
    ("v6.4", "x2apic-switch"): {
        "bail": (0, 2),
        "fault_retry": (0, None),
        "flush_all": (0, 1),
        "flush_current": (1, 3),
        "ipi": (0, 2),
        "migrate_fail": (0, 1),
        "out_of_guest_steps": (0, 39),
        "pass": (4, None),
        "reload_request": (1, 2),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (4, None),
    },  # noqa: E501
    ("v6.5", "migrate"): {
        "bail": (0, None),
        "flush_all": (0, 1),
        "flush_current": (0, 2),
        "ipi": (0, 1),
        "migrate_fail": (0, 1),
        "out_of_guest_steps": (0, None),
        "pass": (1, None),
        "reload_attempt": (0, None),
        "reload_request": (0, None),
        "reload_retry": (0, None),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (1, 3),
    },  # noqa: E501
    ("v6.5", "zap-anon"): {
        "bail": (0, None),
        "flush_all": (0, 1),
        "flush_current": (0, 2),
        "ipi": (0, 1),
        "out_of_guest_steps": (0, None),
        "pass": (1, None),
        "reload_attempt": (0, None),
        "reload_request": (0, None),
        "reload_retry": (0, None),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (1, 3),
    },  # noqa: E501
    ("v6.5", "x2apic-switch"): {
        "bail": (0, None),
        "fault_retry": (0, 1),
        "flush_all": (0, 1),
        "flush_current": (1, 4),
        "ipi": (0, 3),
        "migrate_fail": (0, 1),
        "out_of_guest_steps": (0, None),
        "pass": (4, None),
        "reload_attempt": (1, None),
        "reload_request": (1, None),
        "reload_retry": (0, None),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (4, 8),
    },  # noqa: E501
    ("v6.6", "migrate"): {
        "bail": (0, None),
        "flush_all": (0, 1),
        "ipi": (0, 1),
        "migrate_fail": (0, 1),
        "out_of_guest_steps": (0, None),
        "pass": (1, None),
        "reload_attempt": (0, None),
        "reload_request": (0, None),
        "reload_retry": (0, None),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (1, 3),
    },  # noqa: E501
    ("v6.6", "zap-anon"): {
        "bail": (0, None),
        "flush_all": (0, 1),
        "ipi": (0, 1),
        "out_of_guest_steps": (0, None),
        "pass": (1, None),
        "reload_attempt": (0, None),
        "reload_request": (0, None),
        "reload_retry": (0, None),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (1, 3),
    },  # noqa: E501
    ("v6.6", "x2apic-switch"): {
        "bail": (0, None),
        "fault_retry": (0, 1),
        "flush_all": (0, 1),
        "flush_current": (0, 1),
        "ipi": (0, 3),
        "migrate_fail": (0, 1),
        "out_of_guest_steps": (0, None),
        "pass": (4, None),
        "reload_attempt": (1, None),
        "reload_request": (1, None),
        "reload_retry": (0, None),
        "remote_tlb_flush": (1, 1),
        "vm_enter": (4, 8),
    },  # noqa: E501
}


@pytest.mark.parametrize(("variant", "scenario"), sorted(EXPECTED), ids=lambda x: str(x))
def test_cost_figures(variant: str, scenario: str) -> None:
    result = check(build_model(get_variant(variant), get_scenario(scenario)), Options(costs=True))
    got = {name: (c.min, c.max) for name, c in result.costs.items()}
    assert got == EXPECTED[(variant, scenario)]


def test_v66_saves_the_reload_flush() -> None:
    """Dropping the reload's own flush removes every single-context flush it did."""
    v65 = EXPECTED[("v6.5", "migrate")]
    v66 = EXPECTED[("v6.6", "migrate")]
    assert v65["flush_current"] == (0, 2)
    assert "flush_current" not in v66  # never happens in v6.6
    assert v65["flush_all"] == v66["flush_all"]


def test_witnesses_replay_to_their_figures() -> None:
    result = check(build_model(get_variant("v6.4"), get_scenario("zap-anon")), Options(costs=True))
    ipi = result.costs["ipi"]
    assert ipi.max_trace is not None
    assert sum(step.events.count("ipi") for step in ipi.max_trace.steps) == ipi.max == 3
    retry = result.costs["fault_retry"]
    assert retry.max is None and retry.max_trace.loop_start is not None
    loop = retry.max_trace.steps[retry.max_trace.loop_start :]
    assert any("fault_retry" in step.events for step in loop)
