"""One-time nonces with a time to live (RFC 9334 section 10.2: nonce-based freshness).

Invariant: a nonce is in ``_live`` from ``issue`` until the first ``consume`` or
until its TTL passes, never longer. Because every nonce gets the same TTL, issue
order is expiry order, so expired nonces are dropped from the front of a deque in
amortised O(1) without a heap; memory stays bounded by the nonces issued in one
TTL plus ``remember_used``.
"""

from __future__ import annotations

import enum
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable

NONCE_BYTES = 20  # fits any TPM2B_DATA qualifying-data field (SHA-1 digest size or more)


class NonceStatus(enum.Enum):
    """What ``consume`` found."""

    FRESH = "fresh"
    UNKNOWN = "nonce-unknown"
    EXPIRED = "nonce-expired"
    REPLAYED = "nonce-replayed"
    OTHER_AGENT = "nonce-other-agent"


class NonceStore:
    """Issues random nonces bound to an agent, each accepted once within ``ttl_s``."""

    def __init__(
        self,
        ttl_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        remember_used: int = 65536,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._live: dict[bytes, tuple[float, str]] = {}
        self._order: deque[tuple[float, bytes]] = deque()
        # Consumed and expired nonces are remembered (bounded) only to name the refusal
        # precisely; forgetting one turns "replayed"/"expired" into "unknown", still refused.
        # An OrderedDict: dropping the oldest of a plain dict (next(iter(d))) walks the
        # holes left by earlier deletions, which turns a busy store quadratic.
        self._spent: OrderedDict[bytes, NonceStatus] = OrderedDict()
        self._remember = remember_used

    def __len__(self) -> int:
        return len(self._live)

    def generate_nonce(self, agent_id: str = "") -> bytes:
        """A fresh random nonce for ``agent_id``, valid once for ``ttl_s`` seconds."""
        nonce = os.urandom(NONCE_BYTES)
        expires = self._clock() + self.ttl_s
        self._live[nonce] = (expires, agent_id)
        self._order.append((expires, nonce))
        if len(self._order) > 1024 and self._order[0][0] <= expires - self.ttl_s:
            self._expire(expires - self.ttl_s)
        return nonce

    def admit(self, nonce: bytes, agent_id: str = "") -> None:
        """Accept a nonce issued elsewhere (a peer verifier replica, a recorded session) as live."""
        expires = self._clock() + self.ttl_s
        self._spent.pop(nonce, None)
        self._live[nonce] = (expires, agent_id)
        self._order.append((expires, nonce))
        if len(self._order) > 1024 and self._order[0][0] <= expires - self.ttl_s:
            self._expire(expires - self.ttl_s)

    def _expire(self, now: float) -> None:
        order, live = self._order, self._live
        while order and order[0][0] <= now:
            _, nonce = order.popleft()
            entry = live.get(nonce)
            # A nonce admitted again has a later expiry than this stale queue entry.
            if entry is not None and entry[0] <= now:
                del live[nonce]
                self._mark(nonce, NonceStatus.EXPIRED)

    def _mark(self, nonce: bytes, status: NonceStatus) -> None:
        spent = self._spent
        if len(spent) >= self._remember:
            spent.popitem(last=False)
        spent[nonce] = status

    def consume(self, nonce: bytes, agent_id: str = "") -> NonceStatus:
        """Accept ``nonce`` once: FRESH the first time within its TTL, a refusal otherwise."""
        entry = self._live.pop(nonce, None)
        if entry is None:
            self._expire(self._clock())
            return self._spent.get(nonce, NonceStatus.UNKNOWN)
        expires, owner = entry
        if self._clock() >= expires:
            self._mark(nonce, NonceStatus.EXPIRED)
            return NonceStatus.EXPIRED
        self._mark(nonce, NonceStatus.REPLAYED)
        if owner and agent_id and owner != agent_id:
            return NonceStatus.OTHER_AGENT
        return NonceStatus.FRESH
