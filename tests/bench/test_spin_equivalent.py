"""kvmsim against SPIN on the same model: bench/apic_v65.pml and bench/spin_equivalent.py.

Both checkers enumerate the same guarded commands, so kvmsim's distinct states and
transitions must equal pan's (``-DNOREDUCE -DSAFETY``) up to the differences the pml header
and spin_equivalent.expected_counts spell out (pan's root and atomic init, the watchdog's
extra state per terminal state). Each configuration is small enough for a few seconds.
Skipped when spin or gcc is missing (``apt-get install spin``); CI installs spin.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kvmsim.engine import Options, Result, check

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from spin_equivalent import Params, build_params, expected_counts  # noqa: E402
from spin_run import PML, PanResult, missing_tools, run_pan  # noqa: E402

needs_spin = pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))

CONFIGS = [
    Params(nv=1),
    Params(nv=1, mode_switch=True),
    Params(nv=1, nops=2, mig_korder=True),
    Params(nv=1, steady=True, opkind=1),
    Params(nv=1, nops=2, acc=0),
    Params(nv=1, uaf_check=False, notvirt_check=False, virt="always"),
    Params(nv=2, acc=1, virt="never", opkind=2),
    Params(nv=2, acc=0, opkind=1, virt="always"),
]

# The mutants as pml patches: the guard of the retry check, replaced.
RELOAD_RETRY = ":: in_prog > 0 || seq != mseq ->"
FAULT_RETRY = ":: in_prog == 0 && seq == mseq ->"


def kvmsim(p: Params) -> Result:
    return check(build_params(p), Options(liveness=False, collect_terminal=True))


def pan(p: Params, *extra: str, text: str | None = None) -> PanResult:
    out = run_pan(p.spin_defines() + list(extra), pml_text=text, optimize="-O0")
    assert out.complete, out.output
    return out


def assert_same_space(p: Params, res: Result, spin: PanResult, terminal: int = 0) -> None:
    assert res.exhaustive
    want = expected_counts(p, spin.states, spin.transitions, terminal)
    assert (res.stats.states, res.stats.transitions) == want, p.label()


@needs_spin
@pytest.mark.parametrize("p", CONFIGS, ids=lambda p: p.label())
def test_same_states_and_transitions_as_spin(p: Params) -> None:
    res = kvmsim(p)
    spin = pan(p, "-DNO_WATCHDOG")
    assert_same_space(p, res, spin)
    assert res.holds and spin.errors == 0  # the v6.5 protocol is correct in both


@needs_spin
def test_watchdog_states_are_kvmsims_terminal_states() -> None:
    """The watchdog adds one state per terminal state; kvmsim's deadlock check passes
    exactly where the watchdog's assertion does."""
    p = Params(nv=2, acc=1, virt="never", opkind=2)
    res = kvmsim(p)
    with_watchdog, without = pan(p), pan(p, "-DNO_WATCHDOG")
    terminal = with_watchdog.states - without.states
    assert terminal == len(res.terminal) > 0
    assert with_watchdog.transitions - without.transitions == terminal
    assert_same_space(p, res, with_watchdog, terminal)
    assert with_watchdog.errors == 0 and "deadlock" not in res.violated()


@needs_spin
@pytest.mark.parametrize(
    ("p", "patch", "prop", "check_off"),
    [
        (Params(nv=1, reload_retry=False), RELOAD_RETRY, "not virtualized", "notvirt_check"),
        (
            Params(nv=2, acc=1, virt="never", opkind=2, fault_retry=False),
            FAULT_RETRY,
            "use-after-free",
            "uaf_check",
        ),
    ],
    ids=["reload without retry", "page fault without retry"],
)
def test_mutants_violate_in_both(p: Params, patch: str, prop: str, check_off: str) -> None:
    """A retry check removed from both models: both find the violation (the same one: with
    that check off both hold), on the same state space."""
    text = PML.read_text()
    assert patch in text
    text = text.replace(patch, ":: false ->" if patch == RELOAD_RETRY else ":: true ->")
    res = kvmsim(p)
    spin = pan(p, "-DNO_WATCHDOG", text=text)
    assert_same_space(p, res, spin)
    assert prop in res.violated() and spin.errors > 0
    last = res.violation(prop).trace
    assert last is not None and last.steps[-1].label == "guest access to the APIC page"

    off = Params(**{**p.__dict__, check_off: False})
    flag = "-DNO_UAF_CHECK" if check_off == "uaf_check" else "-DNO_NOTVIRT_CHECK"
    res_off, spin_off = kvmsim(off), pan(off, "-DNO_WATCHDOG", flag, text=text)
    assert_same_space(off, res_off, spin_off)
    assert res_off.holds and spin_off.errors == 0


@pytest.mark.parametrize(
    "p",
    [
        Params(nv=2, acc=1, virt="never", opkind=2),
        Params(nv=2, acc=1, virt="never", opkind=2, fault_retry=False),
    ],
    ids=lambda p: p.label(),
)
def test_any_order_kicks_over_approximates(p: Params) -> None:
    """Kicking the vCPUs in any order keeps every behaviour of the pml's index order (same
    verdicts, same terminal worlds) and adds a few states; it has no pml equivalent."""
    ordered = kvmsim(p)
    anyorder = kvmsim(Params(**{**p.__dict__, "any_order_kicks": True}))
    assert ordered.violated() == anyorder.violated()
    assert ordered.stats.states < anyorder.stats.states < 1.2 * ordered.stats.states

    def world(t: dict[str, object]) -> tuple[tuple[str, object], ...]:
        return tuple(sorted((k, v) for k, v in t.items() if k != "cpus"))  # refs, not values

    ends = {world(t) for t in anyorder.terminal}
    assert all(world(t) in ends for t in ordered.terminal)
    with pytest.raises(ValueError, match="no pml equivalent"):
        Params(any_order_kicks=True).spin_defines()


def test_one_built_model_serves_two_searches_in_one_process() -> None:
    """The host reaches the vCPUs through the world, not through a list the model's setup
    fills: two partitions built from one model object in one process each step their own
    vCPUs, and the search counts what one process counts."""
    from kvmsim.engine.inline import InlineCluster
    from kvmsim.engine.parallel_bfs import partitioned_check

    model = build_params(Params(nv=2, acc=1, any_order_kicks=True, symmetric=True))
    one = check(model, Options(liveness=False))
    two = partitioned_check(
        model, Options(workers=2, liveness=False), lambda spec: InlineCluster([model] * 2, spec)
    )
    assert (two.stats.states, two.stats.transitions) == (one.stats.states, one.stats.transitions)
