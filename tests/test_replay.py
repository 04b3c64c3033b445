"""Replay tokens: every counterexample ends with the command that replays it; ``kvmsim replay
TOKEN`` prints the same counterexample, ``--step N`` the state after step N; tokens for a
model built from different code, and corrupt ones, are refused with one line and status 2."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from kvmsim.cli_kvm import resolve_variant
from kvmsim.demos import DEMOS
from kvmsim.engine import check
from kvmsim.fingerprint import fingerprint
from kvmsim.machine import build_model
from kvmsim.replay import PREFIX, ModelRef, Token, TokenError, make_token
from kvmsim.scenarios import SCENARIOS
from kvmsim.variants import get_variant

from .cli_support import run

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = str(ROOT / "tests" / "kernel" / "mutants.py")
NO_LATE_CHECK = f"{MUTANTS}:no_late_check"
TOKEN = re.compile(r"kvmsim1:[A-Za-z0-9_-]+")

MODEL_FILE = """
from kvmsim import Model, Setup, Struct, await_

class Lock(Struct):
    locked: bool = False
    inside: int = 0

def thread(w):
    await_(not w.locked)
    yield "test"
    w.locked = True
    yield "set"
    w.inside += 1
    yield "enter"
    w.inside -= 1
    w.locked = False
    yield "unlock"

model = Model("file-lock", "a lock in a file")

@model.setup
def setup(s: Setup):
    w = Lock()
    s.actor("A", thread, w, lane="CPU0")
    s.actor("B", thread, w, lane="CPU1")
    return w

@model.invariant("mutex", "At most one thread is inside.")
def mutex(w):
    return w.inside <= 1
"""

PATCH_FILE = """
from kvmsim.variants import Variant

patch = Variant("my-patch", base="v6.5")

@patch.override
def kvm_vcpu_exit_request(vcpu):
    return False  # no late check
"""


def one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kvmsim: error: "), err
    for word in words:
        assert word in lines[0], (word, err)


def blocks(out: str) -> dict[str, str]:
    """Each counterexample of a check's text output, from its initial line to its replay
    line, by property."""
    found = {}
    for part in re.split(r"\ncounterexample(?: \d+ of \d+)?: ", out)[1:]:
        prop = part.split(" (")[0].split(",")[0]
        body = part[part.index("\n") + 1 :]
        end = body.index("\nreplay: ")
        line_end = body.find("\n", end + 1)
        found[prop] = body[: line_end if line_end >= 0 else len(body)]
    return found


def token_of(block: str) -> str:
    match = TOKEN.search(block.splitlines()[-1])
    assert match, block
    return match.group(0)


# -- every counterexample ends with its replay command -----------------------------------------


@pytest.mark.parametrize("demo", ["broken-lock", "lost-update", "philosophers", "retry-starved"])
def test_demo_token_replays_the_same_counterexample(
    demo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo", demo)
    assert code == 1
    found = blocks(out)
    assert found and set(found) == set(check(DEMOS[demo]).violated())
    for block in found.values():
        assert block.splitlines()[-1].startswith("replay: kvmsim replay kvmsim1:")
        code, again, err = run(capsys, "replay", token_of(block))
        assert (code, err) == (0, "")
        assert again.startswith(f"{demo}: ")
        (replayed,) = blocks(again).values()
        assert replayed == block


def test_kvm_tokens_replay_every_counterexample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--variant", NO_LATE_CHECK, "--scenario", "migrate")
    assert code == 1
    found = blocks(out)
    assert set(found) == {"INV-REQ", "INV-WAIT", "LIVE-FLUSH", "INV-NOFREE"}
    for block in found.values():
        code, again, err = run(capsys, "replay", token_of(block))
        assert (code, err) == (0, "")
        assert again.splitlines()[0].startswith("mutant-no-late-check / migrate: ")
        assert again.splitlines()[1].startswith("properties: INV-APIC")
        assert list(blocks(again).values()) == [block]


def test_quiet_output_gives_each_counterexample_its_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "demo", "broken-lock", "--quiet")
    assert code == 1
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("✗ mutual exclusion"))
    assert re.fullmatch(r"  replay: kvmsim replay kvmsim1:[\w-]+", lines[at + 1])


def test_a_model_file_token_reloads_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lock.py"
    path.write_text(MODEL_FILE)
    code, out, _ = run(capsys, "check", str(path))
    assert code == 1
    block = blocks(out)["mutex"]
    token = token_of(block)
    assert Token.decode(token).ref == ModelRef("file", str(path))
    code, again, _ = run(capsys, "replay", token)
    assert code == 0 and blocks(again)["mutex"] == block
    # the file changed: the token is refused
    path.write_text(MODEL_FILE.replace("w.inside <= 1", "w.inside < 2"))
    code, _, err = run(capsys, "replay", token)
    assert code == 2
    one_line_error(err, "this token is for model 'file-lock'", "built from different code")
    # the file is gone
    path.unlink()
    code, _, err = run(capsys, "replay", token)
    assert code == 2
    one_line_error(err, "does not exist")


# -- --step N ------------------------------------------------------------------------------------


def test_step_prints_the_whole_state_after_that_step(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--variant", NO_LATE_CHECK, "--scenario", "migrate")
    token = token_of(blocks(out)["INV-REQ"])
    trace = Token.decode(token)
    n = len(trace.path)
    code, state, err = run(capsys, "replay", token, "--step", "6")
    assert (code, err) == (0, "")
    lines = state.splitlines()
    assert lines[0] == (
        f"state after step 6 of {n} (host0: kvm_make_all_cpus_request: "
        "KVM_REQ_APIC_PAGE_RELOAD -> vcpu0)"
    )
    assert "* vcpu0.requests = {KVM_REQ_APIC_PAGE_RELOAD}" in lines  # changed by step 6
    assert "  vcpu0.mode = OUTSIDE_GUEST_MODE" in lines  # unchanged, shown too
    assert "  kvm.mmu_invalidate_range_start = 0x7f001" in lines  # complete values, in hex
    assert len([line for line in lines if " = " in line]) > 50  # every variable
    # the state after the last step is the trace's final state
    code, last, _ = run(capsys, "replay", token, "--step", str(n))
    assert "* vcpu0.in_guest = True" in last.splitlines()
    code, first, _ = run(capsys, "replay", token, "--step", "0")
    assert first.splitlines()[0] == f"initial state (before step 1 of {n})"
    assert "  vcpu0.in_guest = False" in first.splitlines()
    assert "*" not in "".join(line[:1] for line in first.splitlines())
    code, _, err = run(capsys, "replay", token, "--step", str(n + 1))
    assert code == 2
    one_line_error(err, f"the trace has {n} steps")


def test_replay_json_is_the_trace_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "broken-lock")
    token = token_of(blocks(out)["mutual exclusion"])
    code, out, _ = run(capsys, "replay", token, "--json")
    doc = json.loads(out)
    assert doc["format"] == "kvmsim-trace/1" and doc["token"] == token
    assert len(doc["states"]) == 7
    code, out, _ = run(capsys, "replay", token, "--json", "--step", "6")
    assert json.loads(out) == {"step": 6, "state": {"locked": True, "in_critical": 2}}


# -- refused tokens -------------------------------------------------------------------------------


def test_a_token_for_another_model_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    model = build_model(resolve_variant(NO_LATE_CHECK), SCENARIOS["migrate"])
    v = check(model).violation("INV-REQ")
    ref = ModelRef("kvm", NO_LATE_CHECK, "migrate")
    token = make_token(ref, fingerprint(model), v)
    assert token is not None
    code, _, err = run(capsys, "replay", token)
    assert (code, err) == (0, "")
    # the same path, said to be for v6.5 (whose code differs): refused
    other = dataclasses.replace(Token.decode(token), ref=ModelRef("kvm", "v6.5", "migrate"))
    code, _, err = run(capsys, "replay", other.encode())
    assert code == 2
    one_line_error(
        err, "this token is for model 'v6.5 / migrate'", "variant v6.5", "different code"
    )
    # or for another scenario
    other = dataclasses.replace(Token.decode(token), ref=dataclasses.replace(ref, scenario="zap"))
    code, _, err = run(capsys, "replay", other.encode())
    assert code == 2
    one_line_error(err, "mutant-no-late-check / zap", "different code")


def test_a_token_from_an_older_patch_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patch = tmp_path / "patch.py"
    patch.write_text(PATCH_FILE)
    code, out, _ = run(capsys, "check", "--variant", f"{patch}:patch", "--scenario", "migrate")
    assert code == 1
    token = token_of(blocks(out)["INV-REQ"])
    code, _, err = run(capsys, "replay", token)
    assert (code, err) == (0, "")
    # the patch changed (the same behaviour, other code): refused
    patch.write_text(PATCH_FILE.replace("return False", "return 1 == 2"))
    code, _, err = run(capsys, "replay", token)
    assert code == 2
    one_line_error(err, "this token is for model 'my-patch / migrate'", "different code")


def _raw_token(doc: object) -> str:
    raw = json.dumps(doc).encode()
    return PREFIX + base64.urlsafe_b64encode(zlib.compress(raw)).decode().rstrip("=")


def test_corrupt_tokens_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "broken-lock")
    token = token_of(blocks(out)["mutual exclusion"])
    good = Token.decode(token)
    bad = [
        token[:-5],  # truncated
        token + "A",  # something appended
        token[:20] + "!!" + token[22:],  # not base64
        PREFIX,  # empty
        PREFIX + base64.urlsafe_b64encode(b"not zlib").decode(),
        _raw_token([1, 2, 3]),  # not an object
        _raw_token({"m": {"kind": "demo", "name": "broken-lock"}}),  # fields missing
        _raw_token({**json.loads(zlib.decompress(_body(token))), "t": [["x"]]}),
        _raw_token({**json.loads(zlib.decompress(_body(token))), "m": {"kind": "spaceship"}}),
    ]
    for text in bad:
        code, _, err = run(capsys, "replay", text)
        assert code == 2, text
        one_line_error(err, "bad replay token")
    # a path that the model cannot take, or that does not end in the violation
    for path in ([(7, ())], good.path[:-1], good.path[:3] + [(0, (5,))] + good.path[4:]):
        code, _, err = run(capsys, "replay", dataclasses.replace(good, path=path).encode())
        assert code == 2, path
        one_line_error(err, "bad replay token")
    # not a token at all, nor a file
    code, _, err = run(capsys, "replay", "hello")
    assert code == 2
    one_line_error(err, "not a replay token")
    # a demo this kvmsim does not have
    code, _, err = run(
        capsys, "replay", dataclasses.replace(good, ref=ModelRef("demo", "x")).encode()
    )
    assert code == 2
    one_line_error(err, "demo 'x'")


def _body(token: str) -> bytes:
    body = token[len(PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_token_decoding_reports_what_is_wrong() -> None:
    with pytest.raises(TokenError, match="should start with"):
        Token.decode("kvmsim2:abc")
    with pytest.raises(TokenError, match="loop start"):
        Token.decode(
            _raw_token(
                {"m": {"kind": "demo", "name": "a"}, "f": "", "p": "", "k": "", "t": [[0]], "l": 5}
            )
        )


# -- fingerprints ---------------------------------------------------------------------------------


def test_fingerprints_tell_models_apart_and_do_not_depend_on_the_process() -> None:
    v65, v64 = get_variant("v6.5"), get_variant("v6.4")
    a = fingerprint(build_model(v65, SCENARIOS["migrate"]))
    assert a == fingerprint(build_model(v65, SCENARIOS["migrate"]))
    assert a != fingerprint(build_model(v64, SCENARIOS["migrate"]))
    assert a != fingerprint(build_model(v65, SCENARIOS["zap"]))
    assert a != fingerprint(build_model(v65, SCENARIOS["migrate"], ("STALL-6.5",)))
    code = (
        "from kvmsim.fingerprint import fingerprint; from kvmsim.machine import build_model; "
        "from kvmsim.variants import get_variant; from kvmsim.scenarios import SCENARIOS; "
        "print(fingerprint(build_model(get_variant('v6.5'), SCENARIOS['migrate'])))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert out.stdout.strip() == a
