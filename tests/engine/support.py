"""Helpers shared by the engine tests: run an actor natively and compiled, side by side."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from typing import Any

from kvmsim.engine import Model, Setup, Struct
from kvmsim.engine.system import State, System

Steps = Generator[Any, Any, Any]


class Log(Struct):
    """A world that records what an actor did, in order."""

    events: tuple[Any, ...] = ()


def emit(w: Log, *items: Any) -> None:
    w.events = w.events + items


def run_native(func: Callable[..., Steps], *args: Any, **kwargs: Any) -> tuple[list[str], Any]:
    """Run the generator as plain Python: (step labels, events recorded)."""
    w = Log()
    labels = [
        label if isinstance(label, str) else repr(label) for label in func(w, *args, **kwargs)
    ]
    return labels, w.events


def single_actor_model(func: Callable[..., Steps], *args: Any, **kwargs: Any) -> Model:
    model = Model(f"single {func.__name__}")

    @model.setup
    def setup(s: Setup) -> Log:
        w = Log()
        s.actor("a", func, w, *args, **kwargs)
        return w

    return model


def run_compiled(func: Callable[..., Steps], *args: Any, **kwargs: Any) -> tuple[list[str], Any]:
    """Run the same function as the engine does, one step at a time: (labels, events)."""
    system = System(single_actor_model(func, *args, **kwargs))
    state: State = system.initial
    labels: list[str] = []
    while state[1][0] is not None:
        outs = list(system.successors_of(state, 0))
        assert len(outs) == 1, outs
        out = outs[0]
        assert out.kind == "ok", out
        assert out.state is not None
        labels.append(out.label)
        state = out.state
    assert labels.pop() == "return"  # the step that finishes the actor
    return labels, system.world.describe(state[0])["events"]


def assert_same(func: Callable[..., Steps], *args: Any, **kwargs: Any) -> Any:
    """The compiled actor yields the same labels and has the same effects as plain Python."""
    native = run_native(func, *args, **kwargs)
    compiled = run_compiled(func, *args, **kwargs)
    assert compiled == native
    return native[1]


def marked_line(func: Callable[..., Any], marker: str = "# <- here") -> int:
    """The absolute line number of the line of func's source that carries marker."""
    lines, start = inspect.getsourcelines(func)
    hits = [start + i for i, line in enumerate(lines) if marker in line]
    assert len(hits) == 1, f"{func.__name__} must mark exactly one line"
    return hits[0]
