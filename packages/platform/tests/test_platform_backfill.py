"""Backfill: a window of ledger events re-scored as a graph equals scoring it serially."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tenfold.autoblocker_ledger import Decision, EmbeddedLedger, SecurityEvent
from tenfold.platform import PlatformError
from tenfold.platform._backfill import (
    backfill,
    export_parquet,
    load_window,
    partition,
    score_events,
)
from tenfold.platform._detect import train_detector


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "detector.json"
    train_detector(out, n_sources=600, budget_s=2.0)
    return out


def _history(ledger: Path) -> None:
    """Two brute-forcers, a port scanner, benign users; one learned ban recorded (for .9)."""
    events = []
    t = 1_700_000_000_000
    for n in range(12):
        for ip in ("203.0.113.7", "203.0.113.9"):
            line = f"Failed password for root from {ip} port 22 ssh2"
            events.append(
                SecurityEvent(f"b{n}-{ip}", "auth", "ssh_failed_login", ip, t, {"line": line})
            )
        events.append(
            SecurityEvent(
                f"s{n}", "network", "port_scan", "198.51.100.3", t, {"dport": str(1000 + n)}
            )
        )
        if n % 4 == 0:
            ip = f"192.0.2.{n + 1}"
            events.append(SecurityEvent(f"u{n}", "auth", "ssh_failed_login", ip, t, {"line": "x"}))
        t += 700
    ban = Decision(
        action="ban",
        scope="ip",
        value="203.0.113.9",
        duration_s=600,
        origin="auth",
        reason="learned detector",
        rule="learned",
        time_ms=t,
    )
    with EmbeddedLedger(ledger) as led:
        led.append_batch(events)
        led.append_batch([ban.to_event(1)])


def test_backfill_as_a_graph_equals_the_serial_pass(tmp_path: Path, model_file: Path) -> None:
    _history(tmp_path / "ledger")
    rows = load_window(ledger=tmp_path / "ledger", start=2)
    assert rows[0][0] == 2 and rows[-1][3] == "decision.ban"
    serial = score_events(str(model_file), rows)
    assert len(serial) == len(rows) - 1  # every event but the recorded decision
    # Partitions keep each source whole and in ledger order.
    parts = partition(rows, 3)
    owner: dict[str, int] = {}
    for n, part in enumerate(parts):
        assert [r[0] for r in part] == sorted(r[0] for r in part)
        assert all(owner.setdefault(r[4], n) == n for r in part)
    assert sorted(r for p in parts for r in p) == sorted(rows)

    out = tmp_path / "rescored.parquet"
    summary = backfill(model_file, rows, partitions=3, backend="threads", workers=2, out=out)
    table = pq.read_table(out).to_pylist()
    assert [tuple(r.values()) for r in table] == serial  # the graph's rows are the serial rows
    would = {w["subject"] for w in summary["would_ban"]}
    assert {"203.0.113.7", "203.0.113.9"} <= would and not any(
        s.startswith("192.0.2.") for s in would
    )
    assert summary["recorded_learned_bans"] == ["203.0.113.9"]
    assert "203.0.113.7" in summary["differ"]["added"] and summary["differ"]["dropped"] == []
    assert summary["scored"] == len(serial) and summary["events"] == len(rows)

    # The same window from a Parquet export gives the same summary.
    export = tmp_path / "export.parquet"
    export_parquet(rows, export)
    again = backfill(model_file, load_window(parquet=export), partitions=2, backend="inline")
    assert again["would_ban"] == summary["would_ban"] and again["differ"] == summary["differ"]


def test_backfill_refuses_bad_windows_and_sources(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="one source"):
        load_window()
    with pytest.raises(PlatformError, match="not a range"):
        load_window(ledger=tmp_path, start=5, end=2)
    with pytest.raises(PlatformError, match="no ledger here"):
        load_window(ledger=tmp_path)


def test_backfill_cli_reads_the_platform_ledger(tmp_path: Path, model_file: Path) -> None:
    home = tmp_path / "home"
    _history(home / "ledger")
    r = subprocess.run(
        [sys.executable, "-m", "tenfold.core", "platform", "backfill", "--home", str(home),
         "--model", str(model_file), "--partitions", "2", "--backend", "inline", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["window"] == {"start": 0, "end": doc["events"]} and doc["partitions"] == 2
    assert "203.0.113.7" in doc["differ"]["added"]
