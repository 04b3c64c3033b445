"""Per-position futures for the partial-order reduction: what a frame may still touch, found
by running its code abstractly over the locals that steer its control flow.

The block-by-block analysis of engine/footprint.py treats each local on its own, so a loop
counter (``hop += 1; hpc = H_START if hop < NOPS else H_DONE``) looks as if it could take
any value forever and every block of the loop stays reachable. Here a frame's *position* is
its block and the concrete values of its steering locals (those a condition depends on,
directly or through assignments), and the analysis enumerates the positions the frame can
still reach: it executes each block's statements on those values, with the model's
constants (closure and global ints, strings, tuples) folded in. A value read from shared
state or returned by a call is *unknown*; a condition on an unknown value takes both
branches; ``choose`` over constant options takes each; ``await_`` drops the paths on which
its condition is false for certain (the step never completes there). A statement the
interpreter does not model makes every local it stores unknown. So the positions found
over-approximate every position a real run can reach, and the union of the accesses of the
statements executed on the way (scanned as footprint.py does) over-approximates what the
frame may still read or write. When the positions outnumber a limit the caller falls back
to the block-level analysis.

Assumption: the model's module-level and closure constants do not change while it runs
(actor functions cannot rebind them: the compiler refuses ``global`` and ``nonlocal``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from types import FunctionType
from typing import Any

from .compiler import CALL, JUMP, RETURN, UNSET, YIELD, compile_actor, control_flow
from .evaluate import UNKNOWN, Env, Evaluator, _calls, simple
from .footprint import Analyzer, Summary, _Scope, _stored_names
from .runtime import await_, choose

Node = tuple[int, Env]  # a position: (block, env)
MAX_PATHS = 512  # paths through one block before the analysis gives up on the frame
MAX_POSITIONS = 4096  # positions per frame before it gives up


class Giveup(Exception):
    """The frame's positions grow past the limits: use the coarser analysis."""


class FunctionFutures(Evaluator):
    """The abstract positions of one generator function and what its statements touch."""

    def __init__(self, analyzer: Analyzer, func: FunctionType) -> None:
        self.func = func
        program = compile_actor(func)
        self.cfg, fdef = control_flow(func)
        super().__init__(
            {name: i for i, name in enumerate(program.local_names)}, _Scope(analyzer, func, fdef)
        )
        steering = _steering(self.cfg, set(self.slots), self.scope)
        self.keep = [
            frozenset(i for i in live if program.local_names[i] in steering)
            for live in program.live
        ]
        self.width = len(program.local_names)
        self._edges: dict[Node, tuple[frozenset[int], frozenset[tuple[Node, bool]], bool]] = {}
        self._fragments: dict[int, tuple[ast.AST, Summary | None]] = {}
        self._summaries: dict[Node, Summary | None] = {}
        self._steps: dict[Node, tuple[Summary, bool] | None] = {}
        self._certain: dict[Node, Summary] = {}
        self._stores: dict[int, frozenset[int]] = {}  # id(node): the local slots it stores
        self._keep_alive: list[ast.AST] = []  # the nodes _stores names by id

    # -- positions -----------------------------------------------------------------------
    def entry(self, block: int, values: tuple[Any, ...]) -> Node:
        keep = self.keep[block]
        env = tuple(
            v if i in keep and v is not UNSET and simple(v) else UNKNOWN
            for i, v in enumerate(values[: self.width])
        )
        return block, env + (UNKNOWN,) * (self.width - len(env))

    def summary(self, block: int, values: tuple[Any, ...]) -> Summary | None:
        """Everything a frame at block with these locals may still access, or None when
        its positions are too many to enumerate."""
        start = self.entry(block, values)
        if start in self._summaries:
            return self._summaries[start]
        if len(self._summaries) > 50_000:
            self._summaries.clear()
            self._steps.clear()
            self._certain.clear()
        found = self._explore(start)
        got = None if found is None else found[0]
        self._summaries[start] = got
        return got

    def next_step(self, block: int, values: tuple[Any, ...]) -> tuple[Summary, bool] | None:
        """What the frame's next step may access before it yields, and whether the frame
        may return in it (its caller's frame then goes on within the same step)."""
        start = self.entry(block, values)
        if start in self._steps:
            return self._steps[start]
        got = self._explore(start, within_step=True)
        self._steps[start] = got
        return got

    def certain(self, block: int, values: tuple[Any, ...]) -> Summary:
        """What the frame's next step touches on every path, up to its first branch the
        locals do not decide (a hint for the reduction: where this already clashes, the
        step's footprint in a particular state cannot be any better)."""
        start = self.entry(block, values)
        got = self._certain.get(start)
        if got is None:
            got = Summary()
            for i in self._prefix(start):
                got.add(self.fragment(i))
            self._certain[start] = got
        return got

    def _prefix(self, node: Node) -> set[int]:
        block, env = node
        ids: set[int] = set()
        cont: tuple[tuple[list[ast.stmt], int], ...] = ((self.cfg[block].stmts, 0),)
        for _ in range(10_000):
            while cont and cont[-1][1] >= len(cont[-1][0]):
                cont = cont[:-1]
            if not cont:
                break
            stmts, i = cont[-1]
            stmt = stmts[i]
            rest = cont[:-1] + ((stmts, i + 1),)
            if isinstance(stmt, ast.If):
                self._touch(stmt.test, ids)
                truth = self.truth(stmt.test, env)
                if len(truth) != 1:
                    break
                env = self._havoc(stmt.test, env)
                cont = rest + ((stmt.body if True in truth else stmt.orelse, 0),)
                continue
            self._touch(stmt, ids)
            if isinstance(stmt, ast.Return):
                exits = self._exits(stmt.value, env, block)
                if len(exits) != 1 or exits[0][0] < 0 or exits[0][1]:
                    break
                block, env = self._enter(exits[0][0], self._havoc(stmt, env))
                cont = ((self.cfg[block].stmts, 0),)
                continue
            if isinstance(stmt, ast.Raise) or _is_compound(stmt):
                break
            try:
                envs = list(self._simple(stmt, env))
            except Giveup:
                break
            if len(envs) != 1:
                break
            env = envs[0]
            cont = rest
        return ids

    def _explore(self, start: Node, within_step: bool = False) -> tuple[Summary, bool] | None:
        """The union of what the statements reachable from start touch (within one step,
        or from then on), and whether the frame may return on the way."""
        seen = {start}
        todo = [start]
        touched: set[int] = set()
        returns = False
        try:
            while todo:
                ids, succ, ret = self.step(todo.pop())
                touched |= ids
                returns = returns or ret
                for nxt, yielded in succ:
                    if nxt not in seen and not (within_step and yielded):
                        if len(seen) >= MAX_POSITIONS:
                            return None
                        seen.add(nxt)
                        todo.append(nxt)
        except Giveup:
            return None
        out = Summary()
        for i in touched:
            out.add(self.fragment(i))
        return out, returns

    def fragment(self, key: int) -> Summary:
        node, got = self._fragments[key]
        if got is None:
            got = Summary()
            self.scope.scan(node, got, ())
            self._fragments[key] = (node, got)
        return got

    def _touch(self, node: ast.AST, ids: set[int]) -> None:
        key = id(node)
        if key not in self._fragments:
            self._fragments[key] = (node, None)
        ids.add(key)

    # -- one block, abstractly -------------------------------------------------------------
    def step(self, node: Node) -> tuple[frozenset[int], frozenset[tuple[Node, bool]], bool]:
        """The statements a position's block may execute, the positions it leads to (and
        whether through a yield), and whether the frame may return from it."""
        got = self._edges.get(node)
        if got is not None:
            return got
        block, env = node
        ids: set[int] = set()
        succ: set[tuple[Node, bool]] = set()
        returns = False
        work: list[tuple[tuple[tuple[list[ast.stmt], int], ...], Env]] = [
            (((self.cfg[block].stmts, 0),), env)
        ]
        paths = 0
        while work:
            paths += 1
            if paths > MAX_PATHS:
                raise Giveup
            cont, env = work.pop()
            while cont and cont[-1][1] >= len(cont[-1][0]):
                cont = cont[:-1]
            if not cont:  # fell off the end of the block: anywhere
                returns = True
                succ.update((self._enter(b, env), False) for b in self.cfg[block].succ)
                continue
            stmts, i = cont[-1]
            stmt = stmts[i]
            rest = cont[:-1] + ((stmts, i + 1),)
            if isinstance(stmt, ast.If):
                self._touch(stmt.test, ids)
                truth = self.truth(stmt.test, env)
                after = self._havoc(stmt.test, env)  # a walrus in the test
                for branch, taken in ((stmt.body, True), (stmt.orelse, False)):
                    if taken in truth:
                        work.append((rest + ((branch, 0),), after))
                continue
            self._touch(stmt, ids)
            if isinstance(stmt, ast.Return):
                exits = self._exits(stmt.value, env, block)
                env = self._havoc(stmt, env)
                for b, yielded in exits:
                    if b < 0:
                        returns = True
                    else:
                        succ.add((self._enter(b, env), yielded))
                continue
            if isinstance(stmt, ast.Raise):
                continue
            if _is_compound(stmt):
                # a loop or try inside the block: havoc what it stores; it may also leave
                # the block through a return action anywhere inside it
                env = self._havoc(stmt, env)
                for sub in _returns(stmt):
                    for b, yielded in self._exits(sub.value, env, block):
                        if b < 0:
                            returns = True
                        else:
                            succ.add((self._enter(b, env), yielded))
                work.append((rest, env))
                continue
            work.extend((rest, e) for e in self._simple(stmt, env))
        got = (frozenset(ids), frozenset(succ), returns)
        self._edges[node] = got
        return got

    def _enter(self, block: int, env: Env) -> Node:
        keep = self.keep[block]
        return block, tuple(v if i in keep else UNKNOWN for i, v in enumerate(env))

    def _exits(self, value: ast.expr | None, env: Env, block: int) -> list[tuple[int, bool]]:
        """Where an action (the value of a block's return) may lead: (block, through a
        yield), block -1 for the frame's return."""
        if isinstance(value, ast.IfExp):
            truth = self.truth(value.test, env)
            out: list[tuple[int, bool]] = []
            if True in truth:
                out += self._exits(value.body, env, block)
            if False in truth:
                out += self._exits(value.orelse, env, block)
            return out
        if isinstance(value, ast.Tuple) and value.elts and isinstance(value.elts[0], ast.Constant):
            kind = value.elts[0].value
            if kind == RETURN:
                return [(-1, False)]  # the caller's frame has its own future
            if kind in (YIELD, JUMP, CALL) and len(value.elts) > 1:
                nxt = value.elts[1]
                if isinstance(nxt, ast.Constant) and isinstance(nxt.value, int):
                    # a call runs the callee (its accesses are this statement's) and may
                    # come back within the same step
                    return [(nxt.value, kind == YIELD)]
        return [(-1, False)] + [(b, False) for b in sorted(self.cfg[block].succ)]

    def _simple(self, stmt: ast.stmt, env: Env) -> Iterator[Env]:
        """The environments after a statement that is not a branch, loop or return."""
        if isinstance(stmt, ast.Expr) and _calls(stmt.value, self.scope, await_):
            call = stmt.value
            assert isinstance(call, ast.Call)
            if call.args and True not in self.truth(call.args[0], env):
                return  # blocked for good on this path
            yield self._havoc(stmt, env)
            return
        if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            values = self.eval(stmt.value, env)
            base = self._havoc(stmt.value, env)  # a walrus inside the value
            for v in [UNKNOWN] if values is None else values:
                out = list(base)
                for t in stmt.targets:
                    assert isinstance(t, ast.Name)
                    self._store(out, t.id, v)
                yield tuple(out)
            return
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Tuple)
            and isinstance(stmt.value, ast.Tuple)
            and len(stmt.targets[0].elts) == len(stmt.value.elts)
            and all(isinstance(t, ast.Name) for t in stmt.targets[0].elts)
        ):
            envs = [self._havoc(stmt.value, env)]
            for target, expr in zip(stmt.targets[0].elts, stmt.value.elts):
                assert isinstance(target, ast.Name)
                envs = [e for old in envs for e in self._assign(old, target.id, expr, env)]
                if len(envs) > MAX_PATHS:
                    raise Giveup
            yield from envs
            return
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            left = ast.Name(stmt.target.id, ast.Load())
            expr = ast.BinOp(left=left, op=stmt.op, right=stmt.value)
            yield from self._assign(self._havoc(stmt.value, env), stmt.target.id, expr, env)
            return
        yield self._havoc(stmt, env)

    def _assign(self, env: Env, name: str, expr: ast.expr, before: Env) -> Iterator[Env]:
        """env with name bound to each value of expr (evaluated in before: a tuple
        assignment evaluates its right side first)."""
        values = self.eval(expr, before)
        for v in [UNKNOWN] if values is None else values:
            out = list(env)
            self._store(out, name, v)
            yield tuple(out)

    def _store(self, env: list[Any], name: str, value: Any) -> None:
        slot = self.slots.get(name)
        if slot is not None:
            env[slot] = value

    def _havoc(self, stmt: ast.AST, env: Env) -> Env:
        """env with every local stmt may store made unknown."""
        stored = self._stores.get(id(stmt))
        if stored is None:
            stored = self._stores[id(stmt)] = frozenset(
                self.slots[name]
                for n in ast.walk(stmt)
                for name in _stored_names(n)
                if name in self.slots
            )
            self._keep_alive.append(stmt)
        if not stored:
            return env
        return tuple(UNKNOWN if i in stored else v for i, v in enumerate(env))


def _is_compound(stmt: ast.stmt) -> bool:
    return isinstance(stmt, (ast.For, ast.While, ast.Try, ast.With, ast.Match, ast.TryStar))


def _returns(stmt: ast.stmt) -> Iterator[ast.Return]:
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Return):
            yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))


def _steering(cfg: list[Any], local: set[str], scope: _Scope) -> set[str]:
    """Locals a condition depends on, directly or through the assignments to them."""
    tests: list[ast.AST] = []
    deps: dict[str, set[str]] = {}
    for blk in cfg:
        for stmt in blk.stmts:
            for node in ast.walk(stmt):
                if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)):
                    tests.append(node.test)
                elif any(_calls(node, scope, f) for f in (await_, choose)):
                    tests.append(node)  # await_ conditions, choose options
                elif isinstance(node, ast.Assign):
                    _depend(deps, node.targets, node.value)
                elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
                    _depend(deps, [node.target], node.value)
    found = {n.id for t in tests for n in ast.walk(t) if isinstance(n, ast.Name)} & local
    todo = list(found)
    while todo:
        for name in deps.get(todo.pop(), ()):
            if name in local and name not in found:
                found.add(name)
                todo.append(name)
    return found


def _depend(deps: dict[str, set[str]], targets: list[ast.expr], value: ast.expr) -> None:
    used = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
    for target in targets:
        for n in ast.walk(target):
            if isinstance(n, ast.Name):
                deps.setdefault(n.id, set()).update(used)


class Futures:
    """Per-function interpreters, made on first use."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self._functions: dict[FunctionType, FunctionFutures | None] = {}

    def function(self, func: FunctionType) -> FunctionFutures | None:
        if func in self._functions:
            got = self._functions[func]
        else:
            try:
                got = FunctionFutures(self.analyzer, func)
            except Exception:  # noqa: BLE001 - source unavailable or unusual: stay coarse
                got = None
            self._functions[func] = got
        return got

    def summary(self, func: FunctionType, block: int, values: tuple[Any, ...]) -> Summary | None:
        """What a frame may still access, or None: use the block-level analysis."""
        got = self.function(func)
        return None if got is None else got.summary(block, values)
