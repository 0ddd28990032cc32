"""``tenfold compile`` and ``tenfold contract run``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tenfold.core.cli import emit, json_option

if TYPE_CHECKING:
    from tenfold.contract_compiler._compiler import CompileOptions

__all__ = ["compile_command", "contract_group"]

_CACHE_DIR = Path(".tenfold/cache/contract_compiler")


def _read(path: Path) -> bytes:
    from tenfold.contract_compiler.errors import ContractCompilerError

    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContractCompilerError(f"cannot read {path}: {exc.strerror}") from None


def _write(path: Path, data: bytes) -> None:
    """Write all of ``data`` or nothing: a temporary file beside ``path``, then a rename."""
    from tenfold.contract_compiler.errors import ContractCompilerError
    from tenfold.core.files import replace_file

    try:
        replace_file(path, data)
    except OSError as exc:
        raise ContractCompilerError(f"cannot write {path}: {exc.strerror}") from None


def _options(opt_level: int | None, **overrides: object) -> CompileOptions:
    from tenfold.contract_compiler._cache import ArtifactCache
    from tenfold.contract_compiler._compiler import CompileOptions
    from tenfold.contract_compiler.config import load_config

    cfg = load_config()
    opts = CompileOptions.from_config(cfg, **overrides)
    if opt_level is not None:
        opts.opt_level = opt_level
    if cfg.cache_size_mb > 0 and cfg.cache_dir is None:
        opts.cache = ArtifactCache(cfg.cache_size_mb * 1024 * 1024, _CACHE_DIR)
    return opts


def _timings_text(timings: dict[str, float]) -> str:
    total = sum(timings.values()) or 1.0
    rows = [f"  {'phase':<20} {'ms':>10} {'share':>7}"]
    for phase, ms in timings.items():
        rows.append(f"  {phase:<20} {ms:>10.2f} {100 * ms / total:>6.1f}%")
    rows.append(f"  {'total':<20} {total:>10.2f}")
    return "\n".join(rows)


@click.command("compile")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-O", "opt_level", type=click.IntRange(0, 3), default=None, help="Optimization level 0-3."
)
@click.option(
    "--emit",
    "emit_kind",
    type=click.Choice(["llvm", "obj", "ast"]),
    default=None,
    help="Write LLVM IR, an object file or the syntax tree.",
)
@click.option(
    "--out",
    "-o",
    "--output",
    "output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the IR or object file (default: FILE with .o for --emit obj).",
)
@click.option("--verify-only", is_flag=True, help="Check and prove; generate no code.")
@click.option("--timings", is_flag=True, help="Show the time spent in each phase.")
@click.option("--gas", is_flag=True, help="Also compute tight gas bounds with z3 Optimize.")
@json_option
def compile_command(
    file: Path,
    opt_level: int | None,
    emit_kind: str | None,
    output: Path | None,
    verify_only: bool,
    timings: bool,
    gas: bool,
    as_json: bool,
) -> None:
    """Compile a contract: check types, prove its guards and specs, generate native code."""
    data = _read(file)  # before the compiler's imports: a typo answers at once
    from tenfold.contract_compiler._compiler import CompiledContract, ast_json, compile_source

    kind = "none" if verify_only else (emit_kind or "obj")
    opts = _options(opt_level, emit=kind, gas=gas)
    result: CompiledContract = compile_source(data, str(file), opts)
    for warning in result.warnings:
        click.echo(str(warning), err=True)
    summary = result.summary()
    if not timings:
        summary.pop("timings_ms", None)
    if kind == "ast":
        emit(ast_json(result.contract), as_json)
        return
    if kind == "llvm":
        if output is not None:
            _write(output, result.optimized_ir.encode())
            summary["output"] = str(output)
        elif not as_json:
            click.echo(result.optimized_ir, nl=False)
            return
        else:
            summary["ir"] = result.optimized_ir
    if kind == "obj" and emit_kind == "obj":
        target = output or file.with_suffix(".o")
        _write(target, result.object_code or b"")
        summary["output"] = str(target)

    def text() -> str:
        counts = summary["verdicts"]
        lines = [
            f"{file}: contract {result.contract.name}: {len(result.contract.fns)} functions, "
            f"{counts['proved']} checks proved, {counts['failed']} possible, "  # type: ignore[index]
            f"{counts['unknown']} unknown, -O{result.opt_level}, cache {result.cache}"  # type: ignore[index]
        ]
        for fn in result.contract.fns:
            tight = result.gas_bounds.get(fn.name)
            extra = f" (feasible paths: {tight})" if tight is not None else ""
            lines.append(f"  fn {fn.name}: step bound {fn.steps}{extra}")
        if "output" in summary:
            lines.append(f"wrote {summary['output']}")
        if timings:
            phases = dict(result.timings_ms)
            lookup = phases.pop("cache_lookup", None)
            if lookup is not None:
                lines.append(
                    f"cache hit: looked up in {lookup:.2f} ms; the phases below are those of "
                    f"the build it reused"
                )
            lines.append(_timings_text(phases))
        return "\n".join(lines)

    emit(summary, as_json, text)


def _parse_arg(text: str, ty: object, name: str) -> object:
    from tenfold.contract_compiler._ast import BOOL, DEC, DEC_SCALE
    from tenfold.contract_compiler.errors import ContractCompilerError

    if ty == BOOL:
        if text not in ("true", "false"):
            raise ContractCompilerError(f"argument '{name}': expected true or false, got {text!r}")
        return text == "true"
    if ty == DEC:
        try:
            value = Decimal(text) * DEC_SCALE
        except InvalidOperation:
            raise ContractCompilerError(
                f"argument '{name}': expected a decimal, got {text!r}"
            ) from None
        if value != value.to_integral_value():
            raise ContractCompilerError(
                f"argument '{name}': more than 6 fractional digits in {text!r}"
            )
        return int(value)
    try:
        return int(text, 0)
    except ValueError:
        raise ContractCompilerError(
            f"argument '{name}': expected an integer, got {text!r}"
        ) from None


@click.group("contract")
def contract_group() -> None:
    """Run compiled contracts."""


@contract_group.command(
    "run",
    # Arguments may be negative numbers ("-5"): an unknown option-like word is an argument.
    context_settings={"ignore_unknown_options": True},
)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("fn")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("-O", "opt_level", type=click.IntRange(0, 3), default=None)
@click.option("--caller", type=int, default=0, help="The calling party's id.")
@click.option("--interpret", is_flag=True, help="Use the reference interpreter instead of the JIT.")
@json_option
def run_command(
    file: Path,
    fn: str,
    args: tuple[str, ...],
    opt_level: int | None,
    caller: int,
    interpret: bool,
    as_json: bool,
) -> None:
    """Compile FILE and call FN(ARGS...) on a freshly deployed instance."""
    from tenfold.contract_compiler._compiler import CompiledContract, compile_source
    from tenfold.contract_compiler.errors import ContractCompilerError, ContractRevert

    result: CompiledContract = compile_source(
        _read(file), str(file), _options(opt_level, emit="none")
    )
    decl = result.contract.fn(fn)
    if decl is None:
        names = ", ".join(f.name for f in result.contract.fns)
        raise ContractCompilerError(f"no function '{fn}' in {file} (functions: {names})")
    if len(args) != len(decl.params):
        raise ContractCompilerError(
            f"'{fn}' takes {len(decl.params)} argument(s), {len(args)} given"
        )
    values = [_parse_arg(a, p.ty, p.name) for a, p in zip(args, decl.params, strict=True)]
    runner = result.interpreter() if interpret else result.jit()
    try:
        value = runner.call(fn, values, caller=caller)
    except ContractRevert as exc:
        out = {
            "function": fn,
            "status": "reverted",
            "guard": exc.guard,
            "kind": exc.kind,
            "message": str(exc),
        }
        emit(out, as_json, str(exc))
        raise SystemExit(1) from None
    shown = _show(value, decl.ret)
    out = {
        "function": fn,
        "status": "ok",
        "result": shown,
        "engine": "interpreter" if interpret else "jit",
    }
    emit(out, as_json, "ok" if value is None else str(shown))


def _show(value: int | None, ty: object) -> object:
    from tenfold.contract_compiler._ast import BOOL, DEC, DEC_SCALE

    if value is None:
        return None
    if ty == BOOL:
        return bool(value)
    if ty == DEC:
        return str(Decimal(value) / DEC_SCALE)
    return value
