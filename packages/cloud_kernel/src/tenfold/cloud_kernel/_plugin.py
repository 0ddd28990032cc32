"""Registration of the Linux Scalable Cloud Kernel with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="cloud_kernel",
    title="Linux Scalable Cloud Kernel",
    summary="eBPF programs driven from Python: XDP block lists, syscall tracing, socket filters",
    commands={
        "kernel": (
            "tenfold.cloud_kernel.cli:kernel",
            "eBPF from Python: XDP block lists, syscall tracing, socket filters",
        ),
    },
    scenarios="tenfold.cloud_kernel.bench:scenarios",
    kernel="tenfold.cloud_kernel.bench:kernel",
)
