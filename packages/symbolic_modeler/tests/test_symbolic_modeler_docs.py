"""Every Python block of docs/symbolic_modeler.md runs, and prints what its comments say."""

import ast
import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "symbolic_modeler.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def _checked(block: str) -> tuple[str, int]:
    """The block with each `print(e)  # out` / `e  # out` line turned into a check of `out`."""
    lines = []
    checks = 0
    for line in block.splitlines():
        code, sep, comment = line.partition("  # ")
        if sep and code.strip():
            try:
                node = ast.parse(code.strip())
            except SyntaxError:  # a line inside a call spanning several lines
                lines.append(line)
                continue
            if len(node.body) == 1 and isinstance(node.body[0], ast.Expr):
                call = node.body[0].value
                indent = code[: len(code) - len(code.lstrip())]
                if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "print":
                    lines.append(f"{indent}__check({code.strip()}, {comment.strip()!r})")
                else:
                    lines.append(f"{indent}__check_value({code.strip()}, {comment.strip()!r})")
                checks += 1
                continue
        lines.append(line)
    return "\n".join(lines), checks


def test_guide_examples_run_and_print_what_they_say() -> None:
    blocks = _blocks()
    assert len(blocks) >= 6
    captured = io.StringIO()
    seen: list[tuple[str, str]] = []

    def check(_: None, expected: str) -> None:
        out = captured.getvalue().splitlines()[-1]
        seen.append((out, expected))

    def check_value(value: object, expected: str) -> None:
        seen.append((str(value), expected))

    namespace: dict[str, object] = {"__check": check, "__check_value": check_value}
    total = 0
    with contextlib.redirect_stdout(captured):
        for block in blocks:
            code, checks = _checked(block)
            total += checks
            exec(compile(code, str(DOC), "exec"), namespace)
    assert total >= 20 and len(seen) == total
    for out, expected in seen:
        assert out == expected


def test_guide_reduce_lines_read_back_as_the_same_node() -> None:
    # The guide's command session is run and compared by the core's guide runner; here
    # each `tenfold symbolic reduce EXPR` it shows, with the output line under it, must
    # print text that reads back as the same node (the CLI prints to_text).
    import shlex

    from tenfold.symbolic_modeler import parse_expression, reduce

    lines = DOC.read_text().splitlines()
    pairs = [
        (shlex.split(line[2:]), lines[i + 1].strip())
        for i, line in enumerate(lines[:-1])
        if line.startswith("$ tenfold symbolic reduce ") and "--" not in line
    ]
    assert len(pairs) >= 1
    for argv, shown in pairs:
        assert reduce(parse_expression(shown)) is reduce(parse_expression(argv[3])), (argv, shown)
