"""Linux Scalable Cloud Kernel: eBPF programs driven from Python.

This kernel loads no modules, so the document's "kernel modules" are eBPF
programs: an XDP block list, a syscall latency tracer on raw_syscalls
tracepoints, and a socket filter, built with clang against this kernel's BTF
and loaded through libbpf.
"""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.cloud_kernel._bouncer import XdpBouncer as XdpBouncer
    from tenfold.cloud_kernel._build import build_object as build_object
    from tenfold.cloud_kernel._netns import in_netns as in_netns
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
    "XdpBouncer",
    "XdpStats",
    "build_object",
    "in_netns",
    "parse_prefix",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._bouncer": ["XdpBouncer"],
        "._build": ["build_object"],
        "._netns": ["in_netns"],
        "._sockfilter": ["SocketFilter", "SocketFilterStats"],
        "._trace": ["SyscallStats", "SyscallTracer"],
        "._xdp": ["BlockRule", "XdpBlockList", "XdpStats", "parse_prefix"],
        ".errors": [
            "BadAddress",
            "BpfError",
            "BuildError",
            "CloudKernelError",
            "NoSuchInterface",
            "NotPermitted",
            "VerifierRejected",
        ],
    },
    __all__,
)
