"""A chaos agent: the engine's OS plane on one node, taking faults from a controller.

``tenfold chaos agent`` serves a small JSON API over mutual TLS on the core's
HTTP stack (:mod:`tenfold.core.server`, ASGI on uvicorn); only the controller's
certificate (its common name, ``--controller``) is accepted. Behind it runs a
:class:`ChaosEngine` of its own, with its own journal and watchdog, so every
safety the engine keeps on one host holds on each node:

* every fault has its TTL (``duration_s``), reverted by the engine's timer;
* the agent holds a **lease** from its controller: each request from it renews
  the lease for ``lease_s``; when the lease lapses with faults active (the
  controller died, or the network between them did), the agent reverts every
  fault by itself;
* if the agent process dies, its watchdog process reverts from the journal;
* if every process of the node dies (agent and watchdog alike), the network
  faults still end at their TTL, which their nft tables carry into the kernel
  (see :mod:`tenfold.chaos_engine._os_net`); ``tenfold chaos recover
  --journal-dir DIR`` on the node removes what is left (the inert tables, and
  the faults with no kernel timer: bandwidth, disk, throttle, pause).

Routes (all need the controller's certificate):

``POST /v1/faults``   ``{"faults": [{"kind": K, "params": {...}}, ...]}``: inject
                      all of them or none; answers ``{"faults": [{"id", "kind",
                      "deadline"}]}``.
``POST /v1/revert``   ``{"ids": [...]}`` or ``{}`` for every fault; ``{"reverted": n}``.
``POST /v1/lease``    renew the lease; ``{"name", "active", "lease_s"}``.
``GET  /v1/status``   the same, plus counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tenfold.chaos_engine.errors import AgentError, InvalidFault
from tenfold.core.server import (
    Client,
    Credentials,
    HttpError,
    Request,
    Route,
    Router,
    Server,
    ServerOptions,
)

T = TypeVar("T")
AGENT_PORT = 7421
MAX_FAULTS_PER_CALL = 1000


class Agent:
    """The agent's state: an engine on its own event-loop thread, and the lease."""

    def __init__(self, name: str, journal_dir: Path, lease_s: float) -> None:
        if not 0.1 <= lease_s <= 3600:
            raise AgentError(f"lease must be 0.1-3600 s, got {lease_s!r}")
        self.name = name
        self.lease_s = lease_s
        self.journal_dir = journal_dir
        self.lease_until = 0.0
        self.lapses = 0
        self.injected = 0
        self.in_flight = 0  # requests being served: the lease does not lapse under one
        self._count = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chaos-agent-engine", daemon=True
        )
        self._thread.start()
        self.engine: Any = None
        try:
            self.engine = self._call(self._open())
        except BaseException:
            self._stop_loop()
            raise
        self._call(self._start_lease_watch())

    async def _open(self) -> Any:
        from tenfold.chaos_engine._engine import ChaosEngine

        return await ChaosEngine.create(
            experiment=f"agent_{self.name}"[:24], journal_dir=self.journal_dir
        )

    async def _start_lease_watch(self) -> None:
        self._watch = asyncio.ensure_future(self._lease_watch())

    async def _lease_watch(self) -> None:
        """Revert everything when the lease lapses with faults active (controller lost)."""
        step = min(0.05, self.lease_s / 10)
        while True:
            await asyncio.sleep(step)
            if (
                self.engine.active_faults
                and not self.in_flight
                and time.monotonic() > self.lease_until
            ):
                self.lapses += 1
                self.engine.monitor.count("agent_lease_lapsed_total")
                with contextlib.suppress(Exception):
                    await self.engine.revert_all()

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def renew(self) -> None:
        self.lease_until = time.monotonic() + self.lease_s

    # -- the API ----------------------------------------------------------------------
    def inject(self, body: Any) -> dict[str, Any]:
        from tenfold.chaos_engine._faults import fault_from_dict

        self.renew()
        items = body.get("faults") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise HttpError(400, 'the body must be {"faults": [{"kind": ..., "params": {...}}]}')
        if len(items) > MAX_FAULTS_PER_CALL:
            raise HttpError(413, f"at most {MAX_FAULTS_PER_CALL} faults per call")
        faults = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                raise HttpError(400, f"faults[{i}] must be an object with a kind")
            params = item.get("params", {})
            if not isinstance(params, dict):
                raise HttpError(400, f"faults[{i}].params must be an object")
            try:
                faults.append(fault_from_dict(item["kind"], params))
            except (InvalidFault, TypeError) as exc:
                raise HttpError(400, f"faults[{i}]: {exc}") from None
        handles = self._call(self.engine.inject_faults(faults))
        self.injected += len(handles)
        self.renew()
        return {
            "faults": [
                {"id": h.fault_id, "kind": h.fault.kind, "deadline": h.deadline} for h in handles
            ]
        }

    def revert(self, body: Any) -> dict[str, Any]:
        self.renew()
        ids = body.get("ids") if isinstance(body, dict) else None
        if ids is None:
            return {"reverted": self._call(self.engine.revert_all())}
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise HttpError(400, '"ids" must be a list of fault ids')
        return {"reverted": self._call(self._revert_ids(ids))}

    async def _revert_ids(self, ids: list[str]) -> int:
        handles = {h.fault_id: h for h in self.engine.handles()}
        chosen = [handles[i] for i in ids if i in handles]
        await asyncio.gather(*(h.revert() for h in chosen))
        return len(chosen)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "active": self.engine.active_faults,
            "lease_s": self.lease_s,
            "lease_left_s": round(max(0.0, self.lease_until - time.monotonic()), 3),
            "lease_lapses": self.lapses,
            "injected": self.injected,
        }

    def router(self) -> Router:
        def handler(fn: Callable[[Any], dict[str, Any]]) -> Callable[[Request], Any]:
            def serve(request: Request) -> dict[str, Any]:
                with self._count:
                    self.in_flight += 1
                try:
                    return fn(request.json() if request.body else {})
                finally:
                    with self._count:
                        self.in_flight -= 1
                    self.renew()

            return serve

        def lease(request: Request) -> dict[str, Any]:
            self.renew()
            return self.status()

        return Router(
            [
                Route("POST", "/v1/faults", handler(self.inject), role="writer"),
                Route("POST", "/v1/revert", handler(self.revert), role="writer"),
                Route("POST", "/v1/lease", lease, role="writer"),
                Route("GET", "/v1/status", lambda request: self.status(), role="reader"),
            ]
        )

    def close(self) -> None:
        """Revert every fault, close the engine (journal, watchdog) and the loop."""
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self._call(self._close())
        self._stop_loop()

    async def _close(self) -> None:
        self._watch.cancel()
        await self.engine.close()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


def agent_options(options: ServerOptions, controller: str) -> ServerOptions:
    """The server options of an agent: mutual TLS, and only ``controller``'s certificate."""
    if options.tls is None:
        raise AgentError(
            "a chaos agent takes faults only over mutual TLS: pass --tls-cert, --tls-key "
            "and --tls-ca (tenfold credentials tls makes them)"
        )
    creds = Credentials([(Client(controller, frozenset({"admin"})), None)])
    from dataclasses import replace

    return replace(options, credentials=creds)


def serve_agent(
    name: str,
    options: ServerOptions,
    *,
    controller: str = "controller",
    journal_dir: Path,
    lease_s: float = 10.0,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve an agent in the foreground until SIGINT/SIGTERM; revert everything on the way out.

    The TLS files are checked before anything is made (no journal is left by a bad call).
    """
    from tenfold.core.errors import CryptoError

    opts = agent_options(options, controller)
    opts.check()
    assert opts.tls is not None
    try:
        opts.tls.check()
    except CryptoError as exc:
        raise AgentError(str(exc)) from None
    import signal

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    agent = Agent(name, journal_dir, lease_s)
    try:
        # Announced once the port accepts connections (start() returns then).
        with Server(agent.router(), opts, name="chaos-agent") as server:
            if announce is not None:
                announce(server.url)
            while not stop.wait(1.0):
                pass
    finally:
        agent.close()
