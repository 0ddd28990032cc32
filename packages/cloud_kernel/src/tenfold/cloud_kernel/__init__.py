"""Linux Scalable Cloud Kernel: eBPF programs driven from Python.

This kernel loads no modules, so the document's "kernel modules" are eBPF
programs: an XDP block list, a syscall latency tracer on raw_syscalls
tracepoints, and a socket filter, built with clang against this kernel's BTF
and loaded through libbpf.
"""

# The public names resolve on first use (PEP 562), so importing the package (for
# its CLI or plugin registration) does not import the heavy libraries behind it.
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenfold.cloud_kernel._build import build_object as build_object
    from tenfold.cloud_kernel._sockfilter import SocketFilter as SocketFilter
    from tenfold.cloud_kernel._sockfilter import SocketFilterStats as SocketFilterStats
    from tenfold.cloud_kernel._trace import SyscallStats as SyscallStats
    from tenfold.cloud_kernel._trace import SyscallTracer as SyscallTracer
    from tenfold.cloud_kernel._xdp import BlockRule as BlockRule
    from tenfold.cloud_kernel._xdp import XdpBlockList as XdpBlockList
    from tenfold.cloud_kernel._xdp import XdpStats as XdpStats
    from tenfold.cloud_kernel._xdp import parse_prefix as parse_prefix
    from tenfold.cloud_kernel.errors import BadAddress as BadAddress
    from tenfold.cloud_kernel.errors import BpfError as BpfError
    from tenfold.cloud_kernel.errors import BuildError as BuildError
    from tenfold.cloud_kernel.errors import CloudKernelError as CloudKernelError
    from tenfold.cloud_kernel.errors import NoSuchInterface as NoSuchInterface
    from tenfold.cloud_kernel.errors import NotPermitted as NotPermitted
    from tenfold.cloud_kernel.errors import VerifierRejected as VerifierRejected

_LAZY = {
    "build_object": "tenfold.cloud_kernel._build",
    "SocketFilter": "tenfold.cloud_kernel._sockfilter",
    "SocketFilterStats": "tenfold.cloud_kernel._sockfilter",
    "SyscallStats": "tenfold.cloud_kernel._trace",
    "SyscallTracer": "tenfold.cloud_kernel._trace",
    "BlockRule": "tenfold.cloud_kernel._xdp",
    "XdpBlockList": "tenfold.cloud_kernel._xdp",
    "XdpStats": "tenfold.cloud_kernel._xdp",
    "parse_prefix": "tenfold.cloud_kernel._xdp",
    "BadAddress": "tenfold.cloud_kernel.errors",
    "BpfError": "tenfold.cloud_kernel.errors",
    "BuildError": "tenfold.cloud_kernel.errors",
    "CloudKernelError": "tenfold.cloud_kernel.errors",
    "NoSuchInterface": "tenfold.cloud_kernel.errors",
    "NotPermitted": "tenfold.cloud_kernel.errors",
    "VerifierRejected": "tenfold.cloud_kernel.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BadAddress",
    "BlockRule",
    "BpfError",
    "BuildError",
    "CloudKernelError",
    "NoSuchInterface",
    "NotPermitted",
    "SocketFilter",
    "SocketFilterStats",
    "SyscallStats",
    "SyscallTracer",
    "VerifierRejected",
    "XdpBlockList",
    "XdpStats",
    "build_object",
    "parse_prefix",
]
