"""A model: a setup that builds the shared world and spawns actors, plus named properties.

>>> model = Model("counter")
>>> @model.setup
... def setup(s: Setup) -> Shared:
...     shared = Shared()
...     s.actor("t0", incrementer, shared)
...     s.actor("t1", incrementer, shared)
...     return shared
>>> @model.invariant("never above two")
... def bounded(shared: Shared) -> bool:
...     return shared.counter <= 2
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .compiler import compile_actor


@dataclass(frozen=True)
class ActorSpec:
    name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    must_finish: bool = False
    daemon: bool = False
    lane: str = ""  # the column a report draws this actor in (a CPU); defaults to the name


@dataclass(frozen=True)
class Property:
    """A named property. kind: invariant, sometimes (reachability witness), or an engine check."""

    name: str
    kind: str
    check: Callable[[Any], bool] | None
    description: str
    required: bool = True  # sometimes: an unreached witness is a violation (vacuity guard)


class Setup:
    """Handed to the model's setup function to spawn actors."""

    def __init__(self) -> None:
        self.actors: list[ActorSpec] = []

    def actor(
        self,
        name: str,
        func: Callable[..., Any],
        *args: Any,
        must_finish: bool = False,
        daemon: bool = False,
        lane: str = "",
        **kwargs: Any,
    ) -> None:
        """Spawn an actor running the generator function func(*args, **kwargs).

        must_finish: a progress property: under weak fairness this actor always finishes.
        daemon: this actor may wait forever without that being a deadlock.
        """
        if any(a.name == name for a in self.actors):
            raise ValueError(f"two actors are named {name!r}")
        compile_actor(func)
        self.actors.append(
            ActorSpec(
                name, func, args, tuple(sorted(kwargs.items())), must_finish, daemon, lane or name
            )
        )


@dataclass
class Model:
    """A checkable model. Properties are checked on every reachable state."""

    name: str
    description: str = ""
    expect: str = ""  # documented expected verdict, e.g. "holds" or "violates: mutual exclusion"
    deadlock: bool = True  # report states where no actor can move and some have not finished
    _setup: Callable[[Setup], Any] | None = None
    properties: list[Property] = field(default_factory=list)
    state_cost: Callable[[Any], Mapping[str, int]] | None = None
    origin: str = field(default="", repr=False, compare=False)  # file:line of Model(...)

    def __post_init__(self) -> None:
        if not self.origin:
            self.origin = _caller_location()

    def setup(self, func: Callable[[Setup], Any]) -> Callable[[Setup], Any]:
        """Decorator: func(setup) builds the world, spawns actors and returns the root object."""
        self._setup = func
        return func

    def cost(self, func: Callable[[Any], Mapping[str, int]]) -> Callable[[Any], Mapping[str, int]]:
        """Decorator: costs charged to every transition leaving a state (e.g. "a vCPU is kept
        out of the guest": one step for each such vCPU). Step costs come from note()."""
        self.state_cost = func
        return func

    def invariant(
        self, name: str, description: str = ""
    ) -> Callable[[Callable[[Any], bool]], Callable[[Any], bool]]:
        """Decorator: a predicate on the root object that must hold in every reachable state."""

        def register(func: Callable[[Any], bool]) -> Callable[[Any], bool]:
            self._add(
                Property(name, "invariant", func, description or (func.__doc__ or "").strip())
            )
            return func

        return register

    def sometimes(
        self, name: str, description: str = "", required: bool = True
    ) -> Callable[[Callable[[Any], bool]], Callable[[Any], bool]]:
        """Decorator: a predicate that must hold in at least one reachable state (not vacuous).

        With required=False it is only reported (reached or not), never a violation.
        """

        def register(func: Callable[[Any], bool]) -> Callable[[Any], bool]:
            self._add(
                Property(
                    name,
                    "sometimes",
                    func,
                    description or (func.__doc__ or "").strip(),
                    required,
                )
            )
            return func

        return register

    def _add(self, prop: Property) -> None:
        if any(p.name == prop.name for p in self.properties):
            raise ValueError(f"two properties are named {prop.name!r}")
        self.properties.append(prop)

    def build(self) -> tuple[Any, list[ActorSpec]]:
        if self._setup is None:
            raise ValueError(
                f"{self.origin}: model {self.name!r} has no setup; decorate the function that "
                "builds its state and spawns its actors with @model.setup"
            )
        s = Setup()
        root = self._setup(s)
        if not s.actors:
            code = getattr(self._setup, "__code__", None)
            where = f"{code.co_filename}:{code.co_firstlineno}: " if code is not None else ""
            raise ValueError(
                f"{where}model {self.name!r} spawns no actors: its setup must call "
                "s.actor(NAME, GENERATOR_FUNCTION, ARGS...) at least once"
            )
        return root, s.actors

    @property
    def invariants(self) -> list[Property]:
        return [p for p in self.properties if p.kind == "invariant"]

    @property
    def sometimes_props(self) -> list[Property]:
        return [p for p in self.properties if p.kind == "sometimes"]


def _caller_location() -> str:
    """file:line of the code outside this module (and dataclass machinery) that called us."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in (__file__, "<string>"):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
