"""The Chaos Toolkit side of the nodes rows: a python action that reports to the bench and waits.

Chaos Toolkit runs it in its own process, inside the node, between its fault
actions: it tells the bench process what the experiment just did (``ready``,
``seen``, ``cleared``) and blocks until the bench has observed the effect
from outside, exactly as the bench waits after each of our controller's calls.
Only the standard library, so Chaos Toolkit's start-up is its own.
"""

from __future__ import annotations

import socket


def handshake(host: str, port: int, what: str) -> str:
    """Send ``what`` to the bench at ``host:port``; return its answer once it gives one."""
    with socket.create_connection((host, port), timeout=300) as sock:
        sock.sendall(what.encode() + b"\n")
        answer = sock.makefile("rb").readline().decode().strip()
    if answer != "ok":
        raise RuntimeError(f"bench answered {answer!r} to {what!r}")
    return answer
