"""Type checking (``infer_types``): types, units, scopes, calls, guards and step bounds.

After a successful check every expression has ``ty`` set, every operation
that can fail at run time has a contract-wide guard id, every function knows
the state it writes (transitively through calls) and its static step bound.
The call graph is acyclic (no recursion) and every loop has literal bounds,
so the step bound is finite.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Callable, Iterable

from tenfold.contract_compiler._ast import (
    BOOL,
    DEC,
    DEC_SCALE,
    PARTY,
    VOID,
    Assert,
    Assign,
    Binary,
    BoolLit,
    Call,
    CallerRef,
    Cast,
    Contract,
    DecLit,
    Expr,
    ExprStmt,
    FnDecl,
    For,
    If,
    Index,
    IntLit,
    Let,
    Name,
    Old,
    ResultRef,
    Return,
    SourceMap,
    StateDecl,
    Stmt,
    Ty,
    Unary,
    children,
)
from tenfold.contract_compiler._parser import make_diagnostic
from tenfold.contract_compiler.errors import CompileError, Diagnostic

__all__ = ["I64", "MAX_STEPS", "infer_types", "static_steps"]

I64 = Ty("int", 64, True)
MAX_STEPS = 10**9
"""Largest static step bound a function may have."""

MAX_LOOP_ITERATIONS = 1_000_000


class _Error(Exception):
    pass


class _Limit(Exception):
    pass


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Checker:
    def __init__(self, contract: Contract, smap: SourceMap, max_errors: int) -> None:
        self.c = contract
        self.smap = smap
        self.max_errors = max_errors
        self.diags: list[Diagnostic] = []
        self.fn: FnDecl | None = None
        self.scopes: list[dict[str, tuple[Ty, str]]] = []
        self.in_ensures = False
        self.in_spec = False
        self.calls: dict[str, set[str]] = {}

    # -- diagnostics --------------------------------------------------------
    def error(self, pos: int, message: str) -> _Error:
        self.diags.append(make_diagnostic(self.smap, pos, message))
        if len(self.diags) >= self.max_errors:
            raise _Limit
        return _Error(message)

    def guard(self, kind: str, message: str, pos: int) -> int:
        gid = len(self.c.guards) + 1
        self.c.guards[gid] = (kind, message, pos)
        return gid

    # -- entry ----------------------------------------------------------------
    def run(self) -> None:
        c = self.c
        seen: dict[str, int] = {}
        slot = 0
        for decl in c.states:
            if decl.name in seen:
                self.soft(decl.pos, f"'{decl.name}' is already declared")
            seen[decl.name] = decl.pos
            decl.slot = slot
            slot += decl.ty.size if decl.ty.kind == "map" else 1
            if decl.init_expr is not None:
                self.soft_call(functools.partial(self.state_init, decl))
        c.slots = slot
        fn_names: set[str] = set()
        for fn in c.fns:
            if fn.name in fn_names:
                self.soft(fn.pos, f"function '{fn.name}' is already defined")
            if fn.name in seen:
                self.soft(fn.pos, f"'{fn.name}' is already declared as a state variable")
            fn_names.add(fn.name)
        for inv in c.invariants:
            self.scopes = [{}]
            self.fn = None
            self.in_spec = True
            self.soft_call(functools.partial(self.expect_bool, inv))
            self.in_spec = False
        for fn in c.fns:
            self.check_fn(fn)
        self.check_recursion()
        if self.diags:
            return
        self.finish_fns()

    def soft(self, pos: int, message: str) -> None:
        """Record an error and carry on."""
        self.error(pos, message)

    def soft_call(self, fn: Callable[[], object]) -> None:
        with contextlib.suppress(_Error):
            fn()

    def state_init(self, decl: StateDecl) -> None:
        init = decl.init_expr
        assert init is not None
        if decl.ty.kind == "map":
            raise self.error(init.pos, "a map cannot have an initializer (it starts all zero)")
        if not isinstance(init, IntLit | DecLit | BoolLit):
            raise self.error(init.pos, "a state initializer must be a literal")
        self.scopes = [{}]
        self.check_expr(init, decl.ty)
        decl.init = _literal_stored(init)

    # -- functions ------------------------------------------------------------
    def check_fn(self, fn: FnDecl) -> None:
        self.fn = fn
        fn.guard_base = len(self.c.guards)
        self.calls[fn.name] = set()
        params: dict[str, tuple[Ty, str]] = {}
        for p in fn.params:
            if p.name in params:
                self.soft(p.pos, f"parameter '{p.name}' is already defined")
            if self.c.state(p.name) is not None:
                self.soft(p.pos, f"parameter '{p.name}' shadows the state variable of that name")
            params[p.name] = (p.ty, "param")
        self.scopes = [params]
        for party_pos, party in fn.only:
            decl = self.c.state(party)
            if decl is None or decl.ty.kind != "party":
                self.soft(
                    party_pos,
                    f"unknown party '{party}'{_did_you_mean(party, self.c.parties)}",
                )
            fn.only_guards.append(self.guard("only", f"caller must be {party}", party_pos))
        self.in_spec = True
        for req in fn.requires:
            self.soft_call(functools.partial(self.expect_bool, req))
            fn.requires_guards.append(self.guard("requires", "precondition", req.pos))
        self.in_spec = False
        self.block(fn.body, new_scope=False)
        if fn.ret != VOID and not _always_returns(fn.body):
            self.soft(
                fn.pos, f"function '{fn.name}' may reach its end without returning a {fn.ret}"
            )
        self.in_spec = True
        self.in_ensures = True
        for ens in fn.ensures:
            self.soft_call(functools.partial(self.expect_bool, ens))
            fn.ensures_guards.append(self.guard("ensures", "postcondition", ens.pos))
        self.in_ensures = False
        for inv in self.c.invariants:
            fn.invariant_guards.append(self.guard("invariant", "contract invariant", inv.pos))
        self.in_spec = False
        self.fn = None

    def block(self, stmts: list[Stmt], new_scope: bool = True) -> None:
        if new_scope:
            self.scopes.append({})
        try:
            for stmt in stmts:
                with contextlib.suppress(_Error):
                    self.stmt(stmt)
        finally:
            if new_scope:
                self.scopes.pop()

    def lookup(self, name: str) -> tuple[Ty, str] | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        decl = self.c.state(name)
        if decl is not None:
            return decl.ty, "state"
        return None

    def visible_names(self) -> list[str]:
        names = [d.name for d in self.c.states]
        for scope in self.scopes:
            names.extend(scope)
        return names

    def stmt(self, s: Stmt) -> None:
        fn = self.fn
        assert fn is not None
        if isinstance(s, Let):
            assert s.value is not None
            if self.lookup(s.name) is not None:
                raise self.error(s.pos, f"'{s.name}' is already defined (no shadowing)")
            ty = self.check_expr(s.value, s.declared)
            if ty == VOID:
                raise self.error(s.value.pos, "a function without a result cannot be a value")
            self.scopes[-1][s.name] = (ty, "local")
            prev = fn.locals.get(s.name)
            if prev is not None and prev != ty:
                # Locals live in one frame slot per name; two lets of one name need one type.
                raise self.error(s.pos, f"'{s.name}' was declared earlier with type {prev}")
            fn.locals[s.name] = ty
        elif isinstance(s, Assign):
            target = s.target
            assert target is not None and s.value is not None
            if isinstance(target, Name):
                found = self.lookup(target.id)
                if found is None:
                    raise self.error(
                        target.pos,
                        f"unknown name '{target.id}'{_did_you_mean(target.id, self.visible_names())}",
                    )
                ty, kind = found
                if kind in ("param", "loop"):
                    raise self.error(target.pos, f"cannot assign to {kind} '{target.id}'")
                if ty.kind == "map":
                    raise self.error(target.pos, f"cannot assign a whole map '{target.id}'")
                target.kind = kind
                target.ty = ty
                if kind == "state":
                    fn.writes.add(target.id)
            else:
                ty = self.index_type(target)
                fn.writes.add(target.name)
            self.check_expr(s.value, ty)
        elif isinstance(s, If):
            assert s.cond is not None
            with contextlib.suppress(_Error):
                self.expect_bool(s.cond)
            self.block(s.then)
            self.block(s.orelse)
        elif isinstance(s, For):
            if s.hi < s.lo:
                raise self.error(s.pos, f"loop bounds {s.lo}..{s.hi} are reversed")
            if s.hi - s.lo > MAX_LOOP_ITERATIONS:
                raise self.error(
                    s.pos, f"loop runs {s.hi - s.lo} times; the limit is {MAX_LOOP_ITERATIONS}"
                )
            if self.lookup(s.var) is not None:
                raise self.error(s.pos, f"'{s.var}' is already defined (no shadowing)")
            self.scopes.append({s.var: (I64, "loop")})
            try:
                self.in_spec = True
                try:
                    for inv in s.invariants:
                        self.soft_call(functools.partial(self.expect_bool, inv))
                        s.invariant_guards.append(
                            self.guard("loop-invariant", "loop invariant", inv.pos)
                        )
                finally:
                    self.in_spec = False
                self.block(s.body)
            finally:
                self.scopes.pop()
        elif isinstance(s, Return):
            if s.value is None:
                if fn.ret != VOID:
                    raise self.error(s.pos, f"expected a {fn.ret} value after 'return'")
            else:
                if fn.ret == VOID:
                    raise self.error(s.value.pos, f"function '{fn.name}' returns no value")
                self.check_expr(s.value, fn.ret)
        elif isinstance(s, Assert):
            assert s.cond is not None
            self.expect_bool(s.cond)
            s.guard = self.guard(s.kind, s.message or f"{s.kind} failed", s.pos)
        elif isinstance(s, ExprStmt):
            assert s.expr is not None
            self.check_expr(s.expr, None, allow_void=True)

    def index_type(self, node: Index) -> Ty:
        decl = self.c.state(node.name)
        if decl is None or decl.ty.kind != "map":
            if decl is None and self.lookup(node.name) is None:
                maps = [d.name for d in self.c.states if d.ty.kind == "map"]
                raise self.error(
                    node.pos, f"unknown map '{node.name}'{_did_you_mean(node.name, maps)}"
                )
            raise self.error(node.pos, f"'{node.name}' is not a map and cannot be indexed")
        assert node.index is not None
        ity = self.check_expr(node.index, None)
        if ity.kind != "int":
            raise self.error(node.index.pos, f"a map index must be an integer, found {ity}")
        node.guard = self.guard(
            "index", f"index out of range for {node.name}[{decl.ty.size}]", node.pos
        )
        assert decl.ty.elem is not None
        node.ty = decl.ty.elem
        return decl.ty.elem

    # -- expressions ----------------------------------------------------------
    def expect_bool(self, expr: Expr) -> None:
        ty = self.check_expr(expr, BOOL)
        if ty != BOOL:
            raise self.error(expr.pos, f"expected a bool condition, found {ty}")

    def check_expr(self, e: Expr, expected: Ty | None, allow_void: bool = False) -> Ty:
        ty = self.infer(e, expected)
        if ty == VOID and not allow_void:
            raise self.error(e.pos, "a function without a result cannot be used as a value")
        if expected is not None and ty not in (expected, VOID):
            raise self.error(
                e.pos, f"type mismatch: expected {expected}, found {ty}{_unit_hint(expected, ty)}"
            )
        e.ty = ty
        return ty

    def infer(self, e: Expr, expected: Ty | None) -> Ty:
        if isinstance(e, IntLit):
            return self.int_literal(e, expected)
        if isinstance(e, DecLit):
            if expected is not None and expected != DEC:
                raise self.error(e.pos, f"decimal literal where {expected} is expected")
            e.ty = DEC
            return DEC
        if isinstance(e, BoolLit):
            e.ty = BOOL
            return BOOL
        if isinstance(e, Name):
            found = self.lookup(e.id)
            if found is None:
                raise self.error(
                    e.pos, f"unknown name '{e.id}'{_did_you_mean(e.id, self.visible_names())}"
                )
            ty, kind = found
            if self.in_spec and self.fn is None and kind != "state":
                raise self.error(e.pos, "an invariant may only mention state variables")
            if ty.kind == "map":
                raise self.error(e.pos, f"map '{e.id}' needs an index: {e.id}[i]")
            e.kind = kind
            e.ty = ty
            return ty
        if isinstance(e, Index):
            return self.index_type(e)
        if isinstance(e, Old):
            if not self.in_ensures:
                raise self.error(e.pos, "old(...) is only allowed in 'ensures'")
            decl = self.c.state(e.name)
            if decl is None or decl.ty.kind == "map":
                raise self.error(
                    e.pos, f"old(...) takes a state variable (not a map), found '{e.name}'"
                )
            e.ty = decl.ty
            return decl.ty
        if isinstance(e, ResultRef):
            if not self.in_ensures or self.fn is None or self.fn.ret == VOID:
                raise self.error(
                    e.pos, "'result' is only allowed in 'ensures' of a function with a result"
                )
            e.ty = self.fn.ret
            return self.fn.ret
        if isinstance(e, CallerRef):
            if self.fn is None:
                raise self.error(e.pos, "'caller' is only allowed inside a function")
            e.ty = PARTY
            return PARTY
        if isinstance(e, Unary):
            assert e.operand is not None
            if e.op == "!":
                self.expect_bool(e.operand)
                e.ty = BOOL
                return BOOL
            ty = self.check_expr(e.operand, expected if expected and expected.is_numeric else None)
            if not ty.is_numeric or (ty.kind == "int" and not ty.signed):
                raise self.error(e.pos, f"cannot negate a value of type {ty}")
            e.guard = self.guard("overflow", f"negation overflows {ty}", e.pos)
            e.ty = ty
            return ty
        if isinstance(e, Cast):
            return self.cast(e)
        if isinstance(e, Call):
            return self.call(e)
        if isinstance(e, Binary):
            return self.binary(e, expected)
        raise self.error(e.pos, "unsupported expression")

    def int_literal(self, e: IntLit, expected: Ty | None) -> Ty:
        ty = expected
        if ty is None or ty.kind not in ("int", "money", "dec", "party"):
            if expected is not None and expected.kind not in ("int", "money", "dec", "party"):
                raise self.error(e.pos, f"integer literal where {expected} is expected")
            ty = I64 if -(1 << 63) <= e.value < (1 << 63) else Ty("int", 64, False)
        if ty.kind == "dec":
            if e.ty != DEC:
                e.value *= DEC_SCALE
            lo, hi = ty.range
            if not lo <= e.value <= hi:
                raise self.error(e.pos, f"literal {e.value // DEC_SCALE} does not fit in dec")
        else:
            lo, hi = ty.range
            if not lo <= e.value <= hi:
                raise self.error(e.pos, f"literal {e.value} does not fit in {ty} ({lo}..{hi})")
        e.ty = ty
        return ty

    def cast(self, e: Cast) -> Ty:
        assert e.expr is not None and e.target is not None
        src = self.check_expr(e.expr, None)
        dst = e.target
        ok = (
            (src.kind == "int" and dst.kind in ("int", "dec", "money"))
            or (src.kind == "dec" and dst.kind in ("int", "dec"))
            or (src.kind == "money" and (dst in (I64, src)))
        )
        if src.kind == "money" and dst.kind == "money" and dst != src:
            raise self.error(
                e.pos, f"cannot convert {src} to {dst}: changing units needs an explicit rate"
            )
        if not ok:
            raise self.error(e.pos, f"cannot cast {src} to {dst}")
        e.guard = self.guard("overflow", f"value out of range for {dst}", e.pos)
        e.ty = dst
        return dst

    def call(self, e: Call) -> Ty:
        target = self.c.fn(e.fn)
        if target is None:
            raise self.error(
                e.pos,
                f"unknown function '{e.fn}'{_did_you_mean(e.fn, [f.name for f in self.c.fns])}",
            )
        if self.in_spec:
            raise self.error(e.pos, "function calls are not allowed in specifications")
        if self.fn is not None:
            self.calls[self.fn.name].add(e.fn)
        if len(e.args) != len(target.params):
            raise self.error(
                e.pos,
                f"'{e.fn}' takes {len(target.params)} argument(s), {len(e.args)} given",
            )
        for arg, param in zip(e.args, target.params, strict=True):
            self.check_expr(arg, param.ty)
        e.guard2 = self.guard("call-invariant", f"invariant must hold before calling {e.fn}", e.pos)
        e.ty = target.ret
        return target.ret

    def binary(self, e: Binary, expected: Ty | None) -> Ty:
        """Type a binary node and the chain on its left spine, with a loop (see ``left_spine``)."""
        chain: list[tuple[Binary, Ty | None]] = []
        node, hint = e, expected
        while isinstance(node.left, Binary):
            chain.append((node, hint))
            hint = _left_hint(node, hint)
            node = node.left
        ty = self.binary_node(node, hint, None)
        for parent, parent_hint in reversed(chain):
            assert parent.left is not None
            self.accept(parent.left, ty, _left_hint(parent, parent_hint))
            ty = self.binary_node(parent, parent_hint, ty)
        return ty

    def accept(self, e: Expr, ty: Ty, expected: Ty | None) -> None:
        """What ``check_expr`` does after inferring ``ty`` for ``e``."""
        if ty == VOID:
            raise self.error(e.pos, "a function without a result cannot be used as a value")
        if expected is not None and ty != expected:
            raise self.error(
                e.pos, f"type mismatch: expected {expected}, found {ty}{_unit_hint(expected, ty)}"
            )
        e.ty = ty

    def binary_node(self, e: Binary, expected: Ty | None, known_left: Ty | None) -> Ty:
        """Type one binary node; ``known_left`` is its left operand's type when already typed."""
        op = e.op
        left, right = e.left, e.right
        assert left is not None and right is not None
        if op in ("&&", "||", "==>"):
            if known_left is None:
                self.expect_bool(left)
            self.expect_bool(right)
            e.ty = BOOL
            return BOOL
        numeric_hint = expected if expected is not None and expected.is_numeric else None
        if op in ("*", "/", "%"):
            lt, rt = self.operands_mul(e, numeric_hint, known_left)
        elif known_left is not None:
            lt = known_left
            rt = self.check_expr(right, lt)
        elif isinstance(left, IntLit | DecLit) and not isinstance(right, IntLit | DecLit):
            rt = self.check_expr(right, numeric_hint if op in ("+", "-") else None)
            lt = self.check_expr(left, rt)
        else:
            lt = self.check_expr(left, numeric_hint if op in ("+", "-") else None)
            rt = self.check_expr(right, lt if lt != VOID else None)
        if op in ("==", "!="):
            if lt != rt:
                raise self.error(e.pos, f"cannot compare {lt} with {rt}{_unit_hint(lt, rt)}")
            e.ty = BOOL
            return BOOL
        if op in ("<", "<=", ">", ">="):
            if lt != rt or not lt.is_numeric:
                raise self.error(e.pos, f"cannot order {lt} and {rt}{_unit_hint(lt, rt)}")
            e.ty = BOOL
            return BOOL
        if op in ("+", "-"):
            if lt != rt or not lt.is_numeric:
                verb = "add" if op == "+" else "subtract"
                raise self.error(e.pos, f"cannot {verb} {lt} and {rt}{_unit_hint(lt, rt)}")
            e.guard = self.guard("overflow", f"'{op}' overflows {lt}", e.pos)
            e.ty = lt
            return lt
        # * / %
        result = _mul_result(op, lt, rt)
        if result is None:
            raise self.error(e.pos, f"cannot apply '{op}' to {lt} and {rt}{_unit_hint(lt, rt)}")
        if op == "*":
            e.guard = self.guard("overflow", f"'*' overflows {result}", e.pos)
        else:
            e.guard = self.guard("div-zero", f"'{op}' by zero", e.pos)
            e.guard2 = self.guard("overflow", f"'{op}' overflows {lt}", e.pos)
        e.ty = result
        return result

    def operands_mul(
        self, e: Binary, hint: Ty | None, known_left: Ty | None = None
    ) -> tuple[Ty, Ty]:
        """Operand types of ``*``, ``/``, ``%``: the same rules in both operand orders.

        A literal operand takes its type from the other side (``i64`` when the other
        side is an amount, since amounts scale by plain ``i64``); a non-literal operand
        is typed on its own when the other side is an amount or an ``i64`` (either may
        meet an amount), so ``k * x`` and ``x * k`` type-check alike; ``_mul_result``
        then decides the table. Two literals take the context's numeric type.
        """
        left, right = e.left, e.right
        assert left is not None and right is not None
        literal = (IntLit, DecLit)
        if isinstance(left, literal) and isinstance(right, literal):
            ctx = hint if hint is not None and hint.kind in ("int", "dec") else None
            lt = self.check_expr(left, ctx)
            rt = self.check_expr(right, lt)
            return lt, rt
        if isinstance(left, literal):
            rt = self.check_expr(right, None)
            lt = self.check_expr(left, I64 if rt.kind == "money" else rt)
            return lt, rt
        lt = known_left if known_left is not None else self.check_expr(left, None)
        if isinstance(right, literal):
            rt = self.check_expr(right, I64 if lt.kind == "money" else lt)
        elif lt.kind == "money" or lt == I64:
            rt = self.check_expr(right, None)
        else:
            rt = self.check_expr(right, lt)
        return lt, rt

    # -- whole-contract checks -----------------------------------------------
    def check_recursion(self) -> None:
        state: dict[str, int] = {}
        order: list[str] = []

        def visit(root: str) -> None:
            # Iterative DFS: the call graph may be deep; report the first cycle found.
            stack: list[tuple[str, list[str]]] = [(root, sorted(self.calls.get(root, ())))]
            path = [root]
            state[root] = 1
            while stack:
                name, todo = stack[-1]
                if todo:
                    nxt = todo.pop()
                    if state.get(nxt) == 1:
                        cycle = [*path[path.index(nxt) :], nxt]
                        fn = self.c.fn(name)
                        self.soft(
                            fn.pos if fn else 0,
                            f"recursion is not allowed: {' -> '.join(cycle)}",
                        )
                        return
                    if nxt not in state:
                        state[nxt] = 1
                        path.append(nxt)
                        stack.append((nxt, sorted(self.calls.get(nxt, ()))))
                else:
                    state[name] = 2
                    order.append(name)
                    stack.pop()
                    path.pop()

        for fn in self.c.fns:
            if fn.name not in state:
                visit(fn.name)
                if self.diags:
                    return
        self.topo = order

    def finish_fns(self) -> None:
        """Writes and step bounds, callees first (the call graph is acyclic)."""
        for name in self.topo:
            fn = self.c.fn(name)
            assert fn is not None
            fn.callees = set(self.calls[name])
            for callee in self.calls[name]:
                cfn = self.c.fn(callee)
                assert cfn is not None
                fn.writes |= cfn.writes
            fn.steps = 1 + len(fn.requires) + len(fn.ensures) + _steps(fn.body, self.c)
            if fn.steps > MAX_STEPS:
                self.soft(
                    fn.pos, f"function '{fn.name}' has a step bound of {fn.steps}, over {MAX_STEPS}"
                )


def static_steps(stmts: list[Stmt], c: Contract) -> int:
    """Syntactic step bound of a statement list: the longest path, loops times their count."""
    return _steps(stmts, c)


def _steps(stmts: list[Stmt], c: Contract) -> int:
    total = 0
    for s in stmts:
        total += 1 + _expr_calls(s, c)
        if isinstance(s, If):
            total += max(_steps(s.then, c), _steps(s.orelse, c))
        elif isinstance(s, For):
            total += (s.hi - s.lo) * (1 + _steps(s.body, c))
        if total > MAX_STEPS:
            return total
    return total


def _expr_calls(s: Stmt, c: Contract) -> int:
    exprs: list[Expr] = []
    if isinstance(s, Let | Assign | Return) and s.value is not None:
        exprs.append(s.value)
    elif isinstance(s, ExprStmt) and s.expr is not None:
        exprs.append(s.expr)
    elif isinstance(s, If) and s.cond is not None:
        exprs.append(s.cond)
    total = 0
    while exprs:
        e = exprs.pop()
        if isinstance(e, Call):
            fn = c.fn(e.fn)
            total += fn.steps if fn else 0
        exprs.extend(children(e))
    return total


def _left_hint(e: Binary, expected: Ty | None) -> Ty | None:
    """The type ``binary_node`` expects of a left operand that is itself a binary node."""
    if e.op in ("&&", "||", "==>"):
        return BOOL
    if e.op in ("+", "-") and expected is not None and expected.is_numeric:
        return expected
    return None


def _mul_result(op: str, lt: Ty, rt: Ty) -> Ty | None:
    if lt.kind == "int" and lt == rt:
        return lt
    if lt == DEC and rt == DEC and op != "%":
        return DEC
    if lt.kind == "money" and rt == I64:
        return lt
    if op == "*" and rt.kind == "money" and lt == I64:
        return rt
    if op == "/" and lt.kind == "money" and lt == rt:
        return I64
    return None


def _unit_hint(lt: Ty, rt: Ty) -> str:
    if lt.kind == "money" and rt.kind == "money" and lt.unit != rt.unit:
        return f" (unit mismatch: {lt.unit} vs {rt.unit})"
    if (lt.kind == "money") != (rt.kind == "money"):
        money = lt if lt.kind == "money" else rt
        return f" (unit mismatch: cast the plain number with 'as {money}' if it is in {money.unit})"
    return ""


def _always_returns(stmts: list[Stmt]) -> bool:
    for s in stmts:
        if isinstance(s, Return):
            return True
        if isinstance(s, If) and s.orelse and _always_returns(s.then) and _always_returns(s.orelse):
            return True
    return False


def _literal_stored(e: Expr) -> int:
    if isinstance(e, IntLit):
        return e.value
    if isinstance(e, DecLit):
        return e.scaled
    if isinstance(e, BoolLit):
        return int(e.value)
    return 0


def infer_types(contract: Contract, smap: SourceMap, *, max_errors: int = 20) -> Contract:
    """Type-check ``contract`` in place; raises :class:`CompileError` with every diagnostic."""
    checker = Checker(contract, smap, max_errors)
    note = ""
    try:
        checker.run()
    except _Limit:
        note = f"stopped after {max_errors} errors"
    if checker.diags:
        checker.diags.sort(key=lambda d: (d.line, d.col))
        raise CompileError(checker.diags, note)
    return contract
