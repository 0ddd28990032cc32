"""The reference interpreter: the language's semantics, written to be obviously right.

It walks the checked tree directly. Every runtime check raises
:class:`ContractRevert` with the same guard id the generated code returns, and
a reverted call leaves the state as it was, so the differential tests can
compare status, result and state after every call. Division truncates toward
zero (as LLVM's ``sdiv``); decimals are integers scaled by 10**6.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

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
    left_spine,
)
from tenfold.contract_compiler.errors import ContractCompilerError, ContractRevert

__all__ = ["Interpreter", "check_argument", "initial_state", "replay", "tdiv"]

_I64_MIN = -(1 << 63)


def tdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def initial_state(contract: Contract) -> list[int]:
    """The state buffer after deployment: initializers, maps all zero."""
    state = [0] * contract.slots
    for decl in contract.states:
        if decl.ty.kind != "map":
            state[decl.slot] = decl.init
    return state


def check_argument(ty: Ty, value: object, where: str) -> int:
    """Convert a Python argument to the stored integer of ``ty``, or raise a clear error."""
    if ty == BOOL:
        if not isinstance(value, bool):
            raise ContractCompilerError(f"{where}: expected a bool, got {value!r}")
        return int(value)
    if ty == DEC and isinstance(value, float):
        value = round(value * DEC_SCALE)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractCompilerError(f"{where}: expected an integer for {ty}, got {value!r}")
    lo, hi = ty.range
    if not lo <= value <= hi:
        raise ContractCompilerError(f"{where}: {value} is out of range for {ty} ({lo}..{hi})")
    return value


class _Return(Exception):
    def __init__(self, value: int) -> None:
        self.value = value


class Interpreter:
    """Executes a checked contract on a state buffer of 64-bit slots (stored integers)."""

    def __init__(self, contract: Contract, state: list[int] | None = None) -> None:
        self.c = contract
        self.state = list(state) if state is not None else initial_state(contract)
        self.steps = 0

    # -- public entry -----------------------------------------------------------
    def call(self, fn_name: str, args: Sequence[object] = (), caller: int = 0) -> int | None:
        """Run one transaction; on a failed check restore the state and raise ContractRevert."""
        fn = self.c.fn(fn_name)
        if fn is None:
            raise ContractCompilerError(f"no function '{fn_name}' in contract {self.c.name}")
        if len(args) != len(fn.params):
            raise ContractCompilerError(
                f"'{fn_name}' takes {len(fn.params)} argument(s), {len(args)} given"
            )
        values = [
            check_argument(p.ty, a, f"argument '{p.name}'")
            for p, a in zip(fn.params, args, strict=True)
        ]
        caller = check_argument(Ty("int"), caller, "caller")
        saved = list(self.state)
        try:
            result = self.invoke(fn, values, caller)
        except ContractRevert:
            self.state = saved
            raise
        return None if fn.ret == VOID else result

    def revert(self, gid: int) -> ContractRevert:
        kind, message, _pos = self.c.guards[gid]
        return ContractRevert(gid, kind, message)

    # -- functions ----------------------------------------------------------------
    def invoke(self, fn: FnDecl, args: list[int], caller: int) -> int:
        env: dict[str, int] = {p.name: v for p, v in zip(fn.params, args, strict=True)}
        env["$caller"] = caller
        for (_pos, party), gid in zip(fn.only, fn.only_guards, strict=True):
            decl = self.c.state(party)
            assert decl is not None
            if self.state[decl.slot] != caller:
                raise self.revert(gid)
        for req, gid in zip(fn.requires, fn.requires_guards, strict=True):
            if not self.eval(req, env):
                raise self.revert(gid)
        old = list(self.state) if fn.ensures else self.state
        result = 0
        try:
            self.block(fn.body, env)
        except _Return as ret:
            result = ret.value
        env["$result"] = result
        for ens, gid in zip(fn.ensures, fn.ensures_guards, strict=True):
            if not self.eval(ens, env, old):
                raise self.revert(gid)
        for inv, gid in zip(self.c.invariants, fn.invariant_guards, strict=True):
            if not self.eval(inv, env):
                raise self.revert(gid)
        return result

    def block(self, stmts: list[Stmt], env: dict[str, int]) -> None:
        for s in stmts:
            self.steps += 1
            self.stmt(s, env)

    def stmt(self, s: Stmt, env: dict[str, int]) -> None:
        if isinstance(s, Let):
            assert s.value is not None
            env[s.name] = self.eval(s.value, env)
        elif isinstance(s, Assign):
            target = s.target
            assert s.value is not None
            if isinstance(target, Name):
                value = self.eval(s.value, env)
                if target.kind == "state":
                    decl = self.c.state(target.id)
                    assert decl is not None
                    self.state[decl.slot] = value
                else:
                    env[target.id] = value
            else:
                assert target is not None
                slot = self.slot_of(target, env)
                self.state[slot] = self.eval(s.value, env)
        elif isinstance(s, If):
            assert s.cond is not None
            self.block(s.then if self.eval(s.cond, env) else s.orelse, env)
        elif isinstance(s, For):
            env[s.var] = s.lo
            self.loop_invariants(s, env)
            for i in range(s.lo, s.hi):
                env[s.var] = i
                self.block(s.body, env)
                if s.invariants:
                    env[s.var] = i + 1
                    self.loop_invariants(s, env)
            env.pop(s.var, None)
        elif isinstance(s, Return):
            raise _Return(0 if s.value is None else self.eval(s.value, env))
        elif isinstance(s, Assert):
            assert s.cond is not None
            if not self.eval(s.cond, env):
                raise self.revert(s.guard)
        elif isinstance(s, ExprStmt):
            assert s.expr is not None
            self.eval(s.expr, env)

    def loop_invariants(self, s: For, env: dict[str, int]) -> None:
        for inv, gid in zip(s.invariants, s.invariant_guards, strict=True):
            if not self.eval(inv, env):
                raise self.revert(gid)

    def slot_of(self, node: Index, env: dict[str, int]) -> int:
        decl = self.c.state(node.name)
        assert decl is not None and node.index is not None
        idx = self.eval(node.index, env)
        if not 0 <= idx < decl.ty.size:
            raise self.revert(node.guard)
        return decl.slot + idx

    # -- expressions ----------------------------------------------------------------
    def fits(self, value: int, ty: Ty, gid: int) -> int:
        lo, hi = ty.range
        if not lo <= value <= hi:
            raise self.revert(gid)
        return value

    def eval(self, e: Expr, env: dict[str, int], old: list[int] | None = None) -> int:
        if isinstance(e, IntLit):
            return e.value
        if isinstance(e, DecLit):
            return e.scaled
        if isinstance(e, BoolLit):
            return int(e.value)
        if isinstance(e, Name):
            if e.kind == "state":
                decl = self.c.state(e.id)
                assert decl is not None
                return self.state[decl.slot]
            return env[e.id]
        if isinstance(e, Index):
            return self.state[self.slot_of(e, env)]
        if isinstance(e, Binary):
            return self.binary(e, env, old)
        if isinstance(e, Unary):
            assert e.operand is not None and e.ty is not None
            value = self.eval(e.operand, env, old)
            if e.op == "!":
                return 1 - value
            return self.fits(-value, e.ty, e.guard)
        if isinstance(e, Cast):
            assert e.expr is not None and e.expr.ty is not None and e.ty is not None
            value = self.eval(e.expr, env, old)
            src, dst = e.expr.ty, e.ty
            if src.kind == "int" and dst == DEC:
                value *= DEC_SCALE
            elif src == DEC and dst.kind == "int":
                value = tdiv(value, DEC_SCALE)
            return self.fits(value, dst, e.guard)
        if isinstance(e, Old):
            decl = self.c.state(e.name)
            assert decl is not None and old is not None
            return old[decl.slot]
        if isinstance(e, ResultRef):
            return env["$result"]
        if isinstance(e, CallerRef):
            return env["$caller"]
        if isinstance(e, Call):
            fn = self.c.fn(e.fn)
            assert fn is not None
            args = [self.eval(a, env, old) for a in e.args]
            for inv in self.c.invariants:
                if not self.eval(inv, env):
                    raise self.revert(e.guard2)
            return self.invoke(fn, args, env["$caller"])
        raise ContractCompilerError(f"cannot evaluate {type(e).__name__}")

    def binary(self, e: Binary, env: dict[str, int], old: list[int] | None) -> int:
        first, chain = left_spine(e)
        value = self.eval(first, env, old)
        for node in chain:
            value = self.binary_node(node, value, env, old)
        return value

    def binary_node(self, e: Binary, a: int, env: dict[str, int], old: list[int] | None) -> int:
        """One binary node whose left operand evaluated to ``a``."""
        op = e.op
        assert e.left is not None and e.right is not None and e.ty is not None
        if op == "&&":
            return self.eval(e.right, env, old) if a else 0
        if op == "||":
            return 1 if a else self.eval(e.right, env, old)
        if op == "==>":
            return self.eval(e.right, env, old) if a else 1
        b = self.eval(e.right, env, old)
        if op == "==":
            return int(a == b)
        if op == "!=":
            return int(a != b)
        if op == "<":
            return int(a < b)
        if op == "<=":
            return int(a <= b)
        if op == ">":
            return int(a > b)
        if op == ">=":
            return int(a >= b)
        lt = e.left.ty
        assert lt is not None
        if op == "+":
            return self.fits(a + b, e.ty, e.guard)
        if op == "-":
            return self.fits(a - b, e.ty, e.guard)
        if op == "*":
            product = a * b
            if lt == DEC:
                product = tdiv(product, DEC_SCALE)
            return self.fits(product, e.ty, e.guard)
        # '/' and '%': division by zero first, then overflow (MIN / -1).
        if b == 0:
            raise self.revert(e.guard)
        if lt == DEC:
            return self.fits(tdiv(a * DEC_SCALE, b), e.ty, e.guard2)
        lo, _hi = lt.range
        if lo < 0 and a == lo and b == -1:
            raise self.revert(e.guard2)
        q = tdiv(a, b)
        return q if op == "/" else a - b * q


def _stored(text: str, ty: Ty) -> int:
    """The stored integer of a value as a counterexample prints it (``true``, ``-3``, ``1.25``)."""
    if text in ("true", "false"):
        return int(text == "true")
    if ty == DEC:
        value = Decimal(text) * DEC_SCALE
        if value != value.to_integral_value():
            raise ValueError(text)
        return int(value)
    return int(text)


def replay(contract: Contract, fn_name: str, counterexample: dict[str, str]) -> int | None:
    """Run one call from a counterexample's state and arguments on the interpreter.

    Returns the id of the check the call reverted on, 0 when it completed, ``None`` when
    the counterexample does not describe a call (a missing or malformed value).
    """
    fn = contract.fn(fn_name)
    if fn is None:
        return None
    state = [0] * contract.slots
    try:
        for decl in contract.states:
            if decl.ty.kind == "map":
                assert decl.ty.elem is not None
                default = counterexample.get(f"{decl.name}[*]")
                if default is not None:
                    fill = _stored(default, decl.ty.elem)
                    state[decl.slot : decl.slot + decl.ty.size] = [fill] * decl.ty.size
                for i in range(decl.ty.size) if decl.ty.size <= 64 else ():
                    text = counterexample.get(f"{decl.name}[{i}]")
                    if text is not None:
                        state[decl.slot + i] = _stored(text, decl.ty.elem)
                if decl.ty.size > 64:
                    prefix = f"{decl.name}["
                    for key, text in counterexample.items():
                        if key.startswith(prefix) and key[len(prefix) : -1].isdigit():
                            state[decl.slot + int(key[len(prefix) : -1])] = _stored(
                                text, decl.ty.elem
                            )
            else:
                state[decl.slot] = _stored(counterexample[decl.name], decl.ty)
        args = [_stored(counterexample[p.name], p.ty) for p in fn.params]
        caller = int(counterexample["caller"])
    except (KeyError, ValueError, ArithmeticError):
        return None
    interp = Interpreter(contract, state)
    try:
        interp.call(fn_name, args, caller)
    except ContractRevert as revert:
        return revert.guard
    except ContractCompilerError:
        return None
    return 0
