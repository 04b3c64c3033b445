"""Which Struct fields code may read or write: a conservative static analysis for the
partial-order reduction (engine/por.py).

An access is ``(root, chain, field, write)``: the field of the object reached from ``root``
through the attribute ``chain``. A root is a parameter of the analysed function (``("p", i)``),
a Struct object the code names directly (``("o", slot)``), or unknown (``("T",)``: any object
with that field). A local assigned once from such a path is an alias of it; any other local is
unknown. Calls are followed into the model's own functions (arguments substituted for
parameters); a function named as a value may be called by whatever receives it, so its
accesses count too. Whatever the analysis cannot follow (a call through a local variable,
``getattr``/``setattr``/``vars``/``__dict__``, recursion) makes the summary *anything*: it may
touch every field. The engine's own primitives (``await_``, ``choose``, ``fail``, ``note``)
touch no Struct and are skipped.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any

from .compiler import CALL, control_flow
from .world import Struct

Root = tuple[Any, ...]
Path = tuple[Root, tuple[str, ...]]
# A guard: conditions (local, positive, values) on the function's *control* locals (locals
# only ever assigned constants, such as an explicit program counter) under which an access
# or an assignment happens: `if pc == V_GUEST:` guards its body with (pc, True, {V_GUEST}),
# its else branch with (pc, False, {V_GUEST}).
Guard = tuple[tuple[str, bool, frozenset[Any]], ...]
Access = tuple[Root, tuple[str, ...], str, bool, Guard]
Transition = tuple[str, frozenset[Any] | None, Guard]  # control local := one of values
TOP: Root = ("T",)
DYNAMIC = {"getattr", "setattr", "delattr", "vars", "exec", "eval", "__import__", "globals"}
ENGINE = "kvmsim.engine"
MISSING: Any = object()  # a name found nowhere


@dataclass
class Summary:
    accesses: set[Access] = field(default_factory=set)
    transitions: set[Transition] = field(default_factory=set)
    calls: set[tuple[int, Guard]] = field(default_factory=set)  # through parameter i
    anything: bool = False

    def add(self, other: Summary) -> None:
        self.accesses |= other.accesses
        self.transitions |= other.transitions
        self.calls |= other.calls
        self.anything = self.anything or other.anything

    def detached(self, guard: Guard = ()) -> Summary:
        """This summary seen from elsewhere: parameters unknown, own guards dropped."""
        out = Summary(anything=self.anything or bool(self.calls))
        for root, _chain, fname, write, _g in self.accesses:
            if root[0] == "p":
                out.accesses.add((TOP, (), fname, write, guard))
            else:
                out.accesses.add((root, _chain, fname, write, guard))
        return out


def reachable_values(
    summary: Summary, start: dict[str, set[Any] | None]
) -> dict[str, set[Any] | None]:
    """Every value the control locals may take from start on (None: any value)."""
    values = {k: (None if v is None else set(v)) for k, v in start.items()}
    changed = True
    while changed:
        changed = False
        for name, new, guard in summary.transitions:
            if name not in values or not satisfiable(guard, values):
                continue
            have = values[name]
            if have is None:
                continue
            if new is None:
                values[name] = None
                changed = True
            elif not new <= have:
                have |= new
                changed = True
    return values


def satisfiable(guard: Guard, values: dict[str, set[Any] | None]) -> bool:
    """Whether some reachable values of the control locals meet every condition."""
    for name, positive, allowed in guard:
        have = values.get(name)
        if have is None:
            continue
        if positive and not (have & allowed):
            return False
        if not positive and not (have - allowed):
            return False
    return True


class Analyzer:
    """Summaries of functions, cached; slot_of maps id(Struct) to its world slot."""

    def __init__(
        self,
        slot_of: dict[int, int],
        struct_methods: dict[str, list[FunctionType]],
        field_names: set[str],
    ) -> None:
        self.slot_of = slot_of
        self.methods = struct_methods
        self.field_names = field_names
        self._summaries: dict[FunctionType, Summary] = {}
        self._blocks: dict[FunctionType, list[Summary]] = {}
        self._succ: dict[FunctionType, list[set[int]]] = {}
        self._future: dict[tuple[FunctionType, int], Summary] = {}
        self._busy: set[FunctionType] = set()

    # -- whole functions ------------------------------------------------------------------
    def function(self, func: FunctionType) -> Summary:
        """Everything func (and what it calls) may access, in terms of its parameters."""
        got = self._summaries.get(func)
        if got is not None:
            return got
        if func in self._busy:
            return Summary(anything=True)  # recursion: give up on precision
        self._busy.add(func)
        try:
            out = Summary()
            if func.__module__.startswith(ENGINE):
                pass
            elif inspect.isgeneratorfunction(func):
                for blk in self.blocks(func):
                    out.add(blk)
            else:
                fdef = _parse(func)
                if fdef is None:
                    out.anything = True
                else:
                    scope = _Scope(self, func, fdef)
                    for stmt in fdef.body:
                        scope.statement(stmt, out)
            # a default value that is a function may be called through its parameter
            defaults = list(func.__defaults__ or ()) + list((func.__kwdefaults__ or {}).values())
            for value in defaults:
                if isinstance(value, FunctionType) and value is not func:
                    out.add(self.function(value).detached())
        finally:
            self._busy.discard(func)
        self._summaries[func] = out
        return out

    # -- generator functions, block by block ------------------------------------------------
    def blocks(self, func: FunctionType) -> list[Summary]:
        got = self._blocks.get(func)
        if got is None:
            cfg, fdef = control_flow(func)
            scope = _Scope(self, func, fdef)
            got = []
            for blk in cfg:
                summary = Summary()
                for stmt in blk.stmts:
                    scope.statement(stmt, summary)
                got.append(summary)
            self._blocks[func] = got
            self._succ[func] = [set(b.succ) for b in cfg]
        return got

    def future(self, func: FunctionType, pc: int) -> Summary:
        """What a frame of func resuming at block pc may still access, all steps included."""
        key = (func, pc)
        got = self._future.get(key)
        if got is None:
            blocks = self.blocks(func)
            succ = self._succ[func]
            got = Summary()
            seen = {pc}
            todo = [pc]
            while todo:
                b = todo.pop()
                got.add(blocks[b])
                for n in succ[b]:
                    if n not in seen:
                        seen.add(n)
                        todo.append(n)
            self._future[key] = got
        return got


class _Scope:
    """The abstract values of one function's names, and the walk over its statements."""

    def __init__(self, analyzer: Analyzer, func: FunctionType, fdef: ast.FunctionDef) -> None:
        self.an = analyzer
        self.func = func
        self.params = [a.arg for a in fdef.args.args]
        stores: dict[str, list[ast.AST]] = {}
        assigned: dict[str, list[ast.expr]] = {}  # plain `name = value` assignments
        for node in _scope_nodes(fdef.body):
            for name in _stored_names(node):
                stores.setdefault(name, []).append(node)
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                assigned.setdefault(node.targets[0].id, []).append(node.value)
        self.locals = (
            set(stores)
            | set(self.params)
            | {a.arg for a in fdef.args.kwonlyargs + fdef.args.posonlyargs}
        )
        if fdef.args.vararg:
            self.locals.add(fdef.args.vararg.arg)
        if fdef.args.kwarg:
            self.locals.add(fdef.args.kwarg.arg)
        # Names bound in nested scopes (comprehensions, lambdas, inner functions) may shadow
        # the function's own: never trust an alias for them.
        shadowed = _nested_bindings(fdef)
        self.locals |= shadowed
        self.alias: dict[str, Path] = {
            p: (("p", i), ())
            for i, p in enumerate(self.params)
            if p not in stores and p not in shadowed
        }
        # A local assigned exactly once, from a path: an alias of that path.
        changed = True
        while changed:
            changed = False
            for name, nodes in stores.items():
                if name in self.alias or name in self.params or name in shadowed:
                    continue
                if len(nodes) != 1 or len(assigned.get(name, ())) != 1:
                    continue
                path = self.path(assigned[name][0])
                if path[0] != TOP:
                    self.alias[name] = path
                    changed = True
        # Control locals: every store a plain assignment of constants.
        self.control: set[str] = set()
        for name in set(stores) | set(self.params):
            if name in shadowed:
                continue
            values = assigned.get(name, [])
            if len(stores.get(name, [])) != len(values):
                continue
            if all(self.constants(v) is not None for v in values):
                self.control.add(name)

    def constants(self, expr: ast.expr) -> frozenset[Any] | None:
        """The values expr may have when it is made of constants only, else None."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, (int, str, type(None))):
            return frozenset({expr.value})
        if isinstance(expr, ast.Name) and expr.id not in self.locals:
            obj = self.lookup(expr.id)
            if isinstance(obj, (int, str)) and not isinstance(obj, bool):
                return frozenset({obj})
            return None
        if isinstance(expr, ast.IfExp):
            a, b = self.constants(expr.body), self.constants(expr.orelse)
            return None if a is None or b is None else a | b
        return None

    def condition(self, test: ast.expr) -> tuple[str, bool, frozenset[Any]] | None:
        """test as a condition on one control local (`pc == X`, `pc in (X, Y)`, `or`)."""
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            left, op, right = test.left, test.ops[0], test.comparators[0]
            if not (isinstance(left, ast.Name) and left.id in self.control):
                return None
            if isinstance(op, (ast.Eq, ast.NotEq)):
                vals = self.constants(right)
                if vals is None or len(vals) != 1:
                    return None
                return (left.id, isinstance(op, ast.Eq), vals)
            if isinstance(op, (ast.In, ast.NotIn)) and isinstance(
                right, (ast.Tuple, ast.List, ast.Set)
            ):
                got: frozenset[Any] = frozenset()
                for elt in right.elts:
                    one = self.constants(elt)
                    if one is None or len(one) != 1:
                        return None
                    got |= one
                return (left.id, isinstance(op, ast.In), got)
            return None
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
            parts = [self.condition(v) for v in test.values]
            if any(p is None or not p[1] for p in parts):
                return None
            names = {p[0] for p in parts if p is not None}
            if len(names) != 1:
                return None
            allowed: frozenset[Any] = frozenset()
            for p in parts:
                assert p is not None
                allowed |= p[2]
            return (names.pop(), True, allowed)
        return None

    def lookup(self, name: str) -> Any:
        """The object a free name refers to (closure, globals, builtins), or None."""
        code = self.func.__code__
        if name in code.co_freevars and self.func.__closure__ is not None:
            try:
                return self.func.__closure__[code.co_freevars.index(name)].cell_contents
            except ValueError:
                return MISSING
        if name in self.func.__globals__:
            return self.func.__globals__[name]
        return getattr(builtins, name, MISSING)

    def path(self, expr: ast.AST) -> Path:
        if isinstance(expr, ast.Name):
            if expr.id in self.alias:
                return self.alias[expr.id]
            if expr.id in self.locals:
                return (TOP, ())
            obj = self.lookup(expr.id)
            if isinstance(obj, Struct) and id(obj) in self.an.slot_of:
                return (("o", self.an.slot_of[id(obj)]), ())
            return (TOP, ())
        if isinstance(expr, ast.Attribute):
            root, chain = self.path(expr.value)
            if root == TOP:
                return (TOP, ())
            return (root, chain + (expr.attr,))
        return (TOP, ())

    def statement(self, stmt: ast.AST, out: Summary, guard: Guard = ()) -> None:
        """Add what stmt may access (under guard) to out; an `if` on a control local
        guards its branches."""
        if isinstance(stmt, ast.If):
            cond = self.condition(stmt.test)
            self.scan(stmt.test, out, guard)
            inner = guard + ((cond,) if cond is not None else ())
            for sub in stmt.body:
                self.statement(sub, out, inner)
            other = guard + (((cond[0], not cond[1], cond[2]),) if cond is not None else ())
            for sub in stmt.orelse:
                self.statement(sub, out, other)
            return
        self.scan(stmt, out, guard)

    def scan(self, stmt: ast.AST, out: Summary, guard: Guard) -> None:
        action = _call_action(stmt)
        for node in ast.walk(stmt):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in self.control
            ):
                out.transitions.add((node.targets[0].id, self.constants(node.value), guard))
            if isinstance(node, ast.Attribute):
                if node.attr in ("__dict__", "__class__", "__setattr__", "__getattribute__"):
                    out.anything = True
                root, chain = self.path(node.value)
                for getter in self.an.methods.get(node.attr, []):
                    self.include(getter, [node.value], {}, out, guard)  # a property (or method)
                write = isinstance(node.ctx, (ast.Store, ast.Del))
                out.accesses.add((root, chain, node.attr, write, guard))
                if write and isinstance(node.ctx, ast.Store):
                    continue
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Attribute):
                root, chain = self.path(node.target.value)
                out.accesses.add((root, chain, node.target.attr, False, guard))
            elif isinstance(node, ast.Call):
                self.call(node.func, node.args, node.keywords, out, guard)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id not in self.locals:
                    obj = self.lookup(node.id)
                    if isinstance(obj, FunctionType) and not _called_here(node, stmt):
                        # a function handed on as a value may be called by its receiver
                        self.include(obj, [], {}, out, guard)
                    elif isinstance(obj, str) and obj in DYNAMIC:
                        out.anything = True
                    elif obj in (getattr, setattr, delattr, vars, exec, eval, globals):
                        out.anything = True
        if action is not None:
            func_expr, args, keywords = action
            self.call(func_expr, args, keywords, out, guard)

    def call(
        self,
        func_expr: ast.expr,
        args: list[ast.expr],
        keywords: list[ast.keyword],
        out: Summary,
        guard: Guard,
    ) -> None:
        if isinstance(func_expr, ast.Name):
            if func_expr.id in self.locals:
                # a call through a parameter: resolved from the frame's value at run time
                path = self.alias.get(func_expr.id)
                if path is not None and path[0][0] == "p" and not path[1]:
                    out.calls.add((path[0][1], guard))
                else:
                    out.anything = True
                return
            target = self.lookup(func_expr.id)
        elif isinstance(func_expr, ast.Attribute):
            base = func_expr.value
            module = self.lookup(base.id) if isinstance(base, ast.Name) else None
            if (
                isinstance(base, ast.Name)
                and base.id not in self.locals
                and isinstance(module, ModuleType)
            ):
                target = getattr(module, func_expr.attr, None)
            elif isinstance(module, type) and not issubclass(module, Struct):
                target = getattr(module, func_expr.attr, None)
                if not isinstance(target, FunctionType):
                    return
            else:
                # a method: of a Struct class of the model (self = the receiver), or of a
                # built-in value (str.startswith, tuple.index), which touches no Struct; a
                # field may hold a function, and calling it could do anything
                if func_expr.attr in self.an.field_names:
                    out.anything = True
                for method in self.an.methods.get(func_expr.attr, []):
                    self.include(method, [base, *args], _kw(keywords), out, guard)
                return
        elif isinstance(func_expr, ast.Lambda):
            return  # its body is walked as part of the statement
        else:
            out.anything = True
            return
        if isinstance(target, FunctionType):
            self.include(target, list(args), _kw(keywords), out, guard)
        elif target in (getattr, setattr, delattr, vars, exec, eval, globals):
            out.anything = True
        elif target is MISSING or (target is None and not isinstance(func_expr, ast.Name)):
            out.anything = True  # an unresolvable name: assume the worst
        # else: a class, a built-in, or a non-callable such as a hook set to None (calling
        # it raises, which is an error outcome of the step, not an access)

    def passed_call(self, arg: ast.expr | None, out: Summary, guard: Guard) -> None:
        """A callee calls what this argument passes (None: the callee's default, which
        Analyzer.function already counts)."""
        if arg is None:
            return
        if isinstance(arg, ast.Name) and arg.id not in self.locals:
            target = self.lookup(arg.id)
            if isinstance(target, FunctionType):
                out.add(self.an.function(target).detached(guard))
                return
            if target is None:
                return  # calling None raises: an error outcome, not an access
        if isinstance(arg, ast.Name):
            path = self.alias.get(arg.id)
            if path is not None and path[0][0] == "p" and not path[1]:
                out.calls.add((path[0][1], guard))
                return
        if isinstance(arg, ast.Constant) and arg.value is None:
            return
        out.anything = True

    def include(
        self,
        callee: FunctionType,
        args: list[ast.expr],
        kwargs: dict[str, ast.expr],
        out: Summary,
        guard: Guard,
    ) -> None:
        """The callee's accesses, its parameters replaced by the arguments; its own guards
        (on its locals) are dropped, the call's guard applies."""
        summary = self.an.function(callee)
        if summary.anything:
            out.anything = True
        try:
            names = list(inspect.signature(callee).parameters)
        except (TypeError, ValueError):
            names = []
        bound: dict[int, Path] = {}
        given: dict[int, ast.expr] = {}
        for i, arg in enumerate(args):
            if i < len(names) and not isinstance(arg, ast.Starred):
                bound[i] = self.path(arg)
                given[i] = arg
            elif isinstance(arg, ast.Starred):
                out.anything = out.anything or bool(summary.calls)
        for key, arg in kwargs.items():
            if key in names:
                bound[names.index(key)] = self.path(arg)
                given[names.index(key)] = arg
        for j, _inner in summary.calls:
            self.passed_call(given.get(j), out, guard)
        for root, chain, fname, write, _inner in summary.accesses:
            if root[0] == "p":
                root2, chain2 = bound.get(root[1], (TOP, ()))
                if root2 == TOP:
                    out.accesses.add((TOP, (), fname, write, guard))
                else:
                    out.accesses.add((root2, chain2 + chain, fname, write, guard))
            else:
                out.accesses.add((root, chain, fname, write, guard))


def _kw(keywords: list[ast.keyword]) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in keywords if k.arg is not None}


def _call_action(stmt: ast.AST) -> tuple[ast.expr, list[ast.expr], list[ast.keyword]] | None:
    """A compiled `yield from f(args)`: `return (CALL, next, f, (args), {kwargs})`."""
    if not isinstance(stmt, ast.Return) or not isinstance(stmt.value, ast.Tuple):
        return None
    elts = stmt.value.elts
    if len(elts) != 5 or not (isinstance(elts[0], ast.Constant) and elts[0].value == CALL):
        return None
    args = elts[3].elts if isinstance(elts[3], ast.Tuple) else []
    keywords: list[ast.keyword] = []
    if isinstance(elts[4], ast.Dict):
        for k, v in zip(elts[4].keys, elts[4].values):
            if isinstance(k, ast.Constant) and isinstance(k.value, str):
                keywords.append(ast.keyword(arg=k.value, value=v))
    return elts[2], list(args), keywords


def _called_here(name: ast.Name, stmt: ast.AST) -> bool:
    """Whether name is the callee of a call (or of a compiled `yield from`) in stmt."""
    for node in ast.walk(stmt):
        if isinstance(node, ast.Call) and node.func is name:
            return True
    action = _call_action(stmt)
    return action is not None and action[0] is name


def _parse(func: FunctionType) -> ast.FunctionDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(func))
        node = ast.parse(source).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return None
    return node if isinstance(node, ast.FunctionDef) else None


def _scope_nodes(stmts: list[ast.stmt]) -> list[ast.AST]:
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(stmts)
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(
            node,
            (
                ast.FunctionDef,
                ast.AsyncFunctionDef,
                ast.ClassDef,
                ast.Lambda,
                ast.ListComp,
                ast.SetComp,
                ast.DictComp,
                ast.GeneratorExp,
            ),
        ):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _nested_bindings(fdef: ast.FunctionDef) -> set[str]:
    """Every name bound inside a nested scope of fdef (its parameters and stores)."""
    out: set[str] = set()
    for node in ast.walk(fdef):
        if node is fdef:
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            out |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
            out |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
            for sub in ast.walk(node):
                out.update(_stored_names(sub))
        elif isinstance(node, ast.NamedExpr):
            out.add(node.target.id)  # a walrus in a comprehension binds the function's name
        elif isinstance(node, ast.comprehension):
            for sub in ast.walk(node.target):
                out.update(_stored_names(sub))
    return out


def _stored_names(node: ast.AST) -> list[str]:
    """Names node binds in the function's own scope."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return [node.id]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.NamedExpr):
        return [node.target.id]
    return []


def struct_methods(classes: set[type]) -> dict[str, list[FunctionType]]:
    """Functions defined on the model's Struct classes (methods and property getters)."""
    out: dict[str, list[FunctionType]] = {}
    for cls in classes:
        for klass in cls.__mro__:
            if klass is Struct or klass is object:
                continue
            for name, value in vars(klass).items():
                fn = value.fget if isinstance(value, property) else value
                if isinstance(fn, (staticmethod, classmethod)):
                    fn = fn.__func__
                if isinstance(fn, FunctionType) and fn not in out.get(name, []):
                    out.setdefault(name, []).append(fn)
    return out
