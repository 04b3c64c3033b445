"""Symmetry and partial-order reduction against the full search.

On each model the reduced search must give the same verdict, the same violated properties
and the same deadlock and terminal-state findings as the full one, and store fewer states
where the model has symmetry or independence. Buggy models prove the reductions keep the
counterexample; fixed ones that they stay exhaustive.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from kvmsim.demos import broken_lock, lost_update, peterson, philosophers, philosophers_ordered
from kvmsim.engine import Model, ModelError, Options, Result, Setup, Struct, await_, check, replay
from kvmsim.engine.system import System

Steps = Generator[str, None, None]


def safety(**kw: Any) -> Options:
    return Options(liveness=False, **kw)


def findings(r: Result) -> tuple[str, list[str]]:
    return r.verdict, sorted(r.violated())


def plain(value: Any) -> Any:
    """A value comparable across runs (each run builds its own Struct objects)."""
    if isinstance(value, Struct):
        return repr(value)
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def terminal_worlds(r: Result) -> set[frozenset[tuple[str, Any]]]:
    return {frozenset((k, plain(v)) for k, v in w.items()) for w in r.terminal}


def agree(model: Model, **reduce: bool) -> tuple[Result, Result]:
    full = check(model, safety(collect_terminal=True))
    red = check(model, safety(collect_terminal=True, **reduce))
    assert findings(red) == findings(full)
    assert red.exhaustive and full.exhaustive
    # every counterexample replays from the real initial state
    system = System(model)
    for v in red.violations:
        if v.trace is not None:
            trace, _ = replay(system, v.trace.path)
            assert len(trace) == len(v.trace)
    return full, red


# -- models ------------------------------------------------------------------------------


class Worker(Struct):
    name: str = "w0"
    in_cs: bool = False
    rounds: int = 0


class Shared(Struct):
    workers: tuple[Worker, ...] = ()
    holder: Worker | None = None
    inside: int = 0
    counter: int = 0


def locked_worker(s: Shared, me: Worker, atomic: bool, rounds: int) -> Steps:
    while me.rounds < rounds:
        if atomic:
            await_(s.holder is None)
            s.holder = me
            yield "test-and-set"
        else:
            await_(s.holder is None)
            yield "test: free"
            s.holder = me
            yield "set"
        me.in_cs = True
        s.inside += 1
        yield "enter"
        s.inside -= 1
        me.in_cs = False
        me.rounds += 1
        s.holder = None
        yield "unlock"


def counting_worker(s: Shared, me: Worker) -> Steps:
    seen = s.counter
    yield "read"
    s.counter = seen + 1
    me.rounds += 1
    yield "write"


def lock_model(
    n: int, atomic: bool, rounds: int = 1, declare: bool = True, must_finish: bool = False
) -> Model:
    model = Model(f"lock x{n} {'atomic' if atomic else 'split'}")

    @model.setup
    def setup(st: Setup) -> Shared:
        workers = tuple(Worker(name=f"w{i}") for i in range(n))
        s = Shared(workers=workers)
        for w in workers:
            st.actor(w.name, locked_worker, s, w, atomic, rounds, must_finish=must_finish)
        if declare:
            st.symmetric([(w.name, (w,)) for w in workers], unordered=((s, "workers"),))
        return s

    @model.invariant("mutual exclusion")
    def mutex(s: Shared) -> bool:
        return sum(1 for w in s.workers if w.in_cs) <= 1

    return model


def counter_model(n: int) -> Model:
    model = Model(f"counter x{n}")

    @model.setup
    def setup(st: Setup) -> Shared:
        workers = tuple(Worker(name=f"w{i}") for i in range(n))
        s = Shared(workers=workers)
        for w in workers:
            st.actor(w.name, counting_worker, s, w)
        st.symmetric([(w.name, (w,)) for w in workers], unordered=((s, "workers"),))
        return s

    @model.invariant("no lost update")
    def exact(s: Shared) -> bool:
        return s.counter == sum(w.rounds for w in s.workers)

    return model


class Flags(Struct):
    x: int = 0
    y: int = 0
    ready: bool = False
    go: bool = False
    a: int = 0
    b: int = 0


def writer(f: Flags) -> Steps:
    f.x = 1
    yield "x = 1"


def late_reader(f: Flags) -> Steps:
    """Disabled at first: only after `ready` can it read x, then check x did not change."""
    await_(f.ready)
    seen = f.x
    yield "read x"
    assert f.x == seen, "x changed under the reader"
    yield "check"


def readier(f: Flags) -> Steps:
    f.ready = True
    yield "ready"


def late_step_model() -> Model:
    """The bug needs the reader, not enabled in the initial state, to read x before the
    writer writes it (design note 8c): expanding only the writer first would miss it."""
    model = Model("late step")

    @model.setup
    def setup(st: Setup) -> Flags:
        f = Flags()
        st.actor("writer", writer, f)
        st.actor("reader", late_reader, f)
        st.actor("readier", readier, f)
        return f

    return model


def set_a(f: Flags) -> Steps:
    f.a = 1
    yield "a = 1"


def set_b(f: Flags) -> Steps:
    f.b = 1
    yield "b = 1"


def visible_model() -> Model:
    """Two independent writes; the invariant fails only in the state after a, before b."""
    model = Model("visible")

    @model.setup
    def setup(st: Setup) -> Flags:
        f = Flags()
        st.actor("A", set_a, f)
        st.actor("B", set_b, f)
        return f

    @model.invariant("not a without b")
    def inv(f: Flags) -> bool:
        return not (f.a == 1 and f.b == 0)

    return model


def stuck(f: Flags) -> Steps:
    f.y += 1
    yield "count"
    await_(f.go)
    yield "never"


def independent_deadlock_model() -> Model:
    """Independent counting steps, then every actor waits for a flag nobody sets."""
    model = Model("deadlock after independent steps")

    @model.setup
    def setup(st: Setup) -> Flags:
        f = Flags()
        for i in range(3):
            st.actor(f"t{i}", set_a if i == 0 else set_b, f)
        st.actor("s", stuck, f)
        return f

    return model


# -- partial-order reduction ------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [peterson, broken_lock, lost_update, philosophers, philosophers_ordered],
    ids=lambda m: m.name,
)
def test_por_agrees_on_textbook_models(model: Model) -> None:
    full, red = agree(model, por=True)
    assert terminal_worlds(red) == terminal_worlds(full)
    assert red.stats.states <= full.stats.states


def test_por_shrinks_independent_models() -> None:
    for model in (lost_update, philosophers, lock_model(3, atomic=True, declare=False)):
        full, red = agree(model, por=True)
        assert red.stats.states < full.stats.states, model.name


def test_por_finds_a_bug_that_needs_a_step_not_yet_enabled() -> None:
    full, red = agree(late_step_model(), por=True)
    assert red.violated() == ["assertion"]
    assert terminal_worlds(red) == terminal_worlds(full)


def test_por_keeps_states_an_invariant_looks_at() -> None:
    full, red = agree(visible_model(), por=True)
    assert red.violated() == ["not a without b"]


def test_por_keeps_deadlocks_and_terminal_states() -> None:
    full, red = agree(independent_deadlock_model(), por=True)
    assert red.violated() == ["deadlock"]
    assert terminal_worlds(red) == terminal_worlds(full)
    assert red.stats.states < full.stats.states
    assert any("partial-order reduction" in n for n in red.notes)


@pytest.mark.parametrize("n", [2, 3])
def test_por_on_lock_workers(n: int) -> None:
    for atomic in (True, False):
        full, red = agree(lock_model(n, atomic, declare=False), por=True)
        assert (red.violated() == ["mutual exclusion"]) is (not atomic)
        assert terminal_worlds(red) == terminal_worlds(full)


def test_por_in_dfs_agrees() -> None:
    for model in (lock_model(3, atomic=False, declare=False), late_step_model()):
        full = check(model, safety(mode="dfs"))
        red = check(model, safety(mode="dfs", por=True))
        assert findings(red) == findings(full)


# -- symmetry ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("atomic", [True, False])
def test_symmetry_agrees_and_shrinks(n: int, atomic: bool) -> None:
    model = lock_model(n, atomic, rounds=2)
    full, red = agree(model, symmetry=True)
    assert (red.violated() == ["mutual exclusion"]) is (not atomic)
    assert red.stats.states < full.stats.states
    both = check(model, safety(symmetry=True, por=True))
    assert findings(both) == findings(full)
    assert both.stats.states <= red.stats.states


def test_symmetry_counter_factorial_gain() -> None:
    full, red = agree(counter_model(3), symmetry=True)
    assert red.violated() == ["no lost update"]
    # the lost update needs a shortest counterexample of the same length
    assert len(red.violation("no lost update").trace or []) == len(
        full.violation("no lost update").trace or []
    )
    assert full.stats.states > 3 * red.stats.states


def test_symmetry_counterexample_uses_real_names() -> None:
    red = check(lock_model(3, atomic=False), safety(symmetry=True))
    trace = red.violation("mutual exclusion").trace
    assert trace is not None
    assert {s.actor for s in trace.steps} <= {"w0", "w1", "w2"}


def test_symmetry_refused_when_initial_state_differs() -> None:
    model = Model("unequal")

    @model.setup
    def setup(st: Setup) -> Shared:
        workers = (Worker(name="w0"), Worker(name="w1", rounds=1))
        s = Shared(workers=workers)
        for w in workers:
            st.actor(w.name, counting_worker, s, w)
        st.symmetric([(w.name, (w,)) for w in workers], unordered=((s, "workers"),))
        return s

    with pytest.raises(ModelError, match="does not hold in the initial state.*rounds"):
        check(model, safety(symmetry=True))


def test_symmetry_refused_for_an_ordered_tuple_not_declared_unordered() -> None:
    model = Model("ordered")

    @model.setup
    def setup(st: Setup) -> Shared:
        workers = (Worker(name="w0"), Worker(name="w1"))
        s = Shared(workers=workers)
        for w in workers:
            st.actor(w.name, counting_worker, s, w)
        st.symmetric([(w.name, (w,)) for w in workers])
        return s

    with pytest.raises(ModelError, match="workers"):
        check(model, safety(symmetry=True))


def kick_in_order(s: Shared) -> Steps:
    for w in s.workers:
        w.rounds += 10
        yield "kick"


def waiting_worker(s: Shared, me: Worker) -> Steps:
    me.in_cs = True
    yield "start"
    await_(me.rounds >= 10)
    yield "woken"


def test_symmetry_audit_catches_an_index_order_dependence() -> None:
    """The kicker goes by index; declaring the tuple unordered is a lie the audit sees."""
    model = Model("kick by index")

    @model.setup
    def setup(st: Setup) -> Shared:
        workers = (Worker(name="w0"), Worker(name="w1"))
        s = Shared(workers=workers)
        for w in workers:
            st.actor(w.name, waiting_worker, s, w)
        st.actor("kicker", kick_in_order, s)
        st.symmetric([(w.name, (w,)) for w in workers], unordered=((s, "workers"),))
        return s

    with pytest.raises(ModelError, match="not honoured"):
        check(model, safety(symmetry=True))


def test_reductions_off_for_liveness_and_costs() -> None:
    model = lock_model(2, atomic=True, must_finish=True)
    full = check(model, Options())
    for opts in (Options(symmetry=True, por=True), Options(symmetry=True, costs=True)):
        r = check(model, opts)
        assert r.stats.states == full.stats.states
        assert any("off" in n for n in r.notes)


def test_symmetry_without_declaration_is_noted() -> None:
    r = check(lost_update, safety(symmetry=True))
    assert any("declares no interchangeable actors" in n for n in r.notes)


# -- explicit program counters (guarded footprints) ----------------------------------------


class Regs(Struct):
    x: int = 0
    y: int = 0
    z: int = 0


def pc_writer(w: Regs, pc: int = 0) -> Steps:
    while True:
        if pc == 0:
            w.x = 1
            pc = 1
        elif pc == 1:
            w.z += 1
            pc = 2
        else:
            return
        yield "writer"


def pc_reader(w: Regs, pc: int = 0) -> Steps:
    while True:
        if pc == 0:
            w.y = w.x
            pc = 1
        elif pc == 1:
            w.y += 10
            pc = 2
        else:
            return
        yield "reader"


def pc_model() -> Model:
    model = Model("explicit pc")

    @model.setup
    def setup(st: Setup) -> Regs:
        w = Regs()
        st.actor("writer", pc_writer, w)
        st.actor("reader", pc_reader, w)
        return w

    return model


def test_por_future_follows_an_explicit_pc() -> None:
    """Past its pc == 0 branch the reader never reads x again: the writer's x = 1 is then
    independent of it; before, it is not."""
    from kvmsim.engine.por import PartialOrder

    model = pc_model()
    system = System(model)
    por = PartialOrder(system, model)
    x = (system.world.objects.index(system.root), "x")
    start = system.initial
    assert x in por.future(start[1][1]).reads
    after = next(o for a, _s, o in system.successors(start) if a == 1).state
    assert after is not None
    assert x not in por.future(after[1][1]).reads
    full, red = agree(model, por=True)
    assert terminal_worlds(red) == terminal_worlds(full)
    assert red.stats.states < full.stats.states


def store_x(w: Flags) -> None:
    w.x = 1


def call_it(w: Flags, action: Any) -> Steps:
    yield "about to act"
    action(w)  # a call through a parameter: resolved from the frame at run time
    yield "acted"


def higher_order_model() -> Model:
    """The write to x hides behind a function passed as a parameter: still a conflict."""
    model = Model("higher order")

    @model.setup
    def setup(st: Setup) -> Flags:
        f = Flags()
        st.actor("caller", call_it, f, store_x)
        st.actor("reader", late_reader, f)
        st.actor("readier", readier, f)
        return f

    return model


def test_por_follows_calls_through_parameters() -> None:
    from kvmsim.engine.por import PartialOrder

    model = higher_order_model()
    system = System(model)
    por = PartialOrder(system, model)
    x = (system.world.objects.index(system.root), "x")
    future = por.future(system.initial[1][0])
    assert x in future.writes or "x" in future.write_names
    full, red = agree(model, por=True)
    assert red.violated() == ["assertion"]
    assert terminal_worlds(red) == terminal_worlds(full)
