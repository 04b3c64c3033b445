"""Counterexample traces, rebuilt by replaying the recorded (actor, choices) path.

The search stores only how each state was first reached; a trace is recomputed from the
initial state when needed, so it carries everything a reader wants (labels, call stacks,
what each step changed) at no cost to the search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .system import State, System

Path = list[tuple[int, tuple[int, ...]]]


@dataclass(frozen=True)
class TraceStep:
    index: int
    actor: str
    lane: str
    label: str
    stack: tuple[str, ...]
    choices: tuple[str, ...]
    changes: tuple[tuple[str, Any, Any], ...]  # (path, before, after)
    line: str = ""
    kind: str = "ok"  # ok, assertion, error, property
    message: str = ""
    events: tuple[str, ...] = ()

    @property
    def function(self) -> str:
        return self.stack[-1] if self.stack else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "actor": self.actor,
            "lane": self.lane,
            "label": self.label,
            "stack": list(self.stack),
            "choices": list(self.choices),
            "changes": [
                {"var": var, "before": _jsonable(before), "after": _jsonable(after)}
                for var, before, after in self.changes
            ],
            "kind": self.kind,
            "message": self.message,
            "events": list(self.events),
        }


@dataclass
class Trace:
    steps: list[TraceStep] = field(default_factory=list)
    path: Path = field(default_factory=list)
    loop_start: int | None = None  # index of the first step of the cycle, for a lasso
    final: dict[str, Any] = field(default_factory=dict)
    initial: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.as_dict() for s in self.steps],
            "path": [[a, list(c)] for a, c in self.path],
            "loop_start": self.loop_start,
            "initial": {k: _jsonable(v) for k, v in self.initial.items()},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, frozenset):
        return sorted((_jsonable(v) for v in value), key=repr)
    return repr(value)


def replay(system: System, path: Path, loop_start: int | None = None) -> tuple[Trace, State]:
    """Re-run path from the initial state and describe every step."""
    state = system.initial
    before = system.world.describe(state[0])
    trace = Trace(path=list(path), loop_start=loop_start, initial=dict(before))
    for n, (actor, choices) in enumerate(path):
        out = system.step_with(state, actor, choices)
        spec = system.actors[actor]
        if out.kind != "ok" or out.state is None:
            trace.steps.append(
                TraceStep(
                    n,
                    spec.name,
                    spec.lane,
                    out.kind,
                    out.stack,
                    out.choices,
                    (),
                    out.line,
                    out.kind,
                    out.message,
                )
            )
            break
        after = system.world.describe(out.state[0])
        changes = tuple((k, before.get(k), v) for k, v in after.items() if before.get(k) != v)
        failed = (
            out.failures[0][1]
            if len(out.failures) == 1
            else "; ".join(f"{p}: {m}" for p, m in out.failures)
        )
        trace.steps.append(
            TraceStep(
                n,
                spec.name,
                spec.lane,
                out.label,
                out.stack,
                out.choices,
                changes,
                out.line,
                "property" if out.failures else "ok",
                failed,
                events=out.events,
            )
        )
        state, before = out.state, after
    trace.final = before
    return trace, state
