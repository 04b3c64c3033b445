"""``kvmsim study`` and ``kvmsim diff`` on the command line.

``cli.py`` owns the parser, the errors and the exit statuses; this module checks the names the
user gave, runs the jobs with a progress line on a terminal, prints the report and writes the
files. Exit status of ``study``: 0 when it ran to completion (the findings, violations of buggy
variants included, are its output, not a failure), 2 on bad input, an interruption or a check
that could not run. ``diff``: 0 no violation appears, 1 the variant breaks a property the base
holds, 2 bad input, interrupted or a check that could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from . import kvm_diff, kvm_study
from .cli import EXIT_ERROR, EXIT_HOLDS, EXIT_VIOLATED, UsageError, _stdout_console, _table
from .cli_replay import check_trace_options
from .jobs import CheckSummary, Snapshot, run_jobs
from .report.json import dumps
from .report.junit import ERROR, PASSED, Case, outcome_of, write_junit
from .report.progress import TransientLine, wanted

INTERRUPTED = "kvmsim: interrupted: incomplete"


class BatchProgress(TransientLine):
    """A transient progress line on stderr: checks done, the ones running, elapsed time."""

    def __init__(self, title: str, *, enabled: bool) -> None:
        super().__init__()
        self.title = title
        self.enabled = enabled

    def __call__(self, snap: Snapshot) -> None:
        if not self.enabled:
            return
        running = ", ".join(f"{job.label} ({secs:.0f} s)" for job, secs in snap.running)
        self.show(
            Text(
                f"{self.title}: {snap.done}/{snap.total} done"
                + (f" · running {running}" if running else "")
                + f" · {snap.elapsed:.0f} s (Ctrl-C stops and writes what is done)",
                no_wrap=True,
                overflow="ellipsis",
            )
        )


# -- names -----------------------------------------------------------------------------------


def _check_scenarios(names: list[str] | None) -> list[str] | None:
    from .scenarios import SCENARIOS

    for name in names or ():
        if name not in SCENARIOS:
            raise UsageError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return list(dict.fromkeys(names)) if names else None


def _check_variants(names: list[str] | None) -> list[str] | None:
    known = kvm_study.variant_names()
    for name in names or ():
        if name not in known:
            raise UsageError(f"unknown variant {name!r} (known: {', '.join(known)})")
    return list(dict.fromkeys(names)) if names else None


def _make_dir(out: str) -> Path:
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from None
    return path


# -- kvmsim study ------------------------------------------------------------------------------


def cmd_study(args: argparse.Namespace) -> int:
    if args.quick and args.scenario:
        raise UsageError("give either --quick or --scenario, not both")
    variants = _check_variants(args.variant)
    scenarios = _check_scenarios(args.scenario)
    check_trace_options(args)  # --junit's folder
    out = _make_dir(args.out)
    jobs = kvm_study.plan(variants, scenarios, quick=args.quick)
    selection = "custom" if variants or scenarios else "quick" if args.quick else "default"
    with BatchProgress("kvmsim study", enabled=wanted(args.quiet)) as progress:
        batch = run_jobs(kvm_study.run_order(jobs), args.workers, progress)
    checks = {j: s for j, s in batch.summaries.items() if isinstance(s, CheckSummary)}
    study = kvm_study.Study(jobs, checks, batch.interrupted, batch.seconds, args.workers, selection)
    found = kvm_study.findings(study)
    try:
        md, js = kvm_study.write_study(study, out, found)
    except OSError as exc:
        raise UsageError(f"cannot write the study to {args.out}: {exc.strerror or exc}") from None
    if args.junit:
        try:
            write_junit(args.junit, "kvmsim study", study_cases(study))
        except OSError as exc:
            raise UsageError(f"cannot write {args.junit}: {exc.strerror or exc}") from None
    if args.json:
        print(dumps(kvm_study.document(study, found)))
    else:
        print_study(_stdout_console(), study, found, md, js)
    crashed = kvm_study.model_errors(study)
    if crashed:
        print(
            f"kvmsim: warning: the model crashed in {len(crashed)} check(s), e.g. "
            f"{crashed[0][0]} / {crashed[0][1]}: {crashed[0][2].message}",
            file=sys.stderr,
        )
    if study.interrupted:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_ERROR
    if study.errors:
        for s in study.errors:
            print(
                f"kvmsim: error: {s.variant} / {s.scenario} could not be checked: {s.error}",
                file=sys.stderr,
            )
        return EXIT_ERROR
    return EXIT_HOLDS


def study_cases(study: kvm_study.Study) -> list[Case]:
    """One JUnit test case per variant x scenario planned (report/junit.py)."""
    cases = []
    for job in study.jobs:
        s = study.summaries.get(job)
        classname, name = f"kvmsim.{job.variant}", f"{job.variant} / {job.scenario}"
        see = f"see it: kvmsim check --variant {job.variant} --scenario {job.scenario}"
        if s is None or s.error:
            why = s.error if s is not None else "not checked: the study was interrupted"
            kind = "error" if s is not None else "incomplete"
            cases.append(Case(classname, name, 0.0, ERROR, why, kind, why))
            continue
        stats = (
            f"{s.states:,} states, {s.transitions:,} transitions, max depth {s.max_depth}, "
            f"{s.seconds:.2f} s; coverage: {'exhaustive' if s.exhaustive else 'bounded'}"
        )
        outcome = outcome_of(bool(s.violations), s.exhaustive, s.interrupted)
        if s.violations:
            broken = ", ".join(
                b.prop + (f" ({b.steps} steps)" if b.steps is not None else "")
                for b in s.violations
            )
            lines = [f"✗ {b.prop} ({b.kind}): {b.message}" for b in s.violations]
            text = "\n".join([*lines, stats, see])
            kinds = ", ".join(dict.fromkeys(b.kind for b in s.violations))
            cases.append(
                Case(classname, name, s.seconds, outcome, f"violated: {broken}", kinds, text)
            )
        elif outcome == ERROR:
            cases.append(
                Case(classname, name, s.seconds, outcome, "incomplete", "incomplete", stats)
            )
        else:
            verdict = "holds" if outcome == PASSED else "holds within a bound: not exhaustive"
            cases.append(Case(classname, name, s.seconds, outcome, verdict, output=stats))
    return cases


def print_study(
    console: Console,
    study: kvm_study.Study,
    found: list[kvm_study.Finding],
    md: Path,
    js: Path,
) -> None:
    console.print(Text("kvmsim study: " + kvm_study.status_line(study), style="bold"))
    for f in found:
        console.print()
        console.print(Text(f.question, style="bold"))
        console.print(Text("Verdict: ", style="bold") + Text(f.verdict))
        for e in f.evidence:
            console.print(Text(f"  - {e}", style="dim"))
    console.print()
    table = _table(console, kvm_study.TABLE_COLUMNS)
    for row in kvm_study.table_rows(study):
        broken = row[2].startswith(("broken", "error", "not checked"))
        table.add_row(*row, style="red" if broken else "")
    console.print(table)
    console.print(
        Text(
            "costs: exact min–max over every complete behaviour (∞: unbounded); see docs/study.md",
            style="dim",
        )
    )
    console.print(Text(f"wrote {md} and {js}", style="dim"))


# -- kvmsim diff -------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    from .cli_kvm import resolve_variant

    base = resolve_variant(args.base)
    variant = resolve_variant(args.variant)
    scenarios = _check_scenarios(args.scenario) or kvm_study.study_scenarios(
        base.name, variant.name
    )
    base_spec, variant_spec = args.base, args.variant
    jobs = kvm_diff.plan(base_spec, variant_spec, scenarios, args.runs, args.seed, args.max_steps)
    with BatchProgress("kvmsim diff", enabled=wanted(args.quiet)) as progress:
        batch = run_jobs(jobs, args.workers, progress)
    diff = kvm_diff.assemble(
        base.name,
        variant.name,
        base_spec,
        variant_spec,
        scenarios,
        batch,
        args.runs,
        args.seed,
        args.max_steps,
        args.workers,
    )
    if args.json:
        print(dumps(diff.as_dict()))
    else:
        print_diff(_stdout_console(), diff)
    if diff.interrupted:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_ERROR
    if diff.errors:
        for e in diff.errors:
            print(f"kvmsim: error: could not run: {e}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_VIOLATED if diff.appear else EXIT_HOLDS


def print_diff(console: Console, diff: kvm_diff.Diff) -> None:
    sampled = (
        f"; sampled: {diff.runs} seeded random runs per side and scenario (seeds {diff.seed}–"
        f"{diff.seed + diff.runs - 1})"
        if diff.runs
        else ""
    )
    console.print(
        Text(
            f"kvmsim diff: {diff.base} → {diff.variant} on "
            f"{len(diff.scenarios)} scenario{'' if len(diff.scenarios) == 1 else 's'} "
            f"(exact: exhaustive checks{sampled}; {diff.seconds:.0f} s)",
            style="bold",
        )
    )
    for line in kvm_diff.summary_sentences(diff):
        console.print(Text(f"- {line}"))
    for d in diff.scenarios:
        console.print()
        if not d.checked:
            console.print(Text(f"{d.scenario}: not compared (" + _why(d) + ")", style="red"))
            continue
        assert d.base is not None and d.variant is not None
        head = (
            f"{d.scenario}: {diff.base} {_verdict(d.base)} ({d.base.states:,} states); "
            f"{diff.variant} {_verdict(d.variant)} ({d.variant.states:,} states)"
        )
        console.print(Text(head, style="bold"))
        notes = [
            f"{side}: {n}"
            for side, s in ((diff.base, d.sample_base), (diff.variant, d.sample_variant))
            if s is not None and s.ok and (n := kvm_diff.sample_notes(s))
        ]
        for n in notes:
            console.print(Text(f"  sampled runs of {n}", style="dim"))
        columns = ["cost", f"exact {diff.base}", f"exact {diff.variant}"]
        if diff.runs:
            columns += ["sampled mean", "variant run lower", "variant run higher"]
        table = _table(console, columns)
        for c in d.costs:
            row = [c.cost, kvm_study.fmt_range(c.base), kvm_study.fmt_range(c.variant)]
            if c.sampled is not None:
                s = c.sampled
                row += [
                    f"{s.mean[0]:.2f} → {s.mean[1]:.2f}",
                    f"{s.lower:.0%}",
                    f"{s.higher:.0%}",
                ]
            elif diff.runs:
                row += ["", "", ""]
            table.add_row(*row, style="bold" if c.changed else "")
        console.print(table)
    console.print(
        Text(
            "exact: min–max over every complete behaviour (∞: unbounded). sampled: estimates "
            "from seeded random runs; 'variant run lower' is the share of (variant run, base "
            "run) pairs in which the variant's run costs less. Bold: the exact range changed.",
            style="dim",
        )
    )


def _verdict(s: CheckSummary) -> str:
    if not s.violations:
        return "holds"
    return "breaks " + ", ".join(f"{b.prop} ({b.steps} steps)" for b in s.violations)


def _why(d: kvm_diff.ScenarioDiff) -> str:
    errors = d.errors()
    return "; ".join(errors) if errors else "interrupted"
