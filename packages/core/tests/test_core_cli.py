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
