"""Numeric compilation (numpy and llvmlite) and batch reduction in a process pool."""

import numpy as np
import pytest

from tenfold.symbolic_modeler import (
    RuleSet,
    compile_native,
    lambdify,
    parse_expression,
    reduce,
    reduce_many,
)
from tenfold.symbolic_modeler._corpus import random_expressions
from tenfold.symbolic_modeler.errors import CompilationError

TEXT = "sin(x)**2 + x*y/3 - exp(y) + y**-2 + tan(x) + sqrt(x) + log(y)"


def reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sin(x) ** 2 + x * y / 3 - np.exp(y) + y**-2.0 + np.tan(x) + np.sqrt(x) + np.log(y)


def test_numpy_and_native_agree_with_a_hand_written_reference() -> None:
    t = reduce(parse_expression(TEXT))
    xs, ys = np.linspace(0.1, 1.4, 2001), np.linspace(0.5, 3.0, 2001)
    expected = reference(xs, ys)
    np.testing.assert_allclose(lambdify(t, ["x", "y"])(xs, ys), expected, rtol=1e-12)
    native = compile_native(t, ["x", "y"])
    np.testing.assert_allclose(native(xs, ys), expected, rtol=1e-9)
    assert "define void @f" in native.ir


def test_native_keeps_nan_where_the_real_value_is_undefined() -> None:
    t = reduce(parse_expression("log(x - 2) + x"))
    out = compile_native(t, ["x"])(np.array([1.0, 3.0]))
    assert np.isnan(out[0]) and out[1] == pytest.approx(np.log(1.0) + 3.0)


def test_compilation_errors_name_the_problem() -> None:
    with pytest.raises(CompilationError, match="free symbols not given as arguments: y"):
        compile_native(parse_expression("x + y"), ["x"])
    with pytest.raises(CompilationError, match="no native implementation for f"):
        compile_native(parse_expression("f(x)"), ["x"])


def test_reduce_many_in_a_process_pool_matches_serial() -> None:
    terms = [parse_expression(t) for t in random_expressions(5, 20, 140)]
    serial = [reduce(t) for t in terms]
    assert reduce_many(terms, parallel_jobs=2, chunk_size=32) == serial
    rules = RuleSet.parse("sin(x_)**2 + cos(x_)**2 -> 1")
    batch = [parse_expression("sin(a)**2 + cos(a)**2")] * 70
    assert set(reduce_many(batch, rules, parallel_jobs=2, chunk_size=16)) == {parse_expression("1")}
