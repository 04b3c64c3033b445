"""kvmsim: is this KVM patch race-free, and what does it cost?

The engine's names (``from kvmsim import Model, Struct, ...``) are loaded on first use, so
that importing a submodule on its own (the pytest plugin, at every pytest start-up) stays
cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Model, Options, Result, Setup, Struct, await_, check, choose, maybe

__version__ = "0.1.0"

__all__ = ["Model", "Options", "Result", "Setup", "Struct", "await_", "check", "choose", "maybe"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
