"""The compiler driver: source -> tokens -> tree -> types -> proofs -> IR -> machine code.

Phases and what each one times (``timings_ms``): lexing, parsing, type
checking, constraint solving, code generation (IR text and machine code) and
optimization (LLVM's pass pipeline). Per-function artifacts (verdicts and IR)
and whole-file artifacts are cached by content hash; per-function solving and
IR emission run in a process pool when the contract is big enough to repay it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import pickle
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from tenfold.contract_compiler._ast import (
    VOID,
    Contract,
    Expr,
    FnDecl,
    SourceMap,
    Stmt,
    Ty,
)
from tenfold.contract_compiler._cache import ArtifactCache, digest
from tenfold.contract_compiler._checker import infer_types
from tenfold.contract_compiler._codegen import emit_function, function_symbol, module_header
from tenfold.contract_compiler._interp import Interpreter, check_argument, initial_state
from tenfold.contract_compiler._native import NativeModule, emit_object, optimize_ir
from tenfold.contract_compiler._parser import make_diagnostic, parse_contract
from tenfold.contract_compiler._solver import HARD_KINDS, Verdict, solve_function
from tenfold.contract_compiler.config import CompilerPerformance
from tenfold.contract_compiler.errors import (
    CompileError,
    ContractCompilerError,
    ContractRevert,
    Diagnostic,
    LimitExceeded,
    VerificationFailed,
)

__all__ = [
    "CompileOptions",
    "CompiledContract",
    "Executable",
    "compile_source",
    "shutdown_pool",
]

COMPILER_VERSION = "1"
PHASES = (
    "lexing",
    "parsing",
    "type_checking",
    "constraint_solving",
    "code_generation",
    "optimization",
)
_PARALLEL_MIN_FUNCTIONS = 24
"""Below this many functions a process pool costs more than it saves."""


@dataclass
class CompileOptions:
    """What to produce and the limits to respect (see ``[compiler.performance]``)."""

    opt_level: int = 1
    emit: str = "obj"  # obj | llvm | ast | none
    verify: bool = True
    smt_timeout_ms: int = 2000
    max_errors: int = 20
    max_depth: int = 200
    max_source_bytes: int = 8 * 1024 * 1024
    max_output_bytes: int = 256 * 1024 * 1024
    parallel_jobs: int = 1
    cache: ArtifactCache | None = None

    @classmethod
    def from_config(cls, cfg: CompilerPerformance, **overrides: Any) -> CompileOptions:
        cache = ArtifactCache(cfg.cache_size_mb * 1024 * 1024, cfg.cache_dir)
        opts = cls(
            opt_level=cfg.optimization_level,
            smt_timeout_ms=cfg.smt_timeout_ms,
            max_errors=cfg.max_errors,
            max_depth=cfg.max_depth,
            max_source_bytes=cfg.max_source_bytes,
            max_output_bytes=cfg.max_output_bytes,
            parallel_jobs=cfg.parallel_jobs,
            cache=cache if cfg.cache_size_mb > 0 else None,
        )
        return dataclasses.replace(opts, **overrides)


@dataclass
class CompiledContract:
    """The result of a compile: the checked tree, proofs, IR, machine code and timings."""

    contract: Contract
    filename: str
    opt_level: int
    ir: str
    object_code: bytes | None
    verdicts: list[Verdict]
    warnings: list[Diagnostic]
    timings_ms: dict[str, float]
    cache: str = "miss"
    optimized_ir: str = ""

    @property
    def steps(self) -> dict[str, int]:
        """Static step (gas) bound of every function."""
        return {fn.name: fn.steps for fn in self.contract.fns}

    def interpreter(self) -> Interpreter:
        return Interpreter(self.contract)

    def jit(self) -> Executable:
        return Executable(self)

    def summary(self) -> dict[str, object]:
        counts = {"proved": 0, "failed": 0, "unknown": 0}
        for v in self.verdicts:
            counts[v.status] += 1
        return {
            "file": self.filename,
            "contract": self.contract.name,
            "opt_level": self.opt_level,
            "functions": [
                {
                    "name": fn.name,
                    "params": [[p.name, str(p.ty)] for p in fn.params],
                    "returns": str(fn.ret),
                    "step_bound": fn.steps,
                }
                for fn in self.contract.fns
            ],
            "state_slots": self.contract.slots,
            "verdicts": counts,
            "warnings": [w.to_json() for w in self.warnings],
            "unknown": [v.to_json() for v in self.verdicts if v.status == "unknown"],
            "timings_ms": self.timings_ms,
            "cache": self.cache,
            "ir_bytes": len(self.ir),
            "object_bytes": len(self.object_code or b""),
        }


class Executable:
    """A JIT-compiled contract instance with its own state buffer; same interface as the interpreter."""

    def __init__(self, compiled: CompiledContract) -> None:
        c = compiled.contract
        self.contract = c
        self.module = NativeModule(
            compiled.ir,
            compiled.opt_level,
            {function_symbol(c, fn): len(fn.params) for fn in c.fns},
        )
        n = max(1, c.slots)
        self._buf = (ctypes.c_int64 * n)(*initial_state(c))
        self._backup = (ctypes.c_int64 * n)()
        self._nbytes = ctypes.sizeof(self._buf)
        self._out = ctypes.c_int64()
        self._out_ref = ctypes.byref(self._out)
        self._fns = {fn.name: (fn, self.module.functions[function_symbol(c, fn)]) for fn in c.fns}

    @property
    def state(self) -> list[int]:
        return list(self._buf)[: self.contract.slots]

    def call(self, fn_name: str, args: Sequence[object] = (), caller: int = 0) -> int | None:
        entry = self._fns.get(fn_name)
        if entry is None:
            raise ContractCompilerError(f"no function '{fn_name}' in contract {self.contract.name}")
        fn, native = entry
        if len(args) != len(fn.params):
            raise ContractCompilerError(
                f"'{fn_name}' takes {len(fn.params)} argument(s), {len(args)} given"
            )
        values = [
            _to_i64(check_argument(p.ty, a, f"argument '{p.name}'"))
            for p, a in zip(fn.params, args, strict=True)
        ]
        ctypes.memmove(self._backup, self._buf, self._nbytes)
        status = native(self._buf, _to_i64(caller), *values, self._out_ref)
        if status:
            ctypes.memmove(self._buf, self._backup, self._nbytes)
            kind, message, _pos = self.contract.guards[status]
            raise ContractRevert(status, kind, message)
        if fn.ret == VOID:
            return None
        return _from_i64(self._out.value, fn.ret)


def _to_i64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _from_i64(v: int, ty: Ty) -> int:
    if ty.kind == "int" and not ty.signed and v < 0:
        return v + (1 << 64)
    return v


# -- source handling ---------------------------------------------------------------


def decode_source(data: bytes | str, filename: str, limit: int) -> str:
    """UTF-8 text of the source, or a clear error (size limit, invalid bytes with line:col)."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limit:
        raise LimitExceeded(
            f"{filename}: source is {size} bytes, over the limit of {limit} bytes "
            f"(max_source_bytes in [compiler.performance])"
        )
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise CompileError(
            [Diagnostic(filename, line, col, f"source is not valid UTF-8 (byte 0x{bad})")]
        ) from None


def _header_text(text: str, contract: Contract) -> str:
    """The source with every function body cut out: what all functions depend on."""
    parts = []
    last = 0
    for fn in contract.fns:
        parts.append(text[last : fn.body_pos])
        last = fn.end
    parts.append(text[last:])
    return "\x00".join(parts)


def _fn_key(text: str, header: str, contract: Contract, fn: FnDecl, opts: CompileOptions) -> str:
    callees = sorted(_callees(fn))
    writes = [
        f"{name}:{','.join(sorted(contract.fn(name).writes))}"  # type: ignore[union-attr]
        for name in callees
    ]
    return digest(
        "fn",
        COMPILER_VERSION,
        opts.opt_level >= 2,
        opts.verify,
        opts.smt_timeout_ms,
        header,
        text[fn.body_pos : fn.end],
        fn.guard_base,
        ";".join(writes),
    )


def _callees(fn: FnDecl) -> set[str]:
    from tenfold.contract_compiler._ast import Call

    found: set[str] = set()
    todo: list[Any] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, Call):
            found.add(node.fn)
        if isinstance(node, Expr | Stmt):
            for f in dataclasses.fields(node):
                value = getattr(node, f.name)
                if isinstance(value, Expr | Stmt):
                    todo.append(value)
                elif isinstance(value, list):
                    todo.extend(v for v in value if isinstance(v, Expr | Stmt))
    return found


# -- per-function work (also run in worker processes) -------------------------------


def _solve_and_emit(
    contract: Contract, names: Sequence[str], verify: bool, remove_proved: bool, timeout_ms: int
) -> list[tuple[str, list[Verdict], str, set[str], float, float]]:
    out = []
    for name in names:
        fn = contract.fn(name)
        assert fn is not None
        t0 = time.perf_counter()
        verdicts = solve_function(contract, fn, timeout_ms) if verify else []
        t1 = time.perf_counter()
        removed = (
            frozenset(v.gid for v in verdicts if v.status == "proved")
            if remove_proved
            else frozenset()
        )
        ir, intrinsics = emit_function(contract, fn, removed)
        out.append((name, verdicts, ir, intrinsics, t1 - t0, time.perf_counter() - t1))
    return out


def _worker(
    blob: bytes, names: list[str], verify: bool, remove_proved: bool, timeout_ms: int
) -> bytes:
    contract = pickle.loads(blob)
    return pickle.dumps(_solve_and_emit(contract, names, verify, remove_proved, timeout_ms))


_POOL: ProcessPoolExecutor | None = None
_POOL_JOBS = 0
_POOL_LOCK = threading.Lock()


def _pool(jobs: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_JOBS
    with _POOL_LOCK:
        if _POOL is None or jobs != _POOL_JOBS:
            if _POOL is not None:
                _POOL.shutdown(cancel_futures=True)
            # forkserver: workers never inherit LLVM or z3 state from a parent with threads.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["tenfold.contract_compiler._compiler"])
            _POOL = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)
            _POOL_JOBS = jobs
        return _POOL


def shutdown_pool() -> None:
    """Stop the worker processes (they are also stopped at interpreter exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(cancel_futures=True)
            _POOL = None


# -- the driver ----------------------------------------------------------------------


def compile_source(
    source: bytes | str, filename: str = "<source>", options: CompileOptions | None = None
) -> CompiledContract:
    """Compile one contract. Raises CompileError, VerificationFailed or LimitExceeded."""
    opts = options or CompileOptions()
    if not 0 <= opts.opt_level <= 3:
        raise ContractCompilerError(f"optimization level must be 0..3, got {opts.opt_level}")
    text = decode_source(source, filename, opts.max_source_bytes)
    cache = opts.cache
    file_key = digest(
        "file",
        COMPILER_VERSION,
        filename,
        text,
        opts.opt_level,
        opts.emit,
        opts.verify,
        opts.smt_timeout_ms,
    )
    if cache is not None:
        t0 = time.perf_counter()
        blob = cache.get(file_key)
        if blob is not None:
            compiled: CompiledContract = pickle.loads(blob)
            compiled.cache = "hit"
            compiled.timings_ms = {p: 0.0 for p in PHASES}
            compiled.timings_ms["cache_lookup"] = (time.perf_counter() - t0) * 1000
            return compiled

    timings: dict[str, float] = {}
    contract = parse_contract(
        text, filename, max_depth=opts.max_depth, max_errors=opts.max_errors, timings=timings
    )
    smap = SourceMap(text, filename)
    t0 = time.perf_counter()
    infer_types(contract, smap, max_errors=opts.max_errors)
    timings["type_checking"] = time.perf_counter() - t0
    if opts.emit == "ast":
        timings.update({p: 0.0 for p in PHASES if p not in timings})
        return CompiledContract(contract, filename, opts.opt_level, "", None, [], [], _ms(timings))

    verdicts, warnings, ir, solve_s, emit_s, hits = _prove_and_emit(text, smap, contract, opts)
    timings["constraint_solving"] = solve_s
    t0 = time.perf_counter()
    if len(ir) > opts.max_output_bytes:
        raise LimitExceeded(
            f"{filename}: generated IR is {len(ir)} bytes, over max_output_bytes={opts.max_output_bytes}"
        )
    optimized = ""
    obj: bytes | None = None
    codegen_s = emit_s
    if opts.emit in ("obj", "llvm"):
        mod = optimize_ir(ir, opts.opt_level)
        t1 = time.perf_counter()
        timings["optimization"] = t1 - t0
        if opts.emit == "llvm":
            optimized = str(mod)
        else:
            obj = emit_object(mod, opts.opt_level)
            if len(obj) > opts.max_output_bytes:
                raise LimitExceeded(
                    f"{filename}: object code is {len(obj)} bytes, "
                    f"over max_output_bytes={opts.max_output_bytes}"
                )
        codegen_s += time.perf_counter() - t1
    else:
        timings["optimization"] = 0.0
    timings["code_generation"] = codegen_s
    compiled = CompiledContract(
        contract,
        filename,
        opts.opt_level,
        ir,
        obj,
        verdicts,
        warnings,
        _ms(timings),
        "partial" if hits else "miss",
        optimized,
    )
    if cache is not None:
        cache.put(file_key, pickle.dumps(compiled, protocol=pickle.HIGHEST_PROTOCOL))
    return compiled


def _ms(timings: dict[str, float]) -> dict[str, float]:
    return {p: round(timings.get(p, 0.0) * 1000, 3) for p in PHASES}


def _prove_and_emit(
    text: str, smap: SourceMap, contract: Contract, opts: CompileOptions
) -> tuple[list[Verdict], list[Diagnostic], str, float, float, int]:
    remove = opts.opt_level >= 2
    cache = opts.cache
    header = _header_text(text, contract) if cache is not None else ""
    results: dict[str, tuple[list[Verdict], str, set[str]]] = {}
    keys: dict[str, str] = {}
    hits = 0
    if cache is not None:
        for fn in contract.fns:
            key = _fn_key(text, header, contract, fn, opts)
            keys[fn.name] = key
            blob = cache.get(key)
            if blob is not None:
                results[fn.name] = pickle.loads(blob)
                hits += 1
    todo = [fn.name for fn in contract.fns if fn.name not in results]
    solve_s = emit_s = 0.0
    if todo:
        t0 = time.perf_counter()
        jobs = min(opts.parallel_jobs, len(todo))
        if jobs > 1 and len(todo) >= _PARALLEL_MIN_FUNCTIONS:
            done = _run_parallel(contract, todo, jobs, opts, remove)
            wall = time.perf_counter() - t0
        else:
            done = _solve_and_emit(contract, todo, opts.verify, remove, opts.smt_timeout_ms)
            wall = time.perf_counter() - t0
        cpu_solve = sum(r[4] for r in done)
        cpu_emit = sum(r[5] for r in done)
        share = cpu_solve / (cpu_solve + cpu_emit) if cpu_solve + cpu_emit > 0 else 0.5
        solve_s, emit_s = wall * share, wall * (1 - share)
        for name, fn_verdicts, ir, intr, _s, _e in done:
            results[name] = (fn_verdicts, ir, intr)
            if cache is not None:
                cache.put(keys[name], pickle.dumps((fn_verdicts, ir, intr)))
    verdicts: list[Verdict] = []
    parts = [module_header(contract)]
    decls: set[str] = set()
    for fn in contract.fns:
        fv, ir, intr = results[fn.name]
        verdicts.extend(fv)
        parts.append(ir)
        decls |= intr
    parts.extend(sorted(decls))
    t0 = time.perf_counter()
    warnings = _judge(contract, smap, verdicts, opts)
    solve_s += time.perf_counter() - t0
    return verdicts, warnings, "\n".join(parts) + "\n", solve_s, emit_s, hits


def _run_parallel(
    contract: Contract, names: list[str], jobs: int, opts: CompileOptions, remove: bool
) -> list[tuple[str, list[Verdict], str, set[str], float, float]]:
    blob = pickle.dumps(contract, protocol=pickle.HIGHEST_PROTOCOL)
    # Interleave functions so each worker gets a similar mix of sizes.
    chunks = [names[i::jobs] for i in range(jobs)]
    pool = _pool(jobs)
    futures = [
        pool.submit(_worker, blob, chunk, opts.verify, remove, opts.smt_timeout_ms)
        for chunk in chunks
    ]
    out: list[tuple[str, list[Verdict], str, set[str], float, float]] = []
    for fut in futures:
        out.extend(pickle.loads(fut.result()))
    order = {n: i for i, n in enumerate(names)}
    out.sort(key=lambda r: order[r[0]])
    return out


def _judge(
    contract: Contract, smap: SourceMap, verdicts: list[Verdict], opts: CompileOptions
) -> list[Diagnostic]:
    """Hard failures raise VerificationFailed; soft failures and unknowns become warnings."""
    errors: list[str] = []
    warnings: list[Diagnostic] = []
    if opts.verify:
        interp = Interpreter(contract)
        for inv in contract.invariants:
            try:
                holds = interp.eval(inv, {})
            except ContractRevert:
                holds = 0
            if not holds:
                errors.append(
                    f"{make_diagnostic(smap, inv.pos, 'invariant does not hold in the initial state')}"
                )
    for v in verdicts:
        if v.status == "proved":
            continue
        cex = ", ".join(f"{k}={val}" for k, val in v.counterexample.items())
        if v.status == "failed" and v.kind in HARD_KINDS:
            what = f"{v.kind} may fail in '{v.fn}': {v.message}; counterexample: {cex}"
            errors.append(str(make_diagnostic(smap, v.pos, what)))
        elif v.status == "failed":
            what = (
                f"{v.message} is possible in '{v.fn}' (runtime check kept); counterexample: {cex}"
            )
            warnings.append(make_diagnostic(smap, v.pos, what, "warning"))
        else:
            what = f"could not prove '{v.message}' in '{v.fn}' ({v.reason}); verdict unknown, check kept"
            warnings.append(make_diagnostic(smap, v.pos, what, "warning"))
    if errors:
        raise VerificationFailed("\n".join(errors[: opts.max_errors]))
    return warnings[: max(opts.max_errors, 1) * 10]


def ast_json(node: Any, depth: int = 0) -> Any:
    """A JSON-ready view of the tree (bounded by the parser's depth limit)."""
    if isinstance(node, Ty):
        return str(node)
    if isinstance(node, list):
        return [ast_json(x, depth + 1) for x in node]
    if isinstance(node, set):
        return sorted(node)
    if isinstance(node, dict):
        return {str(k): ast_json(v, depth + 1) for k, v in node.items()}
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        out: dict[str, Any] = {"node": type(node).__name__}
        for f in dataclasses.fields(node):
            if f.name in ("height", "guards"):
                continue
            out[f.name] = ast_json(getattr(node, f.name), depth + 1)
        return out
    if isinstance(node, tuple):
        return [ast_json(x, depth + 1) for x in node]
    return node
