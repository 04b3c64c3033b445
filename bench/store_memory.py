"""Bytes per stored state of breadth-first search's two stores, side by side.

    PYTHONPATH=src python bench/store_memory.py [N K] [--max-states M]

checks ``counters(N, K)`` (tests/engine/bench.py: N threads each adding K times to a shared
counter, read and write in separate steps; default 3 x 6, about a million states) once with
each store, each in a fresh process so that one run's memory does not hide the other's. For
each it prints the states, the growth of the process's peak resident memory over the search
divided by the states (everything: the store, the queue of states still to expand, Python's
own overhead), the store's own size per state where the store can say it (the fingerprint
store's arrays), the time, and the rate. Both runs must find the same states and transitions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {tests!r})
from engine.bench import counters
from kvmsim.engine import Options, check
from kvmsim.engine import explore
from kvmsim.engine.memory import resident_bytes

n, k, store, max_states = {n}, {k}, {store!r}, {max_states}
model = counters(n, k)
sizes = []
real = explore._note_store

def note_store(s, g):  # the store's own size, read where the search reports it
    sizes.append(g.nbytes() if g.kind == "fingerprint" else None)
    real(s, g)

explore._note_store = note_store
check(counters(1, 1))  # imports and first-use allocations done before measuring
before = resident_bytes()
start = time.perf_counter()
r = check(model, Options(store=store, liveness=False, max_states=max_states))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(dict(
    states=r.stats.states, transitions=r.stats.transitions, seconds=seconds,
    growth=peak - before, store_bytes=sizes[-1], coverage=r.coverage,
    collision=r.collision_probability,
)))
"""


def run(n: int, k: int, store: str, max_states: int | None) -> dict[str, Any]:
    code = CHILD.format(tests=str(ROOT / "tests"), n=n, k=k, store=store, max_states=max_states)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=3)
    parser.add_argument("k", type=int, nargs="?", default=6)
    parser.add_argument("--max-states", type=int, default=None)
    args = parser.parse_args()
    print(f"model counters({args.n}, {args.k}), liveness off, one fresh process per store")
    results = {}
    for store in ("full", "fingerprint"):
        r = results[store] = run(args.n, args.k, store, args.max_states)
        states, growth, seconds = r["states"], r["growth"], r["seconds"]
        own = f"{r['store_bytes'] / states:6.1f}" if r["store_bytes"] is not None else "     -"
        print(
            f"{store:12} {states:>10,} states {r['transitions']:>11,} transitions "
            f"| peak RSS growth {growth / states:7.1f} bytes/state "
            f"| store itself {own} bytes/state "
            f"| {seconds:7.1f} s, {states / seconds:8,.0f} states/s | {r['coverage']}"
        )
    full, fp = results["full"], results["fingerprint"]
    assert (full["states"], full["transitions"]) == (fp["states"], fp["transitions"])
    print(f"fingerprint store: collision probability bound {fp['collision']:.1g}")
    print(f"peak memory growth, full / fingerprint: {full['growth'] / max(1, fp['growth']):.1f}x")


if __name__ == "__main__":
    main()
