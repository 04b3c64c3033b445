"""Long runs on the command line: ``--store``, ``--max-memory``/``--degrade``,
``--checkpoint``/``--checkpoint-every`` on ``check``, and ``kvmsim resume DIR``.

A checkpoint's header names the model (how to rebuild it: the built-in KVM model's variant,
scenario and extra properties, a demo, or FILE.py[:NAME]), its fingerprint (fingerprint.py),
kvmsim's version and the search options, so ``resume`` rebuilds the same model and refuses one
that changed.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from . import __version__
from .cli import UsageError, _seconds, _stdout_console, guarded_check
from .engine import Model, Options, Result
from .engine.checkpoint import FILENAME, CheckpointError, python_version, read, read_header
from .engine.memory import parse_size
from .engine.store import STORES
from .replay import ModelRef, TokenError

# The search options a checkpoint records, and resume reuses.
SEARCH_FIELDS = (
    "mode",
    "max_depth",
    "max_states",
    "stop_at_first",
    "liveness",
    "collect_terminal",
    "costs",
    "simplest",
    "store",
    "max_memory",
    "degrade",
    "symmetry",
    "por",
)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_long_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("long runs (bfs)")
    g.add_argument(
        "--store",
        choices=STORES,
        help="full (default): keep every state; fingerprint: keep a 64-bit fingerprint of "
        "each (about 30 bytes a state; the result notes the chance a collision hid one)",
    )
    g.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="stop with a partial, incomplete result before the process uses more than "
        "SIZE of memory (e.g. 500M, 2G)",
    )
    g.add_argument(
        "--degrade",
        action="store_true",
        help="with --max-memory: at the limit, switch once to the fingerprint store and go on",
    )
    g.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="write the search's progress to DIR at an interval and on Ctrl-C or SIGTERM; "
        "continue it with 'kvmsim resume DIR'",
    )
    g.add_argument(
        "--checkpoint-every",
        type=_seconds,
        metavar="SECONDS",
        help="seconds between two checkpoints (default 60)",
    )


def long_run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Options fields these flags set (checked for combinations that make no sense)."""
    store = getattr(args, "store", None)
    max_memory = getattr(args, "max_memory", None)
    degrade = getattr(args, "degrade", False)
    directory = getattr(args, "checkpoint", None)
    every = getattr(args, "checkpoint_every", None)
    given = [
        flag
        for flag, value in (
            ("--store", store),
            ("--max-memory", max_memory),
            ("--degrade", degrade),
            ("--checkpoint", directory),
        )
        if value
    ]
    if given and getattr(args, "mode", "bfs") != "bfs":
        raise UsageError(f"{given[0]} applies only to --mode bfs")
    if degrade and max_memory is None:
        raise UsageError("--degrade needs --max-memory (the limit at which to switch)")
    if every is not None and directory is None:
        raise UsageError("--checkpoint-every needs --checkpoint DIR")
    out: dict[str, Any] = {"store": store or "full", "max_memory": max_memory, "degrade": degrade}
    if directory is not None:
        out["checkpoint_dir"] = directory
        out["checkpoint_every"] = every if every is not None else 60.0
    return out


def refuse_used_directory(args: argparse.Namespace) -> None:
    """A new check must not overwrite a checkpoint that could still be resumed."""
    directory = getattr(args, "checkpoint", None)
    if directory is None:
        return
    if os.path.exists(os.path.join(directory, FILENAME)):
        raise UsageError(
            f"{directory} already holds a checkpoint: continue it with 'kvmsim resume "
            f"{directory}', or remove it to start again"
        )
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"--checkpoint {directory}: not a directory")


def attach_identity(options: Options, ref: ModelRef | None, model: Model) -> None:
    """Give a checkpointing search the header that lets resume rebuild and verify it."""
    if options.checkpoint_dir is None:
        return
    if ref is None:
        raise UsageError("--checkpoint needs a model kvmsim can rebuild (a file, demo or scenario)")
    from .fingerprint import fingerprint

    options.checkpoint_header = {
        "kvmsim": __version__,
        "model": ref.as_dict(),
        "model_name": model.name,
        "fingerprint": fingerprint(model),
        "options": {f: getattr(options, f) for f in SEARCH_FIELDS},
    }


def report_checkpoint(options: Options, result: Result) -> None:
    """After a search that did not finish, say where its checkpoint is."""
    directory = options.checkpoint_dir
    if directory is None or not (result.interrupted or result.incomplete):
        return
    if os.path.exists(os.path.join(directory, FILENAME)):
        print(
            f"kvmsim: checkpoint written to {directory}; continue with: kvmsim resume {directory}",
            file=sys.stderr,
        )


# -- kvmsim resume ----------------------------------------------------------------------------


def add_resume_parser(sub: Any, epilog: str) -> None:
    rs = sub.add_parser(
        "resume",
        help="continue a search from its checkpoint (check --checkpoint DIR)",
        description="Continue the search saved in DIR by 'kvmsim check --checkpoint DIR' "
        "(stopped by Ctrl-C, SIGTERM or a memory limit, or killed): it ends with the verdict, "
        "counts and counterexamples an uninterrupted run gives. The model is rebuilt from "
        "what the checkpoint names and must be unchanged (same code, variant, scenario and "
        "kvmsim version). Checkpoints keep being written to DIR.",
        epilog=epilog,
    )
    rs.add_argument("directory", metavar="DIR", help="the checkpoint directory")
    rs.add_argument(
        "--checkpoint-every",
        type=_seconds,
        metavar="SECONDS",
        help="seconds between two checkpoints (default 60)",
    )
    rs.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="a new memory limit (default: the one the check had)",
    )
    rs.add_argument("--json", action="store_true", help="print the result as JSON")
    rs.add_argument("--quiet", action="store_true", help="no progress display")
    rs.set_defaults(func=cmd_resume)


def load_checkpoint(directory: str) -> tuple[dict[str, Any], ModelRef, Options]:
    """The checkpoint's header, model reference and options, after checking its versions."""
    try:
        header = read_header(directory)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    where = os.path.join(directory, FILENAME)
    if header.get("kvmsim") != __version__:
        raise UsageError(
            f"{where} was written by kvmsim {header.get('kvmsim')}, this is {__version__}: "
            "start the check again"
        )
    if header.get("python") != python_version():
        raise UsageError(
            f"{where} was written under Python {header.get('python')}, this is "
            f"{python_version()}: start the check again"
        )
    try:
        ref = ModelRef.from_dict(header.get("model"))
        fields = header["options"]
        options = Options(**{f: fields[f] for f in SEARCH_FIELDS})
    except (TokenError, KeyError, TypeError):
        raise UsageError(f"{where} is corrupt (its header is incomplete)") from None
    return header, ref, options


def cmd_resume(args: argparse.Namespace) -> int:
    from .cli import exit_status
    from .cli_replay import json_with_traces, load_subject
    from .report.json import dumps, result_document
    from .report.progress import LiveProgress, wanted
    from .report.text import print_result

    directory: str = args.directory
    header, ref, options = load_checkpoint(directory)
    subject = load_subject(ref)
    if subject.fingerprint != header.get("fingerprint"):
        raise UsageError(
            f"the model {subject.model.name!r} ({ref.describe()}) changed since the checkpoint "
            f"in {directory} was written (fingerprint {header.get('fingerprint')}, now "
            f"{subject.fingerprint}): start the check again"
        )
    try:
        read(directory)  # the whole file, checksum and all, before anything runs
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    model = subject.model
    with LiveProgress(model.name, "bfs", enabled=wanted(args.quiet)) as progress:
        options = replace(
            options,
            progress=progress,
            resume_from=directory,
            checkpoint_dir=directory,
            checkpoint_every=args.checkpoint_every or 60.0,
            checkpoint_header={k: header[k] for k in ("kvmsim", "model", "model_name")}
            | {"fingerprint": subject.fingerprint, "options": header["options"]},
        )
        if args.max_memory is not None:
            options.max_memory = args.max_memory
            options.checkpoint_header["options"] = dict(
                header["options"], max_memory=args.max_memory
            )
        result = guarded_check(model, options)
    if subject.explain is not None:
        for v in result.violations:
            v.description = subject.explain(v.prop) or v.description
    if args.json:
        doc = result_document(result, model, options)
        doc.update(subject.extra)
        print(dumps(json_with_traces(doc, result, subject)))
    else:
        print_result(
            _stdout_console(),
            result,
            model,
            quiet=args.quiet,
            style=subject.style,
            notes=subject.notes,
            lanes=subject.lanes,
            tokens=subject.tokens(result),
        )
    report_checkpoint(options, result)
    return exit_status(result)
