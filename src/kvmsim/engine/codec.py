"""A stable, canonical byte encoding of states, and 64-bit fingerprints of it.

A state holds live Python objects: ``Struct`` references, function objects in frames, enums,
frozensets. Python's ``hash()`` of them is salted per process and a frozenset's iteration order
follows it, so neither can name a state across processes or runs. The codec maps each value to
plain data first (a ``Struct`` becomes its index in the world, a function its module and
qualified name, an enum its class and member name, a frozenset its elements sorted by their
own encodings) and writes that with ``marshal`` format 2, which has no back-references and so
depends on values only. Equal states (of identical value types) give equal bytes in any
process; ``decode`` gives back an equal state of this process's ``System``.

World snapshots share each unchanged object's tuple with the parent state, and an actor that
did not move keeps its frames tuple, so the encoding of each part is cached by identity.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import marshal
import sysconfig
from collections.abc import Iterator
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from .compiler import UNSET
from .system import ActorState, State, System
from .world import ModelError, Struct

MARSHAL_VERSION = 2  # format 2: no references, so the bytes depend on values alone
CACHE_SIZE = 1 << 16  # parts cached per generation (two generations are kept)
_SCALARS = frozenset({int, str, bool, float, bytes, complex, type(None)})

_SKIP = tuple(
    p
    for p in {sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib")}
    | {sysconfig.get_paths().get("platlib", "")}
    if p
)


def fingerprint_bytes(data: bytes) -> int:
    """A 64-bit hash of an encoding (BLAKE2b: the same in every process and run)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class _Cache:
    """A bounded identity cache of two generations: the live one is moved to the old one
    when full, so what is in use stays and the rest is dropped a generation later."""

    __slots__ = ("new", "old")

    def __init__(self) -> None:
        self.new: dict[int, tuple[Any, Any]] = {}
        self.old: dict[int, tuple[Any, Any]] = {}

    def get(self, obj: Any) -> Any:
        key = id(obj)
        hit = self.new.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        hit = self.old.get(key)
        if hit is not None and hit[0] is obj:
            self.put(obj, hit[1])
            return hit[1]
        return None

    def put(self, obj: Any, value: Any) -> None:
        if len(self.new) >= CACHE_SIZE:
            self.old = self.new
            self.new = {}
        self.new[id(obj)] = (obj, value)  # the entry keeps obj alive, so its id stays its own


class StateCodec:
    """Encode and decode the states of one System; fingerprint them."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.objects = system.world.objects
        self.nobjects = len(self.objects)
        self._struct_index = {id(o): i for i, o in enumerate(self.objects)}
        self._func_key: dict[int, tuple[FunctionType, str]] = {}
        self._key_func: dict[str, FunctionType] = {}
        self._classes: dict[str, type] = {}
        self._parts = _Cache()
        self._values = _Cache()
        self._decoded: dict[bytes, Any] = {}
        self._register(_reachable_functions(system))

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, state: State) -> bytes:
        """The canonical bytes of state."""
        cache = self._parts
        new = cache.new
        parts: list[bytes] = []
        for objs in state[0]:
            hit = new.get(id(objs))
            if hit is not None and hit[0] is objs:
                parts.append(hit[1])
                continue
            data = cache.get(objs)
            if data is None:
                data = marshal.dumps(tuple([self._field(x) for x in objs]), MARSHAL_VERSION)
                cache.put(objs, data)
            parts.append(data)
        for frames in state[1]:
            if frames is None:
                parts.append(b"")
                continue
            data = cache.get(frames)
            if data is None:
                data = marshal.dumps(self._plain_frames(frames), MARSHAL_VERSION)
                cache.put(frames, data)
            parts.append(data)
        return marshal.dumps(tuple(parts), MARSHAL_VERSION)

    def fingerprint(self, state: State) -> int:
        """A 64-bit hash of state's encoding, stable across processes and runs."""
        return fingerprint_bytes(self.encode(state))

    fingerprint_bytes = staticmethod(fingerprint_bytes)

    def _field(self, v: Any) -> Any:
        """_plain of a field's value, cached by identity: a field that did not change keeps
        its value object when another field of the same object changes."""
        if type(v) in _SCALARS:
            return v
        hit = self._values.get(v)
        if hit is None:
            hit = self._plain(v)
            self._values.put(v, hit)
        return hit

    def _plain_frames(self, frames: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            (self._function_key(func), pc, self._plain(values)) for func, pc, values in frames
        )

    def _plain(self, v: Any) -> Any:
        """v as plain marshal data. Lists never occur in a state, so a list is a tag."""
        t = type(v)
        if t in _SCALARS:
            return v
        if t is tuple:
            for x in v:
                if type(x) not in _SCALARS:
                    return tuple([self._plain(x) for x in v])
            return v
        if t is frozenset:
            items = [self._plain(x) for x in v]
            items.sort(key=_marshalled)
            return ["f", *items]
        if isinstance(v, Struct):
            idx = self._struct_index.get(id(v))
            if idx is None:
                raise ModelError(f"a state refers to a {t.__name__} that is not in the world")
            return ["s", idx]
        if isinstance(v, enum.Enum):
            return ["e", self._class_key(t), v.name]
        if v is UNSET:
            return ["u"]
        if t is FunctionType:
            return ["F", self._function_key(v)]
        if t is MethodType and isinstance(v.__self__, Struct):
            return ["m", self._function_key(v.__func__), self._plain(v.__self__)]
        if isinstance(v, tuple):  # a named tuple
            return ["t", self._class_key(t), tuple([self._plain(x) for x in v])]
        raise ModelError(f"a state holds a {t.__name__}, which the state codec cannot encode")

    def _class_key(self, cls: type) -> str:
        key = f"{cls.__module__}:{cls.__qualname__}"
        self._classes.setdefault(key, cls)
        return key

    def _function_key(self, func: FunctionType) -> str:
        hit = self._func_key.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        self._register(_reachable_functions(self.system, func))
        return self._func_key[id(func)][1]

    def _register(self, funcs: list[FunctionType]) -> None:
        """Name each function module:qualname, with #n for the n-th of several functions of
        the same name (a variant's relinked copy, a function made in a loop), in a stable
        order."""
        groups: dict[str, list[FunctionType]] = {}
        for f in funcs:
            if id(f) not in self._func_key:
                groups.setdefault(f"{f.__module__}:{f.__qualname__}", []).append(f)
        for name, group in groups.items():
            taken = sum(1 for k in self._key_func if k.split("#")[0] == name)
            for f in group:
                key = name if taken == 0 else f"{name}#{taken}"
                taken += 1
                self._func_key[id(f)] = (f, key)
                self._key_func[key] = f

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, data: bytes) -> State:
        """The state data encodes, made of this process's objects."""
        try:
            parts = marshal.loads(data)
            world = tuple(self._part(p, False) for p in parts[: self.nobjects])
            actors: tuple[ActorState, ...] = tuple(
                self._part(p, True) for p in parts[self.nobjects :]
            )
        except (ValueError, EOFError, TypeError, IndexError, KeyError) as exc:
            raise ModelError(f"cannot decode a state: {exc}") from None
        if len(world) != self.nobjects or len(actors) != len(self.system.actors):
            raise ModelError("cannot decode a state: it belongs to another model")
        return (world, actors)

    def _part(self, data: bytes, frames: bool) -> Any:
        if frames and not data:
            return None
        hit = self._decoded.get(data)
        if hit is None:
            plain = marshal.loads(data)
            if frames:
                hit = tuple(
                    (self._function(key), pc, self._value(values)) for key, pc, values in plain
                )
            else:
                hit = self._value(plain)
            if len(self._decoded) >= CACHE_SIZE:
                self._decoded.clear()
            self._decoded[data] = hit  # decoded states share their unchanged parts
        return hit

    def _value(self, p: Any) -> Any:
        t = type(p)
        if t is tuple:
            return tuple([self._value(x) for x in p])
        if t is not list:
            return p
        tag = p[0]
        if tag == "f":
            return frozenset(self._value(x) for x in p[1:])
        if tag == "s":
            return self.objects[p[1]]
        if tag == "e":
            return getattr(self._class(p[1]), p[2])
        if tag == "u":
            return UNSET
        if tag == "F":
            return self._function(p[1])
        if tag == "m":
            return MethodType(self._function(p[1]), self._value(p[2]))
        if tag == "t":
            return self._class(p[1])(*self._value(p[2]))
        raise ModelError(f"cannot decode a state: unknown tag {tag!r}")

    def _class(self, key: str) -> Any:
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _import(key)
        return cls

    def _function(self, key: str) -> FunctionType:
        func = self._key_func.get(key)
        if func is None:
            found = _import(key)
            if not isinstance(found, FunctionType):
                raise ModelError(f"cannot decode a state: {key} is not a function of this model")
            func = found
            self._func_key[id(func)] = (func, key)
            self._key_func[key] = func
        return func


def _marshalled(v: Any) -> bytes:
    return marshal.dumps(v, MARSHAL_VERSION)


def _import(key: str) -> Any:
    """The object a module:qualname key names, by import (for what no walk reached)."""
    module, _, qualname = key.partition(":")
    if "#" in qualname:  # one of several of that name: only a walk tells which
        raise ModelError(f"cannot decode a state: {key} is not found in this process")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise ModelError(f"cannot decode a state: {key} is not found in this process") from None
    return obj


def _outside(func: FunctionType) -> bool:
    name = func.__code__.co_filename
    return not name or name.startswith("<frozen") or name.startswith(_SKIP)


def _names(code: CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _reachable_functions(system: System, *extra: FunctionType) -> list[FunctionType]:
    """Every function of the model's own code reachable from its actors, their arguments,
    the world's values and extra, in a deterministic order (through defaults, closures, the
    globals a function names and attributes of modules it uses)."""
    found: dict[int, FunctionType] = {}
    seen: set[int] = set()
    todo: list[Any] = [spec.func for spec in system.actors]
    todo += [spec.args for spec in system.actors]
    todo += [spec.kwargs for spec in system.actors]
    todo += list(system.world.loaded)
    todo += list(extra)
    todo.reverse()
    while todo:
        v = todo.pop()
        if id(v) in seen or v is None or isinstance(v, (int, str, float, bytes, ModuleType)):
            continue
        seen.add(id(v))
        if isinstance(v, FunctionType):
            if _outside(v):
                continue
            found[id(v)] = v
            more: list[Any] = [v.__defaults__, v.__kwdefaults__]
            for cell in v.__closure__ or ():
                try:
                    more.append(cell.cell_contents)
                except ValueError:
                    pass
            g = v.__globals__
            modules = [m for m in g.values() if isinstance(m, ModuleType)]
            for name in sorted(set(_names(v.__code__))):
                if name in g:
                    more.append(g[name])
                    continue
                more += [getattr(m, name) for m in modules if hasattr(m, name)]
            todo += reversed(more)
        elif isinstance(v, (tuple, list)):
            todo += reversed(v)
        elif isinstance(v, dict):
            todo += reversed(list(v.values()))
        elif isinstance(v, MethodType):
            todo.append(v.__func__)
        elif isinstance(v, type) and not isinstance(v, enum.EnumMeta):
            todo += reversed([x for k, x in vars(v).items() if not k.startswith("__")])
        elif isinstance(v, (staticmethod, classmethod)):
            todo.append(v.__func__)
    return list(found.values())
