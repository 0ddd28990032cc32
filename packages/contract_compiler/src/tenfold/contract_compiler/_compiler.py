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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from tenfold.contract_compiler._ast import (
    VOID,
    Binary,
    Contract,
    FnDecl,
    SourceMap,
    Ty,
    left_spine,
)
from tenfold.contract_compiler._cache import ArtifactCache, digest
from tenfold.contract_compiler._checker import infer_types
from tenfold.contract_compiler._codegen import emit_function, function_symbol, link_module
from tenfold.contract_compiler._interp import Interpreter, check_argument, initial_state
from tenfold.contract_compiler._native import NativeModule, ObjectModule, emit_object, optimize_ir
from tenfold.contract_compiler._parser import make_diagnostic, parse_contract
from tenfold.contract_compiler._solver import (
    HARD_KINDS,
    Outcome,
    Query,
    Verdict,
    build_query,
    gas_bound,
    run_queries,
    to_verdicts,
)
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

T = TypeVar("T")

COMPILER_VERSION = "3"
PHASES = (
    "lexing",
    "parsing",
    "type_checking",
    "constraint_solving",
    "code_generation",
    "optimization",
)
EMIT_KINDS = ("obj", "llvm", "ast", "none")
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
    gas: bool = False  # also compute tight gas bounds with z3 Optimize (slower)

    def __post_init__(self) -> None:
        """Refuse a bad option here, with its name, rather than deep inside a compile."""

        def integer(name: str, lo: int, hi: int | None = None) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ContractCompilerError(
                    f"CompileOptions.{name} must be an integer, got {value!r}"
                )
            if value < lo or (hi is not None and value > hi):
                bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                raise ContractCompilerError(f"CompileOptions.{name} must be {bounds}, got {value}")

        integer("opt_level", 0, 3)
        integer("smt_timeout_ms", 1)
        integer("max_errors", 1)
        integer("max_depth", 8, 400)
        integer("max_source_bytes", 1)
        integer("max_output_bytes", 1)
        integer("parallel_jobs", 1, 256)
        if self.emit not in EMIT_KINDS:
            raise ContractCompilerError(
                f"CompileOptions.emit must be one of {', '.join(EMIT_KINDS)}, got {self.emit!r}"
            )
        for name in ("verify", "gas"):
            if not isinstance(getattr(self, name), bool):
                raise ContractCompilerError(
                    f"CompileOptions.{name} must be true or false, got {getattr(self, name)!r}"
                )
        if self.cache is not None and not isinstance(self.cache, ArtifactCache):
            raise ContractCompilerError(
                f"CompileOptions.cache must be an ArtifactCache or None, got {self.cache!r}"
            )

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
    objects: list[bytes]
    verdicts: list[Verdict]
    warnings: list[Diagnostic]
    timings_ms: dict[str, float]
    cache: str = "miss"
    optimized_ir: str = ""
    gas_bounds: dict[str, int | None] = dataclasses.field(default_factory=dict)
    workers: int = 1  # processes that did the work (the main one, or the pool's workers)

    @property
    def object_code(self) -> bytes:
        """One relocatable object: the chunks compiled in parallel are joined with ``ld -r``."""
        if len(self.objects) <= 1:
            return self.objects[0] if self.objects else b""
        return _link_objects(self.objects)

    @property
    def steps(self) -> dict[str, int]:
        """Static step (gas) bound of every function."""
        return {fn.name: fn.steps for fn in self.contract.fns}

    def interpreter(self) -> Interpreter:
        return Interpreter(self.contract)

    def jit(self) -> Executable:
        """JIT-compile the IR into a fresh instance (deployed state)."""
        return Executable(self)

    def load_object(self) -> Executable:
        """Link the generated object file into this process: the same interface as ``jit``."""
        if not self.objects:
            raise ContractCompilerError("no object code: compile with emit='obj'")
        return Executable(self, from_object=True)

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
                    "gas_bound": self.gas_bounds.get(fn.name),
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
            "object_bytes": sum(len(o) for o in self.objects),
        }


class Executable:
    """A JIT-compiled contract instance with its own state buffer; same interface as the interpreter."""

    def __init__(self, compiled: CompiledContract, from_object: bool = False) -> None:
        c = compiled.contract
        self.contract = c
        arities = {function_symbol(c, fn): len(fn.params) for fn in c.fns}
        self.module: NativeModule | ObjectModule = (
            ObjectModule(compiled.object_code, arities)
            if from_object
            else NativeModule(compiled.ir, compiled.opt_level, arities)
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
        who = check_argument(Ty("int"), caller, "caller")
        ctypes.memmove(self._backup, self._buf, self._nbytes)
        status = native(self._buf, who, *values, self._out_ref)
        if status:
            ctypes.memmove(self._buf, self._backup, self._nbytes)
            kind, message, _pos = self.contract.guards[status]
            raise ContractRevert(status, kind, message)
        if fn.ret == VOID:
            return None
        return _from_i64(self._out.value, fn.ret)


def _link_objects(objects: list[bytes]) -> bytes:
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    ld = shutil.which("ld")
    if ld is None:
        raise ContractCompilerError(
            "joining object files needs 'ld' (binutils); it is not installed"
        )
    with tempfile.TemporaryDirectory(prefix="tenfold-ld-") as tmp:
        paths = []
        for i, data in enumerate(objects):
            path = Path(tmp) / f"part{i}.o"
            path.write_bytes(data)
            paths.append(str(path))
        out = Path(tmp) / "contract.o"
        proc = subprocess.run(
            [ld, "-r", "-o", str(out), *paths], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise ContractCompilerError(f"ld -r failed: {proc.stderr.strip()[:300]}")
        return out.read_bytes()


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
    return fn.callees


# -- work sent to worker processes: plain text in, plain data out ------------------


def _z3_task(
    queries: list[Query], timeout_ms: int
) -> tuple[list[tuple[str, list[Outcome]]], float]:
    t0 = time.perf_counter()
    out = run_queries(queries, timeout_ms)
    return out, time.perf_counter() - t0


def _llvm_task(ir_text: str, opt_level: int) -> tuple[bytes, float, float]:
    t0 = time.perf_counter()
    mod = optimize_ir(ir_text, opt_level)
    t1 = time.perf_counter()
    obj = emit_object(mod, opt_level)
    return obj, t1 - t0, time.perf_counter() - t1


_POOL: ProcessPoolExecutor | None = None
_POOL_JOBS = 0
_POOL_LOCK = threading.Lock()


def _pool(jobs: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_JOBS
    with _POOL_LOCK:
        if _POOL is None or jobs != _POOL_JOBS:
            if _POOL is not None:
                _POOL.shutdown(cancel_futures=True)
            # forkserver: workers never inherit LLVM or z3 state from a parent with threads;
            # the server preloads this module so each worker starts with z3 and llvmlite loaded.
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


def _balanced(items: list[T], weight: Callable[[T], int], parts: int) -> list[list[T]]:
    """Split into ``parts`` contiguous runs of similar total weight (order kept)."""
    total = sum(weight(x) for x in items) or 1
    out: list[list[T]] = [[]]
    acc = 0
    for x in items:
        if acc >= total * len(out) / parts and len(out) < parts and out[-1]:
            out.append([])
        out[-1].append(x)
        acc += weight(x)
    return [chunk for chunk in out if chunk]


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
        opts.gas,
    )
    if cache is not None:
        t0 = time.perf_counter()
        blob = cache.get(file_key)
        if blob is not None:
            compiled: CompiledContract = pickle.loads(blob)
            compiled.cache = "hit"
            # The phases are those of the build that produced the cached result (this
            # run did none of them); the lookup is what this run cost.
            compiled.timings_ms = {
                **{p: compiled.timings_ms.get(p, 0.0) for p in PHASES},
                "cache_lookup": round((time.perf_counter() - t0) * 1000, 3),
            }
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
        return CompiledContract(contract, filename, opts.opt_level, "", [], [], [], _ms(timings))
    compiled = _Build(text, smap, contract, opts, timings).run()
    if opts.gas:
        compiled.gas_bounds = {
            fn.name: gas_bound(contract, fn, opts.smt_timeout_ms) for fn in contract.fns
        }
    if cache is not None:
        cache.put(file_key, pickle.dumps(compiled, protocol=pickle.HIGHEST_PROTOCOL))
    return compiled


class _Build:
    """Proofs, IR and machine code for a checked contract, in a process pool when it pays.

    Order of work: SMT text for every function (main process, fast); z3 on
    that text (pool or inline); IR text (main; at -O2+ after the proofs, since
    proved guards are left out); LLVM optimization and object code per chunk
    of functions (pool or inline). At -O0/-O1 the IR does not depend on the
    proofs, so z3 and LLVM chunks run side by side in the pool.
    """

    def __init__(
        self,
        text: str,
        smap: SourceMap,
        contract: Contract,
        opts: CompileOptions,
        timings: dict[str, float],
    ) -> None:
        self.text = text
        self.smap = smap
        self.c = contract
        self.opts = opts
        self.timings = timings
        self.jobs = min(opts.parallel_jobs, max(1, len(contract.fns) // 8))
        self.parallel = self.jobs > 1 and len(contract.fns) >= _PARALLEL_MIN_FUNCTIONS
        self.irs: dict[str, tuple[str, set[str]]] = {}
        self.outcomes: dict[str, list[Verdict]] = {}
        self.callees = {fn.name: _callees(fn) for fn in contract.fns}

    def run(self) -> CompiledContract:
        c, opts = self.c, self.opts
        t_start = time.perf_counter()
        keys, cached = self.cache_lookup()
        todo = [fn for fn in c.fns if fn.name not in cached]
        t0 = time.perf_counter()
        queries = []
        if opts.verify:
            for fn in todo:
                q = build_query(c, fn)
                if q is None:
                    self.outcomes[fn.name] = []
                else:
                    queries.append(q)
        else:
            for fn in todo:
                self.outcomes[fn.name] = []
        solve_s = time.perf_counter() - t0
        remove = opts.opt_level >= 2
        emit_s = 0.0
        llvm_futures: list[Future[tuple[bytes, float, float]]] = []
        if not remove:
            emit_s += self.emit(todo, remove=False)
            if self.parallel and opts.emit == "obj":
                llvm_futures = self.submit_llvm()
        t0 = time.perf_counter()
        self.solve(queries)
        solve_s += time.perf_counter() - t0
        if remove:
            emit_s += self.emit(todo, remove=True)
            if self.parallel and opts.emit == "obj":
                llvm_futures = self.submit_llvm()
        for fn in todo:
            if opts.cache is not None:
                opts.cache.put(
                    keys[fn.name], pickle.dumps((self.outcomes[fn.name], *self.irs[fn.name]))
                )
        verdicts = [v for fn in c.fns for v in self.outcomes[fn.name]]
        t0 = time.perf_counter()
        warnings = _judge(c, self.smap, verdicts, opts)
        solve_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        ir = link_module(c, [fn.name for fn in c.fns], self.irs, {})
        emit_s += time.perf_counter() - t0
        if len(ir) > opts.max_output_bytes:
            raise LimitExceeded(
                f"{self.smap.filename}: generated IR is {len(ir)} bytes, "
                f"over max_output_bytes={opts.max_output_bytes}"
            )
        objects: list[bytes] = []
        optimized = ""
        opt_s = machine_s = 0.0
        t0 = time.perf_counter()
        if llvm_futures:
            try:
                parts = [f.result() for f in llvm_futures]
            except BrokenProcessPool:
                shutdown_pool()
                obj = emit_object(optimize_ir(ir, opts.opt_level), opts.opt_level)
                parts = [(obj, 0.0, time.perf_counter() - t0)]
            wall = time.perf_counter() - t0
            objects = [p[0] for p in parts]
            cpu_opt = sum(p[1] for p in parts)
            cpu_obj = sum(p[2] for p in parts)
            share = cpu_opt / (cpu_opt + cpu_obj) if cpu_opt + cpu_obj > 0 else 0.5
            opt_s, machine_s = wall * share, wall * (1 - share)
        elif opts.emit in ("obj", "llvm"):
            mod = optimize_ir(ir, opts.opt_level)
            t1 = time.perf_counter()
            opt_s = t1 - t0
            if opts.emit == "llvm":
                optimized = str(mod)
            else:
                objects = [emit_object(mod, opts.opt_level)]
            machine_s = time.perf_counter() - t1
        size = sum(len(o) for o in objects) + len(optimized)
        if size > opts.max_output_bytes:
            raise LimitExceeded(
                f"{self.smap.filename}: output is {size} bytes, over max_output_bytes={opts.max_output_bytes}"
            )
        self.timings["constraint_solving"] = solve_s
        self.timings["code_generation"] = emit_s + machine_s
        self.timings["optimization"] = opt_s
        self.timings["total"] = time.perf_counter() - t_start
        return CompiledContract(
            c,
            self.smap.filename,
            opts.opt_level,
            ir,
            objects,
            verdicts,
            warnings,
            _ms(self.timings),
            "partial" if cached else "miss",
            optimized,
            workers=self.jobs if self.parallel else 1,
        )

    def cache_lookup(self) -> tuple[dict[str, str], set[str]]:
        cache = self.opts.cache
        keys: dict[str, str] = {}
        hits: set[str] = set()
        if cache is None:
            return keys, hits
        header = _header_text(self.text, self.c)
        for fn in self.c.fns:
            key = _fn_key(self.text, header, self.c, fn, self.opts)
            keys[fn.name] = key
            blob = cache.get(key)
            if blob is not None:
                verdicts, ir, intr = pickle.loads(blob)
                self.outcomes[fn.name] = verdicts
                self.irs[fn.name] = (ir, intr)
                hits.add(fn.name)
        return keys, hits

    def emit(self, fns: list[FnDecl], remove: bool) -> float:
        t0 = time.perf_counter()
        for fn in fns:
            removed = (
                frozenset(v.gid for v in self.outcomes[fn.name] if v.status == "proved")
                if remove
                else frozenset()
            )
            self.irs[fn.name] = emit_function(self.c, fn, removed)
        return time.perf_counter() - t0

    def solve(self, queries: list[Query]) -> None:
        timeout = self.opts.smt_timeout_ms
        if self.parallel and queries:
            pool = _pool(self.jobs)
            chunks = _balanced(queries, lambda q: len(q.script), self.jobs * 2)
            try:
                futures = [pool.submit(_z3_task, chunk, timeout) for chunk in chunks]
                results = [item for fut in futures for item in fut.result()[0]]
            except BrokenProcessPool:
                # A worker died (killed, out of memory): finish here rather than fail the compile.
                shutdown_pool()
                self.parallel = False
                results = run_queries(queries, timeout)
        else:
            results = run_queries(queries, timeout)
        for name, outcomes in results:
            self.outcomes[name] = to_verdicts(self.c, name, outcomes)

    def submit_llvm(self) -> list[Future[tuple[bytes, float, float]]]:
        pool = _pool(self.jobs)
        names = [fn.name for fn in self.c.fns]
        chunks = _balanced(names, lambda n: len(self.irs[n][0]), self.jobs)
        return [
            pool.submit(
                _llvm_task, link_module(self.c, chunk, self.irs, self.callees), self.opts.opt_level
            )
            for chunk in chunks
        ]


def _ms(timings: dict[str, float]) -> dict[str, float]:
    return {p: round(timings.get(p, 0.0) * 1000, 3) for p in PHASES}


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
    if isinstance(node, Binary) and isinstance(node.left, Binary):
        # A left-associative chain (a flat sum) is a list, not a tower: its length is
        # not nesting, and a tower as deep as the sum is long would not encode as JSON.
        first, chain = left_spine(node)
        return {
            "node": "BinaryChain",
            "first": ast_json(first, depth + 1),
            "links": [_node_json(link, depth + 1, skip=("left",)) for link in chain],
        }
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return _node_json(node, depth)
    if isinstance(node, tuple):
        return [ast_json(x, depth + 1) for x in node]
    return node


def _node_json(node: Any, depth: int, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"node": type(node).__name__}
    for f in dataclasses.fields(node):
        if f.name in ("height", "guards", *skip):
            continue
        out[f.name] = ast_json(getattr(node, f.name), depth + 1)
    return out
