"""Contract Executable Compiler: a verified contract language compiled to native code through LLVM.

>>> from tenfold.contract_compiler import compile_source
>>> c = compile_source("contract C { state n: u32 = 0; fn bump() -> u32 requires n < 10 { n = n + 1; return n; } }")
>>> c.jit().call("bump")
1
"""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.contract_compiler._cache import ArtifactCache as ArtifactCache
    from tenfold.contract_compiler._checker import infer_types as infer_types
    from tenfold.contract_compiler._codegen import emit_llvm as emit_llvm
    from tenfold.contract_compiler._compiler import CompiledContract as CompiledContract
    from tenfold.contract_compiler._compiler import CompileOptions as CompileOptions
    from tenfold.contract_compiler._compiler import Executable as Executable
    from tenfold.contract_compiler._compiler import compile_source as compile_source
    from tenfold.contract_compiler._compiler import shutdown_pool as shutdown_pool
    from tenfold.contract_compiler._generate import generate_contract as generate_contract
    from tenfold.contract_compiler._interp import Interpreter as Interpreter
    from tenfold.contract_compiler._parser import parse_contract as parse_contract
    from tenfold.contract_compiler._parser import parse_expression as parse_expression
    from tenfold.contract_compiler._solver import Verdict as Verdict
    from tenfold.contract_compiler._solver import solve as solve
    from tenfold.contract_compiler.config import CompilerPerformance as CompilerPerformance
    from tenfold.contract_compiler.config import load_config as load_config
    from tenfold.contract_compiler.errors import CompileError as CompileError
    from tenfold.contract_compiler.errors import ContractCompilerError as ContractCompilerError
    from tenfold.contract_compiler.errors import ContractRevert as ContractRevert
    from tenfold.contract_compiler.errors import Diagnostic as Diagnostic
    from tenfold.contract_compiler.errors import LimitExceeded as LimitExceeded
    from tenfold.contract_compiler.errors import VerificationFailed as VerificationFailed

__all__ = [
    "ArtifactCache",
    "CompileError",
    "CompileOptions",
    "CompiledContract",
    "CompilerPerformance",
    "ContractCompilerError",
    "ContractRevert",
    "Diagnostic",
    "Executable",
    "Interpreter",
    "LimitExceeded",
    "Verdict",
    "VerificationFailed",
    "compile_source",
    "emit_llvm",
    "generate_contract",
    "infer_types",
    "load_config",
    "parse_contract",
    "parse_expression",
    "shutdown_pool",
    "solve",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._cache": ["ArtifactCache"],
        "._checker": ["infer_types"],
        "._codegen": ["emit_llvm"],
        "._compiler": [
            "CompileOptions",
            "CompiledContract",
            "Executable",
            "compile_source",
            "shutdown_pool",
        ],
        "._generate": ["generate_contract"],
        "._interp": ["Interpreter"],
        "._parser": ["parse_contract", "parse_expression"],
        "._solver": ["Verdict", "solve"],
        ".config": ["CompilerPerformance", "load_config"],
        ".errors": [
            "CompileError",
            "ContractCompilerError",
            "ContractRevert",
            "Diagnostic",
            "LimitExceeded",
            "VerificationFailed",
        ],
    },
    __all__,
)
