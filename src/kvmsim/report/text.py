"""The terminal report: a verdict, one timeline per counterexample, and a statistics line.

A counterexample is drawn as a table with one column per lane (an actor's lane is its CPU)
and one row per step. Each cell names the function the actor was in (the innermost frame of
its call stack), the step's label, the choices the step made and the state it changed
(``var: before→after``; unchanged state is not shown). The violated property comes last, with
a sentence saying what it means. For a lasso (an actor starved forever) a ``── loop ──`` row
marks where the cycle starts.

``print_result`` draws on any rich ``Console``. ``plain_console`` makes one that never looks
at the terminal (no colour, no width limit but the table's own), so output written to a pipe
or read by a test is the same everywhere.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..engine import Model, Result, Violation
from ..engine.trace import Trace, TraceStep
from .values import ValueStyle

PLAIN_WIDTH = 10_000  # plain output: lines never wrap; tables take their natural width
CELL_WIDTH = 44  # a lane column never grows wider than this (long values fold)
VALUE_WIDTH = ValueStyle.width  # a value longer than this is shortened with an ellipsis

# What each kind of violation the engine finds by itself means (user properties carry their
# own description).
KIND_MEANING = {
    "deadlock": "No actor can take a step, yet some actor that is not a daemon has not finished.",
    "progress": (
        "A must-finish actor can be kept from finishing forever, even though every actor that "
        "stays able to move eventually moves (weak fairness)."
    ),
    "error": (
        "The model raised an exception inside a step: a bug in the model or in what it models."
    ),
    "property": "A step reached an event that the model checks for and declares wrong.",
    "assertion": "An assert statement inside a step failed.",
    "sometimes": (
        "No reachable state satisfies it, so the scenario it describes never happens and the "
        "other verdicts may be vacuous."
    ),
}


def plain_console(file: Any = None) -> Console:
    """A console whose output does not depend on the terminal: no colour, no wrapping."""
    return Console(
        file=file if file is not None else io.StringIO(),
        width=PLAIN_WIDTH,
        color_system=None,
        force_terminal=False,
        force_interactive=False,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )


def render_result(
    result: Result,
    model: Model | None = None,
    *,
    quiet: bool = False,
    color: bool = False,
    style: ValueStyle | None = None,
) -> str:
    """The whole report as a string, independent of the terminal (for pipes and tests)."""
    buf = io.StringIO()
    if color:
        console = Console(
            file=buf,
            width=PLAIN_WIDTH,
            color_system="standard",
            force_terminal=True,
            highlight=False,
            emoji=False,
            soft_wrap=False,
        )
    else:
        console = plain_console(buf)
    print_result(console, result, model, quiet=quiet, style=style)
    return buf.getvalue()


def print_result(
    console: Console,
    result: Result,
    model: Model | None = None,
    *,
    quiet: bool = False,
    style: ValueStyle | None = None,
    notes: Sequence[str] = (),
    lanes: Sequence[str] = (),
    tokens: Mapping[str, str] | None = None,
) -> None:
    """Header, counterexamples (or one line each when quiet), verdict and statistics.

    style: how state values and changes are written (default: repr, shortened); notes: lines
    printed (dim) under the title; lanes: the order of a timeline's first columns; tokens:
    each violated property's replay token, printed after its counterexample.
    """
    plain = console.width >= PLAIN_WIDTH
    print_title(console, result.model, model.description if model is not None else "")
    if model is not None and model.expect:
        console.print(Text(f"expected: {model.expect}", style="dim"))
    for line in notes:
        console.print(Text(line, style="dim"))
    tokens = tokens or {}
    for n, violation in enumerate(result.violations, 1):
        if quiet:
            console.print(_violation_summary(violation))
            token = tokens.get(violation.prop)
            if token:
                console.print(Text(f"  {replay_line(token)}", style="dim"))
            continue
        console.print()
        print_counterexample(
            console,
            violation,
            f"counterexample {n} of {len(result.violations)}",
            plain=plain,
            style=style,
            lanes=lanes,
            token=tokens.get(violation.prop),
        )
    if result.violations and not quiet:
        console.print()
    console.print(verdict_text(result))
    for prop, seen in sorted(result.sometimes.items()):
        if seen:
            console.print(Text(f"sometimes {prop!r}: witnessed", style="green"))
        elif not result.complete:
            console.print(Text(f"sometimes {prop!r}: not witnessed (search incomplete)"))
        else:
            console.print(Text(f"sometimes {prop!r}: never reached in any explored state"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="dim"))
    console.print(Text(stats_line(result), style="dim"))


def print_title(console: Console, name: str, description: str = "") -> None:
    """The model's name (bold) and what it is."""
    title = Text(name, style="bold")
    if description:
        title.append(f": {description}", style="")
    console.print(title)


def print_counterexample(
    console: Console,
    violation: Violation,
    header: str = "counterexample",
    *,
    plain: bool | None = None,
    style: ValueStyle | None = None,
    lanes: Sequence[str] = (),
    token: str | None = None,
) -> None:
    """One counterexample: its title, the initial values it touches, the timeline, the
    violated property with what it means, and the command that replays it."""
    if plain is None:
        plain = console.width >= PLAIN_WIDTH
    console.print(Text(f"{header}: {_violation_title(violation)}", style="bold red"))
    if violation.trace is not None and violation.trace.steps:
        initial = _initial_line(violation.trace, style)
        if initial:
            console.print(Text(initial, style="dim"))
        console.print(timeline(violation.trace, plain=plain, style=style, lanes=lanes))
        if violation.trace.loop_start is not None:
            console.print(
                Text("the steps from ── loop ── on repeat forever", style="yellow"),
            )
    console.print(_property_text(violation))
    if token:
        console.print(Text(replay_line(token), style="dim"))


def replay_line(token: str) -> str:
    """The replay token, as the command that replays it."""
    return f"replay: kvmsim replay {token}"


def verdict_phrase(result: Result) -> str:
    """The verdict with how far the search went, which every verdict line says:
    ``holds, exhaustive`` / ``holds, bounded (depth 4)`` / ``holds, incomplete (interrupted)``
    / ``violated: p, q (search exhaustive)``. Only an exhaustive search's "holds" stands
    without a qualifier, and even it says so."""
    if result.violations:
        return f"violated: {', '.join(result.violated())} (search {result.coverage})"
    return f"holds, {result.coverage}"


def verdict_text(result: Result) -> Text:
    """``verdict: holds, exhaustive`` / ``verdict: holds, bounded (...)`` / ``verdict:
    violated: p, q (search ...)``."""
    if result.violations:
        return Text(f"verdict: {verdict_phrase(result)}", style="bold red")
    style = "bold green" if result.verdict == "holds" else "bold yellow"
    return Text(f"verdict: {verdict_phrase(result)}", style=style)


def stats_line(result: Result) -> str:
    """One line: distinct states, transitions, depth, speed, memory, time, and coverage."""
    s = result.stats
    runs = f", {s.runs:,} runs" if s.runs else ""
    return (
        f"statistics: {s.states:,} distinct states, {s.transitions:,} transitions, "
        f"max depth {s.max_depth:,}{runs}, {s.states_per_second:,.0f} states/s, "
        f"peak memory {s.peak_memory_mb:,.1f} MB, {s.seconds:.2f} s; coverage: {result.coverage}"
    )


def meaning(violation: Violation) -> str:
    """One sentence saying what the violated property means."""
    return violation.description or KIND_MEANING.get(violation.kind, "")


def timeline(
    trace: Trace,
    *,
    plain: bool = False,
    style: ValueStyle | None = None,
    lanes: Sequence[str] = (),
) -> Table:
    """The trace as a table: one column per lane, one row per step.

    Columns come in the order of lanes (those the trace uses), then in order of appearance.
    """
    used = {step.lane for step in trace.steps}
    lanes = [lane for lane in dict.fromkeys(lanes) if lane in used]
    for step in trace.steps:
        if step.lane not in lanes:
            lanes.append(step.lane)
    table = Table(
        box=box.ASCII if plain else box.ROUNDED,
        show_lines=True,
        header_style="bold",
        pad_edge=True,
    )
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    for lane in lanes:
        table.add_column(lane, max_width=CELL_WIDTH, overflow="fold", vertical="top")
    for step in trace.steps:
        if trace.loop_start is not None and step.index == trace.loop_start:
            table.add_row("", *[Text("── loop ──", style="yellow") for _ in lanes])
        cells: list[Text | str] = ["" for _ in lanes]
        cells[lanes.index(step.lane)] = step_cell(step, style)
        table.add_row(str(step.index + 1), *cells)
    return table


def step_cell(step: TraceStep, style: ValueStyle | None = None) -> Text:
    """What one step shows: function, label, choices, changes (or the failure)."""
    style = style or DEFAULT_STYLE
    text = Text()
    who = step.function or step.actor
    if step.actor != step.lane:
        who = f"{step.actor}: {who}"
    text.append(who, style="bold")
    if step.kind not in ("ok", "property") or (step.kind == "property" and not step.changes):
        if step.label and step.label != step.kind:
            text.append(f"\n{step.label}")
        what = step.message if step.kind == "property" else f"{step.kind}: {step.message}"
        text.append(f"\n✗ {what}", style="bold red")
        if step.line and not _in_engine(step.line):
            text.append(f"\nat {short_path(step.line)}", style="red")
        return text
    if step.label:
        text.append(f"\n{step.label}")
    for choice in step.choices:
        text.append(f"\nchose {choice}", style="magenta")
    for var, before, after in step.changes:
        text.append(f"\n{style.change(var, before, after)}", style="cyan")
    events = getattr(step, "events", ())
    if events:
        text.append(f"\ncost: {', '.join(events)}", style="yellow")
    if step.kind == "property":  # the step completed, and broke an event property
        text.append(f"\n✗ {step.message}", style="bold red")
    return text


DEFAULT_STYLE = ValueStyle()


def short_value(value: Any) -> str:
    return DEFAULT_STYLE.value(value)


def short_path(location: str) -> str:
    """file:line with the file relative to the working directory when it is below it."""
    path, sep, line = location.rpartition(":")
    if not sep:
        return location
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return location
    return f"{rel}:{line}" if not rel.startswith("..") else location


ENGINE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine")


def _in_engine(location: str) -> bool:
    """A location inside kvmsim's engine (e.g. its fail()) says nothing about the model."""
    return os.path.abspath(location.rpartition(":")[0]).startswith(ENGINE_DIR + os.sep)


def _violation_title(v: Violation) -> str:
    title = v.prop if v.prop == v.kind else f"{v.prop} ({v.kind})"
    if v.trace is None:
        return title
    n = len(v.trace)
    if v.trace.loop_start is not None:
        loop = n - v.trace.loop_start
        return f"{title}, {v.trace.loop_start}-step prefix then a {loop}-step loop"
    return f"{title}, {n} step{'s' if n != 1 else ''}"


def _violation_summary(v: Violation) -> Text:
    return Text(f"✗ {_violation_title(v)}: {v.message}", style="red")


def _property_text(v: Violation) -> Text:
    text = Text(f"✗ {v.prop}", style="bold red")
    if v.message:
        text.append(f": {v.message}", style="red")
    sentence = meaning(v)
    if sentence:
        text.append(f"\n  {sentence}")
    return text


def _initial_line(trace: Trace, style: ValueStyle | None = None) -> str:
    """The initial values of the variables the trace changes."""
    touched: list[str] = []
    for step in trace.steps:
        for var, _before, _after in step.changes:
            if var not in touched:
                touched.append(var)
    if not touched:
        return ""
    style = style or DEFAULT_STYLE
    parts = [f"{var}={style.value(trace.initial.get(var))}" for var in touched]
    return "initial: " + ", ".join(parts)
