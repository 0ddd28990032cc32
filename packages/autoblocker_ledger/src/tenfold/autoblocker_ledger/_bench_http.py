"""Sustained HTTP load on `ledger serve` beside etcd's JSON gateway (/v3/kv/put, /v3/kv/range).

Both sides take one durable write (ours: one event appended and group-committed
with fsync; etcd: one put, raft-logged and fsynced by a 1-member cluster) or one
read per HTTP request, from the same load generator in another process.
"""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any

from tenfold.core.bench import BenchContext, Scenario, Subject
from tenfold.core.server_load import (
    MTLS_FAIRNESS,
    LoadTarget,
    http_load_row,
    load_subject,
    served,
)

_EVENT = (
    '{"event_id":"load-@N@","domain":"auth","kind":"ssh_failed_login",'
    '"subject":"203.0.113.9","time_ms":1700000000000,"evidence":{"line":"Failed password"}}'
)
_VALUE = base64.b64encode(_EVENT.replace("@N@", "0").encode()).decode()


def _preload(ctx: BenchContext) -> int:
    return int(ctx.size(1_000, 10_000, 10_000))


def _ledger(ctx: BenchContext) -> Any:
    from tenfold.autoblocker_ledger._events import SecurityEvent
    from tenfold.autoblocker_ledger._store import EmbeddedLedger

    def make() -> Any:
        led = ctx.enter(EmbeddedLedger(ctx.workdir / "http-ledger"))
        n = _preload(ctx)
        for start in range(0, n, 1000):
            led.append_batch(
                [
                    SecurityEvent.from_json(_EVENT.replace("@N@", f"pre-{i}"))
                    for i in range(start, min(n, start + 1000))
                ]
            )
        return led

    return ctx.once("http-ledger", make)


def _ours(path: str, method: str, body: str, mtls: bool) -> Any:
    def make(ctx: BenchContext) -> LoadTarget:
        from tenfold.autoblocker_ledger._server import ledger_app

        led = _ledger(ctx)
        url, tls = served(ctx, f"ledger-{mtls}", ledger_app(led), mtls=mtls, name="ledger")
        return LoadTarget(url, method, path, body.encode(), tls=tls)

    return make


def _etcd(ctx: BenchContext) -> Any:
    from tenfold.core.services import Etcd

    def make() -> Any:
        cluster = ctx.enter(Etcd(members=1, workdir=ctx.workdir / "etcd-http"))
        host, port = cluster.endpoints[0].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        n = _preload(ctx)
        for start in range(0, n, 100):  # etcd allows 128 operations per transaction
            ops = [
                {
                    "requestPut": {
                        "key": base64.b64encode(f"k{i}".encode()).decode(),
                        "value": _VALUE,
                    }
                }
                for i in range(start, min(n, start + 100))
            ]
            conn.request("POST", "/v3/kv/txn", body=json.dumps({"success": ops}))
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"etcd preload failed: HTTP {resp.status}")
        conn.close()
        return cluster

    return ctx.once("etcd-http", make)


def _peer(path: str, body: str) -> Any:
    def make(ctx: BenchContext) -> LoadTarget:
        cluster = _etcd(ctx)
        pid = cluster._procs[0].proc.pid if getattr(cluster, "_procs", None) else 0
        return LoadTarget(cluster.client_urls[0], "POST", path, body.encode(), pid=pid)

    return make


def _check_read(target: LoadTarget) -> None:
    """One read answers the preloaded event on either side (results compared)."""
    import httpx

    verify: Any = target.tls.client_context() if target.tls else True
    with httpx.Client(base_url=target.url, verify=verify, timeout=10) as c:
        if target.path.startswith("/entries/"):
            got = c.get("/entries/7").json()["event_id"]
            assert got == "load-pre-7", got
        else:
            doc = c.post(target.path, content=target.body.replace(b"@K@", b"azc=")).json()
            value = json.loads(base64.b64decode(doc["kvs"][0]["value"]))
            assert value["event_id"] == "load-0", value


_PUT = '{"key":"@K@","value":"' + _VALUE + '"}'
_RANGE = '{"key":"@K@"}'


def http_scenarios() -> list[Scenario]:
    rows = []
    for mtls in (False, True):
        suffix = "_mtls" if mtls else ""
        auth = "mutual TLS (client certificate, role checked)" if mtls else "loopback, no TLS"
        rows += [
            http_load_row(
                f"http_append{suffix}",
                Subject("tenfold serve", load_subject(_ours("/events", "POST", _EVENT, mtls))),
                (
                    Subject(
                        "tenfold serve (no TLS)",
                        load_subject(_ours("/events", "POST", _EVENT, False)),
                    )
                    if mtls
                    else Subject(
                        "etcd 3.4 gateway /v3/kv/put", load_subject(_peer("/v3/kv/put", _PUT))
                    )
                ),
                row=f"append one event per request ({auth})",
                counts=(
                    "durable appends over HTTP/1.1 from a load generator in another process, "
                    "closed loop at the concurrency whose p99 stays under 10 ms; ours: POST /events "
                    "(one event, validated, hash-chained, group-committed with fsync); "
                    + (
                        "peer: the same server without TLS, so the row shows what mutual TLS costs"
                        if mtls
                        else "peer: etcd's JSON gateway, one put per request on a 1-member cluster"
                    )
                ),
                mtls_overhead=mtls,
                fairness=MTLS_FAIRNESS
                if mtls
                else "both take one small record per HTTP request from the same generator in "
                "another process; ours validates, hash-chains and fsyncs each event into the "
                "signed log, etcd's gateway stores a plain key through a 1-member raft",
                unchecked_reason="each side's status codes are counted (the error rate is "
                "reported); ours' appends are read back by the abuse row",
            ),
            http_load_row(
                f"http_read{suffix}",
                Subject(
                    "tenfold serve",
                    load_subject(
                        _ours("/entries/@N@", "GET", "", mtls), check=_check_read, modulo=1000
                    ),
                ),
                (
                    Subject(
                        "tenfold serve (no TLS)",
                        load_subject(_ours("/entries/@N@", "GET", "", False), modulo=1000),
                    )
                    if mtls
                    else Subject(
                        "etcd 3.4 gateway /v3/kv/range",
                        load_subject(_peer("/v3/kv/range", _RANGE), check=_check_read, modulo=1000),
                    )
                ),
                row=f"read one entry per request ({auth})",
                counts=(
                    "reads of preloaded entries over HTTP/1.1, same generator; ours: GET /entries/N "
                    "(entry with its leaf hash); "
                    + (
                        "peer: the same server without TLS"
                        if mtls
                        else "peer: etcd range on one key (linearizable, the gateway's default)"
                    )
                ),
                mtls_overhead=mtls,
                fairness=MTLS_FAIRNESS
                if mtls
                else "both answer one read per HTTP request from the same generator; ours "
                "returns a log entry with its leaf hash from its replica, etcd a linearizable "
                "range of one key",
                checks=(
                    "ours' response bodies are checked by the generator (the entry asked for); "
                    "the baseline's are counted by status"
                    if mtls
                    else "every response body on both sides is checked by the generator (the "
                    "entry or key asked for); failures count as errors"
                ),
            ),
        ]
    return rows + abuse_scenarios()


def _abuse_target(ctx: BenchContext) -> Any:
    from tenfold.autoblocker_ledger._server import ledger_server
    from tenfold.autoblocker_ledger._store import EmbeddedLedger
    from tenfold.core.server import Credentials
    from tenfold.core.server_abuse import AbuseTarget, abuse_options

    led = ctx.enter(EmbeddedLedger(ctx.workdir / "abuse-ledger"))
    creds = Credentials()
    key = creds.issue("sensor", ["writer", "reader"])
    server, _ = ledger_server(led, abuse_options(credentials=creds))
    ctx.enter(server)

    def write(c: Any, i: int) -> Any:
        r = c.post("/events", content=_EVENT.replace("@N@", f"abuse-{i}"))
        return r.json()[0]["index"], f"load-abuse-{i}"

    def read_back(c: Any, proof: Any) -> bool:
        r = c.get(f"/entries/{proof[0]}")
        return bool(r.status_code == 200 and r.json()["event_id"] == proof[1])

    return AbuseTarget(
        server=server,
        normal=("GET", "/entries/0", None),
        body_path="/events",
        headers={"X-Api-Key": key},
        write=write,
        read_back=read_back,
    )


def abuse_scenarios() -> list[Scenario]:
    from tenfold.core.server_abuse import after_attack_subject

    return [
        Scenario(
            name="http_after_attack",
            unit="attacks",
            ours=Subject("tenfold ledger serve", after_attack_subject(_abuse_target)),
            table="HTTP Load",
            row="normal request answered after each attack (target 100 ms)",
            counts=(
                "the core abuse suite's nine attacks (slowloris heads, stalled uploads, oversized "
                "and lying bodies, malformed HTTP, bad bodies, path tricks, bad credentials, a 10x "
                "burst) against `ledger serve` with API keys on loopback; latency = the first "
                "normal request after each attack; every acknowledged append read back after each"
            ),
            rounds=1,
            full_rounds=3,
            warmup=0,
        )
    ]
