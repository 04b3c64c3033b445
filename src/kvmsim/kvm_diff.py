"""``kvmsim diff``: the A/B view of a patch, a variant against its base, scenario by scenario.

Two kinds of figure, never mixed up:

* exact: each side is checked exhaustively; a violation *appears* when the variant breaks a
  property the base holds on that scenario (and *disappears* the other way round), with the
  shortest counterexample's length; each cost's minimum and maximum are exact over every
  complete behaviour (``∞``: unbounded);
* sampled: K seeded random runs per side (``jobs.sample``: run k uses seed S+k). For each cost,
  the mean per run on each side, and how often a random run of the variant costs less (more)
  than a random run of the base: the fraction of all K x K pairs (variant run, base run) in
  which it does. These are estimates from a sample, and say so.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

from .jobs import (
    CHECK,
    COST_LABELS,
    COST_NAMES,
    SAMPLE,
    Batch,
    Broken,
    CheckSummary,
    Job,
    SampleSummary,
)
from .kvm_study import WEIGHT, fmt_range

FORMAT = "kvmsim-diff/1"


@dataclass
class Sampled:
    """One cost over the random runs of both sides."""

    runs: tuple[int, int]  # base, variant
    mean: tuple[float, float]
    lower: float  # fraction of (variant run, base run) pairs with the variant's cost lower
    higher: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": {"base": self.runs[0], "variant": self.runs[1]},
            "mean": {"base": round(self.mean[0], 4), "variant": round(self.mean[1], 4)},
            "variant_lower": round(self.lower, 4),
            "variant_higher": round(self.higher, 4),
        }


def compare_samples(base: list[int], variant: list[int]) -> Sampled:
    """Means, and over all pairs the fraction in which the variant's value is lower/higher."""
    ordered = sorted(base)
    pairs = len(base) * len(variant)
    lower = sum(len(ordered) - bisect_right(ordered, x) for x in variant)
    higher = sum(bisect_left(ordered, x) for x in variant)
    return Sampled(
        (len(base), len(variant)),
        (sum(base) / len(base) if base else 0.0, sum(variant) / len(variant) if variant else 0.0),
        lower / pairs if pairs else 0.0,
        higher / pairs if pairs else 0.0,
    )


@dataclass
class CostChange:
    cost: str
    base: tuple[int, int | None] | None  # exact range, None: not computed
    variant: tuple[int, int | None] | None
    sampled: Sampled | None = None

    @property
    def changed(self) -> bool:
        return self.base != self.variant

    def sentence(self) -> str:
        """e.g. ``all-context flushes: 1–1 → 0–0; sampled, over 300 random runs each, mean
        1.00 → 0.00 (a variant run costs less in 100% of run pairs, more in 0%)``."""
        text = f"{COST_LABELS[self.cost]}: {fmt_range(self.base)} → {fmt_range(self.variant)}"
        if self.sampled is not None:
            s = self.sampled
            each = (
                f"{s.runs[0]} random runs each"
                if s.runs[0] == s.runs[1]
                else f"{s.runs[0]} and {s.runs[1]} random runs"
            )
            text += (
                f"; sampled, over {each}, mean {s.mean[0]:.2f} → {s.mean[1]:.2f} (a variant run "
                f"costs less in {s.lower:.0%} of run pairs, more in {s.higher:.0%})"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        def exact(r: tuple[int, int | None] | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"min": r[0], "max": "unbounded" if r[1] is None else r[1]}

        return {
            "base": exact(self.base),
            "variant": exact(self.variant),
            "changed": self.changed,
            "sampled": self.sampled.as_dict() if self.sampled is not None else None,
        }


@dataclass
class ScenarioDiff:
    scenario: str
    base: CheckSummary | None
    variant: CheckSummary | None
    sample_base: SampleSummary | None = None
    sample_variant: SampleSummary | None = None
    appear: list[Broken] = field(default_factory=list)
    disappear: list[Broken] = field(default_factory=list)
    costs: list[CostChange] = field(default_factory=list)

    @property
    def checked(self) -> bool:
        return (
            self.base is not None and self.variant is not None and self.base.ok and self.variant.ok
        )

    def errors(self) -> list[str]:
        out = []
        for side, s in (
            ("base", self.base),
            ("variant", self.variant),
            ("base sample", self.sample_base),
            ("variant sample", self.sample_variant),
        ):
            if s is not None and s.error:
                out.append(f"{self.scenario}, {side}: {s.error}")
        return out


def sample_notes(s: SampleSummary) -> str:
    """How many sampled runs broke a property, stopped at the step limit or crashed."""
    broke = sum(1 for r in s.runs if r.broke)
    limit = sum(1 for r in s.runs if r.end == "step limit")
    crashed = sum(1 for r in s.runs if r.end == "error")
    parts = []
    if broke:
        parts.append(f"{broke} of {len(s.runs)} runs broke a property (counted to their end)")
    if limit:
        parts.append(f"{limit} stopped at the {s.max_steps}-step limit")
    if crashed:
        parts.append(f"{crashed} stopped at a crashed step")
    return "; ".join(parts)


@dataclass
class Diff:
    base: str  # the names shown (a file variant: its Variant's name)
    variant: str
    base_spec: str
    variant_spec: str
    scenarios: list[ScenarioDiff]
    runs: int
    seed: int
    max_steps: int
    interrupted: bool = False
    seconds: float = 0.0
    workers: int = 1

    @property
    def errors(self) -> list[str]:
        return [e for d in self.scenarios for e in d.errors()]

    @property
    def complete(self) -> bool:
        return not self.interrupted and not self.errors and all(d.checked for d in self.scenarios)

    @property
    def appear(self) -> list[tuple[str, Broken]]:
        return [(d.scenario, b) for d in self.scenarios for b in d.appear]

    @property
    def disappear(self) -> list[tuple[str, Broken]]:
        return [(d.scenario, b) for d in self.scenarios for b in d.disappear]

    @property
    def changed(self) -> bool:
        return bool(self.appear or self.disappear) or any(
            c.changed for d in self.scenarios for c in d.costs
        )

    def as_dict(self) -> dict[str, Any]:
        def items(pairs: list[tuple[str, Broken]]) -> list[dict[str, Any]]:
            return [{"scenario": s, **b.as_dict()} for s, b in pairs]

        return {
            "format": FORMAT,
            "base": self.base,
            "variant": self.variant,
            "base_spec": self.base_spec,
            "variant_spec": self.variant_spec,
            "complete": self.complete,
            "interrupted": self.interrupted,
            "errors": self.errors,
            "runs": self.runs,
            "seed": self.seed,
            "max_steps": self.max_steps,
            "wall_seconds": round(self.seconds, 1),
            "appear": items(self.appear),
            "disappear": items(self.disappear),
            "scenarios": [_scenario_dict(d) for d in self.scenarios],
            "notes": [
                "exact: min and max over every complete behaviour of an exhaustive check",
                "sampled: seeded random runs (run k uses seed + k); variant_lower is the "
                "fraction of all (variant run, base run) pairs in which the variant's run "
                "costs less",
            ],
        }


def _side(s: CheckSummary | None) -> dict[str, Any] | None:
    if s is None:
        return None
    if s.error:
        return {"error": s.error}
    return {
        "violated": s.violated,
        "violations": [b.as_dict() for b in s.violations],
        "states": s.states,
        "transitions": s.transitions,
        "seconds": round(s.seconds, 3),
        "exhaustive": s.exhaustive,
    }


def _scenario_dict(d: ScenarioDiff) -> dict[str, Any]:
    return {
        "scenario": d.scenario,
        "base": _side(d.base),
        "variant": _side(d.variant),
        "appear": [b.as_dict() for b in d.appear],
        "disappear": [b.as_dict() for b in d.disappear],
        "costs": {c.cost: c.as_dict() for c in d.costs},
        "sampled_runs": {
            side: (
                {
                    "runs": len(s.runs),
                    "broke_a_property": sum(1 for r in s.runs if r.broke),
                    "step_limit": sum(1 for r in s.runs if r.end == "step limit"),
                }
                if s is not None and s.ok
                else None
            )
            for side, s in (("base", d.sample_base), ("variant", d.sample_variant))
        },
    }


# -- planning and assembling ----------------------------------------------------------------


def plan(
    base: str, variant: str, scenarios: list[str], runs: int, seed: int, max_steps: int
) -> list[Job]:
    """Both checks of every scenario, then (runs > 0) both samples; longest first."""
    sides = list(dict.fromkeys((base, variant)))  # a variant against itself: one of each
    jobs = [Job(v, s) for s in scenarios for v in sides]
    if runs > 0:
        jobs += [Job(v, s, SAMPLE, runs, seed, max_steps) for s in scenarios for v in sides]
    return sorted(jobs, key=lambda j: (j.kind != CHECK, -WEIGHT.get(j.scenario, 1.0)))


def assemble(
    base: str,
    variant: str,
    base_spec: str,
    variant_spec: str,
    scenarios: list[str],
    batch: Batch,
    runs: int,
    seed: int,
    max_steps: int,
    workers: int,
) -> Diff:
    got = batch.summaries
    out: list[ScenarioDiff] = []
    for s in scenarios:
        b = got.get(Job(base_spec, s))
        v = got.get(Job(variant_spec, s))
        sb = got.get(Job(base_spec, s, SAMPLE, runs, seed, max_steps))
        sv = got.get(Job(variant_spec, s, SAMPLE, runs, seed, max_steps))
        assert b is None or isinstance(b, CheckSummary)
        assert v is None or isinstance(v, CheckSummary)
        assert sb is None or isinstance(sb, SampleSummary)
        assert sv is None or isinstance(sv, SampleSummary)
        d = ScenarioDiff(s, b, v, sb, sv)
        if d.checked:
            assert b is not None and v is not None
            d.appear = [x for x in v.violations if x.prop not in b.violated]
            d.disappear = [x for x in b.violations if x.prop not in v.violated]
            sampled = sb is not None and sv is not None and sb.ok and sv.ok
            for c in COST_NAMES:
                change = CostChange(c, b.cost(c), v.cost(c))
                if sampled:
                    assert sb is not None and sv is not None
                    change.sampled = compare_samples(sb.values(c), sv.values(c))
                d.costs.append(change)
        out.append(d)
    return Diff(
        base,
        variant,
        base_spec,
        variant_spec,
        out,
        runs,
        seed,
        max_steps,
        batch.interrupted,
        batch.seconds,
        workers,
    )


def _phrase(scenario: str, b: Broken) -> str:
    if b.kind == "error":
        return f"the model crashed in {scenario} after {b.steps} steps ({b.message})"
    return f"{b.prop} in {scenario}, shortest counterexample {b.steps} steps"


def summary_sentences(diff: Diff) -> list[str]:
    """The headline: violations that appear or disappear, and every exact cost change."""
    lines = []
    if diff.appear:
        lines.append(
            f"violations that appear ({diff.variant} breaks, {diff.base} holds): "
            + "; ".join(_phrase(s, b) for s, b in diff.appear)
        )
    else:
        lines.append(
            f"violations that appear: none ({diff.variant} breaks nothing {diff.base} holds)"
        )
    if diff.disappear:
        lines.append(
            f"violations that disappear ({diff.base} breaks, {diff.variant} holds): "
            + "; ".join(f"{_phrase(s, b)} in {diff.base}" for s, b in diff.disappear)
        )
    else:
        lines.append("violations that disappear: none")
    changed = [(d.scenario, c) for d in diff.scenarios for c in d.costs if c.changed]
    if changed:
        for s, c in changed:
            lines.append(f"{s}: {c.sentence()}")
    elif any(d.checked for d in diff.scenarios):
        lines.append("exact cost figures: no change in any scenario")
    return lines
