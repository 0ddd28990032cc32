"""Linux Scalable Cloud Kernel: eBPF programs driven from Python: XDP block lists, syscall tracing, socket filters."""

from tenfold.cloud_kernel.errors import CloudKernelError as CloudKernelError

__all__ = ["CloudKernelError"]
