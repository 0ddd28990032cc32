"""Benchmark scenarios of the Chaos Engine, beside the tools a Python user would otherwise run.

What each row counts, honestly:

* OS-plane rows (CPU, memory, network, disk fault injection) time one fault
  *injected and reverted* through the engine — admission, a journal record
  written before the kernel change, the kernel change, the revert — into
  pre-provisioned slots (a pre-started worker pool in a quota'd cgroup; an nft
  table in a namespace whose helper thread already exists). Their peers start a process per fault
  (stress-ng for the hogs; the ``nft``/``sh`` commands a Chaos Toolkit
  ``process`` action would run): those count *spawns*.
* "Fault decisions" counts data-plane decisions applied in process and seen
  by the caller (a raise at a fault point), a different figure again.
* Nothing counts queue enqueues.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Seed, Subject
from tenfold.core.errors import BenchError

T = TypeVar("T")
THROUGHPUT = "Throughput Benchmarks"
RUN = f"{os.getpid() % 100000}"
"""Kernel object names carry the bench process's id: another run (a CI check in another
checkout) on the same machine must not meet our cgroups or namespaces."""
NETNS = f"tfchaos_bench{RUN}"
EXPERIMENT = f"bench{RUN}"


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


def _loop(ctx: BenchContext) -> asyncio.AbstractEventLoop:
    def make() -> asyncio.AbstractEventLoop:
        import uvloop

        loop = uvloop.new_event_loop()
        ctx.callback(loop.close)
        return loop

    return ctx.once("loop", make)


def _run(ctx: BenchContext, coro: Coroutine[Any, Any, T]) -> T:
    return _loop(ctx).run_until_complete(coro)


def _engine(ctx: BenchContext, **perf: int) -> Any:
    from tenfold.chaos_engine._config import PerformanceConfig
    from tenfold.chaos_engine._engine import ChaosEngine
    from tenfold.chaos_engine._points import FaultPoints

    def make() -> Any:
        engine = _run(
            ctx,
            ChaosEngine.create(
                PerformanceConfig.model_validate(perf),
                journal_dir=ctx.workdir / "journal",
                experiment=EXPERIMENT,
                points=FaultPoints(seed=ctx.seed),
            ),
        )
        ctx.callback(lambda: _run(ctx, engine.close()))
        return engine

    return ctx.once(f"engine{sorted(perf.items())}", make)


def _inject_revert_op(ctx: BenchContext, make_fault: Callable[[int], Any], n: int) -> Op:
    """``n`` sequential inject + revert through the engine; per-fault latencies from inside."""
    engine = _engine(ctx)
    _run(ctx, _one(engine, make_fault(0)))  # provisions the slot (pool, namespace thread)

    async def batch() -> Outcome:
        lat: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            await _one(engine, make_fault(i))
            lat.append((time.perf_counter() - t0) * 1000)
        return Outcome(n, {"inject_revert_p99_ms": round(_percentile(lat, 99), 3)}, lat)

    return lambda: _run(ctx, batch())


async def _one(engine: Any, fault: Any) -> None:
    handle = await engine.inject_fault(fault)
    await handle.revert()


def _spawn_op(argv_for: Callable[[int], list[list[str]]], n: int, settle_s: float = 0.0) -> Op:
    """``n`` faults the way a process-per-fault tool does them: spawn, (run), stop."""

    def op() -> Outcome:
        lat: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            for argv in argv_for(i):
                if argv[0] == "@spawn":
                    proc = subprocess.Popen(argv[1:], stdout=subprocess.DEVNULL)
                    if settle_s:
                        time.sleep(settle_s)
                    proc.terminate()
                    proc.wait()
                else:
                    subprocess.run(argv, check=True, capture_output=True)
            lat.append((time.perf_counter() - t0) * 1000)
        return Outcome(n, {}, lat)

    return op


def _need_tool(name: str) -> None:
    if shutil.which(name) is None:
        raise BenchError(f"{name} is not installed")


# -- CPU -----------------------------------------------------------------------------------


def _cpu_accuracy(ctx: BenchContext) -> float:
    """Share of the asked core a 0.5 s CpuHog really burned, from the pool's cpuacct."""
    from tenfold.chaos_engine._faults import CpuHog
    from tenfold.chaos_engine._kernel import cgroup_dir

    engine = _engine(ctx)

    async def measure() -> float:
        handle = await engine.inject_fault(CpuHog(duration_s=5))
        usage = cgroup_dir("cpuacct", engine.object_name("pool")) / "cpuacct.usage"
        before, t0 = int(usage.read_text()), time.perf_counter()
        await asyncio.sleep(0.5)
        burned = (int(usage.read_text()) - before) / 1e9
        elapsed = time.perf_counter() - t0
        await handle.revert()
        return burned / elapsed

    return round(_run(ctx, measure()), 3)


def _ours_cpu(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import CpuHog

    op = _inject_revert_op(ctx, lambda i: CpuHog(duration_s=1), ctx.size(20, 100, 5000))
    accuracy = _cpu_accuracy(ctx)

    def timed() -> Outcome:
        out = cast(Outcome, op())
        return Outcome(out.ops, {**out.metrics, "cpu_accuracy": accuracy}, out.latencies_ms)

    return timed


def _peer_cpu(ctx: BenchContext) -> Op:
    _need_tool("stress-ng")
    n = ctx.size(2, 8, 100)
    return _spawn_op(lambda i: [["@spawn", "stress-ng", "--cpu", "1", "--quiet"]], n, 0.01)


# -- memory ----------------------------------------------------------------------------------


def _ours_memory(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import MemoryHog

    return _inject_revert_op(
        ctx, lambda i: MemoryHog(size_bytes=1 << 20, duration_s=1), ctx.size(20, 100, 5000)
    )


def _peer_memory(ctx: BenchContext) -> Op:
    _need_tool("stress-ng")
    argv = ["@spawn", "stress-ng", "--vm", "1", "--vm-bytes", "1M", "--vm-keep", "--quiet"]
    return _spawn_op(lambda i: [argv], ctx.size(2, 8, 100), 0.01)


# -- network ---------------------------------------------------------------------------------


def _netns(ctx: BenchContext) -> str:
    def make() -> str:
        subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
        ctx.callback(
            lambda: subprocess.run(
                ["ip", "netns", "delete", NETNS], capture_output=True, check=False
            )
        )
        return NETNS

    return ctx.once("netns", make)


def _ours_network(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import PacketLoss

    netns = _netns(ctx)
    return _inject_revert_op(
        ctx, lambda i: PacketLoss(netns=netns, percent=10, duration_s=5), ctx.size(20, 100, 5000)
    )


def _peer_network(ctx: BenchContext) -> Op:
    _need_tool("nft")
    netns = _netns(ctx)
    rules = (
        "add table inet peer_{i}\n"
        "add chain inet peer_{i} out {{ type filter hook output priority 0; policy accept; }}\n"
        "add rule inet peer_{i} out numgen random mod 10000 < 1000 drop\n"
    )
    script = ctx.workdir / "peer.nft"

    def argv(i: int) -> list[list[str]]:
        script.write_text(rules.format(i=i % 1000))
        exec_ = ["ip", "netns", "exec", netns]
        return [
            [*exec_, "nft", "-f", str(script)],
            [*exec_, "nft", "delete", "table", "inet", f"peer_{i % 1000}"],
        ]

    return _spawn_op(argv, ctx.size(2, 10, 400))


BATCH = 50


def _ours_network_batch(ctx: BenchContext) -> Op:
    """Batches of 50 PacketLoss faults: one journal write and one nft transaction per batch."""
    from tenfold.chaos_engine._faults import PacketLoss

    netns = _netns(ctx)
    engine = _engine(ctx)
    _run(ctx, _one(engine, PacketLoss(netns=netns, percent=10, duration_s=5)))  # the slot
    batches = ctx.size(1, 4, 40)

    async def run() -> Outcome:
        lat: list[float] = []
        for _ in range(batches):
            faults = [PacketLoss(netns=netns, percent=10, duration_s=5) for _ in range(BATCH)]
            t0 = time.perf_counter()
            await engine.inject_faults(faults)
            await engine.revert_all()
            lat.append((time.perf_counter() - t0) * 1000)
        metrics: dict[str, float | str] = {"batch_p50_ms": round(statistics.median(lat), 3)}
        return Outcome(batches * BATCH, metrics, [ms / BATCH for ms in lat])

    return lambda: _run(ctx, run())


def _peer_network_batch(ctx: BenchContext) -> Op:
    _need_tool("nft")
    netns = _netns(ctx)
    add, delete = ctx.workdir / "peer-add.nft", ctx.workdir / "peer-del.nft"
    add.write_text(
        "".join(
            f"add table inet peerb_{i}\n"
            f"add chain inet peerb_{i} out {{ type filter hook output priority 0; policy accept; }}\n"
            f"add rule inet peerb_{i} out numgen random mod 10000 < 1000 drop\n"
            for i in range(BATCH)
        )
    )
    delete.write_text("".join(f"delete table inet peerb_{i}\n" for i in range(BATCH)))
    exec_ = ["ip", "netns", "exec", netns, "nft", "-f"]
    op = _spawn_op(lambda i: [[*exec_, str(add)], [*exec_, str(delete)]], ctx.size(1, 4, 40))

    def per_fault() -> Outcome:
        out = cast(Outcome, op())
        return Outcome(out.ops * BATCH, {}, [ms / BATCH for ms in out.latencies_ms or []])

    return per_fault


# -- disk ------------------------------------------------------------------------------------------


def _sleeper(ctx: BenchContext) -> int:
    def make() -> int:
        proc = subprocess.Popen(["sleep", "3600"])

        def stop() -> None:
            proc.kill()
            proc.wait()

        ctx.callback(stop)
        return proc.pid

    return ctx.once("sleeper", make)


def _ours_disk(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import DiskThrottle

    pid, path = _sleeper(ctx), str(ctx.workdir)
    return _inject_revert_op(
        ctx, lambda i: DiskThrottle(pid=pid, path=path, duration_s=5), ctx.size(20, 100, 3000)
    )


def _peer_disk(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._os_disk import _block_device

    pid, device = _sleeper(ctx), _block_device(str(ctx.workdir))
    base = "/sys/fs/cgroup/blkio/tenfold/tfchaos_peer"
    inject = (
        f"mkdir -p {base} && echo '{device} 1048576' > {base}/blkio.throttle.read_bps_device"
        f" && echo {pid} > {base}/cgroup.procs"
    )
    revert = f"echo {pid} > /sys/fs/cgroup/blkio/cgroup.procs && rmdir {base}"
    return _spawn_op(lambda i: [["sh", "-c", inject], ["sh", "-c", revert]], ctx.size(2, 10, 400))


# -- monitoring ------------------------------------------------------------------------------------


def _ours_monitoring(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import CpuHog

    engine = _engine(ctx)
    _run(ctx, _one(engine, CpuHog(duration_s=1)))  # a pool, so there are cgroup stats to read
    n = ctx.size(100, 1000, 50000)

    def op() -> int:
        for _ in range(n):
            engine.collect_metrics().prometheus()
        return n

    return op


def _peer_monitoring(ctx: BenchContext) -> Op:
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    from tenfold.chaos_engine._monitor import KernelFiles, read_psi

    files = KernelFiles()  # the same kept-open reads as ours: the difference is the recording
    ctx.callback(files.close)
    registry = CollectorRegistry()
    psi = Gauge("psi_some_avg10", "PSI", ["resource"], registry=registry)
    active = Gauge("faults_active", "active faults", registry=registry)
    pool = f"/sys/fs/cgroup/cpuacct/tenfold/tfchaos_{EXPERIMENT}_pool/cpuacct.usage"
    usage = Gauge("pool_cpu_usage_ns", "pool CPU", registry=registry)
    n = ctx.size(100, 1000, 50000)

    def op() -> int:
        for _ in range(n):
            for resource, value in read_psi(files=files).items():
                psi.labels(resource).set(value)
            active.set(0)
            text = files.read(pool)
            if text:
                usage.set(float(text))
            generate_latest(registry)
        return n

    return op


# -- data-plane decisions ---------------------------------------------------------------------------


def _ours_decisions(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import PointFault
    from tenfold.chaos_engine._points import FaultPoints
    from tenfold.chaos_engine.errors import InjectedFault

    engine = _engine(ctx)
    _run(ctx, engine.inject_fault(PointFault(point="bench.call", probability=0.1, duration_s=3600)))

    points: FaultPoints = engine.points

    @points.point("bench.call")
    def call(x: int) -> int:
        return x

    n = ctx.size(10_000, 200_000, 1_000_000)

    def op() -> Outcome:
        failed = 0
        for i in range(n):
            try:
                call(i)
            except InjectedFault:
                failed += 1
        return Outcome(n, {"observed_fault_ratio": round(failed / n, 4), "configured": 0.1})

    return op


# -- orchestration ------------------------------------------------------------------------------------


def _ctk_experiment(ctx: BenchContext, steps: int, name: str) -> Path:
    (ctx.workdir / "tfbench_steps.py").write_text("def step(i):\n    return i\n")
    experiment = {
        "title": f"{steps} steps",
        "description": "generated for the orchestration benchmark",
        "steady-state-hypothesis": {
            "title": "steps answer",
            "probes": [
                {
                    "type": "probe",
                    "name": "answers",
                    "tolerance": 0,
                    "provider": {
                        "type": "python",
                        "module": "tfbench_steps",
                        "func": "step",
                        "arguments": {"i": 0},
                    },
                }
            ],
        },
        "method": [
            {
                "type": "action",
                "name": f"step-{i}",
                "provider": {
                    "type": "python",
                    "module": "tfbench_steps",
                    "func": "step",
                    "arguments": {"i": i},
                },
            }
            for i in range(steps)
        ],
        "rollbacks": [],
    }
    path = ctx.workdir / name
    path.write_text(json.dumps(experiment))
    return path


def _orchestration(
    ctx: BenchContext,
    argv_for: Callable[[Path], list[str]],
    in_run: Callable[[str], tuple[float, int, str]],
) -> Op:
    """End to end (process start-up included) as the op; the tool's own run time as a metric.

    ``in_run`` reads how long the run itself took from the tool's output (ours:
    the ``--json`` report; Chaos Toolkit: its journal's ``duration``), both
    counting the steady-state checks and every step, neither the interpreter's
    start-up, plus how many steps ran and the final status: both tools must
    complete every step, or the figures are not comparable.
    """
    steps = ctx.size(50, 2000, 2000)
    big = ctx.once("ctk-big", lambda: _ctk_experiment(ctx, steps, "experiment.json"))
    tiny = ctx.once("ctk-tiny", lambda: _ctk_experiment(ctx, 1, "tiny.json"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ctx.workdir), *sys.path])}
    # Start-up as a user's installed tools have it, with cached bytecode, for both tools
    # (some shells export PYTHONDONTWRITEBYTECODE: every run would compile every module).
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run(path: Path, expect: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        argv = argv_for(path)
        proc = subprocess.run(
            argv, cwd=ctx.workdir, env=env, capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise BenchError(f"{' '.join(argv[:3])} failed: {tail}")
        inside, ran, status = in_run(proc.stdout)
        if ran != expect or status != "completed":
            raise BenchError(f"{argv[0]} ran {ran} of {expect} steps, status {status}")
        return elapsed, inside

    # the best of three one-step runs (the first may also write bytecode caches)
    startup_s = round(min(run(tiny, 1)[0] for _ in range(3)), 3)

    def op() -> Outcome:
        _, inside = run(big, steps)
        metrics: dict[str, float | str] = {
            "startup_s": startup_s,
            "in_run_steps_per_s": round(steps / inside) if inside else 0,
        }
        return Outcome(steps, metrics)

    return op


def _ours_run(report: dict[str, Any]) -> tuple[float, int, str]:
    return float(report["duration_s"]), int(report["steps"]), str(report["status"])


def _ctk_run(journal: dict[str, Any]) -> tuple[float, int, str]:
    return float(journal["duration"]), len(journal["run"]), str(journal["status"])


def _ours_orchestration(ctx: BenchContext) -> Op:
    journals = str(ctx.workdir / "j")
    return _orchestration(
        ctx,
        lambda p: (
            [
                sys.executable,
                "-m",
                "tenfold.chaos_engine",
                "run",
                str(p),
                "--json",
                "--journal-dir",
                journals,
            ]
        ),
        lambda out: _ours_run(json.loads(out)),
    )


def _peer_orchestration(ctx: BenchContext) -> Op:
    chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
    if not Path(chaos).exists():
        raise BenchError("chaostoolkit's `chaos` command is not installed")
    journal = ctx.workdir / "ctk-journal.json"
    return _orchestration(
        ctx,
        lambda p: (
            [
                chaos,
                "--no-version-check",
                "--no-log-file",
                "run",
                "--journal-path",
                str(journal),
                str(p),
            ]
        ),
        lambda out: _ctk_run(json.loads(journal.read_text())),
    )


# -- proxy ----------------------------------------------------------------------------------------------


class _Server:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tenfold.chaos_engine._proxyserve", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def close(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        rest = self.proc.stdout.read().strip()
        self.proc.wait(10)
        return json.loads(rest) if rest else {}


def _server(ctx: BenchContext, key: str, argv: list[str]) -> _Server:
    def make() -> _Server:
        server = _Server(argv)
        ctx.callback(server.close)
        return server

    return ctx.once(key, make)


async def _load(
    port: int, connections: int, per_conn: int, payload: bytes
) -> tuple[list[float], int]:
    """Ping-pong ``per_conn`` requests on each connection; reconnect after a reset."""
    lat: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(per_conn):
            t0 = time.perf_counter()
            try:
                writer.write(payload)
                await reader.readexactly(len(payload))
                lat.append((time.perf_counter() - t0) * 1000)
            except (ConnectionError, asyncio.IncompleteReadError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return lat, errors


def _proxy_op(ctx: BenchContext, role: str, fault: dict[str, Any] | None = None) -> Op:
    echo = _server(ctx, "echo", ["echo"])
    if role == "direct":
        port = echo.port
    else:
        argv = [role, str(echo.port)] + ([json.dumps(fault)] if fault else [])
        port = _server(ctx, f"{role}{fault}", argv).port
    slow = fault is not None and fault["kind"] == "proxy_latency"  # a round trip is >= 20 ms
    connections = 32 if slow else 16
    per_conn = ctx.size(5, 25, 200) if slow else ctx.size(20, 300, 5000)
    payload = b"x" * 64

    def op() -> Outcome:
        lat, errors = _run(ctx, _load(port, connections, per_conn, payload))
        total = connections * per_conn
        metrics: dict[str, float | str] = {"error_ratio": round(errors / total, 4)}
        if fault and fault["kind"] == "proxy_latency":
            target = fault["latency_ms"]
            metrics["latency_error_p50_ms"] = round(statistics.median(lat) - target, 3)
            metrics["latency_error_p99_ms"] = round(_percentile(lat, 99) - target, 3)
        return Outcome(total, metrics, lat)

    return op


def _direct_rate(ctx: BenchContext) -> float:
    op = _proxy_op(ctx, "direct")
    op()
    t0 = time.perf_counter()
    out = cast(Outcome, op())
    return round(out.ops / (time.perf_counter() - t0))


def _ours_proxy(ctx: BenchContext) -> Op:
    direct = ctx.once("direct", lambda: _direct_rate(ctx))
    op = _proxy_op(ctx, "proxy")

    def timed() -> Outcome:
        out = cast(Outcome, op())
        return Outcome(out.ops, {**out.metrics, "direct_req_per_s": direct}, out.latencies_ms)

    return timed


def _peer_proxy(ctx: BenchContext) -> Op:
    return _proxy_op(ctx, "raw")


def _ours_proxy_latency(ctx: BenchContext) -> Op:
    fault = {
        "kind": "proxy_latency",
        "proxy": "bench",
        "latency_ms": 20,
        "direction": "downstream",
        "duration_s": 86400,
    }
    return _proxy_op(ctx, "proxy", fault)


def _ours_proxy_loss(ctx: BenchContext) -> Op:
    fault = {
        "kind": "proxy_loss",
        "proxy": "bench",
        "probability": 0.1,
        "direction": "upstream",
        "duration_s": 86400,
    }
    return _proxy_op(ctx, "proxy", fault)


# -- network latency (NFQUEUE) -----------------------------------------------------------------------------

LAT_A, LAT_B = f"tfchaos_latA{RUN}", f"tfchaos_latB{RUN}"
LAT_ADDR_B = "10.215.0.2"
VETH_PEER = ("peer", "name", "tflatB", "netns", LAT_B)
ECHO_IN_B = ("tenfold.chaos_engine._proxyserve", "echo", "0.0.0.0")
LATENCY_MS = 20.0


def _latency_pair(ctx: BenchContext) -> int:
    """Namespaces A and B on a veth pair, a TCP echo server in B; returns its port."""

    def make() -> int:
        commands = [
            ["ip", "netns", "add", LAT_A],
            ["ip", "netns", "add", LAT_B],
            ["ip", "link", "add", "tflatA", "netns", LAT_A, "type", "veth", *VETH_PEER],
            ["ip", "-n", LAT_A, "addr", "add", "10.215.0.1/24", "dev", "tflatA"],
            ["ip", "-n", LAT_B, "addr", "add", f"{LAT_ADDR_B}/24", "dev", "tflatB"],
            ["ip", "-n", LAT_A, "link", "set", "tflatA", "up"],
            ["ip", "-n", LAT_B, "link", "set", "tflatB", "up"],
        ]

        def delete(ns: str) -> None:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)

        for ns in (LAT_A, LAT_B):
            delete(ns)
            ctx.callback(functools.partial(delete, ns))
        for argv in commands:
            subprocess.run(argv, check=True, capture_output=True)
        server = subprocess.Popen(
            ["ip", "netns", "exec", LAT_B, sys.executable, "-m", *ECHO_IN_B],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def stop() -> None:
            server.kill()
            server.wait()

        ctx.callback(stop)
        assert server.stdout is not None
        return int(server.stdout.readline())

    return ctx.once("latency_pair", make)


def _sockets_in(netns: str, address: tuple[str, int], count: int) -> list[Any]:
    """``count`` TCP connections opened from inside ``netns`` (a socket keeps its namespace)."""
    import socket
    import threading

    from tenfold.chaos_engine._kernel import setns_net

    made: list[socket.socket] = []
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            setns_net(netns)  # this thread only; it ends right after
            for _ in range(count):
                sock = socket.create_connection(address, timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                made.append(sock)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=connect)
    thread.start()
    thread.join()
    if errors:
        raise BenchError(f"connect from {netns}: {errors[0]}")
    return made


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _streams(socks: list[Any]) -> list[Stream]:
    return [await asyncio.open_connection(sock=sock) for sock in socks]


async def _round_trips(streams: list[Stream], per_conn: int) -> list[float]:
    lat: list[float] = []
    payload = b"x" * 64

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(per_conn):
            t0 = time.perf_counter()
            writer.write(payload)
            await reader.readexactly(len(payload))
            lat.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(client(*stream) for stream in streams))
    return lat


def _accuracy(lat: list[float], asked_ms: float) -> dict[str, float | str]:
    return {
        "asked_ms": asked_ms,
        "observed_p50_ms": round(statistics.median(lat), 3),
        "observed_p99_ms": round(_percentile(lat, 99), 3),
        "latency_error_p50_ms": round(statistics.median(lat) - asked_ms, 3),
        "latency_error_p99_ms": round(_percentile(lat, 99) - asked_ms, 3),
    }


def _ours_network_latency(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import NetworkLatency

    port = _latency_pair(ctx)
    engine = _engine(ctx)
    fault = NetworkLatency(netns=LAT_A, interface="tflatA", latency_ms=LATENCY_MS, duration_s=3600)
    ctx.once("latency_fault", lambda: _run(ctx, engine.inject_fault(fault)))
    connections, per_conn = 32, ctx.size(5, 25, 200)

    def connect() -> list[Stream]:
        # opened once, outside the timer (each handshake waits in the queue too)
        streams = _run(ctx, _streams(_sockets_in(LAT_A, (LAT_ADDR_B, port), connections)))

        def close() -> None:
            for _, writer in streams:
                writer.close()

        ctx.callback(close)
        return streams

    streams = ctx.once("latency_streams", connect)

    def op() -> Outcome:
        lat = _run(ctx, _round_trips(streams, per_conn))
        return Outcome(len(lat), _accuracy(lat, LATENCY_MS), lat)

    return op


def _peer_network_latency(ctx: BenchContext) -> Op:
    fault = {
        "kind": "proxy_latency",
        "proxy": "bench",
        "latency_ms": LATENCY_MS,
        "direction": "downstream",
        "duration_s": 86400,
    }
    op = _proxy_op(ctx, "proxy", fault)

    def timed() -> Outcome:
        out = cast(Outcome, op())
        lat = list(out.latencies_ms or [])
        return Outcome(out.ops, _accuracy(lat, LATENCY_MS), lat)

    return timed


def _ours_latency_inject(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import NetworkLatency

    _latency_pair(ctx)
    return _inject_revert_op(
        ctx,
        lambda i: NetworkLatency(
            netns=LAT_A, interface="tflatA", latency_ms=5, port=9000 + i % 1000, duration_s=5
        ),
        ctx.size(5, 40, 1000),
    )


def _peer_latency_inject(ctx: BenchContext) -> Op:
    _need_tool("iptables")
    _latency_pair(ctx)
    rule = ["POSTROUTING", "-o", "tflatA", "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"]
    exec_ = ["ip", "netns", "exec", LAT_A, "iptables", "-t", "mangle"]

    def argv(i: int) -> list[list[str]]:
        return [[*exec_, "-A", *rule], [*exec_, "-D", *rule]]

    return _spawn_op(argv, ctx.size(2, 10, 400))


# -- safety ------------------------------------------------------------------------------------------------


def _violation_op(ctx: BenchContext, fault_for: Callable[[int], dict[str, Any]], faults: int) -> Op:
    import types

    from tenfold.chaos_engine._experiment import experiment_from_dict, run_experiment

    module_name = f"tfbench_probe_{ctx.workdir.name}"  # one per scenario: providers are cached
    module = types.ModuleType(module_name)
    state = {"bad": 0}
    module.health = lambda: state["bad"]  # type: ignore[attr-defined]
    module.breaks = lambda: state.__setitem__("bad", 1)  # type: ignore[attr-defined]
    sys.modules[module_name] = module
    provider = {"type": "python", "module": module_name}
    experiment = experiment_from_dict(
        {
            "title": "violation",
            "steady_state": {
                "interval_s": 0.01,
                "probes": [
                    {
                        "name": "h",
                        "provider": {**provider, "func": "health"},
                        "tolerance": {"max": 0},
                    }
                ],
            },
            "method": [
                *(
                    {
                        "id": f"f{i}",
                        "fault": f["kind"],
                        "params": {k: v for k, v in f.items() if k != "kind"},
                    }
                    for i, f in enumerate(fault_for(i) for i in range(faults))
                ),
                {"id": "break", "action": {**provider, "func": "breaks"}},
                {"id": "wait", "pause_s": 5},
            ],
            "safety": {"max_faults": faults + 1},
        }
    )
    engine = _engine(ctx)

    def op() -> Outcome:
        state["bad"] = 0
        report = _run(ctx, run_experiment(experiment, engine))
        if report.status != "deviated" or engine.active_faults:
            raise BenchError(
                f"violation run ended {report.status} with {engine.active_faults} faults left"
            )
        ms = (report.violation_to_reverted_s or 0.0) * 1000
        return Outcome(
            1, {"faults_reverted": faults, "violation_to_reverted_ms": round(ms, 2)}, [ms]
        )

    return op


def _ours_violation_data(ctx: BenchContext) -> Op:
    return _violation_op(ctx, lambda i: {"kind": "point", "point": f"p{i}", "duration_s": 60}, 100)


def _ours_violation_os(ctx: BenchContext) -> Op:
    netns = _netns(ctx)
    return _violation_op(
        ctx, lambda i: {"kind": "packet_loss", "netns": netns, "percent": 5, "duration_s": 60}, 20
    )


# -- scalability ---------------------------------------------------------------------------------------------


def _ours_concurrent(level: int) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.chaos_engine._faults import PointFault

        engine = _engine(ctx, max_concurrent_faults=level + 100, fault_queue_size=level + 100)
        n = ctx.size(100, 500, 10000)

        async def batch() -> Outcome:
            held = await asyncio.gather(
                *(
                    engine.inject_fault(PointFault(point=f"s{i % 1000}", duration_s=3600))
                    for i in range(level)
                )
            )
            lat: list[float] = []
            for i in range(n):
                t0 = time.perf_counter()
                await _one(engine, PointFault(point=f"s{i % 1000}", duration_s=60))
                engine.points.decide(f"s{i % 1000}")
                lat.append((time.perf_counter() - t0) * 1000)
            await asyncio.gather(*(h.revert() for h in held))
            return Outcome(n, {"concurrent_faults": level}, lat)

        return lambda: _run(ctx, batch())

    return prepare


def scenarios() -> list[Scenario]:
    ours = "tenfold"
    stress = "stress-ng (spawn per fault)"
    rows = [
        Scenario(
            name="cpu_fault_inject",
            unit="faults",
            ours=Subject(ours, _ours_cpu),
            peer=Subject(stress, _peer_cpu),
            seed=Seed(ops_per_s=12_500, p50_ms=5.2, p95_ms=8.5, p99_ms=12.1),
            table=THROUGHPUT,
            row="CPU Fault Injection",
            rounds=3,
            counts="OS-plane CpuHog inject+revert into a pre-started worker pool in a quota'd cgroup (journal record written first); peer: stress-ng spawns",
            headline=True,
            needs_root=True,
        ),
        Scenario(
            name="memory_fault_inject",
            unit="faults",
            ours=Subject(ours, _ours_memory),
            peer=Subject(stress, _peer_memory),
            seed=Seed(ops_per_s=11_800, p50_ms=5.8, p95_ms=9.2, p99_ms=13.5),
            table=THROUGHPUT,
            row="Memory Fault Injection",
            rounds=3,
            counts="OS-plane 1 MiB MemoryHog (pages touched) inject+revert in the pool's memory cgroup; peer: stress-ng --vm spawns",
            needs_root=True,
        ),
        Scenario(
            name="network_fault_inject",
            unit="faults",
            ours=Subject(ours, _ours_network),
            peer=Subject("nft CLI per fault (a Chaos Toolkit process action)", _peer_network),
            seed=Seed(ops_per_s=10_200, p50_ms=6.5, p95_ms=10.8, p99_ms=15.2),
            table=THROUGHPUT,
            row="Network Fault Injection",
            rounds=3,
            counts="OS-plane PacketLoss: an nft table created and deleted in a network namespace (libnftables); peer: ip netns exec nft, twice",
            needs_root=True,
        ),
        Scenario(
            name="network_fault_inject_batch",
            unit="faults",
            ours=Subject(ours, _ours_network_batch),
            peer=Subject("nft -f per batch (a Chaos Toolkit process action)", _peer_network_batch),
            table=THROUGHPUT,
            row="Network Fault Injection, batches of 50",
            rounds=3,
            counts="OS-plane PacketLoss x50 through inject_faults (one journal write, one nft transaction) then revert_all, per fault; latency = batch time / 50; peer: ip netns exec nft -f with 50 tables, then a delete file",
            needs_root=True,
        ),
        Scenario(
            name="network_latency_inject",
            unit="faults",
            ours=Subject(ours, _ours_latency_inject),
            peer=Subject(
                "iptables CLI per fault (a Chaos Toolkit process action)", _peer_latency_inject
            ),
            table=THROUGHPUT,
            row="Network latency fault (NFQUEUE)",
            rounds=3,
            counts="OS-plane NetworkLatency inject+revert: journal record, a queue bound in the namespace's running delayer, an nft table (libnftables) holding an NFQUEUE rule (xt compat over netlink) made and deleted; peer: ip netns exec iptables -A then -D (no delayer)",
            needs_root=True,
        ),
        Scenario(
            name="disk_fault_inject",
            unit="faults",
            ours=Subject(ours, _ours_disk),
            peer=Subject("sh + cgroupfs per fault (a Chaos Toolkit process action)", _peer_disk),
            seed=Seed(ops_per_s=9_500, p50_ms=7.1, p95_ms=11.5, p99_ms=16.8),
            table=THROUGHPUT,
            row="Disk I/O Fault Injection",
            rounds=3,
            counts="OS-plane DiskThrottle: a blkio cgroup with read/write bps made, target moved in and back, removed (FUSE DiskError/DiskLatency rules are in the crash-recovery row)",
            needs_root=True,
        ),
        Scenario(
            name="fault_monitoring",
            unit="samples",
            ours=Subject(ours, _ours_monitoring),
            peer=Subject("prometheus_client", _peer_monitoring),
            seed=Seed(ops_per_s=50_000, p50_ms=0.5, p95_ms=1.2, p99_ms=2.1),
            table=THROUGHPUT,
            row="Fault Monitoring",
            rounds=3,
            counts="one sample: PSI + pool cgroup stats read, recorded in the ring, Prometheus text rendered",
            needs_root=True,
        ),
        Scenario(
            name="fault_decisions",
            unit="decisions",
            ours=Subject(ours, _ours_decisions),
            table=THROUGHPUT,
            row="Fault decisions (data plane)",
            counts="in-process fault-point decisions at p=0.1, applied and observed by the caller (raise)",
        ),
        Scenario(
            name="orchestration",
            unit="steps",
            ours=Subject(ours, _ours_orchestration),
            peer=Subject("chaostoolkit 1.19 (chaos run)", _peer_orchestration),
            table="Orchestration",
            row="Chaos Toolkit experiment, python-provider steps",
            counts="steps of one generated Chaos Toolkit experiment run end to end as a process (start-up included); ours through the import",
            rounds=2,
            full_rounds=5,
            warmup=0,
        ),
        Scenario(
            name="proxy_no_fault",
            unit="requests",
            ours=Subject(ours, _ours_proxy),
            peer=Subject("raw uvloop pass-through", _peer_proxy),
            table="Data plane",
            row="TCP proxy, no fault",
            counts="64-byte echo round trips over 16 connections through the proxy (client, proxy and echo server in 3 processes on 2 cores)",
            rounds=3,
        ),
        Scenario(
            name="proxy_latency_20ms",
            unit="requests",
            ours=Subject(ours, _ours_proxy_latency),
            table="Data plane",
            row="TCP proxy, 20 ms latency",
            counts="echo round trips with 20 ms downstream latency; latency error = observed - 20 ms",
            rounds=2,
        ),
        Scenario(
            name="network_latency_20ms",
            unit="requests",
            ours=Subject(ours, _ours_network_latency),
            peer=Subject("toxiproxy-style proxy latency toxic (our proxy)", _peer_network_latency),
            table="Data plane",
            row="Network latency 20 ms: asked vs observed",
            counts="64-byte echo round trips over 32 connections from namespace A to B with NetworkLatency(20 ms) on A's veth (NFQUEUE delayer); peer: the same round trips through a TCP proxy with a 20 ms downstream latency toxic; error = observed - 20 ms",
            rounds=2,
            needs_root=True,
        ),
        Scenario(
            name="proxy_loss_10pct",
            unit="requests",
            ours=Subject(ours, _ours_proxy_loss),
            table="Data plane",
            row="TCP proxy, 10% errors",
            counts="echo round trips with 10% of requests lost (connection reset); error_ratio is observed",
            rounds=3,
        ),
        Scenario(
            name="violation_to_reverted_data",
            unit="experiments",
            ours=Subject(ours, _ours_violation_data),
            table="Safety",
            row="Steady-state violation to last fault reverted (100 data-plane faults)",
            counts="one experiment: probe every 10 ms, violation, 100 point faults reverted",
            rounds=5,
        ),
        Scenario(
            name="violation_to_reverted_os",
            unit="experiments",
            ours=Subject(ours, _ours_violation_os),
            table="Safety",
            row="Steady-state violation to last fault reverted (20 nft faults)",
            counts="one experiment: probe every 10 ms, violation, 20 nft tables deleted",
            rounds=5,
            needs_root=True,
        ),
    ]
    for level, note in ((1000, "stable"), (5000, "+15% latency"), (10000, "+50% latency")):
        rows.append(
            Scenario(
                name=f"concurrent_faults_{level // 1000}k",
                unit="faults",
                ours=Subject(ours, _ours_concurrent(level)),
                seed=Seed(extra={"document": note}),
                table="Scalability",
                row=f"{level:,} concurrent faults",
                counts=f"inject+revert+decision latency with {level:,} faults held active",
                rounds=2,
            )
        )
    rows.append(_crash_scenario())
    return rows


# -- crash recovery -----------------------------------------------------------------------------------------


def _veth_netns(ctx: BenchContext) -> tuple[str, str]:
    def make() -> tuple[str, str]:
        netns = f"tfchaos_crash{RUN}"
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
        for argv in (
            ["ip", "netns", "add", netns],
            ["ip", "-n", netns, "link", "add", "tfcrash0", "type", "veth", "peer", "tfcrash1"],
            ["ip", "-n", netns, "link", "set", "tfcrash0", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        ctx.callback(
            lambda: subprocess.run(
                ["ip", "netns", "delete", netns], capture_output=True, check=False
            )
        )
        return netns, "tfcrash0"

    return ctx.once("veth", make)


def _leftovers(netns: str, dev: str, victim: int) -> int:
    from tenfold.chaos_engine._kernel import tenfold_cgroups

    found = len(tenfold_cgroups(f"tfchaos_crash{RUN}"))
    run = subprocess.run
    tables = run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=False,
    )
    found += tables.stdout.count(f"tfchaos_crash{RUN}")
    qdisc = run(
        ["tc", "-n", netns, "qdisc", "show", "dev", dev],
        capture_output=True,
        text=True,
        check=False,
    )
    found += qdisc.stdout.count("tbf")
    found += Path(f"/proc/{victim}/cgroup").read_text().count(f"tfchaos_crash{RUN}")
    workers = run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    found += sum(1 for line in mounts if line.split()[0] == "tfchaos")
    helpers = ("_hogworker", "_fusefs", "_delayer")
    return found + sum(workers.count(name) for name in helpers)


def _ours_crash_recover(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._watchdog import recover

    netns, dev = _veth_netns(ctx)
    victim = _sleeper(ctx)
    journals = ctx.workdir / "journal"

    def op() -> Outcome:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenfold.chaos_engine._crashchild",
                str(journals),
                netns,
                dev,
                str(victim),
                f"crash{RUN}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stderr is not None
            if child.stdout.readline().strip() != "ready":
                child.kill()
                tail = child.stderr.read().strip().splitlines()[-1:]
                raise BenchError(f"the crash child did not put its faults in place: {tail}")
            before = _leftovers(netns, dev, victim)
            child.kill()
            child.wait()
            t0 = time.perf_counter()
            report = recover(journals / f"crash{RUN}.journal")
            ms = (time.perf_counter() - t0) * 1000
        finally:
            child.kill()
            child.wait()
        after = _leftovers(netns, dev, victim)
        if after or report.errors:
            raise BenchError(f"recover left {after} kernel objects behind: {report.errors}")
        metrics: dict[str, float | str] = {
            "objects_before_kill": before,
            "objects_after_recover": after,
            "faults_reverted": len(report.faults_reverted),
        }
        return Outcome(1, metrics, [ms])

    return op


def _crash_scenario() -> Scenario:
    return Scenario(
        name="sigkill_recover",
        unit="recoveries",
        ours=Subject("tenfold", _ours_crash_recover),
        table="Safety",
        row="SIGKILL mid-run, then recover (11 OS fault types)",
        warmup=0,
        counts="time of `recover` after SIGKILL of an engine holding one fault of every OS type; objects left after must be 0",
        rounds=2,
        needs_root=True,
    )
