"""Speed-up of the partitioned breadth-first search, measured side by side in one run.

    python bench/parallel.py [--model counters:3x7] [--workers 1,2] [--repeat 1] [--no-liveness]
                             [--max-depth N] [--free-exchange]

Runs the same exhaustive check (default options) as the one-process search, then as the
partitioned search with each number of workers, and prints for each:
states, transitions, seconds, states per second, and the speed-up over one worker and over
the one-process search, and the CPU seconds of the busiest process (a worker, or the one
process). Every run must agree with the one-process search on the states and
transitions, or the script says so and exits with status 1. The load average before and
after is printed too: the machine's other work slows the runs with more workers most.
``--free-exchange`` also runs the partitions one after another in this process, handing the
batches over as lists: each partition's CPU time then shows the speed-up N workers could
reach if moving states between processes cost nothing.

Models: ``counters:NxK`` (N threads each adding K times to a shared counter, read and write
in separate steps; 3x6 has 668,500 states, 3x7 1,729,400), ``filter:N`` (Peterson's filter lock,
N threads), ``spin:NVxNOPS`` (the SPIN model's kvmsim form, bench/spin_equivalent.py, as
vs_spin.py runs it: 2x2 has 1,719,633 states), ``kvm:VARIANT/SCENARIO`` (the KVM model;
``kvm:v6.5/three-vcpus-migrate`` with ``--max-depth 33`` has 1,005,536 states).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace

from kvmsim.engine import Model, Options, Result, check
from kvmsim.engine.inline import InlineCluster
from kvmsim.engine.parallel_bfs import partitioned_check
from kvmsim.engine.partition import SearchSpec


def model_named(spec: str) -> Model:
    kind, _, arg = spec.partition(":")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from tests.engine.bench import counters, filter_lock  # the engine benchmark's models

    if kind == "counters":
        n, k = arg.split("x")
        return counters(int(n), int(k))
    if kind == "filter":
        return filter_lock(int(arg))
    if kind == "spin":  # the SPIN model's kvmsim form (bench/spin_equivalent.py), NVxNOPS
        sys.path.insert(0, os.path.dirname(__file__))
        from spin_equivalent import build

        nv, nops = arg.split("x")
        return build(nv=int(nv), nops=int(nops))
    if kind == "kvm":
        from kvmsim.machine import build_model
        from kvmsim.scenarios import get_scenario
        from kvmsim.variants import get_variant

        variant, scenario = arg.split("/")
        return build_model(get_variant(variant), get_scenario(scenario))
    raise SystemExit(
        f"unknown model {spec!r} (counters:NxK, filter:N, spin:NVxNOPS, kvm:VARIANT/SCENARIO)"
    )


def busiest_cpu(result: Result) -> float | None:
    """The CPU seconds of the busiest worker, from the partitioned search's note."""
    for note in result.notes:
        m = re.search(r"CPU seconds ([\d., ]+)\)", note)
        if m:
            return max(float(x) for x in m.group(1).split(", "))
    return None


def timed(run: Callable[[], Result]) -> tuple[Result, float, float]:
    """The result, the wall-clock seconds and this process's CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - start, time.process_time() - cpu


def free_exchange(spec: str, n: int, opt: Options) -> tuple[int, list[float]]:
    """The partitioned search with n partitions in this one process (``InlineCluster``: the
    claims and grants handed over as Python lists; no pickling, no pipes, no waiting):
    (states, each partition's CPU seconds). The busiest partition's time bounds the speed-up
    that n workers could reach if the exchanges between processes cost nothing."""
    clusters: list[InlineCluster] = []

    def cluster_for(search: SearchSpec) -> InlineCluster:
        # One model each: a model may hold state.
        clusters.append(InlineCluster([model_named(spec) for _ in range(n)], search))
        return clusters[0]

    result = partitioned_check(model_named(spec), replace(opt, workers=n), cluster_for)
    return result.stats.states, clusters[0].cpu


def busiest(result: Result, own_cpu: float) -> float:
    """CPU seconds of the busiest process: a worker, or this process for one process."""
    cpu = busiest_cpu(result)
    return own_cpu if cpu is None else cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="counters:3x7")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of runs, each one's best time kept"
    )
    parser.add_argument(
        "--no-liveness", action="store_true", help="safety only (as vs_spin.py checks)"
    )
    parser.add_argument(
        "--max-depth",
        type=int,
        default=None,
        help="explore no deeper than N steps (the same bound in every run)",
    )
    parser.add_argument(
        "--free-exchange",
        action="store_true",
        help="also run the partitions in one process, exchange free: the bound on speed-up",
    )
    args = parser.parse_args()
    model = model_named(args.model)
    opt = Options(liveness=not args.no_liveness, max_depth=args.max_depth)
    counts = [int(w) for w in args.workers.split(",")]
    load = os.getloadavg()
    print(f"model {model.name}; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{os.cpu_count()} CPUs; forked workers")
    runs: list[tuple[str, Callable[[], Result]]] = [("one process", lambda: check(model, opt))]
    for n in counts:
        runs.append(
            (
                f"{n} worker{'s' if n > 1 else ''}",
                lambda n=n: partitioned_check(model, replace(opt, workers=n)),
            )
        )
    # Repeats go round (one process, 1 worker, 2 workers, one process, ...), so that a
    # burst of other work on the machine does not fall on one kind of run only.
    best: dict[str, tuple[Result, float, float]] = {}
    for _ in range(args.repeat):
        for label, run in runs:
            got = timed(run)
            print(f"  ran {label}: {got[1]:.1f} s, CPU {got[2]:.1f} s", file=sys.stderr, flush=True)
            if label not in best or got[1] < best[label][1]:
                best[label] = got
    rows = [(label, *best[label]) for label, _ in runs]
    plain = rows[0]
    one = next((r for r in rows if r[0] == "1 worker"), None)
    print(
        f"{'search':<12} {'states':>10} {'transitions':>12} {'seconds':>8} {'states/s':>9} "
        f"{'vs 1 worker':>11} {'vs one process':>14} {'busiest CPU s':>13}"
    )
    agree = True
    for label, result, seconds, own in rows:
        vs_one = f"{one[2] / seconds:.2f}x" if one is not None else "-"
        cpu = busiest(result, own)
        print(
            f"{label:<12} {result.stats.states:>10,} {result.stats.transitions:>12,} "
            f"{seconds:>8.1f} {result.stats.states / seconds:>9,.0f} {vs_one:>11} "
            f"{plain[2] / seconds:>13.2f}x {cpu:>13.1f}"
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
    if two is not None:
        c2 = busiest(two[1], two[3])
        for name, base in (("1 worker", one), ("the one-process search", plain)):
            if base is None:
                continue
            c = busiest(base[1], base[3])
            print(
                f"speed-up with 2 workers over {name}: {base[2] / two[2]:.2f}x (wall clock), "
                f"{c / c2:.2f}x on idle cores (CPU time of the busiest process)"
            )
    if args.free_exchange:
        cpus = {}
        for n in sorted({1, *counts}):
            states, cpu = free_exchange(args.model, n, opt)
            cpus[n] = max(cpu)
            agree &= states == plain[1].stats.states
            shares = ", ".join(f"{c:.1f}" for c in cpu)
            print(f"free exchange, {n} partition(s): {states:,} states, CPU s {shares}")
        for n in counts:
            if n > 1:
                print(
                    f"bound on the speed-up of {n} workers over 1 with free exchange: "
                    f"{cpus[1] / cpus[n]:.2f}x (the busiest partition's CPU time)"
                )
    if not agree:
        print("MISMATCH: a parallel run disagrees with the one-process search")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
