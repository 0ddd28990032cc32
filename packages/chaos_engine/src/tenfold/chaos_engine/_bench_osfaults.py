"""Chaos Engine benchmarks of the OS plane: CPU, memory, network, disk faults injected and reverted, fault monitoring and data-plane decisions."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any, cast

from tenfold.chaos_engine._bench_common import (
    EXPERIMENT,
    Effect,
    InCgroup,
    PacketDrop,
    _engine,
    _inject_revert_op,
    _need_tool,
    _netns,
    _one,
    _peer_fault_op,
    _run,
    _sleeper,
    _udp_probe,
    anon_rss,
    children,
    cpu_ns,
    run_argv,
    state,
    wait_until,
)
from tenfold.chaos_engine._bench_dataplane import LAT_A, _latency_pair
from tenfold.core.bench import BenchContext, Op, Outcome
from tenfold.core.errors import BenchError

# -- CPU ----------------------------------------------------------------------------------

CPU_SEEN_NS = 2_000_000
"""A CPU hog counts as injected once it has burned 2 ms of CPU (the kernel's per-process
schedstat), on both sides."""
PAGES_SLACK = 128 << 10
"""Resident-memory readings may lag a few pages: a 1 MiB hog is seen at 1 MiB - 128 KiB."""


def _pool(engine: Any) -> Any:
    return engine._os_plane.pool


class OursCpu(Effect):
    """Our CpuHog: seen once the pool's spinners have burned 2 ms more CPU; gone once every
    spinner is stopped again."""

    what = "the CPU hog burning"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.base = 0

    def _pids(self) -> list[int]:
        return [s.proc.pid for s in _pool(self.engine).spinners]

    def before(self) -> None:
        self.base = sum(cpu_ns(pid) for pid in self._pids())

    def seen(self) -> bool:
        return sum(cpu_ns(pid) for pid in self._pids()) - self.base >= CPU_SEEN_NS

    def cleared(self) -> bool:
        return all(state(pid) in ("T", "t") for pid in self._pids())


class PeerProcess(Effect):
    """A tool process per fault: its worker found below it (``depth`` levels), the process
    reaped and the worker gone on revert."""

    depth = 1

    def __init__(self) -> None:
        self.proc: Any = None
        self.worker = 0
        self.parent = 0

    def attach(self, proc: Any) -> None:
        self.proc, self.worker, self.parent = proc, 0, 0

    def _find(self) -> bool:
        if not self.worker:
            level = [self.proc.pid]
            parent = 0
            for _ in range(self.depth):
                parent = level[0] if level else 0
                level = children(parent) if parent else []
            if level:
                self.parent, self.worker = parent, level[0]
        return bool(self.worker)

    def cleared(self) -> bool:
        return self.proc.poll() is not None and state(self.worker) in ("", "Z")


class PeerCpu(PeerProcess):
    what = "the CPU hog burning"

    def seen(self) -> bool:
        return self._find() and cpu_ns(self.worker) >= CPU_SEEN_NS


def _ours_cpu(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import CpuHog

    return _inject_revert_op(
        ctx, lambda i: CpuHog(duration_s=1), ctx.size(20, 100, 5000), OursCpu(_engine(ctx))
    )


def _spawn(argv: list[str]) -> Any:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: Any) -> None:
    proc.terminate()
    proc.wait()


def _peer_cpu(ctx: BenchContext) -> Op:
    _need_tool("stress-ng")
    argv = ["stress-ng", "--cpu", "1", "--quiet"]
    return _peer_fault_op(ctx.size(2, 8, 100), lambda i: _spawn(argv), _stop, PeerCpu())


# -- memory ----------------------------------------------------------------------------------

MEM_BYTES = 1 << 20


class OursMemory(Effect):
    """Our MemoryHog: seen once the pool's holders hold 1 MiB more anonymous memory; gone
    once they hold 1 MiB less than when it was seen (a holder's own heap may grow a little
    meanwhile, so the level it returns to is not exactly the one before)."""

    what = "1 MiB resident"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.base = 0
        self.level = 0

    def _held(self) -> int:
        return sum(anon_rss(h.proc.pid) for h in _pool(self.engine).holders)

    def before(self) -> None:
        self.base = self._held()

    def seen(self) -> bool:
        held = self._held()
        if held >= self.base + MEM_BYTES - PAGES_SLACK:
            self.level = held
            return True
        return False

    def cleared(self) -> bool:
        return self._held() <= self.level - MEM_BYTES + PAGES_SLACK


class PeerMemory(PeerProcess):
    """stress-ng --vm: its vm worker (a grandchild) holds the buffer; seen once it holds
    1 MiB more anonymous memory than the vm stressor above it."""

    what = "1 MiB resident"
    depth = 2

    def seen(self) -> bool:
        return self._find() and (
            anon_rss(self.worker) >= anon_rss(self.parent) + MEM_BYTES - PAGES_SLACK
        )


def _ours_memory(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import MemoryHog

    return _inject_revert_op(
        ctx,
        lambda i: MemoryHog(size_bytes=MEM_BYTES, duration_s=1),
        ctx.size(20, 100, 5000),
        OursMemory(_engine(ctx)),
    )


def _peer_memory(ctx: BenchContext) -> Op:
    _need_tool("stress-ng")
    argv = ["stress-ng", "--vm", "1", "--vm-bytes", "1M", "--vm-keep", "--quiet"]
    return _peer_fault_op(ctx.size(2, 8, 100), lambda i: _spawn(argv), _stop, PeerMemory())


# -- network ---------------------------------------------------------------------------------


def _ours_network(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import PacketLoss

    netns = _netns(ctx)
    return _inject_revert_op(
        ctx,
        lambda i: PacketLoss(netns=netns, percent=10, duration_s=5),
        ctx.size(20, 100, 5000),
        PacketDrop(_udp_probe(ctx)),
    )


_PEER_RULES = (
    "add table inet peer_{i}\n"
    "add chain inet peer_{i} out {{ type filter hook output priority 0; policy accept; }}\n"
    "add rule inet peer_{i} out numgen random mod 10000 < 1000 drop\n"
)


def _peer_network(ctx: BenchContext) -> Op:
    _need_tool("nft")
    netns = _netns(ctx)
    script = ctx.workdir / "peer.nft"
    exec_ = ["ip", "netns", "exec", netns, "nft"]

    def inject(i: int) -> int:
        script.write_text(_PEER_RULES.format(i=i % 1000))
        run_argv([*exec_, "-f", str(script)])
        return i % 1000

    def revert(i: int) -> None:
        run_argv([*exec_, "delete", "table", "inet", f"peer_{i}"])

    return _peer_fault_op(ctx.size(2, 10, 400), inject, revert, PacketDrop(_udp_probe(ctx)))


BATCH = 50


def _ours_network_batch(ctx: BenchContext) -> Op:
    """Batches of 50 PacketLoss faults: one journal write and one nft transaction per batch."""
    from tenfold.chaos_engine._faults import PacketLoss

    netns = _netns(ctx)
    engine = _engine(ctx)
    probe = PacketDrop(_udp_probe(ctx))
    _run(ctx, _one(engine, PacketLoss(netns=netns, percent=10, duration_s=5)))  # the slot
    batches = ctx.size(1, 4, 40)

    async def run() -> Outcome:
        lat: list[float] = []
        for _ in range(batches):
            faults = [PacketLoss(netns=netns, percent=10, duration_s=5) for _ in range(BATCH)]
            t0 = time.perf_counter()
            await engine.inject_faults(faults)
            wait_until(probe.seen, "ours: a packet dropped")
            await engine.revert_all()
            wait_until(probe.cleared, "ours: no packet dropped after revert")
            lat.append((time.perf_counter() - t0) * 1000)
        if engine.active_faults:
            raise BenchError(f"ours: {engine.active_faults} faults still active after revert")
        metrics: dict[str, float | str] = {"batch_p50_ms": round(statistics.median(lat), 3)}
        return Outcome(
            batches * BATCH,
            metrics,
            lat,
            latency_kind="per_batch",
            latency_unit=f"batch of {BATCH} faults",
            result=True,
        )

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
    op = _peer_fault_op(
        ctx.size(1, 4, 40),
        lambda i: run_argv([*exec_, str(add)]),
        lambda _: run_argv([*exec_, str(delete)]),
        PacketDrop(_udp_probe(ctx)),
    )

    def per_batch() -> Outcome:
        out = cast(Outcome, op())
        return Outcome(
            out.ops * BATCH,
            {},
            out.latencies_ms,
            latency_kind="per_batch",
            latency_unit=f"batch of {BATCH} faults",
            result=True,
        )

    return per_batch


# -- disk ------------------------------------------------------------------------------------------


def _ours_disk(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import DiskThrottle

    pid, path = _sleeper(ctx), str(ctx.workdir)
    return _inject_revert_op(
        ctx,
        lambda i: DiskThrottle(pid=pid, path=path, duration_s=5),
        ctx.size(20, 100, 3000),
        InCgroup(pid, "tfchaos_"),
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
    return _peer_fault_op(
        ctx.size(2, 10, 400),
        lambda i: run_argv(["sh", "-c", inject]),
        lambda _: run_argv(["sh", "-c", revert]),
        InCgroup(pid, "tfchaos_peer"),
    )


# -- monitoring ------------------------------------------------------------------------------------


def _ours_monitoring(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._faults import CpuHog

    engine = _engine(ctx)
    _run(ctx, _one(engine, CpuHog(duration_s=1)))  # a pool, so there are cgroup stats to read
    n = ctx.size(100, 1000, 50000)

    def op() -> Outcome:
        text = ""
        for _ in range(n):
            text = engine.collect_metrics().prometheus()
        if not text:
            raise BenchError("ours rendered an empty exposition")
        return Outcome(n)

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

    def op() -> Outcome:
        out = b""
        for _ in range(n):
            for resource, value in read_psi(files=files).items():
                psi.labels(resource).set(value)
            active.set(0)
            text = files.read(pool)
            if text:
                usage.set(float(text))
            out = generate_latest(registry)
        if not out:
            raise BenchError("prometheus_client rendered an empty exposition")
        return Outcome(n)

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
        ratio = failed / n
        # Binomial: at n >= 10,000 the observed share is within 0.02 of 0.1 unless broken.
        if abs(ratio - 0.1) > 0.02:
            raise BenchError(f"fault decisions: {ratio:.4f} of calls failed, configured 0.1")
        return Outcome(n, {"observed_fault_ratio": round(ratio, 4), "configured": 0.1})

    return op


# -- network latency fault (NFQUEUE) -------------------------------------------------------


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

    return _peer_fault_op(
        ctx.size(2, 10, 400),
        lambda i: run_argv([*exec_, "-A", *rule]),
        lambda _: run_argv([*exec_, "-D", *rule]),
    )
