"""Checks and random samples of the KVM model as plain-data jobs, run in worker processes.

A model cannot be pickled, so a job names what to build (a variant, by name or as
``FILE.py[:NAME]``, and a scenario name) and each worker builds its own model; what comes
back is a plain-data summary (``CheckSummary`` or ``SampleSummary``) that the study and the
diff assemble their reports from.

``run_jobs`` runs a list of jobs in N worker processes (or in this process when N is 1).
Workers ignore Ctrl-C: the parent catches it, stops the pool and returns what had finished,
marked interrupted; a check cut short is dropped, never reported as if it were complete.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine import Model, Options, Progress, Result, System, check
from .engine.workers import become_worker
from .simulate import COST_EVENTS

# Every cost figure the KVM model produces, in report order, with what it counts.
COST_LABELS: dict[str, str] = {
    **COST_EVENTS,
    "migrate_fail": "failed migrations",
    "out_of_guest_steps": "steps kept out of the guest",
}
COST_NAMES: tuple[str, ...] = tuple(COST_LABELS)

CHECK = "check"
SAMPLE = "sample"


@dataclass(frozen=True)
class Job:
    """What to run: an exhaustive check, or ``runs`` seeded random runs (a sample)."""

    variant: str  # a built-in variant name, or FILE.py[:NAME]
    scenario: str
    kind: str = CHECK  # CHECK | SAMPLE
    runs: int = 0  # SAMPLE: how many runs
    seed: int = 0  # SAMPLE: run k uses seed + k
    max_steps: int = 1000  # SAMPLE: a run stops after this many steps

    @property
    def label(self) -> str:
        what = f"{self.variant} / {self.scenario}"
        return what if self.kind == CHECK else f"{what} ({self.runs} random runs)"


@dataclass(frozen=True)
class Broken:
    """A violated property: its shortest counterexample's length (None: none recorded)."""

    prop: str
    kind: str
    steps: int | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"property": self.prop, "kind": self.kind, "steps": self.steps}


@dataclass
class CheckSummary:
    """One exhaustive check, as plain data."""

    variant: str
    scenario: str
    violations: list[Broken] = field(default_factory=list)
    properties: list[str] = field(default_factory=list)  # the properties judged
    states: int = 0
    transitions: int = 0
    max_depth: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the worker for this check (building included)
    exhaustive: bool = False
    interrupted: bool = False
    # Exact (min, max) of every cost over all complete behaviours, max None = unbounded;
    # every name of COST_NAMES is present (0, 0 when it never occurs). Empty when not
    # computed (the search was not exhaustive).
    costs: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    # Long-term pinned pages (mm.pinned) over the final states: (fewest, most).
    pinned_pages: tuple[int, int] | None = None
    final_states: int = 0
    sometimes: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str = ""  # the check could not run (a model that does not build, a crash)

    @property
    def ok(self) -> bool:
        return not self.error and not self.interrupted

    @property
    def violated(self) -> list[str]:
        return [b.prop for b in self.violations]

    def broken(self, prop: str) -> Broken | None:
        for b in self.violations:
            if b.prop == prop:
                return b
        return None

    def cost(self, name: str) -> tuple[int, int | None] | None:
        """The exact range of a cost, None when costs were not computed."""
        if not self.costs:
            return None
        return self.costs.get(name, (0, 0))


@dataclass(frozen=True)
class SampledRun:
    costs: dict[str, int]
    steps: int
    end: str  # finished | deadlock | step limit | error
    broke: tuple[str, ...]  # properties the run broke (it went on past fail() / invariants)


@dataclass
class SampleSummary:
    """K seeded random runs of one model and each run's cost figures."""

    variant: str
    scenario: str
    seed: int
    max_steps: int
    runs: list[SampledRun] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def values(self, cost: str) -> list[int]:
        return [r.costs.get(cost, 0) for r in self.runs]


Summary = CheckSummary | SampleSummary


# -- building and running one job ----------------------------------------------------------


def build_job_model(job: Job) -> tuple[Model, Any]:
    """The model a job names, and its scenario."""
    from .machine import build_model
    from .scenarios import get_scenario

    scenario = get_scenario(job.scenario)
    return build_model(load_variant(job.variant), scenario), scenario


def load_variant(spec: str) -> Any:
    """A built-in variant by name, or a Variant defined in FILE.py[:NAME] (cli_kvm's loader)."""
    from .cli_kvm import resolve_variant

    return resolve_variant(spec)


def run_job(job: Job, progress: Callable[[Progress], None] | None = None) -> Summary:
    """Run one job; every failure becomes the summary's error (a worker never raises)."""
    cpu = time.process_time()
    try:
        model, scenario = build_job_model(job)
        if job.kind == SAMPLE:
            return sample(model, job)
        result = check(model, Options(costs=True, collect_terminal=True, progress=progress))
        out = summarise(job, result, scenario)
        out.cpu_seconds = time.process_time() - cpu
        return out
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported as the job's error
        message = " ".join(str(exc).split()) or type(exc).__name__
        if job.kind == SAMPLE:
            return SampleSummary(job.variant, job.scenario, job.seed, job.max_steps, error=message)
        return CheckSummary(job.variant, job.scenario, error=message)


def summarise(job: Job, result: Result, scenario: Any) -> CheckSummary:
    from .cli_kvm import checked_properties

    s = result.stats
    out = CheckSummary(
        job.variant,
        job.scenario,
        violations=[
            Broken(v.prop, v.kind, len(v.trace) if v.trace is not None else None, v.message)
            for v in result.violations
        ],
        properties=checked_properties((), scenario),
        states=s.states,
        transitions=s.transitions,
        max_depth=s.max_depth,
        seconds=s.seconds,
        exhaustive=result.exhaustive and not result.interrupted,
        interrupted=result.interrupted,
        sometimes=dict(result.sometimes),
        notes=list(result.notes),
        final_states=len(result.terminal),
    )
    if result.costs or out.exhaustive:
        out.costs = {name: (0, 0) for name in COST_NAMES}
        for name, r in result.costs.items():
            out.costs[name] = (r.min, r.max)
    pinned = [
        sum(1 for b in world["mm.pinned"] if b) for world in result.terminal if "mm.pinned" in world
    ]
    if pinned:
        out.pinned_pages = (min(pinned), max(pinned))
    return out


def sample(model: Model, job: Job) -> SampleSummary:
    """job.runs random runs, each picking one enabled transition uniformly at random.

    Run k uses ``random.Random(seed + k)`` and picks among the same moves as ``kvmsim
    simulate``, so up to its first broken property it is the run ``simulate --seed seed+k``
    lists. Unlike simulate, a run goes on past a broken property (an invariant, a fail())
    to its end, as the exhaustive search does, so its costs cover the whole behaviour; it
    stops early only on a crashed step. Costs are the events the steps noted plus the
    model's per-state charges (``out_of_guest_steps``), as in the exact figures.
    """
    start = time.perf_counter()
    system = System(model)
    state_cost = model.state_cost
    out = SampleSummary(job.variant, job.scenario, job.seed, job.max_steps)
    for k in range(job.runs):
        rng = random.Random(job.seed + k)
        state = system.initial
        costs: Counter[str] = Counter()
        broke = {p for p, _ in system.check_invariants(state)}
        end = "step limit"
        steps = 0
        while steps < job.max_steps:
            moves = [(a, c, o) for a, c, o in system.successors(state) if o.kind != "blocked"]
            if not moves:
                end = "deadlock" if system.unfinished(state) else "finished"
                break
            if state_cost is not None:
                system.world.load(state[0])
                costs.update({name: n for name, n in state_cost(system.root).items() if n})
            _actor, _choices, step = moves[rng.randrange(len(moves))]
            steps += 1
            costs.update(step.events)
            if step.kind != "ok" or step.state is None:
                broke.add(step.prop or step.kind)
                end = "error"
                break
            broke.update(p for p, _ in step.failures)
            state = step.state
            broke.update(p for p, _ in system.check_invariants(state))
        out.runs.append(SampledRun(dict(costs), steps, end, tuple(sorted(broke))))
    out.seconds = time.perf_counter() - start
    return out


# -- running many ----------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Where a batch of jobs stands, for a progress display."""

    done: int
    total: int
    running: list[tuple[Job, float]]  # job, seconds it has been running
    elapsed: float
    last: Job | None = None  # the job that finished most recently


@dataclass
class Batch:
    summaries: dict[Job, Summary]
    interrupted: bool = False
    seconds: float = 0.0
    not_run: list[Job] = field(default_factory=list)


def _context() -> Any:
    # fork: workers start at once and inherit the linked variants. Only from a process with
    # no other thread (a thread holding a lock at the fork would leave it held in the child,
    # e.g. under a test runner's I/O threads); spawn otherwise and off Linux.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def run_jobs(
    jobs: list[Job],
    workers: int = 2,
    progress: Callable[[Snapshot], None] | None = None,
    interval: float = 0.25,
) -> Batch:
    """Run every job, in up to ``workers`` processes; returns the summaries by job.

    Jobs are handed out in the order given (put the longest first). A Ctrl-C stops the
    batch: finished jobs are kept, running ones dropped (listed in ``not_run``).
    """
    start = time.perf_counter()
    if workers <= 1 or len(jobs) <= 1:
        return _run_here(jobs, progress, start)
    summaries: dict[Job, Summary] = {}
    started: dict[Job, float] = {}
    done: queue.Queue[tuple[Job, Summary | BaseException]] = queue.Queue()
    pool = _context().Pool(min(workers, len(jobs)), initializer=become_worker)
    interrupted = False
    last: Job | None = None
    try:
        for job in jobs:
            pool.apply_async(
                run_job,
                (job,),
                callback=lambda s, j=job: done.put((j, s)),
                error_callback=lambda e, j=job: done.put((j, e)),
            )
        pool.close()
        width = min(workers, len(jobs))
        while len(summaries) < len(jobs):
            # The pool hands jobs out in order, one per free worker: the running ones are
            # the first `width` unfinished jobs.
            now = time.perf_counter()
            running = [j for j in jobs if j not in summaries][:width]
            for j in running:
                started.setdefault(j, now)
            if progress is not None:
                progress(
                    Snapshot(
                        len(summaries),
                        len(jobs),
                        [(j, now - started[j]) for j in running],
                        now - start,
                        last,
                    )
                )
            try:
                job, got = done.get(timeout=interval)
            except queue.Empty:
                continue
            if isinstance(got, BaseException):
                message = " ".join(str(got).split()) or type(got).__name__
                got = CheckSummary(job.variant, job.scenario, error=f"worker failed: {message}")
            summaries[job] = got
            last = job
    except KeyboardInterrupt:
        interrupted = True
        pool.terminate()
    finally:
        pool.join()
    if progress is not None and not interrupted:
        progress(Snapshot(len(summaries), len(jobs), [], time.perf_counter() - start, last))
    ordered = {j: summaries[j] for j in jobs if j in summaries}
    return Batch(
        ordered,
        interrupted,
        time.perf_counter() - start,
        [j for j in jobs if j not in summaries],
    )


def _run_here(jobs: list[Job], progress: Callable[[Snapshot], None] | None, start: float) -> Batch:
    summaries: dict[Job, Summary] = {}
    last: Job | None = None
    interrupted = False
    for job in jobs:
        began = time.perf_counter()

        def show(p: Progress | None = None, job: Job = job, began: float = began) -> None:
            if progress is not None:
                now = time.perf_counter()
                progress(
                    Snapshot(len(summaries), len(jobs), [(job, now - began)], now - start, last)
                )

        show()
        try:
            got = run_job(job, show)
        except KeyboardInterrupt:
            interrupted = True
            break
        if isinstance(got, CheckSummary) and got.interrupted:  # the engine caught the Ctrl-C
            interrupted = True
            break
        summaries[job] = got
        last = job
    if progress is not None and not interrupted:
        progress(Snapshot(len(summaries), len(jobs), [], time.perf_counter() - start, last))
    return Batch(
        summaries,
        interrupted,
        time.perf_counter() - start,
        [j for j in jobs if j not in summaries],
    )
