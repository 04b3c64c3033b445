"""kvmsim against SPIN on the same model (apic_v65.pml / spin_equivalent.py), side by side.

    python bench/vs_spin.py                      # 2x1 and 2x2, 2 accesses per vCPU
    python bench/vs_spin.py --configs 2x1,2x2,3x1 --timeout 600
    python bench/vs_spin.py --column 'kvmsim+sym:model.any_order_kicks=True'

Per configuration (NVxNOPS) it runs ``spin -a``, ``gcc -DNOREDUCE -DSAFETY`` and ``pan``,
then kvmsim in a child process (so its peak memory is its own), and prints states,
transitions, seconds (SPIN's compile separately and included; wall clock, and the CPU time
of all the run's processes, which other load on the machine does not inflate), peak memory
and the ratios.
Each run is bounded (--timeout, --max-states, --memory-mb) and reported as unfinished when
it hits a bound. kvmsim's counts are also checked against pan's by the pml header's formula
(column "same"). The last line is ``ratio kvmsim/spin at 2 vCPUs x 2 ops: R``, time to
verdict with SPIN's compile included. Installs nothing: says so when spin is missing.

Columns: each kvmsim column is a name, engine Options fields and model switches
(``model.FIELD``, see spin_equivalent.Params); ``run_kvmsim`` takes a :class:`Column`, so
reductions and ``--workers`` become new columns when the engine has them.
"""

from __future__ import annotations

import argparse
import ast
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from spin_equivalent import Params, build_params, expected_counts  # noqa: E402
from spin_run import INSTALL_HINT, missing_tools, run_pan  # noqa: E402

HEADLINE = (2, 2)  # the configuration of the last line


@dataclass
class Column:
    """One kvmsim run per configuration: engine Options fields and model switches."""

    name: str = "kvmsim"
    options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """One checker's figures on one configuration."""

    checker: str
    states: int = 0
    transitions: int = 0
    compile_seconds: float = 0.0
    search_seconds: float = 0.0
    total_seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system CPU of every process of the run, all included
    memory_mb: float = 0.0
    verdict: str = ""
    finished: bool = False
    note: str = ""
    terminal: int = 0
    same: str = ""  # kvmsim: its counts equal pan's by the pml's formula (yes / no / ?)


def parse_column(text: str) -> Column:
    """``NAME:key=value,model.key=value`` (values are Python literals)."""
    name, _, rest = text.partition(":")
    col = Column(name.strip() or "kvmsim")
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"column option {item!r} is not key=value")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        if key.startswith("model."):
            col.model[key.removeprefix("model.")] = parsed
        else:
            col.options[key] = parsed
    return col


def config_params(config: str, acc: int, opkind: int) -> Params:
    """Params for ``NVxNOPS`` (e.g. ``2x1``)."""
    nv, x, nops = config.strip().lower().partition("x")
    if not x or not nv.isdigit() or not nops.isdigit():
        raise ValueError(f"configuration {config!r} is not NVxNOPS (e.g. 2x1)")
    return Params(nv=int(nv), nops=int(nops), acc=acc, opkind=opkind)


def run_kvmsim(p: Params, col: Column, timeout: float, memory_mb: int) -> Run:
    """kvmsim on p in a child process; wall time includes the interpreter's start."""
    job = {"params": asdict(p) | col.model, "options": col.options, "timeout": timeout}
    job["memory_mb"] = memory_mb
    start, cpu = time.perf_counter(), _children_cpu()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout + 60,  # the child stops itself at timeout; this is a backstop
        )
    except subprocess.TimeoutExpired:
        return Run(col.name, note=f"killed after {timeout + 60:.0f} s")
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Run(col.name, total_seconds=wall, note=f"failed: {tail}")
    run = Run(**json.loads(lines[-1]))
    run.total_seconds = wall
    run.cpu_seconds = _children_cpu() - cpu
    return run


def _children_cpu() -> float:
    """CPU seconds of this process's finished children: a cost that does not depend on
    what else the machine runs, unlike wall-clock time."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _child(job: dict[str, Any]) -> None:
    """In the child: build, check with a time limit, print a Run as JSON."""
    from kvmsim.engine import Options, Progress, check

    limit = job["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    deadline = time.perf_counter() + job["timeout"]

    def stop_at_deadline(_: Progress) -> None:
        if time.perf_counter() > deadline:
            raise KeyboardInterrupt

    opts = {"liveness": False, "collect_terminal": True, "progress_interval": 1.0}
    opts |= job["options"]
    start = time.perf_counter()
    p = Params(**job["params"])
    run = Run("kvmsim")
    try:
        res = check(build_params(p), Options(progress=stop_at_deadline, **opts))
    except MemoryError:
        run.note = f"out of memory ({job['memory_mb']} MB)"
    else:
        run.states, run.transitions = res.stats.states, res.stats.transitions
        run.verdict = res.verdict if not res.violations else "violated: " + ",".join(res.violated())
        run.finished = res.exhaustive and not res.interrupted
        run.terminal = len(res.terminal)
        if res.interrupted:
            run.note = f"stopped at the {job['timeout']:.0f} s limit"
        elif not res.exhaustive:
            run.note = f"bounded ({res.bound})"
    run.search_seconds = time.perf_counter() - start
    run.memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(asdict(run)))


def run_spin(p: Params, timeout: float, memory_mb: int) -> Run:
    cpu = _children_cpu()
    out = run_pan(p.spin_defines(), timeout=timeout, memory_limit_mb=memory_mb)
    verdict = ("violated" if out.errors else "holds") if out.complete else ""
    run = Run(
        "spin",
        out.states,
        out.transitions,
        out.compile_seconds,
        out.search_seconds,
        out.total_seconds,
        0.0,
        out.memory_mb,
        verdict,
        out.complete,
        out.note,
    )
    run.cpu_seconds = _children_cpu() - cpu
    return run


def same_space(p: Params, col: Column, k: Run, s: Run) -> str:
    """Whether kvmsim's counts equal pan's by the pml's formula (only for the pml's own
    model: a column with other model switches explores another state space)."""
    if not (k.finished and s.finished) or col.model:
        return "-"
    want = expected_counts(p, s.states, s.transitions, k.terminal)
    return "yes" if (k.states, k.transitions) == want else "NO"


def fmt_row(config: str, r: Run) -> str:
    state = r.verdict if r.finished else f"unfinished: {r.note}"
    return (
        f"{config:<6} {r.checker:<12} {r.states:>12,} {r.transitions:>12,} "
        f"{r.compile_seconds:>8.2f} {r.search_seconds:>9.2f} {r.total_seconds:>9.2f} "
        f"{r.cpu_seconds:>8.2f} {r.memory_mb:>9.1f} {r.same:>5}  {state}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="2x1,2x2", help="NVxNOPS list (default 2x1,2x2)")
    ap.add_argument("--acc", type=int, default=2, help="accesses per vCPU, 0 = unbounded")
    ap.add_argument("--opkind", type=int, default=0, help="0 migrate|zap, 1 migrate, 2 zap")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--memory-mb", type=int, default=8192, help="memory limit per run")
    ap.add_argument("--max-states", type=int, default=None, help="kvmsim: stop after N states")
    ap.add_argument("--column", action="append", default=[], help="NAME:opt=val,model.x=val")
    ap.add_argument("--no-spin", action="store_true", help="run kvmsim only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return 0
    try:
        params = [config_params(c, args.acc, args.opkind) for c in args.configs.split(",")]
        columns = [parse_column(c) for c in args.column] or [Column()]
    except ValueError as exc:
        print(f"vs_spin: bad argument: {exc}", file=sys.stderr)
        return 2
    if args.max_states is not None:
        for col in columns:
            col.options.setdefault("max_states", args.max_states)
    missing = None if args.no_spin else missing_tools()
    if missing:
        print(f"SPIN not run: {missing}")
    print(
        f"{'config':<6} {'checker':<12} {'states':>12} {'transitions':>12} {'compile':>8} "
        f"{'search s':>9} {'total s':>9} {'CPU s':>8} {'peak MB':>9} {'same':>5}  verdict"
    )
    headline = "not measured (add 2x2 to --configs)"
    for p in params:
        config = f"{p.nv}x{p.nops}"
        spin = None
        if not missing and not args.no_spin:
            spin = run_spin(p, args.timeout, args.memory_mb)
            print(fmt_row(config, spin), flush=True)
        for col in columns:
            k = run_kvmsim(p, col, args.timeout, args.memory_mb)
            if spin is not None:
                k.same = same_space(p, col, k, spin)
            print(fmt_row(config, k), flush=True)
            if spin is None:
                continue
            print("       " + ratios(col.name, k, spin), flush=True)
            if (p.nv, p.nops) == HEADLINE and col is columns[0]:
                headline = time_ratio(k, spin)
    if missing:
        headline = f"n/a (spin missing: {INSTALL_HINT})"
    elif args.no_spin:
        headline = "n/a (--no-spin)"
    print(f"ratio kvmsim/spin at 2 vCPUs x 2 ops: {headline}")
    return 0


def time_ratio(k: Run, s: Run) -> str:
    """kvmsim's time to verdict over SPIN's (compile + search); a lower bound when kvmsim
    did not finish, unknown when SPIN did not."""
    if not s.finished:
        return f"? (spin unfinished: {s.note})"
    r = k.total_seconds / s.total_seconds if s.total_seconds else float("inf")
    return f"{r:.1f}" if k.finished else f">= {r:.1f} (kvmsim unfinished: {k.note})"


def cpu_ratio(k: Run, s: Run) -> str:
    if not (k.finished and s.finished and s.cpu_seconds):
        return "?"
    return f"{k.cpu_seconds / s.cpu_seconds:.1f}"


def ratios(name: str, k: Run, s: Run) -> str:
    states = f"{k.states / s.states:.2f}" if s.states else "?"
    mem = f"{k.memory_mb / s.memory_mb:.1f}" if s.memory_mb else "?"
    speed = k.states / k.search_seconds if k.search_seconds else 0.0
    return (
        f"{name}/spin: states {states}, time to verdict {time_ratio(k, s)} "
        f"(CPU {cpu_ratio(k, s)}), "
        f"search only {k.search_seconds / max(s.search_seconds, 1e-3):.1f}, memory {mem}; "
        f"{name} {speed:,.0f} states/s"
    )


if __name__ == "__main__":
    sys.exit(main())
