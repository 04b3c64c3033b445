"""The KVM model on the command line: ``list``, ``check --variant/--scenario``, ``simulate``.

``cli.py`` owns the parser, the errors and the exit statuses; this module picks the variant,
scenarios and properties the user named, builds the models and reports on them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from rich.text import Text

from . import properties
from .cli import (
    EXIT_ERROR,
    EXIT_HOLDS,
    EXIT_VIOLATED,
    UsageError,
    _on_sys_path,
    _stdout_console,
    _table,
    guarded_check,
    load_file,
    options_from,
    split_target,
)
from .cli_longrun import attach_identity, refuse_used_directory, report_checkpoint
from .cli_replay import Subject, check_trace_options, json_with_traces, write_outputs
from .engine import CompileError, Model, ModelError, Options, Result
from .machine import build_model
from .replay import ModelRef
from .report.json import dumps, result_document
from .report.progress import LiveProgress, wanted
from .report.runs import print_simulation
from .report.text import print_result, verdict_phrase
from .report.values import CompactStyle
from .scenarios import SCENARIOS, Scenario, default_scenarios
from .simulate import Simulation, simulate
from .variants import Variant, all_variants, get_variant

DEFAULT_VARIANT = "v6.5"
SIMULATION_FORMAT = "kvmsim-simulation/1"

# Addresses, gfns and hvas (0x100 and up) in hex; refcounts, pfns and counters in decimal.
KVM_STYLE = CompactStyle(hex_from=0x100, diff_from=12)


# -- naming things ------------------------------------------------------------------------


def resolve_variant(spec: str | None) -> Variant:
    """A built-in variant by name, or FILE.py[:NAME]: a Variant object defined in a file."""
    spec = spec or DEFAULT_VARIANT
    path, name = split_target(spec)
    if not (path.endswith(".py") or os.sep in path or "/" in path or os.path.exists(path)):
        try:
            return get_variant(spec)
        except KeyError as exc:
            raise UsageError(
                f"{exc.args[0]}; or give a patch as --variant FILE.py[:NAME]"
            ) from None
    with _on_sys_path(Path(path).resolve().parent):
        module = load_file(path, what="variant file")
    return pick_variant(module, path, name)


def pick_variant(module: Any, path: str, name: str | None) -> Variant:
    """The Variant a loaded file defines (the one called name), checked to link."""
    variant = _pick_variant(module, path, name)
    problem = variant.problem()
    if problem is not None:
        raise UsageError(problem)
    return variant


def _pick_variant(module: Any, path: str, name: str | None) -> Variant:
    found: list[tuple[str, Variant]] = []
    for var, obj in vars(module).items():
        if isinstance(obj, Variant) and all(obj is not v for _, v in found):
            found.append((var, obj))
    names = ", ".join(var if var == v.name else f"{var} ({v.name!r})" for var, v in found)
    if not found:
        raise UsageError(
            f"{path} defines no kvmsim Variant at module level "
            "(create one with `patch = Variant(NAME, base='v6.5')`)"
        )
    if name is not None:
        for var, v in found:
            if name in (var, v.name):
                return v
        raise UsageError(f"{path} has no variant named {name!r} (variants: {names})")
    if len(found) > 1:
        raise UsageError(
            f"{path} defines {len(found)} variants ({names}): choose one with {path}:NAME"
        )
    return found[0][1]


def resolve_scenarios(name: str | None) -> list[Scenario]:
    """The named scenario, or every default one."""
    if name is None:
        return default_scenarios()
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return [SCENARIOS[name]]


def resolve_properties(names: list[str] | None) -> tuple[str, ...]:
    known = [p.name for p in properties.catalogue()]
    for name in names or ():
        if name not in known:
            raise UsageError(f"unknown property {name!r} (known: {', '.join(known)})")
    return tuple(dict.fromkeys(names or ()))


def checked_properties(extra: tuple[str, ...], scenario: Scenario) -> list[str]:
    """The properties a check judges: the default ones and those asked for."""
    wanted_ = set(extra) | set(scenario.properties)
    return [
        p.name
        for p in properties.catalogue()
        if p.kind != "sometimes" and (p.default or p.name in wanted_)
    ]


def lanes_of(scenario: Scenario) -> list[str]:
    """Timeline columns: the CPUs in order, then the host threads."""
    cpus = [f"CPU{i}" for i in range(len(scenario.vcpus))]
    return cpus + [f"host{j}" for j in range(len(scenario.host))]


def build(variant: Variant, scenario: Scenario, extra: tuple[str, ...]) -> Model:
    """build_model, with a variant that does not link (or a bad scenario) as a UsageError."""
    try:
        return build_model(variant, scenario, extra)
    except (KeyError, ValueError, CompileError, ModelError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise UsageError(
            f"variant {variant.name!r}, scenario {scenario.name!r}: {message}"
        ) from None


def property_sentence(prop: str) -> str:
    """What a violated property means, from the catalogue. A deadlock or a starved actor
    breaks LIVE-RETRY, which the sentence names."""
    sentence = properties.describe(prop)
    if sentence and all(p.name != prop for p in properties.catalogue()):
        return f"LIVE-RETRY: {sentence}"
    return sentence


def explain(result: Result) -> Result:
    """Give every violation the catalogue's sentence about its property (event properties,
    deadlock and progress violations carry none of their own)."""
    for v in result.violations:
        v.description = property_sentence(v.prop) or v.description
    return result


# -- kvmsim list --------------------------------------------------------------------------


def first_sentence(text: str) -> str:
    """The first sentence of a description (a table shows one line per entry)."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(text.split()), maxsplit=1)
    return parts[0]


def catalogue_document() -> dict[str, list[dict[str, Any]]]:
    return {
        "variants": [
            {
                "name": v.name,
                "description": v.description,
                "base": v.base,
                "changed": sorted(v.overrides),  # what it changes on its base
                "changed_from_kernel": v.changed(),  # with its bases' changes
            }
            for v in all_variants()
        ],
        "scenarios": [
            {
                "name": s.name,
                "description": s.description,
                "default": s.default,
                "vcpus": [list(program) for program in s.vcpus],
                "host": [[f"{op} {target}" for op, target in thread] for thread in s.host],
                "properties": list(s.properties),
            }
            for s in SCENARIOS.values()
        ],
        "properties": [
            {"name": p.name, "description": p.description, "kind": p.kind, "default": p.default}
            for p in properties.catalogue()
        ],
    }


def cmd_list(args: argparse.Namespace) -> int:
    doc = catalogue_document()
    what = [args.what] if args.what else list(doc)
    if args.json:
        print(dumps({k: doc[k] for k in what}))
        return EXIT_HOLDS
    console = _stdout_console()
    first = True
    if "variants" in what:
        first = _heading(console, "variants", first)
        table = _table(console, ("variant", "base", "description", "changes on its base"))
        for v in doc["variants"]:
            table.add_row(v["name"], v["base"] or "", v["description"], ", ".join(v["changed"]))
        console.print(table)
    if "scenarios" in what:
        first = _heading(console, "scenarios", first)
        table = _table(console, ("scenario", "default", "vCPUs", "description"))
        for s in doc["scenarios"]:
            table.add_row(
                s["name"], "yes" if s["default"] else "no", str(len(s["vcpus"])), s["description"]
            )
        console.print(table)
    if "properties" in what:
        first = _heading(console, "properties", first)
        table = _table(console, ("property", "kind", "default", "description"))
        for p in doc["properties"]:
            table.add_row(
                p["name"],
                p["kind"],
                "yes" if p["default"] else "no",
                first_sentence(p["description"]),
            )
        console.print(table)
        console.print(
            Text(
                "kvmsim check checks the default properties; add others with --property NAME "
                "(sometimes-properties are always reported, never a violation)",
                style="dim",
            )
        )
    return EXIT_HOLDS


def _heading(console: Any, title: str, first: bool) -> bool:
    if not first:
        console.print()
    console.print(Text(title, style="bold"))
    return False


# -- kvmsim check --variant V --scenario S -------------------------------------------------


def kvm_subject(
    spec: str, variant: Variant, scenario: Scenario, model: Model, extra: tuple[str, ...]
) -> Subject:
    """How a KVM model is rebuilt (variant as the user named it) and drawn."""
    checked = ", ".join(checked_properties(extra, scenario))
    return Subject(
        ModelRef("kvm", spec, scenario.name, extra=extra),
        model,
        style=KVM_STYLE,
        lanes=lanes_of(scenario),
        notes=[f"properties: {checked}"],
        explain=property_sentence,
        extra={"variant": variant.name, "scenario": scenario.name},
    )


def subject_for(ref: ModelRef) -> Subject:
    """Rebuild the KVM model a replay token names."""
    variant = resolve_variant(ref.name)
    if ref.scenario not in SCENARIOS:
        raise UsageError(
            f"the token names scenario {ref.scenario!r}, which this kvmsim does not have"
        )
    scenario = SCENARIOS[ref.scenario]
    extra = resolve_properties(list(ref.extra))
    return kvm_subject(ref.name, variant, scenario, build(variant, scenario, extra), extra)


def check_builtin(args: argparse.Namespace) -> int:
    """Check the KVM model: one variant, one scenario or every default one."""
    options_from(args)  # reject bad option combinations before anything is built
    check_trace_options(args)
    variant = resolve_variant(args.variant)
    scenarios = resolve_scenarios(args.scenario)
    extra = resolve_properties(args.property)
    if args.checkpoint is not None and len(scenarios) > 1:
        raise UsageError("--checkpoint needs one model: name the scenario with --scenario")
    refuse_used_directory(args)
    models = [(s, build(variant, s, extra)) for s in scenarios]
    console = _stdout_console()
    results: list[tuple[Scenario, Model, Options, Result]] = []
    subjects: list[Subject] = []
    for scenario, model in models:
        ref = ModelRef("kvm", args.variant or DEFAULT_VARIANT, scenario.name, extra=extra)
        with LiveProgress(model.name, args.mode, enabled=wanted(args.quiet)) as progress:
            options = options_from(args, progress, ref)
            attach_identity(options, ref, model)
            result = explain(guarded_check(model, options))
        report_checkpoint(options, result)
        results.append((scenario, model, options, result))
        subject = kvm_subject(args.variant or DEFAULT_VARIANT, variant, scenario, model, extra)
        subjects.append(subject)
        if not args.json:  # each scenario's report as soon as it is checked
            if len(results) > 1:
                console.print()
            print_result(
                console,
                result,
                model,
                quiet=args.quiet,
                style=KVM_STYLE,
                notes=subject.notes,
                lanes=lanes_of(scenario),
                tokens=subject.tokens(result),
            )
            console.file.flush()
        if result.interrupted or result.incomplete:
            break
    if args.json:
        docs = [
            json_with_traces(
                check_document(variant, scenario, model, options, result, extra), result, subject
            )
            for (scenario, model, options, result), subject in zip(results, subjects)
        ]
        print(dumps(docs[0] if args.scenario is not None else docs))
    elif len(scenarios) > 1:
        _print_summary(console, variant, results, len(scenarios))
    write_outputs(args, [(subject, r[3]) for subject, r in zip(subjects, results)])
    violated = any(r.violations for *_, r in results)
    if violated:
        return EXIT_VIOLATED
    if any(r.interrupted for *_, r in results):
        print("kvmsim: interrupted: incomplete", file=sys.stderr)
        return EXIT_ERROR
    for *_, r in results:
        if r.incomplete:
            print(f"kvmsim: {r.incomplete}: incomplete", file=sys.stderr)
            return EXIT_ERROR
    return EXIT_HOLDS


def check_document(
    variant: Variant,
    scenario: Scenario,
    model: Model,
    options: Options,
    result: Result,
    extra: tuple[str, ...],
) -> dict[str, Any]:
    doc = result_document(result, model, options)
    doc["variant"] = variant.name
    doc["base"] = variant.base
    doc["scenario"] = scenario.name
    doc["properties"] = checked_properties(extra, scenario)
    return doc


def _print_summary(
    console: Any,
    variant: Variant,
    results: list[tuple[Scenario, Model, Options, Result]],
    planned: int,
) -> None:
    console.print()
    table = _table(console, ("scenario", "verdict", "violated", "states", "transitions", "seconds"))
    for scenario, _model, _options, result in results:
        table.add_row(
            scenario.name,
            verdict_phrase(result) if not result.violations else f"violated ({result.coverage})",
            ", ".join(result.violated()),
            f"{result.stats.states:,}",
            f"{result.stats.transitions:,}",
            f"{result.stats.seconds:.2f}",
            style="red" if result.violations else "",
        )
    console.print(table)
    bad = [s.name for s, _m, _o, r in results if r.violations]
    if bad:
        console.print(
            Text(f"variant {variant.name}: violated in {', '.join(bad)}", style="bold red")
        )
    elif len(results) < planned:
        console.print(
            Text(f"variant {variant.name}: {len(results)} of {planned} scenarios checked")
        )
    else:
        console.print(
            Text(
                f"variant {variant.name}: every property holds in every scenario checked "
                f"({', '.join(sorted({r.coverage for *_, r in results}))})",
                style="bold green",
            )
        )


# -- kvmsim simulate -----------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.scenario is None:
        raise UsageError(f"simulate needs --scenario NAME (scenarios: {', '.join(SCENARIOS)})")
    variant = resolve_variant(args.variant)
    (scenario,) = resolve_scenarios(args.scenario)
    extra = resolve_properties(args.property)
    model = build(variant, scenario, extra)
    sim = guarded_simulate(model, args)
    if args.json:
        doc: dict[str, Any] = {"format": SIMULATION_FORMAT}
        doc.update(sim.as_dict())
        doc["variant"] = variant.name
        doc["scenario"] = scenario.name
        doc["properties"] = checked_properties(extra, scenario)
        print(dumps(doc))
    else:
        title = f"{model.name}: {model.description}"
        print_simulation(
            _stdout_console(),
            sim,
            title=title,
            style=KVM_STYLE,
            draw_timeline=args.timeline,
            lanes=lanes_of(scenario),
            quiet=args.quiet,
        )
    return EXIT_VIOLATED if sim.broken else EXIT_HOLDS


def guarded_simulate(model: Model, args: argparse.Namespace) -> Simulation:
    """simulate(), with a model that breaks the engine's rules as a one-line UsageError."""
    try:
        return simulate(
            model,
            seed=args.seed,
            runs=args.runs,
            max_steps=args.max_steps,
            describe=property_sentence,
        )
    except (CompileError, ModelError) as exc:
        raise UsageError(f"model {model.name!r}: {exc}") from None
