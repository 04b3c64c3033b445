"""Picklable recipes that rebuild a model in a worker process or on another machine.

A model cannot be sent to a worker (it holds functions and live objects), so the parallel
searches send this instead: a ``ModelRef`` (the KVM model by variant and scenario, a demo,
or a model file) that each worker turns back into the model. Paths are made absolute, as a
worker may run in another folder; on a Ray cluster every node needs the file at that path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .engine import Model
from .replay import ModelRef


def _absolute(spec: str) -> str:
    """A FILE.py[:NAME] spec with FILE made absolute; a built-in name unchanged."""
    from .cli import split_target

    path, name = split_target(spec)
    if not (path.endswith(".py") or os.sep in path or "/" in path or os.path.exists(path)):
        return spec
    path = os.path.abspath(path)
    return path if name is None else f"{path}:{name}"


@dataclass(frozen=True)
class ModelBuilder:
    """Call it to build the model ``ref`` names (as ``kvmsim replay`` rebuilds one)."""

    ref: ModelRef

    @staticmethod
    def of(ref: ModelRef) -> ModelBuilder:
        if ref.kind == "file":
            return ModelBuilder(ModelRef("file", os.path.abspath(ref.name), model=ref.model))
        if ref.kind == "kvm":
            return ModelBuilder(ModelRef("kvm", _absolute(ref.name), ref.scenario, extra=ref.extra))
        return ModelBuilder(ref)

    def __call__(self) -> Model:
        from .cli_replay import load_subject

        return load_subject(self.ref).model
