"""Symmetry reduction's cost per state: the SPIN model with and without --symmetry.

    python bench/symmetry_speed.py                         # 2x1 and 2x2, this tree
    python bench/symmetry_speed.py --configs 2x1 --ab /work/main/src --rounds 3
    python bench/symmetry_speed.py --configs 2x2 --max-states 300000   # the first 300 k states

Runs the symmetric form of the SPIN benchmark model (bench/spin_equivalent.py,
``any_order_kicks=True, symmetric=True``) breadth-first with liveness off, once with the full
search and once with ``symmetry=True``, each in its own interpreter (PYTHONPATH selects the
engine), and prints states, CPU seconds and states per second side by side. With --ab the
runs of this tree and of OTHER_SRC alternate, so that other load on the machine hits both
alike; figures are medians over --rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from engine_speed import run_in  # bench/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def measure(config: str, symmetry: bool, store: str, cap: int | None) -> dict[str, float]:
    """One search in this process (the engine on sys.path)."""
    from kvmsim.engine import Options, check

    sys.path.insert(0, str(HERE))
    from spin_equivalent import build

    nv, nops = (int(x) for x in config.split("x"))
    model = build(nv=nv, nops=nops, any_order_kicks=True, symmetric=True)
    options = Options(liveness=False, symmetry=symmetry, store=store, max_states=cap)
    start, wall = time.process_time(), time.perf_counter()
    res = check(model, options)
    return {
        "states": res.stats.states,
        "transitions": res.stats.transitions,
        "verdict": res.verdict,
        "cpu": time.process_time() - start,
        "wall": time.perf_counter() - wall,
    }


def run(src: Path, config: str, symmetry: bool, store: str, cap: int | None) -> dict[str, float]:
    argv = ["--one", config, "--store", store]
    argv += ["--max-states", str(cap)] if cap else []
    return run_in(src, __file__, *argv, *(["--symmetry"] if symmetry else []))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--symmetry", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--configs", default="2x1,2x2", help="NVxNOPS, comma-separated")
    ap.add_argument("--ab", type=Path, help="another tree's src directory to compare with")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--store", default="full", choices=("full", "fingerprint"))
    ap.add_argument("--max-states", type=int, help="stop each search after this many states")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.symmetry, args.store, args.max_states)))
        return 0
    trees = [("this", SRC)] + ([("other", args.ab)] if args.ab else [])
    print(
        f"{'config':<6} {'tree':<5} {'search':<8} {'states':>10} {'CPU s':>8} {'wall s':>8} "
        f"{'states/s':>9}",
        flush=True,
    )
    for config in args.configs.split(","):
        got: dict[tuple[str, bool], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for label, src in trees:
                for sym in (False, True):
                    got.setdefault((label, sym), []).append(
                        run(src, config, sym, args.store, args.max_states)
                    )
        for (label, sym), runs in got.items():
            cpu = statistics.median(r["cpu"] for r in runs)
            wall = statistics.median(r["wall"] for r in runs)
            states = runs[0]["states"]
            print(
                f"{config:<6} {label:<5} {'symmetry' if sym else 'full':<8} {states:>10,} "
                f"{cpu:8.1f} {wall:8.1f} {states / cpu:9,.0f}",
                flush=True,
            )
        for label, _src in trees:
            full = statistics.median(r["cpu"] for r in got[(label, False)])
            sym = statistics.median(r["cpu"] for r in got[(label, True)])
            print(f"{config:<6} {label:<5} symmetry/full CPU time: {sym / full:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
