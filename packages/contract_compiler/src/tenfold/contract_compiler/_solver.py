"""Constraint solving (``solve``): every runtime guard becomes a z3 proof obligation.

Each function is executed symbolically once, over mathematical integers:

* values are z3 ``Int`` terms (booleans are ``Bool``), every parameter, entry
  state value and map read is assumed inside its type's range, and the
  contract invariants are assumed at entry;
* every guard (overflow, division by zero, index, assert, ensures, invariant
  at exit, invariant before a call) adds an obligation ``path /\\ bad``; after
  the guard the path assumes ``not bad``, which is exactly what the running
  code does, since it reverts otherwise;
* branches merge with ``If``; loops of up to ``UNROLL`` iterations are unrolled,
  longer ones are abstracted (the variables they write are havocked), and an
  obligation that fails only under that abstraction is "unknown", not "failed";
* a call is modular (Dafny-style): the caller checks the invariant, then
  assumes the callee's requires, ensures and the invariant over a state whose
  written variables are havocked.

An obligation is "proved" when ``assumptions /\\ path /\\ bad`` is unsatisfiable,
"failed" (with the model as counterexample) when satisfiable, "unknown" when
z3 hits the per-query timeout. One query over the disjunction of all
obligations proves a clean function at once; only when it is satisfiable are
obligations checked one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import z3

from tenfold.contract_compiler._ast import (
    BOOL,
    DEC,
    DEC_SCALE,
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
    Stmt,
    Ty,
    Unary,
)

__all__ = ["UNROLL", "Obligation", "Verdict", "solve", "solve_function"]

# The API's argument checks cost more than the solving on small queries; our terms are
# built by this module alone and are well sorted by construction.
z3.z3.Z3_DEBUG = False

UNROLL = 16
"""Loops with at most this many iterations are unrolled exactly."""

HARD_KINDS = frozenset({"assert", "ensures", "invariant", "call-invariant"})
"""Kinds whose failure is a verification error (the others keep their runtime guard)."""


@dataclass
class Obligation:
    gid: int
    bad: Any
    abstract: bool


@dataclass
class Verdict:
    """The outcome for one guard in one function: proved, failed (with counterexample) or unknown."""

    fn: str
    gid: int
    kind: str
    message: str
    pos: int
    status: str
    counterexample: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "function": self.fn,
            "guard": self.gid,
            "kind": self.kind,
            "message": self.message,
            "status": self.status,
            "counterexample": self.counterexample,
            "reason": self.reason,
        }


def _range(v: Any, ty: Ty) -> Any:
    if ty == BOOL:
        return z3.BoolVal(True)
    lo, hi = ty.range
    return z3.And(v >= lo, v <= hi)


def _tdiv(a: Any, b: Any) -> Any:
    """Truncating division built from z3's division on non-negative operands."""
    if z3.is_int_value(b):
        bv = b.as_long()
        if bv > 0:
            return z3.If(a >= 0, a / bv, -((-a) / bv))
        if bv < 0:
            return z3.If(a >= 0, -(a / -bv), (-a) / -bv)
    return z3.If(
        a >= 0,
        z3.If(b > 0, a / b, -(a / -b)),
        z3.If(b > 0, -((-a) / b), (-a) / -b),
    )


class _Frame:
    """Variables and the path condition at one point of the symbolic run."""

    __slots__ = ("env", "maps", "pc", "state")

    def __init__(
        self, env: dict[str, Any], state: dict[str, Any], maps: dict[str, Any], pc: Any
    ) -> None:
        self.env = env
        self.state = state
        self.maps = maps
        self.pc = pc

    def copy(self) -> _Frame:
        return _Frame(dict(self.env), dict(self.state), dict(self.maps), self.pc)


class SymbolicRun:
    def __init__(self, contract: Contract, fn: FnDecl) -> None:
        self.c = contract
        self.fn = fn
        self.assumptions: list[Any] = []
        self.obligations: list[Obligation] = []
        self.abstract = 0
        self.fresh_count = 0
        self.inputs: dict[str, tuple[Any, Ty]] = {}
        self.suppress = 0
        self.exits: list[tuple[Any, Any, dict[str, Any], dict[str, Any]]] = []

    # -- variables ------------------------------------------------------------------
    def fresh(self, name: str, ty: Ty) -> Any:
        self.fresh_count += 1
        label = f"{name}!{self.fresh_count}"
        if ty == BOOL:
            return z3.Bool(label)
        v = z3.Int(label)
        self.assumptions.append(_range(v, ty))
        return v

    def fresh_map(self, name: str) -> Any:
        self.fresh_count += 1
        return z3.Array(f"{name}!{self.fresh_count}", z3.IntSort(), z3.IntSort())

    def start(self) -> _Frame:
        env: dict[str, Any] = {}
        for p in self.fn.params:
            v = z3.Bool(p.name) if p.ty == BOOL else z3.Int(p.name)
            self.assumptions.append(_range(v, p.ty))
            env[p.name] = v
            self.inputs[p.name] = (v, p.ty)
        caller = z3.Int("caller")
        self.assumptions.append(_range(caller, Ty("int")))
        env["$caller"] = caller
        self.inputs["caller"] = (caller, Ty("int"))
        state: dict[str, Any] = {}
        maps: dict[str, Any] = {}
        for decl in self.c.states:
            if decl.ty.kind == "map":
                maps[decl.name] = z3.Array(f"state.{decl.name}", z3.IntSort(), z3.IntSort())
            else:
                v = (
                    z3.Bool(f"state.{decl.name}")
                    if decl.ty == BOOL
                    else z3.Int(f"state.{decl.name}")
                )
                self.assumptions.append(_range(v, decl.ty))
                state[decl.name] = v
                self.inputs[decl.name] = (v, decl.ty)
        self.param_env = dict(env)
        frame = _Frame(env, state, maps, z3.BoolVal(True))
        self.entry_state = dict(state)
        for inv in self.c.invariants:
            self.assumptions.append(self.spec(inv, frame))
        return frame

    def spec(
        self, e: Expr, f: _Frame, old: dict[str, Any] | None = None, result: Any = None
    ) -> Any:
        """Evaluate an expression only as a fact (no obligations, no path change)."""
        self.suppress += 1
        saved = f.pc
        try:
            return self.expr(e, f, old, result)
        finally:
            f.pc = saved
            self.suppress -= 1

    # -- obligations ------------------------------------------------------------------
    def check(self, f: _Frame, gid: int, bad: Any) -> None:
        if self.suppress:
            return
        if not z3.is_false(bad):
            self.obligations.append(Obligation(gid, z3.And(f.pc, bad), self.abstract > 0))
        f.pc = z3.And(f.pc, z3.Not(bad))

    def in_range(self, f: _Frame, v: Any, ty: Ty, gid: int) -> Any:
        lo, hi = ty.range
        self.check(f, gid, z3.Or(v < lo, v > hi))
        return v

    # -- statements -------------------------------------------------------------------
    def run(self) -> None:
        fn = self.fn
        f = self.start()
        for (_pos, party), _gid in zip(fn.only, fn.only_guards, strict=True):
            f.pc = z3.And(f.pc, f.env["$caller"] == f.state[party])
        for req in fn.requires:
            cond = self.expr(req, f)
            f.pc = z3.And(f.pc, cond)
        self.block(fn.body, f)
        self.exits.append((f.pc, z3.IntVal(0), f.state, f.maps))
        self.finish()

    def finish(self) -> None:
        """Merge every exit into one state, then check ensures and invariants there."""
        pc, result, state, maps = self.exits[0]
        for epc, eres, estate, emaps in self.exits[1:]:
            result = z3.If(epc, eres, result)
            state = {k: z3.If(epc, estate[k], v) for k, v in state.items()}
            maps = {k: z3.If(epc, emaps[k], v) for k, v in maps.items()}
            pc = z3.Or(pc, epc)
        f = _Frame(dict(self.param_env), state, maps, pc)
        if self.fn.ret == BOOL:
            result = result != 0 if not z3.is_bool(result) else result
        for ens, gid in zip(self.fn.ensures, self.fn.ensures_guards, strict=True):
            cond = self.expr(ens, f, self.entry_state, result)
            self.check(f, gid, z3.Not(cond))
        for inv, gid in zip(self.c.invariants, self.fn.invariant_guards, strict=True):
            cond = self.expr(inv, f)
            self.check(f, gid, z3.Not(cond))

    def block(self, stmts: list[Stmt], f: _Frame) -> None:
        for s in stmts:
            if z3.is_false(f.pc):
                return
            self.stmt(s, f)

    def stmt(self, s: Stmt, f: _Frame) -> None:
        if isinstance(s, Let):
            assert s.value is not None
            f.env[s.name] = self.expr(s.value, f)
        elif isinstance(s, Assign):
            target = s.target
            assert s.value is not None
            if isinstance(target, Name):
                value = self.expr(s.value, f)
                if target.kind == "state":
                    f.state[target.id] = value
                else:
                    f.env[target.id] = value
            else:
                assert target is not None and target.ty is not None
                idx = self.index(target, f)
                value = self.expr(s.value, f)
                if target.ty == BOOL:
                    value = z3.If(value, 1, 0)
                f.maps[target.name] = z3.Store(f.maps[target.name], idx, value)
        elif isinstance(s, If):
            assert s.cond is not None
            cond = self.expr(s.cond, f)
            then_f = f.copy()
            then_f.pc = z3.And(f.pc, cond)
            self.block(s.then, then_f)
            else_f = f.copy()
            else_f.pc = z3.And(f.pc, z3.Not(cond))
            self.block(s.orelse, else_f)
            self.merge(f, then_f, else_f)
        elif isinstance(s, For):
            self.loop(s, f)
        elif isinstance(s, Return):
            value = z3.IntVal(0) if s.value is None else self.expr(s.value, f)
            if z3.is_bool(value):
                value = z3.If(value, 1, 0)
            self.exits.append((f.pc, value, dict(f.state), dict(f.maps)))
            f.pc = z3.BoolVal(False)
        elif isinstance(s, Assert):
            assert s.cond is not None
            cond = self.expr(s.cond, f)
            if s.kind == "check":
                f.pc = z3.And(f.pc, cond)
            else:
                self.check(f, s.guard, z3.Not(cond))
        elif isinstance(s, ExprStmt):
            assert s.expr is not None
            self.expr(s.expr, f)

    def merge(self, f: _Frame, a: _Frame, b: _Frame) -> None:
        if z3.is_false(a.pc):
            f.env, f.state, f.maps, f.pc = b.env, b.state, b.maps, b.pc
            return
        if z3.is_false(b.pc):
            f.env, f.state, f.maps, f.pc = a.env, a.state, a.maps, a.pc
            return
        for attr in ("env", "state", "maps"):
            da, db = getattr(a, attr), getattr(b, attr)
            merged = {}
            for k, va in da.items():
                vb = db.get(k)
                if vb is None:
                    continue  # a let inside one branch is out of scope after it
                merged[k] = va if va is vb or va.eq(vb) else z3.If(a.pc, va, vb)
            setattr(f, attr, merged)
        f.pc = z3.Or(a.pc, b.pc)

    def loop(self, s: For, f: _Frame) -> None:
        count = s.hi - s.lo
        if count <= UNROLL:
            for i in range(s.lo, s.hi):
                f.env[s.var] = z3.IntVal(i)
                self.block(s.body, f)
            f.env.pop(s.var, None)
            return
        # Abstraction: havoc what the body writes, run the body once for an arbitrary iteration.
        written_locals, written_state, written_maps = _writes(s.body, self.c)
        self.havoc(f, written_locals, written_state, written_maps)
        i = z3.Int(f"{s.var}!{self.fresh_count}")
        self.fresh_count += 1
        f.env[s.var] = i
        body = f.copy()
        body.pc = z3.And(f.pc, i >= s.lo, i < s.hi)
        self.abstract += 1
        self.block(s.body, body)
        self.abstract -= 1
        f.env.pop(s.var, None)
        self.havoc(f, written_locals, written_state, written_maps)

    def havoc(self, f: _Frame, locs: set[str], states: set[str], maps: set[str]) -> None:
        for name in locs:
            if name in f.env:
                f.env[name] = self.fresh(name, self.fn.locals[name])
        for name in states:
            decl = self.c.state(name)
            assert decl is not None
            f.state[name] = self.fresh(name, decl.ty)
        for name in maps:
            f.maps[name] = self.fresh_map(name)

    # -- expressions --------------------------------------------------------------------
    def index(self, node: Index, f: _Frame) -> Any:
        decl = self.c.state(node.name)
        assert decl is not None and node.index is not None
        idx = self.expr(node.index, f)
        self.check(f, node.guard, z3.Or(idx < 0, idx >= decl.ty.size))
        return idx

    def expr(
        self, e: Expr, f: _Frame, old: dict[str, Any] | None = None, result: Any = None
    ) -> Any:
        ty = e.ty
        assert ty is not None
        if isinstance(e, IntLit):
            return z3.IntVal(e.value)
        if isinstance(e, DecLit):
            return z3.IntVal(e.scaled)
        if isinstance(e, BoolLit):
            return z3.BoolVal(e.value)
        if isinstance(e, Name):
            if e.kind == "state":
                return f.state[e.id]
            return f.env[e.id]
        if isinstance(e, Index):
            idx = self.index(e, f)
            raw = z3.Select(f.maps[e.name], idx)
            if ty == BOOL:
                return raw != 0
            self.assumptions.append(_range(raw, ty))
            return raw
        if isinstance(e, Old):
            assert old is not None
            return old[e.name]
        if isinstance(e, ResultRef):
            return result
        if isinstance(e, CallerRef):
            return f.env["$caller"]
        if isinstance(e, Unary):
            assert e.operand is not None
            v = self.expr(e.operand, f, old, result)
            if e.op == "!":
                return z3.Not(v)
            return self.in_range(f, -v, ty, e.guard)
        if isinstance(e, Cast):
            assert e.expr is not None and e.expr.ty is not None
            v = self.expr(e.expr, f, old, result)
            src = e.expr.ty
            if src.kind == "int" and ty == DEC:
                v = v * DEC_SCALE
            elif src == DEC and ty.kind == "int":
                v = _tdiv(v, z3.IntVal(DEC_SCALE))
            return self.in_range(f, v, ty, e.guard)
        if isinstance(e, Call):
            return self.call(e, f, old, result)
        if isinstance(e, Binary):
            return self.binary(e, f, old, result)
        raise AssertionError(type(e).__name__)

    def call(self, e: Call, f: _Frame, old: dict[str, Any] | None, result: Any) -> Any:
        callee = self.c.fn(e.fn)
        assert callee is not None
        args = [self.expr(a, f, old, result) for a in e.args]
        for inv in self.c.invariants:
            self.check(f, e.guard2, z3.Not(self.spec(inv, f)))
        cf = _Frame(
            {p.name: a for p, a in zip(callee.params, args, strict=True)},
            f.state,
            f.maps,
            f.pc,
        )
        cf.env["$caller"] = f.env["$caller"]
        facts = [self.spec(req, cf) for req in callee.requires]
        for _pos, party in callee.only:
            facts.append(cf.env["$caller"] == f.state[party])
        pre_state = dict(f.state)
        written_state = {n for n in callee.writes if n in f.state}
        written_maps = {n for n in callee.writes if n in f.maps}
        self.havoc(f, set(), written_state, written_maps)
        value = self.fresh(f"{e.fn}.result", callee.ret) if callee.ret != VOID else z3.IntVal(0)
        post = _Frame(cf.env, f.state, f.maps, f.pc)
        for ens in callee.ensures:
            facts.append(self.spec(ens, post, pre_state, value))
        for inv in self.c.invariants:
            facts.append(self.spec(inv, post))
        f.pc = z3.And(f.pc, *facts) if facts else f.pc
        return value

    def binary(self, e: Binary, f: _Frame, old: dict[str, Any] | None, result: Any) -> Any:
        op = e.op
        assert e.left is not None and e.right is not None and e.ty is not None
        if op in ("&&", "||", "==>"):
            a = self.expr(e.left, f, old, result)
            # The right side runs only when the left does not decide: its guards live on that path.
            saved = f.pc
            f.pc = z3.And(saved, a if op != "||" else z3.Not(a))
            b = self.expr(e.right, f, old, result)
            f.pc = z3.Or(z3.And(saved, a if op == "||" else z3.Not(a)), f.pc)
            if op == "&&":
                return z3.And(a, b)
            if op == "||":
                return z3.Or(a, b)
            return z3.Implies(a, b)
        a = self.expr(e.left, f, old, result)
        b = self.expr(e.right, f, old, result)
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
        lt = e.left.ty
        ty = e.ty
        if op == "+":
            return self.in_range(f, a + b, ty, e.guard)
        if op == "-":
            return self.in_range(f, a - b, ty, e.guard)
        if op == "*":
            product = a * b
            if lt == DEC:
                product = _tdiv(product, z3.IntVal(DEC_SCALE))
            return self.in_range(f, product, ty, e.guard)
        self.check(f, e.guard, b == 0)
        if lt == DEC:
            return self.in_range(f, _tdiv(a * DEC_SCALE, b), ty, e.guard2)
        assert lt is not None
        lo = lt.range[0]
        if lo < 0:
            self.check(f, e.guard2, z3.And(a == lo, b == -1))
        q = _tdiv(a, b)
        return q if op == "/" else a - b * q


def _writes(stmts: list[Stmt], c: Contract) -> tuple[set[str], set[str], set[str]]:
    locs: set[str] = set()
    states: set[str] = set()
    maps: set[str] = set()
    todo = list(stmts)
    while todo:
        s = todo.pop()
        if isinstance(s, Assign):
            if isinstance(s.target, Name):
                (states if s.target.kind == "state" else locs).add(s.target.id)
            elif isinstance(s.target, Index):
                maps.add(s.target.name)
        elif isinstance(s, Let):
            locs.add(s.name)
        elif isinstance(s, If):
            todo.extend(s.then)
            todo.extend(s.orelse)
        elif isinstance(s, For):
            todo.extend(s.body)
        for e in _stmt_exprs(s):
            for callee in _calls(e):
                fn = c.fn(callee)
                if fn is not None:
                    for name in fn.writes:
                        decl = c.state(name)
                        if decl is not None:
                            (maps if decl.ty.kind == "map" else states).add(name)
    return locs, states, maps


def _stmt_exprs(s: Stmt) -> list[Expr]:
    if isinstance(s, Let | Assign | Return) and s.value is not None:
        return [s.value]
    if isinstance(s, ExprStmt) and s.expr is not None:
        return [s.expr]
    if isinstance(s, If | Assert) and s.cond is not None:
        return [s.cond]
    return []


def _calls(e: Expr) -> list[str]:
    out: list[str] = []
    todo = [e]
    while todo:
        x = todo.pop()
        if isinstance(x, Call):
            out.append(x.fn)
            todo.extend(x.args)
        elif isinstance(x, Binary):
            todo.extend(y for y in (x.left, x.right) if y is not None)
        elif isinstance(x, Unary) and x.operand is not None:
            todo.append(x.operand)
        elif isinstance(x, Cast) and x.expr is not None:
            todo.append(x.expr)
        elif isinstance(x, Index) and x.index is not None:
            todo.append(x.index)
    return out


def _format_value(value: Any, ty: Ty) -> str:
    if z3.is_true(value):
        return "true"
    if z3.is_false(value):
        return "false"
    if not z3.is_int_value(value):
        return str(value)
    n = value.as_long()
    if ty == DEC:
        sign = "-" if n < 0 else ""
        whole, frac = divmod(abs(n), DEC_SCALE)
        return f"{sign}{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else f"{sign}{whole}"
    return str(n)


def solve_function(contract: Contract, fn: FnDecl, timeout_ms: int) -> list[Verdict]:
    """Prove or refute every guard of ``fn``; never blocks past ``timeout_ms`` per query."""
    run = SymbolicRun(contract, fn)
    run.run()
    verdicts: list[Verdict] = []
    if not run.obligations:
        return verdicts
    solver = z3.Solver()
    solver.set("timeout", max(1, timeout_ms))
    solver.add(*run.assumptions)

    def verdict(
        ob: Obligation, status: str, cex: dict[str, str] | None = None, reason: str = ""
    ) -> Verdict:
        kind, message, pos = contract.guards[ob.gid]
        return Verdict(fn.name, ob.gid, kind, message, pos, status, cex or {}, reason)

    # One guard may yield several obligations (unrolled loops, several invariants): merge them.
    grouped: dict[int, Obligation] = {}
    for ob in run.obligations:
        prev = grouped.get(ob.gid)
        if prev is None:
            grouped[ob.gid] = ob
        else:
            grouped[ob.gid] = Obligation(
                ob.gid, z3.Or(prev.bad, ob.bad), prev.abstract or ob.abstract
            )
    obligations = list(grouped.values())
    combined = solver.check(z3.Or(*[ob.bad for ob in obligations]))
    if combined == z3.unsat:
        return [verdict(ob, "proved") for ob in obligations]
    for ob in obligations:
        answer = solver.check(ob.bad)
        if answer == z3.unsat:
            verdicts.append(verdict(ob, "proved"))
        elif answer == z3.sat:
            if ob.abstract:
                verdicts.append(
                    verdict(ob, "unknown", reason="loop abstraction (loop longer than 16)")
                )
                continue
            model = solver.model()
            cex = {
                name: _format_value(model.eval(var, model_completion=True), ty)
                for name, (var, ty) in run.inputs.items()
            }
            verdicts.append(verdict(ob, "failed", cex))
        else:
            verdicts.append(verdict(ob, "unknown", reason=f"solver: {solver.reason_unknown()}"))
    return verdicts


def solve(contract: Contract, *, timeout_ms: int = 2000) -> list[Verdict]:
    """Verdicts for every guard of every function of a checked contract (serially)."""
    out: list[Verdict] = []
    for fn in contract.fns:
        out.extend(solve_function(contract, fn, timeout_ms))
    return out
