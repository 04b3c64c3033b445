"""--junit FILE: JUnit XML that CI test reporters read, for check, demo and study."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kvmsim import study as study_module
from kvmsim.cli import main
from kvmsim.cli_study import study_cases
from kvmsim.demos import DEMOS
from kvmsim.jobs import Broken, CheckSummary, Job
from kvmsim.kvm_study import Study
from kvmsim.report.junit import ERROR, FAILURE, PASSED, SKIPPED, Case, render
from kvmsim.study import Entry

MUTANTS = Path(__file__).resolve().parent.parent / "kernel" / "mutants.py"

LOCK = """
from kvmsim import Model, Setup, Struct, await_

class Lock(Struct):
    holder: str | None = None
    inside: int = 0

def thread(lock, me):
    await_(lock.holder is None)
    TAKE
    lock.inside += 1
    yield "enter"
    lock.inside -= 1
    lock.holder = None
    yield "unlock"

model = Model("NAME")

@model.setup
def setup(s: Setup) -> Lock:
    lock = Lock()
    s.actor("A", thread, lock, "A")
    s.actor("B", thread, lock, "B")
    return lock

@model.invariant("mutual exclusion", "At most one thread is inside.")
def mutex(lock):
    return lock.inside <= 1
"""
GOOD = LOCK.replace("TAKE", 'lock.holder = me\n    yield "lock"').replace("NAME", "good")
BAD = LOCK.replace("TAKE", 'yield "test"\n    lock.holder = me').replace("NAME", "bad")


def parse(path: Path) -> ET.Element:
    """Parse the report and check it has the shape of the common JUnit schema."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    for el in (root, suites[0]):
        cases = suites[0].findall("testcase")
        assert int(el.get("tests", "-1")) == len(cases)
        for outcome in ("failure", "error", "skipped"):
            expected = sum(1 for c in cases if c.find(outcome) is not None)
            assert int(el.get(outcome + "s" if outcome != "skipped" else "skipped", "-1")) == (
                expected
            )
        assert float(el.get("time", "nan")) >= 0
    for case in suites[0].findall("testcase"):
        assert case.get("classname") and case.get("name")
        assert float(case.get("time", "nan")) >= 0
        assert sum(1 for o in ("failure", "error", "skipped") if case.find(o) is not None) <= 1
        for o in ("failure", "error"):
            el = case.find(o)
            if el is not None:
                assert el.get("message") and el.get("type") is not None
    return suites[0]


def outcome(case: ET.Element) -> str:
    for o in (FAILURE, ERROR, SKIPPED):
        if case.find(o) is not None:
            return o
    return PASSED


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    _, err = capsys.readouterr()
    return code, err


def model_file(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_a_model_that_holds_is_one_passed_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = model_file(tmp_path, "good.py", GOOD)
    out = tmp_path / "junit.xml"
    code, err = check(tmp_path, capsys, "check", path, "--quiet", "--junit", str(out))
    assert code == 0, err
    assert f"kvmsim: wrote {out}" in err
    suite = parse(out)
    assert suite.get("name") == "kvmsim check"
    (case,) = suite.findall("testcase")
    assert (case.get("classname"), case.get("name"), outcome(case)) == (
        "kvmsim.good",
        "good",
        PASSED,
    )
    assert "coverage: exhaustive" in (case.findtext("system-out") or "")


def test_a_violation_is_a_failure_with_the_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = model_file(tmp_path, "bad.py", BAD)
    out = tmp_path / "junit.xml"
    code, _ = check(tmp_path, capsys, "check", path, "--quiet", "--junit", str(out))
    assert code == 1
    (case,) = parse(out).findall("testcase")
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "violated: mutual exclusion"
    assert failure.get("type") == "invariant"
    body = failure.text or ""
    # the report kvmsim check prints, timeline included, even though --quiet was given
    assert "counterexample 1 of 1: mutual exclusion" in body
    assert "| # | B " in body and "inside: 0→1" in body
    assert "replay: kvmsim replay kvmsim1:" in body
    assert "At most one thread is inside." in body


def test_a_bounded_check_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = model_file(tmp_path, "good.py", GOOD)
    out = tmp_path / "junit.xml"
    code, _ = check(
        tmp_path, capsys, "check", path, "--max-depth", "2", "--quiet", "--junit", str(out)
    )
    assert code == 0
    (case,) = parse(out).findall("testcase")
    skipped = case.find("skipped")
    assert skipped is not None and "bounded" in (skipped.get("message") or "")


def test_kvm_check_and_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kvm.xml"
    code, _ = check(
        tmp_path,
        capsys,
        "check",
        "--variant",
        f"{MUTANTS}:no_late_check",
        "--scenario",
        "migrate",
        "--quiet",
        "--junit",
        str(out),
    )
    assert code == 1
    (case,) = parse(out).findall("testcase")
    assert case.get("classname") == "kvmsim.mutant-no-late-check"
    assert case.get("name") == "mutant-no-late-check / migrate"
    failure = case.find("failure")
    assert failure is not None and "INV-REQ" in (failure.get("message") or "")
    assert "CPU0" in (failure.text or "")  # the per-CPU timeline
    out = tmp_path / "demo.xml"
    code, _ = check(tmp_path, capsys, "demo", "peterson", "--quiet", "--junit", str(out))
    assert code == 0
    (case,) = parse(out).findall("testcase")
    assert (case.get("classname"), case.get("name"), outcome(case)) == (
        "kvmsim.demo",
        "peterson",
        PASSED,
    )


def test_study_has_one_case_per_variant_and_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study.xml"
    argv = ["study", "--variant", "v6.5", "--variant", "v3.18", "--scenario", "zap-anon"]
    code, err = check(
        tmp_path,
        capsys,
        *argv,
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "s"),
        "--junit",
        str(out),
    )
    assert code == 0, err
    suite = parse(out)
    assert suite.get("name") == "kvmsim study"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"v6.5 / zap-anon", "v3.18 / zap-anon"}
    assert outcome(cases["v6.5 / zap-anon"]) == PASSED
    failure = cases["v3.18 / zap-anon"].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("violated: INV-APIC (")
    assert "kvmsim check --variant v3.18 --scenario zap-anon" in (failure.text or "")


def test_study_cases_for_checks_that_did_not_finish() -> None:
    jobs = [Job("a", "s1"), Job("a", "s2"), Job("b", "s1"), Job("b", "s2"), Job("c", "s1")]
    summaries = {
        jobs[0]: CheckSummary("a", "s1", states=5, exhaustive=True, seconds=0.5),
        jobs[1]: CheckSummary("a", "s2", error="the model does not build"),
        jobs[2]: CheckSummary(
            "b", "s1", violations=[Broken("P", "invariant", 3, "P is false")], exhaustive=True
        ),
        jobs[3]: CheckSummary("b", "s2", states=9, exhaustive=False),
    }
    cases = study_cases(Study(jobs, summaries, interrupted=True))
    assert [c.outcome for c in cases] == [PASSED, ERROR, FAILURE, SKIPPED, ERROR]
    assert cases[1].message == "the model does not build"
    assert "interrupted" in cases[4].message
    assert cases[2].message == "violated: P (3 steps)"


def test_render_counts_and_cleans_text(tmp_path: Path) -> None:
    cases = [
        Case("k.a", "one", 1.25, PASSED, output="fine"),
        Case("k.a", "two", 0.5, FAILURE, "violated: P", "invariant", "bad \x00 byte <&>"),
        Case("k.b", "three", 0.0, SKIPPED, "holds, bounded"),
        Case("k.b", "four", 0.0, ERROR, "incomplete", "incomplete", "interrupted"),
    ]
    path = tmp_path / "r.xml"
    path.write_text(render("suite", cases))
    suite = parse(path)
    assert suite.get("time") == "1.750"
    assert [outcome(c) for c in suite.findall("testcase")] == [PASSED, FAILURE, SKIPPED, ERROR]
    failure = suite.findall("testcase")[1].find("failure")
    assert failure is not None and failure.text == "bad \N{REPLACEMENT CHARACTER} byte <&>"


def test_junit_into_a_missing_folder_is_refused_before_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = model_file(tmp_path, "good.py", GOOD)
    code, err = check(
        tmp_path, capsys, "check", path, "--junit", str(tmp_path / "no" / "such" / "r.xml")
    )
    assert code == 2
    assert err.startswith("kvmsim: error: --junit") and "no such folder" in err


def test_demo_all_passes_a_demo_that_matched_its_expected_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def models() -> list[Entry]:
        wrong = DEMOS["peterson"]
        bad = type(wrong)(wrong.name, wrong.description, "violates: mutual exclusion")
        bad._setup, bad.properties = wrong._setup, wrong.properties
        return [Entry(DEMOS["broken-lock"]), Entry(bad)]

    monkeypatch.setattr(study_module, "study_models", models)
    out = tmp_path / "demos.xml"
    code, _ = check(
        tmp_path, capsys, "demo", "--all", "--quiet", "--out", str(tmp_path), "--junit", str(out)
    )
    assert code == 1
    suite = parse(out)
    broken_lock, peterson = suite.findall("testcase")
    assert outcome(broken_lock) == PASSED  # its violation is the expected verdict
    assert "counterexample 1 of 1: mutual exclusion" in (broken_lock.findtext("system-out") or "")
    failure = peterson.find("failure")
    assert failure is not None and failure.get("type") == "expectation"
    assert (failure.get("message") or "").startswith("expected violates: mutual exclusion: ")
    code, err = check(tmp_path, capsys, "demo", "--all", "--html", str(tmp_path / "r.html"))
    assert code == 2 and "apply to one demo, not to --all" in err
