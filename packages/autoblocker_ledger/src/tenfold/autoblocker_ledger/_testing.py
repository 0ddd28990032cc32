"""Test data shared by the ledger's test modules (kept in the package: pytest's importlib
mode cannot import a conftest module)."""

from __future__ import annotations

from typing import Any

from tenfold.autoblocker_ledger._autoblock import Rule

#: Three well-formed events: two subjects, three domains, one without evidence.
EVENTS: list[dict[str, Any]] = [
    {
        "event_id": "a1",
        "domain": "auth",
        "kind": "ssh_failed_login",
        "subject": "203.0.113.7",
        "time_ms": 1,
        "evidence": {"user": "root"},
    },
    {
        "event_id": "a2",
        "domain": "network",
        "kind": "port_scan",
        "subject": "198.51.100.4",
        "time_ms": 2,
        "evidence": {"ports": 120},
    },
    {
        "event_id": "a3",
        "domain": "cloud",
        "kind": "xdp_drop_spike",
        "subject": "203.0.113.7",
        "time_ms": 3,
    },
]

#: fail2ban's sshd jail: three failed logins from one address within 60 s ban it for 600 s.
SSHD = Rule(
    name="sshd",
    domain="auth",
    kind="ssh_failed_login",
    pattern=r"Failed password for \S+ from (?P<subject>[0-9.]+)",
    max_retry=3,
    find_time_s=60,
    ban_time_s=600,
)
