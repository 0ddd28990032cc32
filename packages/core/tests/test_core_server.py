"""The core HTTP server stack: credentials, options, token buckets, graceful stop, load tool."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.core.errors import ConfigError, ServerError
from tenfold.core.governor import RateLimiter, TokenBucket
from tenfold.core.server import (
    Credentials,
    HttpError,
    Reply,
    Route,
    Router,
    Server,
    ServerOptions,
    is_loopback,
)


def test_credentials_round_trip_keep_only_digests(tmp_path: Path) -> None:
    creds = Credentials()
    key = creds.issue("edge-1", ["bouncer"])
    path = tmp_path / "creds.json"
    creds.save(path)
    text = path.read_text()
    assert key not in text and "edge-1" in text
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = Credentials.load(path)
    client = loaded.by_key(key)
    assert client is not None and client.name == "edge-1" and client.may("bouncer")
    assert not client.may("writer")
    assert loaded.by_key(key + "x") is None
    new = loaded.issue("edge-1", ["bouncer", "reader"])  # re-issue: the old key stops working
    assert loaded.by_key(key) is None and loaded.by_key(new) is not None
    loaded.revoke("edge-1")
    assert loaded.by_key(new) is None
    with pytest.raises(ServerError, match="no client named"):
        loaded.revoke("edge-1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff", "not readable JSON"),
        (b"[]", "no 'clients' list"),
        (b'{"clients": [{"name": "a b", "roles": ["reader"]}]}', "name must be"),
        (b'{"clients": [{"name": "a", "roles": ["root"]}]}', "roles must be"),
        (b'{"clients": [{"name": "a", "roles": ["reader"], "key_sha256": "x"}]}', "64 hex"),
        (b"[" * 100_000, "not readable JSON"),
    ],
)
def test_bad_credentials_files_are_refused_with_the_file_named(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(ServerError, match=message) as err:
        Credentials.load(path)
    assert str(path) in str(err.value)


def test_options_are_checked() -> None:
    with pytest.raises(ServerError, match="without credentials"):
        ServerOptions(host="0.0.0.0").check()
    with pytest.raises(ServerError, match="out of range"):
        ServerOptions(port=70000).check()
    with pytest.raises(ServerError, match="read_timeout_s"):
        ServerOptions(read_timeout_s=float("inf")).check()
    ServerOptions(host="0.0.0.0", credentials=Credentials()).check()
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_port_in_use_is_one_clear_error() -> None:
    app = Router([Route("GET", "/", lambda r: {})])
    with Server(app) as first:
        with pytest.raises(ServerError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            Server(app, ServerOptions(port=first.port)).start()


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(1, 1e6),
    burst=st.floats(1, 1e4),
    takes=st.lists(st.floats(0.01, 50), min_size=1, max_size=200),
)
def test_token_bucket_never_grants_more_than_burst_plus_rate(
    rate: float, burst: float, takes: list[float]
) -> None:
    bucket = TokenBucket(rate, burst)
    t0 = time.monotonic()
    granted = sum(n for n in takes if bucket.take(n) == 0.0)
    elapsed = time.monotonic() - t0
    assert granted <= burst + rate * elapsed + 1e-6


def test_token_bucket_says_how_long_to_wait_and_limiter_bounds_keys() -> None:
    bucket = TokenBucket(10, 2)
    assert bucket.take() == 0.0 and bucket.take() == 0.0
    wait = bucket.take()
    assert 0 < wait <= 0.1 + 1e-9
    with pytest.raises(ConfigError):
        TokenBucket(0, 1)
    limiter = RateLimiter(1, 1, max_keys=3)
    for k in "abcdef":
        assert limiter.take(k) == 0.0
    assert len(limiter) == 3
    assert limiter.take("f") > 0  # the recent key kept its empty bucket


def test_router_statuses_and_json_errors() -> None:
    def boom(req: object) -> object:
        raise RuntimeError("secret detail")

    app = Router(
        [
            Route("GET", "/ok/{n:int}", lambda r: {"n": r.params["n"]}),
            Route("GET", "/teapot", lambda r: Reply(b"tea", 418, "text/plain")),
            Route("GET", "/refuse", lambda r: (_ for _ in ()).throw(HttpError(409, "no"))),
            Route("GET", "/boom", boom),
        ]
    )
    with Server(app) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/ok/3").json() == {"n": 3}
        assert c.get("/ok/x").status_code == 404
        assert c.post("/ok/3").status_code == 405
        r = c.get("/teapot")
        assert r.status_code == 418 and r.text == "tea"
        assert c.get("/refuse").json() == {"error": "no", "status": 409}
        r = c.get("/boom")
        assert r.status_code == 500 and "secret" not in r.text


def test_stop_lets_a_request_in_flight_finish() -> None:
    started = threading.Event()

    def slow(req: object) -> object:
        started.set()
        time.sleep(0.5)
        return {"done": True}

    server = Server(Router([Route("GET", "/slow", slow)]), ServerOptions(graceful_s=5)).start()
    result: dict[str, object] = {}

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            result["r"] = c.get("/slow").json()

    t = threading.Thread(target=call)
    t.start()
    assert started.wait(5)
    server.stop()
    t.join(10)
    assert result["r"] == {"done": True}
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/slow", timeout=2)


def test_load_generator_runs_in_another_process() -> None:
    from tenfold.core.server_load import LoadTarget, run_load

    app = Router([Route("GET", "/n/{n:int}", lambda r: {"n": r.params["n"]})])
    options = ServerOptions(rate_per_s=1e6, rate_burst=1e6)
    with Server(app, options) as server:
        r = run_load(LoadTarget(server.url, "GET", "/n/@N@"), duration_s=0.3, concurrency=2)
    assert r.requests > 0 and r.errors == 0 and len(r.latencies_ms) == r.requests
    assert r.peak_rss_mb > 0
    json.dumps(r.latencies_ms[:3])


def test_failed_authentication_is_rate_limited_per_address() -> None:
    creds = Credentials()
    key = creds.issue("ok", ["reader"])
    app = Router([Route("GET", "/x", lambda r: {"ok": True})])
    options = ServerOptions(credentials=creds, rate_per_s=5, rate_burst=5)
    with Server(app, options) as server, httpx.Client(base_url=server.url) as c:
        codes = [c.get("/x", headers={"X-Api-Key": f"tfk_guess{i}"}).status_code for i in range(12)]
        assert codes[:5] == [401] * 5 and codes[-1] == 429
        assert server.refused == 12
        # A client with a valid key has its own bucket and is still served.
        assert c.get("/x", headers={"X-Api-Key": key}).json() == {"ok": True}


def test_credentials_cli_issue_list_revoke_tls(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tenfold.core._commands import credentials_group

    runner = CliRunner()
    keys = tmp_path / "keys.json"
    out = runner.invoke(
        credentials_group, ["issue", str(keys), "--name", "b1", "--role", "bouncer"]
    )
    assert out.exit_code == 0 and out.output.startswith("tfk_")
    key = out.output.strip()
    assert Credentials.load(keys).by_key(key) is not None
    out = runner.invoke(credentials_group, ["list", str(keys), "--json"])
    assert json.loads(out.output) == [{"name": "b1", "roles": ["bouncer"]}]
    out = runner.invoke(credentials_group, ["revoke", str(keys), "--name", "b1"])
    assert out.exit_code == 0 and Credentials.load(keys).clients() == []
    out = runner.invoke(credentials_group, ["tls", str(tmp_path / "pki"), "server", "b1"])
    assert out.exit_code == 0 and (tmp_path / "pki" / "b1.key").stat().st_mode & 0o777 == 0o600
    out = runner.invoke(credentials_group, ["tls", str(tmp_path / "pki"), "x"])
    assert out.exit_code == 2 and "already holds a CA" in out.output


def test_no_product_module_serves_http_with_the_standard_library() -> None:
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for path in sorted(root.glob("*/src/**/*.py"))
        if any(
            marker in path.read_text(errors="replace")
            for marker in ("import http.server", "from http.server", "socketserver")
        )
    ]
    assert offenders == [], offenders
