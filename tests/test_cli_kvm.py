"""The KVM model on the command line: list, check --variant/--scenario, simulate (in-process).

Only the small scenario ``migrate`` is checked here (about 2.5k states, under a second).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kvmsim.demos import DEMOS
from kvmsim.properties import catalogue, describe
from kvmsim.scenarios import SCENARIOS
from kvmsim.simulate import COST_EVENTS, DEADLOCK, STEP_LIMIT, simulate
from kvmsim.variants import all_variants

from .cli_support import run

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = str(ROOT / "tests" / "kernel" / "mutants.py")
NO_LATE_CHECK = f"{MUTANTS}:no_late_check"


def one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kvmsim: error: "), err
    for word in words:
        assert word in lines[0], (word, err)


# -- list -----------------------------------------------------------------------------------


def test_list_shows_variants_scenarios_and_properties(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "list")
    assert (code, err) == (0, "")
    for name in [v.name for v in all_variants()] + list(SCENARIOS):
        assert name in out
    for p in catalogue():
        assert p.name in out
    assert SCENARIOS["migrate"].description in out


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"variants", "scenarios", "properties"}
    for section in doc.values():
        assert section and all({"name", "description"} <= set(obj) for obj in section)
    assert all("base" in v for v in doc["variants"])
    assert all("default" in s for s in doc["scenarios"])
    assert all({"kind", "default"} <= set(p) for p in doc["properties"])
    assert {v["name"] for v in doc["variants"]} >= {"v6.5", "v6.4"}
    assert [s["name"] for s in doc["scenarios"]] == list(SCENARIOS)
    stall = next(p for p in doc["properties"] if p["name"] == "STALL-6.5")
    assert stall["default"] is False


def test_list_one_section(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "scenarios", "--json")
    assert code == 0
    assert list(json.loads(out)) == ["scenarios"]


# -- check ----------------------------------------------------------------------------------


def test_check_v65_migrate_holds_and_prints_the_statistics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "check", "--variant", "v6.5", "--scenario", "migrate")
    assert code == 0, out + err
    assert "verdict: holds" in out
    assert "statistics:" in out and "distinct states" in out
    assert "coverage: exhaustive" in out
    assert "properties: INV-APIC, INV-NOFREE" in out
    assert "STALL-6.5" not in out


def test_check_json_names_variant_scenario_and_statistics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "check", "--scenario", "migrate", "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["variant"], doc["scenario"], doc["verdict"]) == ("v6.5", "migrate", "holds")
    assert doc["violated"] == []
    assert doc["stats"]["states"] > 1000
    assert "INV-REQ" in doc["properties"]


def test_check_mutant_prints_the_counterexample_timeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "check", "--variant", NO_LATE_CHECK, "--scenario", "migrate")
    assert code == 1
    assert "verdict: violated: INV-REQ" in out
    # The INV-REQ counterexample: a per-CPU timeline that ends with what INV-REQ means.
    block = next(
        b
        for b in out.split("counterexample ")[1:]
        if b.split(",")[0].endswith("INV-REQ (property)")
    )
    header = next(line for line in block.splitlines() if "| # " in line)
    assert header.index("CPU0") < header.index("host0")
    assert "vcpu_enter_guest" in block and "kvm_mmu_notifier_invalidate_range_start" in block
    assert "…" not in block  # values are complete
    assert "0x7f001" in block  # addresses in hex
    # ... then what INV-REQ means, then the command that replays it
    last_lines = block.split("verdict:")[0].strip().splitlines()
    assert last_lines[-2].strip() == describe("INV-REQ")
    assert re.fullmatch(r"replay: kvmsim replay kvmsim1:[\w-]+", last_lines[-1])


def test_check_mutant_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "check", "--variant", NO_LATE_CHECK, "--scenario", "migrate", "--json"
    )
    assert code == 1
    doc = json.loads(out)
    assert "INV-REQ" in doc["violated"]
    assert doc["variant"] == "mutant-no-late-check"
    v = doc["violations"][0]
    assert v["description"] == describe("INV-REQ")
    assert {s["lane"] for s in v["trace"]["steps"]} == {"CPU0", "host0"}
    assert doc["stats"]["states"] > 0


def test_check_extra_property(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--scenario", "migrate", "--property", "STALL-6.5")
    assert code == 0
    assert "STALL-6.5" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--variant", "v9.9", "--scenario", "migrate"], ["'v9.9'", "v6.5", "v6.4"]),
        (["--scenario", "nope"], ["'nope'", "migrate", "zap"]),
        (["--scenario", "migrate", "--property", "INV-NOPE"], ["'INV-NOPE'", "STALL-6.5"]),
        (["--variant", f"{MUTANTS}:nope", "--scenario", "migrate"], ["'nope'", "no_late_check"]),
        (["--variant", MUTANTS, "--scenario", "migrate"], ["choose one", "no_wait"]),
        (["--variant", "missing.py:v", "--scenario", "migrate"], ["no such file"]),
        (["migrate"], ["--scenario migrate"]),
        ([MUTANTS, "--scenario", "migrate"], ["--scenario", "without a FILE"]),
    ],
)
def test_check_bad_names_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    code, out, err = run(capsys, "check", *argv)
    assert code == 2
    assert out == ""
    one_line_error(err, *words)


def test_check_variant_file_with_a_broken_patch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    patch = tmp_path / "patch.py"
    patch.write_text(
        "from kvmsim.variants import Variant\n"
        "p = Variant('my-fix', base='v6.5')\n"
        "@p.override\n"
        "def no_such_function(kvm):\n"
        "    yield 'x'\n"
    )
    code, _, err = run(capsys, "check", "--variant", str(patch), "--scenario", "migrate")
    assert code == 2
    one_line_error(err, "'my-fix'", "no_such_function")


# -- simulate -------------------------------------------------------------------------------


def test_simulate_is_deterministic_and_prints_costs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("simulate", "--variant", "v6.5", "--scenario", "migrate", "--seed", "3", "--runs", "2")
    code, first, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    _, second, _ = run(capsys, *argv)
    assert first == second
    assert "run 2 of 2 (seed 4)" in first
    assert "costs: IPIs" in first and "VM-Enters" in first and "reload retries" in first
    assert "total costs:" in first
    assert "no run broke a property" in first
    assert "vcpu_enter_guest" in first


def test_simulate_json_runs_and_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", "--scenario", "migrate", "--seed", "7", "--runs", "2")
    assert code == 0
    code, out, _ = run(
        capsys, "simulate", "--scenario", "migrate", "--seed", "7", "--runs", "2", "--json"
    )
    doc = json.loads(out)
    assert doc["format"] == "kvmsim-simulation/1"
    assert (doc["variant"], doc["scenario"], doc["broken"]) == ("v6.5", "migrate", [])
    assert [r["seed"] for r in doc["runs"]] == [7, 8]
    for r in doc["runs"]:
        assert list(r["costs"]) == list(COST_EVENTS)
        assert r["end"] == "finished"
        assert r["costs"]["vm_enter"] >= 1
        assert len(r["trace"]["steps"]) == r["steps"]
    # Run k of a simulation seeded s is the run seeded s + k.
    _, alone, _ = run(capsys, "simulate", "--scenario", "migrate", "--seed", "8", "--json")
    assert json.loads(alone)["runs"][0]["trace"] == doc["runs"][1]["trace"]


def test_simulate_mutant_reports_the_broken_property(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--variant", NO_LATE_CHECK, "--scenario", "migrate", "--seed", "0"]
    code, out, _ = run(capsys, *argv, "--runs", "30", "--json")
    assert code == 1
    doc = json.loads(out)
    assert "INV-REQ" in doc["broken"]
    first = next(r for r in doc["runs"] if r["broken"])
    prop = first["broken"][0]["property"]
    # The same run, alone and as text: the property, where, and what it means.
    code, out, _ = run(capsys, *argv[:-1], str(first["seed"]))
    assert code == 1
    assert f"✗ {prop} at step {first['broken'][0]['step'] + 1}" in out
    assert describe(prop) in out
    assert f"broken: {prop} (run 1)" in out


def test_simulate_step_limit_and_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "simulate", "--scenario", "migrate", "--max-steps", "4", "--timeline"
    )
    assert code == 0
    assert "4 steps, stopped at the step limit" in out
    assert "| # " in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], ["--scenario", "migrate"]),
        (["--scenario", "nope"], ["'nope'"]),
        (["--scenario", "migrate", "--variant", "v0"], ["'v0'"]),
        (["--scenario", "migrate", "--runs", "0"], ["--runs"]),
    ],
)
def test_simulate_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    code, _, err = run(capsys, "simulate", *argv)
    assert code == 2
    one_line_error(err, *words)


def test_simulate_finds_a_deadlock() -> None:
    sim = simulate(DEMOS["philosophers"], seed=0, runs=20)
    ends = {r.end for r in sim.runs}
    assert DEADLOCK in ends
    assert "deadlock" in sim.broken
    assert simulate(DEMOS["peterson"], seed=0, runs=1, max_steps=2).runs[0].end == STEP_LIMIT


def test_check_every_default_scenario(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without --scenario every default scenario is checked; two small ones stand in here.
    import kvmsim.cli_kvm

    two = [SCENARIOS["migrate"], SCENARIOS["zap"]]
    monkeypatch.setattr(kvmsim.cli_kvm, "default_scenarios", lambda: two)
    code, out, _ = run(capsys, "check", "--quiet")
    assert code == 0
    assert "v6.5 / migrate" in out and "v6.5 / zap" in out
    assert "every property holds in every scenario checked" in out
    code, out, _ = run(capsys, "check", "--json")
    docs = json.loads(out)
    assert [d["scenario"] for d in docs] == ["migrate", "zap"]
    assert all(d["verdict"] == "holds" for d in docs)
    code, out, _ = run(capsys, "check", "--variant", NO_LATE_CHECK, "--quiet")
    assert code == 1
    assert "violated in migrate" in out
