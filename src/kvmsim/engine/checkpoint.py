"""Breadth-first search checkpoints: the search's whole progress in one file, and back.

A checkpoint is taken between two states of the queue, where the search is consistent: the
states popped so far have all their successors recorded, and the queue holds exactly the states
numbered from ``head`` on, in order. It keeps the store (every state, encoded, for the full
store; the fingerprint arrays and only the queue's states for the fingerprint store), the
statistics, the violations found with their paths, and what the search still looks for, so a
resumed search ends exactly as an uninterrupted one would.

The file ``DIR/checkpoint.kvmsim`` is a magic line, one line of JSON (the header: format,
kvmsim and Python versions, the model's identity as the caller gives it, the search options,
the progress so far, the payload's size and BLAKE2b digest) and the payload: marshal data,
zlib-compressed. States are stored as lists of part numbers into one table of distinct encoded
parts (codec.py), since states share most of their parts. It is written to a temporary file,
flushed to disk, then renamed over the previous one, so a crash while writing leaves the
previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sys
import zlib
from array import array
from collections import deque
from itertools import islice
from typing import Any

from ..atomic import write_bytes
from .codec import StateCodec
from .store import FingerprintGraph, Graph
from .system import State, System

FORMAT = "kvmsim-checkpoint/2"  # 2: part fingerprints, and orbit fingerprints with symmetry
FILENAME = "checkpoint.kvmsim"
MAGIC = b"KVMSIM-CHECKPOINT\n"
PAYLOAD_MARSHAL = 4


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, corrupt, or from another model or version."""


def python_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


# -- the file ---------------------------------------------------------------------------------


def write(directory: str, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Write the checkpoint atomically; return its path."""
    data = zlib.compress(marshal.dumps(payload, PAYLOAD_MARSHAL), 1)
    head = dict(header)
    head["format"] = FORMAT
    head["python"] = python_version()
    head["payload_bytes"] = len(data)
    head["payload_blake2b"] = hashlib.blake2b(data, digest_size=16).hexdigest()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FILENAME)
    write_bytes(path, MAGIC + json.dumps(head, sort_keys=True).encode() + b"\n" + data)
    return path


def read_header(directory: str) -> dict[str, Any]:
    return _read(directory, payload=False)[0]


def read(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload = _read(directory, payload=True)
    assert payload is not None
    return header, payload


def _read(directory: str, payload: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    path = os.path.join(directory, FILENAME)
    try:
        with open(path, "rb") as f:
            magic = f.readline()
            line = f.readline()
            data = f.read() if payload else b""
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint in {directory} (no {FILENAME})") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    if magic != MAGIC:
        raise CheckpointError(f"{path} is not a kvmsim checkpoint")
    try:
        header = json.loads(line)
        if not isinstance(header, dict):
            raise ValueError
    except ValueError:
        raise CheckpointError(f"{path} is corrupt (its header is unreadable)") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has format {header.get('format')!r}; this kvmsim reads {FORMAT}"
        )
    if not payload:
        return header, None
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if len(data) != header.get("payload_bytes") or digest != header.get("payload_blake2b"):
        raise CheckpointError(f"{path} is corrupt (its contents do not match their checksum)")
    try:
        body = marshal.loads(zlib.decompress(data))
    except (ValueError, EOFError, TypeError, zlib.error):
        raise CheckpointError(f"{path} is corrupt (its contents are unreadable)") from None
    if not isinstance(body, dict):
        raise CheckpointError(f"{path} is corrupt (its contents are unreadable)")
    return header, body


# -- states -----------------------------------------------------------------------------------


class Parts:
    """A table of distinct encoded parts; a state is written as their numbers.

    A search keeps one across its checkpoints: the full store's states never change, so
    each checkpoint encodes only the states found since the last (``known``)."""

    def __init__(self, codec: StateCodec) -> None:
        self.codec = codec
        self.index: dict[bytes, int] = {}
        self.table: list[bytes] = []
        self.known = array("I")  # the part numbers of states 0 .. done-1 of a full store
        self.done = 0

    def ids(self, states: Any) -> bytes:
        out = array("I")
        index, table = self.index, self.table
        for state in states:
            for part in self.codec.encode_parts(state):
                i = index.get(part)
                if i is None:
                    i = index[part] = len(table)
                    table.append(part)
                out.append(i)
        return out.tobytes()


def _states(codec: StateCodec, table: list[bytes], ids: bytes) -> list[State]:
    numbers = array("I")
    numbers.frombytes(ids)
    width = codec.nobjects + len(codec.system.actors)
    return [
        codec.decode_parts([table[k] for k in numbers[i : i + width]])
        for i in range(0, len(numbers), width)
    ]


def _array(code: str, data: Any) -> array[Any]:
    a = array(code)
    a.frombytes(data)
    return a


# -- the search's progress --------------------------------------------------------------------


def _full_store_ids(parts: Parts, g: Graph) -> bytes:
    n = len(g)
    if parts.done < n:
        parts.known.frombytes(parts.ids(islice(g.index, parts.done, None)))
        parts.done = n
    return parts.known.tobytes()


def capture(search: Any, g: Graph | FingerprintGraph, queue: deque[State]) -> dict[str, Any]:
    """The payload of a checkpoint of search, between two states (see the module doc)."""
    s = search
    codec = s.codec()
    parts = s.longrun.parts if isinstance(g, Graph) and s.longrun.parts else Parts(codec)
    head = len(g) - len(queue)
    body: dict[str, Any] = {
        "head": head,
        "expanded": s.expanded,
        "stats": (s.stats.states, s.stats.transitions, s.stats.max_depth),
        "seconds": s.elapsed(),
        "found": [
            (prop, kind, message, [tuple(step) for step in path], desc, loop)
            for prop, (kind, message, path, desc, loop) in s.found.items()
        ],
        "endpoints": {prop: list(eps) for prop, eps in s.endpoints.items()},
        "sometimes_pending": sorted(s.sometimes_pending),
        "exhaustive": s.exhaustive,
        "bound": s.bound,
        "notes": list(s.notes),
        "caveat": s.caveat,
        "terminal": parts.ids(s.terminal),
    }
    if isinstance(g, Graph):
        steps: dict[tuple[int, tuple[int, ...]], int] = {}
        via = array("I", [steps.setdefault(v, len(steps)) for v in g.via])
        body["graph"] = {
            "kind": "full",
            "states": _full_store_ids(parts, g),
            "parent": array("i", g.parent).tobytes(),
            "via": via.tobytes(),
            "steps": list(steps),
            "depth": array("I", g.depth).tobytes(),
            "keep_graph": g.keep_graph,
            "edges": g.edges,
            "enabled": g.enabled,
            "weights": g.weights,
            "final": sorted(g.final),
        }
    else:
        body["graph"] = {
            "kind": "fingerprint",
            "fps": g.fps.tobytes(),
            "parent": g.parent.tobytes(),
            "step": g.step.tobytes(),
            "steps": g.steps,
            "depth": g.depth.tobytes(),
            "frontier": parts.ids(queue),
            "degraded_at": s.degraded_at,
        }
    body["parts"] = parts.table
    return body


def restore(search: Any, body: dict[str, Any]) -> tuple[Graph | FingerprintGraph, deque[State]]:
    """Put search back where capture() found it; return its store and queue."""
    s = search
    system: System = s.system
    codec = s.codec()
    try:
        table = body["parts"]
        states, transitions, max_depth = body["stats"]
        s.stats.states, s.stats.transitions, s.stats.max_depth = states, transitions, max_depth
        s.resumed_seconds = body["seconds"]
        s.expanded = body["expanded"]
        s.found = {
            prop: (kind, message, [tuple(step) for step in path], desc, loop)
            for prop, kind, message, path, desc, loop in body["found"]
        }
        s.endpoints = {prop: list(eps) for prop, eps in body["endpoints"].items()}
        s.sometimes_pending = set(body["sometimes_pending"])
        s.exhaustive, s.bound = body["exhaustive"], body["bound"]
        s.notes = list(body["notes"])
        s.caveat = body["caveat"]
        s.terminal = dict.fromkeys(_states(codec, table, body["terminal"]))
        gd = body["graph"]
        head = body["head"]
        g: Graph | FingerprintGraph
        if gd["kind"] == "full":
            all_states = _states(codec, table, gd["states"])
            g = Graph(all_states[0], gd["keep_graph"])
            g.index.update((state, i) for i, state in enumerate(all_states))
            g.parent = list(_array("i", gd["parent"]))
            steps = [tuple(step) for step in gd["steps"]]
            g.via = [steps[k] for k in _array("I", gd["via"])]  # type: ignore[misc]
            g.depth = list(_array("I", gd["depth"]))
            g.edges, g.enabled, g.weights = gd["edges"], gd["enabled"], gd["weights"]
            g.final = set(gd["final"])
            queue = deque(all_states[head:])
        else:
            g = FingerprintGraph(system, system.initial, codec, s.reduce.fingerprint(codec))
            g.fps = _array("Q", gd["fps"])
            g.parent = _array("i", gd["parent"])
            g.step = _array("I", gd["step"])
            g.depth = _array("I", gd["depth"])
            g.steps = [tuple(step) for step in gd["steps"]]  # type: ignore[misc]
            g.step_ids = {step: i for i, step in enumerate(g.steps)}
            g.rebuild_index()
            frontier = _states(codec, table, gd["frontier"])
            if len(frontier) != len(g) - head:
                raise ValueError("the queue does not match the store")
            queue = deque(frontier)
            s.degraded_at = gd["degraded_at"]
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"the checkpoint is corrupt ({type(exc).__name__}: {exc})") from None
    return g, queue
