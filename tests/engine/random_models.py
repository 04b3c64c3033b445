"""Random small models for property-based tests: a few actors over a few shared int fields.

An actor interprets a tuple of operations, one step each: assign, add modulo MOD, copy, wait
for a value (``await_``), pick a value (``choose``); ``loop`` repeats its program forever.
Invariants forbid a sum of two fields, so some models break them and some do not. Field
values stay below MOD, so every model's state space is small and finite.

``source(spec)`` writes the same model as a standalone model file (for the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from kvmsim.engine import Model, Setup, Struct, await_, choose

from .support import Steps

FIELDS = ("a", "b", "c")
MOD = 3

Op = tuple[str, str, Any]  # (operation, field, argument)


class Shared(Struct):
    a: int = 0
    b: int = 0
    c: int = 0


def program(w: Shared, ops: tuple[Op, ...], loop: bool) -> Steps:
    while True:
        i = 0
        while i < len(ops):
            op, field, arg = ops[i]
            if op == "set":
                setattr(w, field, arg)
            elif op == "add":
                setattr(w, field, (getattr(w, field) + arg) % MOD)
            elif op == "copy":
                setattr(w, field, getattr(w, arg))
            elif op == "await":
                await_(getattr(w, field) == arg)
            elif op == "choose":
                setattr(w, field, choose(arg, f"{field}="))
            yield f"{op} {field}"
            i += 1
        if not loop:
            return


@dataclass(frozen=True)
class Spec:
    """A random model: each actor's program and whether it loops; the forbidden sums."""

    actors: tuple[tuple[tuple[Op, ...], bool], ...]
    invariants: tuple[tuple[str, str, int], ...]  # field + field != value


def build(spec: Spec) -> Model:
    model = Model("random")

    @model.setup
    def setup(s: Setup) -> Shared:
        w = Shared()
        for i, (ops, loop) in enumerate(spec.actors):
            s.actor(f"T{i}", program, w, ops, loop)
        return w

    for f, g, total in spec.invariants:
        add_invariant(model, f, g, total)
    return model


def add_invariant(model: Model, f: str, g: str, total: int) -> None:
    @model.invariant(invariant_name(f, g, total))
    def inv(w: Shared) -> bool:
        return bool(getattr(w, f) + getattr(w, g) != total)


def invariant_name(f: str, g: str, total: int) -> str:
    return f"{f}+{g}!={total}"


def source(spec: Spec) -> str:
    """The model as a file ``kvmsim check`` can load (the same actors and properties)."""
    import inspect

    return "\n".join(
        [
            "from __future__ import annotations",
            "from kvmsim import Model, Setup, Struct, await_, choose",
            f"MOD = {MOD}",
            inspect.getsource(Shared),
            inspect.getsource(program),
            "model = Model('random')",
            "@model.setup",
            "def setup(s):",
            "    w = Shared()",
            *(
                f"    s.actor('T{i}', program, w, {ops!r}, {loop!r})"
                for i, (ops, loop) in enumerate(spec.actors)
            ),
            "    return w",
            *(
                f"@model.invariant({invariant_name(f, g, t)!r})\n"
                f"def inv{n}(w):\n    return w.{f} + w.{g} != {t}\n"
                for n, (f, g, t) in enumerate(spec.invariants)
            ),
        ]
    ).replace("Steps", "object")


fields = st.sampled_from(FIELDS)
values = st.integers(0, MOD - 1)
ops = st.one_of(
    st.tuples(st.just("set"), fields, values),
    st.tuples(st.just("add"), fields, st.integers(1, MOD - 1)),
    st.tuples(st.just("copy"), fields, fields),
    st.tuples(st.just("await"), fields, values),
    st.tuples(
        st.just("choose"), fields, st.lists(values, min_size=2, max_size=3, unique=True).map(tuple)
    ),
)
specs = st.builds(
    Spec,
    st.lists(
        st.tuples(st.lists(ops, min_size=1, max_size=4).map(tuple), st.booleans()),
        min_size=1,
        max_size=3,
    ).map(tuple),
    st.lists(st.tuples(fields, fields, st.integers(0, 2 * MOD - 2)), max_size=2, unique=True).map(
        tuple
    ),
)
