from __future__ import annotations

import json


def test_version_and_help(cli) -> None:
    assert cli("--version").stdout.startswith("tenfold, version")
    result = cli("--help")
    assert result.returncode == 0
    for command in ("bench", "profile", "plugins", "services"):
        assert command in result.stdout


def test_unknown_command_is_usage_error(cli) -> None:
    result = cli("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_bench_unknown_system_exits_2(cli) -> None:
    result = cli("bench", "-p", "no_such_system", "--smoke")
    assert result.returncode == 2
    assert "unknown system(s): no_such_system" in result.stderr


def test_plugins_list_shows_every_system(cli) -> None:
    result = cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("core", "chaos_engine", "contract_compiler", "autoblocker_ledger", "cloud_kernel"):
        assert rows[name]["state"] == "loaded", rows[name]


def test_profile_writes_flame_graphs(cli, tmp_path) -> None:
    result = cli("profile", "core/crypto_blake3_4k", "--smoke", "--out", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr
    svg = tmp_path / "core-crypto_blake3_4k.svg"
    html = tmp_path / "core-crypto_blake3_4k.memray.html"
    assert svg.read_text().lstrip().startswith("<?xml") and "blake3" in svg.read_text()
    assert html.stat().st_size > 1000
    missing = cli("profile", "core/no_such_scenario")
    assert missing.returncode == 2 and "no scenario named 'no_such_scenario'" in missing.stderr


# What ``--help`` loads, checked instead of how long it takes (speed is the bench's and
# `tenfold --help` is timed by hand in the issue notes): a fresh interpreter prints the
# top-level packages outside the standard library that the command imported.
_IMPORTED = """
import contextlib, io, sys
from tenfold.core.cli import main
sys.argv = ["tenfold", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main()
tops = {m.split(".")[0] for m in sys.modules}
print(" ".join(sorted(t for t in tops if t not in sys.stdlib_module_names and t[0] != "_")))
"""


def _third_party_after(*args: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _IMPORTED, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(out.stdout.split())


def test_help_loads_no_system_engine_or_library(cli) -> None:
    """``tenfold --help`` and ``tenfold SYSTEM --help`` import click and tenfold, nothing else.

    A system's engine (numpy, duckdb, LightGBM, z3, ...) loads only when one of its
    commands runs; this is what keeps ``--help`` near interpreter start-up time.
    """
    listing = cli("--help").stdout.split("Commands:")[1]
    # a command's line starts at column 2; its wrapped description further right
    commands = [line.split()[0] for line in listing.splitlines() if line[2:3].strip()]
    assert {"bench", "ledger", "learn", "platform"} <= set(commands), commands
    for args in [(), *[(name,) for name in commands]]:
        assert _third_party_after(*args, "--help") == {"click", "tenfold"}, args
