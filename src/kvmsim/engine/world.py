"""Shared state: plain-data objects whose field values are the world's state.

A model's shared state lives in ``Struct`` objects created once by the model's setup. Actors
hold references to them across yields, so the explorer never replaces them: to move to
another state it writes the stored field values back into the same objects (``World.load``).
Field values must be immutable (ints, strings, tuples, frozensets, ``None``, enums, or
references to other ``Struct`` objects of the same world) so that a snapshot is a tuple
that can be hashed and shared between states.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from itertools import compress
from operator import is_not, ne
from typing import Any, ClassVar, get_origin

ObjTuple = tuple[Any, ...]
WorldTuple = tuple[ObjTuple, ...]


class ModelError(Exception):
    """The model breaks a rule of the engine (the message says which and how to fix it)."""


class Struct:
    """Base class for shared-state objects: declare fields as annotated class attributes.

    >>> class Lock(Struct):
    ...     holder: int | None = None
    ...     waiters: int = 0
    """

    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: list[str] = []
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):
                if name.startswith("_"):
                    continue
                if _is_classvar(klass.__dict__["__annotations__"][name]):
                    continue
                if name not in fields:
                    fields.append(name)
                if name in klass.__dict__:
                    defaults[name] = klass.__dict__[name]
        cls._fields = tuple(fields)
        cls._defaults = defaults

    def __init__(self, **values: Any) -> None:
        for name in self._fields:
            if name in values:
                value = values.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
            else:
                raise TypeError(f"{type(self).__name__}: field {name!r} needs a value")
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(values))!r}")

    def __repr__(self) -> str:
        name = getattr(self, "name", None)
        return name if isinstance(name, str) else f"<{type(self).__name__}>"


_CLASSVAR = re.compile(r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*\.\s*)*ClassVar\s*(?:\[|$)")


def _is_classvar(annotation: Any) -> bool:
    """Whether a field annotation declares a class variable rather than a field.

    Under ``from __future__ import annotations`` the annotation is a string: it is a class
    variable when it reads ``ClassVar[...]`` (possibly qualified, ``typing.ClassVar[...]``),
    not merely when the word occurs somewhere in it (``tuple[ClassVarLike, ...]``).
    """
    if isinstance(annotation, str):
        return _CLASSVAR.match(annotation.strip().strip("'\"")) is not None
    return annotation is ClassVar or get_origin(annotation) is ClassVar


_IMMUTABLE_SCALARS = (int, float, str, bytes, bool, type(None), enum.Enum, complex)


def check_value(value: Any, where: str, known: set[int]) -> None:
    """Raise ModelError if value could change behind the explorer's back."""
    if isinstance(value, _IMMUTABLE_SCALARS):
        return
    if isinstance(value, Struct):
        if id(value) not in known:
            raise ModelError(
                f"{where} refers to a {type(value).__name__} created after setup; "
                "create every Struct in the model's setup and keep them for the whole run"
            )
        return
    if isinstance(value, (tuple, frozenset)):
        for item in value:
            check_value(item, where, known)
        return
    if type(value).__name__ == "_Unset":
        return
    if callable(value) and hasattr(value, "__code__"):
        return  # functions are code, not state
    raise ModelError(
        f"{where} holds a {type(value).__name__}, which is mutable or unhashable; "
        "use a tuple, frozenset or int instead"
    )


CHECKED_SIZE = 100_000  # tuples remembered as validated (by identity) before starting afresh


def remember_checked(checked: dict[int, Any], value: Any) -> None:
    """Note that value (a tuple of a state) passed validation; keeping it in the dict keeps
    its id from being reused by another object."""
    if len(checked) >= CHECKED_SIZE:
        checked.clear()
    checked[id(value)] = value


def _rewrite(d: dict[str, Any], fields: tuple[str, ...], vals: ObjTuple, old: Any) -> None:
    """Make d hold vals, given that it holds old (None: unknown): only the fields whose
    values differ are written (a stray attribute a step added is dropped)."""
    if old is None or len(d) != len(vals) or len(old) != len(vals):
        d.clear()
        d.update(zip(fields, vals))
        return
    for f, v in compress(zip(fields, vals), map(is_not, vals, old)):
        d[f] = v


class World:
    """Every Struct reachable from the model's roots, in a fixed order."""

    def __init__(self, roots: list[tuple[str, Any]]) -> None:
        self.objects: list[Struct] = []
        self.names: list[str] = []
        self._ids: set[int] = set()
        for name, root in roots:
            self._discover(root, name)
        self.fields = [type(o)._fields for o in self.objects]
        # The objects' __dict__s (never replaced, only cleared and refilled): the hot path
        # reads and writes them directly.
        self._dicts = [o.__dict__ for o in self.objects]
        self._slots = range(len(self.objects))
        self._checked: dict[int, Any] = {}  # validate(): tuples that passed, by id
        self.loaded: WorldTuple = self.snapshot_full()
        # The last snapshot that changed something: (its result, its base, the slots where
        # they differ). When its result is the loaded world, loading its base again (the
        # next step from the same state) rewrites only those slots.
        self._undo: tuple[WorldTuple, WorldTuple, list[int]] = ((), (), [])

    def _discover(self, value: Any, path: str) -> None:
        if isinstance(value, Struct):
            if id(value) in self._ids:
                return
            self._ids.add(id(value))
            own = getattr(value, "name", None)
            self.objects.append(value)
            self.names.append(own if isinstance(own, str) and own else path)
            label = self.names[-1]
            extra = set(value.__dict__) - set(type(value)._fields)
            if extra:
                raise ModelError(
                    f"{label}.{sorted(extra)[0]} is not a declared field of "
                    f"{type(value).__name__}; declare it as an annotated class attribute"
                )
            # Field order is the snapshot order: rebuild __dict__ in declaration order.
            values = dict(value.__dict__)
            value.__dict__.clear()
            value.__dict__.update((f, values[f]) for f in type(value)._fields)
            for f in type(value)._fields:
                self._discover(getattr(value, f), f"{label}.{f}" if label else f)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                self._discover(item, f"{path}[{i}]")

    def __iter__(self) -> Iterator[Struct]:
        return iter(self.objects)

    def knows(self, obj: Any) -> bool:
        return id(obj) in self._ids

    @property
    def known_ids(self) -> set[int]:
        return self._ids

    def snapshot_full(self) -> WorldTuple:
        return tuple(tuple(o.__dict__.values()) for o in self.objects)

    def snapshot(self, base: WorldTuple) -> WorldTuple:
        """The current contents, sharing each unchanged object's tuple with base (which
        must be the loaded world). Records which objects differ, so that loading base
        again (the next step from the same state) rewrites only those."""
        news = list(map(tuple, map(dict.values, self._dicts)))
        changed = list(compress(self._slots, map(ne, news, base)))
        if not changed:
            return base
        out = list(base)
        for i in changed:
            out[i] = news[i]
        world = tuple(out)
        self._undo = (world, base, changed)
        return world

    def load(self, target: WorldTuple) -> None:
        """Make the live objects hold target's values (only those that differ)."""
        loaded: tuple[Any, ...] = self.loaded
        if target is loaded:
            return
        made, base, changed = self._undo
        if made is loaded and target is base:  # back to a snapshot's base: rewrite its changes
            dicts, names = self._dicts, self.fields
            for i in changed:
                _rewrite(dicts[i], names[i], target[i], made[i])
            self.loaded = target
            return
        if len(loaded) != len(target):  # a full reload
            loaded = (None,) * len(target)
        for d, fields, vals, old in zip(self._dicts, self.fields, target, loaded):
            if vals is not old:
                _rewrite(d, fields, vals, old)
        self.loaded = target

    def restore(self) -> None:
        """Make the live objects hold the loaded world again, whatever a step (perhaps
        interrupted half-way) wrote into them: each object that differs is rewritten."""
        for d, fields, vals in zip(self._dicts, self.fields, self.loaded):
            if len(d) != len(vals) or any(map(is_not, d.values(), vals)):
                d.clear()
                d.update(zip(fields, vals))

    def validate(self, state: WorldTuple) -> None:
        checked = self._checked
        for name, obj, vals in zip(self.names, self.objects, state):
            fields = type(obj)._fields
            if len(vals) != len(fields) or len(obj.__dict__) != len(fields):
                extra = set(obj.__dict__) - set(fields)
                raise ModelError(
                    f"{name}.{sorted(extra)[0] if extra else '?'} is not a declared field of "
                    f"{type(obj).__name__}; declare it as an annotated class attribute"
                )
            if checked.get(id(vals)) is vals:  # this very tuple passed before (states share)
                continue
            for f, v in zip(fields, vals):
                check_value(v, f"{name}.{f}" if name else f, self._ids)
            remember_checked(checked, vals)

    def describe(self, state: WorldTuple) -> dict[str, Any]:
        """Flat {path: value} view of a state, for traces and reports."""
        out: dict[str, Any] = {}
        for name, obj, vals in zip(self.names, self.objects, state):
            for f, v in zip(type(obj)._fields, vals):
                out[f"{name}.{f}" if name else f] = v
        return out
