"""The trial cache: inputs a search builds once and reuses across trials, bounded in bytes.

A search runs dozens of trials on the same splits. Building a trial's inputs
(the encoded split matrices, LightGBM's binned datasets) can cost as much as a
short trial, so they are kept here, least recently used first out, under
``[auto_learner.performance] max_cache_mb``. Invariant: ``bytes <= max_bytes``
after every call; an entry larger than the whole bound is built, used and not
kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["CacheStats", "TrialCache"]

T = TypeVar("T")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    too_large: int = 0
    bytes: int = 0
    peak_bytes: int = 0
    max_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        mb = 1024 * 1024
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "too_large": self.too_large,
            "peak_mb": round(self.peak_bytes / mb, 2),
            "max_mb": round(self.max_bytes / mb, 2),
        }


class TrialCache:
    """A least-recently-used map whose values' declared sizes never sum above ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache bound must be non-negative, got {max_bytes}")
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.stats = CacheStats(max_bytes=max_bytes)

    def get(self, key: Hashable, build: Callable[[], tuple[T, int]]) -> T:
        """The value for ``key``; on a miss ``build()`` returns it with its size in bytes."""
        st = self.stats
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            st.hits += 1
            value: T = entry[0]
            return value
        st.misses += 1
        value, size = build()
        if size > st.max_bytes:
            st.too_large += 1
            return value
        while st.bytes + size > st.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            st.bytes -= old
            st.evictions += 1
        self._entries[key] = (value, size)
        st.bytes += size
        st.peak_bytes = max(st.peak_bytes, st.bytes)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.stats.bytes = 0
