"""The platform's errors."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError

__all__ = ["NotUp", "PlatformError"]


class PlatformError(TenfoldError):
    """The platform could not start, stop, or run a replay (a part failed, or not root)."""


class NotUp(PlatformError):
    """A command needs the platform running (``tenfold platform up``) and it is not."""
