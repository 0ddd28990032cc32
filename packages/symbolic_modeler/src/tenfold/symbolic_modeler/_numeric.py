"""Numeric compilation of terms: numpy source (``lambdify``) and native code through llvmlite.

Both walk the DAG once, so a shared subterm is computed once per point (common
subexpression elimination comes free with hash-consing). Values are float64;
where the real result is undefined (``log(-1)``, ``1/0``) the result is NaN or
inf, as with numpy.

``compile_native`` emits LLVM IR for a loop over the input arrays, optimizes it
at -O3 with loop vectorization, and JIT-compiles it with MCJIT; transcendental
functions are LLVM intrinsics or libm calls.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from tenfold.symbolic_modeler._terms import OP_ADD, OP_MUL, OP_NUM, OP_POW, OP_SYM, Term
from tenfold.symbolic_modeler.errors import CompilationError

__all__ = ["NativeFunction", "compile_native", "lambdify"]

_NUMPY = {
    "sin": "np.sin",
    "cos": "np.cos",
    "tan": "np.tan",
    "exp": "np.exp",
    "log": "np.log",
    "sinh": "np.sinh",
    "cosh": "np.cosh",
    "tanh": "np.tanh",
    "asin": "np.arcsin",
    "acos": "np.arccos",
    "atan": "np.arctan",
    "abs": "np.abs",
    "asinh": "np.arcsinh",
    "acosh": "np.arccosh",
    "atanh": "np.arctanh",
}


def _float(v: int | Fraction) -> float:
    return float(v)


def _check_symbols(term: Term, symbols: Sequence[str]) -> None:
    missing = sorted(term.free_symbols() - set(symbols))
    if missing:
        raise CompilationError(f"free symbols not given as arguments: {', '.join(missing)}")


def lambdify(term: Term, symbols: Sequence[str]) -> Callable[..., Any]:
    """A numpy function of ``symbols`` (positional arrays or scalars) computing ``term``."""
    _check_symbols(term, symbols)
    names: dict[Term, str] = {}
    lines = [f"def f({', '.join(f'a{i}' for i in range(len(symbols)))}):"]
    index = {s: i for i, s in enumerate(symbols)}
    for k, t in enumerate(term.walk()):
        op = t.op
        if op == OP_NUM:
            names[t] = repr(_float(t.value))
            continue
        if op == OP_SYM:
            names[t] = f"a{index[t.value]}"
            continue
        args = [names[a] for a in t.args]
        if op == OP_ADD:
            expr = " + ".join(args)
        elif op == OP_MUL:
            expr = " * ".join(args)
        elif op == OP_POW:
            e = t.args[1]
            if e.op == OP_NUM and isinstance(e.value, int):
                expr = f"{args[0]} ** {e.value}.0" if e.value < 0 else f"{args[0]} ** {e.value}"
            else:
                expr = f"np.power({args[0]}, {args[1]})"
        elif op in _NUMPY and len(args) == 1:
            expr = f"{_NUMPY[op]}({args[0]})"
        else:
            raise CompilationError(f"no numeric implementation for {op}()")
        lines.append(f"    t{k} = {expr}")
        names[t] = f"t{k}"
    lines.append(
        f"    return {names[term]} + 0.0 * ({' + '.join(['0.0', *(f'a{i}' for i in range(len(symbols)))])})"
    )
    source = "\n".join(lines)
    namespace: dict[str, Any] = {"np": np}
    with np.errstate(all="ignore"):
        exec(compile(source, "<tenfold.symbolic_modeler.lambdify>", "exec"), namespace)
    fn: Callable[..., Any] = namespace["f"]

    def call(*arrays: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*(np.asarray(a, dtype=np.float64) for a in arrays))

    call.source = source  # type: ignore[attr-defined]
    return call


_INTRINSICS = {
    "sin": "llvm.sin.f64",
    "cos": "llvm.cos.f64",
    "exp": "llvm.exp.f64",
    "log": "llvm.log.f64",
    "abs": "llvm.fabs.f64",
}
_LIBM = {"tan": "tan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asin": "asin"}
_LIBM |= {"acos": "acos", "atan": "atan", "asinh": "asinh", "acosh": "acosh", "atanh": "atanh"}

_engine_state: dict[str, Any] = {}


def _target() -> Any:
    import llvmlite.binding as llvm

    if "init" not in _engine_state:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _engine_state["init"] = True
    # A fresh target machine per engine: an MCJIT engine owns the one it is given
    # and frees it with itself, so sharing one crashes the next compilation.
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(opt=3, cpu=llvm.get_host_cpu_name())


def emit_llvm(term: Term, symbols: Sequence[str]) -> str:
    """LLVM IR of ``void f(double** inputs, double* out, i64 n)`` evaluating ``term`` per index."""
    _check_symbols(term, symbols)
    decls: set[str] = set()
    body: list[str] = []
    names: dict[Term, str] = {}
    index = {s: i for i, s in enumerate(symbols)}
    loads: list[str] = []
    for i in range(len(symbols)):
        loads.append(f"  %pp{i} = getelementptr double*, double** %inputs, i64 {i}")
        loads.append(f"  %p{i} = load double*, double** %pp{i}")
    counter = 0

    def fresh() -> str:
        nonlocal counter
        counter += 1
        return f"%v{counter}"

    def const(v: int | Fraction) -> str:
        return repr(float(v)) if np.isfinite(float(v)) else "0x7FF8000000000000"

    for t in term.walk():
        op = t.op
        if op == OP_NUM:
            try:
                names[t] = f"{float(t.value):.17e}"
            except OverflowError as exc:
                raise CompilationError(f"constant {t.value} does not fit a double") from exc
            continue
        if op == OP_SYM:
            i = index[t.value]
            ptr, val = fresh(), fresh()
            body.append(f"  {ptr} = getelementptr double, double* %p{i}, i64 %i")
            body.append(f"  {val} = load double, double* {ptr}")
            names[t] = val
            continue
        args = [names[a] for a in t.args]
        if op in (OP_ADD, OP_MUL):
            instr = "fadd" if op == OP_ADD else "fmul"
            acc = args[0]
            for a in args[1:]:
                out = fresh()
                body.append(f"  {out} = {instr} reassoc contract double {acc}, {a}")
                acc = out
            names[t] = acc
        elif op == OP_POW:
            e = t.args[1]
            out = fresh()
            if e.op == OP_NUM and isinstance(e.value, int) and abs(e.value) < 1 << 31:
                decls.add("declare double @llvm.powi.f64.i32(double, i32)")
                body.append(
                    f"  {out} = call reassoc contract double @llvm.powi.f64.i32(double {args[0]}, i32 {e.value})"
                )
            else:
                decls.add("declare double @llvm.pow.f64(double, double)")
                body.append(
                    f"  {out} = call reassoc contract double @llvm.pow.f64(double {args[0]}, double {args[1]})"
                )
            names[t] = out
        elif op in _INTRINSICS and len(args) == 1:
            name = _INTRINSICS[op]
            decls.add(f"declare double @{name}(double)")
            out = fresh()
            body.append(f"  {out} = call reassoc contract double @{name}(double {args[0]})")
            names[t] = out
        elif op in _LIBM and len(args) == 1:
            decls.add(f"declare double @{_LIBM[op]}(double)")
            out = fresh()
            body.append(f"  {out} = call double @{_LIBM[op]}(double {args[0]})")
            names[t] = out
        else:
            raise CompilationError(f"no native implementation for {op}()")
    del const
    result = names[term]
    if not result.startswith("%"):
        body.append(f"  %vres = fadd double {result}, 0.0")
        result = "%vres"
    lines = [
        *sorted(decls),
        "define void @f(double** noalias %inputs, double* noalias %out, i64 %n) {",
        "entry:",
        *loads,
        "  %empty = icmp sle i64 %n, 0",
        "  br i1 %empty, label %done, label %loop",
        "loop:",
        "  %i = phi i64 [0, %entry], [%next, %loop]",
        *body,
        "  %outp = getelementptr double, double* %out, i64 %i",
        f"  store double {result}, double* %outp",
        "  %next = add i64 %i, 1",
        "  %more = icmp slt i64 %next, %n",
        "  br i1 %more, label %loop, label %done",
        "done:",
        "  ret void",
        "}",
    ]
    return "\n".join(lines)


class NativeFunction:
    """A JIT-compiled vectorized evaluator; call with one float64 array per symbol."""

    def __init__(self, term: Term, symbols: Sequence[str]) -> None:
        import llvmlite.binding as llvm

        self.symbols = tuple(symbols)
        self.ir = emit_llvm(term, symbols)
        tm = _target()
        try:
            mod = llvm.parse_assembly(self.ir)
            mod.verify()
        except RuntimeError as exc:  # pragma: no cover - would be a bug in emit_llvm
            raise CompilationError(f"generated LLVM IR is invalid: {exc}") from exc
        try:
            pto = llvm.create_pipeline_tuning_options(speed_level=3)
            pto.loop_vectorization = True
            pto.slp_vectorization = True
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
        except AttributeError:  # older llvmlite: leave it to the MCJIT code generator
            pass
        self._engine = llvm.create_mcjit_compiler(mod, tm)
        self._engine.finalize_object()
        address = self._engine.get_function_address("f")
        proto = ctypes.CFUNCTYPE(
            None,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_void_p,
            ctypes.c_int64,
        )
        self._fn = proto(address)

    def __call__(self, *arrays: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        if len(arrays) != len(self.symbols):
            raise CompilationError(f"expected {len(self.symbols)} arrays, got {len(arrays)}")
        cols = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
        n = len(cols[0]) if cols else 1
        if any(len(c) != n for c in cols):
            raise CompilationError("input arrays differ in length")
        out = np.empty(n, dtype=np.float64)
        ptrs = (ctypes.c_void_p * max(1, len(cols)))(*[c.ctypes.data for c in cols])
        self._fn(ptrs, out.ctypes.data, n)
        return out


def compile_native(term: Term, symbols: Sequence[str]) -> NativeFunction:
    """JIT-compile ``term`` to native vectorized code over float64 arrays (llvmlite)."""
    return NativeFunction(term, symbols)
