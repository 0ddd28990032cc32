"""LLVM back end through llvmlite: parse IR text, optimize at -O0..3, JIT or write an object file.

llvmlite wraps one process-wide LLVM; it is used from one thread at a time
here (the compiler's parallel work runs in processes).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any

import llvmlite.binding as llvm

from tenfold.contract_compiler.errors import ContractCompilerError

__all__ = ["NativeModule", "ObjectModule", "codegen_level", "emit_object", "optimize_ir"]

_LOCK = threading.Lock()
_TARGETS: dict[tuple[int, bool], Any] = {}


def codegen_level(opt_level: int) -> int:
    """Instruction selection level for an optimization level.

    -O1 runs LLVM's O1 IR pipeline but selects instructions with the fast
    selector (codegen level 0): on contract code that cuts machine-code time
    about eightfold, and the IR passes already did the work that matters for
    these small functions. -O2 and -O3 use SelectionDAG at their own level.
    """
    return 0 if opt_level <= 1 else opt_level


def _target_machine(opt_level: int, jit: bool = True) -> Any:
    opt_level = codegen_level(opt_level)
    tm = _TARGETS.get((opt_level, jit))
    if tm is None:
        _load_runtime()
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        if jit:
            tm = target.create_target_machine(opt=opt_level, codemodel="jitdefault", jit=True)
        else:
            tm = target.create_target_machine(opt=opt_level, reloc="pic", codemodel="default")
        _TARGETS[(opt_level, jit)] = tm
    return tm


def _load_runtime() -> None:
    """Decimal division divides 128-bit integers: LLVM calls ``__divti3`` from libgcc."""
    import ctypes.util

    path = ctypes.util.find_library("gcc_s")
    if path is None:
        raise ContractCompilerError("libgcc_s not found: needed for 128-bit division in JIT code")
    llvm.load_library_permanently(path)


def _parse(ir_text: str) -> Any:
    try:
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
    except RuntimeError as exc:
        # Generated IR that LLVM rejects is a compiler bug, reported without a traceback.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid IR"
        raise ContractCompilerError(
            f"internal error: LLVM rejected the generated IR: {first}"
        ) from None
    return mod


def optimize_ir(ir_text: str, opt_level: int) -> Any:
    """Parse and run LLVM's standard pipeline for ``opt_level`` (0 runs no passes)."""
    with _LOCK:
        tm = _target_machine(opt_level)
        mod = _parse(ir_text)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        if opt_level > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
            pb = llvm.create_pass_builder(tm, pto)
            mpm = pb.getModulePassManager()
            mpm.run(mod, pb)
        return mod


def emit_object(mod: Any, opt_level: int) -> bytes:
    """An ELF object file for an optimized module (from :func:`optimize_ir`)."""
    with _LOCK:
        data: bytes = _target_machine(opt_level, jit=False).emit_object(mod)
    return data


@dataclass
class NativeModule:
    """A JIT-compiled contract: function symbols resolved to ctypes callables."""

    ir_text: str
    opt_level: int
    arities: dict[str, int]
    engine: Any = field(default=None, init=False)
    functions: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        mod = optimize_ir(self.ir_text, self.opt_level)
        with _LOCK:
            self.optimized_ir = str(mod)
            # The engine takes ownership of its target machine: give it a fresh one, never
            # the shared one (freeing an engine would free the shared machine with it).
            target = llvm.Target.from_default_triple()
            tm = target.create_target_machine(
                opt=codegen_level(self.opt_level), codemodel="jitdefault", jit=True
            )
            engine = llvm.create_mcjit_compiler(mod, tm)
            engine.finalize_object()
            self.engine = engine
            for sym, arity in self.arities.items():
                address = engine.get_function_address(sym)
                if not address:
                    raise ContractCompilerError(f"internal error: JIT has no symbol {sym}")
                proto = ctypes.CFUNCTYPE(
                    ctypes.c_int32,
                    ctypes.c_void_p,
                    ctypes.c_int64,
                    *([ctypes.c_int64] * arity),
                    ctypes.c_void_p,
                )
                self.functions[sym] = proto(address)


def _bind(engine: Any, arities: dict[str, int]) -> dict[str, Any]:
    functions = {}
    for sym, arity in arities.items():
        address = engine.get_function_address(sym)
        if not address:
            raise ContractCompilerError(f"internal error: no symbol {sym} in the machine code")
        proto = ctypes.CFUNCTYPE(
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int64,
            *([ctypes.c_int64] * arity),
            ctypes.c_void_p,
        )
        functions[sym] = proto(address)
    return functions


@dataclass
class ObjectModule:
    """An object file (as ``emit_object`` wrote it) linked into this process and callable.

    This runs the very machine code a user gets from ``--emit obj``, not a fresh JIT
    build of the IR, so it checks the object file itself.
    """

    data: bytes
    arities: dict[str, int]
    engine: Any = field(default=None, init=False)
    functions: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        with _LOCK:
            _target_machine(0)  # initializes LLVM's native target and the runtime library
            target = llvm.Target.from_default_triple()
            tm = target.create_target_machine(codemodel="jitdefault", jit=True)
            engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
            try:
                engine.add_object_file(llvm.ObjectFileRef.from_data(self.data))
            except RuntimeError as exc:
                raise ContractCompilerError(f"cannot load the object file: {exc}") from None
            engine.finalize_object()
            self.engine = engine
            self.functions = _bind(engine, self.arities)
