"""Protocol variants: kernel versions and proposals, each a small patch on a base.

A variant replaces named kernel functions (or module-level values such as the notifier op
``kvm_mmu_notifier_invalidate_range``) the way a C patch replaces a function body. Building a
variant re-links the modelled kernel: every kernel function is re-created over a copy of its
module's globals in which each overridden name points at the patched version, so callers
anywhere in the kernel reach the patch, exactly as they would after recompiling.

>>> from kvmsim.variants import Variant
>>> patch = Variant("my-fix", base="v6.5", description="...")
>>> @patch.override
... def kvm_unmap_gfn_range(kvm, gfn_range):
...     ...
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any

import kvmsim.kernel as _kernel_pkg


@dataclass(eq=False)
class Variant:
    """A kernel version or a proposal: a base plus overridden kernel names."""

    name: str
    base: str | None = None
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    defines: set[str] = field(default_factory=set)
    _namespace: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _ORIGINS[self] = _caller_location()

    @property
    def origin(self) -> str:
        """file:line of the ``Variant(...)`` that made it."""
        return _ORIGINS.get(self, "<unknown>")

    def problem(self) -> str | None:
        """What keeps the variant from linking (an unknown base, an override of a name the
        kernel model lacks), as file:line and a sentence saying what to change; None if it
        links."""
        if self.base is not None:
            try:
                get_variant(self.base)
            except KeyError:
                known = ", ".join(v.name for v in all_variants())
                return (
                    f"{self.origin}: variant {self.name!r}: its base {self.base!r} is not a "
                    f"variant; give one of {known}"
                )
        try:
            self.namespace()
        except KeyError as exc:
            name = next((n for n in self.overrides if repr(n) in str(exc.args[0])), "")
            code = getattr(self.overrides.get(name), "__code__", None)
            where = f"{code.co_filename}:{code.co_firstlineno}" if code else self.origin
            return (
                f"{where}: variant {self.name!r}: {exc.args[0]}; override a kernel function "
                "by its exact name, or add a new helper with @variant.define"
            )
        return None

    def override(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: this function replaces the kernel function of the same name."""
        self.overrides[func.__name__] = func
        self._namespace = None
        return func

    def define(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: a new helper the patch adds (later variants may override it)."""
        self.defines.add(func.__name__)
        return self.override(func)

    def defined_names(self) -> set[str]:
        names = set(self.defines)
        if self.base is not None:
            names |= get_variant(self.base).defined_names()
        return names

    def set(self, name: str, value: Any) -> None:
        """Replace a kernel module-level value (an ops-table entry, a constant)."""
        self.overrides[name] = value
        self._namespace = None

    def effective_overrides(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        if self.base is not None:
            merged.update(get_variant(self.base).effective_overrides())
        merged.update(self.overrides)
        return merged

    def namespace(self) -> dict[str, Any]:
        """Every kernel name, linked for this variant (built once)."""
        if self._namespace is None:
            self._namespace = link_kernel(self.effective_overrides(), self.defined_names())
        return self._namespace

    def changed(self) -> list[str]:
        return sorted(self.effective_overrides())


_ORIGINS: weakref.WeakKeyDictionary[Variant, str] = weakref.WeakKeyDictionary()


def _caller_location() -> str:
    """file:line of the code outside this module (and dataclass machinery) that called us."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in (__file__, "<string>"):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def kernel_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(_kernel_pkg.__path__):
        mods.append(importlib.import_module(f"{_kernel_pkg.__name__}.{info.name}"))
    return mods


def _own_functions(mod: ModuleType) -> dict[str, FunctionType]:
    return {
        name: obj
        for name, obj in vars(mod).items()
        if isinstance(obj, FunctionType) and obj.__module__ == mod.__name__
    }


def _rebind(func: FunctionType, globals_: dict[str, Any]) -> FunctionType:
    new = FunctionType(func.__code__, globals_, func.__name__, func.__defaults__, func.__closure__)
    new.__qualname__ = func.__qualname__
    new.__doc__ = func.__doc__
    new.__kwdefaults__ = func.__kwdefaults__
    new.__module__ = func.__module__
    return new


def link_kernel(overrides: dict[str, Any], new_names: set[str] | None = None) -> dict[str, Any]:
    """Build the kernel namespace with overrides applied; no overrides means no copies."""
    mods = kernel_modules()
    table: dict[str, Any] = {}
    for mod in mods:
        for name, obj in vars(mod).items():
            if not name.startswith("__") or name.startswith("__kvm"):
                table.setdefault(name, obj)
        table.update(_own_functions(mod))
    if not overrides:
        return table
    unknown = [n for n in overrides if n not in table and n not in (new_names or set())]
    if unknown:
        raise KeyError(
            f"the variant overrides {unknown[0]!r}, which the kernel model does not have"
        )
    # One globals copy per module (kernel modules and the modules the patches come from).
    copies: dict[int, dict[str, Any]] = {}

    def globals_for(func: FunctionType) -> dict[str, Any]:
        key = id(func.__globals__)
        if key not in copies:
            copies[key] = dict(func.__globals__)
        return copies[key]

    linked: dict[str, Any] = {}
    for mod in mods:
        for name, func in _own_functions(mod).items():
            linked[name] = _rebind(func, globals_for(func))
    for name, value in overrides.items():
        if isinstance(value, FunctionType):
            value = _rebind(value, globals_for(value))
        linked[name] = value
    for name, value in table.items():
        linked.setdefault(name, value)
    for g in copies.values():
        for name in g:
            if name in linked and (name in table or name in overrides):
                g[name] = linked[name]
    return linked


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in _REGISTRY:
        raise ValueError(f"two variants are named {variant.name!r}")
    _REGISTRY[variant.name] = variant
    return variant


_BUILTIN = ("v6_5", "v6_4", "v6_6", "history", "pinned", "proposals")


def _load_builtin() -> None:
    """Import the built-in variant modules (each registers itself), in a stable order."""
    for name in _BUILTIN:
        importlib.import_module(f"{__name__}.{name}")


def get_variant(name: str) -> Variant:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise KeyError(f"unknown variant {name!r} (known: {known})") from None


def all_variants() -> list[Variant]:
    _load_builtin()
    return list(_REGISTRY.values())
