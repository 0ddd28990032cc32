"""Test inputs the platform's tests share (not part of the public API)."""

from __future__ import annotations

from pathlib import Path


def sshd_failures(path: Path, ip: str, n: int = 6) -> Path:
    """Write ``n`` sshd "Failed password" lines from ``ip`` to ``path``: one brute-force burst."""
    path.write_text(
        "".join(
            f"Dec  6 01:00:0{i} web sshd[{i}]: Failed password for root from {ip} port 4{i} ssh2\n"
            for i in range(n)
        )
    )
    return path
