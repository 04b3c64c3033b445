"""Textbook protocols with independently known answers: the engine's own demo models.

Each model states its expected verdict in ``expect`` (as the kernel's litmus tests state
``Result: Never``), and the test suite reads it. ``kvmsim demo --list`` names them.
"""

from __future__ import annotations

from collections.abc import Generator

from .engine import Model, Setup, Struct, await_

Steps = Generator[str, None, None]


def _with(values: tuple[object, ...], index: int, value: object) -> tuple[object, ...]:
    return values[:index] + (value,) + values[index + 1 :]


# -- Peterson's mutual exclusion for two threads ------------------------------------------


class Peterson(Struct):
    flag: tuple[bool, ...] = (False, False)
    turn: int = 0
    in_critical: int = 0


def peterson_thread(w: Peterson, me: int) -> Steps:
    other = 1 - me
    while True:
        w.flag = _with(w.flag, me, True)  # type: ignore[assignment]
        yield "flag[me] = true"
        w.turn = other
        yield "turn = other"
        await_(not (w.flag[other] and w.turn == other))
        yield "await flag[other] == false or turn == me"
        w.in_critical += 1
        yield "enter critical section"
        w.in_critical -= 1
        yield "leave critical section"
        w.flag = _with(w.flag, me, False)  # type: ignore[assignment]
        yield "flag[me] = false"


peterson = Model(
    "peterson",
    "Peterson's mutual exclusion for two threads, looping forever",
    expect="holds",
)


@peterson.setup
def _peterson(s: Setup) -> Peterson:
    w = Peterson()
    s.actor("T0", peterson_thread, w, 0)
    s.actor("T1", peterson_thread, w, 1)
    return w


@peterson.invariant("mutual exclusion")
def _peterson_mutex(w: Peterson) -> bool:
    """At most one thread is in its critical section."""
    return w.in_critical <= 1


# -- A broken lock: test, then set, in two steps -------------------------------------------


class BrokenLock(Struct):
    locked: bool = False
    in_critical: int = 0


def broken_lock_thread(w: BrokenLock) -> Steps:
    await_(not w.locked)
    yield "test: lock is free"
    w.locked = True
    yield "set: lock = true"
    w.in_critical += 1
    yield "enter critical section"
    w.in_critical -= 1
    w.locked = False
    yield "unlock"


broken_lock = Model(
    "broken-lock",
    "A spin lock whose test and set are separate steps",
    expect="violates: mutual exclusion (shortest counterexample: 6 steps)",
)


@broken_lock.setup
def _broken_lock(s: Setup) -> BrokenLock:
    w = BrokenLock()
    s.actor("T0", broken_lock_thread, w)
    s.actor("T1", broken_lock_thread, w)
    return w


@broken_lock.invariant("mutual exclusion")
def _broken_lock_mutex(w: BrokenLock) -> bool:
    """At most one thread is in its critical section."""
    return w.in_critical <= 1


# -- Lost update: read / add / write on a shared counter -----------------------------------


class Counter(Struct):
    value: int = 0
    done: int = 0


def incrementer(w: Counter) -> Steps:
    seen = w.value
    yield "read counter"
    seen += 1
    yield "add one (in a register)"
    w.value = seen
    w.done += 1
    yield "write counter"


lost_update = Model(
    "lost-update",
    "Two threads increment a counter without a lock; one update can be lost",
    expect="violates: no lost update (final values are exactly {1, 2})",
)


@lost_update.setup
def _lost_update(s: Setup) -> Counter:
    w = Counter()
    s.actor("T0", incrementer, w)
    s.actor("T1", incrementer, w)
    return w


@lost_update.invariant("no lost update")
def _no_lost_update(w: Counter) -> bool:
    """Once both threads are done, the counter is 2."""
    return w.done < 2 or w.value == 2


# -- Dining philosophers ---------------------------------------------------------------------


class Table(Struct):
    forks: tuple[int | None, ...] = (None, None, None)
    meals: int = 0


def philosopher(w: Table, me: int, first: int, second: int) -> Steps:
    await_(w.forks[first] is None)
    w.forks = _with(w.forks, first, me)  # type: ignore[assignment]
    yield f"take fork {first}"
    await_(w.forks[second] is None)
    w.forks = _with(w.forks, second, me)  # type: ignore[assignment]
    yield f"take fork {second}"
    w.meals += 1
    w.forks = tuple(None if f == me else f for f in w.forks)
    yield "eat, put both forks down"


def _philosophers(ordered: bool) -> Model:
    name = "philosophers-ordered" if ordered else "philosophers"
    model = Model(
        name,
        "Three philosophers; each takes the lower-numbered fork first"
        if ordered
        else "Three philosophers; each takes the left fork, then the right",
        expect="holds" if ordered else "violates: deadlock (3 steps)",
    )

    @model.setup
    def setup(s: Setup) -> Table:
        w = Table()
        for i in range(3):
            left, right = i, (i + 1) % 3
            first, second = (min(left, right), max(left, right)) if ordered else (left, right)
            s.actor(f"P{i}", philosopher, w, i, first, second)
        return w

    return model


philosophers = _philosophers(ordered=False)
philosophers_ordered = _philosophers(ordered=True)


# -- A retry loop that spins while a flag is set ------------------------------------------


class Flag(Struct):
    busy: bool = True
    retries: int = 0


def retry_loop(w: Flag) -> Steps:
    while w.busy:
        yield "flag still set: retry"
    yield "flag clear: proceed"


def clear_flag(w: Flag) -> Steps:
    w.busy = False
    yield "clear flag"


def _retry(with_clearer: bool) -> Model:
    model = Model(
        "retry" if with_clearer else "retry-starved",
        "A retry loop spins while a flag is set"
        + ("; another thread clears it" if with_clearer else "; nobody clears it"),
        expect="holds" if with_clearer else "violates: progress: spinner (a lasso)",
    )

    @model.setup
    def setup(s: Setup) -> Flag:
        w = Flag()
        s.actor("spinner", retry_loop, w, must_finish=True)
        if with_clearer:
            s.actor("clearer", clear_flag, w)
        return w

    return model


retry = _retry(with_clearer=True)
retry_starved = _retry(with_clearer=False)

DEMOS: dict[str, Model] = {
    m.name: m
    for m in (
        peterson,
        broken_lock,
        lost_update,
        philosophers,
        philosophers_ordered,
        retry,
        retry_starved,
    )
}
