"""The step compiler: every supported construct behaves as plain Python; the rest is refused.

Most tests run an actor twice, natively as a Python generator and compiled by the engine one
step at a time, and compare the labels it yields and the effects it has (``assert_same``).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmsim.engine import CompileError, Model, Setup, Struct, check, choose
from kvmsim.engine.compiler import compile_actor

from .support import Log, Steps, assert_same, emit, marked_line, run_compiled

# -- calls ----------------------------------------------------------------------------------


def leaf(w: Log, n: int) -> Steps:
    emit(w, ("leaf", n))
    yield f"leaf {n}"
    return n * 2


def middle(w: Log, n: int) -> Steps:
    a = yield from leaf(w, n)
    b = yield from leaf(w, a)
    return a + b


def relay(w: Log, n: int) -> Steps:
    return (yield from middle(w, n))


def no_yield_reached(w: Log, n: int) -> Steps:
    if n > 0:
        return n  # returns before its first yield: still a call, no step of its own
    yield "unreachable for n > 0"
    return -1


def nested_calls(w: Log) -> Steps:
    total = yield from middle(w, 1)
    emit(w, ("total", total))
    again = yield from relay(w, total)
    emit(w, ("again", again))
    quick = yield from no_yield_reached(w, 5)
    emit(w, ("quick", quick))
    yield from leaf(w, 0)  # return value dropped
    yield "end"


def test_nested_yield_from_with_return_values() -> None:
    events = assert_same(nested_calls)
    assert ("total", 6) in events and ("again", 36) in events and ("quick", 5) in events


def test_call_is_not_a_step_boundary() -> None:
    labels, _ = run_compiled(nested_calls)
    # one step per yield reached, whatever the call depth
    assert labels == ["leaf 1", "leaf 2", "leaf 6", "leaf 12", "leaf 0", "end"]


# -- loops ----------------------------------------------------------------------------------


def for_loops(w: Log, items: tuple[int, ...]) -> Steps:
    for i, x in enumerate(items):
        emit(w, ("item", i, x))
        yield f"item {x}"
        for y in (x, -x):  # nested yielding loop over a tuple
            emit(w, ("inner", y))
            yield "inner"
    for _x in range(0):
        yield "never"
    emit(w, ("after", len(items)))
    yield "done"


@pytest.mark.parametrize("items", [(), (1,), (3, 1, 2)])
def test_for_loops_over_tuples(items: tuple[int, ...]) -> None:
    assert_same(for_loops, items)


def break_continue(w: Log, items: tuple[int, ...]) -> Steps:
    total = 0
    for x in items:
        if x == 0:
            continue  # plain continue in a yielding loop
        if x < 0:
            if x < -5:  # nested plain if
                emit(w, ("big negative", x))
                break
            continue
        total += x
        yield f"add {x}"
        if total > 10:
            emit(w, "over ten")
            break
    i = 0
    while True:
        i += 1
        if i % 2:
            continue
        yield f"even {i}"
        if i >= 4:
            break
    emit(w, ("total", total, "i", i))
    yield "done"


@pytest.mark.parametrize(
    "items",
    [(), (0, 0), (1, 2, 3), (4, -1, 5, -9, 7), (6, 6, 6), (-1, 0, -2)],
)
def test_break_and_continue(items: tuple[int, ...]) -> None:
    assert_same(break_continue, items)


def nested_loops(w: Log, rows: tuple[tuple[int, ...], ...]) -> Steps:
    for r, row in enumerate(rows):
        for x in row:
            if x < 0:
                break  # leaves only the inner loop
            if x == 0:
                continue
            emit(w, (r, x))
            yield f"cell {r},{x}"
        for x in row:  # for-else without a yield inside is plain Python
            if x > 6:
                break
        else:
            emit(w, ("no seven", r))
        n = 0
        while n < len(row):  # a plain loop between yields, with its own break
            if row[n] > 5:
                break
            n += 1
        emit(w, ("scanned", r, n))
        if r == 2:
            break
        yield "next row"


@given(
    st.lists(
        st.lists(st.integers(min_value=-2, max_value=7), max_size=4).map(tuple), max_size=4
    ).map(tuple)
)
@settings(max_examples=60, deadline=None)
def test_loops_match_python(rows: tuple[tuple[int, ...], ...]) -> None:
    assert_same(nested_loops, rows)


@given(st.lists(st.integers(min_value=-8, max_value=8), max_size=6).map(tuple))
@settings(max_examples=60, deadline=None)
def test_break_continue_match_python(items: tuple[int, ...]) -> None:
    assert_same(break_continue, items)


def kept_across_break(w: Log, stop_at: int) -> Steps:
    x = 42
    yield "x = 42"
    n = 0
    while True:
        yield "loop"
        n += 1
        if n >= stop_at:
            break  # leaves with the x assigned before the loop ...
        x = n  # ... or with this one; the break must keep the old x alive
    emit(w, ("x", x))
    yield "done"


@pytest.mark.parametrize("stop_at", [1, 2, 3])
def test_value_needed_after_break_is_kept(stop_at: int) -> None:
    # Regression: liveness treated `x = n` as killing x for the whole block although the
    # `break` before it leaves the block with the old value still needed.
    assert assert_same(kept_across_break, stop_at) == (("x", 42 if stop_at == 1 else stop_at - 1),)


def walrus_in_condition(w: Log, flag: bool) -> Steps:
    x = 1
    yield "x = 1"
    y = (x := 2) if flag else 0  # x is assigned only when flag holds
    yield "maybe x = 2"
    emit(w, x, y)
    yield "done"


@pytest.mark.parametrize("flag", [False, True])
def test_conditional_walrus_does_not_kill(flag: bool) -> None:
    assert_same(walrus_in_condition, flag)


# -- plain code between yields ---------------------------------------------------------------


def early_return(w: Log, n: int) -> Steps:
    yield "start"
    for i in range(10):  # a plain loop: return from inside it ends the actor
        if i == n:
            emit(w, ("returned at", i))
            return
    emit(w, "no early return")
    if n < 0:
        return
    yield "end"


@pytest.mark.parametrize("n", [-1, 3, 20])
def test_early_return_in_plain_code(n: int) -> None:
    assert_same(early_return, n)


def comprehensions(w: Log, k: int) -> Steps:
    xs = tuple(i * k for i in range(4))
    yield "xs"
    x = 100
    ys = tuple(x for x in xs if x > k)  # the comprehension's x is its own
    pairs = {x: y for x, y in zip(xs, ys)}
    total = sum(v for v in xs) + sum([k for _ in ys])
    yield "ys"
    emit(w, xs, ys, tuple(sorted(pairs.items())), total, x)
    big = (lambda limit: tuple(v for v in xs if v > limit))(k * 2)
    emit(w, big)
    yield "done"


@pytest.mark.parametrize("k", [0, 1, 3])
def test_comprehensions_and_lambdas_use_locals(k: int) -> None:
    assert_same(comprehensions, k)


def local_helpers(w: Log, n: int) -> Steps:
    x = 10

    def scale(x: int) -> int:  # its parameter shadows the actor's x
        return x * n

    class Pair:
        left = n

    yield "defined"
    import math as m
    from math import gcd

    emit(w, scale(3), x, Pair.left, m.floor(2.5), gcd(12, n))
    yield "done"


def test_nested_def_class_and_import() -> None:
    # Regression: a nested def bound its name in the step function only (the frame's slot
    # stayed UNSET), and the actor's locals were substituted for its parameters.
    assert assert_same(local_helpers, 4) == (12, 10, 4, math.floor(2.5), 4)


def annotated_locals(w: Log, n: int) -> Steps:
    total: int = n
    names: dict[int, str] = {}
    later: str  # an annotation alone assigns nothing  # noqa: F842
    yield "start"
    for i in range(total):
        names[i] = str(i)
    pairs: tuple[tuple[int, str], ...] = tuple(sorted(names.items()))
    emit(w, total, pairs)
    yield "done"


def test_annotated_assignments() -> None:
    # Regression: `x: T = v` on a frame local compiled to an invalid annotated subscript.
    assert assert_same(annotated_locals, 2) == (2, ((0, "0"), (1, "1")))


# -- closures and arguments ------------------------------------------------------------------


def make_counter(step: int, prefix: str) -> Any:
    def count(w: Log, times: int) -> Steps:
        for i in range(times):
            emit(w, f"{prefix}{i * step}")
            yield f"{prefix} {i}"

    return count


def test_closures() -> None:
    by_two, by_ten = make_counter(2, "a"), make_counter(10, "b")
    assert by_two.__code__ is by_ten.__code__  # one compiled program, two sets of cells
    assert assert_same(by_two, 3) == ("a0", "a2", "a4")
    assert assert_same(by_ten, 2) == ("b0", "b10")


def with_defaults(w: Log, a: int, b: int = 2, c: int = 3) -> Steps:
    emit(w, (a, b, c))
    yield "args"
    r = yield from callee_kw(w, a, scale=c)
    emit(w, r)
    r = yield from callee_kw(w, b)
    emit(w, r)


def callee_kw(w: Log, x: int, scale: int = 1, offset: int = 0) -> Steps:
    yield "callee"
    return x * scale + offset


@pytest.mark.parametrize(
    "args,kwargs",
    [((1,), {}), ((1, 5), {}), ((1,), {"c": 10}), ((), {"a": 7, "b": 8})],
)
def test_default_and_keyword_args(args: tuple[int, ...], kwargs: dict[str, int]) -> None:
    assert_same(with_defaults, *args, **kwargs)


def test_defaults_belong_to_each_function_object() -> None:
    # Regression: the compiled program (shared by every function with the same code)
    # remembered the defaults of the first function compiled.
    funcs = []
    for i in range(3):

        def numbered(w: Log, k: int = i) -> Steps:
            emit(w, k)
            yield "numbered"

        funcs.append(numbered)
    assert [run_compiled(f)[1] for f in funcs] == [(0,), (1,), (2,)]


def test_wrong_arguments_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="missing argument 'a'"):
        run_compiled(with_defaults)
    with pytest.raises(TypeError, match="unexpected argument 'd'"):
        run_compiled(with_defaults, 1, d=4)


# -- dead locals -----------------------------------------------------------------------------


class Total(Struct):
    total: int = 0


def dead_temporary(w: Total) -> Steps:
    tmp = choose((1, 2), "tmp")
    w.total += 0 * tmp
    yield "computed"  # tmp is dead from here on
    yield "done"


def live_temporary(w: Total) -> Steps:
    tmp = choose((1, 2), "tmp")
    yield "computed"  # tmp is still needed
    w.total = w.total + 0 * tmp
    yield "done"


def looping_temporary(w: Total) -> Steps:
    for _ in range(2):
        tmp = choose((1, 2, 3), "tmp")
        w.total += tmp - tmp
        yield "round"


def _temp_model(actor: Any) -> Model:
    model = Model(f"temp {actor.__name__}")

    @model.setup
    def setup(s: Setup) -> Total:
        w = Total()
        s.actor("a", actor, w)
        return w

    return model


@pytest.mark.parametrize(
    "actor,states",
    [
        # init, after "computed" (both choices merge), after "done", finished
        (dead_temporary, 4),
        # the two choices stay apart until tmp dies after its use
        (live_temporary, 1 + 2 + 1 + 1),
        # init, after round 1, after round 2, finished: the loop's counter differs, tmp not
        (looping_temporary, 4),
    ],
)
def test_dead_locals_are_dropped(actor: Any, states: int) -> None:
    result = check(_temp_model(actor))
    assert result.holds
    assert result.stats.states == states


def test_liveness_sets() -> None:
    prog = compile_actor(dead_temporary)
    slot = prog.local_names.index("tmp")
    assert all(slot not in live for live in prog.live[1:])
    prog = compile_actor(live_temporary)
    assert slot in prog.live[1]


# -- refused constructs ------------------------------------------------------------------------


def yield_in_try(w: Log) -> Steps:
    try:
        yield "in try"  # <- here
    finally:
        pass


def yield_in_with(w: Log) -> Steps:
    with open(__file__):
        x = 1
        yield x  # <- here


def yield_in_if_test(w: Log) -> Steps:
    if (yield "test"):  # <- here
        pass


def yield_in_expression(w: Log) -> Steps:
    emit(w, 1)
    emit(w, (yield "arg"))  # <- here


def yield_value_assigned(w: Log) -> Steps:
    yield "first"
    x = yield "label"  # <- here
    emit(w, x)


def yield_from_not_a_call(w: Log) -> Steps:
    gen = leaf(w, 1)
    yield from gen  # <- here


def yield_from_starred(w: Log) -> Steps:
    args = (w, 1)
    yield from leaf(*args)  # <- here


def yield_in_augassign(w: Log) -> Steps:
    total = 0
    total += yield from leaf(w, 1)  # <- here


def yield_in_while_else(w: Log) -> Steps:
    while False:  # <- here
        yield "body"
    else:
        pass


def yield_in_for_else(w: Log) -> Steps:
    for _ in ():  # <- here
        yield "body"
    else:
        pass


COUNTER = 0


def uses_global(w: Log) -> Steps:
    global COUNTER  # <- here
    COUNTER = 1
    yield "x"


def multi_line_statement(w: Log) -> Steps:
    emit(
        w,
        1,
        (yield "deep"),  # <- here
    )


@pytest.mark.parametrize(
    "func,words",
    [
        (yield_in_try, "`try`"),
        (yield_in_with, "`with`"),
        (yield_in_if_test, "if-condition"),
        (yield_in_expression, "yield is allowed only as"),
        (yield_value_assigned, "yield is allowed only as"),
        (yield_from_not_a_call, "must call a function directly"),
        (yield_from_starred, "must call a function directly"),
        (yield_in_augassign, "yield is allowed only as"),
        (yield_in_while_else, "while ... else"),
        (yield_in_for_else, "for ... else"),
        (uses_global, "`global`"),
        (multi_line_statement, "yield is allowed only as"),
    ],
)
def test_unsupported_constructs_name_file_and_line(func: Any, words: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_actor(func)
    err = info.value
    line = marked_line(func)
    assert (err.filename, err.lineno) == (__file__, line)
    assert str(err).startswith(f"{__file__}:{line}: in {func.__qualname__}: ")
    assert words in str(err)


def not_a_generator(w: Log) -> None:
    emit(w, 1)


def test_actor_must_be_a_generator() -> None:
    with pytest.raises(CompileError, match="must be a generator function"):
        compile_actor(not_a_generator)


def test_compile_error_surfaces_at_setup() -> None:
    model = Model("bad")

    @model.setup
    def setup(s: Setup) -> Log:
        w = Log()
        s.actor("a", yield_in_try, w)
        return w

    with pytest.raises(CompileError, match=f"{marked_line(yield_in_try)}: in yield_in_try"):
        check(model)


def loop_else_jumps(w: Log, rows: tuple[tuple[int, ...], ...]) -> Steps:
    for row in rows:
        yield "row"
        for x in row:  # a plain loop whose else leaves the enclosing, yielding loop
            if x < 0:
                break
        else:
            emit(w, ("all non-negative", row))
            continue
        emit(w, ("negative in", row))
        if len(row) > 2:
            for _ in row:
                pass
            else:
                break
    emit(w, "end")


@pytest.mark.parametrize(
    "rows", [(), ((1, 2), (-1,), (3,)), ((-1, 2, 3), (4,)), ((0,), (1, -1, 2, 5))]
)
def test_plain_loop_else_with_break_and_continue(rows: tuple[tuple[int, ...], ...]) -> None:
    # Regression: the `else:` of a plain nested loop was treated as part of that loop, so
    # its break/continue (which belong to the outer loop) did not compile.
    assert_same(loop_else_jumps, rows)


def deletes(w: Log, n: int) -> Steps:
    a, b, c = n, n + 1, n + 2
    items = {1: "x", 2: "y"}
    del b, items[1]
    yield "deleted"
    emit(w, a, c, tuple(items))


def test_del_of_a_local_keeps_the_other_slots() -> None:
    # Regression: `del b` deleted an item of the frame's locals list, shifting c into b's slot.
    assert assert_same(deletes, 5) == (5, 7, (2,))
