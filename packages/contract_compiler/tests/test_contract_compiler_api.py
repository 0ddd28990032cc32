import tenfold.contract_compiler as api


def test_the_documented_hot_functions_are_public() -> None:
    for name in ("parse_expression", "infer_types", "solve", "emit_llvm", "compile_source"):
        assert callable(getattr(api, name))
    assert issubclass(api.CompileError, api.ContractCompilerError)
    assert api.VerificationFailed("x").exit_code == 1
    assert api.CompileError([]).exit_code == 2


def test_module_docstring_example() -> None:
    c = api.compile_source(
        "contract C { state n: u32 = 0; fn bump() -> u32 requires n < 10 { n = n + 1; return n; } }"
    )
    assert c.jit().call("bump") == 1
