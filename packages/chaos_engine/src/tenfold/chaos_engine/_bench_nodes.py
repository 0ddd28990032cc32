"""Chaos Engine benchmark across nodes: faults per second at 1, 2, 4 and 8 agents.

A node is a network namespace on a bridge plus a cgroup with 1/8 of a core
(``cpu.cfs_quota_us`` 12.5 ms per 100 ms) and 256 MiB (:mod:`tenfold.core.nodes`);
every size gives each node the same budget, so the scaling factor shows what
coordination costs. Ours: a ``tenfold chaos agent`` per node (started before
the timer, as a daemon is) driven by one controller over mutual TLS; the peer:
a Chaos Toolkit ``chaos run`` per node (started before the timer too, held at a
barrier) whose actions make the same nft table per fault with the ``nft``
command. On both sides one fault is a 10% packet-loss table on the loopback of
the node's namespace, counted once a UDP burst on that node's loopback loses a datagram
(seen from the bench process, outside the tool) and, after the revert, once a
burst arrives whole; the nodes work at once.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tenfold.chaos_engine._bench_common import PacketDrop, UdpProbe, wait_until
from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Subject
from tenfold.core.declare import scaling_seed
from tenfold.core.errors import BenchError

NODE_CPU = 0.125
NODE_MEMORY_MB = 256
NODES = {1: "1 Node", 2: "2 Nodes", 4: "4 Nodes", 8: "8 Nodes"}
PEER_ROUNDS = 24
"""Rounds the Chaos Toolkit experiment holds (more than any mode times, warm-up included)."""
PEER_RULES = (
    "add table inet peer_0\n"
    "add chain inet peer_0 out { type filter hook output priority 0; policy accept; }\n"
    'add rule inet peer_0 out oifname "lo" numgen random mod 10000 < 1000 drop\n'
)
"""The same rule as ours (``PacketLoss(percent=10, interface="lo")``): loss on the node's
loopback, where the probe is, so the tools' own traffic over the bridge is not hit."""
NODE_TEXT = (
    "a node is a network namespace on a bridge plus a cgroup of 1/8 core and 256 MiB, the "
    "same at every size"
)


def _faults_per_round(ctx: BenchContext) -> int:
    return ctx.size(2, 8, 30)


def _nodes(ctx: BenchContext, count: int) -> Any:
    """The nodes, with an agent in each, and a loss probe per node (shared by both sides)."""
    from tenfold.chaos_engine._agentnodes import AgentNodes

    def make() -> Any:
        an = AgentNodes(
            count,
            ctx.workdir / "nodes",
            cpu=NODE_CPU,
            memory_mb=NODE_MEMORY_MB,
            lease_s=30.0,
        )
        an.workdir.mkdir(parents=True, exist_ok=True)
        ctx.enter(an)
        probes = [UdpProbe(node.netns) for node in an.nodes]
        for probe in probes:
            ctx.callback(probe.close)
        an.probes = probes  # type: ignore[attr-defined]
        return an

    return ctx.once(f"agent-nodes-{count}", make)


def _check_sequential(done: list[list[float]], count: int, per: int) -> list[float]:
    if len(done) != count or any(len(d) != per for d in done):
        raise BenchError(
            f"expected {per} faults on each of {count} nodes, got {[len(d) for d in done]}"
        )
    return [x for d in done for x in d]


def _loss(netns: str) -> Any:
    from tenfold.chaos_engine._faults import PacketLoss

    return PacketLoss(netns=netns, percent=10, interface="lo", duration_s=30)


def _ours(count: int) -> Any:
    def prepare(ctx: BenchContext) -> Op:
        an = _nodes(ctx, count)
        controller = ctx.enter(an.controller(timeout_s=60))
        per = _faults_per_round(ctx)
        netns = [node.netns for node in an.nodes]
        names = an.names()
        # Provision each agent's slot (its watchdog, its namespace thread) before the timer.
        controller.revert(
            controller.inject_placed([(n, _loss(ns)) for n, ns in zip(names, netns, strict=True)])
        )
        pool = ctx.enter(ThreadPoolExecutor(count))

        def one_node(i: int) -> list[float]:
            fx = PacketDrop(an.probes[i])
            lat: list[float] = []
            for _ in range(per):
                t0 = time.perf_counter()
                (fault,) = controller.inject(names[i], [_loss(netns[i])])
                wait_until(fx.seen, f"ours: a packet dropped on node {i}")
                fault.revert()
                wait_until(fx.cleared, f"ours: no packet dropped on node {i} after revert")
                lat.append((time.perf_counter() - t0) * 1000)
            return lat

        def op() -> Outcome:
            lat = _check_sequential(list(pool.map(one_node, range(count))), count, per)
            if controller.lost():
                raise BenchError(f"ours lost agents: {controller.lost()}")
            active = sum(s.get("active", 0) for s in controller.status().values())
            if active:
                raise BenchError(f"ours: {active} faults still active after the round")
            return _round_outcome(lat, count)

        return op

    return prepare


class _Barrier:
    """The bench side of the Chaos Toolkit handshakes: one TCP server on the bridge."""

    def __init__(self, an: Any, per: int) -> None:
        self.an = an
        self.per = per
        self.ready: dict[int, set[int]] = {}
        self.release: dict[int, threading.Event] = {}
        self.clears: dict[int, list[list[float]]] = {}
        self.cond = threading.Condition()
        self.sock = socket.create_server((an.nodes.host_address, 0))
        self.port = self.sock.getsockname()[1]
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _event(self, rnd: int) -> threading.Event:
        with self.cond:
            return self.release.setdefault(rnd, threading.Event())

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                what, node, rnd = conn.makefile("rb").readline().decode().split()
                i, r = int(node), int(rnd)
                if what == "ready":
                    with self.cond:
                        self.ready.setdefault(r, set()).add(i)
                        self.cond.notify_all()
                    self._event(r).wait()
                else:
                    fx = PacketDrop(self.an.probes[i])
                    if what == "seen":
                        wait_until(fx.seen, f"peer: a packet dropped on node {i}")
                    else:
                        wait_until(fx.cleared, f"peer: no packet dropped on node {i} after revert")
                        with self.cond:
                            self.clears[r][i].append(time.perf_counter())
                            self.cond.notify_all()
                conn.sendall(b"ok\n")
            except Exception as exc:  # the peer's run fails; the op reports it
                with self.cond:
                    self.errors.append(str(exc))
                    self.cond.notify_all()
                with contextlib.suppress(OSError):
                    conn.sendall(b"error\n")

    def wait_ready(self, rnd: int, timeout_s: float) -> None:
        with self.cond:
            if not self.cond.wait_for(
                lambda: self.errors or len(self.ready.get(rnd, ())) == self.an.nodes.count,
                timeout_s,
            ):
                raise BenchError(f"peer: Chaos Toolkit not at round {rnd} within {timeout_s:g} s")
            if self.errors:
                raise BenchError(f"peer: {self.errors[0]}")

    def run_round(self, rnd: int, timeout_s: float) -> list[float]:
        count = self.an.nodes.count
        self.wait_ready(rnd, timeout_s)
        with self.cond:
            self.clears[rnd] = [[] for _ in range(count)]
        t0 = time.perf_counter()
        self._event(rnd).set()
        with self.cond:
            done = self.cond.wait_for(
                lambda: self.errors or all(len(c) == self.per for c in self.clears[rnd]), timeout_s
            )
            if self.errors:
                raise BenchError(f"peer: {self.errors[0]}")
            if not done:
                raise BenchError(f"peer: round {rnd} not done within {timeout_s:g} s")
            stamps = [list(c) for c in self.clears[rnd]]
        lat: list[float] = []
        for node in stamps:
            last = t0
            for stamp in node:
                lat.append((stamp - last) * 1000)
                last = stamp
        return lat

    def close(self) -> None:
        self.sock.close()
        for event in list(self.release.values()):
            event.set()


def _ctk_experiment(path: Path, index: int, host: str, port: int, per: int, rules: Path) -> None:
    def handshake(what: str, rnd: int, n: int) -> dict[str, Any]:
        return {
            "type": "action",
            "name": f"{what}-{rnd}-{n}",
            "provider": {
                "type": "python",
                "module": "tenfold.chaos_engine._nodeprobe",
                "func": "handshake",
                "arguments": {"host": host, "port": port, "what": f"{what} {index} {rnd}"},
            },
        }

    def nft(name: str, args: list[str]) -> dict[str, Any]:
        return {
            "type": "action",
            "name": name,
            "provider": {"type": "process", "path": "nft", "arguments": args},
        }

    method: list[dict[str, Any]] = []
    for rnd in range(PEER_ROUNDS):
        method.append(handshake("ready", rnd, 0))
        for n in range(per):
            method += [
                nft(f"inject-{rnd}-{n}", ["-f", str(rules)]),
                handshake("seen", rnd, n),
                nft(f"revert-{rnd}-{n}", ["delete", "table", "inet", "peer_0"]),
                handshake("cleared", rnd, n),
            ]
    path.write_text(
        json.dumps(
            {
                "title": f"packet loss on node {index}",
                "description": "generated for the nodes benchmark",
                "method": method,
            }
        )
    )


def _peer(count: int) -> Any:
    def prepare(ctx: BenchContext) -> Op:
        chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
        if not Path(chaos).exists():
            raise BenchError("chaostoolkit's `chaos` command is not installed")
        if shutil.which("nft") is None:
            raise BenchError("nft is not installed")
        an = _nodes(ctx, count)
        per = _faults_per_round(ctx)
        barrier = _Barrier(an, per)
        ctx.callback(barrier.close)
        rules = ctx.workdir / "peer-loss.nft"
        rules.write_text(PEER_RULES)
        procs = []
        for i, node in enumerate(an.nodes):
            exp = ctx.workdir / f"ctk-node{i}.json"
            _ctk_experiment(exp, i, an.nodes.host_address, barrier.port, per, rules)
            argv = [chaos, "--no-version-check", "--no-log-file", "run"]
            argv += ["--journal-path", str(ctx.workdir / f"ctk-journal{i}.json"), str(exp)]
            procs.append(
                node.spawn(
                    argv, cwd=ctx.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )

        def stop() -> None:
            for proc in procs:
                proc.kill()
                proc.wait()

        ctx.callback(stop)
        barrier.wait_ready(0, 300)  # Chaos Toolkit's start-up, before the timer
        rounds = iter(range(PEER_ROUNDS))

        def op() -> Outcome:
            rnd = next(rounds, None)
            if rnd is None:
                raise BenchError(f"peer: the experiment holds only {PEER_ROUNDS} rounds")
            lat = barrier.run_round(rnd, 300)
            if any(proc.poll() is not None for proc in procs):
                raise BenchError("peer: a Chaos Toolkit run ended early")
            return _round_outcome(lat, count)

        return op

    return prepare


def _round_outcome(lat: list[float], count: int) -> Outcome:
    """One round across ``count`` nodes: a fault per latency, the round's median beside it."""
    return Outcome(
        len(lat),
        {"nodes": count, "p50_ms": round(statistics.median(lat), 3)},
        lat,
        result=True,
    )


def node_scenarios() -> list[Scenario]:
    """``agents_faults_<N>_nodes``: the Horizontal Scaling rows of the Chaos Engine."""
    return [
        Scenario(
            name=f"agents_faults_{n}_nodes",
            unit="faults",
            ours=Subject(f"tenfold: controller + {n} agent(s), mutual TLS", _ours(n)),
            peer=Subject(f"chaostoolkit 1.19: chaos run per node, {n} node(s)", _peer(n)),
            seed=scaling_seed("Horizontal Scaling", "Chaos Engine", n),
            table="Horizontal Scaling",
            row=f"Chaos Engine, {NODES[n].lower()}",
            doc_row="Chaos Engine",
            counts=(
                f"packet-loss faults across {n} node(s) at once ({NODE_TEXT}): each made in the "
                "node's namespace, counted once a UDP burst there loses a datagram and, after "
                "the revert, once a burst arrives whole; latency per fault on its node"
            ),
            rounds=3,
            full_rounds=3,
            needs_root=True,
            modes=("smoke", "quick", "full") if n <= 2 else ("full",),
            fairness=(
                "the same nodes, the same nft table per fault, the same outside observation "
                "(the bench process, polling every 0.2 ms) on both sides, both tools started "
                "before the timer; ours sends each fault to the node's agent over mutual TLS "
                "(journal record, libnftables), the peer's Chaos Toolkit run in each node "
                "starts the nft command per fault (its process action) and waits on the bench "
                "between actions"
            ),
            checks=(
                "each fault counts only once its effect is seen from outside and, after the "
                "revert, seen gone (the row fails otherwise); ours must end each round with no "
                "fault active on any agent and no agent lost"
            ),
        )
        for n in NODES
    ]
