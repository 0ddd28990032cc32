"""Exceptions raised by tenfold.cloud_kernel."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class CloudKernelError(TenfoldError):
    """Root of every error raised by the Linux Scalable Cloud Kernel."""


class BpfError(CloudKernelError):
    """A libbpf or BPF syscall call failed (the message names the call and errno)."""


class NotPermitted(BpfError):
    """BPF, tracefs or bpffs needs root (or CAP_BPF) and we do not have it."""


class VerifierRejected(BpfError):
    """The kernel verifier refused a program; the message carries the verifier log."""


class BuildError(CloudKernelError):
    """A BPF C source could not be compiled (clang or bpftool missing or failing)."""


class BadAddress(CloudKernelError):
    """An IP address or prefix given for the block list is malformed."""


class NoSuchInterface(CloudKernelError):
    """The named network interface does not exist."""


class MapEntryExists(BpfError):
    """A map update with BPF_NOEXIST found the key already present."""
