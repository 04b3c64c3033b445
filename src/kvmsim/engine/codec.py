"""A stable, canonical byte encoding of states, and 64-bit fingerprints of it.

A state holds live Python objects: ``Struct`` references, function objects in frames, enums,
frozensets. Python's ``hash()`` of them is salted per process and a frozenset's iteration order
follows it, so neither can name a state across processes or runs. The codec maps each value to
plain data first (a ``Struct`` becomes its index in the world, a function its module and
qualified name, an enum its class and member name, a frozenset its elements sorted by their
own encodings) and writes that with ``marshal`` format 2, which has no back-references and so
depends on values only. Equal states (of identical value types) give equal bytes in any
process; ``decode`` gives back an equal state of this process's ``System``.

A state is encoded part by part (each world object's tuple, each actor's frames) and every
part's bytes are cached by value (a bounded cache): most parts of a new state are equal to
parts seen just before. One consequence: values that Python deems equal although of other
types (1, 1.0, True) share the encoding the process met first, as they share a state in the
full store. Functions and classes of a model file are named without the counter the loader
puts in its module name, so another process that loads the file names them alike.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import marshal
import re
import sysconfig
from collections.abc import Iterator
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from .compiler import UNSET
from .system import ActorState, State, System
from .world import ModelError, Struct

MARSHAL_VERSION = 2  # format 2: no references, so the bytes depend on values alone
CACHE_SIZE = 1 << 14  # parts cached per generation (two generations are kept)
_MASK64 = (1 << 64) - 1
_MODEL_FILE = re.compile(r"^kvmsim_model_\d+_")
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
    """A bounded cache of two generations, keyed by value: the live one becomes the old one
    when full, so what is in use stays and the rest is dropped a generation later."""

    __slots__ = ("new", "old")

    def __init__(self) -> None:
        self.new: dict[Any, Any] = {}
        self.old: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        hit = self.new.get(key)
        if hit is None:
            hit = self.old.get(key)
            if hit is not None:
                self.put(key, hit)
        return hit

    def put(self, key: Any, value: Any) -> None:
        if len(self.new) >= CACHE_SIZE:
            self.old = self.new
            self.new = {}
        self.new[key] = value


class StateCodec:
    """Encode and decode the states of one System; fingerprint them."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.objects = system.world.objects
        self.nobjects = len(self.objects)
        # Values encoded by identity, as plain data: the world's Structs and UNSET (the
        # objects are alive for the codec's life, so their ids cannot be reused)
        self._atoms: dict[int, Any] = {id(o): ["s", i] for i, o in enumerate(self.objects)}
        self._atoms[id(UNSET)] = ["u"]
        self._func_key: dict[int, tuple[FunctionType, str]] = {}
        self._key_func: dict[str, FunctionType] = {}
        self._classes: dict[str, type] = {}
        self._parts = _Cache()
        self._values = _Cache()
        self._decoded: dict[bytes, Any] = {}
        self._part_fps = [_Cache() for _ in range(self.nobjects + len(system.actors))]
        self._register(*_reachable(system))

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, state: State) -> bytes:
        """The canonical bytes of state."""
        return marshal.dumps(tuple(self.encode_parts(state)), MARSHAL_VERSION)

    def encode_parts(self, state: State) -> list[bytes]:
        """The encodings of state's parts: one per world object, then one per actor
        (b"" for a finished one). Equal parts give equal bytes, so a store can share them."""
        new = self._parts.new
        parts: list[bytes] = []
        for objs in state[0]:
            data = new.get(objs)
            parts.append(self._part_bytes(objs, False) if data is None else data)
        for frames in state[1]:
            if frames is None:
                parts.append(b"")
                continue
            data = new.get(frames)
            parts.append(self._part_bytes(frames, True) if data is None else data)
        return parts

    def _part_bytes(self, part: Any, frames: bool) -> bytes:
        """The encoding of one part (a world object's tuple, or an actor's frames)."""
        if part is None:
            return b""
        cache = self._parts
        data: bytes | None = cache.get(part)
        if data is None:
            if frames:
                data = marshal.dumps(self._plain_frames(part), MARSHAL_VERSION)
            else:
                data = marshal.dumps(tuple([self._field(x) for x in part]), MARSHAL_VERSION)
            cache.put(part, data)
            decoded = self._decoded
            if len(decoded) >= CACHE_SIZE:
                decoded.clear()
            decoded.setdefault(data, part)  # decoding these bytes gives this very object
        return data

    def fingerprint(self, state: State) -> int:
        """A 64-bit hash of state's encoding, stable across processes and runs."""
        return fingerprint_bytes(self.encode(state))

    def part_fingerprint(self, state: State) -> int:
        """Another stable 64-bit fingerprint of state, much cheaper than ``fingerprint``:
        the sum modulo 2**64 of a BLAKE2b hash of each part's encoding salted with the
        part's position, each cached by value. Two different states differ in some part,
        so (taking BLAKE2b for a random function) they collide with probability 2**-64, as
        two whole encodings do; but a new state costs one cache lookup per part, and only
        its changed parts are encoded and hashed."""
        return self.part_fingerprints(state)[1]

    def part_fingerprints(self, state: State) -> tuple[list[int], int]:
        """Each part's hash in ``part_fingerprint``, and their sum (the fingerprint)."""
        caches = self._part_fps
        hs: list[int] = []
        i = 0
        for objs in state[0]:
            h = caches[i].new.get(objs)
            hs.append(self.part_hash(i, objs, False) if h is None else h)
            i += 1
        for frames in state[1]:
            h = caches[i].new.get(frames)
            hs.append(self.part_hash(i, frames, True) if h is None else h)
            i += 1
        return hs, sum(hs) & _MASK64

    def child_fingerprints(
        self, child: State, parent: State, hs: list[int]
    ) -> tuple[list[int], int]:
        """``part_fingerprints`` of child, a successor of parent whose part hashes are hs: a
        step shares every part it leaves alone with its parent (the same objects), so only
        the parts that are other objects are looked up. The hashes go with the state to its
        own expansion, which then looks up none of its parts again."""
        caches = self._part_fps
        out = hs.copy()
        world, before = child[0], parent[0]
        if world is not before:
            i = 0
            for c, p in zip(world, before):
                if c is not p:
                    h = caches[i].new.get(c)
                    out[i] = self.part_hash(i, c, False) if h is None else h
                i += 1
        i = self.nobjects
        for f, g in zip(child[1], parent[1]):
            if f is not g:
                h = caches[i].new.get(f)
                out[i] = self.part_hash(i, f, True) if h is None else h
            i += 1
        return out, sum(out) & _MASK64

    def part_hash(self, i: int, part: Any, frames: bool) -> int:
        """The hash of part at position i (a world object's tuple, or an actor's frames when
        frames) in ``part_fingerprint``."""
        cache = self._part_fps[i]
        h: int | None = cache.get(part)
        if h is None:
            data = self._part_bytes(part, frames)
            salt = i.to_bytes(16, "little")  # the part's position
            h = int.from_bytes(hashlib.blake2b(data, digest_size=8, salt=salt).digest(), "little")
            cache.put(part, h)
        return h

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
        atom = self._atoms.get(id(v))  # a Struct of the world, UNSET, a known function
        if atom is not None:
            return atom
        if t is tuple:
            return tuple([x if type(x) in _SCALARS else self._plain(x) for x in v])
        if t is frozenset:
            items = [self._plain(x) for x in v]
            items.sort(key=_marshalled)
            return ["f", *items]
        if isinstance(v, Struct):
            raise ModelError(f"a state refers to a {t.__name__} that is not in the world")
        if isinstance(v, enum.Enum):
            return ["e", self._class_key(t), v.name]
        if t is FunctionType:
            return ["F", self._function_key(v)]
        if t is MethodType and isinstance(v.__self__, Struct):
            return ["m", self._function_key(v.__func__), self._plain(v.__self__)]
        if isinstance(v, tuple):  # a named tuple
            return ["t", self._class_key(t), tuple([self._plain(x) for x in v])]
        raise ModelError(f"a state holds a {t.__name__}, which the state codec cannot encode")

    def _class_key(self, cls: type) -> str:
        key = f"{_module_name(cls.__module__)}:{cls.__qualname__}"
        self._classes.setdefault(key, cls)
        return key

    def _function_key(self, func: FunctionType) -> str:
        hit = self._func_key.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        funcs, classes = _reachable(self.system, func)
        self._register(funcs, classes)
        return self._func_key[id(func)][1]

    def _register(self, funcs: list[FunctionType], classes: list[type]) -> None:
        """Name each function module:qualname, with #n for the n-th of several functions of
        the same name (a variant's relinked copy, a function made in a loop), in a stable
        order; and each class reached (an enum of a model file cannot be imported)."""
        for cls in classes:
            self._class_key(cls)
        groups: dict[str, list[FunctionType]] = {}
        for f in funcs:
            if id(f) not in self._func_key:
                groups.setdefault(f"{_module_name(f.__module__)}:{f.__qualname__}", []).append(f)
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
        except (ValueError, EOFError, TypeError) as exc:
            raise ModelError(f"cannot decode a state: {exc}") from None
        return self.decode_parts(parts)

    def decode_parts(self, parts: Any) -> State:
        """The state whose encode_parts are parts."""
        try:
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


def _module_name(name: str) -> str:
    """A module's name without the counter kvmsim gives the model files it loads (it depends
    on how many were loaded before in the process), as fingerprint.py writes it."""
    return _MODEL_FILE.sub("kvmsim_model_", name)


def _import(key: str) -> Any:
    """The object a module:qualname key names, by import (for what no walk reached; never a
    loaded model file's, whose module name is not its key)."""
    module, _, qualname = key.partition(":")
    if module.startswith("kvmsim_model_"):
        raise ModelError(f"cannot decode a state: {key} is not found in this process")
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


def _reachable(system: System, *extra: FunctionType) -> tuple[list[FunctionType], list[type]]:
    """Every function of the model's own code reachable from its actors, their arguments,
    the world's values and extra, in a deterministic order (through defaults, closures, the
    globals a function names and attributes of modules it uses), and the classes met."""
    found: dict[int, FunctionType] = {}
    classes: list[type] = []
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
        elif isinstance(v, type):
            classes.append(v)
            if not isinstance(v, enum.EnumMeta):
                todo += reversed([x for k, x in vars(v).items() if not k.startswith("__")])
        elif isinstance(v, (staticmethod, classmethod)):
            todo.append(v.__func__)
    return list(found.values()), classes
