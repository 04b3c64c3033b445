"""``kvmsim demo --all``: check a set of models, compare each verdict with its documented
expectation, and write the summary as Markdown and JSON.

It runs the textbook demos: ``study_models`` returns the models (each with its ``expect``)
and the search options to check each with. (``kvmsim study``, the KVM study, is
``kvm_study``.)

An expectation is ``holds`` (the search must be exhaustive and find nothing) or ``violates:
PROPERTY`` optionally followed by a parenthesised note; if the note says ``N steps`` the
shortest counterexample must have exactly N steps, and if it says ``lasso`` the
counterexample must end in a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .atomic import write_json, write_text
from .engine import Model, Options, Result, check
from .report.json import options_dict, result_document

FORMAT = "kvmsim-study/1"
DEFAULT_OUT = "kvmsim-study"


@dataclass
class Entry:
    """One model of the study and how to search it."""

    model: Model
    options: Options = field(default_factory=Options)


def study_models() -> list[Entry]:
    """The models ``demo --all`` checks: every textbook demo."""
    from .demos import DEMOS

    return [Entry(m) for m in DEMOS.values()]


@dataclass(frozen=True)
class Expectation:
    holds: bool
    prop: str = ""  # the property expected to be violated
    steps: int | None = None  # expected length of its shortest counterexample, if stated
    lasso: bool = False  # the counterexample is expected to be a lasso (a cycle)

    @classmethod
    def parse(cls, expect: str) -> Expectation | None:
        text = expect.strip()
        if text == "holds" or text.startswith("holds "):
            return cls(True)
        m = re.fullmatch(r"violates:\s*(.*?)\s*(\((.*)\))?", text)
        if not m or not m.group(1):
            return None
        note = m.group(3) or ""
        steps = re.search(r"(\d+)\s+steps?\b", note)
        lasso = re.search(r"\blasso\b", note) is not None
        return cls(False, m.group(1), int(steps.group(1)) if steps else None, lasso)


def compare(expect: str, result: Result) -> tuple[bool, str]:
    """Does result match the documented expectation? (matched, why not)."""
    exp = Expectation.parse(expect)
    if exp is None:
        return False, f"no expectation kvmsim can read: {expect!r}" if expect else "no expectation"
    if result.interrupted:
        return False, "interrupted"
    if exp.holds:
        if result.violations:
            return False, f"violated {', '.join(result.violated())}"
        if result.verdict != "holds":
            return False, f"only {result.verdict}"
        return True, ""
    if exp.prop not in result.violated():
        found = ", ".join(result.violated()) or "nothing"
        return False, f"expected {exp.prop!r} to be violated, found {found}"
    trace = result.violation(exp.prop).trace
    if exp.steps is not None and trace is not None and len(trace) != exp.steps:
        return False, f"counterexample has {len(trace)} steps, expected {exp.steps}"
    if exp.lasso and (trace is None or trace.loop_start is None):
        return False, "expected a lasso (a cycle), the counterexample has none"
    return True, ""


@dataclass
class Row:
    entry: Entry
    result: Result
    matched: bool
    why: str = ""

    @property
    def model(self) -> Model:
        return self.entry.model

    def as_dict(self) -> dict[str, Any]:
        lengths = {
            v.prop: len(v.trace) if v.trace is not None else None for v in self.result.violations
        }
        return {
            "model": self.model.name,
            "description": self.model.description,
            "expect": self.model.expect,
            "verdict": self.result.verdict,
            "matched": self.matched,
            "mismatch": self.why,
            "violated": self.result.violated(),
            "counterexample_steps": lengths,
            "coverage": self.result.coverage,
            "stats": self.result.stats.as_dict(),
            "options": options_dict(self.entry.options),
            "result": result_document(self.result),
        }


@dataclass
class Study:
    rows: list[Row] = field(default_factory=list)
    interrupted: bool = False

    @property
    def all_matched(self) -> bool:
        return bool(self.rows) and not self.interrupted and all(r.matched for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "all_matched": self.all_matched,
            "interrupted": self.interrupted,
            "models": [r.as_dict() for r in self.rows],
        }


def run_study(
    entries: list[Entry] | None = None,
    progress: Callable[[Entry], Callable[..., None] | None] | None = None,
) -> Study:
    """Check every entry in turn. progress(entry) may return a progress callback for it.

    A Ctrl-C stops the study after the model being checked (its partial result is kept).
    """
    study = Study()
    for entry in entries if entries is not None else study_models():
        opt = entry.options
        if progress is not None:
            callback = progress(entry)
            if callback is not None:
                opt = replace(opt, progress=callback)
        result = check(entry.model, opt)
        matched, why = compare(entry.model.expect, result)
        study.rows.append(Row(entry, result, matched, why))
        if result.interrupted:
            study.interrupted = True
            break
    return study


SUMMARY_COLUMNS = ("model", "expected", "verdict", "states", "transitions", "seconds", "match")


def summary_rows(study: Study) -> list[tuple[str, ...]]:
    """The summary table's cells, as shown in the terminal and in the Markdown."""
    rows: list[tuple[str, ...]] = []
    for r in study.rows:
        s = r.result.stats
        rows.append(
            (
                r.model.name,
                r.model.expect,
                r.result.verdict
                + (f": {', '.join(r.result.violated())}" if r.result.violations else ""),
                f"{s.states:,}",
                f"{s.transitions:,}",
                f"{s.seconds:.3f}",
                "yes" if r.matched else f"NO ({r.why})",
            )
        )
    return rows


def markdown(study: Study) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# kvmsim demos",
        "",
        "Every textbook model checked with its documented expected verdict "
        "(`kvmsim demo --all`; JSON beside this file: `study.json`).",
        "",
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "|" + "|".join("---" for _ in SUMMARY_COLUMNS) + "|",
    ]
    for row in summary_rows(study):
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    lines.append("")
    if study.interrupted:
        lines.append("**Interrupted**: the study is incomplete.")
    elif study.all_matched:
        lines.append("All models matched their expected verdicts.")
    else:
        missed = [r.model.name for r in study.rows if not r.matched]
        lines.append(f"**Mismatch**: {', '.join(missed)}.")
    lines.append("")
    for r in study.rows:
        lines.append(f"## {r.model.name}")
        lines.append("")
        if r.model.description:
            lines.append(r.model.description + ".")
            lines.append("")
        lines.append(f"- expected: {r.model.expect or '(none)'}")
        lines.append(f"- verdict: {r.result.verdict}")
        for v in r.result.violations:
            n = f", {len(v.trace)} steps" if v.trace is not None else ""
            lines.append(f"- violated: {v.prop} ({v.kind}{n}): {v.message}")
        lines.append(f"- coverage: {r.result.coverage}")
        s = r.result.stats
        lines.append(
            f"- {s.states:,} states, {s.transitions:,} transitions, max depth {s.max_depth}, "
            f"{s.seconds:.3f} s, peak memory {s.peak_memory_mb:.1f} MB"
        )
        lines.append("")
    return "\n".join(lines)


def write_study(study: Study, out_dir: str | Path) -> tuple[Path, Path]:
    """Write study.md and study.json into out_dir (created if needed), each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "study.md"
    js = out / "study.json"
    write_text(md, markdown(study))
    write_json(js, study.as_dict())
    return md, js
