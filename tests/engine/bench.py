"""Bigger models for measuring the engine's speed: ``python -m tests.engine.bench [bfs dfs]``.

``filter_lock(n)`` is Peterson's filter lock for n threads, looping forever (766 states for
3 threads, 15,071 for 4). ``counters(n, k)`` has n threads each adding to a shared counter
k times, read and write in separate steps (59,378 states for 3x4, 220,914 for 3x5).
"""

from __future__ import annotations

import sys
import time

from kvmsim.demos import peterson
from kvmsim.engine import Model, Options, Setup, Struct, await_, check

from .support import Steps


class Filter(Struct):
    level: tuple[int, ...] = ()
    victim: tuple[int, ...] = ()
    in_critical: int = 0


def _with(values: tuple[int, ...], index: int, value: int) -> tuple[int, ...]:
    return values[:index] + (value,) + values[index + 1 :]


def filter_thread(w: Filter, me: int, n: int) -> Steps:
    while True:
        for lvl in range(1, n):
            w.level = _with(w.level, me, lvl)
            yield "level[me] = L"
            w.victim = _with(w.victim, lvl, me)
            yield "victim[L] = me"
            await_(w.victim[lvl] != me or all(w.level[k] < lvl for k in range(n) if k != me))
            yield "no one ahead, or not the victim"
        w.in_critical += 1
        yield "enter critical section"
        w.in_critical -= 1
        yield "leave critical section"
        w.level = _with(w.level, me, 0)
        yield "level[me] = 0"


def filter_lock(n: int) -> Model:
    model = Model(f"filter-lock-{n}", f"Peterson's filter lock, {n} threads", expect="holds")

    @model.setup
    def setup(s: Setup) -> Filter:
        w = Filter(level=(0,) * n, victim=(0,) * n)
        for i in range(n):
            s.actor(f"T{i}", filter_thread, w, i, n)
        return w

    @model.invariant("mutual exclusion")
    def mutex(w: Filter) -> bool:
        return w.in_critical <= 1

    return model


class Shared(Struct):
    value: int = 0


def adder(w: Shared, times: int) -> Steps:
    for _ in range(times):
        seen = w.value
        yield "read"
        w.value = seen + 1
        yield "write"


def counters(n: int, times: int) -> Model:
    model = Model(f"counters-{n}x{times}")

    @model.setup
    def setup(s: Setup) -> Shared:
        w = Shared()
        for i in range(n):
            s.actor(f"T{i}", adder, w, times)
        return w

    return model


def measure(model: Model, mode: str = "bfs", repeat: int = 1) -> tuple[int, int, float]:
    """(states, transitions, best states/second over repeat runs)."""
    best = 0.0
    states = transitions = 0
    for _ in range(repeat):
        start = time.perf_counter()
        r = check(model, Options(mode=mode))
        elapsed = time.perf_counter() - start
        assert r.holds, r.violated()
        states, transitions = r.stats.states, r.stats.transitions
        best = max(best, states / elapsed)
    return states, transitions, best


def main() -> None:
    models = [
        (peterson, 200),
        (filter_lock(3), 20),
        (filter_lock(4), 3),
        (counters(3, 4), 3),
        (counters(3, 5), 1),
    ]
    for model, repeat in models:
        for mode in sys.argv[1:] or ["bfs"]:
            states, transitions, rate = measure(model, mode, repeat)
            print(
                f"{model.name:16} {mode:4} {states:8} states {transitions:9} transitions "
                f"{rate:10.0f} states/s"
            )


if __name__ == "__main__":
    main()
