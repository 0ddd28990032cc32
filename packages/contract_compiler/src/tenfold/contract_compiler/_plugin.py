"""Registration of the Contract Executable Compiler with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="contract_compiler",
    title="Contract Executable Compiler",
    summary="A verified contract language compiled to native code through LLVM",
)
