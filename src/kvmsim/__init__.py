"""kvmsim: is this KVM patch race-free, and what does it cost?"""

from .engine import Model, Options, Result, Setup, Struct, await_, check, choose, maybe

__version__ = "0.1.0"

__all__ = ["Model", "Options", "Result", "Setup", "Struct", "await_", "check", "choose", "maybe"]
