import tenfold.contract_compiler as api


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None
    private = [n for n in vars(api) if not n.startswith("_") and n not in api.__all__]
    assert all(
        n in {"errors", "annotations"} or isinstance(getattr(api, n), type(api)) for n in private
    )


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
