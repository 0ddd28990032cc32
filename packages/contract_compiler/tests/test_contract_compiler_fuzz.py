"""Fuzzing: random and mutated sources end in a compile result or one of our errors, never a crash."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.contract_compiler import CompileOptions, ContractCompilerError, compile_source
from tenfold.contract_compiler._parser import KEYWORDS

SEED = """contract Fuzz {
  party p;
  state a: u32 = 1;
  state m: map[4] of i64;
  state d: dec = 0.5;
  invariant a >= 1;
  fn f(x: u32, y: i64) -> i64 requires x < 10 ensures result >= 0 - 100000 {
    let s: i64 = 0;
    for i in 0..4 { if (i as u32) < x { s = s + m[i] % 7; } }
    check y != 0, "zero";
    a = a % 100 + 1;
    return s / y;
  }
  fn g(z: dec) -> dec only p { return z * d / 2.0; }
}
"""

_PIECES = (
    sorted(KEYWORDS)
    + list('{}()[];:,.=<>!+-*/%"@#')
    + [
        "0",
        "1",
        "255",
        "99999999999999999999999",
        "1.5",
        "x",
        "a",
        "m[",
        "u8",
        "Money[USD]",
        "\n",
        " ",
        "==>",
        "..",
        "->",
        "&&",
        "||",
        "\xff",
        "é",
        "\x00",
    ]
)


def _compile(text: str) -> None:
    # Anything but our own errors (a RecursionError, KeyError, segfault...) fails the test.
    with contextlib.suppress(ContractCompilerError):
        compile_source(text, "fuzz.ct", CompileOptions(emit="none", smt_timeout_ms=200))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=80))
def test_random_token_soup_never_crashes(pieces: list[str]) -> None:
    _compile(" ".join(pieces))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(SEED)), st.integers(0, 6), st.sampled_from(_PIECES)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_sources_never_crash(edits: list[tuple[int, int, str]]) -> None:
    text = SEED
    for at, cut, insert in edits:
        pos = min(at, len(text))
        text = text[:pos] + insert + text[pos + cut :]
    _compile(text)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(ContractCompilerError):
        compile_source(data, "bytes.ct", CompileOptions(emit="none", smt_timeout_ms=200))


def test_the_seed_compiles() -> None:
    compile_source(SEED, "fuzz.ct", CompileOptions(emit="none"))
