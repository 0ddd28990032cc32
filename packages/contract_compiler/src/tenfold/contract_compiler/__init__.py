"""Contract Executable Compiler: A verified contract language compiled to native code through LLVM."""

from tenfold.contract_compiler.errors import ContractCompilerError as ContractCompilerError

__all__ = ["ContractCompilerError"]
