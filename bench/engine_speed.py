"""Engine speed on fixed workloads, for before/after comparisons of engine changes.

    python bench/engine_speed.py                 # every workload, once
    python bench/engine_speed.py --ab OTHER_SRC  # alternate runs of this tree's engine and
                                                 # the one under OTHER_SRC (e.g. a copy of main)

Each measurement runs in its own interpreter (PYTHONPATH decides which engine) and prints
states, transitions and the search's CPU seconds; --ab alternates the two trees so that
other load on the machine hits both alike, and prints the ratio of the median times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WORKLOADS = ["spin-2x1-acc1", "spin-2x1", "kvm-back-to-back", "kvm-smm"]


def measure(workload: str) -> dict[str, float]:
    """Run one workload in this process (the engine on sys.path)."""
    from kvmsim.engine import Options, check

    if workload.startswith("spin-"):
        sys.path.insert(0, str(HERE))
        from spin_equivalent import build

        nv, nops = (int(x) for x in workload.split("-")[1].split("x"))
        model = build(nv=nv, nops=nops, acc=1 if workload.endswith("acc1") else 2)
        options = Options(liveness=False)
    else:
        from kvmsim.machine import build_model
        from kvmsim.scenarios import get_scenario
        from kvmsim.variants import get_variant

        model = build_model(get_variant("v6.5"), get_scenario(workload.removeprefix("kvm-")))
        options = Options()
    start = time.process_time()
    res = check(model, options)
    return {
        "states": res.stats.states,
        "transitions": res.stats.transitions,
        "seconds": time.process_time() - start,  # CPU time: less noisy on a shared machine
    }


def run_in(src: Path, script: str, *argv: str) -> dict[str, float]:
    """Run script in a fresh interpreter with the engine under src; its last line, as JSON."""
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, script, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(src: Path, workload: str) -> dict[str, float]:
    return run_in(src, __file__, "--one", workload)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--ab", type=Path, help="another tree's src directory to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    for w in args.workloads.split(","):
        if args.ab is None:
            r = run(SRC, w)
            print(
                f"{w:<18} {r['states']:>9,} states {r['transitions']:>10,} transitions "
                f"{r['seconds']:7.2f} s"
            )
            continue
        mine, other = [], []
        for _ in range(args.rounds):
            a, b = run(SRC, w), run(args.ab, w)
            if (a["states"], a["transitions"]) != (b["states"], b["transitions"]):
                print(f"{w}: DIFFERENT COUNTS: {a} vs {b}")
                return 1
            mine.append(a["seconds"])
            other.append(b["seconds"])
        m, o = statistics.median(mine), statistics.median(other)
        print(
            f"{w:<18} {a['states']:>9,} states  other {o:6.2f} s  this {m:6.2f} s  "
            f"speed-up {o / m:4.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
