"""The CLI end to end, as a user and a third-party verifier run it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tenfold.core.testing import run_cli


@pytest.mark.slow
def test_the_real_entry_point_maps_bad_input_to_one_line_exit_2(
    cli: Callable[..., Any], events: list[dict[str, Any]], tmp_path: Path
) -> None:
    proc = run_cli("ledger", "verify", "--public-key", "ab" * 32, input="{}")
    assert proc.returncode == 2 and proc.stderr.startswith("tenfold: error: a proof bundle")
    assert "Traceback" not in proc.stderr


def test_append_proof_verify_as_a_third_party(
    cli: Callable[..., Any], events: list[dict[str, Any]], tmp_path: Path
) -> None:
    store = str(tmp_path / "st")
    lines = "\n".join(json.dumps(e) for e in events)
    r = cli("ledger", "append", "--store", store, "--json", stdin=lines)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["appended"] == 3
    again = json.loads(cli("ledger", "append", "--store", store, "--json", stdin=lines).stdout)
    assert again["duplicates"] == 3
    (tmp_path / "old.json").write_text((tmp_path / "st" / "head.json").read_text())
    cli("ledger", "append", "--store", store, stdin=json.dumps({**events[0], "event_id": "a4"}))
    got = json.loads(
        cli("ledger", "range", "--store", store, "--subject", "203.0.113.7", "--json").stdout
    )
    assert [g["event_id"] for g in got] == ["a1", "a3", "a4"]

    inc, con = tmp_path / "inc.json", tmp_path / "con.json"
    assert (
        cli("ledger", "proof", "--store", store, "--index", "1", "--out", str(inc)).returncode == 0
    )
    assert (
        cli(
            "ledger",
            "proof",
            "--store",
            store,
            "--from-sth",
            str(tmp_path / "old.json"),
            "--out",
            str(con),
        ).returncode
        == 0
    )
    pub = str(tmp_path / "st" / "log.pub")
    ok = cli("ledger", "verify", str(inc), "--public-key", pub, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["event"]["subject"] == "198.51.100.4"
    assert cli("ledger", "verify", str(con), "--public-key", pub).returncode == 0

    # A tampered entry: the proof no longer reaches the signed root.
    bundle = json.loads(inc.read_text())
    data = base64.b64decode(bundle["entry"]).replace(b"198.51.100.4", b"198.51.100.5")
    bundle["entry"] = base64.b64encode(data).decode()
    inc.write_text(json.dumps(bundle))
    bad = cli("ledger", "verify", str(inc), "--public-key", pub)
    assert bad.returncode == 1 and bad.stderr.startswith("tenfold: error: inclusion proof")
    # A tree head signed by an unknown key.
    other = cli("ledger", "verify", str(con), "--public-key", "ab" * 32)
    assert other.returncode == 1 and "not signed" in other.stderr


def test_bad_input_is_one_line_exit_2(
    cli: Callable[..., Any], events: list[dict[str, Any]], tmp_path: Path
) -> None:
    store = str(tmp_path / "st")
    r = cli("ledger", "append", "--store", store, stdin='{"event_id": "x"')
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not valid JSON" in r.stderr
    r = cli("ledger", "append", "--store", store, stdin=json.dumps({**events[0], "time_ms": -1}))
    assert r.returncode == 2 and "time_ms" in r.stderr
    assert cli("ledger", "append", "--store", store, stdin=json.dumps(events[0])).returncode == 0
    r = cli("ledger", "get", "--store", store, "5")
    assert r.returncode == 2 and "outside" in r.stderr
    r = cli("ledger", "verify", "--public-key", "zz", stdin="{}")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_snapshot_recover_and_autoblock_run(
    cli: Callable[..., Any], events: list[dict[str, Any]], tmp_path: Path
) -> None:
    store = str(tmp_path / "st")
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "sshd"\ndomain = "auth"\nkind = "ssh_failed_login"\n'
        "pattern = 'Failed password for \\S+ from (?P<subject>[0-9.]+)'\nmax_retry = 3\n"
    )
    log = "\n".join(
        f"sshd[1]: Failed password for root from 203.0.113.{7 + k // 3} port 22" for k in range(4)
    )
    r = cli("autoblock", "run", str(rules), "--store", store, "--json", stdin=log)
    assert r.returncode == 0, r.stderr
    decisions = json.loads(r.stdout)
    assert [(d["action"], d["value"]) for d in decisions] == [("ban", "203.0.113.7")]
    snap = tmp_path / "snap.bin"
    assert cli("ledger", "snapshot", "--store", store, str(snap)).returncode == 0
    rec = cli(
        "ledger",
        "recover",
        "--store",
        str(tmp_path / "r"),
        str(snap),
        "--public-key",
        str(tmp_path / "st" / "log.pub"),
        "--json",
    )
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout)["size"] == 5  # four detections and one decision


def test_config_section_is_validated(
    cli: Callable[..., Any],
    events: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tenfold.autoblocker_ledger._config import load_config
    from tenfold.core.errors import ConfigError

    cfg = tmp_path / "tenfold.toml"
    cfg.write_text(
        f'[autoblocker_ledger]\nstore = "{tmp_path / "from-config"}"\npipeline_depth = 3\n'
    )
    monkeypatch.setenv("TENFOLD_CONFIG", str(cfg))
    assert load_config().pipeline_depth == 3
    r = cli("ledger", "append", stdin=json.dumps(events[0]))
    assert r.returncode == 0 and (tmp_path / "from-config" / "segments").is_dir()
    cfg.write_text("[autoblocker_ledger]\nstrore = 1\n")
    with pytest.raises(ConfigError, match="strore"):
        load_config()
