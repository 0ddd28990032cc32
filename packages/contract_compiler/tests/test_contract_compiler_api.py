from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"opt_level": "2"},
        {"opt_level": 4},
        {"opt_level": True},
        {"smt_timeout_ms": -1, "emit": "wasm"},
        {"emit": "wasm"},
        {"max_depth": 0},
        {"parallel_jobs": 0},
        {"verify": "yes"},
        {"cache": "dir"},
    ],
)
def test_compile_options_refuse_bad_values_with_the_systems_error(kwargs: dict[str, Any]) -> None:
    # Regression: opt_level="2" raised TypeError deep in a compile; smt_timeout_ms=-1 and
    # emit="wasm" were accepted.
    with pytest.raises(api.ContractCompilerError, match="CompileOptions"):
        api.CompileOptions(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "opt_level",
                "emit",
                "verify",
                "smt_timeout_ms",
                "max_errors",
                "max_depth",
                "max_source_bytes",
                "max_output_bytes",
                "parallel_jobs",
                "gas",
            ]
        ),
        st.one_of(st.integers(-5, 500), st.text(max_size=5), st.booleans(), st.none(), st.floats()),
    )
)
def test_compile_options_give_options_or_the_systems_error(kwargs: dict[str, Any]) -> None:
    try:
        opts = api.CompileOptions(**kwargs)
    except api.ContractCompilerError:
        return
    assert 0 <= opts.opt_level <= 3 and opts.emit in ("obj", "llvm", "ast", "none")
