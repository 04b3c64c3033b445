"""The JSON trace (kvmsim-trace/1): its shape, its value encoding, ``check --json`` carrying it
for each violation, ``--trace-out`` writing one, and ``kvmsim replay FILE`` printing exactly
the timeline the check printed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvmsim.report.trace_json import (
    FORMAT,
    Opaque,
    TraceFileError,
    decode_value,
    encode_value,
    read_trace_file,
    write_json_atomic,
)
from kvmsim.report.values import CompactStyle

from ..cli_support import run

ROOT = Path(__file__).resolve().parent.parent.parent
NO_LATE_CHECK = f"{ROOT / 'tests' / 'kernel' / 'mutants.py'}:no_late_check"
KVM = ("check", "--variant", NO_LATE_CHECK, "--scenario", "migrate")


def counterexample(out: str, prop: str) -> str:
    """A counterexample's text, from its initial-values line to its replay line."""
    header = re.search(rf"^counterexample(?: \d+ of \d+)?: {re.escape(prop)}[ ,]", out, re.M)
    assert header, out
    body = out[out.index("\n", header.start()) + 1 :]
    end = body.index("\nreplay: ")
    return body[: body.index("\n", end + 1)]


# -- values --------------------------------------------------------------------------------------


def test_values_use_the_itf_encoding() -> None:
    assert encode_value(None) is None
    assert encode_value(True) is True
    assert encode_value(3) == 3
    assert encode_value("L1") == "L1"
    assert encode_value((1, None)) == {"#tup": [1, None]}
    assert encode_value(frozenset({3, 1, 2})) == {"#set": [1, 2, 3]}
    assert encode_value(frozenset()) == {"#set": []}
    assert encode_value({"a": (1,)}) == {"#map": [["a", {"#tup": [1]}]]}
    assert encode_value(2**60) == {"#bigint": str(2**60)}
    assert encode_value([1, 2]) == [1, 2]

    class Thing:
        def __repr__(self) -> str:
            return "vcpu0"

    assert encode_value(Thing()) == {"#unserializable": "vcpu0"}
    assert decode_value({"#unserializable": "vcpu0"}) == Opaque("vcpu0")
    assert repr(decode_value({"#unserializable": "vcpu0"})) == "vcpu0"
    with pytest.raises(TraceFileError):
        decode_value({"#tup": [1], "extra": 2})


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.tuples(inner, inner)
        | st.lists(inner, max_size=3).map(tuple)
        | st.frozensets(st.integers() | st.text(max_size=3), max_size=4)
    ),
    max_leaves=12,
)


@given(values)
def test_values_round_trip(value: Any) -> None:
    doc = json.loads(json.dumps(encode_value(value)))
    back = decode_value(doc)
    assert back == value
    assert type(back) is type(value)
    style = CompactStyle(hex_from=0x100)
    assert style.value(back) == style.value(value)


# -- check --json carries the trace of each violation -------------------------------------------


def test_check_json_has_a_trace_document_per_violation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *KVM, "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["format"] == "kvmsim-result/1"  # extended, not replaced
    assert doc["model_ref"] == {
        "kind": "kvm",
        "variant": NO_LATE_CHECK,
        "scenario": "migrate",
        "extra": [],
    }
    assert re.fullmatch(r"[0-9a-f]{16}", doc["fingerprint"])
    for v in doc["violations"]:
        assert v["trace"]["steps"]  # the existing fields are still there
        assert v["token"].startswith("kvmsim1:") and v["replay"] == f"kvmsim replay {v['token']}"
        cx = v["counterexample"]
        assert cx["format"] == FORMAT
        assert cx["#meta"]["format"] == "ITF"
        assert (cx["property"], cx["kind"], cx["message"]) == (
            v["property"],
            v["kind"],
            v["message"],
        )
        assert (cx["variant"], cx["scenario"]) == ("mutant-no-late-check", "migrate")
        assert cx["token"] == v["token"] and cx["fingerprint"] == doc["fingerprint"]
        assert cx["lanes"] == ["CPU0", "host0"]
        assert {"name": "vcpu0", "lane": "CPU0"} in cx["actors"]
        assert cx["length"] == v["length"] == len(cx["steps"]) == len(cx["path"])
        # every state in full, the initial one first, each step's changes applied
        assert len(cx["states"]) == len(cx["steps"]) + 1
        assert all(set(s) == {"#meta", *cx["vars"]} for s in cx["states"])
        for i, step in enumerate(cx["steps"]):
            assert cx["states"][i + 1]["#meta"] == {"index": i + 1}
            for change in step["changes"]:
                assert cx["states"][i][change["var"]] == change["before"]
                assert cx["states"][i + 1][change["var"]] == change["after"]
        assert cx["steps"][0]["function"] == cx["steps"][0]["stack"][-1]
    first = doc["violations"][0]["counterexample"]
    assert first["states"][0]["kvm.spte"] == {
        "#set": [{"#tup": ["L1", 0xFEE00, 0]}, {"#tup": ["L1", 0x100, 1]}]
    }
    assert first["states"][0]["vcpu0.mode"] == "OUTSIDE_GUEST_MODE"
    assert first["states"][0]["kvm.vcpus"] == {"#tup": [{"#unserializable": "vcpu0"}]}


# -- --trace-out and replay FILE ----------------------------------------------------------------


def test_trace_out_round_trip_prints_the_identical_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for prop in ("INV-REQ", "INV-NOFREE"):
        path = tmp_path / f"{prop}.json"
        code, out, err = run(capsys, *KVM, "--trace-out", str(path), "--property", prop)
        assert code == 1
        assert f"wrote {path} (counterexample of {prop})" in err
        doc = json.loads(path.read_text())
        assert doc["format"] == FORMAT and doc["property"] == prop
        code, again, err = run(capsys, "replay", str(path))
        assert (code, err) == (0, "")
        assert counterexample(again, prop) == counterexample(out, prop)
        # and the token inside it gives the same again
        code, by_token, _ = run(capsys, "replay", doc["token"])
        assert by_token == again
        # --step reads the states from the file
        code, state, _ = run(capsys, "replay", str(path), "--step", "1")
        assert "* vcpu0.irqs_enabled = False" in state.splitlines()


@pytest.mark.parametrize("demo", ["broken-lock", "philosophers", "retry-starved"])
def test_demo_trace_files_round_trip(
    demo: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    code, out, _ = run(capsys, "demo", demo, "--trace-out", str(path))
    doc = json.loads(path.read_text())
    code, again, _ = run(capsys, "replay", str(path))
    assert code == 0
    assert counterexample(again, doc["property"]) == counterexample(out, doc["property"])
    if demo == "retry-starved":
        assert doc["loop"] is not None and "── loop ──" in again


def test_trace_out_picks_the_first_or_the_named_property(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    run(capsys, *KVM, "--trace-out", str(path))
    assert json.loads(path.read_text())["property"] == "INV-REQ"  # the first
    run(capsys, *KVM, "--trace-out", str(path), "--property", "LIVE-FLUSH")
    assert json.loads(path.read_text())["property"] == "LIVE-FLUSH"
    # a property that holds: nothing written, said so
    path.unlink()
    code, _, err = run(capsys, *KVM, "--trace-out", str(path), "--property", "INV-APIC")
    assert code == 1 and not path.exists()
    assert "no counterexample of INV-APIC to write" in err
    # a model that holds
    code, _, err = run(capsys, "demo", "peterson", "--trace-out", str(path))
    assert code == 0 and not path.exists() and "no counterexample" in err
    # demo: --property picks among its own properties
    code, _, _ = run(capsys, "demo", "philosophers", "--trace-out", str(path), "--property", "x")
    assert not path.exists()
    # a folder that does not exist: refused before the search
    code, _, err = run(capsys, "demo", "broken-lock", "--trace-out", str(tmp_path / "no" / "t"))
    assert code == 2 and "no such folder" in err


def test_bad_trace_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "notjson.json": "{",
        "other.json": json.dumps({"format": "kvmsim-result/1"}),
        "broken.json": json.dumps({"format": FORMAT, "states": []}),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        code, _, err = run(capsys, "replay", str(tmp_path / name))
        assert code == 2
        assert len(err.strip().splitlines()) == 1 and err.startswith("kvmsim: error: "), err
    code, _, err = run(capsys, "replay", str(tmp_path / "absent.json"))
    assert code == 2 and "no such file" in err


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()

    def fail(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}  # the old file is intact
    assert os.listdir(tmp_path) == ["t.json"]  # and no temporary file is left


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_read_trace_file_rebuilds_the_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    run(capsys, "demo", "broken-lock", "--trace-out", str(path))
    tf = read_trace_file(path)
    assert tf.violation.prop == "mutual exclusion" and tf.violation.kind == "invariant"
    assert tf.violation.trace is not None and len(tf.violation.trace) == 6
    assert tf.states[-1] == {"locked": True, "in_critical": 2}
    assert tf.model == "broken-lock" and tf.token and tf.style is None
