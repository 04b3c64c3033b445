"""kvmsim's domain-free model-checking engine.

Actors are generator functions over shared ``Struct`` objects; each ``yield`` ends an atomic
step. ``check`` explores every interleaving (breadth-first, depth-first, or random runs) and
returns a ``Result`` with statistics and the shortest counterexample per violated property.
"""

from .compiler import CompileError
from .explore import Options, Progress, Result, Stats, Violation, check
from .model import Model, Setup
from .runtime import await_, choose, current_actor, fail, maybe, note
from .system import System
from .trace import Trace, TraceStep, replay
from .world import ModelError, Struct

__all__ = [
    "CompileError",
    "Model",
    "ModelError",
    "Options",
    "Progress",
    "Result",
    "Setup",
    "Stats",
    "Struct",
    "System",
    "Trace",
    "TraceStep",
    "Violation",
    "await_",
    "check",
    "choose",
    "current_actor",
    "fail",
    "maybe",
    "note",
    "replay",
]
