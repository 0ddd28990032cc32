"""The guide's examples compile, run and fail exactly as docs/contract_compiler.md says."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from tenfold.contract_compiler import (
    CompileOptions,
    ContractCompilerError,
    ContractRevert,
    compile_source,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "contract_compiler.md"
_BLOCK = re.compile(r"```([a-z-]+)\n(.*?)```", re.DOTALL)
_CALL = re.compile(r"^(\w+)\((.*?)\)(?: as (\d+))? -> (.+)$")


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(DOC.read_text())]


def _examples() -> list[tuple[str, str, str]]:
    out = []
    blocks = _blocks()
    for i, (kind, body) in enumerate(blocks):
        if kind in ("contract", "contract-error"):
            follow = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
            out.append((kind, body, follow[1] if follow[0] in ("calls", "expect") else ""))
    return out


EXAMPLES = _examples()


def _arg(text: str) -> object:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if "." in text:
        return int(Decimal(text) * 1_000_000)
    return int(text)


def test_the_guide_has_examples() -> None:
    kinds = [k for k, _b, _f in EXAMPLES]
    assert kinds.count("contract") >= 3
    assert kinds.count("contract-error") >= 3


@pytest.mark.parametrize("opt_level", [0, 2])
@pytest.mark.parametrize("index", [i for i, e in enumerate(EXAMPLES) if e[0] == "contract"])
def test_contract_examples_run_as_documented(index: int, opt_level: int) -> None:
    _kind, source, calls = EXAMPLES[index]
    compiled = compile_source(
        source, "example.ct", CompileOptions(opt_level=opt_level, emit="none")
    )
    for runner in (compiled.jit(), compiled.interpreter()):
        for line in calls.strip().splitlines():
            m = _CALL.match(line.strip())
            assert m, f"unreadable calls line: {line}"
            fn, args_text, caller, expected = m.groups()
            args = [_arg(a) for a in args_text.split(",")] if args_text.strip() else []
            ret = compiled.contract.fn(fn)
            assert ret is not None
            if expected.startswith("revert"):
                with pytest.raises(ContractRevert) as info:
                    runner.call(fn, args, caller=int(caller or 0))
                assert info.value.kind == expected.split()[1]
                continue
            value = runner.call(fn, args, caller=int(caller or 0))
            if expected == "none":
                assert value is None
            elif str(ret.ret) == "dec":
                assert value is not None
                assert Decimal(value) / 1_000_000 == Decimal(expected)
            else:
                assert value == int(expected)


@pytest.mark.parametrize("index", [i for i, e in enumerate(EXAMPLES) if e[0] == "contract-error"])
def test_error_examples_fail_as_documented(index: int) -> None:
    _kind, source, expect = EXAMPLES[index]
    with pytest.raises(ContractCompilerError) as info:
        compile_source(source, "example.ct", CompileOptions(emit="none"))
    message = str(info.value)
    for wanted in expect.strip().splitlines():
        assert wanted in message
    assert "example.ct:" in message
