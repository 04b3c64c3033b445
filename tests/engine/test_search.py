"""Search modes and their bounds, nondeterministic choice, blocking, deadlock, liveness."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmsim.demos import DEMOS, broken_lock, peterson, philosophers, philosophers_ordered
from kvmsim.engine import Model, Options, Setup, Struct, await_, check, choose, maybe
from kvmsim.engine.liveness import Edge, find_fair_lasso

from .bench import counters, filter_lock
from .support import Steps

# -- exhaustive modes agree --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_dfs_and_bfs_agree(name: str) -> None:
    bfs = check(DEMOS[name], Options(mode="bfs"))
    dfs = check(DEMOS[name], Options(mode="dfs"))
    assert dfs.verdict == bfs.verdict
    assert dfs.violated() == bfs.violated()
    assert (dfs.stats.states, dfs.stats.transitions) == (bfs.stats.states, bfs.stats.transitions)
    assert dfs.exhaustive and bfs.exhaustive
    for v in bfs.violations:  # BFS counterexamples are shortest
        w = dfs.violation(v.prop)
        assert v.trace is not None and w.trace is not None
        assert len(v.trace) <= len(w.trace)


# -- bounds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bfs", "dfs"])
def test_depth_bound(mode: str) -> None:
    full = check(peterson, Options(mode=mode))
    assert full.exhaustive and full.bound == "" and full.coverage == "exhaustive"
    bounded = check(peterson, Options(mode=mode, max_depth=4))
    assert not bounded.exhaustive
    assert bounded.bound == "depth 4"
    assert bounded.coverage == "bounded (depth 4)"
    assert bounded.verdict == "holds, bounded (depth 4)"
    assert bounded.stats.max_depth == 4
    assert bounded.stats.states < full.stats.states
    # a bound at or beyond the diameter explores everything and says so
    deep = check(peterson, Options(mode=mode, max_depth=100))
    assert deep.exhaustive and deep.stats.states == full.stats.states


@pytest.mark.parametrize("mode", ["bfs", "dfs"])
def test_depth_bound_finds_violations_within_it(mode: str) -> None:
    assert check(broken_lock, Options(mode=mode, max_depth=5)).holds  # needs 6 steps
    found = check(broken_lock, Options(mode=mode, max_depth=6))
    assert found.violated() == ["mutual exclusion"]
    v = found.violation("mutual exclusion")
    assert v.trace is not None and len(v.trace) == 6


def test_dfs_with_bound_covers_everything_within_it() -> None:
    # A state first reached by a long path is explored again when a shorter path is found,
    # so a bounded DFS sees exactly the states BFS sees within the same bound.
    for depth in range(1, 14):
        bfs = check(peterson, Options(mode="bfs", max_depth=depth))
        dfs = check(peterson, Options(mode="dfs", max_depth=depth))
        assert dfs.stats.states == bfs.stats.states, depth


class Gate(Struct):
    open: bool = False
    steps: int = 0


def worker(w: Gate, n: int) -> Steps:
    for _ in range(n):
        w.steps += 1
        yield "work"


def wait_for_gate(w: Gate) -> Steps:
    await_(w.open)
    yield "through the gate"


def _gate_model(daemon: bool, n: int = 2, deadlock: bool = True) -> Model:
    model = Model(f"gate daemon={daemon}", deadlock=deadlock)

    @model.setup
    def setup(s: Setup) -> Gate:
        w = Gate()
        s.actor("worker", worker, w, n)
        s.actor("waiter", wait_for_gate, w, daemon=daemon)
        return w

    return model


@pytest.mark.parametrize("mode", ["bfs", "dfs"])
def test_blocked_steps_do_not_count_at_the_bound(mode: str) -> None:
    # worker finishes in 3 steps (2 yields and its return); the waiter never moves. At depth
    # 3 nothing can move: the search is complete, not cut short by the bound.
    result = check(_gate_model(daemon=True), Options(mode=mode, max_depth=3))
    assert result.exhaustive and result.holds
    result = check(_gate_model(daemon=False), Options(mode=mode, max_depth=3))
    assert result.violated() == ["deadlock"]
    v = result.violation("deadlock")
    assert v.trace is not None and len(v.trace) == 3


@pytest.mark.parametrize("mode", ["bfs", "dfs"])
def test_max_states(mode: str) -> None:
    result = check(peterson, Options(mode=mode, max_states=10))
    assert result.stats.states == 10
    assert not result.exhaustive and result.bound == "10 states"
    assert result.verdict == "holds, bounded (10 states)"


class TwoBugs(Struct):
    a: int = 0
    b: int = 0


def bump(w: TwoBugs) -> Steps:
    w.a += 1
    yield "a"
    w.b += 1
    yield "b"


def _two_bugs() -> Model:
    model = Model("two bugs")

    @model.setup
    def setup(s: Setup) -> TwoBugs:
        w = TwoBugs()
        s.actor("t", bump, w)
        return w

    @model.invariant("a stays zero")
    def a_zero(w: TwoBugs) -> bool:
        return w.a == 0

    @model.invariant("b stays zero")
    def b_zero(w: TwoBugs) -> bool:
        return w.b == 0

    return model


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_stop_at_first(mode: str) -> None:
    model = _two_bugs()
    every = check(model, Options(mode=mode))
    assert every.violated() == ["a stays zero", "b stays zero"]
    first = check(model, Options(mode=mode, stop_at_first=True))
    assert first.violated() == ["a stays zero"]
    assert not first.exhaustive
    if mode != "random":
        assert first.bound == "stopped at first violation"
        assert first.stats.states < every.stats.states


# -- random simulation -------------------------------------------------------------------------


def test_random_simulation_is_seeded() -> None:
    def run(seed: int) -> Any:
        r = check(philosophers, Options(mode="random", runs=30, seed=seed, max_depth=50))
        d = r.as_dict()
        for volatile in ("seconds", "states_per_second", "peak_memory_mb"):
            d["stats"].pop(volatile)
        return d

    first = run(1)
    assert first == run(1)
    assert first["stats"]["runs"] == 30
    assert not first["exhaustive"]
    assert "seed 1" in check(peterson, Options(mode="random", runs=3, seed=1)).bound
    # different seeds take different paths through the state space
    assert len({str(run(seed)["stats"]) for seed in range(6)}) > 1


def test_random_simulation_finds_bugs() -> None:
    result = check(philosophers, Options(mode="random", runs=50, seed=0))
    assert result.violated() == ["deadlock"]
    result = check(broken_lock, Options(mode="random", runs=200, seed=0))
    assert result.violated() == ["mutual exclusion"]
    v = result.violation("mutual exclusion")
    assert v.trace is not None and v.trace.final["in_critical"] == 2
    assert check(philosophers_ordered, Options(mode="random", runs=50, seed=0)).holds
    # random runs never count a state twice, and enough of them see every state
    assert check(peterson, Options(mode="random", runs=5, max_depth=20)).stats.states < 46
    assert check(peterson, Options(mode="random", runs=300, max_depth=40)).stats.states == 46


# -- choose / maybe ----------------------------------------------------------------------------


class Picked(Struct):
    value: Any = None


def pick_two(w: Picked) -> Steps:
    x = choose((1, 2, 3), "x")
    y = maybe("y")
    w.value = (x, y)
    yield "picked"


def pick_dependent(w: Picked) -> Steps:
    n = choose((1, 2), "n")
    k = choose(tuple(range(n)), "k")  # one option: no branching
    w.value = (n, k)
    yield "picked"


def pick_twice_in_a_row(w: Picked) -> Steps:
    w.value = choose(("a", "b"))
    yield "first"
    w.value = (w.value, choose(("c", "d")))
    yield "second"


def pick_nothing(w: Picked) -> Steps:
    w.value = choose(())  # no option: the actor cannot move
    yield "never"


def _one(actor: Any) -> Model:
    model = Model(f"pick {actor.__name__}")

    @model.setup
    def setup(s: Setup) -> Picked:
        w = Picked()
        s.actor("a", actor, w)
        return w

    return model


@pytest.mark.parametrize(
    "actor,states,transitions,finals",
    [
        # 6 successors of the initial state, each then finishes
        (pick_two, 1 + 6 + 6, 6 + 6, {(x, y) for x in (1, 2, 3) for y in (False, True)}),
        (pick_dependent, 1 + 3 + 3, 3 + 3, {(1, 0), (2, 0), (2, 1)}),
        (pick_twice_in_a_row, 1 + 2 + 4 + 4, 2 + 4 + 4, {(a, c) for a in "ab" for c in "cd"}),
    ],
)
def test_choose_branches(actor: Any, states: int, transitions: int, finals: set[Any]) -> None:
    result = check(_one(actor), Options(collect_terminal=True))
    assert result.holds
    assert (result.stats.states, result.stats.transitions) == (states, transitions)
    assert {t["value"] for t in result.terminal} == finals


def test_choose_without_options_blocks() -> None:
    result = check(_one(pick_nothing))
    assert result.violated() == ["deadlock"]
    assert result.stats.transitions == 0


def test_choices_are_recorded_in_traces() -> None:
    model = _one(pick_two)

    @model.invariant("not (3, True)")
    def not_three(w: Picked) -> bool:
        return bool(w.value != (3, True))

    v = check(model).violation("not (3, True)")
    assert v.trace is not None
    assert v.trace.steps[0].choices == ("x=3", "y=True")
    assert v.trace.path == [(0, (2, 1))]


# -- await_, deadlock, daemons -------------------------------------------------------------------


class Handshake(Struct):
    ping: bool = False
    pong: bool = False


def pinger(w: Handshake) -> Steps:
    w.ping = True
    yield "ping"
    await_(w.pong)
    yield "got pong"


def ponger(w: Handshake) -> Steps:
    await_(w.ping)
    w.pong = True
    yield "pong"


def stubborn(w: Handshake) -> Steps:
    await_(w.pong)  # waits for the other, who waits for this one
    w.ping = True
    yield "ping"


def _handshake(first: Any, second: Any, daemon: bool = False) -> Model:
    model = Model(f"handshake {first.__name__} {second.__name__}")

    @model.setup
    def setup(s: Setup) -> Handshake:
        w = Handshake()
        s.actor("A", first, w)
        s.actor("B", second, w, daemon=daemon)
        return w

    return model


def test_await_blocks_until_the_condition_holds() -> None:
    result = check(_handshake(pinger, ponger), Options(collect_terminal=True))
    assert result.holds
    # (A, B) positions; A: 0, pinged, got pong, finished; B: 0, ponged, finished. B cannot
    # pong before the ping, A cannot go on before the pong:
    # (0,0) (1,0) (1,1) (1,F) (2,1) (2,F) (F,1) (F,F)
    assert result.stats.states == 8
    assert result.stats.transitions == 9
    assert result.terminal == [{"ping": True, "pong": True}]


def test_deadlock_detection() -> None:
    result = check(_handshake(stubborn, ponger))
    assert result.violated() == ["deadlock"]
    v = result.violation("deadlock")
    assert v.kind == "deadlock" and v.trace is not None
    assert len(v.trace) == 0  # stuck from the start
    assert "A at stubborn" in v.message and "B at ponger" in v.message


def test_daemons_may_wait_forever() -> None:
    assert check(_handshake(pinger, ponger, daemon=True)).holds
    # the pinger is not a daemon: it waiting forever for a pong is a deadlock
    lone = Model("lone pinger")

    @lone.setup
    def setup(s: Setup) -> Handshake:
        w = Handshake()
        s.actor("A", pinger, w)
        s.actor("B", stubborn, w, daemon=True)
        return w

    result = check(lone)
    assert result.violated() == ["deadlock"]
    assert "A at pinger" in result.violation("deadlock").message
    assert "B at" not in result.violation("deadlock").message


@pytest.mark.parametrize("mode", ["bfs", "dfs", "random"])
def test_deadlock_check_can_be_turned_off(mode: str) -> None:
    model = _gate_model(daemon=False, deadlock=False)
    assert check(model, Options(mode=mode, runs=5)).violated() == []


def test_sometimes() -> None:
    model = _gate_model(daemon=True)

    @model.sometimes("two steps done")
    def two(w: Gate) -> bool:
        return w.steps == 2

    @model.sometimes("gate opens")
    def opens(w: Gate) -> bool:
        return w.open

    result = check(model)
    assert result.sometimes == {"two steps done": True, "gate opens": False}
    assert result.violated() == ["gate opens"]
    assert result.violation("gate opens").kind == "sometimes"
    # a bounded search proves nothing vacuous
    assert check(model, Options(max_depth=1)).violated() == []


# -- the fair-cycle search against brute force ---------------------------------------------------


def _fair_subset_exists(
    n: int, edges: list[list[Edge]], enabled: list[int], unfinished: list[bool], actors: int
) -> bool:
    """Some set of unfinished states, strongly connected by its own edges, in which every
    actor steps or is disabled somewhere: then (and only then) a fair cycle exists."""
    candidates = [v for v in range(n) if unfinished[v]]
    for size in range(1, len(candidates) + 1):
        for subset in combinations(candidates, size):
            members = set(subset)
            inner = [(v, e) for v in subset for e in edges[v] if e[0] in members]
            if not inner:
                continue
            reach = {v: {v} for v in subset}
            changed = True
            while changed:
                changed = False
                for v, e in inner:
                    new = reach[e[0]] - reach[v]
                    if new:
                        reach[v] |= new
                        changed = True
            if any(reach[v] != members for v in subset):
                continue
            full = (1 << actors) - 1
            taken = 0
            disabled = 0
            for _, e in inner:
                taken |= 1 << e[1]
            for v in subset:
                disabled |= ~enabled[v] & full
            if taken | disabled == full:
                return True
    return False


@st.composite
def graphs(draw: Any) -> tuple[int, list[list[Edge]], list[int], list[bool], int]:
    n = draw(st.integers(1, 6))
    actors = draw(st.integers(1, 3))
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(0, actors - 1)),
            max_size=14,
        )
    )
    edges: list[list[Edge]] = [[] for _ in range(n)]
    for i, (src, dst, actor) in enumerate(raw):
        edges[src].append((dst, actor, (i,)))
    enabled = [0] * n
    for v in range(n):
        for _, actor, _ in edges[v]:
            enabled[v] |= 1 << actor
        # an actor can also be enabled by a step that fails (no edge is kept for it)
        enabled[v] |= draw(st.integers(0, (1 << actors) - 1))
    unfinished = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return n, edges, enabled, unfinished, actors


@given(graphs())
@settings(max_examples=400, deadline=None)
def test_fair_lasso_matches_brute_force(
    graph: tuple[int, list[list[Edge]], list[int], list[bool], int],
) -> None:
    n, edges, enabled, unfinished, actors = graph
    found = find_fair_lasso(edges, enabled, unfinished, actors)
    assert (found is not None) == _fair_subset_exists(n, edges, enabled, unfinished, actors)
    if found is None:
        return
    entry, cycle = found
    assert unfinished[entry] and cycle
    here, visited, stepped = entry, [entry], set()
    for actor, choices in cycle:
        nxt = [e for e in edges[here] if e[1] == actor and e[2] == choices]
        assert len(nxt) == 1, "the cycle takes an edge that does not exist"
        here = nxt[0][0]
        assert unfinished[here]
        visited.append(here)
        stepped.add(actor)
    assert here == entry, "the cycle does not close"
    for a in range(actors):
        assert a in stepped or any(not enabled[v] & (1 << a) for v in visited)


# -- bigger models (also used by tests/engine/bench.py to measure speed) ------------------------


def test_filter_lock() -> None:
    bfs = check(filter_lock(3))
    dfs = check(filter_lock(3), Options(mode="dfs"))
    assert bfs.holds and dfs.holds
    assert bfs.stats.states == dfs.stats.states == 766


def test_counters() -> None:
    result = check(counters(2, 2), Options(collect_terminal=True))
    assert result.holds
    assert sorted(t["value"] for t in result.terminal) == [2, 3, 4]


class Flag(Struct):
    busy: bool = True


def waits_for_flag(w: Flag) -> Steps:
    await_(not w.busy)
    yield "flag clear: proceed"


@pytest.mark.parametrize("mode", ["bfs", "dfs"])
@pytest.mark.parametrize("deadlock,daemon", [(True, False), (False, False), (True, True)])
def test_must_finish_actor_stuck_for_good(mode: str, deadlock: bool, daemon: bool) -> None:
    # Nobody ever clears the flag. With the deadlock check on and the waiter not a daemon
    # that is reported as a deadlock; otherwise it must still be reported, as starvation.
    model = Model("stuck waiter", deadlock=deadlock)

    @model.setup
    def setup(s: Setup) -> Flag:
        w = Flag()
        s.actor("waiter", waits_for_flag, w, must_finish=True, daemon=daemon)
        s.actor("worker", worker, Gate(), 2)
        return w

    result = check(model, Options(mode=mode))
    if deadlock and not daemon:
        assert result.violated() == ["deadlock"]
        return
    assert result.violated() == ["progress: waiter"]
    v = result.violation("progress: waiter")
    assert v.kind == "progress" and v.trace is not None and v.trace.loop_start is None
    assert "waiter waits forever" in v.message and "waits_for_flag" in v.message
    assert len(v.trace) == 3  # the worker's three steps, then nobody can move
