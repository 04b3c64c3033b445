"""The partitioned search and the swarm on Ray: ``pip install 'kvmsim[ray]'``.

Each worker is a Ray actor that builds the model from the search's builder (so kvmsim, and
any model file at the same absolute path, must be present on every node). Within a level,
the claims and grants the workers send each other travel as Ray objects straight from actor
to actor: ``expand`` returns one object per owner, each owner's ``settle`` takes its share of
everyone's claims and returns one object of grants per worker, and each worker's ``hold``
takes its grants. Ray is imported only here, and only when asked for.

Without an address a local Ray instance is started for the search (and stopped after it);
when Ray is already initialised in this process (as the tests do), that instance is used.
"""

from __future__ import annotations

import os
from typing import Any

from .model import Model
from .partition import Entry, LevelReport, Node, Partition, Parts, SearchSpec
from .swarm import Chunk, ChunkResult, SwarmRunner
from .workers import Builder


class RayMissing(RuntimeError):
    """Ray was asked for but is not installed."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissing(
            "the Ray backend needs Ray: pip install 'kvmsim[ray]' (or pip install ray)"
        ) from None
    return ray


class _Session:
    """Ray, initialised for this search unless it already was (then left running)."""

    def __init__(self, address: str | None, workers: int, builder: Builder | None) -> None:
        if builder is None:
            raise ValueError("the Ray backend needs a model builder (Options.builder)")
        self.ray = _ray()
        self.owned = not self.ray.is_initialized()
        if self.owned:
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = max(workers, os.cpu_count() or 1)
            self.ray.init(**kwargs)
        cpus = self.ray.cluster_resources().get("CPU", 0)
        if cpus < workers:
            self.close()
            raise ValueError(f"the Ray cluster has {cpus:g} CPUs: {workers} workers need one each")

    def get(self, ref: Any) -> Any:
        """ray.get, with a worker's exception raised as itself (as one process raises it)."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause: BaseException = exc
            while isinstance(cause, self.ray.exceptions.RayTaskError) and cause.cause:
                cause = cause.cause
            raise cause from None

    def kill(self, actors: list[Any]) -> None:
        for actor in actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


class PartitionWorker:
    """A Ray actor holding one partition (wrapped with ray.remote when the cluster starts)."""

    def __init__(self, index: int, builder: Builder, spec: SearchSpec) -> None:
        self.index, self.builder, self.spec = index, builder, spec

    def start(self) -> None:
        """Build the model (not in __init__: an error there would hide the model's own)."""
        self.part = Partition(self.index, self.builder(), self.spec)

    def seed(self, fp: int, parts: Parts) -> LevelReport:
        return self.part.seed(fp, parts)

    def expand(self, depth: int, ship: float) -> tuple[Any, ...]:
        outgoing, report = self.part.expand(depth, ship)
        return (*outgoing, report)

    def settle(self, *claims: Any) -> tuple[Any, ...]:
        grants, report = self.part.settle(list(claims))
        return (*grants, report)

    def hold(self, *grants: Any) -> LevelReport:
        return self.part.hold(list(grants))

    def entry(self, fp: int) -> Entry:
        return self.part.entry(fp)

    def take_graph(self) -> dict[int, Node]:
        return self.part.take_graph()


class RayCluster:
    """The partitioned search's workers as Ray actors."""

    def __init__(
        self, model: Model, builder: Builder | None, spec: SearchSpec, address: str | None
    ) -> None:
        self.session = _Session(address, spec.workers, builder)
        ray = self.session.ray
        self.n = spec.workers
        actor = ray.remote(num_cpus=1, max_restarts=0)(PartitionWorker)
        self.actors = [actor.remote(w, builder, spec) for w in range(self.n)]
        started = [a.start.remote() for a in self.actors]
        try:
            for ref in started:
                self.session.get(ref)
        except BaseException:
            self.close()
            raise

    def seed(self, w: int, fp: int, parts: Parts) -> LevelReport:
        report: LevelReport = self.session.get(self.actors[w].seed.remote(fp, parts))
        return report

    def level(self, depth: int, ship: list[float]) -> list[LevelReport]:
        n, actors = self.n, self.actors
        outs = [a.expand.options(num_returns=n + 1).remote(depth, s) for a, s in zip(actors, ship)]
        settled = [
            actors[v].settle.options(num_returns=n + 1).remote(*[outs[w][v] for w in range(n)])
            for v in range(n)
        ]
        held = [actors[v].hold.remote(*[settled[w][v] for w in range(n)]) for v in range(n)]
        reports: list[LevelReport] = [self.session.get(out[n]) for out in outs]
        for report, s_ref, h_ref in zip(reports, settled, held):
            report.merge(self.session.get(s_ref[n]))
            report.merge(self.session.get(h_ref))
        return reports

    def entry(self, w: int, fp: int) -> Entry:
        entry: Entry = self.session.get(self.actors[w].entry.remote(fp))
        return entry

    def graph(self, w: int) -> dict[int, Node]:
        graph: dict[int, Node] = self.session.get(self.actors[w].take_graph.remote())
        return graph

    def close(self) -> None:
        self.session.kill(self.actors)
        self.session.close()


class SwarmWorker:
    """A Ray actor running swarm chunks on its own copy of the model."""

    def __init__(self, builder: Builder) -> None:
        self.builder = builder
        self.runner: SwarmRunner | None = None

    def run_chunk(self, chunk: Chunk) -> ChunkResult:
        if self.runner is None:  # built here, not in __init__, whose errors Ray hides
            self.runner = SwarmRunner(self.builder())
        return self.runner.run_chunk(chunk)


class RaySwarmPool:
    """Swarm chunks on Ray actors, each given to the actor with the fewest in flight."""

    def __init__(
        self, model: Model, builder: Builder | None, workers: int, address: str | None
    ) -> None:
        self.session = _Session(address, workers, builder)
        actor = self.session.ray.remote(num_cpus=1, max_restarts=0)(SwarmWorker)
        self.actors = [actor.remote(builder) for _ in range(workers)]
        self.load = [0] * workers
        self.pending: dict[Any, int] = {}  # ref -> actor
        self.in_flight = 0
        self.closed = False

    def submit(self, chunk: Chunk) -> None:
        w = min(range(len(self.actors)), key=lambda i: self.load[i])
        self.pending[self.actors[w].run_chunk.remote(chunk)] = w
        self.load[w] += 1
        self.in_flight += 1

    def results(self, timeout: float) -> list[ChunkResult | BaseException]:
        if not self.pending:
            return []
        ready, _ = self.session.ray.wait(
            list(self.pending), num_returns=len(self.pending), timeout=timeout
        )
        got: list[ChunkResult | BaseException] = []
        for ref in ready:
            self.load[self.pending.pop(ref)] -= 1
            self.in_flight -= 1
            try:
                got.append(self.session.get(ref))
            except Exception as exc:  # noqa: BLE001 - the coordinator raises it
                got.append(exc)
        return got

    def close(self, now: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if not now and self.pending:
            self.session.ray.wait(list(self.pending), num_returns=len(self.pending))
        self.session.kill(self.actors)
        self.session.close()
