"""The terminal report of a simulation: each run's steps, its cost figures, what it broke.

A run is listed one line per step (``#``, the lane, the function and the step's label, the
state it changed, its cost events), or drawn as the per-lane timeline of a counterexample
(``timeline=True``). Its cost figures follow on one line, then any property it broke with
the sentence saying what that property means. With several runs a table sums them up.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..engine.trace import TraceStep
from ..simulate import COST_EVENTS, DEADLOCK, STEP_LIMIT, Run, Simulation
from .text import PLAIN_WIDTH, timeline
from .values import ValueStyle

ENDINGS = {
    "finished": "every actor finished",
    "deadlock": "deadlock",
    "broken": "broke a property",
    "step limit": "stopped at the step limit",
}


def print_simulation(
    console: Console,
    sim: Simulation,
    *,
    title: str = "",
    style: ValueStyle | None = None,
    draw_timeline: bool = False,
    quiet: bool = False,
    lanes: Sequence[str] = (),
) -> None:
    """Every run (its steps unless quiet), then a summary of all runs.

    lanes: the order of the timeline's columns (with draw_timeline).
    """
    plain = console.width >= PLAIN_WIDTH
    style = style or ValueStyle()
    if title:
        console.print(Text(title, style="bold"))
    for run in sim.runs:
        console.print()
        console.print(Text(run_title(run, len(sim.runs)), style="bold"))
        if not quiet and run.trace.steps:
            if draw_timeline:
                console.print(timeline(run.trace, plain=plain, style=style, lanes=lanes))
            else:
                console.print(listing(run, style))
        console.print(Text(cost_line(run.costs), style="yellow"))
        for b in run.broken:
            where = "in the initial state" if b.step < 0 else f"at step {b.step + 1}"
            text = Text(f"✗ {b.prop} {where}: {b.message}", style="bold red")
            if b.description:
                text.append(f"\n  {b.description}", style="")
            console.print(text)
    if len(sim.runs) > 1:
        console.print()
        console.print(summary_table(sim, plain))
        console.print(Text(cost_line(sim.costs(), "total costs"), style="yellow"))
    console.print()
    console.print(verdict(sim))


def run_title(run: Run, of: int) -> str:
    steps = f"{run.steps} step{'s' if run.steps != 1 else ''}"
    end = ENDINGS.get(run.end, run.end)
    if run.unfinished and run.end in (DEADLOCK, STEP_LIMIT):
        end += f" (not finished: {', '.join(run.unfinished)})"
    return f"run {run.index + 1} of {of} (seed {run.seed}): {steps}, {end}"


def cost_line(costs: dict[str, int], label: str = "costs") -> str:
    parts = [f"{COST_EVENTS.get(kind, kind)} {n}" for kind, n in costs.items()]
    return f"{label}: {', '.join(parts)}"


def verdict(sim: Simulation) -> Text:
    broken = sim.broken
    if not broken:
        n = len(sim.runs)
        return Text(f"no run broke a property ({n} run{'s' if n != 1 else ''})", style="green")
    runs = [str(r.index + 1) for r in sim.runs if r.broken]
    return Text(
        f"broken: {', '.join(broken)} (run{'s' if len(runs) != 1 else ''} {', '.join(runs)})",
        style="bold red",
    )


STEP_WIDTH = 72  # the step column is padded to the longest step up to this width


def listing(run: Run, style: ValueStyle) -> Text:
    """One line per step: number, lane, function and label, cost events, what changed."""
    rows = []
    for step in run.trace.steps:
        lane = step.lane if step.actor == step.lane else f"{step.lane} {step.actor}"
        cost = f"[{', '.join(step.events)}]" if step.events else ""
        rows.append((str(step.index + 1), lane, step_text(step), cost, changed_text(step, style)))
    titles = ("#", "lane", "step", "cost")
    wide = [max([len(t)] + [len(r[i]) for r in rows]) for i, t in enumerate(titles)]
    wide[2] = min(wide[2], STEP_WIDTH)
    head = Text()
    for title, width in zip(titles, wide):
        head.append(title.rjust(width) if title == "#" else title.ljust(width))
        head.append("  ")
    head.append("changed")
    out = Text()
    out.append(head.plain.rstrip() + "\n", style="bold")
    for n, lane, what, cost, changed in rows:
        line = Text()
        line.append(n.rjust(wide[0]), style="dim")
        line.append("  " + lane.ljust(wide[1]) + "  ")
        line.append_text(what)
        line.append(" " * max(wide[2] - len(what), 0) + "  ")
        line.append(cost.ljust(wide[3]), style="yellow")
        if changed:
            line.append("  " + changed, style="cyan")
        line.rstrip()
        out.append_text(line)
        out.append("\n")
    out.rstrip()
    return out


def step_text(step: TraceStep) -> Text:
    if not step.function and step.label == "return" and step.kind == "ok":
        return Text("return (finished)", style="dim")
    who = step.function or step.actor
    label = step.label if step.label != step.kind else ""
    if label == who or label.startswith(f"{who}: "):  # the label names the function itself
        who, label = label.partition(": ")[0], label.partition(": ")[2]
    text = Text(who, style="bold")
    if label:
        text.append(f": {label}")
    for choice in step.choices:
        text.append(f" [chose {choice}]", style="magenta")
    if step.kind != "ok":
        text.append(f" ✗ {step.message}", style="bold red")
    return text


def changed_text(step: TraceStep, style: ValueStyle) -> str:
    return "; ".join(style.change(var, before, after) for var, before, after in step.changes)


def summary_table(sim: Simulation, plain: bool) -> Table:
    table = Table(box=box.ASCII if plain else box.ROUNDED, header_style="bold")
    for col in ("run", "seed", "steps", "end", "broken"):
        table.add_column(col, justify="right" if col in ("run", "seed", "steps") else "left")
    kinds = list(sim.costs())
    for kind in kinds:
        table.add_column(kind, justify="right")
    for run in sim.runs:
        broken = ", ".join(b.prop for b in run.broken)
        table.add_row(
            str(run.index + 1),
            str(run.seed),
            str(run.steps),
            run.end,
            broken,
            *[str(run.costs.get(k, 0)) for k in kinds],
            style="red" if run.broken else "",
        )
    return table
