"""Searches in several processes or on Ray: which one runs for which options.

``explore.check`` hands over here when ``Options.workers`` is above one, the mode is
``swarm`` or the backend is Ray. Breadth-first search becomes the hash-partitioned,
level-synchronous search of ``partition`` (results identical to one worker); ``swarm`` runs
independent seeded random runs (``swarm``). Depth-first search and single random runs have
no parallel form: asking for one is an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Model

if TYPE_CHECKING:
    from .explore import Options, Result

BACKENDS = ("local", "ray")


def parallel_check(model: Model, opt: Options) -> Result:
    if opt.backend not in BACKENDS:
        raise ValueError(f"unknown backend {opt.backend!r} (local or ray)")
    if opt.workers < 1:
        raise ValueError(f"workers must be at least 1, got {opt.workers}")
    if opt.mode == "swarm":
        from .swarm import swarm_check

        result: Result = swarm_check(model, opt)
        return result
    if opt.mode != "bfs":
        raise ValueError(
            f"mode {opt.mode!r} has no parallel form: use bfs (partitioned) or swarm "
            "with several workers"
        )
    from .parallel_bfs import partitioned_check

    return partitioned_check(model, opt)
