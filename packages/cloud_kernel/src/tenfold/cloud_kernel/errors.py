"""Exceptions raised by tenfold.cloud_kernel."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class CloudKernelError(TenfoldError):
    """Root of every error raised by the Linux Scalable Cloud Kernel."""
