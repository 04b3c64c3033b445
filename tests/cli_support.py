"""What the command-line tests share: running kvmsim's CLI in this process, writing a model
file, and a counters model file of a chosen size."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kvmsim.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """kvmsim's command line with argv: (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def counters_source(
    threads: int, times: int, limit: int | None = None, name: str = "counters"
) -> str:
    """A model file: threads adding times to a shared counter, read and write in separate
    steps (lost updates); with limit, an invariant "small" that the value stays <= limit."""
    source = f"""
from kvmsim import Model, Setup, Struct


class Shared(Struct):
    value: int = 0


def adder(w, times):
    for _ in range(times):
        seen = w.value
        yield "read"
        w.value = seen + 1
        yield "write"


model = Model({name!r})


@model.setup
def setup(s: Setup) -> Shared:
    w = Shared()
    for i in range({threads}):
        s.actor(f"T{{i}}", adder, w, {times})
    return w
"""
    if limit is not None:
        source += f"""

@model.invariant("small")
def small(w):
    return w.value <= {limit}
"""
    return source
