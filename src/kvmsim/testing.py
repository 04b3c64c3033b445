"""kvmsim in other people's test suites: what the pytest plugin's ``kvmsim`` fixture returns.

>>> def test_my_patch(kvmsim):
...     kvmsim.check("patch.py:fix", scenario="two-vcpus-migrate").holds()
...     kvmsim.check("patch.py:broken", scenario="migrate").violates("INV-APIC")

``check`` takes what ``kvmsim check`` takes: a model file (``FILE.py[:NAME]``, a ``Model``),
or a KVM variant (a built-in name, or ``FILE.py[:NAME]`` defining a ``Variant``) checked on
``scenario`` (default: every default scenario). Relative paths are relative to the folder of
the test file. ``holds()`` and ``violates()`` raise ``CheckFailed`` (an AssertionError) whose
message is the report ``kvmsim check`` prints, counterexample timelines included. Loading a
file runs its code, as importing it would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cli import UsageError, _on_sys_path, guarded_check, load_file, pick_model, split_target
from .cli_replay import Subject, report_text
from .engine import Model, Options, Result
from .replay import ModelRef


class CheckFailed(AssertionError):
    """The check did not give the verdict the test asked for; the message is its report."""


class BadInput(Exception):
    """The model, variant, scenario or property named cannot be checked (the one-line error
    ``kvmsim check`` would print)."""


@dataclass
class Checked:
    """The outcome of ``Kvmsim.check``: one result per model checked (per scenario)."""

    checks: list[tuple[Subject, Result]]

    @property
    def results(self) -> list[Result]:
        return [r for _, r in self.checks]

    @property
    def violated(self) -> list[str]:
        """Every property violated, in order, once each."""
        return list(dict.fromkeys(p for r in self.results for p in r.violated()))

    @property
    def states(self) -> int:
        return sum(r.stats.states for r in self.results)

    @property
    def report(self) -> str:
        """What ``kvmsim check`` prints: each check's verdict, statistics and timelines."""
        return "\n".join(report_text(s, r) for s, r in self.checks)

    def holds(self) -> Checked:
        """Assert every property holds (and the search finished)."""
        __tracebackhide__ = True
        if self.violated:
            raise CheckFailed(f"violated: {', '.join(self.violated)}\n\n{self.report}")
        if any(r.interrupted for r in self.results):
            raise CheckFailed(f"the search did not finish\n\n{self.report}")
        return self

    def violates(self, *props: str) -> Checked:
        """Assert each named property is violated (with no names: that some property is)."""
        __tracebackhide__ = True
        missing = [p for p in props if p not in self.violated]
        if (props and missing) or not self.violated:
            wanted = ", ".join(missing) if props else "some property"
            got = (
                f"violated: {', '.join(self.violated)}" if self.violated else "every property holds"
            )
            raise CheckFailed(f"expected a violation of {wanted}, but {got}\n\n{self.report}")
        return self


class Kvmsim:
    """Checks models and variants from a test; paths are relative to base."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def __repr__(self) -> str:
        return f"<kvmsim fixture: paths relative to {self.base}>"

    def check(
        self,
        target: str | Model,
        scenario: str | None = None,
        *,
        properties: Sequence[str] = (),
        mode: str = "bfs",
        max_depth: int | None = None,
        max_states: int | None = None,
    ) -> Checked:
        """Check a model (file or object), or a KVM variant on scenario."""
        __tracebackhide__ = True
        options = Options(mode=mode, max_depth=max_depth, max_states=max_states)
        try:
            if isinstance(target, Model):
                if properties:
                    raise UsageError(
                        "properties= picks the KVM model's properties: not for a Model"
                    )
                return self._model(target, scenario, options, None)
            return self._target(target, scenario, tuple(properties), options)
        except UsageError as exc:
            raise BadInput(str(exc)) from None

    def _target(
        self, target: str, scenario: str | None, props: tuple[str, ...], options: Options
    ) -> Checked:
        path, name = split_target(str(self.base / target))
        if not path.endswith(".py") and "/" not in target and "\\" not in target:
            return self._variant(target, None, scenario, props, options)  # a built-in name
        if not Path(path).is_file():
            raise UsageError(f"no such file: {path}")
        with _on_sys_path(Path(path).parent):
            module = load_file(path)
            if name is not None and _has_model(module, name) or name is None and _models(module):
                model = pick_model(module, path, name)
                if props:
                    raise UsageError(
                        "properties= picks the KVM model's properties: not for a Model"
                    )
                return self._model(model, scenario, options, ModelRef("file", path, model=name))
            from .cli_kvm import pick_variant

            spec = f"{path}:{name}" if name else path
            return self._variant(spec, pick_variant(module, path, name), scenario, props, options)

    def _model(
        self, model: Model, scenario: str | None, options: Options, ref: ModelRef | None
    ) -> Checked:
        if scenario is not None:
            raise UsageError(
                f"scenario= picks a scenario of the KVM model: {model.name!r} is a Model"
            )
        # A Model object given directly cannot be rebuilt from a token: no replay line.
        subject = Subject(ref, model) if ref is not None else _Unnamed(ModelRef("demo", ""), model)
        return Checked([(subject, guarded_check(model, options))])

    def _variant(
        self,
        spec: str,
        variant: object,
        scenario: str | None,
        props: tuple[str, ...],
        options: Options,
    ) -> Checked:
        from .cli_kvm import (
            build,
            explain,
            kvm_subject,
            resolve_properties,
            resolve_scenarios,
            resolve_variant,
        )
        from .variants import Variant

        v = variant if isinstance(variant, Variant) else resolve_variant(spec)
        extra = resolve_properties(list(props))
        checks = []
        for sc in resolve_scenarios(scenario):
            model = build(v, sc, extra)
            result = explain(guarded_check(model, options))
            checks.append((kvm_subject(spec, v, sc, model, extra), result))
        return Checked(checks)


class _Unnamed(Subject):
    """A model given as an object: reported without replay tokens."""

    def tokens(self, result: Result) -> dict[str, str]:
        return {}


def _models(module: object) -> list[Model]:
    return [m for m in vars(module).values() if isinstance(m, Model)]


def _has_model(module: object, name: str) -> bool:
    return any(
        isinstance(obj, Model) and name in (var, obj.name) for var, obj in vars(module).items()
    )
