"""Property-based tests of the command line: kvmsim never crashes with a traceback.

Random models (as model files), random and mutated replay tokens, random and mutated trace
files, random option values: the exit status is always 0, 1 or 2, an error is one line
``kvmsim: error: ...``, and a random model's verdict is the engine's.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmsim.cli import main
from kvmsim.engine import Options, check

from .engine.random_models import Spec, build, source, specs

_ids = itertools.count()


def run(*argv: str) -> tuple[int, str, str]:
    """main() with its output captured (Hypothesis cannot use the capsys fixture)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, allowed: tuple[int, ...] = (0, 1, 2)) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("kvmsim: error:")]
    if code == 2:
        assert len(errors) == 1, err
    else:
        assert errors == [], err


@pytest.fixture(scope="module")
def folder() -> Any:
    with tempfile.TemporaryDirectory(prefix="kvmsim-fuzz-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def trace_doc(folder: Path) -> dict[str, Any]:
    """A real trace file's document, to mutate."""
    path = folder / "broken-lock.json"
    code, _, err = run("demo", "broken-lock", "--quiet", "--trace-out", str(path))
    assert code == 1, err
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


@pytest.fixture(scope="module")
def token(trace_doc: dict[str, Any]) -> str:
    value = trace_doc["token"]
    assert isinstance(value, str) and value.startswith("kvmsim1:")
    return value


# -- random models through `kvmsim check FILE` ---------------------------------------------------


@settings(deadline=None, max_examples=20)
@given(spec=specs, mode=st.sampled_from(["bfs", "dfs"]))
def test_a_random_model_file_gets_the_engines_verdict(folder: Path, spec: Spec, mode: str) -> None:
    path = folder / f"random_{next(_ids)}.py"  # a new name each time: no stale line cache
    path.write_text(source(spec))
    code, out, err = run("check", str(path), "--quiet", "--mode", mode, "--json")
    assert_clean(code, err, allowed=(0, 1))
    doc = json.loads(out)
    expected = check(build(spec), Options(mode=mode))
    assert code == (1 if expected.violations else 0)
    assert sorted(doc["violated"]) == sorted(expected.violated())
    assert doc["stats"]["states"] == expected.stats.states


# -- replay tokens ---------------------------------------------------------------------------


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="


@settings(deadline=None)
@given(text=st.one_of(st.text(max_size=80), st.text(B64, max_size=200).map("kvmsim1:".__add__)))
def test_random_tokens_are_refused_cleanly(text: str) -> None:
    if text.startswith("-"):
        text = " " + text  # not an option
    code, _, err = run("replay", text)
    assert_clean(code, err)


@settings(deadline=None)
@given(data=st.data())
def test_mutated_tokens_are_refused_or_replayed(token: str, data: st.DataObject) -> None:
    body = list(token[len("kvmsim1:") :])
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(body) - 1), st.sampled_from(B64)), max_size=4)
    )
    for i, ch in edits:
        body[i] = ch
    cut = data.draw(st.integers(0, len(body)))
    mutated = "kvmsim1:" + "".join(body[:cut] if data.draw(st.booleans()) else body)
    step = data.draw(st.sampled_from([[], ["--step", "0"], ["--step", "3"], ["--json"]]))
    code, _, err = run("replay", mutated, *step)
    assert_clean(code, err, allowed=(0, 2))


# -- trace files -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**20) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, as a path of keys and indexes."""
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths(v, (*prefix, i))
    return found


def mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@settings(deadline=None)
@given(data=st.data())
def test_mutated_trace_files_are_refused_or_replayed(
    folder: Path, trace_doc: dict[str, Any], data: st.DataObject
) -> None:
    doc: Any = trace_doc
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths(doc)))
        doc = mutate(
            doc, where, data.draw(json_values), delete=bool(where) and data.draw(st.booleans())
        )
    path = folder / f"trace_{next(_ids)}.json"
    path.write_text(json.dumps(doc))
    extra = data.draw(st.sampled_from([[], ["--step", "0"], ["--step", "5"], ["--json"]]))
    before = sorted(os.listdir(folder))
    code, _, err = run("replay", str(path), *extra)
    assert_clean(code, err, allowed=(0, 2))
    assert sorted(os.listdir(folder)) == before  # replay writes nothing


@settings(deadline=None)
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_as_a_trace_file(folder: Path, content: bytes) -> None:
    path = folder / f"bytes_{next(_ids)}.json"
    path.write_bytes(content)
    code, _, err = run("replay", str(path))
    assert_clean(code, err, allowed=(2,))


# -- option values -----------------------------------------------------------------------------

OPTION_VALUES = st.one_of(
    st.integers(-3, 40).map(str), st.text(max_size=6), st.sampled_from(["bfs", "dfs", "random"])
)


@settings(deadline=None)
@given(
    options=st.lists(
        st.tuples(
            st.sampled_from(["--max-depth", "--max-states", "--mode", "--seed", "--runs"]),
            OPTION_VALUES,
        ),
        max_size=3,
    )
)
def test_random_option_values(options: list[tuple[str, str]]) -> None:
    argv = ["demo", "broken-lock", "--quiet"]
    for opt, value in options:
        argv.append(f"{opt}={value}")
    code, _, err = run(*argv)
    assert_clean(code, err)
