"""Every variant's verdict on every default scenario: the violated properties with the length
of each shortest counterexample, and the number of distinct states (so a change in the model's
size is noticed).

The two big scenarios (two-vcpus-migrate, unrelated-overlap) take up to a minute each per
variant: they run for v6.4 and v6.5 in test_versions.py and, for the other variants, only
under the ``slow`` marker (``pytest -m slow``), to keep CI within its time budget.
"""

from __future__ import annotations

import pytest

from kvmsim.engine import check
from kvmsim.machine import build_model
from kvmsim.scenarios import default_scenarios, get_scenario
from kvmsim.variants import all_variants, get_variant

BIG = ("two-vcpus-migrate", "unrelated-overlap")

# (variant, scenario): (distinct states, [(violated property, shortest counterexample)])
EXPECTED: dict[tuple[str, str], tuple[int, list[tuple[str, int]]]] = {
    ("pinned", "migrate"): (430, []),
    ("pinned", "two-vcpus-migrate"): (14281, []),
    ("pinned", "zap"): (1234, []),
    ("pinned", "zap-anon"): (1234, [("INV-APIC", 24)]),
    ("pinned", "swap"): (426, []),
    ("pinned", "back-to-back"): (1335, []),
    ("pinned", "unrelated-overlap"): (14114, []),
    ("pinned", "x2apic-switch"): (1675, [("INV-CTL", 25)]),
    ("pinned", "x2apic-migrate"): (676, []),
    ("pinned", "nested"): (1075, []),
    ("pinned", "smm"): (1225, []),
    ("v3.18", "migrate"): (762, []),
    ("v3.18", "two-vcpus-migrate"): (43318, []),
    ("v3.18", "zap"): (1234, []),
    ("v3.18", "zap-anon"): (1234, [("INV-APIC", 24)]),
    ("v3.18", "swap"): (1563, []),
    ("v3.18", "back-to-back"): (3757, []),
    ("v3.18", "unrelated-overlap"): (27850, []),
    ("v3.18", "x2apic-switch"): (2330, [("INV-CTL", 25)]),
    ("v3.18", "x2apic-migrate"): (1120, []),
    ("v3.18", "nested"): (1909, []),
    ("v3.18", "smm"): (2011, []),
    ("v4.13", "migrate"): (842, [("INV-APIC", 26)]),
    ("v4.13", "two-vcpus-migrate"): (28995, [("INV-APIC", 27)]),
    ("v4.13", "zap"): (1234, []),
    ("v4.13", "zap-anon"): (1234, [("INV-APIC", 24)]),
    ("v4.13", "swap"): (1000, [("INV-APIC", 27)]),
    ("v4.13", "back-to-back"): (3778, [("INV-APIC", 26)]),
    ("v4.13", "unrelated-overlap"): (45066, [("INV-APIC", 26)]),
    ("v4.13", "x2apic-switch"): (2267, [("INV-APIC", 26), ("INV-CTL", 34)]),
    ("v4.13", "x2apic-migrate"): (1177, []),
    ("v4.13", "nested"): (2110, [("INV-APIC", 51)]),
    ("v4.13", "smm"): (2090, [("INV-APIC", 33)]),
    ("v4.15", "migrate"): (2349, [("INV-APIC", 31)]),
    ("v4.15", "two-vcpus-migrate"): (213408, [("INV-APIC", 33)]),
    ("v4.15", "zap"): (3295, []),
    ("v4.15", "zap-anon"): (3643, [("INV-APIC", 29)]),
    ("v4.15", "swap"): (2771, [("INV-APIC", 32)]),
    ("v4.15", "back-to-back"): (12879, [("INV-APIC", 31)]),
    ("v4.15", "unrelated-overlap"): (113948, [("INV-APIC", 31)]),
    ("v4.15", "x2apic-switch"): (5133, [("INV-APIC", 31), ("INV-CTL", 39)]),
    ("v4.15", "x2apic-migrate"): (3114, []),
    ("v4.15", "nested"): (4621, [("INV-APIC", 52)]),
    ("v4.15", "smm"): (4631, [("INV-APIC", 38)]),
    ("v5.8", "migrate"): (1339, []),
    ("v5.8", "two-vcpus-migrate"): (78273, []),
    ("v5.8", "zap"): (5325, []),
    ("v5.8", "zap-anon"): (5709, []),
    ("v5.8", "swap"): (2324, []),
    ("v5.8", "back-to-back"): (7844, []),
    ("v5.8", "unrelated-overlap"): (63751, []),
    ("v5.8", "x2apic-switch"): (3621, []),
    ("v5.8", "x2apic-migrate"): (2135, []),
    ("v5.8", "nested"): (2567, []),
    ("v5.8", "smm"): (2907, []),
    ("v6.6", "migrate"): (2471, []),
    ("v6.6", "two-vcpus-migrate"): (297472, []),
    ("v6.6", "zap"): (4049, []),
    ("v6.6", "zap-anon"): (4073, []),
    ("v6.6", "swap"): (3545, []),
    ("v6.6", "back-to-back"): (20138, []),
    ("v6.6", "unrelated-overlap"): (126499, []),
    ("v6.6", "x2apic-switch"): (6491, []),
    ("v6.6", "x2apic-migrate"): (3270, []),
    ("v6.6", "nested"): (5424, []),
    ("v6.6", "smm"): (6982, []),
    ("v6.13", "migrate"): (2319, []),
    ("v6.13", "two-vcpus-migrate"): (254704, []),
    ("v6.13", "zap"): (3769, []),
    ("v6.13", "zap-anon"): (3793, []),
    ("v6.13", "swap"): (3301, []),
    ("v6.13", "back-to-back"): (18690, []),
    ("v6.13", "unrelated-overlap"): (120785, []),
    ("v6.13", "x2apic-switch"): (6144, []),
    ("v6.13", "x2apic-migrate"): (3194, []),
    ("v6.13", "nested"): (5214, []),
    ("v6.13", "smm"): (6544, []),
    ("pin-v6.5", "migrate"): (1990, []),
    ("pin-v6.5", "two-vcpus-migrate"): (187380, []),
    ("pin-v6.5", "zap"): (4049, []),
    ("pin-v6.5", "zap-anon"): (4073, []),
    ("pin-v6.5", "swap"): (2747, []),
    ("pin-v6.5", "back-to-back"): (10945, []),
    ("pin-v6.5", "unrelated-overlap"): (104154, []),
    ("pin-v6.5", "x2apic-switch"): (5471, []),
    ("pin-v6.5", "x2apic-migrate"): (2940, []),
    ("pin-v6.5", "nested"): (4911, []),
    ("pin-v6.5", "smm"): (5636, []),
    ("bail-immediately", "migrate"): (2859, [("INV-APIC", 34)]),
    ("bail-immediately", "two-vcpus-migrate"): (381334, [("INV-APIC", 37)]),
    ("bail-immediately", "zap"): (4623, []),
    ("bail-immediately", "zap-anon"): (4899, [("INV-APIC", 32)]),
    ("bail-immediately", "swap"): (4001, [("INV-APIC", 35)]),
    ("bail-immediately", "back-to-back"): (25579, [("INV-APIC", 34)]),
    ("bail-immediately", "unrelated-overlap"): (145236, [("INV-APIC", 34)]),
    ("bail-immediately", "x2apic-switch"): (7045, [("INV-APIC", 34)]),
    ("bail-immediately", "x2apic-migrate"): (3523, []),
    ("bail-immediately", "nested"): (5752, [("INV-APIC", 55)]),
    ("bail-immediately", "smm"): (7789, [("INV-APIC", 41)]),
    ("bail-and-rerequest", "migrate"): (2183, []),
    ("bail-and-rerequest", "two-vcpus-migrate"): (254492, []),
    ("bail-and-rerequest", "zap"): (3497, []),
    ("bail-and-rerequest", "zap-anon"): (3521, []),
    ("bail-and-rerequest", "swap"): (3137, []),
    ("bail-and-rerequest", "back-to-back"): (18550, []),
    ("bail-and-rerequest", "unrelated-overlap"): (111130, []),
    ("bail-and-rerequest", "x2apic-switch"): (5987, []),
    ("bail-and-rerequest", "x2apic-migrate"): (3126, []),
    ("bail-and-rerequest", "nested"): (5028, []),
    ("bail-and-rerequest", "smm"): (6518, []),
    ("skip-notifier-flush", "migrate"): (1737, [("LIVE-FLUSH", 14)]),
    ("skip-notifier-flush", "two-vcpus-migrate"): (143733, [("LIVE-FLUSH", 16)]),
    ("skip-notifier-flush", "zap"): (2791, []),
    ("skip-notifier-flush", "zap-anon"): (2791, [("LIVE-FLUSH", 9)]),
    ("skip-notifier-flush", "swap"): (2519, [("LIVE-FLUSH", 13)]),
    ("skip-notifier-flush", "back-to-back"): (14301, [("LIVE-FLUSH", 14)]),
    ("skip-notifier-flush", "unrelated-overlap"): (104376, [("LIVE-FLUSH", 14)]),
    ("skip-notifier-flush", "x2apic-switch"): (
        4739,
        [("LIVE-FLUSH", 14), ("INV-WAIT", 21), ("INV-NOFREE", 26)],
    ),
    ("skip-notifier-flush", "x2apic-migrate"): (
        1934,
        [("LIVE-FLUSH", 14), ("INV-WAIT", 20), ("INV-NOFREE", 25)],
    ),
    ("skip-notifier-flush", "nested"): (3729, [("LIVE-FLUSH", 14)]),
    ("skip-notifier-flush", "smm"): (5312, [("LIVE-FLUSH", 14)]),
}


def test_every_variant_and_default_scenario_is_covered() -> None:
    names = {v.name for v in all_variants()} - {"v6.4", "v6.5"}
    pairs = {(v, s.name) for v in names for s in default_scenarios()}
    assert pairs == set(EXPECTED)


def test_v58_is_the_v64_model() -> None:
    assert get_variant("v5.8").effective_overrides() == get_variant("v6.4").effective_overrides()


def _params() -> list[object]:
    out = []
    for (variant, scenario), expected in sorted(EXPECTED.items()):
        marks = [pytest.mark.slow] if scenario in BIG else []
        out.append(
            pytest.param(variant, scenario, expected, marks=marks, id=f"{variant}-{scenario}")
        )
    return out


@pytest.mark.parametrize(("variant", "scenario", "expected"), _params())
def test_verdict(variant: str, scenario: str, expected: tuple[int, list[tuple[str, int]]]) -> None:
    states, violations = expected
    result = check(build_model(get_variant(variant), get_scenario(scenario)))
    assert result.exhaustive
    got = [(v.prop, len(v.trace) if v.trace else -1) for v in result.violations]
    assert got == violations
    assert result.stats.states == states
