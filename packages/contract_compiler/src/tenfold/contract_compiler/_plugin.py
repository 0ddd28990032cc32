"""Registration of the Contract Executable Compiler with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin


def kernel() -> None:
    """Parse and type-check a small generated contract (deterministic, no solver, no LLVM)."""
    from tenfold.contract_compiler._ast import SourceMap
    from tenfold.contract_compiler._checker import infer_types
    from tenfold.contract_compiler._generate import generate_contract
    from tenfold.contract_compiler._parser import parse_contract

    text = generate_contract(100, seed=7).ours
    infer_types(parse_contract(text), SourceMap(text))


plugin = SystemPlugin(
    name="contract_compiler",
    title="Contract Executable Compiler",
    summary="A verified contract language compiled to native code through LLVM",
    commands={
        "compile": (
            "tenfold.contract_compiler.cli:compile_command",
            "Compile a contract to native code, proving its specs",
        ),
        "contract": (
            "tenfold.contract_compiler.cli:contract_group",
            "Run and inspect compiled contracts",
        ),
    },
    config=("compiler", "tenfold.contract_compiler.config:CompilerConfig"),
    scenarios="tenfold.contract_compiler.bench:scenarios",
    kernel="tenfold.contract_compiler._plugin:kernel",
)
