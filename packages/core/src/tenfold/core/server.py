"""One HTTP server stack for every tenfold endpoint: an ASGI app on uvicorn (h11), guarded.

Every server the systems run (the ledger's append/proof/decision API, the learner's
predictions, the lattice's queries, the pipeline's metrics, the attestation API)
goes through :class:`Server`, which puts these in front of the application:

* **Limits.** Request headers are capped (``max_header_bytes``, enforced by h11
  while it parses), the URL (``max_url_bytes``: 414), the body (``max_body_bytes``:
  413, checked on the declared ``Content-Length`` before a byte of the body is
  read and again on what arrives), and at most ``max_connections`` connections
  are open at once (beyond it a new connection gets a 503 and is closed).
* **Timeouts (slowloris).** A connection must deliver a complete request head
  within ``read_timeout_s`` of connecting or of its previous response, and the
  whole body within ``read_timeout_s`` of the head (408, then closed). A client
  that stops reading its response for ``write_timeout_s`` is dropped. The server
  is one asyncio loop: a stalled client costs a socket and a few KiB, never a
  thread; handlers run on a fixed pool of ``workers`` threads.
* **Authentication.** Mutual TLS (the client's certificate common name is its
  identity) or per-client API keys (``Authorization: Bearer KEY`` or
  ``X-Api-Key: KEY``), stored as SHA-256 digests in a credentials file. Binding
  beyond loopback without either is refused at start with the reason; loopback
  without credentials serves everyone as the local admin (one machine, one user).
* **Authorization.** Each route names the role it needs: ``reader`` (proofs,
  entries, queries, predictions, metrics), ``writer`` (appends), ``bouncer``
  (the decision stream), ``admin`` (snapshots; admin may do everything).
* **Rate limits.** One token bucket per client (:class:`tenfold.core.governor.RateLimiter`);
  an empty bucket gets 429 with ``Retry-After``.
* **JSON errors.** Every refusal is ``{"error": ..., "status": ...}`` with the
  status (400, 401, 403, 404, 405, 408, 413, 414, 429, 503), logged with the
  client's address and identity, and passed to ``on_refusal`` hooks (the ledger
  records repeated refusals from one client as a security event).
* **Graceful shutdown.** ``stop()`` (or SIGINT/SIGTERM in the foreground) stops
  accepting, lets requests in flight finish for ``graceful_s`` and closes.

Applications are plain ASGI. :class:`Router` is the small JSON router the systems
use (sync handlers on the worker pool, typed path parameters, per-route roles);
any other ASGI app can be served as well, with one role for all its routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from tenfold.core._server_limits import MAX_BODY_BYTES, RATE_PER_S
from tenfold.core.errors import ServerError, TenfoldError
from tenfold.core.files import replace_file
from tenfold.core.tls import TlsFiles, make_tls_bundle, peer_common_name

if TYPE_CHECKING:
    from tenfold.core.governor import RateLimiter

__all__ = [
    "ROLES",
    "Client",
    "Credentials",
    "HttpError",
    "Refusal",
    "Reply",
    "Request",
    "Route",
    "Router",
    "Server",
    "ServerOptions",
    "TlsFiles",
    "is_loopback",
    "make_tls_bundle",
]

logger = logging.getLogger("tenfold.server")

ROLES = ("reader", "writer", "bouncer", "admin")
"""The roles a client can hold; ``admin`` may do everything the others may."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- identities and credentials ------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """Who sent a request: a name (API key owner, certificate CN, or ``local``) and roles."""

    name: str
    roles: frozenset[str]

    def may(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


LOCAL = Client("local", frozenset({"admin"}))

_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Credentials:
    """Clients and their roles, from a JSON file; API keys are kept only as SHA-256 digests.

    The file is ``{"clients": [{"name": ..., "roles": [...], "key_sha256": ...}]}``.
    A key is 32 random bytes (URL-safe base64), so a plain digest is enough: there is
    nothing to guess that a slow hash would protect. A client with a certificate from
    the deployment's CA is looked up by its certificate's common name, with or
    without a key.
    """

    def __init__(self, clients: Iterable[tuple[Client, str | None]] = ()) -> None:
        self._by_name: dict[str, tuple[Client, str | None]] = {}
        self._by_digest: dict[str, Client] = {}
        for client, digest in clients:
            self._add(client, digest)

    def _add(self, client: Client, digest: str | None) -> None:
        self._by_name[client.name] = (client, digest)
        if digest is not None:
            self._by_digest[digest] = client

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read a credentials file; :class:`ServerError` naming the file if it is bad."""
        try:
            doc = json.loads(Path(path).read_bytes())
        except FileNotFoundError:
            raise ServerError(f"credentials file {path} does not exist") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise ServerError(f"credentials file {path} is not readable JSON: {exc}") from None
        clients = doc.get("clients") if isinstance(doc, dict) else None
        if not isinstance(clients, list):
            raise ServerError(f"credentials file {path} has no 'clients' list")
        out = cls()
        for i, entry in enumerate(clients):
            where = f"credentials file {path}, client #{i + 1}"
            if not isinstance(entry, dict):
                raise ServerError(f"{where} is not an object")
            name, roles, digest = entry.get("name"), entry.get("roles"), entry.get("key_sha256")
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise ServerError(f"{where}: name must be 1-100 of A-Z a-z 0-9 _ . @ -")
            if not isinstance(roles, list) or not roles or not set(roles) <= set(ROLES):
                raise ServerError(f"{where} ({name}): roles must be a non-empty subset of {ROLES}")
            if digest is not None and (
                not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest)
            ):
                raise ServerError(f"{where} ({name}): key_sha256 must be 64 hex digits")
            out._add(Client(name, frozenset(roles)), digest)
        return out

    def save(self, path: Path) -> None:
        """Write the file atomically, readable only by its owner."""
        doc = {
            "clients": [
                {"name": c.name, "roles": sorted(c.roles), "key_sha256": d}
                for c, d in sorted(self._by_name.values(), key=lambda cd: cd[0].name)
            ]
        }
        path = Path(path)
        try:
            replace_file(path, json.dumps(doc, indent=2) + "\n", mode=0o600)
        except OSError as exc:
            raise ServerError(f"cannot write credentials file {path}: {exc.strerror}") from None

    def issue(self, name: str, roles: Iterable[str]) -> str:
        """Add (or replace) ``name`` with ``roles`` and a new API key; returns the key."""
        roles = frozenset(roles)
        if not _NAME_RE.match(name):
            raise ServerError(f"client name {name!r} must be 1-100 of A-Z a-z 0-9 _ . @ -")
        if not roles or not roles <= set(ROLES):
            raise ServerError(f"roles {sorted(roles)} must be a non-empty subset of {ROLES}")
        old = self._by_name.get(name)
        if old is not None and old[1] is not None:
            self._by_digest.pop(old[1], None)
        key = "tfk_" + secrets.token_urlsafe(32)
        self._add(Client(name, roles), _digest(key))
        return key

    def revoke(self, name: str) -> None:
        """Remove ``name``; :class:`ServerError` if there is no such client."""
        old = self._by_name.pop(name, None)
        if old is None:
            raise ServerError(f"no client named {name!r}")
        if old[1] is not None:
            self._by_digest.pop(old[1], None)

    def clients(self) -> list[Client]:
        return sorted((c for c, _ in self._by_name.values()), key=lambda c: c.name)

    def by_key(self, key: str) -> Client | None:
        digest = _digest(key)
        client = self._by_digest.get(digest)
        # The dict lookup already picked the entry by a digest of a secret; compare again
        # in constant time so the match itself leaks nothing.
        if client is not None and hmac.compare_digest(self._by_name[client.name][1] or "", digest):
            return client
        return None

    def by_name(self, name: str) -> Client | None:
        entry = self._by_name.get(name)
        return entry[0] if entry else None


# -- options ----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerOptions:
    """Where to listen, how clients prove who they are, and every limit (see the module doc)."""

    host: str = "127.0.0.1"
    port: int = 0
    tls: TlsFiles | None = None
    credentials: Credentials | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    max_header_bytes: int = 16 * 1024
    max_url_bytes: int = 8 * 1024
    read_timeout_s: float = 10.0
    write_timeout_s: float = 10.0
    keepalive_s: float = 5.0
    max_connections: int = 1024
    rate_per_s: float = RATE_PER_S
    rate_burst: float = 2000.0
    workers: int = 8
    graceful_s: float = 5.0

    def check(self) -> None:
        """Refuse options that cannot work, with the reason (:class:`ServerError`)."""
        if not 0 <= self.port <= 65535:
            raise ServerError(f"port {self.port} is out of range 0-65535")
        for name in ("max_body_bytes", "max_header_bytes", "max_url_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise ServerError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("read_timeout_s", "write_timeout_s", "keepalive_s", "rate_per_s"):
            value = getattr(self, name)
            if not (0 < value < float("inf")):
                raise ServerError(f"{name} must be a positive number, got {value}")
        if not 1 <= self.rate_burst < float("inf"):
            raise ServerError(f"rate_burst must be at least 1, got {self.rate_burst}")
        if not 1 <= self.workers <= 256:
            raise ServerError(f"workers must be 1-256, got {self.workers}")
        if self.graceful_s < 0:
            raise ServerError(f"graceful_s must not be negative, got {self.graceful_s}")
        if not is_loopback(self.host) and self.tls is None and self.credentials is None:
            raise ServerError(
                f"refusing to serve on {self.host}:{self.port} without credentials: anyone "
                "who reaches the port could use it; pass TLS files (mutual TLS) or an API "
                "key file, or bind 127.0.0.1"
            )

    @property
    def authenticated(self) -> bool:
        return self.tls is not None or self.credentials is not None


# -- refusals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A request the server refused: who (address and identity), what, and why."""

    client_host: str
    identity: str
    status: int
    reason: str
    method: str
    path: str


class HttpError(TenfoldError):
    """Raised by a handler to answer with ``status`` and a JSON error."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, default=str, separators=(",", ":")).encode()


async def _send_json(
    send: Send,
    status: int,
    obj: Any,
    headers: Mapping[str, str] | None = None,
    *,
    close: bool = False,
) -> None:
    body = _json_bytes(obj)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _raw_json_response(status: int, phrase: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with a JSON error, for refusals outside any request cycle."""
    body = _json_bytes({"error": message, "status": status})
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


# -- requests and the router ------------------------------------------------------------------


@dataclass
class Request:
    """What a handler sees: the method, path, path parameters, query, body and client."""

    method: str
    path: str
    params: dict[str, Any]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    client: Client
    client_host: str

    def text(self) -> str:
        """The body as UTF-8 (400 if it is not)."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HttpError(400, f"request body is not valid UTF-8 (byte {exc.start})") from None

    def json(self) -> Any:
        """The body as JSON (400 if it is not UTF-8 JSON or nests too deeply)."""
        text = self.text()
        try:
            return json.loads(text)
        except RecursionError:
            raise HttpError(400, "request body JSON nests too deeply") from None
        except ValueError as exc:
            raise HttpError(400, f"request body is not JSON: {exc}") from None

    def query_int(self, name: str, default: int | None = None, *, minimum: int = 0) -> int:
        """An integer query parameter (400 if missing without default, not a number, or < min)."""
        raw = self.query.get(name)
        if raw is None:
            if default is None:
                raise HttpError(400, f"query parameter {name!r} is required")
            return default
        if not re.fullmatch(r"-?[0-9]{1,19}", raw):
            raise HttpError(400, f"query parameter {name!r} must be an integer, got {raw[:40]!r}")
        value = int(raw)
        if value < minimum:
            raise HttpError(400, f"query parameter {name!r} must be >= {minimum}, got {value}")
        return value


@dataclass(frozen=True)
class Reply:
    """A non-JSON response (or JSON with a status other than 200)."""

    body: bytes | Any
    status: int = 200
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Any]

_PARAM_RE = re.compile(r"\{([a-z_]+)(?::(int|str))?\}")


@dataclass(frozen=True)
class Route:
    """``method`` and a path pattern (``/entries/{index:int}``), its handler and needed role."""

    method: str
    path: str
    handler: Handler
    role: str = "reader"

    def compiled(self) -> tuple[re.Pattern[str], dict[str, str]]:
        kinds: dict[str, str] = {}

        def part(m: re.Match[str]) -> str:
            kinds[m.group(1)] = m.group(2) or "str"
            return f"(?P<{m.group(1)}>{'[0-9]{1,19}' if m.group(2) == 'int' else '[^/]+'})"

        pattern = ""
        last = 0
        for m in _PARAM_RE.finditer(self.path):
            pattern += re.escape(self.path[last : m.start()]) + part(m)
            last = m.end()
        pattern += re.escape(self.path[last:])
        return re.compile(pattern), kinds


class Router:
    """A small JSON ASGI app: routes to sync handlers run on the server's worker pool.

    A handler returns a JSON-able value (200), a :class:`Reply`, or raises
    :class:`HttpError`; a :class:`TenfoldError` from the system becomes a 400 with
    its message. Anything else is a 500 with no detail to the client and a logged
    traceback.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = [(r, *r.compiled()) for r in routes]
        for r, _, _ in self.routes:
            if r.role not in ROLES:
                raise ServerError(f"route {r.method} {r.path}: role {r.role!r} is not in {ROLES}")
        self.executor: ThreadPoolExecutor | None = None

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, Any], bool]:
        """The route for (method, path), its parameters, and whether the path exists at all."""
        path_known = False
        for route, pattern, kinds in self.routes:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            path_known = True
            if route.method != method and not (route.method == "GET" and method == "HEAD"):
                continue
            params: dict[str, Any] = {
                k: int(v) if kinds[k] == "int" else v for k, v in m.groupdict().items()
            }
            return route, params, True
        return None, {}, path_known

    def role_for(self, method: str, path: str) -> str | None:
        route, _, _ = self.match(method, path)
        return route.role if route else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        route, params, known = self.match(method, path)
        if route is None:
            if known:
                await _send_json(send, 405, {"error": f"{method} not allowed on {path}"})
            else:
                await _send_json(send, 404, {"error": f"no such path {path[:200]}", "status": 404})
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        request = Request(
            method=method,
            path=path,
            params=params,
            query=query,
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
            client=scope.get("tenfold.client", LOCAL),
            client_host=(scope.get("client") or ("?", 0))[0],
        )
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor, _call, route.handler, request)
        except HttpError as exc:
            await _send_json(
                send, exc.status, {"error": str(exc), "status": exc.status}, exc.headers
            )
            return
        except TenfoldError as exc:
            await _send_json(send, 400, {"error": str(exc), "status": 400})
            return
        except Exception:
            logger.exception("handler for %s %s failed", method, path)
            await _send_json(send, 500, {"error": "internal error", "status": 500})
            return
        if isinstance(result, Reply):
            data = result.body if isinstance(result.body, bytes) else _json_bytes(result.body)
            headers = [
                (b"content-type", result.content_type.encode()),
                (b"content-length", str(len(data)).encode()),
            ] + [(k.lower().encode(), v.encode()) for k, v in result.headers.items()]
            await send({"type": "http.response.start", "status": result.status, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})
        else:
            await _send_json(send, 200, result)


def _call(handler: Handler, request: Request) -> Any:
    try:
        return handler(request)
    except RecursionError:
        raise HttpError(400, "input nests too deeply") from None


# -- the guard: authentication, authorization, rate limits, path and body limits -------------


_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


class _Refused(Exception):
    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


class _Guard:
    """The ASGI middleware every request passes before reaching the application."""

    def __init__(
        self,
        app: ASGIApp,
        options: ServerOptions,
        role: str,
        hooks: list[Callable[[Refusal], None]],
    ) -> None:
        self.app = app
        self.options = options
        self.default_role = role
        self.hooks = hooks
        from tenfold.core.governor import RateLimiter  # the governor loads the config models

        self.limiter: RateLimiter = RateLimiter(options.rate_per_s, options.rate_burst)
        self.refused = 0
        self._log_counts: dict[tuple[str, str], int] = {}
        self.executor: ThreadPoolExecutor | None = None

    def _role_for(self, method: str, path: str) -> str | None:
        role_for = getattr(self.app, "role_for", None)
        if callable(role_for):
            result = role_for(method, path)
            return None if result is None else str(result)
        return self.default_role

    def _identify(self, scope: Scope) -> Client:
        opts = self.options
        state = scope.get("state") or {}
        if opts.tls is not None:
            cn = state.get("tenfold.peer_cn")
            if cn is None:
                raise _Refused(401, "no client certificate")
            if opts.credentials is None:
                return Client(cn, frozenset({"admin"}))  # the CA vouches: every holder is trusted
            client = opts.credentials.by_name(cn)
            if client is None:
                raise _Refused(403, f"certificate {cn!r} is not in the credentials file")
            return client
        if opts.credentials is None:
            return LOCAL
        key = None
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                key = value[7:].decode("latin-1").strip()
            elif name == b"x-api-key":
                key = value.decode("latin-1").strip()
        if not key:
            raise _Refused(401, "missing API key (Authorization: Bearer KEY)")
        client = opts.credentials.by_key(key)
        if client is None:
            raise _Refused(401, "unknown API key")
        return client

    def _check_path(self, scope: Scope) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        if len(raw) + len(scope.get("query_string", b"")) > self.options.max_url_bytes:
            raise _Refused(414, f"URL longer than {self.options.max_url_bytes} bytes")
        lowered = raw.lower()
        if b"%2f" in lowered or b"%5c" in lowered or b"%00" in lowered or b"\\" in raw:
            raise _Refused(400, "encoded slash, backslash or NUL in the path")
        segments = scope["path"].split("/")
        if any(s in (".", "..") for s in segments) or "\x00" in scope["path"]:
            raise _Refused(400, "dot segments in the path")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.options.max_body_bytes
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or len(value) > 19:
                    raise _Refused(400, "Content-Length is not a number")
                declared = int(value)
        if declared is not None and declared > limit:
            raise _Refused(413, f"body of {declared} bytes is over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.options.read_timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except TimeoutError:
                raise _Refused(
                    408, f"body not received within {self.options.read_timeout_s:g} s"
                ) from None
            if message["type"] != "http.request":
                raise _Refused(400, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        client: Client | None = None
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            self._check_path(scope)
            try:
                client = self._identify(scope)
            except _Refused:
                # Failed authentication is rate-limited per address too, so guessing keys
                # or flooding with bad ones costs the client its own bucket, not our CPU.
                if self.limiter.take("unauthenticated:" + _host(scope)) > 0:
                    raise _Refused(429, "rate limit exceeded (failed authentication)") from None
                raise
            wait = self.limiter.take(client.name if self.options.authenticated else _host(scope))
            if wait > 0:
                raise _Refused(
                    429, "rate limit exceeded", {"retry-after": str(max(1, round(wait + 0.5)))}
                )
            role = self._role_for(scope["method"], scope["path"])
            if role is not None and not client.may(role):
                raise _Refused(403, f"{client.name} lacks the {role} role")
            body = await self._read_body(scope, receive)
        except _Refused as refused:
            self._refuse(scope, client, refused)
            # A refusal before the body was read leaves the body on the wire: close after it.
            await _send_json(
                send,
                refused.status,
                {"error": refused.reason, "status": refused.status},
                refused.headers,
                close=True,
            )
            return
        scope["tenfold.client"] = client
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, tracking_send)
        except Exception:
            logger.exception("application failed on %s %s", scope["method"], scope["path"])
            if not started:
                await _send_json(send, 500, {"error": "internal error", "status": 500})

    def _refuse(self, scope: Scope, client: Client | None, refused: _Refused) -> None:
        self.refused += 1
        refusal = Refusal(
            client_host=_host(scope),
            identity=client.name if client else "anonymous",
            status=refused.status,
            reason=refused.reason,
            method=scope.get("method", "?"),
            path=scope.get("path", "?")[:200],
        )
        # Log each client's first refusals, then every power of two, so a flood
        # cannot turn the log into the denial of service.
        who = (refusal.client_host, refusal.identity)
        n = self._log_counts.get(who, 0) + 1
        if len(self._log_counts) > 10_000:
            self._log_counts.clear()
        self._log_counts[who] = n
        if n <= 5 or n & (n - 1) == 0:
            logger.warning(
                "refused %d %s %s from %s (%s): %s%s",
                refusal.status,
                refusal.method,
                refusal.path,
                refusal.client_host,
                refusal.identity,
                refusal.reason,
                f" ({n} refusals from this client so far)" if n > 5 else "",
            )
        for hook in self.hooks:
            if self.executor is not None:
                self.executor.submit(_run_hook, hook, refusal)
            else:
                _run_hook(hook, refusal)


def _run_hook(hook: Callable[[Refusal], None], refusal: Refusal) -> None:
    try:
        hook(refusal)
    except Exception:
        logger.exception("refusal hook failed")


def _host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


# -- the protocol: connection cap, head and write timeouts, JSON for malformed HTTP -----------


def _protocol_class(options: ServerOptions) -> type[Any]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        """uvicorn's h11 protocol with a deadline on each request head and on stalled writes."""

        _head_timer: asyncio.TimerHandle | None = None
        _write_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > options.max_connections:
                transport.write(
                    _raw_json_response(503, "Service Unavailable", "too many connections")
                )
                transport.close()
                logger.warning("refused a connection from %s: too many connections", self.client)
                return
            if options.tls is not None:
                cn = peer_common_name(transport.get_extra_info("peercert"))
                self.app_state = {**self.app_state, "tenfold.peer_cn": cn}
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(options.read_timeout_s, self._head_timeout)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                # A partial head counts as a request: answer 408; an idle one just closes.
                if self.conn.their_state is not h11.IDLE or self.cycle is None:
                    self.transport.write(
                        _raw_json_response(
                            408,
                            "Request Timeout",
                            f"request head not received within {options.read_timeout_s:g} s",
                        )
                    )
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._cancel_head_timer()  # the head is in; the guard times the body

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._write_timer = self.loop.call_later(
                    options.write_timeout_s, self.transport.abort
                )

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def send_400_response(self, msg: str) -> None:
            # h11 is in its error state here: write the whole response ourselves.
            self.transport.write(_raw_json_response(400, "Bad Request", "malformed HTTP request"))
            self.transport.close()

    return GuardedH11


# -- the server ---------------------------------------------------------------------------------


class Server:
    """Serve an ASGI ``app`` with ``options``; in a background thread or in the foreground.

    ``role`` is the role every request needs when the app has no ``role_for``
    (a foreign ASGI app); a :class:`Router` says per route. ``on_refusal`` hooks
    run on the worker pool for every refused request.
    """

    def __init__(
        self,
        app: ASGIApp,
        options: ServerOptions | None = None,
        *,
        role: str = "reader",
        on_refusal: Iterable[Callable[[Refusal], None]] = (),
        name: str = "tenfold",
    ) -> None:
        self.options = options or ServerOptions()
        self.options.check()
        if role not in ROLES:
            raise ServerError(f"role {role!r} is not in {ROLES}")
        if self.options.tls is not None:
            from tenfold.core.errors import CryptoError

            try:
                self.options.tls.check()
            except CryptoError as exc:
                raise ServerError(str(exc)) from None
        self.name = name
        self.app = app
        self.guard = _Guard(app, self.options, role, list(on_refusal))
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        opts = self.options
        family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
        try:
            infos = socket.getaddrinfo(opts.host, opts.port, family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ServerError(f"cannot resolve host {opts.host!r}: {exc.strerror}") from None
        sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(infos[0][4])
        except OSError as exc:
            sock.close()
            raise ServerError(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror}") from None
        return sock

    def _prepare(self) -> Any:
        import uvicorn

        opts = self.options
        self._executor = ThreadPoolExecutor(opts.workers, thread_name_prefix=f"{self.name}-http")
        self.guard.executor = self._executor
        if isinstance(self.app, Router):
            self.app.executor = self._executor
        kwargs: dict[str, Any] = {}
        if opts.tls is not None:
            kwargs = {
                "ssl_certfile": str(opts.tls.cert),
                "ssl_keyfile": str(opts.tls.key),
                "ssl_ca_certs": str(opts.tls.ca),
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
            }
        config = uvicorn.Config(
            self.guard,
            http=_protocol_class(opts),
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            h11_max_incomplete_event_size=opts.max_header_bytes,
            timeout_keep_alive=int(max(1, opts.keepalive_s)),
            timeout_graceful_shutdown=max(1, math.ceil(opts.graceful_s)),  # never unbounded
            backlog=min(2048, opts.max_connections * 2),
            server_header=False,
            **kwargs,
        )
        self._sock = self._bind()
        self._port = int(self._sock.getsockname()[1])
        self._server = uvicorn.Server(config)
        return self._server

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServerError("server is not started")
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.options.tls else "http"
        host = self.options.host
        return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{self.port}"

    @property
    def refused(self) -> int:
        """How many requests were refused so far."""
        return self.guard.refused

    def connections(self) -> int:
        """Open connections now."""
        return len(self._server.server_state.connections) if self._server else 0

    def tasks(self) -> int:
        """Requests being handled now."""
        return len(self._server.server_state.tasks) if self._server else 0

    def start(self) -> Server:
        """Serve in a background thread; returns once the port accepts connections."""
        server = self._prepare()
        sock = self._sock
        assert sock is not None
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"{self.name}-server"
        )
        # uvicorn installs signal handlers only in the main thread; this one is not.
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"HTTP server on {self.options.host} did not start")
            time.sleep(0.005)
        return self

    def serve_forever(self, announce: Callable[[str], None] | None = None) -> None:
        """Serve in this thread until SIGINT or SIGTERM, then shut down gracefully."""
        server = self._prepare()
        if announce is not None:
            announce(self.url)
        try:
            server.run(sockets=[self._sock])
        finally:
            self._close()
        if server.should_exit is False:  # pragma: no cover - uvicorn returned on its own
            raise ServerError("HTTP server stopped unexpectedly")

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (``graceful_s``), close."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.options.graceful_s + 10)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(app: ASGIApp, options: ServerOptions | None = None, **kwargs: Any) -> Iterator[Server]:
    """``with running(app, options) as server:`` serve in the background for the block."""
    server = Server(app, options, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def with_options(options: ServerOptions, **changes: Any) -> ServerOptions:
    """A copy of ``options`` with ``changes`` (a shorthand for tests and benches)."""
    return replace(options, **changes)


# -- the command line -------------------------------------------------------------------------


def options_from_cli(values: Mapping[str, Any], **defaults: Any) -> ServerOptions:
    """A :class:`ServerOptions` from :func:`tenfold.core.cli.server_cli_options` values (checked)."""
    tls_parts = [values.get("tls_cert"), values.get("tls_key"), values.get("tls_ca")]
    tls = None
    if any(p is not None for p in tls_parts):
        if not all(p is not None for p in tls_parts):
            raise ServerError("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
        tls = TlsFiles(*(Path(p) for p in tls_parts if p is not None))
    creds_file = values.get("credentials_file")
    credentials = Credentials.load(creds_file) if creds_file is not None else None
    rate = float(values.get("rate_per_s") or ServerOptions.rate_per_s)
    options = ServerOptions(
        host=values.get("host") or "127.0.0.1",
        port=int(values.get("port") or 0),
        tls=tls,
        credentials=credentials,
        rate_per_s=rate,
        rate_burst=max(1.0, 2 * rate),
        max_body_bytes=int(values.get("max_body_bytes") or ServerOptions.max_body_bytes),
        **defaults,
    )
    options.check()
    return options
