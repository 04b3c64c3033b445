"""Counterexamples people can read: replay tokens, ``kvmsim replay``, ``--trace-out``, ``--html``.

``cli.py`` owns the parser and the exit statuses; ``check`` and ``demo`` call in here to give
each counterexample its replay token, to add the trace documents to ``--json``, and to write
``--trace-out`` and ``--html``. ``kvmsim replay TOKEN|FILE`` rebuilds the model a token names
(refusing one built from different code), replays the path and prints the counterexample
exactly as the check did; ``--step N`` prints the whole state after step N.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.text import Text

from .cli import EXIT_HOLDS, UsageError, _on_sys_path, _stdout_console, load_file, pick_model
from .engine import Model, Result, System, Violation
from .fingerprint import fingerprint
from .replay import PREFIX, ModelRef, Token, TokenError, make_token, rebuild
from .report.html import Section, write_html_sections
from .report.json import dumps
from .report.junit import ERROR, FAILURE, PASSED, Case, outcome_of, write_junit
from .report.text import plain_console, print_counterexample, print_result, print_title
from .report.trace_json import (
    TraceFile,
    TraceFileError,
    read_trace_file,
    states_of,
    trace_document,
    write_json_atomic,
)
from .report.values import CompactStyle, ValueStyle
from .study import Study as DemoStudy


@dataclass
class Subject:
    """A model as checked: how to rebuild it (ref) and how its reports are drawn."""

    ref: ModelRef
    model: Model
    style: ValueStyle | None = None
    lanes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    explain: Callable[[str], str] | None = None  # a property's sentence (the KVM catalogue)
    extra: dict[str, Any] = field(default_factory=dict)  # added to each trace document
    _fingerprint: str | None = None
    _system: System | None = None

    @property
    def system(self) -> System:
        if self._system is None:
            self._system = System(self.model)
        return self._system

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model, self.system)
        return self._fingerprint

    def actors(self) -> list[tuple[str, str]]:
        return [(a.name, a.lane) for a in self.system.actors]

    def tokens(self, result: Result) -> dict[str, str]:
        """Each violated property's replay token (those with a trace)."""
        if not any(v.trace is not None for v in result.violations):
            return {}
        out = {}
        for v in result.violations:
            token = make_token(self.ref, self.fingerprint, v)
            if token is not None:
                out[v.prop] = token
        return out

    def document(self, violation: Violation, token: str | None) -> dict[str, Any]:
        """The violation as a kvmsim-trace/1 document."""
        return trace_document(
            violation,
            model=self.model.name,
            description=self.model.description,
            expect=self.model.expect,
            ref=self.ref.as_dict(),
            fingerprint=self.fingerprint,
            token=token,
            lanes=self.lanes,
            actors=self.actors(),
            style=self.style,
            notes=self.notes,
            extra=self.extra,
        )

    def section(self, result: Result, tokens: dict[str, str]) -> Section:
        return Section(
            result, self.model, self.lanes, self.style, tokens, self.actors(), self.notes
        )


# -- check and demo: tokens, --json, --trace-out, --html ------------------------------------


def add_output_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--trace-out and --html (check and demo)."""
    p.add_argument(
        "--trace-out",
        metavar="FILE",
        help="write one counterexample (the first, or that of --property P) as a JSON trace "
        "(kvmsim-trace/1, see docs/trace-format.md); 'kvmsim replay FILE' prints it again",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write a self-contained HTML report: each counterexample as a sequence diagram "
        "with one lane per CPU, click a step for its state changes",
    )
    p.add_argument(
        "--junit",
        metavar="FILE",
        help="write a JUnit XML report for CI test reporters: one test case per check, a "
        "failure (with the timeline) per violated check",
    )


def add_property_selector(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--property for the models whose properties are their own (demo): it only picks
    which counterexample --trace-out writes."""
    p.add_argument(
        "--property",
        action="append",
        metavar="NAME",
        help="with --trace-out: write this property's counterexample (repeatable: the first "
        "of them that is violated)",
    )


def json_with_traces(doc: dict[str, Any], result: Result, subject: Subject) -> dict[str, Any]:
    """Add each violation's replay token and trace document to a kvmsim-result/1 doc."""
    tokens = subject.tokens(result)
    for vdoc, v in zip(doc.get("violations", []), result.violations):
        token = tokens.get(v.prop)
        vdoc["token"] = token
        vdoc["replay"] = f"kvmsim replay {token}" if token else None
        vdoc["counterexample"] = subject.document(v, token) if v.trace is not None else None
    doc["model_ref"] = subject.ref.as_dict()
    if tokens:
        doc["fingerprint"] = subject.fingerprint
    return doc


def write_outputs(args: argparse.Namespace, checked: Sequence[tuple[Subject, Result]]) -> None:
    """--trace-out and --html, after every check of the command has run."""
    trace_out = getattr(args, "trace_out", None)
    html_out = getattr(args, "html", None)
    junit_out = getattr(args, "junit", None)
    if trace_out:
        _write_trace_out(trace_out, getattr(args, "property", None) or [], checked)
    if html_out:
        sections = [s.section(r, s.tokens(r)) for s, r in checked]
        try:
            write_html_sections(sections, html_out)
        except OSError as exc:
            raise UsageError(f"cannot write {html_out}: {exc.strerror or exc}") from None
        print(f"kvmsim: wrote {html_out}", file=sys.stderr)
    if junit_out:
        cases = [junit_case(s, r) for s, r in checked]
        try:
            write_junit(junit_out, f"kvmsim {args.command}", cases)
        except OSError as exc:
            raise UsageError(f"cannot write {junit_out}: {exc.strerror or exc}") from None
        print(f"kvmsim: wrote {junit_out}", file=sys.stderr)


def report_text(subject: Subject, result: Result) -> str:
    """The report ``kvmsim check`` prints for this check, timelines included, as plain text."""
    buf = io.StringIO()
    print_result(
        plain_console(buf),
        result,
        subject.model,
        style=subject.style,
        notes=subject.notes,
        lanes=subject.lanes,
        tokens=subject.tokens(result),
    )
    return buf.getvalue()


def junit_case(subject: Subject, result: Result) -> Case:
    """The check as a JUnit test case; its text is the report ``kvmsim check`` prints."""
    ref = subject.ref
    if ref.kind == "kvm":
        variant = subject.extra.get("variant", ref.name)
        classname, name = f"kvmsim.{variant}", f"{variant} / {ref.scenario}"
    elif ref.kind == "demo":
        classname, name = "kvmsim.demo", ref.name
    else:
        classname, name = f"kvmsim.{Path(ref.name).stem}", subject.model.name
    text = report_text(subject, result)
    outcome = outcome_of(bool(result.violations), result.exhaustive, result.interrupted)
    kinds = ", ".join(dict.fromkeys(v.kind for v in result.violations))
    failed = outcome in (FAILURE, ERROR)
    return Case(
        classname,
        name,
        result.stats.seconds,
        outcome,
        message=f"{result.verdict}: {', '.join(result.violated())}"
        if result.violations
        else f"{result.verdict} ({result.coverage})",
        kind=kinds if result.violations else "incomplete" if failed else "",
        text=text if failed else "",
        output="" if failed else text,
    )


def _write_trace_out(
    path: str, wanted: list[str], checked: Sequence[tuple[Subject, Result]]
) -> None:
    candidates = [(s, v) for s, r in checked for v in r.violations if v.trace is not None]
    chosen = None
    for prop in wanted:
        chosen = next(((s, v) for s, v in candidates if v.prop == prop), None)
        if chosen is not None:
            break
    if chosen is None and not wanted and candidates:
        chosen = candidates[0]
    if chosen is None:
        which = f" of {' or '.join(wanted)}" if wanted else ""
        print(f"kvmsim: no counterexample{which} to write: {path} not written", file=sys.stderr)
        return
    subject, violation = chosen
    token = make_token(subject.ref, subject.fingerprint, violation)
    try:
        write_json_atomic(path, subject.document(violation, token))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"kvmsim: wrote {path} (counterexample of {violation.prop})", file=sys.stderr)


def check_trace_options(args: argparse.Namespace) -> None:
    """Reject output paths that cannot be written before the search runs."""
    for opt in ("trace_out", "html", "junit"):
        path = getattr(args, opt, None)
        if not path:
            continue
        folder = Path(path).parent
        if not folder.is_dir():
            raise UsageError(f"--{opt.replace('_', '-')} {path}: no such folder {folder}")
        if Path(path).is_dir():
            raise UsageError(f"--{opt.replace('_', '-')} {path}: is a folder")


def write_demo_junit(path: str, study: DemoStudy) -> None:
    """demo --all as JUnit: a demo passes when it matched its expected verdict."""
    cases = []
    for row in study.rows:
        case = junit_case(Subject(ModelRef("demo", row.model.name), row.model), row.result)
        report = case.text or case.output
        if row.matched:
            case = replace(case, outcome=PASSED, message="", kind="", text="", output=report)
        else:
            message = f"expected {row.model.expect}: {row.why}" if row.why else case.message
            case = replace(
                case, outcome=FAILURE, message=message, kind="expectation", text=report, output=""
            )
        cases.append(case)
    try:
        write_junit(path, "kvmsim demo --all", cases)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- rebuilding a model from its reference --------------------------------------------------


def load_subject(ref: ModelRef) -> Subject:
    """Rebuild the model a token names (errors are one-line UsageErrors)."""
    if ref.kind == "kvm":
        from .cli_kvm import subject_for

        return subject_for(ref)
    if ref.kind == "demo":
        from .demos import DEMOS

        model = DEMOS.get(ref.name)
        if model is None:
            raise UsageError(f"the token names demo {ref.name!r}, which this kvmsim does not have")
        return Subject(ref, model)
    path = ref.name
    if not os.path.exists(path):
        raise UsageError(
            f"the token names model file {path}, which does not exist here (a relative path "
            "is relative to the folder the check ran in)"
        )
    with _on_sys_path(Path(path).resolve().parent):
        module = load_file(path)
        model = pick_model(module, path, ref.model)
        return Subject(ref, model)


# -- kvmsim replay ----------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    what: str = args.what
    if what.startswith(PREFIX):
        return _replay_token(what, args)
    if os.path.exists(what):
        try:
            tf = read_trace_file(what)
        except TraceFileError as exc:
            raise UsageError(str(exc)) from None
        return _replay_file(tf, args)
    if what.endswith(".json"):
        raise UsageError(f"no such file: {what}")
    raise UsageError(
        f"not a replay token (they start with {PREFIX!r}) nor a trace file: {_short(what)}"
    )


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _replay_token(text: str, args: argparse.Namespace) -> int:
    try:
        token = Token.decode(text)
    except TokenError as exc:
        raise UsageError(f"bad replay token: {exc}") from None
    subject = load_subject(token.ref)
    if subject.fingerprint != token.fingerprint:
        raise UsageError(
            f"this token is for model {subject.model.name!r} ({token.ref.describe()}), built "
            f"from different code: its fingerprint is {token.fingerprint}, the model's is now "
            f"{subject.fingerprint}; check the model again for a new token"
        )
    try:
        violation = rebuild(subject.model, token, subject.system)
    except TokenError as exc:
        raise UsageError(f"bad replay token: {exc}") from None
    if subject.explain is not None:
        violation.description = subject.explain(violation.prop) or violation.description
    assert violation.trace is not None
    if args.json:
        doc: Any = subject.document(violation, text)
        if args.step is not None:
            doc = _state_document(states_of(violation.trace), violation, args.step)
        print(dumps(doc))
        return EXIT_HOLDS
    console = _stdout_console()
    if args.step is not None:
        _print_state(console, states_of(violation.trace), violation, args.step, subject.style)
        return EXIT_HOLDS
    print_title(console, subject.model.name, subject.model.description)
    for line in subject.notes:
        console.print(Text(line, style="dim"))
    console.print()
    print_counterexample(
        console, violation, style=subject.style, lanes=subject.lanes, token=text.strip()
    )
    return EXIT_HOLDS


def _replay_file(tf: TraceFile, args: argparse.Namespace) -> int:
    violation = tf.violation
    assert violation.trace is not None
    if args.json:
        doc: Any = tf.doc
        if args.step is not None:
            doc = _state_document(tf.states, violation, args.step)
        print(dumps(doc))
        return EXIT_HOLDS
    console = _stdout_console()
    if args.step is not None:
        _print_state(console, tf.states, violation, args.step, tf.style)
        return EXIT_HOLDS
    print_title(console, tf.model, tf.description)
    notes = tf.doc.get("notes")
    for line in notes if isinstance(notes, list) else ():
        console.print(Text(str(line), style="dim"))
    console.print()
    print_counterexample(console, violation, style=tf.style, lanes=tf.lanes, token=tf.token)
    return EXIT_HOLDS


def _check_step(states: list[dict[str, Any]], violation: Violation, n: int) -> None:
    trace = violation.trace
    assert trace is not None
    total = len(trace.steps)
    if not 0 <= n <= total:
        raise UsageError(
            f"--step {n}: the trace has {total} step{'s' if total != 1 else ''} "
            f"(--step 0 is the initial state)"
        )
    if n >= len(states):
        step = trace.steps[n - 1]
        raise UsageError(
            f"--step {n}: step {n} did not complete ({step.kind}: {step.message}), so there "
            "is no state after it"
        )


def _print_state(
    console: Any,
    states: list[dict[str, Any]],
    violation: Violation,
    n: int,
    style: ValueStyle | None,
) -> None:
    _check_step(states, violation, n)
    trace = violation.trace
    assert trace is not None
    changed: set[str] = set()
    if n == 0:
        head = f"initial state (before step 1 of {len(trace.steps)})"
    else:
        step = trace.steps[n - 1]
        changed = {var for var, _b, _a in step.changes}
        what = step.function or step.actor
        label = f": {step.label}" if step.label and step.label != step.kind else ""
        who = step.actor if step.actor == step.lane else f"{step.lane}, {step.actor}"
        where = f"{who}: {what}{label}"
        head = f"state after step {n} of {len(trace.steps)} ({where})"
    console.print(Text(head, style="bold"))
    full = style if isinstance(style, CompactStyle) else None
    for var, value in states[n].items():
        text = full.value(value) if full is not None else repr(value)
        mark = "*" if var in changed else " "
        console.print(
            Text(f"{mark} {var} = {text}", style="cyan" if var in changed else ""),
        )
    if changed:
        console.print(Text(f"* changed by step {n}", style="dim"))


def _state_document(states: list[dict[str, Any]], violation: Violation, n: int) -> dict[str, Any]:
    from .report.trace_json import encode_value

    _check_step(states, violation, n)
    return {"step": n, "state": {k: encode_value(v) for k, v in states[n].items()}}
