"""State counts of the full search against the symmetry and partial-order reductions.

Safety search (liveness off, which the reductions need), breadth-first, one process; the
figures are measured side by side in one run, so their ratios hold even on a busy machine.

    PYTHONPATH=src python bench/reductions.py            # demos, SPIN's model, KVM
    PYTHONPATH=src python bench/reductions.py --spin 2x1,2x2   # SPIN's model at 2x1, 2x2
    PYTHONPATH=src python bench/reductions.py --three    # also three vCPUs (long)

Each row's four searches run on the same model; the ratio is full states / reduced states.
The KVM and SPIN-model rows use their any-order variants (requests and kicks, and the SPIN
model's vCPU start, in any order), which make the vCPUs interchangeable; the pml's own
index order has a few percent fewer full states (its count is printed in the row's name).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kvmsim.demos import lost_update, philosophers
from kvmsim.engine import Model, Options, check
from kvmsim.machine import build_model
from kvmsim.scenarios import get_scenario
from kvmsim.variants import get_variant

MODES = (
    ("full", {}),
    ("symmetry", {"symmetry": True}),
    ("por", {"por": True}),
    ("both", {"symmetry": True, "por": True}),
)


def row(name: str, make: object) -> None:
    counts: list[int] = []
    cells = [f"{name:<40}"]
    verdicts = set()
    for _label, extra in MODES:
        model = make() if callable(make) else make
        assert isinstance(model, Model)
        start = time.perf_counter()
        result = check(model, Options(liveness=False, **extra))
        seconds = time.perf_counter() - start
        counts.append(result.stats.states)
        verdicts.add((result.verdict, tuple(sorted(result.violated()))))
        ratio = counts[0] / result.stats.states
        rate = result.stats.states / max(seconds, 1e-9)
        cells.append(f"{result.stats.states:>9,} {ratio:5.2f}x {seconds:7.1f}s {rate:>6,.0f}/s")
    same = "same verdict" if len(verdicts) == 1 else f"VERDICTS DIFFER: {verdicts}"
    print(" | ".join(cells) + f" | {same}", flush=True)


def kvm(variant: str, scenario: str) -> object:
    return lambda: build_model(get_variant(variant), get_scenario(scenario))


def spin_rows(configs: list[tuple[int, int]]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from spin_equivalent import build

    for nv, nops in configs:
        ordered = check(build(nv=nv, nops=nops), Options(liveness=False)).stats.states
        row(
            f"apic_v65 {nv}x{nops} (pml order: {ordered:,})",
            lambda nv=nv, nops=nops: build(nv=nv, nops=nops, any_order_kicks=True, symmetric=True),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--three", action="store_true", help="also three-vcpus-any-order")
    parser.add_argument("--variants", default="pinned,v4.13", help="comma-separated")
    parser.add_argument(
        "--spin", default="2x1", help="SPIN-model configurations VxOPS, comma-separated"
    )
    args = parser.parse_args()
    head = " | ".join(f"{label:>33}" for label, _ in MODES)
    print(f"{'model':<40} | {head} | check")
    row("lost-update (demo)", lost_update)
    row("philosophers (demo)", philosophers)
    try:
        configs = [tuple(int(n) for n in c.split("x")) for c in args.spin.split(",")]
        assert all(len(c) == 2 for c in configs)
    except (ValueError, AssertionError):
        parser.error(f"--spin wants configurations like 2x1,2x2, got {args.spin!r}")
    spin_rows([(c[0], c[1]) for c in configs] + ([(3, 1)] if args.three else []))
    scenarios = ["two-vcpus-any-order"] + (["three-vcpus-any-order"] if args.three else [])
    for scenario in scenarios:
        for variant in args.variants.split(","):
            row(f"{variant} / {scenario}", kvm(variant, scenario))


if __name__ == "__main__":
    main()
