"""Golden files: the text timeline of two known counterexamples, character for character.

The outputs are compared with tests/report/golden/*.txt after masking what changes from run
to run (speed, memory, time) and the replay tokens (they carry the model's fingerprint, so
any change to the model's code changes them; test_replay.py covers them). When a change to
the model or the report is intended, regenerate the files and review the diff:

    KVMSIM_UPDATE_GOLDEN=1 pytest tests/report/test_golden.py
    git diff tests/report/golden/
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kvmsim.cli import main

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
ROOT = HERE.parent.parent
NO_LATE_CHECK = f"{ROOT / 'tests' / 'kernel' / 'mutants.py'}:no_late_check"
UPDATE = os.environ.get("KVMSIM_UPDATE_GOLDEN") == "1"

CASES = {
    "broken-lock": ("demo", "broken-lock"),
    "no-late-check-migrate": ("check", "--variant", NO_LATE_CHECK, "--scenario", "migrate"),
}


def masked(text: str) -> str:
    text = re.sub(r"kvmsim1:[A-Za-z0-9_-]+", "kvmsim1:<token>", text)
    text = re.sub(r"[\d,]+ states/s", "<speed> states/s", text)
    text = re.sub(r"peak memory [\d,.]+ MB", "peak memory <memory> MB", text)
    return re.sub(r"[\d.]+ s; coverage", "<time> s; coverage", text)


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_timeline_matches_the_golden_file(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(list(CASES[name]))
    out = masked(capsys.readouterr().out)
    assert code == 1
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(out, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert out == expected, (
        f"the output differs from {path.relative_to(ROOT)}; if the change is intended, "
        "regenerate with KVMSIM_UPDATE_GOLDEN=1 pytest tests/report/test_golden.py"
    )
