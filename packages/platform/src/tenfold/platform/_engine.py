"""The platform's engine process: the pipeline into the ledger, and the ledger over HTTP.

The engine is the ledger's one writer (the store takes an OS lock). It runs the
transport pipeline (:mod:`tenfold.platform._transport`) and serves the ledger's
HTTP API on 127.0.0.1 (:func:`tenfold.autoblocker_ledger.ledger_app`: entries,
signed tree heads, inclusion proofs) with two more routes:

* ``GET /stream?after=N``: the decision stream as JSON lines
  (:mod:`tenfold.core.events`), every address decision recorded after ledger
  index ``N``; the ``x-ledger-size`` header says how far the ledger was read, so
  a follower passes that back as ``after`` once it has applied the lines and
  misses nothing and repeats nothing across reconnects;
* ``GET /consistency?old=N``: the newest signed tree head and the proof that the
  tree of size ``N`` is a prefix of it (a follower that kept an older head checks
  the ledger was only appended to, across engine restarts);
* ``GET /platform``: the engine's counts (entries, events, decisions, the
  transport's appended and duplicate events, the stored Kafka positions).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenfold.core.files import replace_file
from tenfold.platform.errors import PlatformError

__all__ = ["fetch", "run_engine", "stream_after"]


def fetch(url: str, *, timeout_s: float = 5.0) -> tuple[bytes, dict[str, str]]:
    """GET ``url`` from the engine; a refusal or an unreachable engine is a PlatformError."""
    from tenfold.platform._trust import context_for, explain_refusal

    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context_for(url)) as resp:
            return resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        raise PlatformError(f"{url}: HTTP {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise explain_refusal(url, exc) or PlatformError(
            f"the platform engine at {url} is not reachable: {exc}"
        ) from None


def stream_after(base: str, after: int) -> tuple[bytes, int]:
    """The stream lines after ledger index ``after`` and the index to ask after next time."""
    body, headers = fetch(f"{base}/stream?after={after}")
    return body, int(headers.get("x-ledger-size", after + 1)) - 1


def run_engine(home: Path, *, announce: Callable[[str], None] = print) -> None:
    """Open the ledger, serve it, run the pipeline until SIGTERM (the ``_engine`` process)."""
    from tenfold.autoblocker_ledger import (
        Autoblocker,
        ledger_server,
        load_rules,
        stream_decisions,
    )
    from tenfold.core.events import encode_decision
    from tenfold.core.server import HttpError, Reply, Route, Router, ServerOptions
    from tenfold.pipeline_engine import PipelineEngineError
    from tenfold.platform._platform import Platform
    from tenfold.platform._transport import load_assets, transport_pipeline

    p = Platform(home)
    try:
        conf = json.loads(p.transport_conf.read_text())
    except (OSError, ValueError) as exc:
        raise PlatformError(f"{p.transport_conf}: no transport configured ({exc})") from None
    load_assets(conf["postgres"], [])  # the inventory table exists from here on
    detectors = []
    if conf.get("model"):
        from tenfold.auto_learner import Model
        from tenfold.platform._detect import LearnedDetector

        detectors.append(LearnedDetector(Model.load(conf["model"])))
    blocker = Autoblocker(load_rules(p.rules), detectors)
    from tenfold.platform._contract import ContractPolicy, chained
    from tenfold.platform._policy import LatticePolicy
    from tenfold.platform._transport import inventory

    policy = chained(
        LatticePolicy(inventory(conf["postgres"])), ContractPolicy(conf.get("allow", []))
    )
    from tenfold.platform._replicated import open_ledger

    with open_ledger(p) as led:
        pipeline, sink = transport_pipeline(
            led,
            blocker,
            bootstrap=conf["kafka"],
            dsn=conf["postgres"],
            topic=conf["topic"],
            positions=p.positions,
            policy=policy,
        )
        stop = threading.Event()

        def stream(req: Any) -> Reply:
            after = req.query_int("after", -1, minimum=-1)
            size = led.size
            lines = b"".join(
                encode_decision(d) for d in stream_decisions(led, after) if d.index < size
            )
            return Reply(
                lines, content_type="application/x-ndjson", headers={"x-ledger-size": str(size)}
            )

        def consistency(req: Any) -> dict[str, Any]:
            head = led.tree_head()
            old = req.query_int("old", minimum=1)
            if old > head.size:
                raise HttpError(404, f"the log has {head.size} entries, not {old}")
            proof = led.consistency_proof(old, head.size)
            return {"sth": head.to_dict(), "proof": [base64.b64encode(h).decode() for h in proof]}

        def counts(req: Any) -> dict[str, Any]:
            size = led.size
            decisions = sum(1 for i in range(size) if led.get(i).event.kind.startswith("decision."))
            return {
                "entries": size,
                "events": size - decisions,
                "decisions": decisions,
                "root": led.tree_head().root.hex() if size else None,
                "transport": {
                    "appended": sink.appended,
                    "duplicates": sink.duplicates,
                    "positions": sink.stored_positions(),
                    "topic": conf["topic"],
                },
            }

        # The ledger's own server (its routes, and repeated refusals recorded as
        # events), with the platform's two routes added to its router.
        trust = None
        if conf.get("attested"):  # mutual TLS, and only attested nodes (tenfold.platform._trust)
            from tenfold.platform._trust import TrustAnchor

            trust = TrustAnchor(p.home, led).start()
        server, _ = ledger_server(led, ServerOptions(port=0, tls=trust.tls if trust else None))
        router = server.app
        assert isinstance(router, Router)
        for route in (
            Route("GET", "/stream", stream),
            Route("GET", "/consistency", consistency),
            Route("GET", "/platform", counts),
        ):
            router.routes.append((route, *route.compiled()))
        if trust is not None:
            trust.gate(router)
        server.start()

        def on_term(signum: int, frame: object) -> None:
            stop.set()
            pipeline.stop()

        if conf.get("chaos"):
            from tenfold.platform._chaos import ChaosFollower

            chaos = ChaosFollower(Path(conf["chaos"]))

            def follow_chaos() -> None:
                while not stop.wait(0.2):
                    events = chaos.poll(int(time.time() * 1000))
                    if events:
                        fresh = [r for r in led.append_batch(events) if not r.duplicate]
                        chaos.recorded += len(fresh)

            threading.Thread(target=follow_chaos, name="chaos", daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        try:
            ready = {"url": server.url, "pid": os.getpid()}
            # Whole or not at all: `up` goes on as soon as the file exists.
            replace_file(
                p.engine_ready, json.dumps({**ready, "attest_url": trust.url} if trust else ready)
            )
            announce(
                f"engine: ledger {p.ledger_dir} served at {server.url}; reading {conf['topic']}"
            )
            while not stop.is_set():
                try:
                    pipeline.run()  # returns only when stopped
                except PipelineEngineError as exc:
                    # A connector gave up (the broker or PostgreSQL away for long):
                    # run again from the stored positions once it is back.
                    announce(f"pipeline stopped: {exc}; resuming from the stored positions")
                    stop.wait(1.0)
        finally:
            server.stop()
            if trust is not None:
                trust.stop()
