"""Turn an actor's generator function into an explicit-state step machine.

Python generators cannot be copied or rewound, yet an explicit-state search must branch from
any state it has stored. So, as PlusCal turns labelled code into TLA+ actions, kvmsim reads the
source of each generator function once and cuts it at its ``yield`` points into *blocks*: plain
Python functions that take the frame's locals as a list and return what happens next. A frame
is then just ``(function, block index, locals tuple)``: hashable, copyable, resumable.

The model author keeps writing ordinary generator code. Supported at statement level:

* ``yield LABEL`` ends an atomic step; LABEL (any expression, usually a string) names it.
* ``yield from f(...)`` / ``x = yield from f(...)`` calls another actor function (a sub-step
  sequence); the call itself is not a step boundary.
* ``if``/``while``/``for``/``break``/``continue``/``return`` around such statements.

Not supported around a yield (refused with file and line): ``try``, ``with``, ``while``/``for``
with ``else``, ``yield`` inside an expression, ``global``/``nonlocal``. Code between two yields
may use any Python at all; it runs atomically.

Locals that are dead at a resume point are dropped from the frame (set to UNSET), so two
states that differ only in a dead temporary are recognised as one, as SPIN models reset dead
locals by hand.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import Any

# Actions a block returns: (kind, ...)
YIELD = 0  # (YIELD, next_pc, label)
CALL = 1  # (CALL, next_pc, func, args, kwargs)
RETURN = 2  # (RETURN, value)
JUMP = 3  # (JUMP, next_pc)


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

_L = "_kv_L"  # the frame's locals list inside a block
_S = "_kv_sent"  # value passed into the block (a callee's return value)
_C = "_kv_C"  # closure cells of the function


_TYPE_PARAMS: dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}


class CompileError(Exception):
    """The actor function uses a construct the step compiler cannot cut at a yield."""

    def __init__(self, message: str, func: Callable[..., Any], node: ast.AST | None) -> None:
        code = func.__code__
        line = code.co_firstlineno + (getattr(node, "lineno", 1) - 1 if node else 0)
        self.filename = code.co_filename
        self.lineno = line
        super().__init__(f"{code.co_filename}:{line}: in {func.__qualname__}: {message}")


@dataclass
class Block:
    stmts: list[ast.stmt] = field(default_factory=list)
    succ: set[int] = field(default_factory=set)


@dataclass(eq=False)
class Program:
    """The compiled form of one generator function."""

    name: str
    qualname: str
    filename: str
    firstlineno: int
    params: tuple[str, ...]
    local_names: tuple[str, ...]
    blocks: list[Callable[[list[Any], Any, Any], tuple[Any, ...]]]
    block_lines: list[int]
    live: list[frozenset[int]]  # per block: local slots live on entry
    dead: list[tuple[int, ...]] = field(default_factory=list)  # per block: the other slots

    def __post_init__(self) -> None:
        if not self.dead:
            n = len(self.local_names)
            self.dead = [tuple(i for i in range(n) if i not in live) for live in self.live]

    def bind(self, func: FunctionType, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        """Build the initial locals list for a call, as Python's own argument binding would."""
        values = [UNSET] * len(self.local_names)
        nparams = len(self.params)
        if len(args) > nparams:
            raise TypeError(f"{self.qualname}() takes {nparams} arguments, got {len(args)}")
        for i, value in enumerate(args):
            values[i] = value
        for key, value in kwargs.items():
            try:
                i = self.params.index(key)
            except ValueError:
                raise TypeError(f"{self.qualname}() got an unexpected argument {key!r}") from None
            if values[i] is not UNSET:
                raise TypeError(f"{self.qualname}() got multiple values for {key!r}")
            values[i] = value
        # Defaults come from the function object, not from the compiled program: one code
        # object (one Program) can back several functions with different defaults, such as
        # `def f(w, i=i)` written in a loop.
        defaults = func.__defaults__ or ()
        first_default = nparams - len(defaults)
        for i, name in enumerate(self.params):
            if values[i] is UNSET:
                if i < first_default:
                    raise TypeError(f"{self.qualname}() missing argument {name!r}")
                values[i] = defaults[i - first_default]
        return values


# Keyed by code object and globals: a variant rebinds kernel functions to patched globals,
# and the same code must then resolve its names in the variant's namespace.
_cache: dict[tuple[CodeType, int], Program] = {}


def compile_actor(func: Callable[..., Any]) -> Program:
    """Compile (once per code object) a generator function into a Program."""
    if not isinstance(func, FunctionType):
        raise TypeError(f"{func!r} is not a Python function")
    key = (func.__code__, id(func.__globals__))
    prog = _cache.get(key)
    if prog is None:
        if not inspect.isgeneratorfunction(func):
            raise CompileError(
                "an actor or a function called with `yield from` must be a generator "
                "function (contain at least one `yield`)",
                func,
                None,
            )
        prog = _Compiler(func).compile()
        _cache[key] = prog
    return prog


def control_flow(func: FunctionType) -> tuple[list[Block], ast.FunctionDef]:
    """func's blocks, numbered as in its Program, before locals are rewritten (for static
    analyses such as the partial-order reduction's), and its parsed definition."""
    compiler = _Compiler(func)
    return compiler.build_cfg(), compiler.fdef


def _walk_scope(stmts: list[ast.stmt]) -> list[ast.AST]:
    """Nodes of stmts, not descending into nested function or class bodies."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = list(stmts)
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _first_yield(node: ast.AST) -> ast.AST | None:
    found = [n for n in ast.walk(node) if isinstance(n, (ast.Yield, ast.YieldFrom))]
    return min(found, key=lambda n: (n.lineno, n.col_offset)) if found else None


def _contains_yield(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Yield, ast.YieldFrom)):
            return True
    return False


class _Names(ast.NodeVisitor):
    """Collect a function's local names (parameters and assignment targets)."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    def _add(self, name: str) -> None:
        if name not in self.stored:
            self.stored.append(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._add(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._add(node.name)  # nested defs are locals; their bodies are another scope

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._add(node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def _comp(self, node: ast.AST) -> None:
        # Comprehension targets are their own scope; walrus inside would leak, ignore it.
        pass

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comp  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add((alias.asname or alias.name).split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self._add(alias.asname or alias.name)


class _Rewriter(ast.NodeTransformer):
    """Rewrite local and free names into list / cell accesses; leave nested scopes' own names."""

    def __init__(self, slots: dict[str, int], cells: dict[str, int]) -> None:
        self.slots = slots
        self.cells = cells
        self.shadow: list[set[str]] = []

    def _shadowed(self, name: str) -> bool:
        return any(name in s for s in self.shadow)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if self._shadowed(node.id):
            return node
        if node.id in self.slots:
            sub = ast.Subscript(
                value=ast.Name(id=_L, ctx=ast.Load()),
                slice=ast.Constant(self.slots[node.id]),
                ctx=node.ctx,
            )
            return ast.copy_location(sub, node)
        if node.id in self.cells and isinstance(node.ctx, ast.Load):
            cell = ast.Attribute(
                value=ast.Subscript(
                    value=ast.Name(id=_C, ctx=ast.Load()),
                    slice=ast.Constant(self.cells[node.id]),
                    ctx=ast.Load(),
                ),
                attr="cell_contents",
                ctx=ast.Load(),
            )
            return ast.copy_location(cell, node)
        return node

    def visit_Delete(self, node: ast.Delete) -> ast.AST | list[ast.stmt]:
        # `del x` on a frame local would delete an item of the locals list and shift every
        # later slot: clear the slot instead (to None; x is dead from here on anyway).
        out: list[ast.stmt] = []
        others: list[ast.expr] = []
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id in self.slots:
                if not self._shadowed(target.id):
                    store = ast.copy_location(ast.Name(id=target.id, ctx=ast.Store()), target)
                    clear = ast.Assign(targets=[self.visit(store)], value=ast.Constant(None))
                    out.append(ast.copy_location(clear, node))
                    continue
            others.append(self.visit(target))
        if others:
            out.insert(0, ast.copy_location(ast.Delete(targets=others), node))
        return out or ast.copy_location(ast.Pass(), node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        # A frame local becomes `_kv_L[i]`, which an annotated assignment cannot target:
        # drop the annotation (Python does not evaluate a local's annotation either).
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        assign = ast.Assign(targets=[node.target], value=node.value)
        out: ast.AST = self.visit(ast.copy_location(assign, node))
        return out

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        # `(x := v)` on a frame local: store into the list and give the value back,
        # `(_kv_L.__setitem__(i, v), _kv_L[i])[1]`; the walrus target must stay a plain name.
        value = self.visit(node.value)
        name = node.target.id
        if self._shadowed(name) or name not in self.slots:
            node.value = value
            return node
        slot = ast.Constant(self.slots[name])
        store = ast.Call(
            func=ast.Attribute(
                value=ast.Name(id=_L, ctx=ast.Load()), attr="__setitem__", ctx=ast.Load()
            ),
            args=[slot, value],
            keywords=[],
        )
        load = ast.Subscript(value=ast.Name(id=_L, ctx=ast.Load()), slice=slot, ctx=ast.Load())
        both = ast.Tuple(elts=[store, load], ctx=ast.Load())
        out = ast.Subscript(value=both, slice=ast.Constant(1), ctx=ast.Load())
        return ast.copy_location(out, node)

    def _scope(self, node: ast.AST, names: set[str]) -> ast.AST:
        self.shadow.append(names)
        try:
            self.generic_visit(node)
        finally:
            self.shadow.pop()
        return node

    def _comp(self, node: ast.AST) -> ast.AST:
        names: set[str] = set()
        for gen in getattr(node, "generators", []):
            for sub in ast.walk(gen.target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
        return self._scope(node, names)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comp

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return self._scope(node, _arg_names(node.args))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST | list[ast.stmt]:
        # Decorators and defaults are evaluated in the actor's scope; the body is its own
        # scope, where the nested function's parameters and locals shadow the actor's.
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args.defaults = [self.visit(d) for d in node.args.defaults]
        node.args.kw_defaults = [
            self.visit(d) if d is not None else None for d in node.args.kw_defaults
        ]
        inner = _Names()
        for stmt in node.body:
            inner.visit(stmt)
        self.shadow.append(_arg_names(node.args) | set(inner.stored))
        try:
            node.body = self.visit_stmts(node.body)
        finally:
            self.shadow.pop()
        return self._bind([node], node, [node.name])

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST | list[ast.stmt]:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.bases = [self.visit(b) for b in node.bases]
        inner = _Names()
        for stmt in node.body:
            inner.visit(stmt)
        self.shadow.append(set(inner.stored))
        try:
            node.body = self.visit_stmts(node.body)
        finally:
            self.shadow.pop()
        return self._bind([node], node, [node.name])

    def visit_Import(self, node: ast.Import) -> ast.AST | list[ast.stmt]:
        names = [(a.asname or a.name).split(".")[0] for a in node.names]
        return self._bind([node], node, names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST | list[ast.stmt]:
        return self._bind([node], node, [a.asname or a.name for a in node.names])

    def visit_stmts(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in stmts:
            new = self.visit(stmt)
            out.extend(new if isinstance(new, list) else [new])
        return out

    def _bind(self, stmts: list[ast.stmt], node: ast.AST, names: list[str]) -> list[ast.stmt]:
        """def, class and import bind a name in the block function; copy it to the frame."""
        for name in names:
            if name in self.slots and not self._shadowed(name):
                target = ast.Subscript(
                    value=ast.Name(id=_L, ctx=ast.Load()),
                    slice=ast.Constant(self.slots[name]),
                    ctx=ast.Store(),
                )
                assign = ast.Assign(targets=[target], value=ast.Name(id=name, ctx=ast.Load()))
                stmts.append(ast.copy_location(assign, node))
        return stmts


def _arg_names(a: ast.arguments) -> set[str]:
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    if a.vararg:
        names.add(a.vararg.arg)
    if a.kwarg:
        names.add(a.kwarg.arg)
    return names


class _Jumps(ast.NodeTransformer):
    """Inside a block, turn break/continue/return that leave the block into actions."""

    def __init__(self, brk: int | None, cont: int | None) -> None:
        self.brk = brk
        self.cont = cont

    def visit_For(self, node: ast.For | ast.While) -> ast.AST:
        # break/continue inside a loop that stays within the block belong to that loop,
        # but a return inside it still leaves the function. The loop's `else:` runs after
        # it, so a break or continue there belongs to the enclosing loop.
        saved = (self.brk, self.cont)
        self.brk = self.cont = None
        node.body = [self.visit(s) for s in node.body]
        self.brk, self.cont = saved
        node.orelse = [self.visit(s) for s in node.orelse]
        return node

    visit_While = visit_For  # type: ignore[assignment]

    def visit_FunctionDef(self, node: ast.AST) -> ast.AST:
        return node

    visit_Lambda = visit_ClassDef = visit_FunctionDef

    def visit_Break(self, node: ast.Break) -> ast.AST:
        if self.brk is None:
            return node
        return ast.copy_location(_action(JUMP, self.brk), node)

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        if self.cont is None:
            return node
        return ast.copy_location(_action(JUMP, self.cont), node)

    def visit_Return(self, node: ast.Return) -> ast.AST:
        value = node.value or ast.Constant(None)
        ret = ast.Return(value=ast.Tuple(elts=[ast.Constant(RETURN), value], ctx=ast.Load()))
        return ast.copy_location(ret, node)


def _action(kind: int, *parts: ast.expr | int) -> ast.Return:
    elts: list[ast.expr] = [ast.Constant(kind)]
    for p in parts:
        elts.append(ast.Constant(p) if isinstance(p, int) else p)
    return ast.Return(value=ast.Tuple(elts=elts, ctx=ast.Load()))


@dataclass
class _Loop:
    head: int
    exit: int


class _Compiler:
    def __init__(self, func: FunctionType) -> None:
        self.func = func
        try:
            source = textwrap.dedent(inspect.getsource(func))
        except (OSError, TypeError) as exc:
            raise CompileError(f"cannot read the source: {exc}", func, None) from None
        tree = ast.parse(source)
        node = tree.body[0]
        if not isinstance(node, ast.FunctionDef):
            raise CompileError("actors must be plain `def` generator functions", func, None)
        self.fdef = node
        self.blocks: list[Block] = []
        self.block_nodes: list[ast.AST | None] = []
        self.loops: list[_Loop] = []
        self.tmp = 0

        a = node.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
            raise CompileError("actor functions take plain positional parameters", func, node)
        self.params = tuple(x.arg for x in a.args)
        for sub in _walk_scope(node.body):
            if isinstance(sub, (ast.Global, ast.Nonlocal)):
                kind = "global" if isinstance(sub, ast.Global) else "nonlocal"
                raise self.fail(
                    f"`{kind}` is not supported in an actor function: keep shared state in "
                    "Struct fields",
                    sub,
                )
        names = _Names()
        for stmt in node.body:
            names.visit(stmt)
        local_names = list(self.params) + [n for n in names.stored if n not in self.params]
        self.local_names = local_names
        self.slots = {n: i for i, n in enumerate(local_names)}
        self.cells = {n: i for i, n in enumerate(func.__code__.co_freevars)}

    # -- errors -----------------------------------------------------------------------
    def fail(self, message: str, node: ast.AST) -> CompileError:
        # self.fdef line numbers are relative to the dedented source of the function.
        return CompileError(message, self.func, node)

    def line_of(self, node: ast.AST) -> int:
        return self.func.__code__.co_firstlineno + getattr(node, "lineno", 1) - 1

    # -- CFG construction -------------------------------------------------------------
    def new_block(self, node: ast.AST | None = None) -> int:
        self.blocks.append(Block())
        self.block_nodes.append(node)
        return len(self.blocks) - 1

    def new_local(self, stem: str) -> str:
        self.tmp += 1
        name = f"_kv_{stem}{self.tmp}"
        self.slots[name] = len(self.local_names)
        self.local_names.append(name)
        return name

    def emit(self, b: int, stmt: ast.stmt) -> None:
        self.blocks[b].stmts.append(stmt)

    def terminate(self, b: int, ret: ast.Return, *succ: int) -> None:
        self.blocks[b].stmts.append(ret)
        self.blocks[b].succ.update(succ)

    def compile_body(self, stmts: list[ast.stmt], start: int) -> int | None:
        """Append stmts to block start; return the block where control falls through, or None."""
        b: int | None = start
        for stmt in stmts:
            if b is None:
                return None  # unreachable code after a terminator
            if not _contains_yield(stmt):
                self.emit(b, self.plain(stmt))
                if isinstance(stmt, (ast.Return, ast.Raise)):
                    return None
                if isinstance(stmt, (ast.Break, ast.Continue)) and self.loops:
                    loop = self.loops[-1]
                    self.blocks[b].succ.add(loop.exit if isinstance(stmt, ast.Break) else loop.head)
                    return None
                self._note_jumps(stmt, b)
                continue
            b = self.compile_yielding(stmt, b)
        return b

    def _note_jumps(self, stmt: ast.stmt, b: int) -> None:
        """Record CFG edges for break/continue nested in plain statements."""
        if not self.loops:
            return
        loop = self.loops[-1]
        for sub in _walk_same_loop(stmt):
            if isinstance(sub, ast.Break):
                self.blocks[b].succ.add(loop.exit)
            elif isinstance(sub, ast.Continue):
                self.blocks[b].succ.add(loop.head)

    def plain(self, stmt: ast.stmt) -> ast.stmt:
        loop = self.loops[-1] if self.loops else None
        stmt = _Jumps(loop.exit if loop else None, loop.head if loop else None).visit(stmt)
        return stmt

    def compile_yielding(self, stmt: ast.stmt, b: int) -> int | None:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Yield):
            if _contains_yield(stmt.value.value) if stmt.value.value else False:
                raise self.fail("nested yield in a label", stmt)
            label = stmt.value.value or ast.Constant(None)
            nxt = self.new_block(stmt)
            self.terminate(b, _action(YIELD, nxt, label), nxt)
            return nxt
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.YieldFrom):
            return self.call(stmt.value, None, b, stmt)
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(stmt.value, ast.YieldFrom):
            targets: list[ast.expr] = (
                list(stmt.targets) if isinstance(stmt, ast.Assign) else [stmt.target]
            )
            return self.call(stmt.value, targets, b, stmt)
        if isinstance(stmt, ast.Return) and isinstance(stmt.value, ast.YieldFrom):
            tmp = self.new_local("ret")
            nb = self.call(stmt.value, [ast.Name(id=tmp, ctx=ast.Store())], b, stmt)
            assert nb is not None
            self.emit(nb, self.plain(ast.Return(value=ast.Name(id=tmp, ctx=ast.Load()))))
            return None
        if isinstance(stmt, ast.If):
            if _contains_yield(stmt.test):
                raise self.fail(
                    "`yield` inside an if-condition: assign it first (`r = yield from f()`)", stmt
                )
            then_b, else_b, join = self.new_block(stmt), self.new_block(stmt), self.new_block(stmt)
            self.terminate(
                b,
                ast.Return(
                    value=ast.IfExp(
                        test=stmt.test,
                        body=_tuple(JUMP, then_b),
                        orelse=_tuple(JUMP, else_b),
                    )
                ),
                then_b,
                else_b,
            )
            for branch, start in ((stmt.body, then_b), (stmt.orelse, else_b)):
                end = self.compile_body(branch, start)
                if end is not None:
                    self.terminate(end, _action(JUMP, join), join)
            return join
        if isinstance(stmt, ast.While):
            if stmt.orelse:
                raise self.fail("`while ... else` around a yield is not supported", stmt)
            if _contains_yield(stmt.test):
                raise self.fail("`yield` inside a while-condition is not supported", stmt)
            head, body, exit_ = self.new_block(stmt), self.new_block(stmt), self.new_block(stmt)
            self.terminate(b, _action(JUMP, head), head)
            self.terminate(
                head,
                ast.Return(
                    value=ast.IfExp(
                        test=stmt.test, body=_tuple(JUMP, body), orelse=_tuple(JUMP, exit_)
                    )
                ),
                body,
                exit_,
            )
            self.loops.append(_Loop(head, exit_))
            end = self.compile_body(stmt.body, body)
            self.loops.pop()
            if end is not None:
                self.terminate(end, _action(JUMP, head), head)
            return exit_
        if isinstance(stmt, ast.For):
            if stmt.orelse:
                raise self.fail("`for ... else` around a yield is not supported", stmt)
            if _contains_yield(stmt.iter):
                raise self.fail("`yield` inside a for-iterable is not supported", stmt)
            seq, idx = self.new_local("seq"), self.new_local("i")
            self.emit(b, _assign(seq, ast.Call(ast.Name("tuple", ast.Load()), [stmt.iter], [])))
            self.emit(b, _assign(idx, ast.Constant(0)))
            head, body, exit_ = self.new_block(stmt), self.new_block(stmt), self.new_block(stmt)
            self.terminate(b, _action(JUMP, head), head)
            cond = ast.Compare(
                left=ast.Name(idx, ast.Load()),
                ops=[ast.Lt()],
                comparators=[
                    ast.Call(ast.Name("len", ast.Load()), [ast.Name(seq, ast.Load())], [])
                ],
            )
            self.terminate(
                head,
                ast.Return(
                    value=ast.IfExp(test=cond, body=_tuple(JUMP, body), orelse=_tuple(JUMP, exit_))
                ),
                body,
                exit_,
            )
            self.emit(
                body,
                ast.Assign(
                    targets=[stmt.target],
                    value=ast.Subscript(
                        ast.Name(seq, ast.Load()), ast.Name(idx, ast.Load()), ast.Load()
                    ),
                ),
            )
            self.emit(
                body,
                ast.AugAssign(
                    target=ast.Name(idx, ast.Store()), op=ast.Add(), value=ast.Constant(1)
                ),
            )
            self.loops.append(_Loop(head, exit_))
            end = self.compile_body(stmt.body, body)
            self.loops.pop()
            if end is not None:
                self.terminate(end, _action(JUMP, head), head)
            return exit_
        # Point at the offending yield itself: it may sit lines below the statement's start.
        where = _first_yield(stmt) or stmt
        if isinstance(stmt, (ast.Try, ast.TryStar, ast.With)):
            kind = "try" if isinstance(stmt, (ast.Try, ast.TryStar)) else "with"
            raise self.fail(
                f"a yield inside `{kind}` (line {self.line_of(stmt)}) is not supported", where
            )
        raise self.fail(
            "yield is allowed only as `yield LABEL`, `yield from f(...)`, "
            "`x = yield from f(...)` or `return (yield from f(...))`",
            where,
        )

    def call(
        self, yf: ast.YieldFrom, targets: list[ast.expr] | None, b: int, stmt: ast.stmt
    ) -> int:
        callee = yf.value
        if (
            not isinstance(callee, ast.Call)
            or any(isinstance(a, ast.Starred) for a in callee.args)
            or any(k.arg is None for k in callee.keywords)
        ):
            raise self.fail(
                "`yield from` must call a function directly: `yield from f(a, b)`", stmt
            )
        if _contains_yield(callee):
            raise self.fail("nested yield inside a `yield from` call", stmt)
        nxt = self.new_block(stmt)
        args = ast.Tuple(elts=list(callee.args), ctx=ast.Load())
        kwargs = ast.Dict(
            keys=[ast.Constant(k.arg) for k in callee.keywords],
            values=[k.value for k in callee.keywords],
        )
        self.terminate(b, _action(CALL, nxt, callee.func, args, kwargs), nxt)
        if targets:
            self.emit(nxt, ast.Assign(targets=targets, value=ast.Name(_S, ast.Load())))
        return nxt

    # -- liveness -----------------------------------------------------------------------
    def liveness(self) -> list[frozenset[int]]:
        uses: list[set[int]] = []
        defs: list[set[int]] = []
        for blk in self.blocks:
            u: set[int] = set()
            d: set[int] = set()
            may_leave = False
            for stmt in blk.stmts:
                u |= _loads_in(stmt, self.slots) - d
                # Only unconditional top-level assignments kill, and only while control
                # cannot have left the block: after `if c: break` (compiled to a return of a
                # jump action) the successor may still need the old value.
                if not may_leave:
                    d |= _kills(stmt, self.slots) - u
                may_leave = may_leave or _may_leave(stmt)
            uses.append(u)
            defs.append(d)
        live_in: list[set[int]] = [set(u) for u in uses]
        changed = True
        while changed:
            changed = False
            for i in reversed(range(len(self.blocks))):
                out: set[int] = set()
                for s in self.blocks[i].succ:
                    out |= live_in[s]
                new = uses[i] | (out - defs[i])
                if new != live_in[i]:
                    live_in[i] = new
                    changed = True
        return [frozenset(x) for x in live_in]

    # -- code generation --------------------------------------------------------------
    def build_cfg(self) -> list[Block]:
        """Cut the function into blocks (statements not yet rewritten, and successors)."""
        entry = self.new_block(self.fdef)
        end = self.compile_body(self.fdef.body, entry)
        if end is not None:
            self.terminate(end, _action(RETURN, ast.Constant(None)))
        return self.blocks

    def compile(self) -> Program:
        self.build_cfg()
        live = self.liveness()
        rewriter = _Rewriter(self.slots, self.cells)
        funcs: list[ast.stmt] = []
        for i, blk in enumerate(self.blocks):
            body = rewriter.visit_stmts(blk.stmts) or [_action(RETURN, ast.Constant(None))]
            fn = ast.FunctionDef(
                name=f"_kv_block_{i}",
                args=ast.arguments(
                    posonlyargs=[],
                    args=[ast.arg(_L), ast.arg(_S), ast.arg(_C)],
                    kwonlyargs=[],
                    kw_defaults=[],
                    defaults=[],
                ),
                body=body,
                decorator_list=[],
                returns=None,
                **_TYPE_PARAMS,
            )
            funcs.append(fn)
        module = ast.Module(body=funcs, type_ignores=[])
        # Keep the user's line numbers so tracebacks point into their file.
        ast.increment_lineno(module, self.func.__code__.co_firstlineno - 1)
        ast.fix_missing_locations(module)
        _fix_ranges(module)
        code = compile(module, self.func.__code__.co_filename, "exec")
        namespace: dict[str, Any] = {}
        exec(code, self.func.__globals__, namespace)  # noqa: S102 - compiling the user's own model
        blocks = [namespace[f"_kv_block_{i}"] for i in range(len(self.blocks))]
        lines = [
            (node.lineno + self.func.__code__.co_firstlineno - 1)
            if node is not None and hasattr(node, "lineno")
            else self.func.__code__.co_firstlineno
            for node in self.block_nodes
        ]
        return Program(
            name=self.func.__name__,
            qualname=self.func.__qualname__,
            filename=self.func.__code__.co_filename,
            firstlineno=self.func.__code__.co_firstlineno,
            params=self.params,
            local_names=tuple(self.local_names),
            blocks=blocks,
            block_lines=lines,
            live=live,
        )


def _tuple(*parts: int) -> ast.Tuple:
    return ast.Tuple(elts=[ast.Constant(p) for p in parts], ctx=ast.Load())


def _assign(name: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[ast.Name(name, ast.Store())], value=value)


def _walk_same_loop(stmt: ast.AST) -> list[ast.AST]:
    """Nodes of stmt, not descending into nested loop bodies (a nested loop's `else:`
    belongs to the enclosing loop) or nested scopes."""
    out: list[ast.AST] = []
    todo = [stmt]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.For, ast.While)):
                todo.extend(child.orelse)
            elif not isinstance(child, (ast.FunctionDef, ast.Lambda, ast.ClassDef)):
                todo.append(child)
    return out


def _loads_in(stmt: ast.AST, slots: dict[str, int]) -> set[int]:
    """Slots stmt may read (conservatively: reads in nested scopes count too)."""
    loads: set[int] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and node.id in slots:
            if isinstance(node.ctx, ast.Load):
                loads.add(slots[node.id])
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            if node.target.id in slots:
                loads.add(slots[node.target.id])
    return loads


def _kills(stmt: ast.stmt, slots: dict[str, int]) -> set[int]:
    """Slots stmt certainly overwrites: the plain-name targets of an assignment.

    Names stored elsewhere in the statement (a walrus in a conditional expression, a
    comprehension's own loop variable) may not be assigned, or not in this scope.
    """
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets = [stmt.target]
    else:
        return set()
    kills: set[int] = set()
    todo: list[ast.expr] = list(targets)
    while todo:
        t = todo.pop()
        if isinstance(t, ast.Name) and t.id in slots:
            kills.add(slots[t.id])
        elif isinstance(t, (ast.Tuple, ast.List)):
            todo.extend(t.elts)
        elif isinstance(t, ast.Starred):
            todo.append(t.value)
    return kills


def _may_leave(stmt: ast.stmt) -> bool:
    """Whether stmt can end the block early (break/continue/return become returns)."""
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Return):
            return True
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.Lambda, ast.ClassDef)):
                todo.append(child)
    return False


def _fix_ranges(tree: ast.AST) -> None:
    """Synthetic nodes inherit a start line; make every node's range well-formed."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.expr, ast.stmt, ast.excepthandler, ast.arg, ast.keyword)):
            end = node.end_lineno
            if end is None or end < node.lineno:
                node.end_lineno = node.lineno
            if node.end_lineno == node.lineno:
                col = node.col_offset or 0
                endcol = node.end_col_offset
                if endcol is None or endcol < col:
                    node.end_col_offset = col
