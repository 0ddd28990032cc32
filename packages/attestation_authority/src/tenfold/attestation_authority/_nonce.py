"""One-time nonces with a time to live (RFC 9334 section 10.2: nonce-based freshness).

Nonces live in generations one TTL wide. A nonce issued during generation
``[s, s + ttl)`` expires before ``s + 2 ttl``, so at any time the live nonces are
in the current or the previous generation; when a generation closes, the one
before it holds only expired nonces and is kept one more generation to name a
late nonce "expired" rather than "unknown", then dropped whole.

Invariants: a nonce is accepted at most once (``consume`` pops it and records it
as used), never after its own expiry time, and only for the agent it was issued
to. Issuing costs one dict insert: no per-nonce expiry work, and memory is bounded
by the nonces issued in three TTLs.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable

NONCE_BYTES = 20  # fits any TPM2B_DATA qualifying-data field (SHA-1 digest size or more)


class NonceStatus(enum.Enum):
    """What ``consume`` found."""

    FRESH = "fresh"
    UNKNOWN = "nonce-unknown"
    EXPIRED = "nonce-expired"
    REPLAYED = "nonce-replayed"
    OTHER_AGENT = "nonce-other-agent"


_Generation = dict[bytes, tuple[float, str]]


class NonceStore:
    """Issues random nonces bound to an agent, each accepted once within ``ttl_s``."""

    def __init__(self, ttl_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0:
            raise ValueError(f"nonce TTL must be positive, got {ttl_s}")
        self.ttl_s = ttl_s
        self._clock = clock
        self._current: _Generation = {}
        self._previous: _Generation = {}
        self._expired: _Generation = {}
        self._used: set[bytes] = set()
        self._used_before: set[bytes] = set()
        self._closes_at = clock() + ttl_s

    def __len__(self) -> int:
        """Nonces issued and not yet used (some of the previous generation may have expired)."""
        return len(self._current) + len(self._previous)

    def _rotate(self, now: float) -> None:
        while now >= self._closes_at:
            if now >= self._closes_at + self.ttl_s:
                # Idle for more than a generation: everything issued is expired.
                self._expired = {**self._previous, **self._current}
                self._previous, self._current = {}, {}
                self._used_before, self._used = self._used, set()
                self._closes_at = now + self.ttl_s
                return
            self._expired, self._previous, self._current = self._previous, self._current, {}
            self._used_before, self._used = self._used, set()
            self._closes_at += self.ttl_s

    def generate_nonce(self, agent_id: str = "") -> bytes:
        """A fresh random nonce for ``agent_id``, valid once for ``ttl_s`` seconds."""
        nonce = os.urandom(NONCE_BYTES)
        now = self._clock()
        if now >= self._closes_at:
            self._rotate(now)
        self._current[nonce] = (now + self.ttl_s, agent_id)
        return nonce

    def admit(self, nonce: bytes, agent_id: str = "") -> None:
        """Accept a nonce issued elsewhere (a peer verifier replica, a recorded session) as live."""
        now = self._clock()
        if now >= self._closes_at:
            self._rotate(now)
        self._previous.pop(nonce, None)
        self._expired.pop(nonce, None)
        self._used.discard(nonce)
        self._used_before.discard(nonce)
        self._current[nonce] = (now + self.ttl_s, agent_id)

    def consume(self, nonce: bytes, agent_id: str = "") -> NonceStatus:
        """Accept ``nonce`` once: FRESH the first time within its TTL, a refusal otherwise."""
        now = self._clock()
        if now >= self._closes_at:
            self._rotate(now)
        entry = self._current.pop(nonce, None) or self._previous.pop(nonce, None)
        if entry is None:
            if nonce in self._used or nonce in self._used_before:
                return NonceStatus.REPLAYED
            if nonce in self._expired:
                return NonceStatus.EXPIRED
            return NonceStatus.UNKNOWN
        expires, owner = entry
        if now >= expires:
            self._expired[nonce] = entry
            return NonceStatus.EXPIRED
        self._used.add(nonce)
        if owner and agent_id and owner != agent_id:
            return NonceStatus.OTHER_AGENT
        return NonceStatus.FRESH
