"""Hostile and broken inputs, end to end through the command line.

Each broken model file, variant file or command-line value is refused with exit status 2,
nothing on stdout, one line on stderr that names the file and line (when there is one) and what
to change, and no output file written: not --html, --trace-out or --junit, not even in part.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from kvmsim import watchdog
from kvmsim.engine import check

from .cli_support import run
from .engine.bench import filter_lock

HEAD = """\
from kvmsim import Model, Setup, Struct, await_, choose

class W(Struct):
    n: int = 0
    other: object = None

"""

TAIL = """

model = Model("hostile")

@model.setup
def setup(s):
    w = W()
    s.actor("a", actor, w)
    return w

@model.invariant("small")
def small(w):
    return w.n < 100
"""


def actor_model(actor: str) -> str:
    """A model file around the actor's source; the actor's first line is line 7."""
    return HEAD + textwrap.dedent(actor).strip("\n") + TAIL


# (file source, words the error line must contain; FILE stands for the file's path)
MODEL_FILES: dict[str, tuple[str, list[str]]] = {
    "syntax-error": ("from kvmsim import Model\nx = 1\ndef f(:\n    pass\n", ["FILE:3:", "syntax"]),
    "raises-at-import": (
        "import os\n\nraise RuntimeError('no config')\n",
        ["FILE:3:", "cannot load the model file", "RuntimeError: no config"],
    ),
    "exits-at-import": ("import sys\nsys.exit(3)\n", ["FILE:2:", "SystemExit"]),
    "missing-import": ("import no_such_module_anywhere\n", ["FILE:1:", "ModuleNotFoundError"]),
    "not-utf8": ("x = '\udcff'\n", ["FILE:", "syntax error", "utf-8"]),
    "defines-nothing": ("x = 1\n", ["FILE", "defines no kvmsim Model", "model = Model("]),
    "no-setup": (
        "from kvmsim import Model\n\nm = Model('x')\n",
        ["FILE:3:", "has no setup", "@model.setup"],
    ),
    "no-actors": (
        "from kvmsim import Model\nm = Model('x')\n@m.setup\ndef setup(s):\n    return None\n",
        ["FILE:3:", "spawns no actors", "s.actor("],
    ),
    "setup-raises": (
        "from kvmsim import Model\nm = Model('x')\n@m.setup\ndef setup(s):\n"
        "    return {}['missing']\n",
        ["FILE:5", "KeyError"],
    ),
    "not-a-generator": (
        actor_model("def actor(w):\n    w.n += 1\n"),
        ["FILE:7:", "must be a generator function"],
    ),
    "lambda-actor": (actor_model("actor = lambda w: (yield 'x')\n"), ["FILE:7:", "plain `def`"]),
    "yields-a-generator": (
        actor_model(
            """
            def helper(w):
                w.n += 1
                yield "h"
            def actor(w):
                yield helper(w)
                yield "done"
            """
        ),
        ["FILE:11:", "yield from helper(...)"],
    ),
    "list-in-a-field": (
        actor_model('def actor(w):\n    yield "a"\n    w.other = [1]\n    yield "b"\n'),
        ["FILE:10:", "actor a", "other holds a list", "use a tuple"],
    ),
    "set-at-setup": (
        HEAD + "def actor(w):\n    yield 'a'\n" + TAIL.replace("w = W()", "w = W(other={1})"),
        ["FILE:13:", "in the setup", "other holds a set", "use a tuple"],
    ),
    "dict-in-a-local": (
        actor_model('def actor(w):\n    d = {}\n    yield "a"\n    w.n = len(d)\n    yield "b"\n'),
        ["FILE:9:", "local 'd'", "holds a dict", "use a tuple"],
    ),
    "endless-loop-in-a-step": (
        actor_model("def actor(w):\n    while True:\n        if w.n > 0:\n            yield 'x'\n"),
        ["FILE:9:", "never ends", "make every pass through the loop yield"],
    ),
    "invariant-raises": (
        actor_model("def actor(w):\n    w.n += 1\n    yield 'a'\n").replace(
            "return w.n < 100", "return 1 // (w.n - 1)"
        ),
        ["FILE:21", "invariant 'small' raised ZeroDivisionError"],
    ),
}


VARIANT_HEAD = "from kvmsim.variants import Variant\n\np = Variant('p', base='v6.5')\n"

VARIANT_FILES: dict[str, tuple[str, list[str]]] = {
    "syntax-error": (VARIANT_HEAD + "def f(:\n", ["FILE:4:", "syntax"]),
    "raises": (
        VARIANT_HEAD + "raise RuntimeError('boom')\n",
        ["FILE:4:", "cannot load the variant file", "boom"],
    ),
    "defines-nothing": ("x = 1\n", ["FILE", "defines no kvmsim Variant", "Variant(NAME"]),
    "unknown-base": (
        VARIANT_HEAD.replace("v6.5", "v9.9"),
        ["FILE:3:", "its base 'v9.9' is not a variant", "give one of v6.5"],
    ),
    "unknown-override": (
        VARIANT_HEAD + "@p.override\ndef kvm_no_such_function(kvm):\n    yield 'x'\n",
        ["FILE:4:", "'kvm_no_such_function'", "@variant.define"],
    ),
    "endless-loop": (
        VARIANT_HEAD + "@p.override\ndef kvm_unmap_gfn_range(kvm, gfn_range):\n"
        "    while True:\n        if kvm is None:\n            yield 'x'\n",
        ["FILE:6:", "kvm_unmap_gfn_range", "never ends"],
    ),
    "mutable-local": (
        VARIANT_HEAD + "@p.override\ndef kvm_unmap_gfn_range(kvm, gfn_range):\n"
        "    x = [1]\n    yield 'zap'\n    return bool(x)\n",
        ["FILE:7:", "local 'x'", "holds a list"],
    ),
}

OUTPUTS = ("--html", "r.html", "--trace-out", "t.json", "--junit", "j.xml")


def refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    words: list[str],
    one_of: list[str] | None = None,
) -> None:
    """Run argv with every output file asked for (in tmp_path/out) and check the refusal."""
    out = tmp_path / "out"
    out.mkdir()
    files = [str(out / a) if a.endswith((".html", ".json", ".xml")) else a for a in OUTPUTS]
    code, stdout, err = run(capsys, *argv, "--quiet", *files)
    assert code == 2, err
    assert stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kvmsim: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert one_of is None or any(w in lines[0] for w in one_of), (one_of, lines[0])
    assert os.listdir(out) == []


@pytest.mark.parametrize("case", sorted(MODEL_FILES))
def test_a_broken_model_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    source, words = MODEL_FILES[case]
    path = tmp_path / "model.py"
    path.write_bytes(source.encode("utf-8", "surrogateescape"))
    words = [w.replace("FILE", str(path)) for w in words]
    refused(tmp_path, capsys, ["check", str(path)], words)


@pytest.mark.parametrize("case", sorted(VARIANT_FILES))
def test_a_broken_variant_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    source, words = VARIANT_FILES[case]
    path = tmp_path / "patch.py"
    path.write_text(source)
    words = [w.replace("FILE", str(path)) for w in words]
    refused(tmp_path, capsys, ["check", "--variant", str(path), "--scenario", "migrate"], words)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["check", "--mode", "sideways"], ["--mode", "invalid choice"]),
        (["check", "--max-depth", "-1"], ["--max-depth", "at least 0"]),
        (["check", "--max-states", "many"], ["--max-states", "not an integer"]),
        (["check", "--seed", "1.5", "--mode", "random"], ["--seed", "not an integer"]),
        (["check", "--runs", "3"], ["--runs and --seed apply only to --mode random"]),
        (["check", "--variant", "v0.1"], ["unknown variant 'v0.1'"]),
        (["check", "--scenario", "nowhere"], ["unknown scenario 'nowhere'"]),
        (["check", "--property", "INV-NOPE"], ["unknown property 'INV-NOPE'"]),
        (["check", "missing.py"], ["no such file: missing.py"]),
        (["check", "migrate"], ["no such file", "kvmsim check --scenario migrate"]),
        (["demo", "no-such-demo"], ["unknown demo 'no-such-demo'"]),
        (["check", "--scenario", "migrate", "--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_bad_command_line_values_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    refused(tmp_path, capsys, argv, words)


def test_a_missing_model_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.py"
    path.write_text(actor_model("def actor(w):\n    yield 'a'\n"))
    refused(tmp_path, capsys, ["check", f"{path}:nothing"], ["no model named 'nothing'"])


@pytest.mark.parametrize("what", ["kvmsim1:AAAA", "kvmsim1:", "kvmsim1:eNo=", "nonsense"])
def test_a_corrupt_token_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    code, out, err = run(capsys, "replay", what)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("kvmsim: error: "), err


HELPER_LOOP = actor_model(
    """
    def helper(w):
        while w.n >= 0:
            w.n = (w.n + 1) % 5
    def actor(w):
        helper(w)
        yield "never"
    """
)


def test_a_step_stuck_in_a_helper_function_is_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block budget cannot see a loop in a plain function; the watchdog can."""
    monkeypatch.setattr(watchdog, "STEP_SECONDS", 0.3)
    path = tmp_path / "model.py"
    path.write_text(HELPER_LOOP)
    refused(
        tmp_path,
        capsys,
        ["check", str(path)],
        [f"{path}:", "the model's code has run for more than 0.3 s", "never ends", "yield from"],
        one_of=[f"{path}:8:", f"{path}:9:"],  # the loop's test or its body
    )
    assert signal.getsignal(signal.SIGVTALRM) == signal.SIG_DFL  # put back as it was
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)


def test_an_invariant_that_never_returns_is_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchdog, "STEP_SECONDS", 0.3)
    path = tmp_path / "model.py"
    source = actor_model("def actor(w):\n    w.n += 1\n    yield 'a'\n").replace(
        "    return w.n < 100", "    while w.n > 0:\n        pass\n    return True"
    )
    path.write_text(source)
    line = source.splitlines().index("    while w.n > 0:") + 1
    refused(
        tmp_path,
        capsys,
        ["check", str(path)],
        ["the model's code has run for more than 0.3 s", "never ends"],
        one_of=[f"{path}:{line}:", f"{path}:{line + 1}:"],
    )


def test_the_watchdog_lets_a_search_of_many_short_steps_run() -> None:
    # Ticks far apart compared with a step (microseconds), close compared with the search
    # (tenths of a second): no step is seen running at two ticks. (Ticks count CPU time,
    # so a preempted step is not seen running.)
    with watchdog.step_watchdog(0.03):
        result = check(filter_lock(3))
    assert result.exhaustive and result.stats.states == 766
    assert signal.getsignal(signal.SIGVTALRM) == signal.SIG_DFL


def test_the_watchdog_stays_off_when_sigalrm_is_taken() -> None:
    def other(_signum: int, _frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGVTALRM, other)
    try:
        with watchdog.step_watchdog(0.001):
            assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
        assert signal.getsignal(signal.SIGVTALRM) is other
    finally:
        signal.signal(signal.SIGVTALRM, previous)
