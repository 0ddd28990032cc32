"""The XDP bouncer: the decision stream of ``tenfold.core.events`` applied to a block list.

A ban adds the address or prefix to the list, an unban removes it, and a ban
whose ``until`` passes is removed by :meth:`XdpBouncer.expire`. The bouncer only
removes what a decision named, so rules added by hand (``tenfold kernel xdp block``)
stay unless a decision names them too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenfold.cloud_kernel._xdp import XdpBlockList, parse_prefix
from tenfold.core.events import BanTable, Decision

__all__ = ["XdpBouncer"]


class XdpBouncer:
    """A :class:`tenfold.core.events.Bouncer` over an :class:`XdpBlockList`."""

    def __init__(self, blocklist: XdpBlockList, *, clock: Callable[[], float] = time.time) -> None:
        self.blocklist = blocklist
        self.table = BanTable()
        self._clock = clock

    def apply(self, decision: Decision) -> None:
        change = self.table.apply(decision, self._clock())
        if change == "add":
            self.blocklist.block(parse_prefix(decision.value))
        elif change == "remove":
            self.blocklist.unblock(parse_prefix(decision.value))

    def expire(self, now: float) -> list[str]:
        gone = self.table.expire(now)
        for value in gone:
            self.blocklist.unblock(parse_prefix(value))
        return gone

    def close(self) -> None:
        """Release the list; a pinned list keeps its rules (the follower's state holds them)."""
        self.blocklist.close()
