"""The model as a simulator: random executions, their cost figures and what they broke.

A run starts in the model's initial state and, at every step, picks one enabled transition
(an actor's next step under one combination of its choices) uniformly at random with a
seeded ``random.Random``: the same model, seed and step limit give the same run. It ends
when every actor has finished, when no actor can move but some have not finished (a
deadlock), when a step breaks a property (an event property reported with ``fail()``, a
failed assertion, an exception in the model) or reaches a state where an invariant is false,
or after ``max_steps`` steps: every property that step broke is reported. The run is then
replayed to describe each step (function, label, state changes, cost events).

Run ``k`` (counting from 0) of a simulation seeded ``s`` uses seed ``s + k``, so
``runs=1, seed=s + k`` repeats it alone. Liveness is not judged here: a run that stops at the step
limit has only not finished yet.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine import Model, System, Trace, replay
from .engine.trace import Path

# The cost events the KVM model notes, in the order reports list them, with their names.
COST_EVENTS: dict[str, str] = {
    "ipi": "IPIs",
    "flush_all": "all-context flushes",
    "flush_current": "single-context flushes",
    "remote_tlb_flush": "remote TLB flush requests",
    "pass": "outer-loop passes",
    "bail": "bails",
    "vm_enter": "VM-Enters",
    "reload_request": "reload requests",
    "reload_attempt": "reload attempts",
    "reload_retry": "reload retries",
    "fault_retry": "fault retries",
}

FINISHED = "finished"  # every actor finished
DEADLOCK = "deadlock"  # no actor can move, some have not finished
BROKEN = "broken"  # a property broke
STEP_LIMIT = "step limit"  # stopped after max_steps steps


@dataclass(frozen=True)
class Broken:
    """A property a run broke: at which step (0-based; an invariant: the step that reached
    the bad state) and how."""

    prop: str
    kind: str  # property | assertion | error | invariant | deadlock
    message: str
    step: int
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "property": self.prop,
            "kind": self.kind,
            "message": self.message,
            "step": self.step,
            "description": self.description,
        }


@dataclass
class Run:
    index: int
    seed: int
    end: str  # FINISHED | DEADLOCK | BROKEN | STEP_LIMIT
    trace: Trace
    costs: dict[str, int]
    broken: list[Broken] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # actors still running at the end

    @property
    def steps(self) -> int:
        return len(self.trace)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.index,
            "seed": self.seed,
            "end": self.end,
            "steps": self.steps,
            "costs": dict(self.costs),
            "broken": [b.as_dict() for b in self.broken],
            "unfinished": list(self.unfinished),
            "trace": self.trace.as_dict(),
        }


@dataclass
class Simulation:
    model: str
    seed: int
    max_steps: int
    runs: list[Run]

    @property
    def broken(self) -> list[str]:
        """The properties some run broke, each once, in the order first broken."""
        names: list[str] = []
        for run in self.runs:
            for b in run.broken:
                if b.prop not in names:
                    names.append(b.prop)
        return names

    def costs(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for run in self.runs:
            total.update(run.costs)
        return ordered_costs(total)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seed": self.seed,
            "max_steps": self.max_steps,
            "broken": self.broken,
            "costs": self.costs(),
            "runs": [r.as_dict() for r in self.runs],
        }


def ordered_costs(counts: Counter[str]) -> dict[str, int]:
    """Every known cost event (zero if it never happened), then any others, sorted."""
    out = {kind: counts.get(kind, 0) for kind in COST_EVENTS}
    for kind in sorted(counts):
        out.setdefault(kind, counts[kind])
    return out


def simulate(
    model: Model,
    *,
    seed: int = 0,
    runs: int = 1,
    max_steps: int = 1000,
    describe: Callable[[str], str] | None = None,
) -> Simulation:
    """runs random executions of model; describe(prop) -> str adds a sentence per property."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if max_steps < 0:
        raise ValueError(f"max_steps must be at least 0, got {max_steps}")
    system = System(model)
    descriptions = {p.name: p.description for p in model.properties}

    def sentence(prop: str) -> str:
        text = describe(prop) if describe is not None else ""
        return text or descriptions.get(prop, "")

    done = [run_once(system, k, seed + k, max_steps, sentence) for k in range(runs)]
    return Simulation(model.name, seed, max_steps, done)


def run_once(
    system: System, index: int, seed: int, max_steps: int, sentence: Callable[[str], str]
) -> Run:
    """One random execution from the initial state, seeded with seed."""
    rng = random.Random(seed)
    state = system.initial
    path: Path = []
    costs: Counter[str] = Counter()
    broken: list[Broken] = []
    end = STEP_LIMIT
    for prop, _desc in system.check_invariants(state):
        broken.append(Broken(prop, "invariant", f"invariant {prop!r} is false", -1, sentence(prop)))
    if broken:
        end = BROKEN
    while not broken and len(path) < max_steps:
        moves = [(a, c, o) for a, c, o in system.successors(state) if o.kind != "blocked"]
        if not moves:
            waiting = system.unfinished(state)
            if waiting and system.model.deadlock:
                end = DEADLOCK
                names = system.names()
                message = "no actor can move; waiting: " + ", ".join(
                    f"{n} at {system.location(state, names.index(n))}" for n in waiting
                )
                broken.append(
                    Broken("deadlock", "deadlock", message, len(path) - 1, sentence("deadlock"))
                )
            else:
                end = FINISHED
            break
        actor, choices, out = moves[rng.randrange(len(moves))]
        path.append((actor, choices))
        costs.update(out.events)
        if out.kind != "ok" or out.state is None:
            prop = {"property": out.prop, "assertion": "assertion"}.get(out.kind, "model error")
            broken.append(Broken(prop, out.kind, out.message, len(path) - 1, sentence(prop)))
            end = BROKEN
            break
        state = out.state
        # Event properties the step reported with fail(): the step itself completed.
        for prop, message in out.failures:
            broken.append(Broken(prop, "property", message, len(path) - 1, sentence(prop)))
        for prop, _desc in system.check_invariants(state):
            message = f"invariant {prop!r} is false"
            broken.append(Broken(prop, "invariant", message, len(path) - 1, sentence(prop)))
        if broken:
            end = BROKEN
    if end == STEP_LIMIT and not system.unfinished(state, include_daemons=True):
        end = FINISHED
    trace, _final = replay(system, path)
    unfinished = system.unfinished(state, include_daemons=True) if end != FINISHED else []
    return Run(index, seed, end, trace, ordered_costs(costs), broken, unfinished)
