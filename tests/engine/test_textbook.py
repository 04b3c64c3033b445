"""The engine against textbook protocols whose answers are known independently.

Each protocol is also enumerated here by a plain-Python breadth-first search over explicit
tuples, written from the protocol's description and sharing no code with the engine. The
engine's state space must be exactly that one: same number of states and transitions, the
same states once the engine's (frame, world) pairs are read back as tuples, the same shortest
counterexamples.

A thread's position in the reference models is the number of the last ``yield`` it executed
(0 before its first step); that is what the engine stores, since a frame resumes after a
yield. So a thread that went round Peterson's loop once is at position 6 ("flag[me] = false"),
which is not position 0 although the next step does the same thing. Locals that are dead at a
position are dropped by the engine, and are ``None`` in the reference states.
"""

from __future__ import annotations

import inspect
import re
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kvmsim.demos import (
    DEMOS,
    broken_lock,
    broken_lock_thread,
    clear_flag,
    incrementer,
    lost_update,
    peterson,
    peterson_thread,
    philosopher,
    philosophers,
    philosophers_ordered,
    retry,
    retry_loop,
    retry_starved,
)
from kvmsim.engine import Model, Options, Result, Violation, check
from kvmsim.engine.compiler import UNSET, compile_actor
from kvmsim.engine.system import State, System

FINISHED = -1

# -- the independent enumerator ------------------------------------------------------------

Ref = tuple[Any, ...]
Next = Callable[[Ref], Iterator[tuple[int, Ref]]]  # state -> (actor, successor) per step


class Space:
    """A reference state space, by breadth-first search from init."""

    def __init__(self, init: Ref, successors: Next) -> None:
        self.depth: dict[Ref, int] = {init: 0}
        self.parent: dict[Ref, tuple[Ref, int] | None] = {init: None}
        self.transitions = 0
        self.stuck: list[Ref] = []
        self.successors = successors
        queue = deque([init])
        while queue:
            s = queue.popleft()
            moved = False
            for actor, t in successors(s):
                moved = True
                self.transitions += 1
                if t not in self.depth:
                    self.depth[t] = self.depth[s] + 1
                    self.parent[t] = (s, actor)
                    queue.append(t)
            if not moved:
                self.stuck.append(s)

    @property
    def states(self) -> set[Ref]:
        return set(self.depth)

    def distance(self, bad: Callable[[Ref], bool]) -> int | None:
        """Length of a shortest path to a state satisfying bad."""
        hits = [d for s, d in self.depth.items() if bad(s)]
        return min(hits) if hits else None

    def run(self, init: Ref, actors: list[int]) -> list[Ref]:
        """Replay a schedule (a counterexample's actors) in the reference model."""
        out = [init]
        for actor in actors:
            nexts = [t for a, t in self.successors(out[-1]) if a == actor]
            assert len(nexts) == 1, f"actor {actor} cannot move in {out[-1]}"
            out.append(nexts[0])
        return out


def replace(values: tuple[Any, ...], i: int, value: Any) -> tuple[Any, ...]:
    return values[:i] + (value,) + values[i + 1 :]


# Peterson, two threads. State: (pc0, pc1, flag0, flag1, turn, in_critical).
# pc: 0 start, 1 flag set, 2 turn set, 3 past the await, 4 entered, 5 left, 6 flag cleared.


def peterson_next(s: Ref) -> Iterator[tuple[int, Ref]]:
    pcs, flags, turn, crit = s[0:2], s[2:4], s[4], s[5]
    for me in (0, 1):
        other = 1 - me
        pc = pcs[me]
        f, t, c = flags, turn, crit
        if pc in (0, 6):
            f, nxt = replace(flags, me, True), 1
        elif pc == 1:
            t, nxt = other, 2
        elif pc == 2:
            if flags[other] and turn == other:
                continue  # waits
            nxt = 3
        elif pc == 3:
            c, nxt = crit + 1, 4
        elif pc == 4:
            c, nxt = crit - 1, 5
        else:  # pc == 5
            f, nxt = replace(flags, me, False), 6
        yield me, (*replace(pcs, me, nxt), *f, t, c)


PETERSON_INIT: Ref = (0, 0, False, False, 0, 0)

# Broken lock. State: (pc0, pc1, locked, in_critical).
# pc: 0 start, 1 tested, 2 set, 3 entered, 4 unlocked, FINISHED.


def broken_lock_next(s: Ref) -> Iterator[tuple[int, Ref]]:
    pcs, locked, crit = s[0:2], s[2], s[3]
    for me in (0, 1):
        pc = pcs[me]
        lk, c = locked, crit
        if pc == 0:
            if locked:
                continue
            nxt = 1
        elif pc == 1:
            lk, nxt = True, 2
        elif pc == 2:
            c, nxt = crit + 1, 3
        elif pc == 3:
            c, lk, nxt = crit - 1, False, 4
        elif pc == 4:
            nxt = FINISHED
        else:
            continue
        yield me, (*replace(pcs, me, nxt), lk, c)


BROKEN_LOCK_INIT: Ref = (0, 0, False, 0)

# Lost update. State: (pc0, pc1, seen0, seen1, value, done); seen is None where dead.
# pc: 0 start, 1 read, 2 added, 3 written, FINISHED.


def lost_update_next(s: Ref) -> Iterator[tuple[int, Ref]]:
    pcs, seen, value, done = s[0:2], s[2:4], s[4], s[5]
    for me in (0, 1):
        pc = pcs[me]
        sn, v, d = seen, value, done
        if pc == 0:
            sn, nxt = replace(seen, me, value), 1
        elif pc == 1:
            sn, nxt = replace(seen, me, seen[me] + 1), 2
        elif pc == 2:
            v, d, nxt = seen[me], done + 1, 3
            sn = replace(seen, me, None)  # dead from here on
        elif pc == 3:
            nxt = FINISHED
        else:
            continue
        yield me, (*replace(pcs, me, nxt), *sn, v, d)


LOST_UPDATE_INIT: Ref = (0, 0, None, None, 0, 0)

# Dining philosophers, three. State: (pc0, pc1, pc2, forks, meals).
# pc: 0 start, 1 first fork taken, 2 second fork taken, 3 ate, FINISHED.


def philosophers_next(ordered: bool) -> Next:
    def forks_of(i: int) -> tuple[int, int]:
        left, right = i, (i + 1) % 3
        return (min(left, right), max(left, right)) if ordered else (left, right)

    def nxt(s: Ref) -> Iterator[tuple[int, Ref]]:
        pcs, forks, meals = s[0:3], s[3], s[4]
        for me in range(3):
            first, second = forks_of(me)
            pc = pcs[me]
            fk, m = forks, meals
            if pc == 0:
                if forks[first] is not None:
                    continue
                fk, n = replace(forks, first, me), 1
            elif pc == 1:
                if forks[second] is not None:
                    continue
                fk, n = replace(forks, second, me), 2
            elif pc == 2:
                fk = tuple(None if f == me else f for f in forks)
                m, n = meals + 1, 3
            elif pc == 3:
                n = FINISHED
            else:
                continue
            yield me, (*replace(pcs, me, n), fk, m)

    return nxt


PHILOSOPHERS_INIT: Ref = (0, 0, 0, (None, None, None), 0)

# Retry loop. State: (spinner pc, clearer pc, busy); without the clearer its pc stays
# FINISHED. Spinner pc: 0 start, 1 retried, 2 proceeded, FINISHED. Clearer: 0, 1, FINISHED.


def retry_next(s: Ref) -> Iterator[tuple[int, Ref]]:
    spin, clear, busy = s
    if spin in (0, 1):
        yield 0, (1 if busy else 2, clear, busy)
    elif spin == 2:
        yield 0, (FINISHED, clear, busy)
    if clear == 0:
        yield 1, (spin, 1, False)
    elif clear == 1:
        yield 1, (spin, FINISHED, busy)


RETRY_INIT: Ref = (0, 0, True)
RETRY_STARVED_INIT: Ref = (0, FINISHED, True)


# -- reading the engine's states back as reference tuples ------------------------------------


def positions(func: Callable[..., Any]) -> dict[int, int]:
    """Source line of each resume point of func -> its reference position."""
    lines, start = inspect.getsourcelines(func)
    out = {start: 0}
    n = 0
    for i, line in enumerate(lines):
        if re.match(r"\s*yield\b", line):
            n += 1
            out[start + i] = n
    return out


def position(system: System, state: State, actor: int, table: dict[int, int]) -> int:
    where = system.location(state, actor)
    if where == "finished":
        return FINISHED
    return table[int(where.rsplit(":", 1)[1])]


def engine_space(model: Model, as_ref: Callable[[System, State], Ref]) -> tuple[set[Ref], int]:
    """All states the engine can reach, read back as reference tuples (the map must be
    one-to-one, which is checked), and the number of distinct engine states."""
    system = System(model)
    seen = {system.initial}
    todo = [system.initial]
    while todo:
        state = todo.pop()
        for _, _, out in system.successors(state):
            if out.kind == "ok" and out.state is not None and out.state not in seen:
                seen.add(out.state)
                todo.append(out.state)
    refs = {as_ref(system, s) for s in seen}
    assert len(refs) == len(seen), "two engine states read back as one reference state"
    return refs, len(seen)


def peterson_ref(system: System, state: State) -> Ref:
    table = positions(peterson_thread)
    w = system.world.describe(state[0])
    pcs = tuple(position(system, state, a, table) for a in (0, 1))
    return (*pcs, *w["flag"], w["turn"], w["in_critical"])


def broken_lock_ref(system: System, state: State) -> Ref:
    table = positions(broken_lock_thread)
    w = system.world.describe(state[0])
    pcs = tuple(position(system, state, a, table) for a in (0, 1))
    return (*pcs, w["locked"], w["in_critical"])


def lost_update_ref(system: System, state: State) -> Ref:
    table = positions(incrementer)
    w = system.world.describe(state[0])
    pcs = tuple(position(system, state, a, table) for a in (0, 1))
    seen = []
    for frames in state[1]:
        value = None
        if frames is not None:
            func, _, local_values = frames[-1]
            value = local_values[compile_actor(func).local_names.index("seen")]
            value = None if value is UNSET else value
        seen.append(value)
    return (*pcs, *seen, w["value"], w["done"])


def retry_ref(system: System, state: State) -> Ref:
    spin = position(system, state, 0, positions(retry_loop))
    clear = FINISHED
    if len(system.actors) > 1:
        clear = position(system, state, 1, positions(clear_flag))
    return (spin, clear, system.world.describe(state[0])["busy"])


def philosophers_ref(system: System, state: State) -> Ref:
    table = positions(philosopher)
    w = system.world.describe(state[0])
    pcs = tuple(position(system, state, a, table) for a in range(3))
    return (*pcs, w["forks"], w["meals"])


CASES = {
    "peterson": (peterson, PETERSON_INIT, peterson_next, peterson_ref),
    "broken-lock": (broken_lock, BROKEN_LOCK_INIT, broken_lock_next, broken_lock_ref),
    "lost-update": (lost_update, LOST_UPDATE_INIT, lost_update_next, lost_update_ref),
    "philosophers": (philosophers, PHILOSOPHERS_INIT, philosophers_next(False), philosophers_ref),
    "philosophers-ordered": (
        philosophers_ordered,
        PHILOSOPHERS_INIT,
        philosophers_next(True),
        philosophers_ref,
    ),
    "retry": (retry, RETRY_INIT, retry_next, retry_ref),
    "retry-starved": (retry_starved, RETRY_STARVED_INIT, retry_next, retry_ref),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("mode", ["bfs", "dfs"])
def test_state_space_matches_reference(name: str, mode: str) -> None:
    model, init, nxt, as_ref = CASES[name]
    ref = Space(init, nxt)
    result = check(model, Options(mode=mode))
    assert result.exhaustive
    assert result.stats.states == len(ref.states)
    assert result.stats.transitions == ref.transitions
    if mode == "bfs":
        assert result.stats.max_depth == max(ref.depth.values())
    refs, count = engine_space(model, as_ref)
    assert count == len(ref.states)
    assert refs == ref.states


def test_peterson_counts() -> None:
    # The numbers themselves, so that a change to the demo shows up here too.
    ref = Space(PETERSON_INIT, peterson_next)
    assert (len(ref.states), ref.transitions) == (46, 82)
    assert all(s[5] <= 1 for s in ref.states)
    result = check(peterson)
    assert result.holds and result.verdict == "holds"
    assert (result.stats.states, result.stats.transitions) == (46, 82)


# -- counterexamples -------------------------------------------------------------------------


def test_broken_lock_counterexample_is_minimal() -> None:
    ref = Space(BROKEN_LOCK_INIT, broken_lock_next)
    shortest = ref.distance(lambda s: s[3] >= 2)
    assert shortest == 6
    for mode in ("bfs", "dfs"):
        result = check(broken_lock, Options(mode=mode))
        v = result.violation("mutual exclusion")
        assert v.kind == "invariant" and v.trace is not None
        if mode == "bfs":
            assert len(v.trace) == shortest
        else:
            assert len(v.trace) >= shortest
        # the engine's schedule, replayed in the reference model, breaks mutual exclusion
        schedule = [actor for actor, _ in v.trace.path]
        run = ref.run(BROKEN_LOCK_INIT, schedule)
        assert run[-1][3] == 2 and all(s[3] <= 1 for s in run[:-1])
        assert v.trace.final["in_critical"] == 2


def test_lost_update_final_values() -> None:
    ref = Space(LOST_UPDATE_INIT, lost_update_next)
    assert {s[4] for s in ref.stuck} == {1, 2}
    for mode in ("bfs", "dfs"):
        result = check(lost_update, Options(mode=mode, collect_terminal=True))
        finals = {t["value"] for t in result.terminal}
        assert finals == {1, 2}
        assert len(result.terminal) == len(ref.stuck)
        assert all(t["done"] == 2 for t in result.terminal)
    v = check(lost_update).violation("no lost update")
    assert v.trace is not None
    assert len(v.trace) == ref.distance(lambda s: s[5] == 2 and s[4] != 2) == 6


def test_philosophers_deadlock() -> None:
    ref = Space(PHILOSOPHERS_INIT, philosophers_next(False))
    deadlocks = [s for s in ref.stuck if s[0:3] != (FINISHED,) * 3]
    assert deadlocks and min(ref.depth[s] for s in deadlocks) == 3
    result = check(philosophers)
    v = result.violation("deadlock")
    assert v.kind == "deadlock" and v.trace is not None
    assert len(v.trace) == 3
    assert v.trace.final["forks"] == (0, 1, 2)  # everyone holds their left fork
    assert "P0 at philosopher" in v.message
    assert check(philosophers_ordered).holds
    ordered = Space(PHILOSOPHERS_INIT, philosophers_next(True))
    assert [s[0:3] for s in ordered.stuck] == [(FINISHED,) * 3]


# -- progress ------------------------------------------------------------------------------


def assert_fair_lasso(model: Model, v: Violation, actor: str) -> list[str]:
    """The violation is a lasso: the loop returns to its start, the actor never finishes
    in it, and every actor steps in the loop or is disabled somewhere in it."""
    assert v.kind == "progress" and v.trace is not None
    start = v.trace.loop_start
    assert start is not None and 0 <= start < len(v.trace)
    system = System(model)
    names = system.names()
    states = [system.initial]
    for a, choices in v.trace.path:
        out = system.step_with(states[-1], a, choices)
        assert out.kind == "ok" and out.state is not None
        states.append(out.state)
    assert states[start] == states[-1], "the loop does not return to its start"
    loop_states = states[start:]
    me = names.index(actor)
    assert all(s[1][me] is not None for s in loop_states)
    stepped = {a for a, _ in v.trace.path[start:]}
    for i in range(len(names)):
        disabled = any(
            not any(o.kind != "blocked" for o in system.successors_of(s, i)) for s in loop_states
        )
        assert i in stepped or disabled, f"{names[i]} is treated unfairly by the loop"
    return [step.label for step in v.trace.steps[start:]]


@pytest.mark.parametrize("mode", ["bfs", "dfs"])
def test_retry_progress(mode: str) -> None:
    assert check(retry, Options(mode=mode)).holds
    result = check(retry_starved, Options(mode=mode))
    assert result.violated() == ["progress: spinner"]
    v = result.violation("progress: spinner")
    labels = assert_fair_lasso(retry_starved, v, "spinner")
    assert labels == ["flag still set: retry"]
    assert v.trace is not None and v.trace.loop_start == 1
    assert [s.label for s in v.trace.steps] == ["flag still set: retry"] * 2
    assert {s.actor for s in v.trace.steps} == {"spinner"}


def test_retry_without_liveness_is_noted() -> None:
    result = check(retry_starved, Options(liveness=False))
    assert result.holds
    assert any("not checked" in n for n in result.notes)
    bounded = check(retry_starved, Options(max_states=1))
    assert not bounded.exhaustive and any("not checked" in n for n in bounded.notes)


# -- the demos' documented verdicts ----------------------------------------------------------


def check_expectation(model: Model, result: Result) -> None:
    """Assert every claim of the demo's `expect` string against the result."""
    m = re.fullmatch(r"holds|violates: (?P<prop>[^()]+?)(?: \((?P<detail>[^()]*)\))?", model.expect)
    assert m is not None, f"{model.name}: cannot read expect string {model.expect!r}"
    if m.group(0) == "holds":
        assert result.holds, result.violated()
        assert result.verdict == "holds"
        return
    prop, detail = m.group("prop"), m.group("detail")
    assert result.violated() == [prop]
    v = result.violation(prop)
    assert v.trace is not None
    if detail is None:
        return
    if steps := re.fullmatch(r"(?:shortest counterexample: )?(\d+) steps", detail):
        if result.mode == "bfs":
            assert len(v.trace) == int(steps.group(1))
        else:
            assert len(v.trace) >= int(steps.group(1))
    elif values := re.fullmatch(r"final values are exactly \{([\d, ]*)\}", detail):
        expected = {int(x) for x in values.group(1).split(",")}
        full = check(model, Options(mode=result.mode, collect_terminal=True))
        assert {t["value"] for t in full.terminal} == expected
    elif detail == "a lasso":
        assert v.kind == "progress" and v.trace.loop_start is not None
    else:
        pytest.fail(f"{model.name}: the test does not know how to check {detail!r}")


@pytest.mark.parametrize("name", sorted(DEMOS))
@pytest.mark.parametrize("mode", ["bfs", "dfs"])
def test_demo_matches_its_expect_string(name: str, mode: str) -> None:
    model = DEMOS[name]
    check_expectation(model, check(model, Options(mode=mode)))


def test_every_demo_is_covered() -> None:
    assert set(DEMOS) == set(CASES)


# -- determinism ---------------------------------------------------------------------------


def _fingerprint(result: Result) -> dict[str, Any]:
    d = result.as_dict()
    stats = d.pop("stats")
    for volatile in ("seconds", "states_per_second", "peak_memory_mb"):
        stats.pop(volatile)
    return {"result": d, "stats": stats}


@pytest.mark.parametrize("name", sorted(DEMOS))
@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_two_runs_are_identical(name: str, mode: str) -> None:
    options = Options(mode=mode, runs=20, seed=7, collect_terminal=True)
    if mode == "random":
        options.max_depth = 100  # steps per run
    first, second = check(DEMOS[name], options), check(DEMOS[name], options)
    assert _fingerprint(first) == _fingerprint(second)
    assert first.terminal == second.terminal
    for a, b in zip(first.violations, second.violations):
        assert a.trace is not None and b.trace is not None
        assert a.trace.steps == b.trace.steps and a.trace.path == b.trace.path
