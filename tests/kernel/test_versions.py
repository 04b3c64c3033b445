"""v6.4 and v6.5 on every default scenario: every property holds, exhaustively.

The state counts are recorded so that any change to the model's size is noticed: if a
change to kernel/ moves them, check the change against the kernel source, then update them.
"""

from __future__ import annotations

import pytest

from kvmsim.engine import Options, check
from kvmsim.machine import build_model
from kvmsim.scenarios import default_scenarios, get_scenario
from kvmsim.variants import get_variant

# (variant, scenario): (distinct states, transitions)
EXPECTED: dict[tuple[str, str], tuple[int, int]] = {
    ("v6.5", "migrate"): (2471, 4235),
    ("v6.5", "two-vcpus-migrate"): (302896, 786241),
    ("v6.5", "zap"): (4049, 7593),
    ("v6.5", "zap-anon"): (4073, 7637),
    ("v6.5", "swap"): (3545, 6299),
    ("v6.5", "back-to-back"): (20066, 35492),
    ("v6.5", "unrelated-overlap"): (124723, 311566),
    ("v6.5", "x2apic-switch"): (6491, 11395),
    ("v6.5", "x2apic-migrate"): (3270, 5804),
    ("v6.5", "nested"): (5424, 9632),
    ("v6.5", "smm"): (6982, 12003),
    ("v6.4", "migrate"): (1339, 2312),
    ("v6.4", "two-vcpus-migrate"): (78273, 202257),
    ("v6.4", "zap"): (5325, 9933),
    ("v6.4", "zap-anon"): (5709, 10640),
    ("v6.4", "swap"): (2324, 4195),
    ("v6.4", "back-to-back"): (7844, 14054),
    ("v6.4", "unrelated-overlap"): (63751, 161925),
    ("v6.4", "x2apic-switch"): (3621, 6458),
    ("v6.4", "x2apic-migrate"): (2135, 3804),
    ("v6.4", "nested"): (2567, 4624),
    ("v6.4", "smm"): (2907, 5106),
}

CASES = [(v, s.name) for v in ("v6.5", "v6.4") for s in default_scenarios()]


def test_every_default_scenario_has_a_recorded_count() -> None:
    assert sorted(CASES) == sorted(EXPECTED)


@pytest.mark.parametrize(("variant", "scenario"), CASES, ids=[f"{v}-{s}" for v, s in CASES])
def test_all_properties_hold(variant: str, scenario: str) -> None:
    result = check(build_model(get_variant(variant), get_scenario(scenario)))
    assert result.violated() == []
    assert result.exhaustive and not result.interrupted
    assert (result.stats.states, result.stats.transitions) == EXPECTED[(variant, scenario)]


@pytest.mark.parametrize("scenario", ["migrate", "zap-anon", "swap", "nested", "smm"])
def test_v65_scenarios_are_not_vacuous(scenario: str) -> None:
    """The guest does use the moved page, and a reload does retry (the 6.5 mechanism)."""
    result = check(build_model(get_variant("v6.5"), get_scenario(scenario)))
    assert result.sometimes == {"APIC page used after it moved": True, "a reload retried": True}


def test_v64_never_retries() -> None:
    result = check(build_model(get_variant("v6.4"), get_scenario("migrate")))
    assert result.sometimes["a reload retried"] is False
    assert result.sometimes["APIC page used after it moved"] is True


def test_stall_holds_on_v65_and_not_on_v64() -> None:
    """STALL-6.5: v6.5 keeps L1 vCPUs out of the guest until the invalidation ends; v6.4
    lets them run once the zapped page has been faulted back in."""
    stall = ("STALL-6.5",)
    v65 = check(build_model(get_variant("v6.5"), get_scenario("zap-anon"), stall))
    assert v65.violated() == []
    v64 = check(build_model(get_variant("v6.4"), get_scenario("zap-anon"), stall))
    assert v64.violated() == ["STALL-6.5"]


def test_bounded_search_is_labelled() -> None:
    result = check(build_model(get_variant("v6.5"), get_scenario("migrate")), Options(max_depth=10))
    assert not result.exhaustive
    assert "depth 10" in result.bound
