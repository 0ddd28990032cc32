"""The controller: one experiment across many chaos agents, over mutual TLS.

An experiment names its agents (``[agents] node0 = "https://10.201.0.2:7421"``)
and each fault step may name the agent it runs on (``agent = "node0"``, or per
target). The controller holds a connection to every agent, fans a step's faults
out to their agents at once (all or nothing: if one agent refuses, the faults
the others took are reverted), and renews each agent's lease by a heartbeat a
quarter of the lease apart.

An agent that does not answer for half its lease is **lost**: the controller
stops talking to it (its own lease lapses, so it reverts its faults by itself;
its watchdog does if it died), reports it by name, and the experiment aborts,
which reverts every fault on the other agents.

Pointing the same experiment at real machines is configuration only: run
``tenfold chaos agent`` on each host with a certificate named after that host,
and give the controller their URLs (in the experiment's ``[agents]`` table, or
``--agent NAME=URL`` on the command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

from tenfold.chaos_engine.errors import AgentError, AgentLost, ExperimentError
from tenfold.core.tls import TlsFiles

AGENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,18}$")


@dataclass(frozen=True)
class AgentRef:
    """An agent's name (what experiments call it) and where it listens (``https://host:port``)."""

    name: str
    url: str

    def __post_init__(self) -> None:
        check_agent(self.name, self.url)


def check_agent(name: object, url: object) -> None:
    """Raise :class:`ExperimentError` unless ``name`` is an agent name and ``url`` an https URL."""
    if not isinstance(name, str) or not AGENT_NAME.match(name):
        raise ExperimentError(f"agent name must be 1-18 letters, digits, '_' or '-', got {name!r}")
    if not isinstance(url, str):
        raise ExperimentError(f"agent {name}: URL must be a string, got {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ExperimentError(f"agent {name}: bad URL {url!r}") from None
    if parts.scheme != "https" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ExperimentError(
            f"agent {name}: URL must be https://HOST:PORT (agents speak mutual TLS), got {url!r}"
        )


def parse_agent(text: str) -> AgentRef:
    """``NAME=https://HOST:PORT`` (a command-line ``--agent``)."""
    name, sep, url = text.partition("=")
    if not sep:
        raise ExperimentError(f"--agent must be NAME=https://HOST:PORT, got {text[:80]!r}")
    return AgentRef(name, url)


@dataclass
class RemoteFault:
    """A fault an agent holds: ``revert`` takes it out there."""

    agent: str
    fault_id: str
    fault: Any
    deadline: float
    _controller: Controller = field(repr=False)
    reverted: bool = False

    def revert(self) -> None:
        self._controller.revert([self])


@dataclass
class _Link:
    ref: AgentRef
    client: Any
    lease_s: float = 10.0
    last_ok: float = 0.0
    lost: str = ""


class Controller:
    """Talks to a set of agents over mutual TLS; see the module doc for what it keeps."""

    def __init__(
        self, agents: Iterable[AgentRef], tls: TlsFiles, *, timeout_s: float = 10.0
    ) -> None:
        refs = list(agents)
        if not refs:
            raise AgentError("a controller needs at least one agent")
        names = [r.name for r in refs]
        if len(set(names)) != len(names):
            raise AgentError(f"agent {next(n for n in names if names.count(n) > 1)!r} named twice")
        from tenfold.core.errors import CryptoError

        try:
            tls.check()
            context = tls.client_context()
        except CryptoError as exc:
            raise AgentError(str(exc)) from None
        import httpx

        self.timeout_s = timeout_s
        self._links = {
            r.name: _Link(r, httpx.Client(base_url=r.url, verify=context, timeout=timeout_s))
            for r in refs
        }
        self._pool = ThreadPoolExecutor(max(2, len(refs)), thread_name_prefix="chaos-controller")
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._beat: threading.Thread | None = None
        self._held: dict[tuple[str, str], RemoteFault] = {}
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    def connect(self) -> Self:
        """Reach every agent (its status, which starts its lease) and start the heartbeat."""
        statuses = list(self._pool.map(self._hello, self._links.values()))
        for link, status in zip(self._links.values(), statuses, strict=True):
            link.lease_s = float(status.get("lease_s", link.lease_s))
        self._beat = threading.Thread(target=self._heartbeat, name="chaos-heartbeat", daemon=True)
        self._beat.start()
        return self

    def _hello(self, link: _Link) -> dict[str, Any]:
        try:
            return self._post(link, "/v1/lease", {})
        except AgentLost as exc:
            raise AgentLost(f"cannot reach {exc}") from None

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Revert every fault on every agent still answering, then stop."""
        try:
            with contextlib.suppress(AgentError):
                self.revert_all()
        finally:
            self._stop.set()
            if self._beat is not None:
                self._beat.join(5)
            self._pool.shutdown(wait=True)
            for link in self._links.values():
                link.client.close()

    @property
    def agents(self) -> list[str]:
        return list(self._links)

    def lost(self) -> dict[str, str]:
        """Agents that stopped answering, with why."""
        return {name: link.lost for name, link in self._links.items() if link.lost}

    def wait_lost(self, timeout_s: float | None = None) -> str | None:
        """Block until an agent is lost (its name and why), or ``None`` after ``timeout_s``."""
        if not self._lost.wait(timeout_s):
            return None
        name, why = next(iter(self.lost().items()))
        return f"agent {name!r} lost: {why}"

    # -- the wire ------------------------------------------------------------------------
    def _post(self, link: _Link, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        if link.lost:
            raise AgentLost(f"agent {link.ref.name!r} is lost: {link.lost}")
        try:
            response = link.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise AgentLost(
                f"agent {link.ref.name!r} at {link.ref.url}: {exc or type(exc).__name__}"
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code != 200:
            why = data.get("error") if isinstance(data, dict) else None
            raise AgentError(
                f"agent {link.ref.name!r} refused: {why or f'HTTP {response.status_code}'}"
            )
        link.last_ok = time.monotonic()
        return data if isinstance(data, dict) else {}

    def _mark_lost(self, link: _Link, why: str) -> None:
        if not link.lost:
            link.lost = why
            with self._lock:
                for key in [k for k in self._held if k[0] == link.ref.name]:
                    self._held.pop(key).reverted = True  # the agent reverts them itself
            self._lost.set()

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            links = [link for link in self._links.values() if not link.lost]
            every = min((link.lease_s for link in links), default=1.0) / 4
            for link, error in zip(links, self._pool.map(self._beat_one, links), strict=True):
                silent = time.monotonic() - link.last_ok
                if error is not None and silent >= link.lease_s / 2:
                    self._mark_lost(link, f"no answer for {silent:.1f} s ({error})")
            self._stop.wait(every)

    def _beat_one(self, link: _Link) -> str | None:
        try:
            self._post(link, "/v1/lease", {})
        except AgentError as exc:
            return str(exc)
        return None

    # -- faults ----------------------------------------------------------------------------
    def inject(self, agent: str, faults: Sequence[Any]) -> list[RemoteFault]:
        """Put ``faults`` in place on ``agent`` (all or none)."""
        return self.inject_placed([(agent, f) for f in faults])

    def inject_placed(self, placed: Sequence[tuple[str, Any]]) -> list[RemoteFault]:
        """Put each fault on its agent, the agents at once; all or none across agents."""
        from tenfold.chaos_engine._faults import fault_to_dict

        groups: dict[str, list[Any]] = {}
        for agent, fault in placed:
            if agent not in self._links:
                raise AgentError(f"no agent named {agent!r} (known: {', '.join(self._links)})")
            groups.setdefault(agent, []).append(fault)

        def send(item: tuple[str, list[Any]]) -> list[RemoteFault] | BaseException:
            agent, faults = item
            body = {"faults": [{"kind": f.kind, "params": fault_to_dict(f)} for f in faults]}
            link = self._links[agent]
            try:
                answer = self._post(link, "/v1/faults", body)
            except AgentLost as exc:
                self._mark_lost(link, str(exc))
                return exc
            except AgentError as exc:
                return exc
            return [
                RemoteFault(agent, str(a["id"]), f, float(a["deadline"]), self)
                for a, f in zip(answer.get("faults", []), faults, strict=True)
            ]

        results = list(self._pool.map(send, groups.items()))
        done = [r for result in results if isinstance(result, list) for r in result]
        with self._lock:
            self._held.update({(r.agent, r.fault_id): r for r in done})
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            with contextlib.suppress(AgentError):
                self.revert(done)
            raise failed[0]
        return done

    def revert(self, faults: Sequence[RemoteFault]) -> int:
        """Revert ``faults`` on their agents (lost agents revert theirs by themselves)."""
        groups: dict[str, list[str]] = {}
        for fault in faults:
            if not fault.reverted:
                groups.setdefault(fault.agent, []).append(fault.fault_id)

        def send(item: tuple[str, list[str]]) -> int:
            agent, ids = item
            link = self._links[agent]
            if link.lost:
                return 0
            try:
                n = int(self._post(link, "/v1/revert", {"ids": ids}).get("reverted", 0))
            except AgentLost as exc:
                self._mark_lost(link, str(exc))
                return 0
            with self._lock:
                for fault_id in ids:
                    held = self._held.pop((agent, fault_id), None)
                    if held is not None:
                        held.reverted = True
            return n

        return sum(self._pool.map(send, groups.items()))

    def revert_all(self) -> int:
        """Revert every fault on every agent still answering; return how many."""

        def send(link: _Link) -> int:
            if link.lost:
                return 0
            try:
                n = int(self._post(link, "/v1/revert", {}).get("reverted", 0))
            except AgentLost as exc:
                self._mark_lost(link, str(exc))
                return 0
            with self._lock:
                for key in [k for k in self._held if k[0] == link.ref.name]:
                    self._held.pop(key).reverted = True
            return n

        return sum(self._pool.map(send, list(self._links.values())))

    def status(self) -> dict[str, dict[str, Any]]:
        """Each agent's status (``{"lost": why}`` for a lost one)."""
        out: dict[str, dict[str, Any]] = {}
        for name, link in self._links.items():
            if link.lost:
                out[name] = {"lost": link.lost}
                continue
            try:
                out[name] = link.client.get("/v1/status").json()
            except Exception as exc:  # reported, not raised
                out[name] = {"error": str(exc)}
        return out


class ClusterEngine:
    """A local engine plus a controller, in the shape ``run_experiment`` drives.

    Faults without an agent go to the local engine; faults with one go to their
    agent. ``failures`` returns when an agent is lost, which aborts the run.
    """

    def __init__(self, local: Any, controller: Controller) -> None:
        self.local = local
        self.controller = controller
        self.monitor = local.monitor

    async def inject_faults(self, faults: Sequence[Any]) -> list[Any]:
        return list(await self.local.inject_faults(faults))

    async def inject_placed(self, placed: Sequence[tuple[str, Any]]) -> list[Any]:
        here = [f for agent, f in placed if not agent]
        there = [(agent, f) for agent, f in placed if agent]
        handles: list[Any] = []
        if there:
            handles += await asyncio.to_thread(self.controller.inject_placed, there)
        if here:
            try:
                handles += await self.local.inject_faults(here)
            except BaseException:
                await asyncio.to_thread(self.controller.revert, handles)
                raise
        return handles

    async def revert_all(self) -> int:
        remote = await asyncio.to_thread(self.controller.revert_all)
        return int(await self.local.revert_all()) + remote

    async def failures(self) -> str:
        """Wait until an agent is lost; its name and why."""
        while True:
            why = await asyncio.to_thread(self.controller.wait_lost, 0.5)
            if why is not None:
                return why
