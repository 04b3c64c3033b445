"""Speed-up of the partitioned breadth-first search, measured side by side in one run.

    python bench/parallel.py [--model counters:3x7] [--workers 1,2] [--repeat 1]

Runs the same exhaustive check (default options) as the one-process search, then as the
partitioned search with each number of workers, and prints for each:
states, transitions, seconds, states per second, and the speed-up over one worker and over
the one-process search. Every run must agree with the one-process search on the states and
transitions, or the script says so and exits with status 1. The load average before and
after is printed too: the machine's other work slows the runs with more workers most.

Models: ``counters:NxK`` (N threads each adding K times to a shared counter, read and write
in separate steps; 3x7 has about a million states), ``filter:N`` (Peterson's filter lock,
N threads), ``kvm:VARIANT/SCENARIO`` (the KVM model).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable

from kvmsim.engine import Model, Options, Result, check
from kvmsim.engine.parallel_bfs import partitioned_check


def model_named(spec: str) -> Model:
    kind, _, arg = spec.partition(":")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from tests.engine.bench import counters, filter_lock  # the engine benchmark's models

    if kind == "counters":
        n, k = arg.split("x")
        return counters(int(n), int(k))
    if kind == "filter":
        return filter_lock(int(arg))
    if kind == "kvm":
        from kvmsim.machine import build_model
        from kvmsim.scenarios import get_scenario
        from kvmsim.variants import get_variant

        variant, scenario = arg.split("/")
        return build_model(get_variant(variant), get_scenario(scenario))
    raise SystemExit(f"unknown model {spec!r} (counters:NxK, filter:N, kvm:VARIANT/SCENARIO)")


def busiest_cpu(result: Result) -> float | None:
    """The CPU seconds of the busiest worker, from the partitioned search's note."""
    for note in result.notes:
        m = re.search(r"CPU seconds ([\d., ]+)\)", note)
        if m:
            return max(float(x) for x in m.group(1).split(", "))
    return None


def timed(run: Callable[[], Result]) -> tuple[Result, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="counters:3x7")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, best time kept")
    args = parser.parse_args()
    model = model_named(args.model)
    counts = [int(w) for w in args.workers.split(",")]
    load = os.getloadavg()
    print(f"model {model.name}; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{os.cpu_count()} CPUs; forked workers")
    rows: list[tuple[str, Result, float]] = []
    runs: list[tuple[str, Callable[[], Result]]] = [
        ("one process", lambda: check(model, Options()))
    ]
    for n in counts:
        runs.append(
            (
                f"{n} worker{'s' if n > 1 else ''}",
                lambda n=n: partitioned_check(model, Options(workers=n)),
            )
        )
    for label, run in runs:
        best: tuple[Result, float] | None = None
        for _ in range(args.repeat):
            got = timed(run)
            if best is None or got[1] < best[1]:
                best = got
        assert best is not None
        rows.append((label, *best))
        print(f"  ran {label}: {best[1]:.1f} s", file=sys.stderr, flush=True)
    plain = rows[0]
    one = next((r for r in rows if r[0] == "1 worker"), None)
    print(
        f"{'search':<12} {'states':>10} {'transitions':>12} {'seconds':>8} {'states/s':>9} "
        f"{'vs 1 worker':>11} {'vs one process':>14} {'busiest CPU s':>13}"
    )
    agree = True
    for label, result, seconds in rows:
        vs_one = f"{one[2] / seconds:.2f}x" if one is not None else "-"
        cpu = busiest_cpu(result)
        print(
            f"{label:<12} {result.stats.states:>10,} {result.stats.transitions:>12,} "
            f"{seconds:>8.1f} {result.stats.states / seconds:>9,.0f} {vs_one:>11} "
            f"{plain[2] / seconds:>13.2f}x {'-' if cpu is None else f'{cpu:.1f}':>13}"
        )
        same = (result.stats.states, result.stats.transitions, result.verdict) == (
            plain[1].stats.states,
            plain[1].stats.transitions,
            plain[1].verdict,
        )
        agree &= same
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    two = next((r for r in rows if r[0] == "2 workers"), None)
    if one is not None and two is not None:
        print(f"speed-up with 2 workers over 1: {one[2] / two[2]:.2f}x (wall clock)")
        c1, c2 = busiest_cpu(one[1]), busiest_cpu(two[1])
        if c1 and c2:
            print(
                "speed-up with 2 workers over 1 on idle cores (CPU time of the busiest "
                f"worker): {c1 / c2:.2f}x"
            )
    if not agree:
        print("MISMATCH: a parallel run disagrees with the one-process search")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
