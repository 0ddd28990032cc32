"""An abuse suite for any server on :mod:`tenfold.core.server`, written once for all of them.

Each system's tests describe their server as an :class:`AbuseTarget` (a normal
request, an endpoint that parses a body, a write whose acknowledgement must
survive, the credentials of a client with and without the needed role) and run
every attack in :data:`ATTACKS` against it::

    @pytest.mark.parametrize("attack", ATTACKS)
    def test_abuse(attack, target):
        run_attack(attack, target)

After every attack the server must answer a normal request (within
``AFTER_ATTACK_S``; the bench reports the actual figure) and everything it
acknowledged before the attack must still be there. Everything runs on
loopback and is bounded in time by the server's own (short) timeouts.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from tenfold.core.errors import ServerError
from tenfold.core.server import Server, ServerOptions
from tenfold.core.tls import TlsFiles

__all__ = [
    "AFTER_ATTACK_S",
    "ATTACKS",
    "AbuseTarget",
    "abuse_options",
    "after_attack_subject",
    "run_attack",
]

AFTER_ATTACK_S = 1.0
"""How soon after an attack a normal request must be answered (generous; the bench
reports the real latency, which the issue wants under 100 ms)."""


def abuse_options(**changes: Any) -> ServerOptions:
    """Short timeouts and small limits, so every attack ends in about a second."""
    base = ServerOptions(
        read_timeout_s=0.75,
        write_timeout_s=1.0,
        keepalive_s=5.0,  # longer than any attack: the legitimate client keeps its connection
        max_body_bytes=64 * 1024,
        max_header_bytes=8 * 1024,
        max_url_bytes=4 * 1024,
        max_connections=400,
        rate_per_s=100.0,
        rate_burst=100.0,
        workers=4,
        graceful_s=1.0,
    )
    return replace(base, **changes)


@dataclass
class AbuseTarget:
    """A running server and how to talk to it as a legitimate client."""

    server: Server
    normal: tuple[str, str, bytes | None]
    """A request a legitimate client makes (method, path with query, body); must get 200."""
    body_path: str | None
    """A POST endpoint that parses its body (JSON or JSON lines); None if there is none
    (a read-only server: bodies are then sent to the normal path and must be refused)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Credentials of a client allowed to make ``normal`` and post to ``body_path``."""
    wrong_role: tuple[dict[str, str], str, str] | None = None
    """Credentials of a client lacking the role for (method, path)."""
    write: Callable[[Any, int], Any] | None = None
    """Make acknowledged write number i with the client; returns what proves it later."""
    read_back: Callable[[Any, Any], bool] | None = None
    """True if the write ``write`` acknowledged is still there."""
    stable: bool = True
    """The normal request's answer must be the same before and after an attack."""
    client_tls: TlsFiles | None = None
    _writes: int = 0

    # -- plumbing -----------------------------------------------------------------------
    def client(self) -> Any:
        import httpx

        verify: Any = self.client_tls.client_context() if self.client_tls else True
        return httpx.Client(
            base_url=self.server.url, headers=self.headers, verify=verify, timeout=10
        )

    def raw(self) -> socket.socket:
        """A raw connection (TLS-wrapped, with the client's certificate, when mutual TLS is on)."""
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        if self.client_tls is not None:
            ctx = self.client_tls.client_context()
            return ctx.wrap_socket(sock, server_hostname="localhost")
        return sock

    @property
    def upload_path(self) -> str:
        return self.body_path or self.normal[1]

    def auth_lines(self) -> bytes:
        return b"".join(f"{k}: {v}\r\n".encode() for k, v in self.headers.items())

    def normal_request(self, c: Any) -> Any:
        method, path, body = self.normal
        return c.request(method, path, content=body)


def _read_response(sock: socket.socket, timeout_s: float = 5.0) -> tuple[int | None, bytes]:
    """Status and body of one response, or (None, b"") if the server just closed."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1."):
            return None, b""
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split(b" ", 2)[1]), body
    except (ConnectionResetError, ssl.SSLError, OSError):
        return None, b""


def _assert_json_error(status: int | None, body: bytes, allowed: set[int], what: str) -> None:
    assert status is None or status in allowed, f"{what}: got {status} {body[:200]!r}"
    if status is not None:
        doc = json.loads(body)
        assert isinstance(doc, dict) and "error" in doc, f"{what}: not a JSON error: {body[:200]!r}"


# -- the attacks -----------------------------------------------------------------------------


def _stall(t: AbuseTarget, heads: list[bytes], served: Callable[[], object]) -> None:
    """Open a connection per head, send it and stall; check others are served meanwhile."""
    before_threads = threading.active_count()
    socks = []
    for head in heads:
        s = t.raw()
        s.sendall(head)
        socks.append(s)
    time.sleep(0.05)
    served()  # the stalled clients do not stop a normal one
    opts = t.server.options
    # Bounded by the worker pool, not by the stalled clients (a thread-per-connection
    # server would show one more thread per stalled client here).
    grown = threading.active_count() - before_threads
    assert grown <= opts.workers + 8, (
        f"{grown} more threads with {len(socks)} stalled clients: "
        f"{sorted(th.name for th in threading.enumerate())}"
    )
    assert t.server.connections() <= opts.max_connections
    assert t.server.tasks() <= opts.max_connections
    # Every stalled client is cut off once the read timeout passes (or was refused at
    # once by its rate limit, when it holds credentials and sent its head whole).
    timed_out = 0
    for s in socks:
        status, body = _read_response(s, opts.read_timeout_s + 5)
        _assert_json_error(status, body, {408, 429}, "stalled client")
        timed_out += status == 408
        s.close()
    assert timed_out >= len(socks) // 2, f"only {timed_out} of {len(socks)} timed out"


def slowloris_heads(t: AbuseTarget, c: Any) -> None:
    """Many connections that send half a request head and stall."""
    head = f"POST {t.upload_path} HTTP/1.1\r\nHost: x\r\n".encode()
    _stall(t, [head] * 150, lambda: _check_normal(t, c))


def stalled_uploads(t: AbuseTarget, c: Any) -> None:
    """Many uploads that declare a body within the limit, send two bytes and stall."""
    size = t.server.options.max_body_bytes // 2
    head = (
        f"POST {t.upload_path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n".encode()
        + t.auth_lines()
        + b"\r\n{["
    )
    _stall(
        t, [head] * min(150, int(t.server.options.rate_burst * 0.8)), lambda: _check_normal(t, c)
    )


def oversized_bodies(t: AbuseTarget, c: Any) -> None:
    """A declared 1 TB body is refused at once; a chunked body past the limit is cut off."""
    s = t.raw()
    s.sendall(
        f"POST {t.upload_path} HTTP/1.1\r\nHost: x\r\nContent-Length: {10**12}\r\n".encode()
        + t.auth_lines()
        + b"\r\nab"
    )
    status, body = _read_response(s)
    _assert_json_error(status, body, {413}, "declared 1 TB")
    assert status == 413
    s.close()
    s = t.raw()
    s.sendall(
        f"POST {t.upload_path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n".encode()
        + t.auth_lines()
        + b"\r\n"
    )
    chunk = b"x" * 16384
    try:
        for _ in range(t.server.options.max_body_bytes // len(chunk) + 4):
            s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    except OSError:
        pass  # the server may close while we still send: that is a refusal too
    status, body = _read_response(s)
    _assert_json_error(status, body, {413}, "chunked past the limit")
    s.close()


def lying_content_length(t: AbuseTarget, c: Any) -> None:
    """Content-Length shorter than the body, and not a number at all."""
    s = t.raw()
    s.sendall(
        f"POST {t.upload_path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n".encode()
        + t.auth_lines()
        + b"\r\n"
        + b"[1,2,3,4,5,6,7,8,9]" * 10
    )
    status, body = _read_response(s)
    assert status is not None and status < 500, (status, body[:200])
    s.close()
    for value in (b"abc", b"-5", b"99999999999999999999999"):
        s = t.raw()
        s.sendall(
            f"POST {t.upload_path} HTTP/1.1\r\nHost: x\r\n".encode()
            + t.auth_lines()
            + b"Content-Length: "
            + value
            + b"\r\n\r\n[]"
        )
        status, body = _read_response(s)
        _assert_json_error(status, body, {400, 413}, f"Content-Length {value!r}")
        s.close()


def malformed_http(t: AbuseTarget, c: Any) -> None:
    """Garbage, broken request lines and headers, an oversized header block."""
    payloads = [
        b"\x00\xff\xfe" * 200 + b"\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for payload in payloads:
        s = t.raw()
        with contextlib.suppress(OSError):
            s.sendall(payload)
        status, body = _read_response(s)
        _assert_json_error(
            status, body, {400, 401, 403, 404, 413, 414, 431}, f"malformed {payload[:30]!r}"
        )
        s.close()


def bad_bodies(t: AbuseTarget, c: Any) -> None:
    """Invalid UTF-8, deeply nested JSON, and non-JSON in a parsed body."""
    limit = t.server.options.max_body_bytes
    bodies = [
        b"\xff\xfe\xfd",
        b'{"a": "\xc3\x28"}',
        b"[" * (limit - 16),
        b'{"a":' * ((limit - 16) // 5),
        b"not json at all",
        b"\x00" * 100,
    ]
    allowed = (400, 413) if t.body_path else (400, 405, 413)
    for body in bodies:
        r = c.post(t.upload_path, content=body)
        assert r.status_code in allowed, (r.status_code, r.text[:200])
        assert "error" in r.json()


def path_tricks(t: AbuseTarget, c: Any) -> None:
    """Dot segments, encoded slashes and dots, NUL, a very long URL: never 200, never 5xx."""
    paths = [
        b"/../../etc/passwd",
        b"/%2e%2e/%2e%2e/etc/passwd",
        b"/a%2Fb",
        b"/..%2f..%2fetc%2fpasswd",
        b"/x/%00",
        b"/a\\..\\b",
        b"/" + b"a" * 20_000,
        b"/?" + b"q=" + b"a" * 20_000,
    ]
    for path in paths:
        s = t.raw()
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + t.auth_lines() + b"\r\n")
        status, body = _read_response(s)
        _assert_json_error(status, body, {400, 404, 414}, f"path {path[:40]!r}")
        s.close()


def unauthenticated(t: AbuseTarget, c: Any) -> None:
    """No credentials, a wrong key, a wrong role; or, on an open server, a refusal to bind wide."""
    opts = t.server.options
    if not opts.authenticated:
        try:
            Server(t.server.app, replace(opts, host="0.0.0.0", port=0))
        except ServerError as exc:
            assert "without credentials" in str(exc)
        else:  # pragma: no cover - the bug this guards against
            raise AssertionError("an open server started beyond loopback")
        return
    import httpx

    method, path, body = t.normal
    if opts.tls is None:
        with httpx.Client(base_url=t.server.url, timeout=10) as anon:
            r = anon.request(method, path, content=body)
            assert r.status_code == 401 and "error" in r.json(), r.text
            r = anon.request(method, path, content=body, headers={"X-Api-Key": "tfk_wrong"})
            assert r.status_code == 401, r.text
            r = anon.request(
                method, path, content=body, headers={"Authorization": "Basic dXNlcjpwYXNz"}
            )
            assert r.status_code == 401, r.text
    else:
        # Without a client certificate the TLS handshake itself fails.
        ctx = ssl.create_default_context(cafile=str(opts.tls.ca))
        with httpx.Client(base_url=t.server.url, verify=ctx, timeout=10) as anon:
            try:
                r = anon.request(method, path, content=body)
            except httpx.HTTPError:
                pass
            else:
                assert r.status_code in (401, 403), r.text
    if t.wrong_role is not None:
        headers, wmethod, wpath = t.wrong_role
        r = c.request(wmethod, wpath, headers=headers, content=b"")
        assert r.status_code == 403 and "role" in r.json()["error"], r.text


def burst(t: AbuseTarget, c: Any) -> None:
    """Ten times the sustainable rate for about a second: 429s, no 5xx, still up."""
    opts = t.server.options
    n = int(10 * opts.rate_per_s)
    method, path, body = t.normal
    codes: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        with t.client() as wc:
            for _ in range(k):
                r = wc.request(method, path, content=body)
                if r.status_code != 200:
                    assert "error" in r.json()
                with lock:
                    codes.append(r.status_code)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, [n // 8] * 8))
    assert 429 in codes, sorted(set(codes))
    assert all(code in (200, 429) for code in codes), sorted(set(codes))
    r = t.normal_request(c)
    retry = r.headers.get("retry-after")
    assert r.status_code in (200, 429) and (r.status_code == 200 or retry), r.text
    # Let the bucket refill, so the next attack meets the limits it is about, not this one.
    time.sleep(opts.rate_burst / opts.rate_per_s)


ATTACKS: dict[str, Callable[[AbuseTarget, Any], None]] = {
    "slowloris_heads": slowloris_heads,
    "stalled_uploads": stalled_uploads,
    "oversized_bodies": oversized_bodies,
    "lying_content_length": lying_content_length,
    "malformed_http": malformed_http,
    "bad_bodies": bad_bodies,
    "path_tricks": path_tricks,
    "unauthenticated": unauthenticated,
    "burst": burst,
}


def _check_normal(t: AbuseTarget, c: Any) -> tuple[float, Any]:
    """A normal request is answered with 200 within AFTER_ATTACK_S (waiting out a 429)."""
    start = time.monotonic()
    while True:
        r = t.normal_request(c)
        elapsed = time.monotonic() - start
        if r.status_code == 429 and elapsed < AFTER_ATTACK_S:
            time.sleep(0.02)  # our own bucket, emptied by the burst, refills in ms
            continue
        assert r.status_code == 200, f"normal request after attack: {r.status_code} {r.text[:200]}"
        assert elapsed < AFTER_ATTACK_S, f"normal request took {elapsed:.3f} s"
        return elapsed, r.content


def run_attack(name: str, t: AbuseTarget) -> float:
    """Run attack ``name`` on ``t``; returns how long the next normal request took (s)."""
    attack = ATTACKS[name]
    with t.client() as c:
        acked = []
        if t.write is not None:
            for _ in range(3):
                t._writes += 1
                acked.append(t.write(c, t._writes))
        _, before = _check_normal(t, c)
        attack(t, c)
        elapsed, after = _check_normal(t, c)
        if t.stable:
            assert before == after, "the normal answer changed across the attack"
        if t.read_back is not None:
            # Our own bucket may be empty after a burst: wait for the tokens the reads need.
            time.sleep((len(acked) + 1) / t.server.options.rate_per_s)
            for proof in acked:
                assert t.read_back(c, proof), f"acknowledged write {proof!r} lost"
    return elapsed


def after_attack_subject(make: Callable[[Any], AbuseTarget]) -> Callable[[Any], Any]:
    """A bench subject: every attack in turn; latency = the first normal request after each.

    The suite asserts a generous bound (``AFTER_ATTACK_S``) so tests never flake on a
    busy machine; this reports the real figure per attack against the 100 ms target.
    """
    from tenfold.core.bench import Outcome

    def prepare(ctx: Any) -> Callable[[], Outcome]:
        target = make(ctx)

        def op() -> Outcome:
            after = {name: 1000 * run_attack(name, target) for name in sorted(ATTACKS)}
            worst = max(after, key=lambda k: after[k])
            return Outcome(
                len(after),
                {
                    "worst_after_attack_ms": round(after[worst], 2),
                    "worst_attack": worst,
                    "under_100ms": "yes" if after[worst] < 100 else "no",
                    **{f"{k}_ms": round(v, 2) for k, v in after.items()},
                },
                latencies_ms=list(after.values()),
            )

        return op

    return prepare
