"""``kvmsim study``: every variant of the reload protocol checked on a set of scenarios, and
the reviewers' questions answered from the results.

The study plans one exhaustive check per (variant, scenario), runs them in worker processes
(``jobs.run_jobs``), and assembles:

* for each question (``QUESTIONS``), a verdict and its evidence. Nothing in them is written in
  advance: each sentence is built from the figures of the checks it names (which property
  broke where and how short its counterexample is, how many states held, cost ranges), so a
  different model gives a different text;
* a table of every variant x scenario: the properties held or broken, states, and compact
  cost ranges.

Cost figures are exact minima and maxima over every complete behaviour the search explored
(``Options(costs=True)``); ``∞`` is an unbounded maximum (a cycle that repeats the cost).

The default set: every variant on every default scenario except the two big ones
(``BIG_SCENARIOS``), which only the variants in ``BIG_VARIANTS`` also run (they take most of
the time). ``--quick`` is every variant on ``QUICK_SCENARIOS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_json, write_text
from .jobs import COST_LABELS, COST_NAMES, Broken, CheckSummary, Job

FORMAT = "kvmsim-kvm-study/1"
DEFAULT_OUT = "kvmsim-study"
BASE = "v6.5"
QUICK_SCENARIOS = ("migrate", "zap-anon", "x2apic-migrate")
BIG_SCENARIOS = ("two-vcpus-migrate", "unrelated-overlap")
BIG_VARIANTS = ("v6.5", "v6.6")  # the base of every question, and question c's variant
TABLE_COSTS = ("ipi", "flush_all", "flush_current", "bail", "reload_retry", "out_of_guest_steps")
WAIT_COSTS = ("bail", "pass", "reload_attempt", "reload_retry", "out_of_guest_steps")
FLUSH_COSTS = ("flush_current", "flush_all")
PIN_VARIANTS = ("pin-v6.5", "pinned")
BAIL_VARIANTS = ("bail-immediately", "bail-and-rerequest")

# Relative check times (measured on v6.5): the longest jobs are handed out first.
WEIGHT = {
    "three-vcpus-migrate": 1000.0,
    "two-vcpus-migrate": 100.0,
    "unrelated-overlap": 45.0,
    "apicv-inhibit": 20.0,
    "back-to-back": 5.0,
    "smm": 4.5,
    "nested": 4.0,
    "gup-fails": 4.0,
    "preempted": 3.5,
    "signal": 3.0,
}

# Scenarios in which vmx_set_apic_access_page_addr returns before its own flush.
EARLY_RETURN = {
    "x2apic-switch": "x2APIC mode for a while: the control is off, the reload returns early",
    "x2apic-migrate": "x2APIC mode: VIRTUALIZE_APIC_ACCESSES is off, the reload returns early",
    "nested": "L2 is running: the reload is deferred to the nested VM-exit",
}

BLOCK_NOTE = (
    "The model treats each modelled physical page as sitting in its own 2 MiB block of "
    "movable 4 KiB pages, so a long-term pinned page blocks exactly one block: compaction "
    "can no longer assemble that block into a huge page."
)


# -- what to run ------------------------------------------------------------------------------


def variant_names() -> list[str]:
    from .variants import all_variants

    return [v.name for v in all_variants()]


def scenario_names(default_only: bool = False) -> list[str]:
    from .scenarios import SCENARIOS

    return [s.name for s in SCENARIOS.values() if s.default or not default_only]


def plan(
    variants: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    quick: bool = False,
) -> list[Job]:
    """The checks of a study, in table order (variant, then scenario).

    Named scenarios are checked for every chosen variant; without them, ``quick`` takes
    QUICK_SCENARIOS and the default set every default scenario, the big ones only for
    BIG_VARIANTS.
    """
    chosen_v = list(dict.fromkeys(variants)) if variants else variant_names()
    order = scenario_names()
    jobs: list[Job] = []
    for v in chosen_v:
        if scenarios:
            wanted = set(scenarios)
        elif quick:
            wanted = set(QUICK_SCENARIOS)
        else:
            wanted = {s for s in scenario_names(default_only=True) if s not in BIG_SCENARIOS} | (
                set(BIG_SCENARIOS) if v in BIG_VARIANTS else set()
            )
        jobs.extend(Job(v, s) for s in order if s in wanted)
    return jobs


def run_order(jobs: Iterable[Job]) -> list[Job]:
    """Longest first, so two workers finish close together."""
    return sorted(jobs, key=lambda j: -WEIGHT.get(j.scenario, 1.0))


def study_scenarios(base: str, variant: str) -> list[str]:
    """The scenarios the default study checks for both variants (what ``diff`` compares)."""
    both = {j.scenario for j in plan([base])} & {j.scenario for j in plan([variant])}
    return [s for s in scenario_names() if s in both]


# -- the study's results -----------------------------------------------------------------------


@dataclass
class Study:
    jobs: list[Job]  # planned, in table order
    summaries: dict[Job, CheckSummary]
    interrupted: bool = False
    seconds: float = 0.0
    workers: int = 1
    selection: str = "default"  # default | quick | custom

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(j.variant for j in self.jobs))

    @property
    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(j.scenario for j in self.jobs))

    @property
    def not_run(self) -> list[Job]:
        return [j for j in self.jobs if j not in self.summaries]

    @property
    def errors(self) -> list[CheckSummary]:
        return [s for s in self.summaries.values() if s.error]

    @property
    def complete(self) -> bool:
        return not self.interrupted and not self.not_run and not self.errors

    def get(self, variant: str, scenario: str) -> CheckSummary | None:
        """The check of variant on scenario, if it ran to completion."""
        s = self.summaries.get(Job(variant, scenario))
        return s if s is not None and s.ok else None

    def checked(self, variant: str) -> list[CheckSummary]:
        found = (self.get(variant, s) for s in self.scenarios)
        return [s for s in found if s is not None]

    def common(self, *variants: str) -> list[str]:
        """Scenarios every one of variants was checked on."""
        return [s for s in self.scenarios if all(self.get(v, s) for v in variants)]


# -- sentences from figures ---------------------------------------------------------------------


def fmt_range(r: tuple[int, int | None] | None) -> str:
    if r is None:
        return "n/a"
    lo, hi = r
    return f"{lo}–{'∞' if hi is None else hi}"


def _inf(hi: int | None) -> float:
    return float("inf") if hi is None else hi


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _all(n: int, word: str = "scenario") -> str:
    """``the one scenario``, ``both scenarios``, ``all 9 scenarios``."""
    return {1: f"the one {word}", 2: f"both {word}s"}.get(n, f"all {n} {word}s")


def is_model_error(b: Broken) -> bool:
    """A crash inside the model (an exception in a step): a bug to fix, not a verdict."""
    return b.kind == "error"


def _others(names: Sequence[str]) -> str:
    """``scenario (zap)`` or ``2 scenarios (zap and smm)``, after "the other"."""
    if len(names) == 1:
        return f"scenario ({names[0]})"
    return f"{len(names)} scenarios ({_and(names)})"


def broken_phrase(scenario: str, b: Broken) -> str:
    """``property P broken in scenario S, shortest counterexample N steps``."""
    n = f", shortest counterexample {b.steps} steps" if b.steps is not None else ""
    if is_model_error(b):
        message = b.message if len(b.message) <= 120 else b.message[:119] + "…"
        return f"the model crashed in {scenario}{n} ({message})"
    return f"{b.prop} broken in {scenario}{n}"


def appearing(study: Study, base: str, variant: str) -> list[tuple[str, Broken]]:
    """Violations of variant that base does not have, on the scenarios both were checked on
    (model crashes are not violations: see model_errors)."""
    out: list[tuple[str, Broken]] = []
    for s in study.common(base, variant):
        b, v = study.get(base, s), study.get(variant, s)
        assert b is not None and v is not None
        out.extend(
            (s, x) for x in v.violations if x.prop not in b.violated and not is_model_error(x)
        )
    return out


def model_errors(
    study: Study, variants: Sequence[str] | None = None
) -> list[tuple[str, str, Broken]]:
    """(variant, scenario, crash) for every check in which the model crashed."""
    out: list[tuple[str, str, Broken]] = []
    for job, s in study.summaries.items():
        if variants is not None and job.variant not in variants:
            continue
        out.extend((job.variant, job.scenario, b) for b in s.violations if is_model_error(b))
    return out


def _caveat(study: Study, variants: Sequence[str]) -> str:
    crashes = model_errors(study, variants)
    if not crashes:
        return ""
    where = _and([f"{v} / {s}" for v, s, _ in crashes])
    return (
        f" Caution: the model crashed in {where}; the search stopped following those "
        "behaviours there, so verdicts and costs of those checks are unreliable."
    )


def safety_line(study: Study, variant: str) -> str:
    """What broke for variant (each property, scenario, shortest counterexample), and where
    everything held (with the state count)."""
    rows = study.checked(variant)
    broken = [(r.scenario, b) for r in rows for b in r.violations]
    held = [r for r in rows if not r.violations]
    states = sum(r.states for r in held)
    if not broken:
        return f"{variant}: every property holds in {_all(len(rows))} checked ({states:,} states)"
    text = f"{variant}: " + "; ".join(broken_phrase(s, b) for s, b in broken)
    if held:
        text += (
            f"; every property holds in the other {_others([r.scenario for r in held])}: "
            f"{states:,} states"
        )
    return text


def _versus(study: Study, base: str, variant: str) -> str:
    """How variant's verdicts differ from base's, as a clause."""
    new = appearing(study, base, variant)
    gone = appearing(study, variant, base)
    common = study.common(base, variant)
    where = f"the {_plural(len(common), 'scenario')} both were checked on"
    if not new and not gone:
        if any(study.get(base, s).violations for s in common):  # type: ignore[union-attr]
            return f"{variant} breaks exactly what {base} breaks in {where}"
        return f"{variant} holds wherever {base} does in {where}"
    parts = []
    if new:
        parts.append(
            f"{variant} breaks what {base} holds: " + "; ".join(broken_phrase(s, b) for s, b in new)
        )
    if gone:
        parts.append(
            f"{variant} holds what {base} breaks: "
            + "; ".join(broken_phrase(s, b) for s, b in gone)
            + f" (in {base})"
        )
    return "; ".join(parts)


@dataclass
class CostComparison:
    cost: str
    lower: list[str] = field(default_factory=list)  # scenarios where variant's max is lower
    higher: list[str] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    figures: dict[str, tuple[str, str]] = field(default_factory=dict)  # scenario: base, variant

    def sentence(self, base: str, variant: str) -> str:
        n = len(self.lower) + len(self.higher) + len(self.same)
        label = f"{COST_LABELS[self.cost]} ({self.cost})"
        if not n:
            return f"{label}: not computed"
        if not self.lower and not self.higher:
            ex = self.same[0]
            return f"{label}: the same range in {_all(n)} (e.g. {ex} {self.figures[ex][0]})"
        parts = []
        for word, group in (("lower", self.lower), ("higher", self.higher)):
            if group:
                changes = ", ".join(
                    f"{s} {self.figures[s][0]} → {self.figures[s][1]}" for s in group
                )
                parts.append(f"{word} maximum in {len(group)} ({changes})")
        if self.same:
            parts.append(f"the same maximum in {len(self.same)}")
        return f"{label}, {base} → {variant}, of {n} scenarios: " + "; ".join(parts)


def compare_cost(study: Study, base: str, variant: str, cost: str) -> CostComparison:
    """Per scenario, whether variant's maximum of cost is lower, higher or the same as
    base's (an unbounded maximum is higher than any bounded one); ranges are compared only
    by their maxima, both are listed."""
    out = CostComparison(cost)
    for s in study.common(base, variant):
        b, v = study.get(base, s), study.get(variant, s)
        assert b is not None and v is not None
        rb, rv = b.cost(cost), v.cost(cost)
        if rb is None or rv is None:
            continue
        out.figures[s] = (fmt_range(rb), fmt_range(rv))
        hb, hv = _inf(rb[1]), _inf(rv[1])
        if hv < hb:
            out.lower.append(s)
        elif hv > hb:
            out.higher.append(s)
        elif rb != rv:  # same maximum, different minimum: a change all the same
            (out.lower if rv[0] < rb[0] else out.higher).append(s)
        else:
            out.same.append(s)
    return out


def cost_table(
    study: Study, variants: Sequence[str], costs: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Rows: scenario, cost, then each variant's min–max."""
    columns = ["scenario", "cost", *variants]
    rows: list[list[str]] = []
    for s in study.common(*variants):
        for c in costs:
            cells = []
            for v in variants:
                summary = study.get(v, s)
                cells.append(fmt_range(summary.cost(c) if summary else None))
            rows.append([s, c, *cells])
    return columns, rows


def costs_figures(
    study: Study, variants: Sequence[str], costs: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {scenario: {cost: {min, max}}}} for the JSON."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for v in variants:
        out[v] = {}
        for s in study.common(*variants):
            summary = study.get(v, s)
            assert summary is not None
            out[v][s] = {c: _range_dict(summary.cost(c)) for c in costs}
    return out


def _range_dict(r: tuple[int, int | None] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"min": r[0], "max": "unbounded" if r[1] is None else r[1]}


# -- the questions -------------------------------------------------------------------------------


@dataclass
class Finding:
    key: str
    question: str
    compared: list[str]
    verdict: str
    evidence: list[str] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    answered: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "question": self.question,
            "compared": self.compared,
            "answered": self.answered,
            "verdict": self.verdict,
            "evidence": self.evidence,
            "figures": self.figures,
        }


def _unanswered(key: str, question: str, needed: Sequence[str], study: Study) -> Finding:
    missing = [v for v in needed if not study.checked(v)]
    return Finding(
        key,
        question,
        list(needed),
        f"Not answered: the study has no completed check of {_and(missing)} "
        f"(run it with --variant {' --variant '.join(needed)}).",
        answered=False,
    )


def _violations_figures(study: Study, base: str, variants: Sequence[str]) -> dict[str, Any]:
    def items(pairs: list[tuple[str, Broken]]) -> list[dict[str, Any]]:
        return [{"scenario": s, **b.as_dict()} for s, b in pairs]

    return {
        v: {
            "scenarios": study.common(base, v),
            "appear": items(appearing(study, base, v)),
            "disappear": items(appearing(study, v, base)),
        }
        for v in variants
    }


def migrates_apic(scenario: str) -> bool:
    from .scenarios import SCENARIOS

    return any(op == ("migrate", "apic") for thread in SCENARIOS[scenario].host for op in thread)


def question_pin(study: Study) -> Finding:
    key, question = "pin", "Why not pin the page?"
    pins = [v for v in PIN_VARIANTS if study.checked(v)]
    if not study.checked(BASE) or not pins:
        return _unanswered(key, question, [BASE, *PIN_VARIANTS], study)
    everyone = [BASE, *pins]
    evidence = [safety_line(study, v) for v in everyone]
    figures: dict[str, Any] = {"verdicts": _violations_figures(study, BASE, pins)}

    # Does the page ever move? migrate_fail on the scenarios that migrate it.
    never_moves: dict[str, int] = {}  # variant -> scenarios in which every migration failed
    fig_mig: dict[str, dict[str, Any]] = {}
    for v in everyone:
        scen = [s for s in study.common(*everyone) if migrates_apic(s)]
        ranges = [(s, study.get(v, s).cost("migrate_fail")) for s in scen]  # type: ignore[union-attr]
        known = [(s, r) for s, r in ranges if r is not None]
        if not known:
            continue
        fig_mig[v] = {s: _range_dict(r) for s, r in known}
        always = [s for s, r in known if r[0] >= 1]
        listing = ", ".join(f"{s} {fmt_range(r)}" for s, r in known)
        if len(always) == len(known):
            never_moves[v] = len(known)
            what = (
                "the migration gives up in every behaviour of "
                f"{_all(len(known))} that migrate the page (minimum ≥ 1): "
                "the page never moves"
            )
        elif not always:
            what = (
                "the page can move: some behaviour of each of the "
                f"{_plural(len(known), 'scenario')} that migrate it succeeds (minimum 0)"
            )
        else:
            what = f"the migration always fails in {_and(always)}"
        evidence.append(f"{v}: failed migrations of the APIC page (migrate_fail) {listing}: {what}")
    figures["migrate_fail"] = fig_mig

    # Huge pages lost: long-term pinned pages in the final states.
    blocks: dict[str, tuple[int, int]] = {}
    for v in everyone:
        pp = [r.pinned_pages for r in study.checked(v) if r.pinned_pages is not None]
        if not pp:
            continue
        lo, hi = min(p[0] for p in pp), max(p[1] for p in pp)
        blocks[v] = (lo, hi)
        evidence.append(
            f"{v}: {lo}–{hi} long-term pinned page(s) (mm.pinned) in the final states of its "
            f"{_plural(len(pp), 'scenario')}, so {lo}–{hi} 2 MiB block(s) per VM that "
            "compaction can no longer turn into a huge page"
        )
    evidence.append(BLOCK_NOTE)
    figures["pinned_pages"] = {v: {"min": lo, "max": hi} for v, (lo, hi) in blocks.items()}

    gained = {v: appearing(study, v, BASE) for v in pins}
    lead = (
        f"Pinning avoids violations {BASE} has"
        if any(gained.values())
        else f"Pinning buys no safety over {BASE}"
    )
    verdict = f"{lead}: {'; '.join(_versus(study, BASE, v) for v in pins)}."
    # What it costs, grouped by variants with the same figures.
    groups: dict[tuple[int | None, int | None], list[str]] = {}
    for v in pins:
        groups.setdefault((never_moves.get(v), blocks[v][1] if v in blocks else None), []).append(v)
    base_moves = ""
    if fig_mig.get(BASE) and all(r["min"] == 0 for r in fig_mig[BASE].values()):
        base_moves = f"; with {BASE} the fewest failed migrations is 0 in each: it can move"
    costs = []
    for (n_never, n_blocks), names in groups.items():
        parts = []
        if n_never:
            parts.append(
                f"the page never moves (every migration of it fails in "
                f"{_all(n_never)} that migrate it{base_moves})"
            )
        if n_blocks:
            parts.append(
                f"each VM keeps {_plural(n_blocks, 'block')} of 2 MiB that compaction cannot make "
                f"a huge page ({BASE}: {blocks.get(BASE, (0, 0))[1]})"
            )
        if parts:
            costs.append(f"with {_and(names)}, " + " and ".join(parts))
    if costs:
        verdict += " The price is paid by the host's memory management: " + "; ".join(costs) + "."
    table = cost_table(study, everyone, ("migrate_fail",))
    return Finding(key, question, everyone, verdict, evidence, table, figures)


def question_bail(study: Study) -> Finding:
    key, question = "bail", "Why re-request instead of bailing at once?"
    bails = [v for v in BAIL_VARIANTS if study.checked(v)]
    if not study.checked(BASE) or not bails:
        return _unanswered(key, question, [BASE, *BAIL_VARIANTS], study)
    everyone = [BASE, *bails]
    evidence = [safety_line(study, v) for v in everyone]
    clauses = []
    for v in bails:
        new = appearing(study, BASE, v)
        n = len(study.common(BASE, v))
        if new:
            clauses.append(
                f"{v} is unsafe where {BASE} is safe: "
                + "; ".join(broken_phrase(s, b) for s, b in new)
            )
        else:
            clauses.append(
                f"{v} holds wherever {BASE} does in the {_plural(n, 'scenario')} both were "
                "checked on (no counterexample found)"
            )
    waiting: list[str] = []
    for v in bails:
        for c in WAIT_COSTS:
            evidence.append(f"{v}: " + compare_cost(study, BASE, v, c).sentence(BASE, v))
        if not appearing(study, BASE, v):
            waiting.append(f"{v} against {BASE}: " + _waiting(study, v))
    verdict = "; ".join(clauses) + "."
    if waiting:
        verdict += " The cost of waiting, " + "; ".join(waiting) + "."
    table = cost_table(study, everyone, WAIT_COSTS)
    figures = {
        "verdicts": _violations_figures(study, BASE, bails),
        "costs": costs_figures(study, everyone, WAIT_COSTS),
    }
    return Finding(key, question, everyone, verdict, evidence, table, figures)


def _waiting(study: Study, variant: str) -> str:
    """How long a kicked vCPU waits and how often it bails, variant against BASE."""
    parts = []
    for c, what in (("out_of_guest_steps", "steps kept out of the guest"), ("bail", "bails")):
        cmp = compare_cost(study, BASE, variant, c)
        n = len(cmp.lower) + len(cmp.higher) + len(cmp.same)
        if not cmp.lower and not cmp.higher:
            parts.append(f"{what}: the same range in {_all(n)}")
            continue
        counts = [
            f"{word} in {len(group)} ("
            + ", ".join(f"{s} {cmp.figures[s][0]} → {cmp.figures[s][1]}" for s in group)
            + ")"
            for word, group in (("fewer", cmp.lower), ("more", cmp.higher))
            if group
        ]
        if cmp.same:
            counts.append(f"the same in {len(cmp.same)}")
        parts.append(f"{what}, of {_plural(n, 'scenario')}: " + ", ".join(counts))
    return "; ".join(parts)


def question_flush(study: Study) -> Finding:
    key = "flush"
    question = "Is the reload's own flush redundant with the notifier's flush?"
    v = "v6.6"
    if not study.checked(BASE) or not study.checked(v):
        return _unanswered(key, question, [BASE, v], study)
    everyone = [BASE, v]
    evidence = [safety_line(study, x) for x in everyone]
    comparisons = {c: compare_cost(study, BASE, v, c) for c in FLUSH_COSTS}
    evidence += [comparisons[c].sentence(BASE, v) for c in FLUSH_COSTS]
    new = appearing(study, BASE, v)
    n = len(study.common(BASE, v))
    if new:
        verdict = (
            f"No: without it, {v} breaks what {BASE} holds: "
            + "; ".join(broken_phrase(s, b) for s, b in new)
            + "."
        )
    else:
        cur = comparisons["flush_current"]
        saving = (
            f"it does fewer single-context flushes in {len(cur.lower)} of them ("
            + ", ".join(f"{s} {cur.figures[s][0]} → {cur.figures[s][1]}" for s in cur.lower)
            + ")"
            if cur.lower
            else "yet its single-context flushes are no fewer"
        )
        if cur.higher:
            saving += f" and more in {_and(cur.higher)}"
        verdict = (
            f"Yes, in the {_plural(n, 'scenario')} checked: {v} ({BASE} without the reload's "
            f"flush) holds wherever {BASE} does, and {saving}."
        )
    table = cost_table(study, everyone, FLUSH_COSTS)
    figures = {
        "verdicts": _violations_figures(study, BASE, [v]),
        "costs": costs_figures(study, everyone, FLUSH_COSTS),
    }
    return Finding(key, question, everyone, verdict, evidence, table, figures)


def question_skip(study: Study) -> Finding:
    key = "skip-flush"
    question = (
        "Could kvm_unmap_gfn_range skip the notifier's flush for the APIC range, given the "
        "reload's early returns (nested, x2APIC control off, invalid memslot)?"
    )
    v = "skip-notifier-flush"
    if not study.checked(BASE) or not study.checked(v):
        return _unanswered(key, question, [BASE, v], study)
    everyone = [BASE, v]
    evidence = [safety_line(study, x) for x in everyone]
    new = appearing(study, BASE, v)
    scen = study.common(BASE, v)
    by_scenario: dict[str, list[Broken]] = {}
    for s, b in new:
        by_scenario.setdefault(s, []).append(b)
    for s, note in EARLY_RETURN.items():
        if s not in scen:
            evidence.append(f"{s} ({note}) was not checked")
        elif s in by_scenario:
            evidence.append(
                f"{s} ({note}): "
                + ", ".join(
                    f"{b.prop} broken (shortest counterexample {b.steps} steps)"
                    for b in by_scenario[s]
                )
            )
        else:
            got = study.get(v, s)
            assert got is not None
            evidence.append(f"{s} ({note}): nothing new breaks ({got.states:,} states)")
    for c in ("flush_all", "remote_tlb_flush"):
        evidence.append(compare_cost(study, BASE, v, c).sentence(BASE, v))
    if new:
        parts = []
        for s, items in by_scenario.items():
            note = f" ({EARLY_RETURN[s]})" if s in EARLY_RETURN else ""
            lengths = _and([str(b.steps) for b in items])
            parts.append(
                f"{_and([b.prop for b in items])} broken in {s}{note}, shortest "
                f"counterexample{'s' if len(items) > 1 else ''} {lengths} steps"
            )
        quiet = [s for s in scen if s not in by_scenario]
        verdict = f"No: {v} breaks what {BASE} holds: " + "; ".join(parts)
        if quiet:
            verdict += f"; in the other {_others(quiet)} nothing new breaks"
        verdict += "."
    else:
        unchecked = [s for s in EARLY_RETURN if s not in scen]
        verdict = (
            f"Not refuted: {v} holds wherever {BASE} does in the {_plural(len(scen), 'scenario')} "
            "checked"
        )
        if unchecked:
            verdict += f", but the early-return scenarios {_and(unchecked)} were not checked"
        verdict += "."
    figures = {
        "verdicts": _violations_figures(study, BASE, [v]),
        "costs": costs_figures(study, everyone, ("flush_all", "remote_tlb_flush")),
    }
    table = cost_table(study, everyone, ("flush_all", "remote_tlb_flush"))
    return Finding(key, question, everyone, verdict, evidence, table, figures)


QUESTIONS = (question_pin, question_bail, question_flush, question_skip)


def findings(study: Study) -> list[Finding]:
    out = [q(study) for q in QUESTIONS]
    for f in out:
        if f.answered:
            f.verdict += _caveat(study, f.compared)
    return out


# -- the table -----------------------------------------------------------------------------------


TABLE_COLUMNS = ("variant", "scenario", "properties", "states", *TABLE_COSTS)


def properties_cell(s: CheckSummary) -> str:
    if s.error:
        return f"error: {s.error}"
    crashed = [b for b in s.violations if is_model_error(b)]
    broken = [b for b in s.violations if not is_model_error(b)]
    cells = []
    if crashed:
        cells.append(f"MODEL CRASHED ({crashed[0].steps})")
    if broken:
        cells.append(
            "broken: "
            + ", ".join(f"{b.prop} ({b.steps})" if b.steps is not None else b.prop for b in broken)
        )
    if not cells:
        return f"all {len(s.properties)} hold"
    return "; ".join(cells)


def table_rows(study: Study) -> list[list[str]]:
    rows: list[list[str]] = []
    for job in study.jobs:
        s = study.summaries.get(job)
        if s is None:
            rows.append([job.variant, job.scenario, "not checked (interrupted)", ""] + [""] * 6)
            continue
        costs = [fmt_range(s.cost(c)) if not s.error else "" for c in TABLE_COSTS]
        states = f"{s.states:,}" if not s.error else ""
        rows.append([job.variant, job.scenario, properties_cell(s), states, *costs])
    return rows


# -- output ----------------------------------------------------------------------------------------


def status_line(study: Study) -> str:
    done = len(study.summaries)
    total = len(study.jobs)
    text = (
        f"{done} of {total} checks ({len(study.variants)} variants, "
        f"{len(study.scenarios)} scenarios; {study.selection} set) in {study.seconds:.0f} s "
        f"with {_plural(study.workers, 'worker')}"
    )
    if study.interrupted:
        text += "; INCOMPLETE: interrupted"
    if study.errors:
        text += f"; {_plural(len(study.errors), 'check')} failed to run"
    crashes = {(v, s) for v, s, _ in model_errors(study)}
    if crashes:
        text += f"; the model crashed in {_plural(len(crashes), 'check')}"
    return text


def document(study: Study, found: list[Finding] | None = None) -> dict[str, Any]:
    from .variants import get_variant

    found = findings(study) if found is None else found
    variants = []
    for name in study.variants:
        try:
            v = get_variant(name)
            variants.append({"name": name, "base": v.base, "description": v.description})
        except KeyError:
            variants.append({"name": name, "base": None, "description": ""})
    return {
        "format": FORMAT,
        "complete": study.complete,
        "interrupted": study.interrupted,
        "selection": study.selection,
        "workers": study.workers,
        "wall_seconds": round(study.seconds, 1),
        "variants": variants,
        "scenarios": study.scenarios,
        "questions": [f.as_dict() for f in found],
        "checks": [_check_dict(study, j) for j in study.jobs],
        "notes": [
            "costs: exact min and max over every complete behaviour of the exhaustive search; "
            "max 'unbounded' is a cycle that repeats the cost",
            BLOCK_NOTE,
        ],
    }


def _check_dict(study: Study, job: Job) -> dict[str, Any]:
    s = study.summaries.get(job)
    doc: dict[str, Any] = {"variant": job.variant, "scenario": job.scenario}
    if s is None:
        doc["status"] = "not run (interrupted)"
        return doc
    if s.error:
        doc["status"] = "error"
        doc["error"] = s.error
        return doc
    doc.update(
        {
            "status": "checked",
            "violated": s.violated,
            "violations": [b.as_dict() for b in s.violations],
            "properties": s.properties,
            "states": s.states,
            "transitions": s.transitions,
            "max_depth": s.max_depth,
            "seconds": round(s.seconds, 3),
            "cpu_seconds": round(s.cpu_seconds, 3),
            "exhaustive": s.exhaustive,
            "costs": {c: _range_dict(s.cost(c)) for c in COST_NAMES} if s.costs else {},
            "pinned_pages": (
                {"min": s.pinned_pages[0], "max": s.pinned_pages[1]}
                if s.pinned_pages is not None
                else None
            ),
            "sometimes": s.sometimes,
        }
    )
    return doc


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def markdown(study: Study, found: list[Finding] | None = None) -> str:
    found = findings(study) if found is None else found
    lines = [
        "# kvmsim study: the APIC-access page reload through history and its alternatives",
        "",
        f"`kvmsim study`: {status_line(study)}. JSON beside this file: `study.json`; what the "
        "questions compare and what the figures mean: docs/study.md.",
        "",
    ]
    if not study.complete:
        lines += [f"**Incomplete.** {_incomplete(study)}", ""]
    lines += [
        "Every verdict below is assembled from the checks it names. Cost ranges are exact: the "
        "minimum and maximum over every complete behaviour the exhaustive search explored "
        "(`∞`: unbounded, a cycle repeats the cost).",
        "",
    ]
    for f in found:
        lines += [f"## {f.question}", ""]
        if f.answered:
            lines += [f"Compared: {', '.join(f.compared)}.", ""]
        lines += [f"**Verdict.** {f.verdict}", ""]
        if f.evidence:
            lines += ["Evidence:", ""]
            lines += [f"- {e}" for e in f.evidence]
            lines.append("")
        if f.table is not None and f.table[1]:
            lines += _md_table(*f.table)
            lines.append("")
    lines += [
        "## Every variant and scenario",
        "",
        "Properties: all held, or the broken ones with their shortest counterexample's length "
        "in steps. Costs: exact min–max.",
        "",
    ]
    lines += _md_table(TABLE_COLUMNS, table_rows(study))
    lines.append("")
    return "\n".join(lines)


def _incomplete(study: Study) -> str:
    parts = []
    if study.interrupted:
        parts.append(
            f"Interrupted: {len(study.summaries)} of {len(study.jobs)} checks finished; "
            "the verdicts use only those."
        )
    if study.errors:
        parts.append(
            "Could not run: "
            + "; ".join(f"{s.variant} / {s.scenario}: {s.error}" for s in study.errors)
            + "."
        )
    return " ".join(parts)


def write_study(
    study: Study, out_dir: str | Path, found: list[Finding] | None = None
) -> tuple[Path, Path]:
    """Write study.md and study.json into out_dir (created if needed), each atomically."""
    found = findings(study) if found is None else found
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "study.md", out / "study.json"
    write_text(md, markdown(study, found))
    doc = document(study, found)
    write_json(js, doc)
    return md, js
