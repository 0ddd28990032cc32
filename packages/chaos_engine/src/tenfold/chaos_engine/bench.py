"""Benchmark scenarios of the Chaos Engine, beside the tools a Python user would otherwise run.

The rows live in five modules, as the cloud kernel's do: ``_bench_common``
(the engine, the event loop, kernel fixtures, effects observed from outside),
``_bench_osfaults`` (OS-plane faults, monitoring, decisions),
``_bench_dataplane`` (the TCP proxy, the NFQUEUE latency fault) and
``_bench_runs`` (orchestration, safety, concurrency, crash recovery) and
``_bench_nodes`` (faults per second across 1/2/4/8 nodes, an agent in each). This
module only lists them.

What each row counts, honestly:

* OS-plane rows (CPU, memory, network, disk fault injection) time one fault
  from the inject call until its effect is seen from outside, then reverted
  until the effect is seen gone, on both sides alike: a CPU hog has burned 2 ms
  of CPU (the kernel's per-process schedstat), 1 MiB is resident (RssAnon), a
  packet is dropped (a UDP burst on the namespace's loopback loses one), the
  target sits in its throttle cgroup. Ours goes through the engine (admission,
  a journal record written before the kernel change, the kernel change, the
  revert) into pre-provisioned slots (a pre-started worker pool in a quota'd
  cgroup; an nft table in a namespace whose helper thread already exists).
  The peers start a process per fault (stress-ng for the hogs; the ``nft`` /
  ``sh`` commands a Chaos Toolkit ``process`` action would run), with no sleep
  inside their timer: those count *spawns*.
* "Fault decisions" counts data-plane decisions applied in process and seen
  by the caller (a raise at a fault point), a different figure again.
* The proxy rows compare our TCP proxy with baselines (a direct connection, a
  bare pass-through proxy): they report its overhead and its latency error,
  not a speedup.
* Nothing counts queue enqueues.
"""

from __future__ import annotations

from tenfold.chaos_engine._bench_common import THROUGHPUT
from tenfold.chaos_engine._bench_dataplane import (
    _direct,
    _ours_network_latency,
    _ours_proxy,
    _ours_proxy_latency,
    _ours_proxy_loss,
    _peer_network_latency,
    _raw_proxy,
)
from tenfold.chaos_engine._bench_nodes import node_scenarios
from tenfold.chaos_engine._bench_osfaults import (
    _ours_cpu,
    _ours_decisions,
    _ours_disk,
    _ours_latency_inject,
    _ours_memory,
    _ours_monitoring,
    _ours_network,
    _ours_network_batch,
    _peer_cpu,
    _peer_disk,
    _peer_latency_inject,
    _peer_memory,
    _peer_monitoring,
    _peer_network,
    _peer_network_batch,
)
from tenfold.chaos_engine._bench_runs import (
    _ours_concurrent,
    _ours_crash_recover,
    _ours_orchestration,
    _ours_violation_data,
    _ours_violation_os,
    _peer_orchestration,
)
from tenfold.core.bench import Scenario, Subject

__all__ = ["scenarios"]

_OBSERVED = (
    "each fault counts only once its effect is seen from outside and, after the revert, seen "
    "gone (the row fails otherwise); ours must end with no fault active"
)
_SPAWN = "the peer starts a process per fault (its tool's way), ours goes through its engine into pre-provisioned slots"


def scenarios() -> list[Scenario]:
    ours = "tenfold engine"
    stress = "stress-ng (a process per fault)"
    rows = [
        Scenario(
            name="cpu_fault_inject",
            unit="faults",
            ours=Subject(f"{ours} (pooled hogs in a quota'd cgroup)", _ours_cpu),
            peer=Subject(stress, _peer_cpu),
            table=THROUGHPUT,
            row="CPU Fault Injection",
            rounds=3,
            counts="a CPU hog injected until it has burned 2 ms of CPU, then reverted until it "
            "stopped; ours resumes a parked worker of a pool in a quota'd cgroup (journal record "
            "written first), the peer starts stress-ng --cpu 1 and stops it",
            headline=True,
            needs_root=True,
            fairness=f"both start a CPU hog and wait, polling every 0.2 ms, until the kernel shows "
            f"it has burned 2 ms of CPU, then stop it and wait until it is stopped; {_SPAWN}; "
            "ours burns inside a CPU quota that bounds all hogs, the peer's does not",
            checks=_OBSERVED,
        ),
        Scenario(
            name="memory_fault_inject",
            unit="faults",
            ours=Subject(f"{ours} (pooled holders in a memory cgroup)", _ours_memory),
            peer=Subject(stress, _peer_memory),
            table=THROUGHPUT,
            row="Memory Fault Injection",
            rounds=3,
            counts="1 MiB held until it is resident (RssAnon + RssShmem of the holding process), then released",
            needs_root=True,
            fairness=f"both hold 1 MiB until the kernel shows it resident in the holding process, "
            f"then release it; {_SPAWN}",
            checks=_OBSERVED,
        ),
        Scenario(
            name="network_fault_inject",
            unit="faults",
            ours=Subject(f"{ours} (libnftables)", _ours_network),
            peer=Subject("nft CLI per fault (a Chaos Toolkit process action)", _peer_network),
            table=THROUGHPUT,
            row="Network Fault Injection",
            rounds=3,
            counts="10% packet loss in a network namespace until a UDP burst on its loopback "
            "loses a datagram, then removed until a burst arrives whole; ours an nft table made "
            "through libnftables, the peer ip netns exec nft, twice",
            needs_root=True,
            fairness="both add the same nft rule (numgen random drop of 10% on output) in the same "
            "namespace, wait until a packet is dropped, delete it and wait until none is; "
            + _SPAWN,
            checks=_OBSERVED,
        ),
        Scenario(
            name="network_fault_inject_batch",
            unit="faults",
            ours=Subject(f"{ours} (inject_faults, one nft transaction)", _ours_network_batch),
            peer=Subject("nft -f per batch (a Chaos Toolkit process action)", _peer_network_batch),
            table=THROUGHPUT,
            row="Network Fault Injection, batches of 50",
            rounds=3,
            counts="50 packet-loss faults made at once and removed at once, a packet drop seen "
            "after each; latency per batch of 50",
            needs_root=True,
            doc_row="",
            seed=None,
            fairness="both add 50 packet-loss tables in one go (ours one journal write and one nft "
            "transaction, the peer one nft -f file), wait until a packet is dropped, remove them "
            "in one go and wait until none is",
            checks=_OBSERVED,
        ),
        Scenario(
            name="network_latency_inject",
            unit="faults",
            ours=Subject(f"{ours} (NFQUEUE delayer)", _ours_latency_inject),
            peer=Subject(
                "iptables CLI per fault (a Chaos Toolkit process action)", _peer_latency_inject
            ),
            table=THROUGHPUT,
            row="Network latency fault (NFQUEUE)",
            rounds=3,
            counts="OS-plane NetworkLatency inject+revert: journal record, a queue bound in the "
            "namespace's running delayer, an nft table (libnftables) holding an NFQUEUE rule (xt "
            "compat over netlink) made and deleted; peer: ip netns exec iptables -A then -D (no "
            "delayer)",
            needs_root=True,
            like_for_like=False,
            fairness="ours binds a queue in its running delayer and adds an NFQUEUE rule; the "
            "peer only adds and deletes an iptables NFQUEUE rule with no delayer behind it, so it "
            "does less",
            unchecked_reason="the peer's rule delays nothing (no delayer), so there is no effect "
            "to observe on its side; ours must end with no fault active",
        ),
        Scenario(
            name="disk_fault_inject",
            unit="faults",
            ours=Subject(f"{ours} (blkio cgroup)", _ours_disk),
            peer=Subject("sh + cgroupfs per fault (a Chaos Toolkit process action)", _peer_disk),
            table=THROUGHPUT,
            row="Disk I/O Fault Injection",
            rounds=3,
            counts="OS-plane DiskThrottle: a blkio cgroup with read/write bps made, target moved "
            "in (seen in /proc/PID/cgroup) and back (seen gone), removed (FUSE DiskError/"
            "DiskLatency rules are in the crash-recovery row)",
            needs_root=True,
            fairness="both make a blkio throttle cgroup, move the same sleeping target in, wait "
            "until /proc shows it there, move it back, wait until it is out and remove the cgroup; "
            + _SPAWN,
            checks=_OBSERVED,
        ),
        Scenario(
            name="fault_monitoring",
            unit="samples",
            ours=Subject(ours, _ours_monitoring, sequential=True),
            peer=Subject("prometheus_client", _peer_monitoring, sequential=True),
            table=THROUGHPUT,
            row="Fault Monitoring",
            rounds=5,
            counts="one sample: PSI + pool cgroup stats read, recorded in the ring, Prometheus "
            "text rendered",
            needs_root=True,
            fairness="both read the same PSI and pool cgroup files through the same kept-open "
            "readers and render Prometheus text, one sample after another; ours also records each "
            "sample in its ring",
            unchecked_reason="the two expositions differ (ours renders its own metric set, the "
            "peer its gauges); each must render a non-empty text",
        ),
        Scenario(
            name="fault_decisions",
            unit="decisions",
            ours=Subject(ours, _ours_decisions, sequential=True),
            table=THROUGHPUT,
            row="Fault decisions (data plane)",
            counts="in-process fault-point decisions at p=0.1, applied and observed by the caller "
            "(raise); the observed share must be within 0.02 of 0.1",
            seed=None,
        ),
        Scenario(
            name="orchestration",
            unit="steps",
            ours=Subject(f"{ours} (tenfold chaos run, a fresh process)", _ours_orchestration),
            peer=Subject("chaostoolkit 1.19 (chaos run, a fresh process)", _peer_orchestration),
            table="Orchestration",
            row="Chaos Toolkit experiment, python-provider steps",
            counts="steps of one generated Chaos Toolkit experiment run end to end as a process "
            "(start-up included); ours through the import",
            rounds=2,
            full_rounds=5,
            warmup=0,
            fairness="both run the same generated experiment as a fresh process, start-up "
            "included, with the same python-provider steps and steady-state probe",
            checks="both must report every step run and the status completed (the row fails "
            "otherwise)",
        ),
        Scenario(
            name="proxy_no_fault",
            unit="requests",
            ours=Subject("tenfold proxy (no fault)", _ours_proxy),
            peer=Subject("direct to the echo server (baseline)", _direct),
            table="Data plane",
            row="TCP proxy, no fault (overhead over a direct connection)",
            counts="64-byte echo round trips over 16 connections through the proxy (client, "
            "proxy and echo server in 3 processes on 2 cores)",
            rounds=5,
            comparison="overhead",
            fairness="the same echo round trips over the same 16 connections, through our proxy "
            "and, as the baseline, straight to the echo server: the row reports the proxy's cost",
            checks="every echo must come back byte for byte; the harness compares the error "
            "counts (none on either side)",
        ),
        Scenario(
            name="proxy_vs_passthrough",
            unit="requests",
            ours=Subject("tenfold proxy (no fault)", _ours_proxy),
            peer=Subject("bare uvloop pass-through proxy (baseline)", _raw_proxy),
            table="Data plane",
            row="TCP proxy, no fault (overhead over a bare pass-through proxy)",
            counts="the same round trips through a bare pass-through proxy with no fault logic",
            rounds=5,
            comparison="overhead",
            fairness="the same echo round trips through our proxy and through the cheapest proxy "
            "there is (a bare uvloop pass-through): the row reports what the fault logic costs",
            checks="every echo must come back byte for byte; the harness compares the error "
            "counts (none on either side)",
        ),
        Scenario(
            name="proxy_latency_20ms",
            unit="requests",
            ours=Subject("tenfold proxy (20 ms latency)", _ours_proxy_latency),
            table="Data plane",
            row="TCP proxy, 20 ms latency",
            counts="echo round trips with 20 ms downstream latency; latency error = observed - 20 ms",
            rounds=3,
        ),
        Scenario(
            name="network_latency_20ms",
            unit="requests",
            ours=Subject(f"{ours} NetworkLatency (NFQUEUE delayer)", _ours_network_latency),
            peer=Subject("toxiproxy-style proxy latency toxic (our proxy)", _peer_network_latency),
            table="Data plane",
            row="Network latency 20 ms: asked vs observed",
            counts="64-byte echo round trips over 32 connections from namespace A to B with "
            "NetworkLatency(20 ms) on A's veth (NFQUEUE delayer); peer: the same round trips "
            "through a TCP proxy with a 20 ms downstream latency toxic; error = observed - 20 ms",
            rounds=3,
            needs_root=True,
            comparison="no_ratio",
            fairness="two ways of adding 20 ms to the same echo round trips (a kernel queue and "
            "a proxy): throughput is set by the delay, so only each one's latency error against "
            "20 ms is reported, not a ratio",
            checks="every echo must come back byte for byte on both sides",
        ),
        Scenario(
            name="proxy_loss_10pct",
            unit="requests",
            ours=Subject("tenfold proxy (10% resets)", _ours_proxy_loss),
            table="Data plane",
            row="TCP proxy, 10% errors",
            counts="echo round trips with 10% of requests lost (connection reset); error_ratio is "
            "observed",
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
    for level in (1000, 5000, 10000):
        rows.append(
            Scenario(
                name=f"concurrent_faults_{level // 1000}k",
                unit="faults",
                ours=Subject(ours, _ours_concurrent(level)),
                table="Scalability",
                row=f"{level:,} concurrent faults",
                doc_row="Concurrent Faults",
                counts=f"inject+revert+decision latency with {level:,} faults held active",
                rounds=2,
            )
        )
    rows.append(_crash_scenario())
    rows += node_scenarios()
    return rows


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
