"""The partitioned search's workers as partitions in this one process.

The levels run exactly as on separate workers (claims, grants and shipped encodings are
handed over as lists, nothing is pickled), one partition after another. It serves the tests,
which can force the share of claims shipped, and the benchmark of what N workers could gain
if the exchanges between processes cost nothing (each partition's CPU seconds are kept).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .model import Model
from .partition import Entry, LevelReport, Node, Partition, Parts, SearchSpec


class InlineCluster:
    """N partitions, each with its own model (a model may hold state), in this process."""

    def __init__(self, models: list[Model], spec: SearchSpec, ship: float | None = None) -> None:
        self.parts = [Partition(i, m, spec) for i, m in enumerate(models)]
        self.ship = ship  # a share every worker ships at every level, instead of the policy's
        self.cpu = [0.0] * len(models)

    def _each(self, step: Callable[[Partition], Any]) -> list[Any]:
        out = []
        for i, part in enumerate(self.parts):
            start = time.process_time()
            out.append(step(part))
            self.cpu[i] += time.process_time() - start
        return out

    def seed(self, w: int, fp: int, parts: Parts) -> LevelReport:
        return self.parts[w].seed(fp, parts)

    def level(self, depth: int, ship: list[float]) -> list[LevelReport]:
        n = len(self.parts)
        shares = iter(ship if self.ship is None else [self.ship] * n)
        expanded = self._each(lambda p: p.expand(depth, next(shares)))
        settled = self._each(lambda p: p.settle([expanded[w][0][p.index] for w in range(n)]))
        held = self._each(lambda p: p.hold([settled[w][0][p.index] for w in range(n)]))
        reports: list[LevelReport] = []
        for w in range(n):
            report = expanded[w][1]
            report.merge(settled[w][1])
            report.merge(held[w])
            report.cpu = self.cpu[w]
            reports.append(report)
        return reports

    def entry(self, w: int, fp: int) -> Entry:
        return self.parts[w].entry(fp)

    def graph(self, w: int) -> dict[int, Node]:
        return self.parts[w].take_graph()

    def close(self) -> None:
        pass  # the partitions stay for the caller to inspect
