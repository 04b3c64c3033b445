"""Primitives a model calls inside a step: block on a condition, choose nondeterministically.

Both work by re-execution. A step always starts from a stored state, so the explorer can run
it as often as it likes: ``await_`` abandons a step whose condition is false (the actor is
disabled in that state, and nothing it did in the step survives), and ``choose`` asks the
explorer to run the step once per option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class Blocked(Exception):
    """Raised by await_ when the actor cannot take this step in this state."""


class NeedChoice(Exception):
    def __init__(self, options: int, label: str) -> None:
        super().__init__(options)
        self.options = options
        self.label = label


class PropertyFailure(Exception):
    """Raised by fail(): a named property is violated by this step."""

    def __init__(self, prop: str, message: str) -> None:
        super().__init__(f"{prop}: {message}")
        self.prop = prop
        self.message = message


class _Script:
    """The choices a step takes, fixed by the explorer before it runs the step."""

    __slots__ = ("choices", "pos", "made", "events", "failures", "actor")

    def __init__(self) -> None:
        self.choices: tuple[int, ...] = ()
        self.pos = 0
        self.made: list[str] = []
        self.events: list[str] = []
        self.failures: list[tuple[str, str]] = []
        self.actor = ""

    def reset(self, choices: tuple[int, ...]) -> None:
        self.choices = choices
        self.pos = 0
        # Fresh lists only where the last step left something: outcomes copy them.
        if self.made:
            self.made = []
        if self.events:
            self.events = []
        if self.failures:
            self.failures = []


SCRIPT = _Script()


def await_(condition: bool) -> None:
    """Take this step only in states where condition holds; otherwise the actor waits.

    Call it at the start of a step (before any effect). A waiting actor costs the explorer
    nothing: it is simply not enabled, as a PlusCal ``await`` or a SPIN guard.
    """
    if not condition:
        raise Blocked


def choose(options: Sequence[T], label: str = "") -> T:
    """Return one of options; the explorer follows every one of them.

    label names the choice in traces (e.g. ``choose((True, False), "gup fails")``).
    """
    if not options:
        raise Blocked
    if len(options) == 1:
        return options[0]
    s = SCRIPT
    if s.pos == len(s.choices):
        raise NeedChoice(len(options), label)
    index = s.choices[s.pos]
    s.pos += 1
    value = options[index]
    s.made.append(f"{label}={value!r}" if label else repr(value))
    return value


def fail(prop: str, message: str) -> None:
    """Report that this step violates the named property (checked where it happens).

    For properties about an event rather than a state (e.g. "never VM-Enter with a request
    pending"): the model checks the condition at the event and calls fail() if it is false.
    The step still completes, so that what the violation leads to is explored too (a later,
    worse property may break only because of it).
    """
    if all(p != prop for p, _ in SCRIPT.failures):
        SCRIPT.failures.append((prop, message))


def current_actor() -> str:
    """The name of the actor taking the current step (for ghost bookkeeping in models)."""
    return SCRIPT.actor


def note(event: str) -> None:
    """Record a cost event (a TLB flush, an IPI...) on this step; it is not part of the state."""
    SCRIPT.events.append(event)


def maybe(label: str = "") -> bool:
    """Shorthand for choose((False, True), label): an environment event may or may not occur."""
    return choose((False, True), label)


def describe_choice(value: Any) -> str:
    return repr(value)
