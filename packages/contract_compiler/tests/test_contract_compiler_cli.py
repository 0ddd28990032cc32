"""The command line: outputs, exit codes, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tenfold.core.testing import run_cli

ESCROW = """contract Escrow {
  party buyer;
  state held: Money[USD] = 0;
  invariant held >= 0;
  fn open() { check buyer == 0, "open"; buyer = caller; }
  fn deposit(amount: Money[USD]) -> Money[USD]
    requires amount > 0 && amount <= 1000000
    requires held <= 1000000000
    ensures held == old(held) + amount
  { held = held + amount; return held; }
  fn half(x: dec) -> dec { return x / 2.0; }
  fn ok(x: bool) -> bool { return !x; }
}
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process (imports are paid once); same exit codes and streams."""
    import contextlib
    import io

    from tenfold.core.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture
def escrow(tmp_path: Path) -> Path:
    path = tmp_path / "escrow.ct"
    path.write_text(ESCROW)
    return path


def test_compile_writes_an_object_file_and_reports_timings(tmp_path: Path, escrow: Path) -> None:
    out = _run(
        tmp_path, "compile", str(escrow), "--emit", "obj", "-o", "e.o", "--timings", "--json"
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (tmp_path / "e.o").read_bytes()[:4] == b"\x7fELF"
    assert set(doc["timings_ms"]) == {
        "lexing",
        "parsing",
        "type_checking",
        "constraint_solving",
        "code_generation",
        "optimization",
    }
    assert doc["verdicts"]["failed"] == 0 and doc["verdicts"]["proved"] > 0
    assert {f["name"]: f["step_bound"] for f in doc["functions"]}["deposit"] > 0


def test_emit_llvm_and_ast(tmp_path: Path, escrow: Path) -> None:
    ir = _run(tmp_path, "compile", str(escrow), "--emit", "llvm", "-O", "2")
    assert ir.returncode == 0, ir.stderr
    assert re.search(r'define .*@"?Escrow\.deposit"?\(', ir.stdout)
    ast = _run(tmp_path, "compile", str(escrow), "--emit", "ast", "--json")
    assert json.loads(ast.stdout)["name"] == "Escrow"


def test_verify_only_and_the_cache_across_processes(tmp_path: Path, escrow: Path) -> None:
    first = _run(tmp_path, "compile", str(escrow), "--verify-only", "--json")
    second = _run(tmp_path, "compile", str(escrow), "--verify-only", "--json")
    assert first.returncode == second.returncode == 0
    assert json.loads(first.stdout)["cache"] == "miss"
    assert json.loads(second.stdout)["cache"] == "hit"


def test_contract_run(tmp_path: Path, escrow: Path) -> None:
    out = _run(tmp_path, "contract", "run", str(escrow), "half", "3.5", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == "1.75"
    out = _run(tmp_path, "contract", "run", str(escrow), "ok", "false", "--interpret")
    assert out.stdout.strip() == "True"
    out = _run(tmp_path, "contract", "run", str(escrow), "deposit", "0")
    assert out.returncode == 1
    assert "requires check" in out.stdout


@pytest.mark.parametrize(
    ("source", "code", "expected"),
    [
        ("contract C { fn f() { let x = 1 +; } }", 2, "bad.ct:1:34: error: expected an expression"),
        ("contract C { fn f() -> u8 { return 300; } }", 2, "literal 300 does not fit in u8"),
        (
            "contract C { fn f(x: u8) -> u8 ensures result > x { return x; } }",
            1,
            "ensures may fail",
        ),
        ("contract C { fn f() { while true { } } }", 2, "'while' loops are not allowed"),
    ],
)
def test_bad_input_is_one_error_without_traceback(
    tmp_path: Path, source: str, code: int, expected: str
) -> None:
    (tmp_path / "bad.ct").write_text(source)
    out = _run(tmp_path, "compile", "bad.ct")
    assert out.returncode == code
    assert out.stderr.startswith("tenfold: error: ")
    assert expected in out.stderr


def test_a_real_process_prints_one_error_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.ct").write_text(
        "contract C {\n  fn f() { let x = 1 +; }\n  fn g() -> u8 { return @; }\n"
    )
    out = run_cli("compile", "bad.ct", cwd=tmp_path, env={"TENFOLD_CONFIG": None})
    code, expected = 2, "bad.ct:2:23: error: expected an expression, found ';'"
    assert "bad.ct:3:25: error: stray character '@'" in out.stderr
    assert out.returncode == code
    assert out.stderr.startswith("tenfold: error: ")
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_file_and_bad_arguments(tmp_path: Path, escrow: Path) -> None:
    out = _run(tmp_path, "compile", "nope.ct")
    assert out.returncode == 2 and "cannot read nope.ct" in out.stderr
    out = _run(tmp_path, "contract", "run", str(escrow), "deposit", "lots")
    assert out.returncode == 2 and "expected an integer" in out.stderr
    out = _run(tmp_path, "contract", "run", str(escrow), "depost", "1")
    assert out.returncode == 2 and "no function 'depost'" in out.stderr
    (tmp_path / "bin.ct").write_bytes(b"contract \xff")
    out = _run(tmp_path, "compile", "bin.ct")
    assert out.returncode == 2 and "not valid UTF-8" in out.stderr


def test_out_is_the_spelling_and_o_and_output_still_work(tmp_path: Path, escrow: Path) -> None:
    for flag, name in (("--out", "a.o"), ("-o", "b.o"), ("--output", "c.o")):
        out = _run(tmp_path, "compile", str(escrow), "--emit", "obj", flag, name)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / name).read_bytes()[:4] == b"\x7fELF"
    help_text = _run(tmp_path, "compile", "--help").stdout
    assert "--out" in help_text


def test_negative_numbers_are_arguments(tmp_path: Path) -> None:
    # Regression: "contract run f.ct neg -5" was read as an unknown option -5.
    (tmp_path / "n.ct").write_text(
        "contract N { fn neg(x: i64) -> i64 requires x > -100 { return -x; }\n"
        "  fn add(a: i64, b: dec) -> dec requires a > -10 && a < 10 && b > -10.0 && b < 10.0\n"
        "  { return (a as dec) + b; } }"
    )
    out = _run(tmp_path, "contract", "run", "n.ct", "neg", "-5")
    assert (out.returncode, out.stdout.strip()) == (0, "5"), out.stderr
    out = _run(tmp_path, "contract", "run", "n.ct", "add", "-5", "-1.5", "--interpret", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == "-6.5"
    out = _run(tmp_path, "contract", "run", "n.ct", "neg", "-5", "--caller", "-3")
    assert (out.returncode, out.stdout.strip()) == (0, "5"), out.stderr


@pytest.mark.parametrize("target", ["missing/dir/x.o", "sub", "/proc/no/x.o"])
def test_an_unwritable_output_is_one_line_and_exit_2(
    tmp_path: Path, escrow: Path, target: str
) -> None:
    (tmp_path / "sub").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    out = _run(tmp_path, "compile", str(escrow), "--emit", "obj", "-o", target)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("tenfold: error")]
    assert errors == [errors[0]] and f"{target}" in errors[0]
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".tenfold") == [
        n for n in before if n != ".tenfold"
    ]
    assert not list((tmp_path / "sub").iterdir())


def test_timings_on_a_cache_hit_are_the_cached_builds(tmp_path: Path, escrow: Path) -> None:
    # Regression: a cache hit printed 0.0 for every phase.
    first = json.loads(_run(tmp_path, "compile", str(escrow), "--timings", "--json").stdout)
    second = _run(tmp_path, "compile", str(escrow), "--timings", "--json")
    doc = json.loads(second.stdout)
    assert (first["cache"], doc["cache"]) == ("miss", "hit")
    phases = {k: v for k, v in doc["timings_ms"].items() if k != "cache_lookup"}
    assert phases == first["timings_ms"] and sum(phases.values()) > 0
    assert doc["timings_ms"]["cache_lookup"] >= 0
    text = _run(tmp_path, "compile", str(escrow), "--timings").stdout
    assert "cache hit: looked up in" in text and "those of the build it reused" in text


def test_a_failed_check_statement_is_not_called_check_check(tmp_path: Path, escrow: Path) -> None:
    out = _run(tmp_path, "contract", "run", str(escrow), "open")
    assert out.returncode == 0, out.stderr
    (tmp_path / "c.ct").write_text('contract C { fn f(x: u8) { check x < 3, "too big"; } }')
    out = _run(tmp_path, "contract", "run", "c.ct", "f", "9")
    assert out.returncode == 1
    assert "call reverted: check #1 failed: too big" in out.stdout
    assert "check check" not in out.stdout
