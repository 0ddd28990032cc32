"""Code generation (``emit_llvm``): LLVM IR written as text, one function at a time.

Building IR through object APIs costs a Python call per instruction; writing
the text and letting LLVM parse it once is several times faster, and the text
of each function is a cacheable artifact on its own.

ABI of every generated function::

    i32 @"Contract.fn"(ptr %state, i64 %caller, i64 %arg0, ..., ptr %out)

``state`` is the contract's buffer of 64-bit slots, arguments arrive as 64-bit
stored integers (the caller checked their ranges), the result goes to
``*out``, and the return value is 0 or the id of the guard that failed. A
callee's non-zero status is returned unchanged by its caller, so the whole
transaction reverts with the innermost failing guard, as in the interpreter.
Guards listed in ``removed`` (proved never to fire) are not emitted.
"""

from __future__ import annotations

from collections.abc import Iterable

from tenfold.contract_compiler._ast import (
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

__all__ = ["emit_function", "emit_llvm", "function_symbol", "link_module", "module_header"]

_CMP_SIGNED = {"<": "slt", "<=": "sle", ">": "sgt", ">=": "sge", "==": "eq", "!=": "ne"}
_CMP_UNSIGNED = {"<": "ult", "<=": "ule", ">": "ugt", ">=": "uge", "==": "eq", "!=": "ne"}
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


def llvm_type(ty: Ty) -> str:
    if ty.kind == "int":
        return f"i{ty.bits}"
    if ty.kind == "bool":
        return "i1"
    return "i64"


def function_symbol(contract: Contract, fn: FnDecl | str) -> str:
    name = fn if isinstance(fn, str) else fn.name
    return f"{contract.name}.{name}"


def _signed(ty: Ty) -> bool:
    return ty.kind != "int" or ty.signed


class FunctionEmitter:
    def __init__(self, contract: Contract, fn: FnDecl, removed: frozenset[int]) -> None:
        self.c = contract
        self.fn = fn
        self.removed = removed
        self.lines: list[str] = []
        self.tmp = 0
        self.label = 0
        self.block = "entry"
        self.terminated = False
        # (guard id, block that branches to the trap): one shared trap block returns the id.
        self.traps: list[tuple[int, str]] = []
        self.intrinsics: set[str] = set()
        self.params: dict[str, tuple[str, Ty]] = {}
        self.old: dict[str, str] = {}
        self.loop_slots: dict[int, str] = {}

    # -- plumbing -------------------------------------------------------------------
    def t(self) -> str:
        self.tmp += 1
        return f"%t{self.tmp}"

    def new_label(self, hint: str) -> str:
        self.label += 1
        return f"{hint}{self.label}"

    def emit(self, line: str) -> None:
        if self.terminated:
            self.start(self.new_label("dead"))
        self.lines.append("  " + line)

    def start(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.block = label
        self.terminated = False

    def terminate(self, line: str) -> None:
        self.emit(line)
        self.terminated = True

    def guard(self, bad: str, gid: int) -> None:
        """Branch to the trap of ``gid`` when ``bad`` is true (unless the guard was proved)."""
        if gid in self.removed:
            return
        self.always_guard(bad, gid)

    def state_ptr(self, slot: str | int) -> str:
        ptr = self.t()
        self.emit(f"{ptr} = getelementptr i64, ptr %st, i64 {slot}")
        return ptr

    def from_slot(self, raw: str, ty: Ty) -> str:
        lt = llvm_type(ty)
        if lt == "i64":
            return raw
        out = self.t()
        if lt == "i1":
            self.emit(f"{out} = icmp ne i64 {raw}, 0")
        else:
            self.emit(f"{out} = trunc i64 {raw} to {lt}")
        return out

    def to_slot(self, value: str, ty: Ty) -> str:
        lt = llvm_type(ty)
        if lt == "i64":
            return value
        out = self.t()
        ext = "zext" if lt == "i1" or not _signed(ty) else "sext"
        self.emit(f"{out} = {ext} {lt} {value} to i64")
        return out

    def widen(self, value: str, ty: Ty, to: str = "i128") -> str:
        out = self.t()
        ext = "sext" if _signed(ty) else "zext"
        self.emit(f"{out} = {ext} {llvm_type(ty)} {value} to {to}")
        return out

    def range_check_i128(self, wide: str, ty: Ty, gid: int) -> str:
        lo, hi = ty.range
        if gid not in self.removed:
            a, b, bad = self.t(), self.t(), self.t()
            self.emit(f"{a} = icmp slt i128 {wide}, {lo}")
            self.emit(f"{b} = icmp sgt i128 {wide}, {hi}")
            self.emit(f"{bad} = or i1 {a}, {b}")
            self.guard(bad, gid)
        out = self.t()
        self.emit(f"{out} = trunc i128 {wide} to {llvm_type(ty)}")
        return out

    # -- function ---------------------------------------------------------------------
    def run(self) -> str:
        fn = self.fn
        sym = function_symbol(self.c, fn)
        args = ", ".join(f"i64 %a{i}" for i in range(len(fn.params)))
        sig = f"ptr %st, i64 %caller{', ' + args if args else ''}, ptr %out"
        for i, p in enumerate(fn.params):
            self.params[p.name] = (self.from_slot(f"%a{i}", p.ty), p.ty)
        for name, ty in fn.locals.items():
            self.emit(f"%l.{name} = alloca {llvm_type(ty)}")
        self.emit("%ret = alloca i64")
        self.emit("store i64 0, ptr %ret")
        self.emit("%callout = alloca i64")
        for (_pos, party), gid in zip(fn.only, fn.only_guards, strict=True):
            decl = self.c.state(party)
            assert decl is not None
            ptr = self.state_ptr(decl.slot)
            v, bad = self.t(), self.t()
            self.emit(f"{v} = load i64, ptr {ptr}")
            self.emit(f"{bad} = icmp ne i64 {v}, %caller")
            self.always_guard(bad, gid)
        for req, gid in zip(fn.requires, fn.requires_guards, strict=True):
            ok = self.expr(req)
            bad = self.t()
            self.emit(f"{bad} = xor i1 {ok}, true")
            self.always_guard(bad, gid)
        for name in sorted(_old_names(fn.ensures)):
            decl = self.c.state(name)
            assert decl is not None
            ptr = self.state_ptr(decl.slot)
            raw = self.t()
            self.emit(f"{raw} = load i64, ptr {ptr}")
            self.old[name] = self.from_slot(raw, decl.ty)
        self.stmts(fn.body)
        if not self.terminated:
            self.terminate("br label %exit")
        self.start("exit")
        result = "0"
        if fn.ret != VOID:
            raw = self.t()
            self.emit(f"{raw} = load i64, ptr %ret")
            result = self.from_slot(raw, fn.ret)
        self.result = (result, fn.ret)
        for ens, gid in zip(fn.ensures, fn.ensures_guards, strict=True):
            self.assertion(ens, gid)
        for inv, gid in zip(self.c.invariants, fn.invariant_guards, strict=True):
            self.assertion(inv, gid)
        if fn.ret != VOID:
            self.emit(f"store i64 {self.to_slot(result, fn.ret)}, ptr %out")
        self.terminate("ret i32 0")
        if self.traps:
            incoming = ", ".join(f"[ {gid}, %{block} ]" for gid, block in self.traps)
            self.lines.append("trap:")
            self.lines.append(f"  %code = phi i32 {incoming}")
            self.lines.append("  ret i32 %code")
        body = "\n".join(self.lines)
        return f'define i32 @"{sym}"({sig}) {{\nentry:\n{body}\n}}\n'

    def always_guard(self, bad: str, gid: int) -> None:
        """Input checks (requires, only, check) stay at every optimization level."""
        if self.terminated:
            self.start(self.new_label("dead"))
        self.traps.append((gid, self.block))
        ok = self.new_label("ok")
        self.terminate(f"br i1 {bad}, label %trap, label %{ok}")
        self.start(ok)

    def assertion(self, cond: Expr, gid: int) -> None:
        if gid in self.removed:
            return
        ok = self.expr(cond)
        bad = self.t()
        self.emit(f"{bad} = xor i1 {ok}, true")
        self.guard(bad, gid)

    # -- statements ---------------------------------------------------------------------
    def stmts(self, stmts: Iterable[Stmt]) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Let):
            assert s.value is not None and s.value.ty is not None
            value = self.expr(s.value)
            self.emit(f"store {llvm_type(s.value.ty)} {value}, ptr %l.{s.name}")
        elif isinstance(s, Assign):
            target = s.target
            assert s.value is not None and target is not None and target.ty is not None
            if isinstance(target, Name):
                value = self.expr(s.value)
                if target.kind == "state":
                    decl = self.c.state(target.id)
                    assert decl is not None
                    ptr = self.state_ptr(decl.slot)
                    self.emit(f"store i64 {self.to_slot(value, target.ty)}, ptr {ptr}")
                else:
                    self.emit(f"store {llvm_type(target.ty)} {value}, ptr %l.{target.id}")
            else:
                ptr = self.index_ptr(target)
                value = self.expr(s.value)
                self.emit(f"store i64 {self.to_slot(value, target.ty)}, ptr {ptr}")
        elif isinstance(s, If):
            assert s.cond is not None
            cond = self.expr(s.cond)
            then_l, else_l, end_l = (self.new_label(x) for x in ("then", "else", "endif"))
            self.terminate(f"br i1 {cond}, label %{then_l}, label %{else_l}")
            self.start(then_l)
            self.stmts(s.then)
            if not self.terminated:
                self.terminate(f"br label %{end_l}")
            self.start(else_l)
            self.stmts(s.orelse)
            if not self.terminated:
                self.terminate(f"br label %{end_l}")
            self.start(end_l)
        elif isinstance(s, For):
            slot = f"%loop{self.new_label('')}"
            self.lines.insert(0, f"  {slot} = alloca i64")
            self.loop_slots[id(s)] = slot
            head, body, end = (self.new_label(x) for x in ("head", "body", "endfor"))
            self.emit(f"store i64 {s.lo}, ptr {slot}")
            self.params[s.var] = (slot, Ty("int", 64, True))
            self.loop_invariants(s)
            self.terminate(f"br label %{head}")
            self.start(head)
            i, c = self.t(), self.t()
            self.emit(f"{i} = load i64, ptr {slot}")
            self.emit(f"{c} = icmp slt i64 {i}, {s.hi}")
            self.terminate(f"br i1 {c}, label %{body}, label %{end}")
            self.start(body)
            self.params[s.var] = (slot, Ty("int", 64, True))
            self.stmts(s.body)
            del self.params[s.var]
            if not self.terminated:
                j, n = self.t(), self.t()
                self.emit(f"{j} = load i64, ptr {slot}")
                self.emit(f"{n} = add i64 {j}, 1")
                self.emit(f"store i64 {n}, ptr {slot}")
                self.params[s.var] = (slot, Ty("int", 64, True))
                self.loop_invariants(s)
                del self.params[s.var]
                self.terminate(f"br label %{head}")
            self.start(end)
        elif isinstance(s, Return):
            if s.value is not None:
                assert s.value.ty is not None
                value = self.expr(s.value)
                self.emit(f"store i64 {self.to_slot(value, s.value.ty)}, ptr %ret")
            self.terminate("br label %exit")
        elif isinstance(s, Assert):
            assert s.cond is not None
            ok = self.expr(s.cond)
            bad = self.t()
            self.emit(f"{bad} = xor i1 {ok}, true")
            if s.kind == "check":
                self.always_guard(bad, s.guard)
            else:
                self.guard(bad, s.guard)
        elif isinstance(s, ExprStmt):
            assert s.expr is not None
            self.expr(s.expr)

    def loop_invariants(self, s: For) -> None:
        """Check a loop's invariants with the loop variable's slot at its current value."""
        for inv, gid in zip(s.invariants, s.invariant_guards, strict=True):
            self.assertion(inv, gid)

    def index_ptr(self, node: Index) -> str:
        decl = self.c.state(node.name)
        assert decl is not None and node.index is not None and node.index.ty is not None
        idx = self.expr(node.index)
        ity = node.index.ty
        wide = idx if ity.bits == 64 else self.widen(idx, ity, "i64")
        if node.guard not in self.removed:
            bad = self.t()
            if _signed(ity):
                neg, over = self.t(), self.t()
                self.emit(f"{neg} = icmp slt i64 {wide}, 0")
                self.emit(f"{over} = icmp sge i64 {wide}, {decl.ty.size}")
                self.emit(f"{bad} = or i1 {neg}, {over}")
            else:
                self.emit(f"{bad} = icmp uge i64 {wide}, {decl.ty.size}")
            self.guard(bad, node.guard)
        slot = self.t()
        self.emit(f"{slot} = add i64 {wide}, {decl.slot}")
        return self.state_ptr(slot)

    # -- expressions --------------------------------------------------------------------
    def expr(self, e: Expr) -> str:
        ty = e.ty
        assert ty is not None
        if isinstance(e, IntLit):
            return str(
                e.value
                if _signed(ty) or e.value < (1 << (ty.bits - 1))
                else e.value - (1 << ty.bits)
            )
        if isinstance(e, DecLit):
            return str(e.scaled)
        if isinstance(e, BoolLit):
            return "true" if e.value else "false"
        if isinstance(e, Name):
            if e.id in self.params and e.kind in ("param", "loop"):
                value, _pty = self.params[e.id]
                if e.kind == "loop":
                    out = self.t()
                    self.emit(f"{out} = load i64, ptr {value}")
                    return out
                return value
            out = self.t()
            if e.kind == "state":
                decl = self.c.state(e.id)
                assert decl is not None
                ptr = self.state_ptr(decl.slot)
                self.emit(f"{out} = load i64, ptr {ptr}")
                return self.from_slot(out, ty)
            self.emit(f"{out} = load {llvm_type(ty)}, ptr %l.{e.id}")
            return out
        if isinstance(e, Index):
            ptr = self.index_ptr(e)
            raw = self.t()
            self.emit(f"{raw} = load i64, ptr {ptr}")
            return self.from_slot(raw, ty)
        if isinstance(e, Old):
            return self.old[e.name]
        if isinstance(e, ResultRef):
            return self.result[0]
        if isinstance(e, CallerRef):
            return "%caller"
        if isinstance(e, Unary):
            assert e.operand is not None
            value = self.expr(e.operand)
            out = self.t()
            if e.op == "!":
                self.emit(f"{out} = xor i1 {value}, true")
                return out
            return self.checked("ssub", "sub", "0", value, ty, e.guard)
        if isinstance(e, Cast):
            return self.cast(e)
        if isinstance(e, Call):
            return self.call(e)
        if isinstance(e, Binary):
            return self.binary(e)
        raise AssertionError(f"cannot emit {type(e).__name__}")

    def checked(self, intrinsic: str, plain: str, a: str, b: str, ty: Ty, gid: int) -> str:
        lt = llvm_type(ty)
        out = self.t()
        if gid in self.removed:
            self.emit(f"{out} = {plain} {lt} {a}, {b}")
            return out
        name = f"llvm.{intrinsic}.with.overflow.{lt}"
        self.intrinsics.add(f"declare {{{lt}, i1}} @{name}({lt}, {lt})")
        pair, bad = self.t(), self.t()
        self.emit(f"{pair} = call {{{lt}, i1}} @{name}({lt} {a}, {lt} {b})")
        self.emit(f"{out} = extractvalue {{{lt}, i1}} {pair}, 0")
        self.emit(f"{bad} = extractvalue {{{lt}, i1}} {pair}, 1")
        self.guard(bad, gid)
        return out

    def cast(self, e: Cast) -> str:
        assert e.expr is not None and e.expr.ty is not None and e.ty is not None
        src, dst = e.expr.ty, e.ty
        value = self.expr(e.expr)
        if src == dst or (
            src.kind == "money" and dst.kind == "int" and dst.bits == 64 and dst.signed
        ):
            return value
        wide = self.widen(value, src)
        if src.kind == "int" and dst == DEC:
            scaled = self.t()
            self.emit(f"{scaled} = mul i128 {wide}, {DEC_SCALE}")
            wide = scaled
        elif src == DEC and dst.kind == "int":
            scaled = self.t()
            self.emit(f"{scaled} = sdiv i128 {wide}, {DEC_SCALE}")
            wide = scaled
        return self.range_check_i128(wide, dst, e.guard)

    def call(self, e: Call) -> str:
        fn = self.c.fn(e.fn)
        assert fn is not None
        args = [self.to_slot(self.expr(a), p.ty) for a, p in zip(e.args, fn.params, strict=True)]
        if e.guard2 not in self.removed:
            for inv in self.c.invariants:
                ok = self.expr(inv)
                bad = self.t()
                self.emit(f"{bad} = xor i1 {ok}, true")
                self.guard(bad, e.guard2)
        status, bad = self.t(), self.t()
        arg_text = "".join(f", i64 {a}" for a in args)
        sym = function_symbol(self.c, fn)
        self.emit(f'{status} = call i32 @"{sym}"(ptr %st, i64 %caller{arg_text}, ptr %callout)')
        self.emit(f"{bad} = icmp ne i32 {status}, 0")
        fail, ok = self.new_label("fail"), self.new_label("ok")
        self.terminate(f"br i1 {bad}, label %{fail}, label %{ok}")
        self.start(fail)
        self.terminate(f"ret i32 {status}")
        self.start(ok)
        if fn.ret == VOID:
            return "0"
        raw = self.t()
        self.emit(f"{raw} = load i64, ptr %callout")
        return self.from_slot(raw, fn.ret)

    def binary(self, e: Binary) -> str:
        first, chain = left_spine(e)
        value = self.expr(first)
        for node in chain:
            value = self.binary_node(node, value)
        return value

    def binary_node(self, e: Binary, a: str) -> str:
        """One binary node whose left operand's value is ``a``."""
        op = e.op
        assert e.left is not None and e.right is not None and e.ty is not None
        if op in ("&&", "||", "==>"):
            return self.short_circuit(e, a)
        b = self.expr(e.right)
        lt = e.left.ty
        assert lt is not None
        if op in _CMP_SIGNED:
            pred = (_CMP_SIGNED if _signed(lt) else _CMP_UNSIGNED)[op]
            out = self.t()
            self.emit(f"{out} = icmp {pred} {llvm_type(lt)} {a}, {b}")
            return out
        ty = e.ty
        sign = "s" if _signed(ty) else "u"
        if op == "+":
            return self.checked(f"{sign}add", "add", a, b, ty, e.guard)
        if op == "-":
            return self.checked(f"{sign}sub", "sub", a, b, ty, e.guard)
        if op == "*":
            if lt == DEC:
                wa, wb, prod, q = self.widen(a, DEC), self.widen(b, DEC), self.t(), self.t()
                self.emit(f"{prod} = mul i128 {wa}, {wb}")
                self.emit(f"{q} = sdiv i128 {prod}, {DEC_SCALE}")
                return self.range_check_i128(q, DEC, e.guard)
            return self.checked(f"{sign}mul", "mul", a, b, ty, e.guard)
        # '/' and '%'
        rt = e.right.ty
        assert rt is not None
        divisor = _literal_value(e.right)
        if divisor is None or divisor == 0:
            zero = self.t()
            self.emit(f"{zero} = icmp eq {llvm_type(rt)} {b}, 0")
            self.guard(zero, e.guard)
        if lt == DEC:
            wa, wb, num, q = self.widen(a, DEC), self.widen(b, DEC), self.t(), self.t()
            self.emit(f"{num} = mul i128 {wa}, {DEC_SCALE}")
            self.emit(f"{q} = sdiv i128 {num}, {wb}")
            return self.range_check_i128(q, DEC, e.guard2)
        llt = llvm_type(lt)
        if _signed(lt) and (divisor is None or divisor == -1):
            lo = lt.range[0]
            is_min, is_neg1, bad = self.t(), self.t(), self.t()
            self.emit(f"{is_min} = icmp eq {llt} {a}, {lo}")
            self.emit(f"{is_neg1} = icmp eq {llt} {b}, -1")
            self.emit(f"{bad} = and i1 {is_min}, {is_neg1}")
            self.guard(bad, e.guard2)
        out = self.t()
        instr = {"/": "div", "%": "rem"}[op]
        self.emit(f"{out} = {'s' if _signed(lt) else 'u'}{instr} {llt} {a}, {b}")
        return out

    def short_circuit(self, e: Binary, a: str) -> str:
        assert e.left is not None and e.right is not None
        start_block = self.block
        rhs, end = self.new_label("rhs"), self.new_label("sc")
        if e.op == "||":
            self.terminate(f"br i1 {a}, label %{end}, label %{rhs}")
            short_value = "true"
        else:  # && and ==> evaluate the right side when the left is true
            self.terminate(f"br i1 {a}, label %{rhs}, label %{end}")
            short_value = "false" if e.op == "&&" else "true"
        self.start(rhs)
        b = self.expr(e.right)
        rhs_end = self.block
        self.terminate(f"br label %{end}")
        self.start(end)
        out = self.t()
        self.emit(f"{out} = phi i1 [ {short_value}, %{start_block} ], [ {b}, %{rhs_end} ]")
        return out


def _literal_value(e: Expr) -> int | None:
    """The stored value of a literal operand (decimals scaled), else ``None``."""
    if isinstance(e, IntLit):
        return e.value
    if isinstance(e, DecLit):
        return e.scaled
    return None


def _old_names(exprs: list[Expr]) -> set[str]:
    names: set[str] = set()
    todo = list(exprs)
    while todo:
        e = todo.pop()
        if isinstance(e, Old):
            names.add(e.name)
        todo.extend(children(e))
    return names


def emit_function(
    contract: Contract, fn: FnDecl, removed: frozenset[int] = frozenset()
) -> tuple[str, set[str]]:
    """The IR text of one function and the intrinsic declarations it needs."""
    emitter = FunctionEmitter(contract, fn, removed)
    text = emitter.run()
    return text, emitter.intrinsics


def module_header(contract: Contract) -> str:
    return f'; ModuleID = "{contract.name}"\n'


def link_module(
    contract: Contract,
    names: list[str],
    irs: dict[str, tuple[str, set[str]]],
    callees: dict[str, set[str]],
) -> str:
    """A module holding the functions ``names`` (IR already emitted), declaring the others it calls."""
    parts = [module_header(contract)]
    decls: set[str] = set()
    inside = set(names)
    for name in names:
        text, needs = irs[name]
        parts.append(text)
        decls |= needs
        for callee in callees.get(name, ()):
            if callee not in inside:
                fn = contract.fn(callee)
                assert fn is not None
                params = "".join(", i64" for _ in fn.params)
                decls.add(f'declare i32 @"{function_symbol(contract, fn)}"(ptr, i64{params}, ptr)')
    parts.extend(sorted(decls))
    return "\n".join(parts) + "\n"


def emit_llvm(contract: Contract, removed: dict[str, frozenset[int]] | None = None) -> str:
    """The whole contract as one LLVM IR module (text)."""
    removed = removed or {}
    parts = [module_header(contract)]
    decls: set[str] = set()
    for fn in contract.fns:
        text, needs = emit_function(contract, fn, removed.get(fn.name, frozenset()))
        parts.append(text)
        decls |= needs
    parts.extend(sorted(decls))
    return "\n".join(parts) + "\n"
