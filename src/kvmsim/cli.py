"""The ``kvmsim`` command: ``demo``, ``check``, ``study``, ``diff``, ``list`` and ``simulate``.

Exit status: 0 the properties hold, 1 a counterexample was found (or, for ``demo --all``, a
model did not match its expected verdict), 2 bad input, an interrupted run that found nothing,
or an internal error. ``study`` exits 0 whenever it ran to completion (its findings include the
violations of buggy variants) and 2 otherwise; ``diff`` exits 1 when a violation appears.
Every error is one line on stderr, ``kvmsim: error: ...``.

Loading a model file runs it: ``kvmsim check FILE.py`` imports FILE.py as Python, so only
check files you would run yourself.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, NoReturn

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .engine import CompileError, Model, ModelError, Options, Result, check
from .report.json import dumps, result_document
from .report.progress import LiveProgress, wanted
from .report.text import PLAIN_WIDTH, plain_console, print_result, short_path

EXIT_HOLDS = 0
EXIT_VIOLATED = 1
EXIT_ERROR = 2

PACKAGE_DIR = Path(__file__).resolve().parent
TRACEBACK_ENV = "KVMSIM_TRACEBACK"  # set to 1 to see the Python traceback of an error

if TYPE_CHECKING:
    from .replay import ModelRef


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


# -- parser -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "count"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


EXIT_EPILOG = (
    "exit status: 0 the properties hold, 1 a counterexample was found, 2 bad input, "
    "an interrupted search that found nothing, or an internal error"
)


def _add_search_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search")
    g.add_argument(
        "--mode",
        choices=("bfs", "dfs", "random", "swarm"),
        default="bfs",
        help="bfs (default): exhaustive, shortest counterexamples, checks must-finish "
        "actors; dfs: exhaustive, depth-first; random: random runs (--runs, --seed); "
        "swarm: independent random runs in --workers processes (--runs, --seed, --time)",
    )
    g.add_argument(
        "--max-depth",
        type=_count(0),
        metavar="N",
        help="do not explore past N steps (random: steps per run, default 1000)",
    )
    g.add_argument("--max-states", type=_count(1), metavar="N", help="stop after N distinct states")
    g.add_argument(
        "--runs",
        type=_count(1),
        metavar="K",
        help="random and swarm modes: number of runs (default 100; swarm: 1000, or no limit "
        "with --time)",
    )
    g.add_argument(
        "--seed", type=_integer, metavar="S", help="random and swarm modes: seed (default 0)"
    )
    g.add_argument(
        "--stop-at-first",
        action="store_true",
        help="stop at the first violation of any property",
    )
    g.add_argument(
        "--symmetry",
        action="store_true",
        help="bfs/dfs: store one state per renaming of the actors the model declares "
        "interchangeable (safety only: off while progress is checked, see --no-liveness)",
    )
    g.add_argument(
        "--por",
        action="store_true",
        help="bfs/dfs: partial-order reduction, expand one actor's step where it commutes "
        "with all the others can still do (safety only; counterexamples may be longer)",
    )
    g.add_argument(
        "--no-liveness",
        action="store_true",
        help="do not check progress of must-finish actors (that check needs the full graph: "
        "without it --symmetry, --por and --store fingerprint apply)",
    )
    from .cli_longrun import add_long_run_options

    add_long_run_options(p)
    par = p.add_argument_group("parallel and distributed search (docs/distributed.md)")
    par.add_argument(
        "--workers",
        type=_count(1),
        default=1,
        metavar="N",
        help="bfs: a hash-partitioned search in N processes, with the same results as one; "
        "swarm: N workers (default 1)",
    )
    par.add_argument(
        "--swarm",
        type=_count(1),
        metavar="N",
        help="bug hunting: the same as --mode swarm --workers N",
    )
    par.add_argument(
        "--time",
        type=_seconds,
        metavar="SECONDS",
        help="swarm: stop starting runs after SECONDS",
    )
    par.add_argument(
        "--ray",
        action="store_true",
        help="run the workers on Ray (pip install 'kvmsim[ray]'); a local Ray instance "
        "unless --ray-address is given",
    )
    par.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="run the workers on the Ray cluster at ADDR (e.g. 10.0.0.1:6379 or auto)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    out.add_argument(
        "--quiet",
        action="store_true",
        help="no progress display; one line per counterexample instead of its timeline",
    )
    from .cli_replay import add_output_options

    add_output_options(out)


def add_builtin_check_options(p: argparse.ArgumentParser) -> None:
    """Options of ``check`` (and ``simulate``) that pick the built-in KVM model."""
    g = p.add_argument_group("KVM model (when no FILE is given)")
    _add_kvm_options(g, scenario_help="the scenario (default: every default scenario in turn)")


def _add_kvm_options(g: argparse._ArgumentGroup, scenario_help: str) -> None:
    g.add_argument(
        "--variant",
        metavar="NAME|FILE.py[:NAME]",
        help="the kernel variant (default v6.5; see 'kvmsim list'), or a Variant object "
        "defined in FILE.py (your own patch; loading the file runs it)",
    )
    g.add_argument(
        "--scenario",
        metavar="NAME",
        help=f"{scenario_help}; see 'kvmsim list'",
    )
    g.add_argument(
        "--property",
        action="append",
        metavar="NAME",
        help="also check this non-default property, e.g. STALL-6.5 (repeatable)",
    )


def builtin_check(args: argparse.Namespace) -> int:
    """``kvmsim check`` without FILE: the KVM model (cli_kvm)."""
    from .cli_kvm import check_builtin

    return check_builtin(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kvmsim",
        description="kvmsim executes, checks and measures models of concurrent kernel code: "
        "every interleaving of the actors' steps is explored and each property checked.",
        epilog=EXIT_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"kvmsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="check a textbook model (peterson, broken-lock, ...), or all of them (--all)",
        description="Check one of kvmsim's textbook models, whose answers are known. With "
        "--all, check every one against its documented expected verdict, print a summary and "
        "write it as study.md and study.json (--out).",
        epilog=EXIT_EPILOG + "; --all: 0 every model matched its expected verdict, 1 some "
        "did not, 2 bad input, interrupted, or an internal error",
    )
    demo.add_argument("name", nargs="?", metavar="NAME", help="the demo to check")
    demo.add_argument("--list", action="store_true", help="list the demos and exit")
    demo.add_argument(
        "--all",
        action="store_true",
        help="check every demo against its expected verdict and write a summary",
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        help="with --all: folder for study.md and study.json (default: kvmsim-demos)",
    )
    _add_search_options(demo)
    from .cli_replay import add_property_selector

    add_property_selector(demo)
    demo.set_defaults(func=cmd_demo)

    chk = sub.add_parser(
        "check",
        help="check the KVM model (--variant, --scenario) or a model in a Python file",
        description="Without FILE: check the KVM model, variant --variant (default v6.5) on "
        "scenario --scenario (default: every default scenario), against every default "
        "property and each --property. With FILE: check the kvmsim Model defined at module "
        "level in FILE.py (name it with :NAME when the file defines several). Warning: loading "
        "a file (FILE, or --variant FILE.py) runs its code with your permissions, as `python "
        "FILE.py` would; a file can be written to do anything when loaded. Never check a file "
        "from a source you do not trust.",
        epilog=EXIT_EPILOG,
    )
    chk.add_argument(
        "target", nargs="?", metavar="FILE.py[:NAME]", help="the model file (and model name)"
    )
    add_builtin_check_options(chk)
    _add_search_options(chk)
    chk.set_defaults(func=cmd_check)

    ls = sub.add_parser(
        "list",
        help="list the KVM model's variants, scenarios and properties",
        description="List the kernel variants, the scenarios and the properties of the KVM "
        "model, each with what it is.",
    )
    ls.add_argument(
        "what",
        nargs="?",
        choices=("variants", "scenarios", "properties"),
        help="list only these",
    )
    ls.add_argument("--json", action="store_true", help="print them as JSON")
    ls.set_defaults(func=cmd_list)

    sim = sub.add_parser(
        "simulate",
        help="run the KVM model as a simulator: random executions and their costs",
        description="Run random executions of the KVM model: at every step one enabled "
        "transition is picked uniformly at random (seeded, so a seed always gives the same "
        "run). Each run is listed step by step, with its cost figures (IPIs, TLB flushes, "
        "VM-Enters, reload attempts and retries, ...) and any property it broke. Run k "
        "uses seed S+k. Liveness is not judged: a run has at most --max-steps steps.",
        epilog="exit status: 0 no run broke a property, 1 some run did, 2 bad input or an "
        "internal error",
    )
    _add_kvm_options(sim.add_argument_group("model"), scenario_help="the scenario (required)")
    g = sim.add_argument_group("simulation")
    g.add_argument("--seed", type=_integer, default=0, metavar="S", help="seed (default 0)")
    g.add_argument(
        "--runs", type=_count(1), default=1, metavar="K", help="number of runs (default 1)"
    )
    g.add_argument(
        "--max-steps",
        type=_count(0),
        default=1000,
        metavar="M",
        help="stop a run after M steps (default 1000)",
    )
    out = sim.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the runs as JSON")
    out.add_argument(
        "--timeline",
        action="store_true",
        help="draw each run as a per-CPU timeline instead of one line per step",
    )
    out.add_argument(
        "--quiet", action="store_true", help="no steps: each run's ending, costs and failures"
    )
    sim.set_defaults(func=cmd_simulate)

    st = sub.add_parser(
        "study",
        help="check every KVM variant on a set of scenarios and answer the reviewers' questions",
        description="Check every kernel variant (history and design alternatives) on a set of "
        "scenarios, in worker processes, and answer four questions from the results: why not "
        "pin the page, why re-request instead of bailing at once, is the reload's own flush "
        "redundant, could the notifier skip its flush for the APIC range. Each verdict is "
        "assembled from the figures it cites; a table gives every variant x scenario "
        "(properties held or broken, exact cost ranges). Written as study.md and study.json "
        "into --out. Default set: every variant on the default scenarios except "
        f"{' and '.join(_study_big())}, which only {' and '.join(_study_big_variants())} also "
        "run; "
        "--quick: every variant on a few scenarios.",
        epilog="exit status: 0 the study ran to completion (violations found in buggy variants "
        "are findings, not failures), 2 bad input, interrupted (the files are written, marked "
        "incomplete), or a check that could not run",
    )
    st.add_argument(
        "--variant",
        action="append",
        metavar="NAME",
        help="study only this variant (repeatable; see 'kvmsim list variants')",
    )
    st.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="check only this scenario, for every variant studied (repeatable)",
    )
    st.add_argument(
        "--quick",
        action="store_true",
        help="a small set: every variant on three small scenarios (seconds)",
    )
    st.add_argument(
        "--workers",
        type=_count(1),
        default=2,
        metavar="N",
        help="worker processes (default 2; 1 runs in this process)",
    )
    st.add_argument(
        "--out",
        default="kvmsim-study",
        metavar="DIR",
        help="folder for study.md and study.json (default: kvmsim-study)",
    )
    st.add_argument("--json", action="store_true", help="print the study as JSON")
    st.add_argument(
        "--junit",
        metavar="FILE",
        help="also write a JUnit XML report for CI test reporters: one test case per "
        "variant x scenario, a failure per violated property",
    )
    st.add_argument("--quiet", action="store_true", help="no progress display")
    st.set_defaults(func=cmd_study)

    df = sub.add_parser(
        "diff",
        help="A/B a patch: a variant against a base, violations and cost figures",
        description="Compare a variant with a base on each scenario: the violations that "
        "appear or disappear (with the shortest counterexample's length), each cost's exact "
        "min and max on both sides, and a sampled comparison from seeded random runs (the "
        "mean per run, and how often a random variant run costs less or more than a random "
        "base run). Default scenarios: those the study checks for both.",
        epilog="exit status: 0 no violation appears, 1 the variant breaks a property the base "
        "holds, 2 bad input, interrupted, or a check that could not run",
    )
    df.add_argument(
        "--base",
        default="v6.5",
        metavar="NAME|FILE.py[:NAME]",
        help="the base variant (default v6.5)",
    )
    df.add_argument(
        "--variant",
        required=True,
        metavar="NAME|FILE.py[:NAME]",
        help="the variant, or a Variant object defined in FILE.py (your patch; loading the "
        "file runs it)",
    )
    df.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="compare on this scenario (repeatable; default: the study's scenarios)",
    )
    g = df.add_argument_group("sampled comparison")
    g.add_argument(
        "--runs",
        type=_count(0),
        default=300,
        metavar="K",
        help="random runs per side and scenario (default 300; 0: exact figures only)",
    )
    g.add_argument("--seed", type=_integer, default=0, metavar="S", help="seed (default 0)")
    g.add_argument(
        "--max-steps",
        type=_count(1),
        default=1000,
        metavar="M",
        help="a random run stops after M steps (default 1000)",
    )
    df.add_argument(
        "--workers",
        type=_count(1),
        default=2,
        metavar="N",
        help="worker processes (default 2; 1 runs in this process)",
    )
    out = df.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the comparison as JSON")
    out.add_argument("--quiet", action="store_true", help="no progress display")
    df.set_defaults(func=cmd_diff)

    rp = sub.add_parser(
        "replay",
        help="print a counterexample again from its replay token or trace file",
        description="Print a counterexample again. TOKEN is the replay token a check printed "
        "after the counterexample (kvmsim1:...): the model it names is rebuilt (the KVM "
        "variant and scenario, a demo, or a model file, which is loaded and so runs), "
        "checked to be built from the same code, and the path replayed. FILE is a trace "
        "written by --trace-out (kvmsim-trace/1), printed as it was recorded.",
        epilog="exit status: 0 the counterexample was printed, 2 a bad or corrupt token or "
        "file, a token for a model built from different code, or an internal error",
    )
    rp.add_argument("what", metavar="TOKEN|FILE", help="a replay token or a trace file")
    rp.add_argument(
        "--step",
        type=_count(0),
        metavar="N",
        help="print the whole state after step N instead (0: the initial state)",
    )
    rp.add_argument("--json", action="store_true", help="print the trace (or state) as JSON")
    rp.set_defaults(func=cmd_replay)

    from .cli_longrun import add_resume_parser

    add_resume_parser(sub, EXIT_EPILOG)
    return parser


def _study_big() -> tuple[str, ...]:
    from .kvm_study import BIG_SCENARIOS

    return BIG_SCENARIOS


def _study_big_variants() -> tuple[str, ...]:
    from .kvm_study import BIG_VARIANTS

    return BIG_VARIANTS


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the kvmsim command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError(
                "no command given: use list, check, simulate, study, diff, demo, replay or resume "
                "(see 'kvmsim --help')"
            )
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except SystemExit as exc:  # --help, --version
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except KeyboardInterrupt:
        print("kvmsim: interrupted: incomplete", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `kvmsim demo --list | head -1`
        _silence_stdout()
        return EXIT_ERROR


def _error(message: str) -> None:
    print(f"kvmsim: error: {one_line(message)}", file=sys.stderr)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _stdout_console() -> Console:
    if sys.stdout.isatty():
        return Console(file=sys.stdout, highlight=False, emoji=False)
    return plain_console(sys.stdout)


# -- demo ---------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from .demos import DEMOS

    if args.all:
        if args.name or args.list:
            raise UsageError("give either a demo NAME, --list or --all")
        return demo_study(args)
    if args.out is not None:
        raise UsageError("--out applies only to --all")
    if args.list:
        if args.name:
            raise UsageError("give either a demo NAME or --list, not both")
        if args.json:
            print(
                dumps(
                    [
                        {"name": m.name, "description": m.description, "expect": m.expect}
                        for m in DEMOS.values()
                    ]
                )
            )
            return EXIT_HOLDS
        console = _stdout_console()
        table = _table(console, ("demo", "expected verdict", "description"))
        for m in DEMOS.values():
            table.add_row(m.name, m.expect, m.description)
        console.print(table)
        return EXIT_HOLDS
    if not args.name:
        raise UsageError(f"give a demo NAME or --list (demos: {', '.join(DEMOS)})")
    model = DEMOS.get(args.name)
    if model is None:
        raise UsageError(f"unknown demo {args.name!r} (demos: {', '.join(DEMOS)})")
    from .replay import ModelRef

    return run_and_report(model, args, ModelRef("demo", args.name))


# -- check --------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    if not args.target:
        return builtin_check(args)
    # With a FILE, --property only picks the counterexample --trace-out writes.
    picks = ("variant", "scenario") if args.trace_out else ("variant", "scenario", "property")
    given = [f"--{o}" for o in picks if getattr(args, o)]
    if given:
        one = len(given) == 1
        raise UsageError(
            f"{' and '.join(given)} {'picks' if one else 'pick'} the built-in KVM model: "
            f"give {'it' if one else 'them'} without a FILE"
        )
    path, name = split_target(args.target)
    if not os.path.exists(path):
        from .scenarios import SCENARIOS

        if args.target in SCENARIOS:
            raise UsageError(
                f"no such file: {args.target} (to check the scenario: "
                f"kvmsim check --scenario {args.target})"
            )
    with _on_sys_path(Path(path).resolve().parent):
        module = load_file(path)
        model = pick_model(module, path, name)
        from .replay import ModelRef

        return run_and_report(model, args, ModelRef("file", path, model=name))


def split_target(target: str) -> tuple[str, str | None]:
    """``FILE.py:NAME`` -> (FILE.py, NAME); a path that exists as given is never split."""
    if os.path.exists(target):
        return target, None
    head, sep, tail = target.rpartition(":")
    if sep and head and tail and "/" not in tail and "\\" not in tail:
        return head, tail
    return target, None


def module_name(resolved: Path) -> str:
    """The name a model file is imported under: the same for the same file in every
    process, so that a state's functions (``module:qualname`` in the state codec) mean the
    same to the workers of a parallel search as to the process that started them."""
    digest = hashlib.blake2b(str(resolved).encode(), digest_size=4).digest()
    stem = re.sub(r"\W", "_", resolved.stem)
    return f"kvmsim_model_{int.from_bytes(digest, 'little')}_{stem}"


def load_file(path: str, what: str = "model file") -> ModuleType:
    """Import a model (or variant) file by path: this runs its code. Errors become one-line
    UsageErrors naming the file and line."""
    file = Path(path)
    if not file.exists():
        raise UsageError(f"no such file: {path}")
    if not file.is_file():
        raise UsageError(f"not a file: {path}")
    resolved = file.resolve()
    name = module_name(resolved)
    loader = importlib.machinery.SourceFileLoader(name, str(resolved))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = path if exc.filename in (None, str(resolved)) else short_path(exc.filename)
        raise UsageError(f"{where}:{exc.lineno}: syntax error: {exc.msg}") from None
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as exc:  # anything the file raises while loading, SystemExit too
        sys.modules.pop(name, None)
        if os.environ.get(TRACEBACK_ENV):
            raise
        where = _location(exc.__traceback__, resolved, path)
        raise UsageError(f"{where}: cannot load the {what}: {type(exc).__name__}: {exc}") from None
    return module


def pick_model(module: ModuleType, path: str, name: str | None) -> Model:
    """The one Model at module level, or the one called name (variable or model name)."""
    found: list[tuple[str, Model]] = []
    for var, obj in vars(module).items():
        if isinstance(obj, Model) and all(obj is not m for _, m in found):
            found.append((var, obj))
    names = ", ".join(var if var == m.name else f"{var} ({m.name!r})" for var, m in found)
    if name is not None:
        for var, m in found:
            if name == var:
                return m
        for _, m in found:
            if name == m.name:
                return m
        if not found:
            raise UsageError(f"{path} defines no kvmsim Model at module level")
        raise UsageError(f"{path} has no model named {name!r} (models: {names})")
    if not found:
        raise UsageError(
            f"{path} defines no kvmsim Model at module level (create one with `model = Model(...)`)"
        )
    if len(found) > 1:
        raise UsageError(
            f"{path} defines {len(found)} models ({names}): choose one with {path}:NAME"
        )
    return found[0][1]


@contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """Let a model file import its neighbours, as `python FILE.py` would."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass


# -- running one model --------------------------------------------------------------------


def options_from(
    args: argparse.Namespace,
    progress: LiveProgress | None = None,
    ref: ModelRef | None = None,
) -> Options:
    """The search options the command line asks for; ref: how workers rebuild the model."""
    from .cli_longrun import long_run_options

    mode, workers = args.mode, args.workers
    if args.swarm is not None:
        if mode not in ("bfs", "swarm") or workers != 1:
            raise UsageError("--swarm N is --mode swarm --workers N: give one or the other")
        mode, workers = "swarm", args.swarm
        args.mode = mode  # the progress display names the mode
    if mode not in ("random", "swarm") and (args.runs is not None or args.seed is not None):
        raise UsageError("--runs and --seed apply only to --mode random and swarm")
    if mode != "swarm" and args.time is not None:
        raise UsageError("--time applies only to --mode swarm")
    if workers > 1 and mode not in ("bfs", "swarm"):
        raise UsageError(f"--workers applies to --mode bfs and swarm, not {mode}")
    ray = args.ray or args.ray_address is not None
    if ray and mode not in ("bfs", "swarm"):
        raise UsageError(f"--ray applies to --mode bfs and swarm, not {mode}")
    if ray and importlib.util.find_spec("ray") is None:
        raise UsageError("--ray needs Ray, which is not installed: pip install 'kvmsim[ray]'")
    if mode == "swarm" and args.max_states is not None:
        raise UsageError("--max-states does not apply to --mode swarm (use --runs or --time)")
    runs = args.runs
    if runs is None:
        runs = 100 if mode == "random" else 1000 if args.time is None else sys.maxsize
    longrun = long_run_options(args)
    single = [
        flag
        for flag, on in (
            ("--symmetry", args.symmetry),
            ("--por", args.por),
            ("--store fingerprint", longrun["store"] != "full"),
            ("--max-memory", longrun["max_memory"] is not None),
            ("--checkpoint", "checkpoint_dir" in longrun),
        )
        if on
    ]
    if single and (workers > 1 or mode == "swarm" or ray):
        raise UsageError(
            f"{single[0]} applies to a search in one process, not with --workers, --swarm or --ray"
        )
    builder = None
    if ref is not None and (workers > 1 or mode == "swarm" or ray):
        from .builders import ModelBuilder

        builder = ModelBuilder.of(ref)
    return Options(
        mode=mode,
        max_depth=args.max_depth,
        max_states=args.max_states,
        runs=runs,
        seed=args.seed if args.seed is not None else 0,
        stop_at_first=args.stop_at_first,
        liveness=not args.no_liveness,
        progress=progress,
        symmetry=args.symmetry,
        por=args.por,
        **longrun,
        workers=workers,
        builder=builder,
        backend="ray" if ray else "local",
        ray_address=args.ray_address,
        time_budget=args.time,
    )


def run_and_report(model: Model, args: argparse.Namespace, ref: ModelRef | None = None) -> int:
    """Check model with the command's search options, print the result, return the status.

    ref: how to rebuild the model, for the counterexamples' replay tokens."""
    from .cli_longrun import attach_identity, refuse_used_directory, report_checkpoint
    from .cli_replay import Subject, check_trace_options, json_with_traces, write_outputs

    options_from(args)  # reject bad combinations before anything runs
    check_trace_options(args)
    refuse_used_directory(args)
    with LiveProgress(model.name, args.mode, enabled=wanted(args.quiet)) as progress:
        options = options_from(args, progress, ref)
        attach_identity(options, ref, model)
        result = guarded_check(model, options)
    report_checkpoint(options, result)
    subject = Subject(ref, model) if ref is not None else None
    if args.json:
        doc = result_document(result, model, options)
        print(dumps(json_with_traces(doc, result, subject) if subject is not None else doc))
    else:
        tokens = subject.tokens(result) if subject is not None else {}
        print_result(_stdout_console(), result, model, quiet=args.quiet, tokens=tokens)
    if subject is not None:
        write_outputs(args, [(subject, result)])
    return exit_status(result)


def exit_status(result: Result) -> int:
    if result.violations:
        return EXIT_VIOLATED
    if result.interrupted:
        print("kvmsim: interrupted: incomplete", file=sys.stderr)
        return EXIT_ERROR
    if result.incomplete:
        print(f"kvmsim: {result.incomplete}: incomplete", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_HOLDS


def guarded_check(model: Model, options: Options) -> Result:
    """check(), with a broken model (or a kvmsim bug) turned into a one-line UsageError.

    A crash inside an actor's step is not an error here: the engine reports it as a
    violation of kind 'error', with its trace. A step stuck in plain Python code is stopped
    by the watchdog (kvmsim.watchdog) and reported as a broken model.
    """
    from .watchdog import step_watchdog

    try:
        with step_watchdog():
            return check(model, options)
    except KeyboardInterrupt:
        raise
    except (CompileError, ModelError) as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        raise UsageError(_about(model, one_line(str(exc)))) from None
    except (Exception, SystemExit) as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        where = _innermost(exc.__traceback__)
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if where is not None and not _in_package(where[0]):
            raise UsageError(
                f"model {model.name!r}: {what} (at {short_path(f'{where[0]}:{where[1]}')})"
            ) from None
        if isinstance(exc, (ValueError, TypeError)):  # the engine's checks of a model's setup
            raise UsageError(_about(model, one_line(str(exc)))) from None
        at = f" at {_package_path(where[0])}:{where[1]}" if where else ""
        raise UsageError(
            f"internal error: {what}{at} (please report it; {TRACEBACK_ENV}=1 shows the traceback)"
        ) from None


def _about(model: Model, message: str) -> str:
    prefix = f"model {model.name!r}"
    return message if prefix in message else f"{prefix}: {message}"


# -- list, simulate (the KVM model: cli_kvm) -----------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from .cli_kvm import cmd_list as run

    return run(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from .cli_kvm import cmd_simulate as run

    return run(args)


# -- replay (cli_replay) ---------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from .cli_replay import cmd_replay as run

    return run(args)


# -- study, diff (the KVM model: cli_study), demo --all --------------------------------------


def cmd_study(args: argparse.Namespace) -> int:
    from .cli_study import cmd_study as run

    return run(args)


def cmd_diff(args: argparse.Namespace) -> int:
    from .cli_study import cmd_diff as run

    return run(args)


def demo_study(args: argparse.Namespace) -> int:
    """``kvmsim demo --all``: every textbook model against its documented verdict."""
    from .study import SUMMARY_COLUMNS, Entry, run_study, study_models, summary_rows, write_study

    if args.trace_out or args.html:
        raise UsageError("--trace-out and --html apply to one demo, not to --all")
    from .cli_replay import check_trace_options

    check_trace_options(args)  # --junit's folder
    args.out = args.out or "kvmsim-demos"
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {args.out}: {exc.strerror or exc}") from None
    current: list[LiveProgress] = []

    def progress(entry: Entry) -> LiveProgress:
        for p in current:
            p.close()
        current[:] = [
            LiveProgress(entry.model.name, entry.options.mode, enabled=wanted(args.quiet))
        ]
        return current[0]

    entries = study_models()
    try:
        study = run_study(entries, progress)
    finally:
        for p in current:
            p.close()
    try:
        md, js = write_study(study, out)
    except OSError as exc:
        raise UsageError(f"cannot write the study to {args.out}: {exc.strerror or exc}") from None
    if args.junit:
        from .cli_replay import write_demo_junit

        write_demo_junit(args.junit, study)
    if args.json:
        print(dumps(study.as_dict()))
    else:
        console = _stdout_console()
        table = _table(console, SUMMARY_COLUMNS)
        for row, r in zip(summary_rows(study), study.rows):
            style = "" if r.matched else "red"
            table.add_row(*row, style=style)
        console.print(table)
        if study.all_matched:
            console.print(Text("every model matched its expected verdict", style="green"))
        elif not study.interrupted:
            missed = ", ".join(r.model.name for r in study.rows if not r.matched)
            console.print(Text(f"did not match the expected verdict: {missed}", style="red"))
        console.print(Text(f"wrote {md} and {js}", style="dim"))
    if study.interrupted:
        print("kvmsim: interrupted: incomplete", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_HOLDS if study.all_matched else EXIT_VIOLATED


# -- helpers ------------------------------------------------------------------------------


NUMERIC_COLUMNS = ("states", "transitions", "seconds")


def _table(console: Console, columns: Sequence[str]) -> Table:
    plain = console.width >= PLAIN_WIDTH
    table = Table(box=box.ASCII if plain else box.ROUNDED, header_style="bold")
    for col in columns:
        table.add_column(
            col, overflow="fold", justify="right" if col in NUMERIC_COLUMNS else "left"
        )
    return table


def one_line(message: str) -> str:
    """A message on one line; a traceback excerpt in it becomes ``(at file:line)``."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else message
    for line in lines[1:]:
        m = re.match(r'File "(.+)", line (\d+)', line)
        if m:
            return f"{lines[0]} (at {short_path(f'{m.group(1)}:{m.group(2)}')})"
    return " ".join(lines)


def _innermost(tb: TracebackType | None) -> tuple[str, int] | None:
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return None
    return last.tb_frame.f_code.co_filename, last.tb_lineno


def _location(tb: TracebackType | None, file: Path, shown: str) -> str:
    """file:line of the innermost frame in file (as the user named it), else the innermost."""
    found: str | None = None
    innermost: tuple[str, int] | None = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == str(file):
            found = f"{shown}:{tb.tb_lineno}"
        innermost = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if found is not None:
        return found
    if innermost is not None:
        return short_path(f"{innermost[0]}:{innermost[1]}")
    return shown


def _in_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def _package_path(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(PACKAGE_DIR.parent))
    except (OSError, ValueError):
        return filename
