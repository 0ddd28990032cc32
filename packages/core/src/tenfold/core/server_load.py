"""Sustained HTTP load for the benchmarks: a load generator in another process, and a bench op.

The generator (``python -m tenfold.core.server_load CONFIG``) keeps ``concurrency``
persistent HTTP/1.1 connections busy for ``duration_s`` (closed loop: each
connection sends its next request when the previous answer is in), optionally
with a client certificate (mutual TLS), and prints one JSON line: requests,
errors, elapsed time and every request's latency. ``@N@`` in a path or body is
replaced by a per-request counter, so writes are all distinct and reads spread
over the data.

:func:`load_subject` turns a server description into a bench subject: outside
the timer it picks the concurrency (the highest throughput whose p99 stays under
10 ms in a short sweep: "requests/s at p99 under 10 ms") and checks one answer;
the timed op runs the sustained load while a sampler records the server
process's memory, so the row shows the error rate and whether memory stayed flat.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Subject
from tenfold.core.tls import TlsFiles

__all__ = ["MTLS_FAIRNESS", "LoadResult", "LoadTarget", "http_load_row", "load_subject", "run_load"]

P99_TARGET_MS = 10.0
_SWEEP = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class LoadTarget:
    """A server to load: its URL, one request shape, client TLS, and the process serving it."""

    url: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None
    pid: int = 0
    """The process whose memory is sampled (the bench process itself for in-process servers)."""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    elapsed_s: float
    latencies_ms: list[float]
    peak_rss_mb: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0

    @property
    def per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("inf")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# -- the generator (child process) -------------------------------------------------------------


def _generate(config: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(config["url"])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    ctx = None
    if parts.scheme == "https":
        tls = config.get("tls")
        ctx = ssl.create_default_context(cafile=tls["ca"] if tls else None)
        if tls:
            ctx.load_cert_chain(tls["cert"], tls["key"])
    method = config["method"]
    path, body = config["path"], config["body"].encode("latin-1")
    headers = dict(config.get("headers") or {})
    duration = float(config["duration_s"])
    counter = itertools.count(int(config.get("start", 0)))
    modulo = int(config.get("modulo") or 0)
    lats: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start_evt = threading.Event()
    deadline = [0.0]

    def worker() -> None:
        def connect() -> http.client.HTTPConnection:
            if ctx is not None:
                return http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
            return http.client.HTTPConnection(host, port, timeout=30)

        conn = connect()
        mine: list[float] = []
        errs = 0
        start_evt.wait()
        while time.perf_counter() < deadline[0]:
            n = next(counter)
            tag = str(n % modulo if modulo else n)
            p = path.replace("@N@", tag)
            b = body.replace(b"@N@", tag.encode())
            if b"@K@" in b:  # etcd's gateway wants keys in base64
                b = b.replace(b"@K@", base64.b64encode(b"k" + tag.encode()))
            t0 = time.perf_counter()
            try:
                conn.request(method, p, body=b or None, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = 200 <= resp.status < 300
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = connect()
            mine.append((time.perf_counter() - t0) * 1000)
            errs += not ok
        conn.close()
        with lock:
            lats.extend(mine)
            errors[0] += errs

    threads = [threading.Thread(target=worker) for _ in range(int(config["concurrency"]))]
    for t in threads:
        t.start()
    time.sleep(0.05)  # every connection is open before the clock starts
    t0 = time.perf_counter()
    deadline[0] = t0 + duration
    start_evt.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"requests": len(lats), "errors": errors[0], "elapsed_s": elapsed, "lat": lats}


# -- the parent: run, sample memory ------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2
    except (OSError, ValueError, IndexError):
        return 0.0


def run_load(
    target: LoadTarget, *, duration_s: float, concurrency: int, start: int = 0, modulo: int = 0
) -> LoadResult:
    """Run the generator in another process against ``target``; sample the server's memory."""
    config = {
        "url": target.url,
        "method": target.method,
        "path": target.path,
        "body": target.body.decode("latin-1"),
        "headers": target.headers,
        "duration_s": duration_s,
        "concurrency": concurrency,
        "start": start,
        "modulo": modulo,
        "tls": (
            {"cert": str(target.tls.cert), "key": str(target.tls.key), "ca": str(target.tls.ca)}
            if target.tls
            else None
        ),
    }
    pid = target.pid or os.getpid()
    samples: list[float] = [_rss_mb(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            samples.append(_rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tenfold.core.server_load", json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=False,
        )
    finally:
        stop.set()
        sampler.join()
    samples.append(_rss_mb(pid))
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr.strip()[-500:]}")
    doc = json.loads(proc.stdout)
    return LoadResult(
        requests=doc["requests"],
        errors=doc["errors"],
        elapsed_s=doc["elapsed_s"],
        latencies_ms=doc["lat"],
        peak_rss_mb=max(samples),
        rss_start_mb=samples[0],
        rss_end_mb=samples[-1],
    )


def _pick_concurrency(target: LoadTarget, step_s: float, modulo: int) -> tuple[int, float]:
    """The concurrency with the most requests/s while p99 stays under 10 ms (1 if none does)."""
    best, best_rate = 1, 0.0
    for c in _SWEEP:
        r = run_load(
            target, duration_s=step_s, concurrency=c, start=10**9 + c * 10**7, modulo=modulo
        )
        if r.errors == 0 and r.percentile(99) < P99_TARGET_MS and r.per_s > best_rate:
            best, best_rate = c, r.per_s
        elif r.percentile(99) >= P99_TARGET_MS:
            break  # more connections only queue longer
    return best, best_rate


def load_subject(
    make: Callable[[BenchContext], LoadTarget],
    *,
    check: Callable[[LoadTarget], None] | None = None,
    modulo: int = 0,
    concurrency: Sequence[int] | None = None,
) -> Callable[[BenchContext], Op]:
    """A bench subject: sustained load (10 s quick, 60 s full, 1 s smoke) on ``make``'s server."""

    def prepare(ctx: BenchContext) -> Op:
        target = make(ctx)
        if check is not None:
            check(target)
        duration = ctx.size(1.0, 10.0, 60.0)
        if concurrency is not None:
            conc = concurrency[0]
        elif ctx.mode == "smoke":
            conc = 2  # smoke proves the row runs; no sweep
        else:
            conc, _ = _pick_concurrency(target, ctx.size(1.0, 1.0, 2.0), modulo)
        runs = itertools.count()

        def op() -> Outcome:
            r = run_load(
                target,
                duration_s=duration,
                concurrency=conc,
                start=next(runs) * 10**8,
                modulo=modulo,
            )
            return Outcome(
                r.requests,
                {
                    "concurrency": conc,
                    "requests_per_s": round(r.per_s, 1),
                    "p99_ms": round(r.percentile(99), 3),
                    "p99_under_10ms": "yes" if r.percentile(99) < P99_TARGET_MS else "no",
                    "error_rate": round(r.errors / r.requests, 6) if r.requests else 1.0,
                    "server_peak_rss_mb": round(r.peak_rss_mb, 1),
                    "server_rss_growth_mb": round(r.rss_end_mb - r.rss_start_mb, 1),
                },
                latencies_ms=r.latencies_ms,
            )

        return op

    return prepare


MTLS_FAIRNESS = "the same server with and without mutual TLS, the same generator and requests"


def http_load_row(
    name: str,
    ours: Subject,
    peer: Subject | None,
    *,
    row: str,
    counts: str,
    mtls_overhead: bool = False,
    **fields: Any,
) -> Scenario:
    """A row of the document's HTTP Load table: one sustained-load call per side, no warm-up.

    Every system's HTTP rows share the unit, the table and the rounds (a call is a
    whole :func:`load_subject` run, 10 s quick, 60 s full). ``mtls_overhead``: the
    peer is the same server without TLS, so the row reports what mutual TLS costs,
    an overhead rather than a like-for-like speedup (``fields`` may still override
    any of it, such as the fairness sentence).
    """
    defaults: dict[str, Any] = (
        {"comparison": "overhead", "like_for_like": False, "fairness": MTLS_FAIRNESS}
        if mtls_overhead
        else {}
    )
    return Scenario(
        name=name,
        unit="requests",
        ours=ours,
        peer=peer,
        table="HTTP Load",
        row=row,
        counts=counts,
        rounds=1,
        full_rounds=1,
        warmup=0,
        **{**defaults, **fields},
    )


if __name__ == "__main__":
    print(json.dumps(_generate(json.loads(sys.argv[1]))))


def served(
    ctx: BenchContext, key: str, app: Any, *, mtls: bool, name: str
) -> tuple[str, TlsFiles | None]:
    """Serve ``app`` in this process for the scenario (once per ``key``); its URL and client TLS.

    The rate limit is set far above what one machine's generator can offer: the
    bucket is still consulted on every request (its cost is in the figure), it
    just never refuses the benchmark's own client.
    """
    from tenfold.core.server import Credentials, Server, ServerOptions
    from tenfold.core.tls import make_tls_bundle

    def start() -> tuple[str, TlsFiles | None]:
        tls = client = None
        creds = None
        if mtls:
            bundle = make_tls_bundle(ctx.workdir / f"tls-{key}", ["server", "loadgen"])
            tls, client = bundle["server"], bundle["loadgen"]
            creds = Credentials()
            creds.issue("loadgen", ["reader", "writer", "bouncer"])
        options = ServerOptions(
            tls=tls, credentials=creds, rate_per_s=1e9, rate_burst=1e9, max_connections=4096
        )
        server = ctx.enter(Server(app, options, name=name))
        return server.url, client

    result: tuple[str, TlsFiles | None] = ctx.once(f"served:{key}", start)
    return result
