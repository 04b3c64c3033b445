"""A model's fingerprint: a short hash of the code and data that decide how it behaves.

A replay token carries the fingerprint of the model it was made from, so that replaying it
on a model built from different code (another kernel variant, an edited patch or model file,
a newer kvmsim whose kernel model changed) is refused instead of showing a trace that means
something else.

What is hashed:

* the source text of every function the model can run: the setup, the actors, the property
  checks and the cost function, and every function they reach by name (a global of their
  module, an attribute of a module they import, a value in a closure, a default argument,
  an entry of a dict or tuple they hold, such as a variant's linked kernel namespace); the
  class of a shared object a function names, with its declared fields and their defaults,
  and its methods; every constant (int, string, tuple...) a function reads by name;
* the actors (name, lane, flags, their arguments) and every variable's initial value, which
  covers the scenario's data;
* the properties' names and kinds, and the model's name.

Functions of the standard library and of installed packages count by name only, so the
fingerprint does not depend on the Python version. Source is hashed as text: editing a
comment inside a function changes the fingerprint; moving the function in its file does not.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import marshal
import re
import sys
import sysconfig
import types
from collections.abc import Iterator
from typing import Any

from .engine import Model, Struct, System

LENGTH = 16  # hex digits kept (64 bits)

_SKIP_DIRS = tuple(
    p
    for p in {sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib")}
    | {sysconfig.get_paths().get("platlib", "")}
    if p
)
_source_cache: dict[int, tuple[types.CodeType, bytes]] = {}


def fingerprint(model: Model, system: System | None = None) -> str:
    """The model's fingerprint (16 hex digits). system: the model's System, if built."""
    sys_ = system if system is not None else System(model)
    w = _Walker(sys_)
    top: list[bytes] = [w.value(("model", model.name, model.deadlock))]
    for prop in model.properties:
        top.append(w.value(("property", prop.name, prop.kind, prop.required, prop.check)))
    top.append(w.value(("setup", model._setup, model.state_cost)))
    for spec in sys_.actors:
        top.append(
            w.value(
                (
                    "actor",
                    spec.name,
                    spec.lane,
                    spec.must_finish,
                    spec.daemon,
                    spec.func,
                    spec.args,
                    spec.kwargs,
                )
            )
        )
    for frames in sys_.initial[1]:
        for func, pc, values in frames or ():
            top.append(w.value(("frame", func, pc, tuple(_plain(v) for v in values))))
    for var, value in sys_.world.describe(sys_.initial[0]).items():
        top.append(w.value(("var", var, value)))
    w.finish()
    h = hashlib.sha256()
    for part in top:
        h.update(part)
    for part in sorted(w.bodies):  # independent of the order things were reached in
        h.update(part)
    return h.hexdigest()[:LENGTH]


def _plain(value: Any) -> Any:
    """A frame local: the engine's 'unset' marker is written as None."""
    return None if type(value).__name__ == "_Unset" else value


def _module_name(name: str) -> str:
    """A module's name without the counter kvmsim gives the model files it loads (which
    depends on how many were loaded before in the process)."""
    return re.sub(r"^kvmsim_model_\d+_", "kvmsim_model_", name)


def _outside(filename: str) -> bool:
    """Whether code comes from the standard library or an installed package."""
    return not filename or filename.startswith("<") or filename.startswith(_SKIP_DIRS)


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
    return h.digest()


def _source(code: types.CodeType, func: Any) -> bytes:
    """The function's source text, else its bytecode without line numbers (cached)."""
    hit = _source_cache.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    try:
        text = inspect.getsource(func).encode()
    except (OSError, TypeError):
        text = marshal.dumps(code.replace(co_firstlineno=1, co_linetable=b""))
    _source_cache[id(code)] = (code, text)
    return text


def _names(code: types.CodeType) -> Iterator[str]:
    """Every global or attribute name the code (and the code nested in it) mentions."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


class _Walker:
    """Canonical digests of values; functions and classes reached are hashed in full once."""

    def __init__(self, system: System) -> None:
        self.struct_names = {id(o): n for o, n in zip(system.world.objects, system.world.names)}
        self.memo: dict[int, tuple[Any, bytes]] = {}  # id -> (object kept alive, digest)
        self.active: set[int] = set()
        self.todo: list[Any] = []
        self.done: set[int] = set()
        self.bodies: list[bytes] = []

    # -- values ---------------------------------------------------------------------------
    def value(self, v: Any) -> bytes:
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
            return _digest(b"v", type(v).__name__.encode(), repr(v).encode())
        if isinstance(v, enum.Enum):
            return _digest(b"enum", type(v).__qualname__.encode(), v.name.encode())
        if isinstance(v, (types.FunctionType, type)):
            return self.reference(v)
        if isinstance(v, (staticmethod, classmethod)):
            return self.value(v.__func__)
        if isinstance(v, types.MethodType):
            return _digest(b"method", self.value(v.__func__))
        if isinstance(v, types.ModuleType):
            return _digest(b"module", _module_name(v.__name__).encode())
        if isinstance(v, Struct):
            return _digest(
                b"struct",
                self.reference(type(v)),
                str(self.struct_names.get(id(v), getattr(v, "name", ""))).encode(),
            )
        if isinstance(v, types.BuiltinFunctionType):
            return _digest(b"builtin", getattr(v, "__qualname__", repr(v)).encode())
        key = id(v)
        hit = self.memo.get(key)
        if hit is not None and hit[0] is v:
            return hit[1]
        if key in self.active:
            return _digest(b"cycle")
        self.active.add(key)
        try:
            d = self._container(v)
        finally:
            self.active.discard(key)
        self.memo[key] = (v, d)
        return d

    def _container(self, v: Any) -> bytes:
        if isinstance(v, (tuple, list)):
            return _digest(b"seq", type(v).__name__.encode(), *(self.value(x) for x in v))
        if isinstance(v, (set, frozenset)):
            return _digest(b"set", *sorted(self.value(x) for x in v))
        if isinstance(v, dict):
            items = sorted(_digest(self.value(k), self.value(x)) for k, x in v.items())
            return _digest(b"dict", *items)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            fields = [
                _digest(f.name.encode(), self.value(getattr(v, f.name)))
                for f in dataclasses.fields(v)
            ]
            return _digest(b"dataclass", self.reference(type(v), walk=False), *fields)
        return _digest(b"object", type(v).__qualname__.encode())

    # -- code -----------------------------------------------------------------------------
    def reference(self, obj: Any, walk: bool = True) -> bytes:
        """A function or class by name (and, for one of the model's own, its source);
        the full body is hashed once, later. A dataclass holding data (a scenario, a
        variant) counts by name and fields only (walk=False): its methods are not code
        the model runs."""
        if isinstance(obj, types.FunctionType):
            code = obj.__code__
            ours = not _outside(code.co_filename)
            text = _source(code, obj) if ours else b""
            if ours and id(obj) not in self.done:
                self.done.add(id(obj))
                self.todo.append(obj)
            return _digest(b"function", obj.__qualname__.encode(), text)
        module = sys.modules.get(obj.__module__)
        filename = getattr(module, "__file__", None) or ""
        ours = walk and not _outside(filename)
        if ours and id(obj) not in self.done:
            self.done.add(id(obj))
            self.todo.append(obj)
        return _digest(b"class", obj.__qualname__.encode())

    def finish(self) -> None:
        while self.todo:
            obj = self.todo.pop()
            if isinstance(obj, types.FunctionType):
                self.bodies.append(self._function(obj))
            else:
                self.bodies.append(self._class(obj))

    def _function(self, f: types.FunctionType) -> bytes:
        code = f.__code__
        parts = [self.reference(f), self.value(f.__defaults__), self.value(f.__kwdefaults__)]
        for cell in f.__closure__ or ():
            try:
                parts.append(self.value(cell.cell_contents))
            except ValueError:  # an empty cell
                parts.append(_digest(b"empty"))
        g = f.__globals__
        modules = [v for v in g.values() if isinstance(v, types.ModuleType)]
        for name in sorted(set(_names(code))):
            if name in g:
                value = g[name]
                if not isinstance(value, types.ModuleType):
                    parts.append(_digest(name.encode(), self.value(value)))
                continue
            for mod in modules:  # module.name: a function or constant of a module it uses
                if not hasattr(mod, name):
                    continue
                if not _outside(getattr(mod, "__file__", None) or ""):
                    attr = getattr(mod, name)
                    where = f"{_module_name(mod.__name__)}.{name}"
                    parts.append(_digest(where.encode(), self.value(attr)))
        return _digest(b"body", *parts)

    def _class(self, cls: type) -> bytes:
        parts = [self.reference(cls)]
        parts += [self.reference(b) for b in cls.__bases__ if b is not object]
        for name, value in vars(cls).items():
            if name.startswith("__"):
                continue
            if isinstance(value, property):
                value = (value.fget, value.fset)
            parts.append(_digest(name.encode(), self.value(value)))
        return _digest(b"class-body", *parts)
