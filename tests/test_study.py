"""``kvmsim study`` (the KVM study) and ``kvmsim diff``, run in-process.

One quick study (every variant on migrate, zap-anon and x2apic-migrate, two worker processes)
is run by one test, which checks everything about it (one test, so that pytest-xdist does not
run the study once per worker); its table is compared with ``kvmsim check`` run on its own, so
the two can never disagree.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from kvmsim import jobs as jobs_module
from kvmsim import kvm_study
from kvmsim.cli import main
from kvmsim.jobs import Broken, CheckSummary, Job
from kvmsim.kvm_diff import compare_samples
from kvmsim.kvm_study import QUICK_SCENARIOS, Study, findings
from kvmsim.variants import all_variants

from .cli_support import run


def run_quietly(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kvmsim: error: "), err
    for word in words:
        assert word in lines[0], (word, err)


def quick_study(out_dir: Path) -> dict[str, Any]:
    """`kvmsim study --quick --json`: its exit status, JSON on stdout, and the folder."""
    code, out, err = run_quietly("study", "--quick", "--out", str(out_dir), "--json", "--quiet")
    return {"code": code, "doc": json.loads(out), "err": err, "dir": out_dir}


def checks_by_key(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["variant"], c["scenario"]): c for c in doc["checks"]}


# -- the quick study --------------------------------------------------------------------------


def test_quick_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quick = quick_study(tmp_path)
    runs_to_completion(quick)
    json_shape(quick)
    files_match_stdout(quick)
    for row in _rotation(quick["doc"]):
        _agrees_with_check(capsys, row)
    verdicts_name_their_evidence(quick)


@pytest.mark.slow
def test_every_row_of_the_quick_study_agrees_with_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for row in quick_study(tmp_path)["doc"]["checks"]:
        _agrees_with_check(capsys, row)


def runs_to_completion(quick: dict[str, Any]) -> None:
    assert quick["code"] == 0, quick["err"]
    doc = quick["doc"]
    assert doc["format"] == kvm_study.FORMAT
    assert doc["complete"] is True and doc["interrupted"] is False
    assert doc["selection"] == "quick" and doc["workers"] == 2
    names = [v.name for v in all_variants()]
    assert [v["name"] for v in doc["variants"]] == names
    assert doc["scenarios"] == list(QUICK_SCENARIOS)
    assert [(c["variant"], c["scenario"]) for c in doc["checks"]] == [
        (v, s) for v in names for s in QUICK_SCENARIOS
    ]


def json_shape(quick: dict[str, Any]) -> None:
    doc = quick["doc"]
    for c in doc["checks"]:
        assert c["status"] == "checked"
        assert isinstance(c["violated"], list)
        assert [v["property"] for v in c["violations"]] == c["violated"]
        assert all(isinstance(v["steps"], int) for v in c["violations"])
        for key in ("states", "transitions"):
            assert isinstance(c[key], int) and c[key] > 0
        assert isinstance(c["seconds"], float)
        assert c["exhaustive"] is True
        assert set(c["costs"]) == set(jobs_module.COST_NAMES)
        for figure in c["costs"].values():
            assert isinstance(figure["min"], int)
            assert figure["max"] == "unbounded" or figure["max"] >= figure["min"]
    assert [q["key"] for q in doc["questions"]] == ["pin", "bail", "flush", "skip-flush"]
    for q in doc["questions"]:
        assert q["answered"] is True
        assert q["verdict"] and q["evidence"] and q["compared"]


def files_match_stdout(quick: dict[str, Any]) -> None:
    """The files hold what --json printed, and no temporary file is left behind."""
    folder: Path = quick["dir"]
    assert sorted(p.name for p in folder.iterdir()) == ["study.json", "study.md"]
    written = json.loads((folder / "study.json").read_text())
    assert written["checks"] == quick["doc"]["checks"]
    assert written["questions"] == quick["doc"]["questions"]
    md = (folder / "study.md").read_text()
    for q in quick["doc"]["questions"]:
        assert f"## {q['question']}" in md
        assert q["verdict"] in md
    assert "| variant | scenario | properties | states | ipi | flush_all |" in md


def _rotation(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One check per variant, the scenario rotating: every variant and every scenario."""
    scenarios = doc["scenarios"]
    variants = [v["name"] for v in doc["variants"]]
    by_key = checks_by_key(doc)
    return [by_key[(v, scenarios[i % len(scenarios)])] for i, v in enumerate(variants)]


def _agrees_with_check(capsys: pytest.CaptureFixture[str], row: dict[str, Any]) -> None:
    code, out, _ = run(
        capsys, "check", "--variant", row["variant"], "--scenario", row["scenario"], "--json"
    )
    alone = json.loads(out)
    assert code == (1 if alone["violated"] else 0)
    assert alone["violated"] == row["violated"], row["variant"] + " / " + row["scenario"]
    assert alone["stats"]["states"] == row["states"]
    assert alone["stats"]["transitions"] == row["transitions"]
    lengths = [v["length"] for v in alone["violations"]]
    assert lengths == [v["steps"] for v in row["violations"]]


# -- the verdicts name their evidence ---------------------------------------------------------


def _fmt(figure: dict[str, Any]) -> str:
    top = "∞" if figure["max"] == "unbounded" else figure["max"]
    return f"{figure['min']}–{top}"


def _appearing(doc: dict[str, Any], base: str, variant: str) -> list[tuple[str, dict[str, Any]]]:
    by_key = checks_by_key(doc)
    out = []
    for s in doc["scenarios"]:
        held = set(by_key[(base, s)]["violated"])
        out += [(s, v) for v in by_key[(variant, s)]["violations"] if v["property"] not in held]
    return out


def verdicts_name_their_evidence(quick: dict[str, Any]) -> None:
    doc = quick["doc"]
    by_key = checks_by_key(doc)
    q = {x["key"]: x for x in doc["questions"]}
    for x in q.values():
        for name in x["compared"]:
            assert name in x["verdict"] or name in " ".join(x["evidence"]), (name, x["key"])

    # (d) skip-notifier-flush: every violation that appears, with its counterexample length.
    skip = _appearing(doc, "v6.5", "skip-notifier-flush")
    assert any(s == "x2apic-migrate" for s, _ in skip)
    verdict = q["skip-flush"]["verdict"]
    assert verdict.startswith("No:")
    for s, v in skip:
        assert v["property"] in verdict and s in verdict and str(v["steps"]) in verdict

    # (b) bail-immediately: its counterexamples; bail-and-rerequest: said to hold, or not.
    bail = _appearing(doc, "v6.5", "bail-immediately")
    verdict = q["bail"]["verdict"]
    for s, v in bail:
        assert f"{v['property']} broken in {s}, shortest counterexample {v['steps']} steps" in (
            verdict
        )
    if not _appearing(doc, "v6.5", "bail-and-rerequest"):
        assert "bail-and-rerequest holds wherever v6.5 does" in verdict

    # (c) v6.6: the single-context flush figures it cites are those of the checks.
    verdict = q["flush"]["verdict"]
    for s in doc["scenarios"]:
        before = _fmt(by_key[("v6.5", s)]["costs"]["flush_current"])
        after = _fmt(by_key[("v6.6", s)]["costs"]["flush_current"])
        if before != after:
            assert f"{s} {before} → {after}" in verdict

    # (a) pinning: migrations that fail, and pinned pages counted in the final states.
    pin = q["pin"]
    assert "2 MiB" in " ".join(pin["evidence"])
    assert kvm_study.BLOCK_NOTE in pin["evidence"]
    fails = [by_key[("pin-v6.5", s)]["costs"]["migrate_fail"] for s in doc["scenarios"]]
    moved = [f for f, s in zip(fails, doc["scenarios"]) if kvm_study.migrates_apic(s)]
    if all(f["min"] >= 1 for f in moved):
        assert "never moves" in pin["verdict"]
    pinned = by_key[("pin-v6.5", "migrate")]["pinned_pages"]
    assert pinned is not None
    assert f"keeps {pinned['max']} block" in pin["verdict"]


def _summary(variant: str, scenario: str, broken: list[Broken], **costs: Any) -> CheckSummary:
    figures = {name: (0, 0) for name in jobs_module.COST_NAMES}
    figures.update(costs)
    return CheckSummary(
        variant,
        scenario,
        violations=broken,
        properties=["INV-APIC"],
        states=100,
        transitions=200,
        exhaustive=True,
        costs=figures,
        pinned_pages=(0, 0),
    )


def test_verdicts_follow_the_figures_not_a_script() -> None:
    """The same question over made-up results: the verdict changes with them."""
    jobs = [Job(v, "migrate") for v in ("v6.5", "v6.6")]
    holds = {
        jobs[0]: _summary("v6.5", "migrate", [], flush_current=(0, 2)),
        jobs[1]: _summary("v6.6", "migrate", [], flush_current=(0, 0)),
    }
    flush = next(f for f in findings(Study(jobs, holds)) if f.key == "flush")
    assert flush.verdict.startswith("Yes")
    assert "migrate 0–2 → 0–0" in flush.verdict
    breaks = dict(holds)
    breaks[jobs[1]] = _summary("v6.6", "migrate", [Broken("INV-APIC", "invariant", 17, "")])
    flush = next(f for f in findings(Study(jobs, breaks)) if f.key == "flush")
    assert flush.verdict.startswith("No")
    assert "INV-APIC broken in migrate, shortest counterexample 17 steps" in flush.verdict


def test_a_question_whose_variants_were_not_checked_says_so() -> None:
    job = Job("v6.5", "migrate")
    found = {f.key: f for f in findings(Study([job], {job: _summary("v6.5", "migrate", [])}))}
    assert all(not f.answered for f in found.values())
    assert "skip-notifier-flush" in found["skip-flush"].verdict
    assert found["skip-flush"].verdict.startswith("Not answered")


def test_a_model_crash_is_not_reported_as_a_violation() -> None:
    jobs = [Job(v, "migrate") for v in ("v6.5", "v6.6")]
    crash = Broken("model error", "error", 8, "TypeError: boom")
    got = {
        jobs[0]: _summary("v6.5", "migrate", []),
        jobs[1]: _summary("v6.6", "migrate", [crash]),
    }
    study = Study(jobs, got)
    flush = next(f for f in findings(study) if f.key == "flush")
    assert flush.verdict.startswith("Yes")
    assert "Caution: the model crashed in v6.6 / migrate" in flush.verdict
    assert "model crashed" in kvm_study.status_line(study)


# -- planning and the command line ---------------------------------------------------------------


def test_default_plan() -> None:
    planned = kvm_study.plan()
    variants = [v.name for v in all_variants()]
    assert {j.variant for j in planned} == set(variants)
    for big in kvm_study.BIG_SCENARIOS:
        assert {j.variant for j in planned if j.scenario == big} == set(kvm_study.BIG_VARIANTS)
    small = [
        s for s in kvm_study.scenario_names(default_only=True) if s not in kvm_study.BIG_SCENARIOS
    ]
    for v in variants:
        assert {j.scenario for j in planned if j.variant == v} >= set(small)
    ordered = kvm_study.run_order(planned)
    assert ordered[0].scenario == "two-vcpus-migrate"
    assert sorted(ordered, key=str) == sorted(planned, key=str)


def test_study_restricted_to_a_variant_and_a_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "study",
        "--variant",
        "v6.5",
        "--variant",
        "v6.6",
        "--scenario",
        "migrate",
        "--workers",
        "1",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    assert "2 of 2 checks" in out
    assert "Not answered" in out  # pinning: pin-v6.5 was not studied
    doc = json.loads((tmp_path / "study.json").read_text())
    assert [(c["variant"], c["scenario"]) for c in doc["checks"]] == [
        ("v6.5", "migrate"),
        ("v6.6", "migrate"),
    ]
    assert doc["selection"] == "custom"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--variant", "v9.9"], ["unknown variant 'v9.9'"]),
        (["--scenario", "nope"], ["unknown scenario 'nope'"]),
        (["--quick", "--scenario", "migrate"], ["--quick", "--scenario"]),
        (["--workers", "0"], ["--workers"]),
    ],
)
def test_study_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    code, _, err = run(capsys, "study", "--out", str(tmp_path), *argv)
    assert code == 2
    one_line_error(err, *words)


def test_study_cannot_create_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "study", "--quick", "--out", str(blocker / "sub"))
    assert code == 2
    one_line_error(err, "cannot create")


def test_interrupted_study_writes_what_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = jobs_module.run_job
    calls: list[Job] = []

    def stop_at_the_third(job: Job, progress: Any = None) -> Any:
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job, progress)

    monkeypatch.setattr(jobs_module, "run_job", stop_at_the_third)
    code, out, err = run(
        capsys,
        "study",
        "--variant",
        "v6.5",
        "--variant",
        "v6.6",
        "--scenario",
        "migrate",
        "--scenario",
        "zap",
        "--workers",
        "1",
        "--out",
        str(tmp_path),
    )
    assert code == 2
    assert err.strip().endswith("kvmsim: interrupted: incomplete")
    assert "INCOMPLETE: interrupted" in out
    doc = json.loads((tmp_path / "study.json").read_text())
    assert doc["complete"] is False and doc["interrupted"] is True
    statuses = [c["status"] for c in doc["checks"]]
    assert statuses.count("checked") == 2
    assert statuses.count("not run (interrupted)") == 2
    assert "**Incomplete.**" in (tmp_path / "study.md").read_text()


def test_demo_study_moved_to_demo_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--all", "--out", str(tmp_path), "--json")
    assert code == 0
    assert json.loads(out)["format"] == "kvmsim-study/1"
    code, _, err = run(capsys, "demo", "peterson", "--out", str(tmp_path))
    assert code == 2
    one_line_error(err, "--out applies only to --all")


# -- diff ----------------------------------------------------------------------------------------


def test_diff_skip_notifier_flush_on_x2apic_migrate(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "diff",
        "--variant",
        "skip-notifier-flush",
        "--scenario",
        "x2apic-migrate",
        "--runs",
        "40",
        "--json",
        "--quiet",
    )
    assert code == 1, err
    doc = json.loads(out)
    assert doc["format"] == "kvmsim-diff/1"
    assert (doc["base"], doc["variant"]) == ("v6.5", "skip-notifier-flush")
    assert doc["complete"] is True
    assert doc["appear"]  # the early-return case: nobody flushes
    assert all(a["scenario"] == "x2apic-migrate" for a in doc["appear"])
    assert all(isinstance(a["steps"], int) for a in doc["appear"])
    assert doc["disappear"] == []
    (scenario,) = doc["scenarios"]
    flush_all = scenario["costs"]["flush_all"]
    assert flush_all["changed"] is True
    sampled = flush_all["sampled"]
    assert sampled["runs"] == {"base": 40, "variant": 40}
    if flush_all["variant"] == {"min": 0, "max": 0}:  # never flushes: no run can
        assert sampled["mean"]["variant"] == 0 and sampled["variant_higher"] == 0
    assert scenario["sampled_runs"]["variant"]["broke_a_property"] > 0
    code, text, _ = run(
        capsys, "diff", "--variant", "skip-notifier-flush", "--scenario", "x2apic-migrate",
        "--runs", "40",
    )  # fmt: skip
    first = doc["appear"][0]
    assert (
        "violations that appear (skip-notifier-flush breaks, v6.5 holds): "
        f"{first['property']} in x2apic-migrate, shortest counterexample {first['steps']} steps"
    ) in text
    base, variant = _fmt(flush_all["base"]), _fmt(flush_all["variant"])
    mean = sampled["mean"]
    assert (
        f"all-context flushes: {base} → {variant}; sampled, over 40 random runs each, "
        f"mean {mean['base']:.2f} → {mean['variant']:.2f}"
    ) in text


def test_diff_of_a_variant_against_itself_reports_no_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys,
        "diff",
        "--base",
        "v6.5",
        "--variant",
        "v6.5",
        "--scenario",
        "migrate",
        "--runs",
        "20",
        "--json",
        "--quiet",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["appear"] == [] and doc["disappear"] == []
    (scenario,) = doc["scenarios"]
    for figure in scenario["costs"].values():
        assert figure["changed"] is False
        assert figure["sampled"]["mean"]["base"] == figure["sampled"]["mean"]["variant"]
        assert figure["sampled"]["variant_lower"] == figure["sampled"]["variant_higher"]
    code, text, _ = run(capsys, "diff", "--variant", "v6.5", "--scenario", "migrate", "--runs", "0")
    assert code == 0
    assert "violations that appear: none" in text
    assert "exact cost figures: no change in any scenario" in text


def test_diff_accepts_a_patch_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    patch = tmp_path / "patch.py"
    patch.write_text("from kvmsim.variants import Variant\n\nnoop = Variant('noop', base='v6.5')\n")
    code, out, err = run(
        capsys,
        "diff",
        "--variant",
        f"{patch}:noop",
        "--scenario",
        "migrate",
        "--runs",
        "5",
        "--workers",
        "2",
        "--json",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["variant"] == "noop" and doc["variant_spec"] == f"{patch}:noop"
    assert doc["complete"] is True
    assert not any(c["changed"] for c in doc["scenarios"][0]["costs"].values())


def test_diff_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diff", "--variant", "v9.9")
    assert code == 2
    one_line_error(err, "v9.9")
    code, _, err = run(capsys, "diff", "--variant", "v6.6", "--scenario", "nope")
    assert code == 2
    one_line_error(err, "unknown scenario 'nope'")
    code, _, err = run(capsys, "diff", "--variant", str(tmp_path / "missing.py"))
    assert code == 2
    one_line_error(err, "no such file")


def test_sampled_comparison_counts_all_pairs() -> None:
    s = compare_samples([1, 2, 3], [0, 2, 5])
    assert s.runs == (3, 3)
    assert s.mean == (2.0, 7 / 3)
    # pairs (variant, base): 0 is lower than 1,2,3; 2 lower than 3, higher than 1; 5 higher x3
    assert s.lower == pytest.approx(4 / 9)
    assert s.higher == pytest.approx(4 / 9)
