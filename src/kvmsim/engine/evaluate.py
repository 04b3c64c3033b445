"""Abstract evaluation of expressions over an actor's locals, for engine/futures.py.

A local's value is either concrete (an immutable constant: int, bool, str, None, or a tuple
or frozenset of them) or UNKNOWN. An expression evaluates to the list of values it may
have, or None when it may have any: a read of shared state, a call (other than the
engine's ``choose``/``maybe`` and a few pure builtins), or anything not modelled. Operands
are evaluated only where Python evaluates them (``and``/``or``, comparison chains), and an
empty list means the evaluation never completes on this path (``choose(())`` blocks).
"""

from __future__ import annotations

import ast
import builtins
import operator
from collections.abc import Callable, Sequence
from typing import Any

from .footprint import _Scope
from .runtime import choose, maybe

Env = tuple[Any, ...]  # per local slot: a concrete value or UNKNOWN
Values = list[Any] | None  # the values an expression may have; None: unknown


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
MAX_VALUES = 16  # more possible values than this: unknown
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
    ast.RShift: operator.rshift,
    ast.LShift: operator.lshift,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_PURE = {builtins.len, builtins.abs, builtins.min, builtins.max, builtins.bool, builtins.int}


def simple(value: Any, depth: int = 0) -> bool:
    """Whether value is an immutable constant the interpreter may compute with."""
    if value is None or isinstance(value, (bool, int, str)):
        return not isinstance(value, str) or len(value) <= 256
    if isinstance(value, (tuple, frozenset)) and depth < 3 and len(value) <= 64:
        return all(simple(v, depth + 1) for v in value)
    return False


class Evaluator:
    """Evaluates expressions of one function (its local slots, its scope's free names)."""

    def __init__(self, slots: dict[str, int], scope: _Scope) -> None:
        self.slots = slots
        self.scope = scope

    def truth(self, expr: ast.expr, env: Env) -> set[bool]:
        """The truth values expr may have (empty: evaluating it never completes)."""
        if isinstance(expr, ast.BoolOp):
            stop = isinstance(expr.op, ast.Or)  # the truth value that ends the evaluation
            out: set[bool] = set()
            for operand in expr.values:
                truth = self.truth(operand, env)
                if stop in truth:
                    out.add(stop)
                if (not stop) not in truth:
                    return out  # no path evaluates the operands after this one
            out.add(not stop)
            return out
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
            return {not t for t in self.truth(expr.operand, env)}
        values = self.eval(expr, env)
        if values is None:
            return {True, False}
        return {bool(v) for v in values}

    def eval(self, expr: ast.expr, env: Env) -> Values:
        """The values expr may have with these locals (None: unknown)."""
        got = self._eval(expr, env)
        if got is not None and len(got) > MAX_VALUES:
            return None
        return got

    def _eval(self, expr: ast.expr, env: Env) -> Values:  # noqa: C901 - one case per node type
        if isinstance(expr, ast.Constant):
            return [expr.value] if simple(expr.value) else None
        if isinstance(expr, ast.Name):
            slot = self.slots.get(expr.id)
            if slot is not None:
                v = env[slot]
                return None if v is UNKNOWN else [v]
            obj = self.scope.lookup(expr.id)
            return [obj] if simple(obj) else None
        if isinstance(expr, ast.Tuple):
            parts = [self.eval(e, env) for e in expr.elts]
            return _product(parts, tuple)
        if isinstance(expr, ast.BinOp):
            op = _BINARY.get(type(expr.op))
            if op is None:
                return None
            return _apply(op, [self.eval(expr.left, env), self.eval(expr.right, env)])
        if isinstance(expr, ast.UnaryOp):
            uop = _UNARY[type(expr.op)]
            return _apply(uop, [self.eval(expr.operand, env)])
        if isinstance(expr, ast.Compare):
            return self._compare(expr, env)
        if isinstance(expr, ast.BoolOp):
            got = self._boolop(isinstance(expr.op, ast.And), expr.values, env)
            if got is not None:
                return got
            truth = self.truth(expr, env)
            # operands that are all comparisons or negations evaluate to bools
            if len(truth) < 2 and all(_is_bool(v) for v in expr.values):
                return list(truth)
            return None
        if isinstance(expr, ast.IfExp):
            truth = self.truth(expr.test, env)
            out: list[Any] = []
            for taken, branch in ((True, expr.body), (False, expr.orelse)):
                if taken in truth:
                    got = self.eval(branch, env)
                    if got is None:
                        return None
                    out += got
            return _unique(out)
        if isinstance(expr, ast.Call):
            return self._call(expr, env)
        return None

    def _boolop(self, is_and: bool, operands: list[ast.expr], env: Env) -> Values:
        """Python's `and`/`or`, evaluating an operand only where the ones before it let
        the evaluation go on (None: unknown)."""
        first = self.eval(operands[0], env)
        if first is None:
            return None
        out: list[Any] = []
        for value in first:
            if len(operands) == 1 or bool(value) is not is_and:
                out.append(value)
                continue
            more = self._boolop(is_and, operands[1:], env)
            if more is None:
                return None
            out += more
        return _unique(out)

    def _compare(self, expr: ast.Compare, env: Env) -> Values:
        operands = [self.eval(e, env) for e in [expr.left, *expr.comparators]]
        if any(not v for v in operands):
            return None  # a chain stops early: a later operand need not be evaluated
        results: list[Any] = []
        combos = _product(operands, tuple)
        if combos is None:
            return None
        for combo in combos:
            value = True
            for k, op in enumerate(expr.ops):
                a, b = combo[k], combo[k + 1]
                if isinstance(op, (ast.Is, ast.IsNot)):
                    if a is not None and b is not None:
                        return None  # identity of numbers or strings: not modelled
                    r = (a is b) if isinstance(op, ast.Is) else (a is not b)
                else:
                    fn = _COMPARE.get(type(op))
                    if fn is None:
                        return None
                    try:
                        r = bool(fn(a, b))
                    except Exception:  # noqa: BLE001 - the real step raises: unknown here
                        return None
                if not r:
                    value = False
                    break
            results.append(value)
        return _unique(results)

    def _call(self, expr: ast.Call, env: Env) -> Values:
        if expr.keywords and not _calls(expr, self.scope, choose):
            return None
        if _calls(expr, self.scope, maybe):
            return [False, True]
        if _calls(expr, self.scope, choose):
            options = self.eval(expr.args[0], env) if expr.args else None
            if options is None:
                return None
            out: list[Any] = []
            for opt in options:
                if not isinstance(opt, tuple):
                    return None
                out += opt
            return _unique(out)
        if isinstance(expr.func, ast.Name) and expr.func.id not in self.slots:
            fn = self.scope.lookup(expr.func.id)
            if any(fn is p for p in _PURE):
                return _apply(fn, [self.eval(a, env) for a in expr.args])
        return None


def _calls(expr: ast.AST, scope: _Scope, target: Any) -> bool:
    """Whether expr is a call of the engine function target (by a plain name)."""
    return (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id not in scope.locals
        and scope.lookup(expr.func.id) is target
    )


def _is_bool(expr: ast.expr) -> bool:
    """Whether expr always evaluates to a bool (a comparison or a negation)."""
    return isinstance(expr, ast.Compare) or (
        isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not)
    )


def _apply(fn: Callable[..., Any], operands: list[Values]) -> Values:
    combos = _product(operands, tuple)
    if combos is None:
        return None
    out: list[Any] = []
    for combo in combos:
        if fn in (operator.lshift, operator.mul) and any(
            isinstance(c, (int, str, tuple)) and _size(c) > 64 for c in combo
        ):
            return None
        try:
            value = fn(*combo)
        except Exception:  # noqa: BLE001 - the real step raises: leave it unknown
            return None
        if not simple(value):
            return None
        out.append(value)
    return _unique(out)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, tuple)) else abs(value)


def _product(parts: Sequence[Values], make: Callable[[list[Any]], Any]) -> Values:
    if any(p is None for p in parts):
        return None
    combos: list[list[Any]] = [[]]
    for p in parts:
        assert p is not None
        combos = [c + [v] for c in combos for v in p]
        if len(combos) > MAX_VALUES:
            return None
    return [make(c) for c in combos]


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(type(v) is type(w) and v == w for w in out):
            out.append(v)
    return out
