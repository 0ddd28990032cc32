"""Benchmark scenarios of the Chaos Engine, beside the tools a Python user would otherwise run.

The rows live in five modules, as the cloud kernel's do: ``_bench_common``
(the engine, the event loop, kernel fixtures, effects observed from outside),
``_bench_osfaults`` (OS-plane faults, monitoring, decisions),
``_bench_dataplane`` (the TCP proxy, the NFQUEUE latency fault) and
``_bench_runs`` (orchestration, safety, concurrency, crash recovery) and
``_bench_nodes`` (faults per second across 1/2/4/8 nodes, an agent in each). What
each row is (its name, unit, document row, what it counts, its fairness sentence)
is data, in ``bench.toml`` beside this module; this module lists the families in
the report's order.

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

from tenfold.chaos_engine._bench_nodes import node_scenarios
from tenfold.chaos_engine._bench_runs import _ours_concurrent
from tenfold.core.bench import Scenario, Subject
from tenfold.core.declare import declared_rows

__all__ = ["scenarios"]


def scenarios() -> list[Scenario]:
    rows = declared_rows(__name__)
    concurrent = [
        Scenario(
            name=f"concurrent_faults_{level // 1000}k",
            unit="faults",
            ours=Subject("tenfold engine", _ours_concurrent(level)),
            table="Scalability",
            row=f"{level:,} concurrent faults",
            doc_row="Concurrent Faults",
            counts=f"inject+revert+decision latency with {level:,} faults held active",
            rounds=2,
        )
        for level in (1000, 5000, 10000)
    ]
    return [
        *rows["throughput"],
        *rows["orchestration"],
        *rows["data_plane"],
        *rows["safety"],
        *concurrent,
        *rows["recovery"],
        *node_scenarios(),
    ]
