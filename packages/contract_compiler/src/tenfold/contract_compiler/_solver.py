"""Constraint solving (``solve``): every runtime guard becomes a z3 proof obligation.

Each function is executed symbolically once, over mathematical integers:

* values are SMT ``Int`` terms (booleans are ``Bool``, maps are
  ``(Array Int Int)``); every parameter, entry state value and map read is
  assumed inside its type's range, and the contract invariants are assumed at
  entry;
* every guard (overflow, division by zero, index, assert, ensures, invariant
  at exit, invariant before a call) adds an obligation ``path /\\ bad``; after
  the guard the path assumes ``not bad``, which is exactly what the running
  code does, since it reverts otherwise;
* branches merge with ``ite``; loops of up to ``UNROLL`` iterations are
  unrolled, longer ones are abstracted (the variables they write are
  havocked), and an obligation that fails only under that abstraction is
  "unknown", not "failed";
* a call is modular (Dafny-style): the caller checks the invariant, then
  assumes the callee's requires, ensures and the invariant over a state whose
  written variables are havocked.

The run writes SMT-LIB 2 text, one ``define-fun`` per intermediate term (so
shared subterms stay shared and the text grows linearly), and z3 parses it in
one call: building terms through z3's Python API costs several times more.

An obligation is "proved" when ``assumptions /\\ path /\\ bad`` is
unsatisfiable, "failed" (with the model as counterexample) when satisfiable,
"unknown" when z3 hits the per-query timeout. One query over the disjunction
of all obligations proves a clean function at once; only when it is
satisfiable are obligations checked one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

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
    children,
    left_spine,
)

__all__ = [
    "UNROLL",
    "Obligation",
    "Query",
    "Verdict",
    "build_query",
    "gas_bound",
    "run_queries",
    "run_query",
    "solve",
    "solve_function",
    "to_verdicts",
]

UNROLL = 16
"""Loops with at most this many iterations are unrolled exactly."""

HARD_KINDS = frozenset({"assert", "ensures", "invariant", "call-invariant", "loop-invariant"})
"""Kinds whose failure is a verification error (the others keep their runtime guard)."""

_ARRAY = "(Array Int Int)"
_I64 = Ty("int")


@dataclass
class Obligation:
    gid: int
    bad: str
    abstract: bool  # raised inside the body of a summarised loop


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


def _num(v: int) -> str:
    return str(v) if v >= 0 else f"(- {-v})"


def _literal_int(term: str) -> int | None:
    if term.isdigit():
        return int(term)
    if term.startswith("(- ") and term[3:-1].isdigit():
        return -int(term[3:-1])
    return None


class _Frame:
    """Variables and the path condition at one point of the symbolic run."""

    __slots__ = ("env", "maps", "pc", "state")

    def __init__(
        self, env: dict[str, str], state: dict[str, str], maps: dict[str, str], pc: str
    ) -> None:
        self.env = env
        self.state = state
        self.maps = maps
        self.pc = pc

    def copy(self) -> _Frame:
        return _Frame(dict(self.env), dict(self.state), dict(self.maps), self.pc)


class SymbolicRun:
    def __init__(self, contract: Contract, fn: FnDecl, count_steps: bool = False) -> None:
        self.c = contract
        self.fn = fn
        # With count_steps, env["$steps"] counts executed statements along the path (the
        # interpreter's count), so the largest feasible value at exit is a tight gas bound.
        self.count_steps = count_steps
        self.exit_steps: list[str] = []
        self.lines: list[str] = []
        self.sorts: dict[str, str] = {}
        self.n = 0
        self.assumptions: list[str] = []
        self.obligations: list[Obligation] = []
        self.abstract = 0
        self.inputs: dict[str, tuple[str, Ty]] = {}
        self.suppress = 0
        self.exits: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        # Constants standing for values an abstraction chose (a summarised loop's
        # writes, a callee's result and writes), with the abstraction's description.
        self.sources: dict[str, str] = {}

    # -- terms ----------------------------------------------------------------------
    def define(self, sort: str, text: str) -> str:
        self.n += 1
        name = f"t{self.n}"
        self.lines.append(f"(define-fun {name} () {sort} {text})")
        self.sorts[name] = sort
        return name

    def declare(self, name: str, sort: str) -> str:
        self.lines.append(f"(declare-const {name} {sort})")
        self.sorts[name] = sort
        return name

    def sort_of(self, term: str) -> str:
        if term in ("true", "false"):
            return "Bool"
        if _literal_int(term) is not None:
            return "Int"
        return self.sorts[term]

    def i(self, text: str) -> str:
        return self.define("Int", text)

    def b(self, text: str) -> str:
        return self.define("Bool", text)

    def and_(self, *terms: str) -> str:
        parts = [t for t in terms if t != "true"]
        if "false" in parts:
            return "false"
        if not parts:
            return "true"
        if len(parts) == 1:
            return parts[0]
        return self.b(f"(and {' '.join(parts)})")

    def or_(self, *terms: str) -> str:
        parts = [t for t in terms if t != "false"]
        if "true" in parts:
            return "true"
        if not parts:
            return "false"
        if len(parts) == 1:
            return parts[0]
        return self.b(f"(or {' '.join(parts)})")

    def not_(self, t: str) -> str:
        if t == "true":
            return "false"
        if t == "false":
            return "true"
        return self.b(f"(not {t})")

    def ite(self, c: str, a: str, b: str) -> str:
        if a == b or c == "true":
            return a
        if c == "false":
            return b
        return self.define(self.sort_of(a), f"(ite {c} {a} {b})")

    def range_of(self, v: str, ty: Ty) -> str:
        if ty == BOOL:
            return "true"
        lo, hi = ty.range
        return self.b(f"(and (>= {v} {_num(lo)}) (<= {v} {_num(hi)}))")

    def tdiv(self, a: str, b: str) -> str:
        """Truncating division from SMT-LIB's division on non-negative operands."""
        bv = _literal_int(b)
        if bv is not None and bv > 0:
            return self.i(f"(ite (>= {a} 0) (div {a} {b}) (- (div (- {a}) {b})))")
        if bv is not None and bv < 0:
            return self.i(f"(ite (>= {a} 0) (- (div {a} {-bv})) (div (- {a}) {-bv}))")
        return self.i(
            f"(ite (>= {a} 0) (ite (> {b} 0) (div {a} {b}) (- (div {a} (- {b})))) "
            f"(ite (> {b} 0) (- (div (- {a}) {b})) (div (- {a}) (- {b}))))"
        )

    # -- variables ------------------------------------------------------------------
    def fresh(self, name: str, ty: Ty, source: str) -> str:
        self.n += 1
        v = self.declare(f"{name}!{self.n}", "Bool" if ty == BOOL else "Int")
        self.sources[v] = source
        if ty != BOOL:
            self.assumptions.append(self.range_of(v, ty))
        return v

    def fresh_map(self, name: str, source: str) -> str:
        self.n += 1
        v = self.declare(f"{name}!{self.n}", _ARRAY)
        self.sources[v] = source
        return v

    def start(self) -> _Frame:
        env: dict[str, str] = {}
        for p in self.fn.params:
            v = self.declare(f"p.{p.name}", "Bool" if p.ty == BOOL else "Int")
            self.assumptions.append(self.range_of(v, p.ty))
            env[p.name] = v
            self.inputs[p.name] = (v, p.ty)
        caller = self.declare("caller", "Int")
        self.assumptions.append(self.range_of(caller, _I64))
        env["$caller"] = caller
        self.inputs["caller"] = (caller, _I64)
        state: dict[str, str] = {}
        maps: dict[str, str] = {}
        for decl in self.c.states:
            if decl.ty.kind == "map":
                maps[decl.name] = self.declare(f"s.{decl.name}", _ARRAY)
            else:
                v = self.declare(f"s.{decl.name}", "Bool" if decl.ty == BOOL else "Int")
                self.assumptions.append(self.range_of(v, decl.ty))
                state[decl.name] = v
                self.inputs[decl.name] = (v, decl.ty)
        self.param_env = dict(env)
        frame = _Frame(env, state, maps, "true")
        self.entry_state = dict(state)
        for inv in self.c.invariants:
            self.assumptions.append(self.spec(inv, frame))
        return frame

    def spec(self, e: Expr, f: _Frame, old: dict[str, str] | None = None, result: str = "0") -> str:
        """Evaluate an expression only as a fact (no obligations, no path change)."""
        self.suppress += 1
        saved = f.pc
        try:
            return self.expr(e, f, old, result)
        finally:
            f.pc = saved
            self.suppress -= 1

    # -- obligations ------------------------------------------------------------------
    def check(self, f: _Frame, gid: int, bad: str) -> None:
        if self.suppress or bad == "false":
            return
        self.obligations.append(Obligation(gid, self.and_(f.pc, bad), self.abstract > 0))
        f.pc = self.and_(f.pc, self.not_(bad))

    def in_range(self, f: _Frame, v: str, ty: Ty, gid: int) -> str:
        lo, hi = ty.range
        self.check(f, gid, self.b(f"(or (< {v} {_num(lo)}) (> {v} {_num(hi)}))"))
        return v

    # -- statements -------------------------------------------------------------------
    def run(self) -> None:
        fn = self.fn
        f = self.start()
        for (_pos, party), _gid in zip(fn.only, fn.only_guards, strict=True):
            f.pc = self.and_(f.pc, self.b(f"(= {f.env['$caller']} {f.state[party]})"))
        for req in fn.requires:
            f.pc = self.and_(f.pc, self.expr(req, f))
        self.block(fn.body, f)
        self.exits.append((f.pc, "0", f.state, f.maps))
        self.exit_steps.append(f.env.get("$steps", "0"))
        self.finish()

    def finish(self) -> None:
        """Merge every exit into one state, then check ensures and invariants there."""
        pc, result, state, maps = self.exits[0]
        steps = self.exit_steps[0]
        for (epc, _r, _s, _m), esteps in zip(self.exits[1:], self.exit_steps[1:], strict=True):
            steps = self.ite(epc, esteps, steps)
        self.steps_at_exit = steps
        for epc, eres, estate, emaps in self.exits[1:]:
            result = self.ite(epc, eres, result)
            state = {k: self.ite(epc, estate[k], v) for k, v in state.items()}
            maps = {k: self.ite(epc, emaps[k], v) for k, v in maps.items()}
            pc = self.or_(pc, epc)
        self.exit_pc = pc
        f = _Frame(dict(self.param_env), state, maps, pc)
        if self.fn.ret == BOOL:
            result = self.b(f"(not (= {result} 0))")
        for ens, gid in zip(self.fn.ensures, self.fn.ensures_guards, strict=True):
            cond = self.expr(ens, f, self.entry_state, result)
            self.check(f, gid, self.not_(cond))
        for inv, gid in zip(self.c.invariants, self.fn.invariant_guards, strict=True):
            cond = self.expr(inv, f)
            self.check(f, gid, self.not_(cond))

    def block(self, stmts: list[Stmt], f: _Frame) -> None:
        for s in stmts:
            if f.pc == "false":
                return
            if self.count_steps:
                self.add_steps(f, 1)
            self.stmt(s, f)

    def add_steps(self, f: _Frame, n: int) -> None:
        f.env["$steps"] = self.i(f"(+ {f.env.get('$steps', '0')} {n})")

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
                    value = self.i(f"(ite {value} 1 0)")
                m = f.maps[target.name]
                f.maps[target.name] = self.define(_ARRAY, f"(store {m} {idx} {value})")
        elif isinstance(s, If):
            assert s.cond is not None
            cond = self.expr(s.cond, f)
            then_f = f.copy()
            then_f.pc = self.and_(f.pc, cond)
            self.block(s.then, then_f)
            else_f = f.copy()
            else_f.pc = self.and_(f.pc, self.not_(cond))
            self.block(s.orelse, else_f)
            self.merge(f, then_f, else_f)
        elif isinstance(s, For):
            self.loop(s, f)
        elif isinstance(s, Return):
            value = "0" if s.value is None else self.expr(s.value, f)
            if self.sort_of(value) == "Bool":
                value = self.i(f"(ite {value} 1 0)")
            self.exits.append((f.pc, value, dict(f.state), dict(f.maps)))
            self.exit_steps.append(f.env.get("$steps", "0"))
            f.pc = "false"
        elif isinstance(s, Assert):
            assert s.cond is not None
            cond = self.expr(s.cond, f)
            if s.kind == "check":
                f.pc = self.and_(f.pc, cond)
            else:
                self.check(f, s.guard, self.not_(cond))
        elif isinstance(s, ExprStmt):
            assert s.expr is not None
            self.expr(s.expr, f)

    def merge(self, f: _Frame, a: _Frame, b: _Frame) -> None:
        if a.pc == "false":
            f.env, f.state, f.maps, f.pc = b.env, b.state, b.maps, b.pc
            return
        if b.pc == "false":
            f.env, f.state, f.maps, f.pc = a.env, a.state, a.maps, a.pc
            return
        for attr in ("env", "state", "maps"):
            da, db = getattr(a, attr), getattr(b, attr)
            merged = {}
            for k, va in da.items():
                vb = db.get(k)
                if vb is None:
                    continue  # a let inside one branch is out of scope after it
                merged[k] = self.ite(a.pc, va, vb)
            setattr(f, attr, merged)
        f.pc = self.or_(a.pc, b.pc)

    def loop(self, s: For, f: _Frame) -> None:
        count = s.hi - s.lo
        if count <= UNROLL:
            # Exact: every iteration, and the invariants where the running code checks them.
            f.env[s.var] = _num(s.lo)
            self.loop_invariants(s, f)
            for i in range(s.lo, s.hi):
                f.env[s.var] = _num(i)
                self.block(s.body, f)
                if s.invariants and f.pc != "false":
                    f.env[s.var] = _num(i + 1)
                    self.loop_invariants(s, f)
            f.env.pop(s.var, None)
            return
        # Summary (checked inductively): the invariants hold on entry; from a state where
        # they hold at an arbitrary iteration i, one run of the body re-establishes them at
        # i + 1; after the loop, any state where they hold at i = hi. The written variables
        # are havocked (fresh constants tagged with this loop), so an obligation that reads
        # them is decided only by the invariants: when z3 still finds a model, it is replayed
        # on the interpreter before it is reported as a counterexample.
        source = (
            f"depends on a loop of {count} iterations (over {UNROLL}), summarised by its "
            f"invariants, which do not decide it"
        )
        f.env[s.var] = _num(s.lo)
        self.loop_invariants(s, f)
        written_locals, written_state, written_maps = _writes(s.body, self.c)
        entry = f.copy()
        counters = _counters(s.body, self.c, f)
        self.havoc(f, written_locals, written_state, written_maps, source)
        var = self.fresh(s.var, _I64, source)
        f.env[s.var] = var
        body = f.copy()
        body.pc = self.and_(f.pc, self.b(f"(and (>= {var} {_num(s.lo)}) (< {var} {_num(s.hi)}))"))
        body.pc = self.and_(body.pc, *self.summary_facts(s, body, entry, counters, var))
        self.abstract += 1
        self.block(s.body, body)
        if s.invariants and body.pc != "false":
            body.env[s.var] = self.i(f"(+ {var} 1)")
            self.loop_invariants(s, body)
        self.abstract -= 1
        self.havoc(f, written_locals, written_state, written_maps, source)
        f.env[s.var] = _num(s.hi)
        facts = self.summary_facts(s, f, entry, counters, _num(s.hi))
        if _may_stop(s.body):
            # Whether the real loop ran to its end (no revert, no return) is not known here.
            self.n += 1
            done = self.declare(f"loop_done!{self.n}", "Bool")
            self.sources[done] = source
            facts.append(done)
        f.pc = self.and_(f.pc, *facts)
        f.env.pop(s.var, None)
        if self.count_steps:
            from tenfold.contract_compiler._checker import static_steps

            self.add_steps(f, count * (1 + static_steps(s.body, self.c)))

    def loop_invariants(self, s: For, f: _Frame) -> None:
        for inv, gid in zip(s.invariants, s.invariant_guards, strict=True):
            self.check(f, gid, self.not_(self.expr(inv, f)))

    def summary_facts(
        self, s: For, f: _Frame, entry: _Frame, counters: dict[str, tuple[int, int]], i: str
    ) -> list[str]:
        """What holds at the loop head at iteration ``i``: user and inferred invariants."""
        facts = [self.spec(inv, f) for inv in s.invariants]
        done = self.i(f"(- {i} {_num(s.lo)})")
        for name, (lo, hi) in sorted(counters.items()):
            now = f.env[name] if name in f.env else f.state[name]
            start = entry.env[name] if name in entry.env else entry.state[name]
            if lo == hi:
                facts.append(self.b(f"(= {now} (+ {start} (* {_num(lo)} {done})))"))
            else:
                facts.append(
                    self.b(
                        f"(and (>= {now} (+ {start} (* {_num(lo)} {done}))) "
                        f"(<= {now} (+ {start} (* {_num(hi)} {done}))))"
                    )
                )
        return facts

    def havoc(
        self, f: _Frame, locs: set[str], states: set[str], maps: set[str], source: str
    ) -> None:
        for name in sorted(locs):
            if name in f.env:
                f.env[name] = self.fresh(name, self.fn.locals[name], source)
        for name in sorted(states):
            decl = self.c.state(name)
            assert decl is not None
            f.state[name] = self.fresh(name, decl.ty, source)
        for name in sorted(maps):
            f.maps[name] = self.fresh_map(name, source)

    # -- expressions --------------------------------------------------------------------
    def index(self, node: Index, f: _Frame) -> str:
        decl = self.c.state(node.name)
        assert decl is not None and node.index is not None
        idx = self.expr(node.index, f)
        self.check(f, node.guard, self.b(f"(or (< {idx} 0) (>= {idx} {decl.ty.size}))"))
        return idx

    def expr(self, e: Expr, f: _Frame, old: dict[str, str] | None = None, result: str = "0") -> str:
        ty = e.ty
        assert ty is not None
        if isinstance(e, IntLit):
            return _num(e.value)
        if isinstance(e, DecLit):
            return _num(e.scaled)
        if isinstance(e, BoolLit):
            return "true" if e.value else "false"
        if isinstance(e, Name):
            if e.kind == "state":
                return f.state[e.id]
            return f.env[e.id]
        if isinstance(e, Index):
            idx = self.index(e, f)
            raw = self.i(f"(select {f.maps[e.name]} {idx})")
            if ty == BOOL:
                return self.b(f"(not (= {raw} 0))")
            self.assumptions.append(self.range_of(raw, ty))
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
                return self.not_(v)
            return self.in_range(f, self.i(f"(- {v})"), ty, e.guard)
        if isinstance(e, Cast):
            assert e.expr is not None and e.expr.ty is not None
            v = self.expr(e.expr, f, old, result)
            src = e.expr.ty
            if src.kind == "int" and ty == DEC:
                v = self.i(f"(* {v} {DEC_SCALE})")
            elif src == DEC and ty.kind == "int":
                v = self.tdiv(v, str(DEC_SCALE))
            return self.in_range(f, v, ty, e.guard)
        if isinstance(e, Call):
            return self.call(e, f, old, result)
        if isinstance(e, Binary):
            return self.binary(e, f, old, result)
        raise AssertionError(type(e).__name__)

    def call(self, e: Call, f: _Frame, old: dict[str, str] | None, result: str) -> str:
        callee = self.c.fn(e.fn)
        assert callee is not None
        args = [self.expr(a, f, old, result) for a in e.args]
        for inv in self.c.invariants:
            self.check(f, e.guard2, self.not_(self.spec(inv, f)))
        cf = _Frame(
            {p.name: a for p, a in zip(callee.params, args, strict=True)},
            f.state,
            f.maps,
            f.pc,
        )
        cf.env["$caller"] = f.env["$caller"]
        facts = [self.spec(req, cf) for req in callee.requires]
        for _pos, party in callee.only:
            facts.append(self.b(f"(= {cf.env['$caller']} {f.state[party]})"))
        pre_state = dict(f.state)
        written_state = {n for n in callee.writes if n in f.state}
        written_maps = {n for n in callee.writes if n in f.maps}
        source = f"depends on what '{e.fn}' returns or writes, known here only through its ensures"
        self.havoc(f, set(), written_state, written_maps, source)
        value = self.fresh(f"{e.fn}.result", callee.ret, source) if callee.ret != VOID else "0"
        if self.count_steps:
            self.add_steps(f, callee.steps)
        post = _Frame(cf.env, f.state, f.maps, f.pc)
        for ens in callee.ensures:
            facts.append(self.spec(ens, post, pre_state, value))
        for inv in self.c.invariants:
            facts.append(self.spec(inv, post))
        # Whether the real callee returned (rather than reverting on one of its own checks)
        # is not known here: a path past the call is as exact as the callee's spec.
        self.n += 1
        returned = self.declare(f"{e.fn}.returned!{self.n}", "Bool")
        self.sources[returned] = source
        facts.append(returned)
        f.pc = self.and_(f.pc, *facts)
        return value

    def binary(self, e: Binary, f: _Frame, old: dict[str, str] | None, result: str) -> str:
        first, chain = left_spine(e)
        value = self.expr(first, f, old, result)
        for node in chain:
            value = self.binary_node(node, value, f, old, result)
        return value

    def binary_node(
        self, e: Binary, a: str, f: _Frame, old: dict[str, str] | None, result: str
    ) -> str:
        """One binary node whose left operand evaluated to ``a``."""
        op = e.op
        assert e.left is not None and e.right is not None and e.ty is not None
        if op in ("&&", "||", "==>"):
            # The right side runs only when the left does not decide: its guards live on that path.
            saved = f.pc
            f.pc = self.and_(saved, a if op != "||" else self.not_(a))
            b = self.expr(e.right, f, old, result)
            decided = self.and_(saved, a if op == "||" else self.not_(a))
            f.pc = self.or_(decided, f.pc)
            if op == "&&":
                return self.and_(a, b)
            if op == "||":
                return self.or_(a, b)
            return self.or_(self.not_(a), b)
        b = self.expr(e.right, f, old, result)
        if op in ("==", "!="):
            eq = self.b(f"(= {a} {b})")
            return eq if op == "==" else self.not_(eq)
        if op in ("<", "<=", ">", ">="):
            return self.b(f"({op} {a} {b})")
        lt = e.left.ty
        ty = e.ty
        if op == "+":
            return self.in_range(f, self.i(f"(+ {a} {b})"), ty, e.guard)
        if op == "-":
            return self.in_range(f, self.i(f"(- {a} {b})"), ty, e.guard)
        if op == "*":
            product = self.i(f"(* {a} {b})")
            if lt == DEC:
                product = self.tdiv(product, str(DEC_SCALE))
            return self.in_range(f, product, ty, e.guard)
        self.check(f, e.guard, self.b(f"(= {b} 0)"))
        if lt == DEC:
            return self.in_range(f, self.tdiv(self.i(f"(* {a} {DEC_SCALE})"), b), ty, e.guard2)
        assert lt is not None
        lo = lt.range[0]
        if lo < 0:
            self.check(f, e.guard2, self.b(f"(and (= {a} {_num(lo)}) (= {b} (- 1)))"))
        q = self.tdiv(a, b)
        return q if op == "/" else self.i(f"(- {a} (* {b} {q}))")


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


def _counters(stmts: list[Stmt], c: Contract, f: _Frame) -> dict[str, tuple[int, int]]:
    """Inferred loop invariants: variables the body only ever steps by literal amounts.

    For a variable live before the loop (a local or a scalar state variable) whose every
    write in the body is ``v = v + k`` or ``v = v - k`` with a literal ``k`` (none by a
    callee, none inside a nested loop), one iteration adds between ``lo`` and ``hi``
    (the least and greatest sums along the body's paths); so at the head of iteration
    ``i``, ``v0 + lo * (i - first) <= v <= v0 + hi * (i - first)``, with equality when
    ``lo == hi``. Inductive by construction: a path that reverts or returns never
    reaches the next loop head, and the others add one path's sum.
    """
    candidates = {n for n in f.env if not n.startswith("$")} | set(f.state)
    callee_writes: set[str] = set()
    for s in _all_stmts(stmts):
        for e in _stmt_exprs(s):
            for name in _calls(e):
                callee = c.fn(name)
                if callee is not None:
                    callee_writes |= callee.writes
    out: dict[str, tuple[int, int]] = {}
    for name in sorted(candidates - callee_writes):
        span = _step_span(stmts, name)
        if span is not None and span != (0, 0):
            out[name] = span
    return out


def _step_span(stmts: list[Stmt], name: str) -> tuple[int, int] | None:
    """Least and greatest amount one run of ``stmts`` adds to ``name``; None if not a counter."""
    lo = hi = 0
    for s in stmts:
        if isinstance(s, Let) and s.name == name:
            return None
        if isinstance(s, Assign) and isinstance(s.target, Name) and s.target.id == name:
            step = _literal_step(s.value, name)
            if step is None:
                return None
            lo, hi = lo + step, hi + step
        elif isinstance(s, If):
            a = _step_span(s.then, name)
            b = _step_span(s.orelse, name)
            if a is None or b is None:
                return None
            lo, hi = lo + min(a[0], b[0]), hi + max(a[1], b[1])
        elif isinstance(s, For) and _step_span(s.body, name) != (0, 0):
            return None  # a nested loop's steps: not inferred
    return lo, hi


def _literal_step(e: Expr | None, name: str) -> int | None:
    if not isinstance(e, Binary) or e.op not in ("+", "-"):
        return None
    left, right = e.left, e.right

    def is_var(x: Expr | None) -> bool:
        return isinstance(x, Name) and x.id == name

    def lit(x: Expr | None) -> int | None:
        if isinstance(x, IntLit):
            return x.value
        if isinstance(x, DecLit):
            return x.scaled
        return None

    if is_var(left) and lit(right) is not None:
        k = lit(right)
        assert k is not None
        return k if e.op == "+" else -k
    if e.op == "+" and is_var(right) and lit(left) is not None:
        return lit(left)
    return None


def _all_stmts(stmts: list[Stmt]) -> list[Stmt]:
    out: list[Stmt] = []
    todo = list(stmts)
    while todo:
        s = todo.pop()
        out.append(s)
        if isinstance(s, If):
            todo.extend(s.then)
            todo.extend(s.orelse)
        elif isinstance(s, For):
            todo.extend(s.body)
    return out


def _may_stop(stmts: list[Stmt]) -> bool:
    """Whether running ``stmts`` can revert or return (any check, guard, call or return)."""
    for s in _all_stmts(stmts):
        if isinstance(s, Return | Assert | ExprStmt) or (isinstance(s, For) and s.invariants):
            return True
        if isinstance(s, Assign) and isinstance(s.target, Index):
            return True
        todo = list(_stmt_exprs(s))
        if isinstance(s, For):
            todo.extend(s.invariants)
        while todo:
            e = todo.pop()
            if isinstance(e, Index | Call | Cast) or (isinstance(e, Unary) and e.op == "-"):
                return True
            if isinstance(e, Binary) and e.op in ("+", "-", "*", "/", "%"):
                return True
            todo.extend(children(e))
    return False


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
        todo.extend(children(x))
    return out


def _format_value(value: z3.ExprRef, ty: Ty) -> str:
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


@dataclass(frozen=True)
class Query:
    """One function's proof obligations as SMT-LIB text: plain data, cheap to send to a worker."""

    fn: str
    script: str
    # guard id, and "" or why a model of it may not be a real run when that is known
    # before solving (an obligation raised inside a summarised loop's body)
    flags: tuple[tuple[int, str], ...]
    inputs: tuple[tuple[str, str, str], ...]  # display name, SMT name, type ("bool", "dec", "int")
    maps: tuple[tuple[str, str, int, str], ...] = ()  # name, SMT name, size, element type
    # constants an abstraction chose (a summarised loop, a call), with its description
    sources: tuple[tuple[str, str], ...] = ()


def _script_terms(script: str) -> dict[str, str]:
    """Each ``define-fun`` name's body, and each obligation ``obN``'s, from the SMT text."""
    texts: dict[str, str] = {}
    for line in script.splitlines():
        if line.startswith("(define-fun "):
            name, rest = line[len("(define-fun ") :].split(" ", 1)
            texts[name] = rest
        elif line.startswith("(assert (= ob"):
            name, rest = line[len("(assert (= ") :].split(" ", 1)
            texts[name] = rest
    return texts


def _taint(texts: dict[str, str], sources: dict[str, str]) -> Callable[[str], str]:
    """For a term, the first abstraction (one of ``sources``) it depends on, or ""."""
    memo: dict[str, str] = dict(sources)

    def of(term: str) -> str:
        if term in memo:
            return memo[term]
        # Iterative post-order over the define-fun graph (terms nest as deep as the code).
        stack = [term]
        while stack:
            top = stack[-1]
            if top in memo:
                stack.pop()
                continue
            text = texts.get(top)
            if text is None:
                memo[top] = ""
                stack.pop()
                continue
            deps = [t for t in _TOKEN.findall(text) if t in texts or t in sources]
            todo = [t for t in deps if t not in memo]
            if todo:
                stack.extend(todo)
                continue
            memo[top] = next((memo[t] for t in deps if memo[t]), "")
            stack.pop()
        return memo[term]

    return of


_TOKEN = re.compile(r"[^\s()]+")


def build_query(contract: Contract, fn: FnDecl) -> Query | None:
    """Run ``fn`` symbolically; ``None`` when it has no obligations."""
    run = SymbolicRun(contract, fn)
    run.run()
    if not run.obligations:
        return None
    # One guard may yield several obligations (unrolled loops, several invariants): merge them.
    grouped: dict[int, list[Obligation]] = {}
    for ob in run.obligations:
        grouped.setdefault(ob.gid, []).append(ob)
    lines = run.lines
    lines.extend(f"(assert {a})" for a in run.assumptions if a != "true")
    flags = []
    for gid, obs in grouped.items():
        bad = obs[0].bad if len(obs) == 1 else f"(or {' '.join(o.bad for o in obs)})"
        lines.append(f"(declare-const ob{gid} Bool)")
        lines.append(f"(assert (= ob{gid} {bad}))")
        why = ""
        if any(o.abstract for o in obs):
            why = f"inside a loop of more than {UNROLL} iterations, summarised"
        flags.append((gid, why))
    lines.append(
        f"(declare-const any Bool)\n(assert (= any (or {' '.join(f'ob{g}' for g, _ in flags)})))"
    )
    inputs = tuple(
        (name, smt, "bool" if ty == BOOL else "dec" if ty == DEC else "int")
        for name, (smt, ty) in run.inputs.items()
    )
    maps = tuple(
        (d.name, f"s.{d.name}", d.ty.size, _kind(d.ty.elem))
        for d in contract.states
        if d.ty.kind == "map" and d.ty.elem is not None
    )
    sources = tuple(sorted(run.sources.items()))
    return Query(fn.name, "\n".join(lines), tuple(flags), inputs, maps, sources)


def _kind(ty: Ty) -> str:
    return "bool" if ty == BOOL else "dec" if ty == DEC else "int"


Outcome = tuple[int, str, dict[str, str], str]
"""guard id, status, counterexample, reason; status "suspect" (a model that may not be a
real run) is settled by ``to_verdicts``, which replays it on the interpreter."""


def run_queries(queries: list[Query], timeout_ms: int) -> list[tuple[str, list[Outcome]]]:
    """Run several functions' queries (one solver each: a solver's parser keeps its names)."""
    return [(q.fn, run_query(q, timeout_ms)) for q in queries]


def run_query(query: Query, timeout_ms: int) -> list[Outcome]:
    """Ask z3 about every obligation of one function; each check stops at ``timeout_ms``."""
    solver = z3.Solver()
    solver.set("timeout", max(1, timeout_ms))
    solver.from_string(query.script)
    if solver.check(z3.Bool("any")) == z3.unsat:
        return [(gid, "proved", {}, "") for gid, _ in query.flags]
    out: list[Outcome] = []
    taint: Callable[[str], str] | None = None
    for gid, known in query.flags:
        answer = solver.check(z3.Bool(f"ob{gid}"))
        if answer == z3.unsat:
            out.append((gid, "proved", {}, ""))
        elif answer == z3.sat:
            why = known
            if not why and query.sources:
                # Only a model needs to know whether it read an abstraction's value: the
                # dependency walk over the SMT text is done here, on the rare path.
                if taint is None:
                    taint = _taint(_script_terms(query.script), dict(query.sources))
                why = taint(f"ob{gid}")
            cex = _counterexample(solver.model(), query)
            out.append((gid, "suspect", cex, why) if why else (gid, "failed", cex, ""))
        else:
            out.append((gid, "unknown", {}, f"solver: {solver.reason_unknown()}"))
    return out


def _counterexample(model: z3.ModelRef, query: Query) -> dict[str, str]:
    """Parameters, caller, scalar state and the map entries the model chose.

    Map entries are written ``m[3]``; ``m[*]`` is the value of every index not listed
    (left out when it is zero, a map's initial value).
    """
    cex = {}
    for name, smt_name, kind in query.inputs:
        var = z3.Bool(smt_name) if kind == "bool" else z3.Int(smt_name)
        cex[name] = _format_value(
            model.eval(var, model_completion=True), DEC if kind == "dec" else _I64
        )
    for name, smt_name, size, kind in query.maps:
        entries, default = _array_entries(model, z3.Array(smt_name, z3.IntSort(), z3.IntSort()))
        elem = DEC if kind == "dec" else _I64
        if kind == "bool":
            entries = {k: int(v != 0) for k, v in entries.items()}
            default = int(default != 0)
        for idx in sorted(entries):
            if 0 <= idx < size and entries[idx] != default:
                cex[f"{name}[{idx}]"] = _format_int(entries[idx], kind, elem)
        if default != 0:
            cex[f"{name}[*]"] = _format_int(default, kind, elem)
    return cex


def _array_entries(model: z3.ModelRef, arr: z3.ArrayRef) -> tuple[dict[int, int], int]:
    value = model.eval(arr, model_completion=True)
    entries: dict[int, int] = {}
    while z3.is_store(value):
        idx, v = value.arg(1), value.arg(2)
        if z3.is_int_value(idx) and z3.is_int_value(v):
            entries.setdefault(idx.as_long(), v.as_long())
        value = value.arg(0)
    if z3.is_const_array(value) and z3.is_int_value(value.arg(0)):
        return entries, value.arg(0).as_long()
    if z3.is_as_array(value):
        interp = model[z3.get_as_array_func(value)]
        for args_value in interp.as_list()[:-1]:
            idx, v = args_value[0], args_value[1]
            if z3.is_int_value(idx) and z3.is_int_value(v):
                entries.setdefault(idx.as_long(), v.as_long())
        default = interp.else_value()
        return entries, default.as_long() if z3.is_int_value(default) else 0
    return entries, 0


def _format_int(n: int, kind: str, ty: Ty) -> str:
    if kind == "bool":
        return "true" if n else "false"
    return _format_value(z3.IntVal(n), ty)


REPLAY_MAX_STEPS = 2_000_000
"""A suspect model of a function with a larger step bound is not replayed (left unknown)."""


def to_verdicts(contract: Contract, fn_name: str, outcomes: list[Outcome]) -> list[Verdict]:
    """Verdicts from z3's outcomes; a suspect model is reported as failed only if it replays.

    A model of an obligation that reads values an abstraction chose (a summarised loop,
    a callee known only through its ensures) may describe no real run. It is run on the
    reference interpreter: if the call reverts on that very guard, it is a counterexample
    ("failed"); otherwise the verdict is "unknown", with the abstraction as the reason.
    So every counterexample the compiler reports replays on the interpreter.
    """
    from tenfold.contract_compiler._interp import replay

    fn = contract.fn(fn_name)
    verdicts = []
    for gid, found, model, why in outcomes:
        kind, message, pos = contract.guards[gid]
        status, cex, reason = found, model, why
        if found == "suspect":
            replays = (
                fn is not None
                and fn.steps <= REPLAY_MAX_STEPS
                and replay(contract, fn_name, model) == gid
            )
            status, cex, reason = ("failed", model, "") if replays else ("unknown", {}, why)
        verdicts.append(Verdict(fn_name, gid, kind, message, pos, status, cex, reason))
    return verdicts


def solve_function(contract: Contract, fn: FnDecl, timeout_ms: int) -> list[Verdict]:
    """Prove or refute every guard of ``fn``; never blocks past ``timeout_ms`` per query."""
    query = build_query(contract, fn)
    if query is None:
        return []
    return to_verdicts(contract, fn.name, run_query(query, timeout_ms))


def gas_bound(contract: Contract, fn: FnDecl, timeout_ms: int = 2000) -> int | None:
    """The largest number of statements any feasible run of ``fn`` executes, found with z3.

    Paths the ``requires`` (or checks) rule out do not count, so this can be well
    below the syntactic bound ``fn.steps``; ``None`` when z3 gives no answer in time.
    """
    run = SymbolicRun(contract, fn, count_steps=True)
    run.run()
    lines = run.lines
    lines.extend(f"(assert {a})" for a in run.assumptions if a != "true")
    lines.append(f"(assert {run.exit_pc})")
    lines.append(f"(declare-const gas Int)\n(assert (= gas {run.steps_at_exit}))")
    # Binary search with plain satisfiability checks: on these ite-heavy terms it is
    # much faster than z3's Optimize, and each check keeps the per-query timeout.
    solver = z3.Solver()
    solver.set("timeout", max(1, timeout_ms))
    solver.from_string("\n".join(lines))
    gas = z3.Int("gas")
    if solver.check() != z3.sat:
        return None
    lo = solver.model().eval(gas, model_completion=True).as_long()
    hi = fn.steps
    while lo < hi:
        mid = (lo + hi + 1) // 2
        answer = solver.check(gas >= mid)
        if answer == z3.sat:
            lo = solver.model().eval(gas, model_completion=True).as_long()
        elif answer == z3.unsat:
            hi = mid - 1
        else:
            return None
    value = lo
    # Requires, ensures and the call itself, as in the static bound.
    return int(value) + 1 + len(fn.requires) + len(fn.ensures)


def solve(contract: Contract, *, timeout_ms: int = 2000) -> list[Verdict]:
    """Verdicts for every guard of every function of a checked contract (serially)."""
    out: list[Verdict] = []
    for fn in contract.fns:
        out.extend(solve_function(contract, fn, timeout_ms))
    return out
