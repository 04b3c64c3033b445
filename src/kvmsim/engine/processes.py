"""The partitioned search's workers as local processes.

Each worker process holds one ``Partition`` and obeys the coordinator's commands over a
pipe. Within a level the workers hand claims and grants to each other directly, through one
inbox queue per worker: in each of a level's two exchanges every worker sends exactly one
batch (perhaps empty) to every other worker, so a worker knows when it has all of its
batches. A worker whose step fails still sends its (empty) batches, so the others finish the
level, then reports the error.
"""

from __future__ import annotations

import marshal
from multiprocessing.connection import Connection
from typing import Any

from .codec import MARSHAL_VERSION
from .model import Model
from .partition import Entry, LevelReport, Node, Partition, Parts, SearchSpec
from .workers import Builder, become_worker, context, portable

POLL = 0.2  # seconds between checks that a silent worker is still alive


def _serve(
    index: int, source: Model | Builder, spec: SearchSpec, conn: Connection, inboxes: list[Any]
) -> None:
    become_worker()
    try:
        model = source if isinstance(source, Model) else source()
        part = Partition(index, model, spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the coordinator
        conn.send(("error", portable(exc)))
        return
    conn.send(("ok", None))
    mail = _Mail(index, spec.workers, inboxes)
    while True:
        try:
            cmd, arg = conn.recv()
        except EOFError:
            return
        if cmd == "stop":
            return
        try:
            if cmd == "level":
                value: Any = _level(part, mail, *arg)
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


class _Mail:
    """One worker's side of the exchanges: a batch to and from every other worker, per
    exchange. A batch of the next exchange can overtake one of this exchange from a third
    worker (each sender's queue feeds in its own order), so early batches wait here."""

    def __init__(self, me: int, n: int, inboxes: list[Any]) -> None:
        self.me, self.n, self.inboxes = me, n, inboxes
        self.round = 0
        self.early: dict[int, list[tuple[int, Any]]] = {}

    def exchange(self, outgoing: list[Any]) -> list[Any]:
        """Send outgoing[v] to every other worker v; what each sent here, by sender."""
        self.round += 1
        me, here = self.me, self.round
        for v in range(self.n):
            if v != me:  # plain data: marshal is several times quicker than pickle
                self.inboxes[v].put((here, me, marshal.dumps(outgoing[v], MARSHAL_VERSION)))
        got: list[Any] = [None] * self.n
        got[me] = outgoing[me]
        missing = self.n - 1
        for sender, batch in self.early.pop(here, []):
            got[sender] = marshal.loads(batch)
            missing -= 1
        while missing:
            when, sender, batch = self.inboxes[me].get()
            if when != here:
                self.early.setdefault(when, []).append((sender, batch))
                continue
            got[sender] = marshal.loads(batch)
            missing -= 1
        return got


def _level(part: Partition, mail: _Mail, depth: int, ship: float) -> LevelReport:
    n = part.n
    error: BaseException | None = None
    report = LevelReport()
    outgoing: list[Any] = [[] for _ in range(n)]
    try:
        outgoing, report = part.expand(depth, ship)
    except BaseException as exc:  # noqa: BLE001 - raised once the level's exchanges are done
        error = exc
    claims = mail.exchange(outgoing)
    grants: list[Any] = [[] for _ in range(n)]
    if error is None:
        try:
            grants, settled = part.settle(claims)
            report.merge(settled)
        except BaseException as exc:  # noqa: BLE001 - as above
            error = exc
    granted = mail.exchange(grants)
    if error is not None:
        raise error
    report.merge(part.hold(granted))
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

    def level(self, depth: int, ship: list[float]) -> list[LevelReport]:
        for conn, share in zip(self.conns, ship):
            conn.send(("level", (depth, share)))
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
