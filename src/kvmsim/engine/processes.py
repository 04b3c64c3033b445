"""The partitioned search's workers as local processes.

Each worker process holds one ``Partition`` and obeys the coordinator's commands over a
pipe. Within a level the workers hand successors to each other directly, through one inbox
queue per worker: each sends exactly one batch (perhaps empty) to every other worker per
level, so a worker knows when it has all of its batches. A worker whose expansion fails
still sends its (empty) batches, so the others finish the level, then reports the error.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any

from .model import Model
from .partition import Candidate, Entry, LevelReport, Node, Partition, Parts, SearchSpec
from .workers import Builder, context, ignore_sigint, portable

POLL = 0.2  # seconds between checks that a silent worker is still alive


def _serve(
    index: int, source: Model | Builder, spec: SearchSpec, conn: Connection, inboxes: list[Any]
) -> None:
    ignore_sigint()
    try:
        model = source if isinstance(source, Model) else source()
        part = Partition(index, model, spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the coordinator
        conn.send(("error", portable(exc)))
        return
    conn.send(("ok", None))
    n = spec.workers
    while True:
        try:
            cmd, arg = conn.recv()
        except EOFError:
            return
        if cmd == "stop":
            return
        try:
            if cmd == "level":
                value: Any = _level(part, index, n, arg, inboxes)
            elif cmd == "seed":
                value = part.seed(*arg)
            elif cmd == "entry":
                value = part.entry(arg)
            elif cmd == "graph":
                value = part.take_graph()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", value))
        except BaseException as exc:  # noqa: BLE001 - reported to the coordinator
            conn.send(("error", portable(exc)))


def _level(part: Partition, me: int, n: int, depth: int, inboxes: list[Any]) -> LevelReport:
    error: BaseException | None = None
    try:
        outgoing, report = part.expand(depth)
    except BaseException as exc:  # noqa: BLE001 - raised once the level's exchange is done
        outgoing, report, error = [[] for _ in range(n)], LevelReport(), exc
    for v in range(n):
        if v != me:
            inboxes[v].put(outgoing[v])
    batches: list[list[Candidate]] = [outgoing[me]]
    batches += [inboxes[me].get() for _ in range(n - 1)]
    if error is not None:
        raise error
    report.merge(part.absorb(batches))
    return report


class LocalCluster:
    """N worker processes, each with one partition of the search."""

    def __init__(self, model: Model, builder: Builder | None, spec: SearchSpec) -> None:
        ctx = context(builder)
        n = spec.workers
        source: Model | Builder = builder if builder is not None else model
        self.inboxes = [ctx.Queue() for _ in range(n)]
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.closed = False
        try:
            for w in range(n):
                here, there = ctx.Pipe()
                proc = ctx.Process(
                    target=_serve,
                    args=(w, source, spec, there, self.inboxes),
                    name=f"kvmsim-worker-{w}",
                    daemon=True,
                )
                proc.start()
                there.close()
                self.conns.append(here)
                self.procs.append(proc)
            self._gather(range(n))
        except BaseException:
            self.close()
            raise

    def _reply(self, w: int) -> tuple[str, Any]:
        """Worker w's reply. A worker that died is an error at once: the others may be
        waiting for its batch, and would wait for ever."""
        conn = self.conns[w]
        while not conn.poll(POLL):
            for v, proc in enumerate(self.procs):
                if not proc.is_alive():
                    raise RuntimeError(f"worker {v} died (exit status {proc.exitcode})")
        try:
            reply: tuple[str, Any] = conn.recv()
        except EOFError:
            raise RuntimeError(f"worker {w} died") from None
        return reply

    def _gather(self, workers: range | list[int]) -> list[Any]:
        """Every worker's reply; the first error (by worker) is raised once all replied."""
        replies = [self._reply(w) for w in workers]
        for kind, value in replies:
            if kind == "error":
                raise value
        return [value for _, value in replies]

    def seed(self, w: int, fp: int, parts: Parts) -> LevelReport:
        self.conns[w].send(("seed", (fp, parts)))
        report: LevelReport = self._gather([w])[0]
        return report

    def level(self, depth: int) -> list[LevelReport]:
        for conn in self.conns:
            conn.send(("level", depth))
        return self._gather(range(len(self.conns)))

    def entry(self, w: int, fp: int) -> Entry:
        self.conns[w].send(("entry", fp))
        entry: Entry = self._gather([w])[0]
        return entry

    def graph(self, w: int) -> dict[int, Node]:
        self.conns[w].send(("graph", None))
        graph: dict[int, Node] = self._gather([w])[0]
        return graph

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn, proc in zip(self.conns, self.procs):
            try:
                if proc.is_alive():
                    conn.send(("stop", None))
            except (OSError, ValueError):
                pass
        for proc in self.procs:
            proc.join(timeout=1.0)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for q in self.inboxes:
            q.cancel_join_thread()
            q.close()
