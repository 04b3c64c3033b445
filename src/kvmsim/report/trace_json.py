"""One counterexample as a JSON document, ``kvmsim-trace/1``, modelled on Apalache's ITF.

The shape is documented in docs/trace-format.md. In short: ``states`` holds every state of
the trace in full (``{var: value}``, the initial state first), ``steps`` what each step did
(actor, lane, kernel function, label, choices, changes, cost events), and the document says
which model, property and replay token it belongs to. Values use ITF's encoding: JSON
numbers, strings, booleans and null; ``{"#tup": [...]}`` for a tuple, ``{"#set": [...]}``
for a set (sorted), ``{"#map": [[k, v], ...]}`` for a dict, ``{"#bigint": "..."}`` for an
integer beyond 2**53, and ``{"#unserializable": "repr"}`` for anything else (a reference to a
shared object, an enum).

``trace_document`` writes one, ``read_trace_file`` reads one back (values decoded so that a
report prints them exactly as it printed the originals), ``write_json_atomic`` writes a file
so that a reader never sees half of it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ..atomic import write_json
from ..engine import Violation
from ..engine.trace import Path, Trace, TraceStep
from .values import CompactStyle, ValueStyle

FORMAT = "kvmsim-trace/1"
ITF_DESCRIPTION = "https://apalache-mc.org/docs/adr/015adr-trace.html"
SAFE_INT = 2**53 - 1


class TraceFileError(ValueError):
    """A file that is not a readable kvmsim trace (one line, for the command line)."""


class Opaque:
    """A value written as ``{"#unserializable": text}``: prints as its original repr."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


# -- values ---------------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """A state value in ITF's JSON encoding."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -SAFE_INT <= value <= SAFE_INT else {"#bigint": str(value)}
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, tuple):
        return {"#tup": [encode_value(v) for v in value]}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    if isinstance(value, (frozenset, set)):
        items = [encode_value(v) for v in value]
        return {"#set": sorted(items, key=_sort_key)}
    if isinstance(value, dict):
        pairs = [[encode_value(k), encode_value(v)] for k, v in value.items()]
        return {"#map": sorted(pairs, key=lambda kv: _sort_key(kv[0]))}
    return {"#unserializable": repr(value)}


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True, ensure_ascii=False)


def decode_value(doc: Any) -> Any:
    """The inverse of encode_value (anything unserializable comes back as an Opaque)."""
    if doc is None or isinstance(doc, (bool, str, int, float)):
        return doc
    if isinstance(doc, list):
        return [decode_value(v) for v in doc]
    if isinstance(doc, dict) and len(doc) == 1:
        ((key, inner),) = doc.items()
        if key == "#tup" and isinstance(inner, list):
            return tuple(decode_value(v) for v in inner)
        if key == "#set" and isinstance(inner, list):
            return frozenset(_hashable(decode_value(v)) for v in inner)
        if key == "#map" and isinstance(inner, list):
            return {_hashable(decode_value(k)): decode_value(v) for k, v in inner}
        if key == "#bigint" and isinstance(inner, str):
            return int(inner)
        if key == "#unserializable" and isinstance(inner, str):
            return Opaque(inner)
    raise TraceFileError(f"not a value of the trace format: {json.dumps(doc)[:80]}")


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


# -- value styles ---------------------------------------------------------------------------


def style_document(style: ValueStyle | None) -> dict[str, Any]:
    """How the text report writes values, so that a trace file prints the same way."""
    if isinstance(style, CompactStyle):
        return {"kind": "compact", "hex_from": style.hex_from, "diff_from": style.diff_from}
    return {"kind": "repr"}


def style_from(doc: Any) -> ValueStyle | None:
    if isinstance(doc, dict) and doc.get("kind") == "compact":
        hex_from, diff_from = doc.get("hex_from"), doc.get("diff_from", 24)
        if (hex_from is None or isinstance(hex_from, int)) and isinstance(diff_from, int):
            return CompactStyle(hex_from=hex_from, diff_from=diff_from)
    return None


# -- documents ------------------------------------------------------------------------------


def states_of(trace: Trace) -> list[dict[str, Any]]:
    """Every state of the trace in full: the initial state, then the state after each step
    that completed (a step that failed before completing has none)."""
    state = dict(trace.initial)
    out = [dict(state)]
    for step in trace.steps:
        if step.kind not in ("ok", "property") or (step.kind == "property" and _failed(step)):
            break
        for var, _before, after in step.changes:
            state[var] = after
        out.append(dict(state))
    return out


def _failed(step: TraceStep) -> bool:
    """A step that raised (an assertion, an error, a property exception) is recorded with
    its kind as its label and no changes; one that completed keeps its own label."""
    return step.label == step.kind and not step.changes


def trace_document(
    violation: Violation,
    *,
    model: str,
    description: str = "",
    expect: str = "",
    ref: dict[str, Any] | None = None,
    fingerprint: str = "",
    token: str | None = None,
    lanes: list[str] | None = None,
    actors: list[tuple[str, str]] | None = None,
    style: ValueStyle | None = None,
    notes: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The violation's trace as a kvmsim-trace/1 document."""
    trace = violation.trace or Trace()
    states = states_of(trace)
    variables = list(trace.initial)
    doc: dict[str, Any] = {
        "#meta": {
            "format": "ITF",
            "format-description": ITF_DESCRIPTION,
            "description": f"kvmsim counterexample: {violation.prop} in {model}",
        },
        "format": FORMAT,
        "model": model,
        "description": description,
        "expect": expect,
        "notes": list(notes or []),
        "model_ref": ref,
        "fingerprint": fingerprint,
        "property": violation.prop,
        "kind": violation.kind,
        "message": violation.message,
        "meaning": violation.description,
        "token": token,
        "replay": f"kvmsim replay {token}" if token else None,
        "lanes": list(lanes or []),
        "actors": [{"name": n, "lane": lane} for n, lane in (actors or [])],
        "value_style": style_document(style),
        "length": len(trace.steps),
        "loop": trace.loop_start,
        "path": [[actor, *choices] for actor, choices in trace.path],
        "vars": variables,
        "states": [
            {"#meta": {"index": i}, **{k: encode_value(v) for k, v in s.items()}}
            for i, s in enumerate(states)
        ],
        "steps": [_step_document(step) for step in trace.steps],
    }
    if extra:
        doc.update(extra)
    return doc


def _step_document(step: TraceStep) -> dict[str, Any]:
    return {
        "index": step.index,
        "actor": step.actor,
        "lane": step.lane,
        "function": step.function,
        "stack": list(step.stack),
        "label": step.label,
        "choices": list(step.choices),
        "changes": [
            {"var": var, "before": encode_value(before), "after": encode_value(after)}
            for var, before, after in step.changes
        ],
        "kind": step.kind,
        "message": step.message,
        "events": list(step.events),
        "line": step.line,
    }


@dataclass
class TraceFile:
    """A trace document read back: the violation (with its trace) and how to print it."""

    doc: dict[str, Any]
    violation: Violation
    states: list[dict[str, Any]] = field(default_factory=list)
    lanes: list[str] = field(default_factory=list)
    style: ValueStyle | None = None

    @property
    def model(self) -> str:
        return str(self.doc.get("model", ""))

    @property
    def description(self) -> str:
        return str(self.doc.get("description") or "")

    @property
    def token(self) -> str | None:
        token = self.doc.get("token")
        return token if isinstance(token, str) else None


def read_trace_file(path: str | os.PathLike[str]) -> TraceFile:
    """Read a kvmsim-trace/1 file; TraceFileError says what is wrong with it."""
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TraceFileError(f"{path} is not a kvmsim trace file (not UTF-8 text)") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TraceFileError(f"{path} is not a kvmsim trace file (bad JSON: {exc})") from None
    try:
        return trace_from_document(doc)
    except TraceFileError as exc:
        raise TraceFileError(f"{path}: {exc}") from None


def trace_from_document(doc: Any) -> TraceFile:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise TraceFileError(f"not a {FORMAT} document (format: {found!r})")
    try:
        states = [{k: decode_value(v) for k, v in s.items() if k != "#meta"} for s in doc["states"]]
        steps = [_step_from(s) for s in doc["steps"]]
        path: Path = [(int(p[0]), tuple(int(c) for c in p[1:])) for p in doc.get("path", [])]
        loop = doc.get("loop")
        trace = Trace(
            steps=steps,
            path=path,
            loop_start=loop if isinstance(loop, int) else None,
            final=dict(states[-1]) if states else {},
            initial=dict(states[0]) if states else {},
        )
        violation = Violation(
            str(doc["property"]),
            str(doc["kind"]),
            str(doc.get("message", "")),
            trace,
            str(doc.get("meaning") or ""),
        )
        lanes = [str(lane) for lane in doc.get("lanes", [])]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        if isinstance(exc, TraceFileError):
            raise
        raise TraceFileError(
            f"a malformed {FORMAT} document ({type(exc).__name__}: {exc})"
        ) from None
    return TraceFile(doc, violation, states, lanes, style_from(doc.get("value_style")))


def _step_from(doc: dict[str, Any]) -> TraceStep:
    return TraceStep(
        index=int(doc["index"]),
        actor=str(doc["actor"]),
        lane=str(doc["lane"]),
        label=str(doc["label"]),
        stack=tuple(str(f) for f in doc["stack"]),
        choices=tuple(str(c) for c in doc["choices"]),
        changes=tuple(
            (str(c["var"]), decode_value(c["before"]), decode_value(c["after"]))
            for c in doc["changes"]
        ),
        line=str(doc.get("line", "")),
        kind=str(doc["kind"]),
        message=str(doc.get("message", "")),
        events=tuple(str(e) for e in doc.get("events", [])),
    )


def write_json_atomic(path: str | os.PathLike[str], doc: Any) -> None:
    """Write doc as JSON to path atomically (kvmsim.atomic)."""
    write_json(path, doc)
