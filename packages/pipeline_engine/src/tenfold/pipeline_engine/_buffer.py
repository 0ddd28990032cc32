"""Bounded buffers between stages: a full buffer blocks the producer (backpressure)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["BoundedBuffer", "Closed"]


class Closed(Exception):
    """The pipeline is stopping; raised to a thread blocked on a buffer."""


class BoundedBuffer(Generic[T]):
    """A FIFO of batches bounded by the number of *events* it holds.

    Invariant: ``depth <= capacity`` except when a single batch larger than the
    capacity is admitted into an empty buffer (refusing it would deadlock).
    ``put`` blocks while the batch does not fit; each stretch of blocking is one
    backpressure *episode*, and ``on_block`` / ``on_unblock`` let a source pause
    its input (Kafka ``pause()``, no XREADGROUP) for exactly that stretch.
    """

    def __init__(self, name: str, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"buffer capacity must be positive, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.depth = 0
        self.peak_depth = 0
        self.episodes = 0
        self.blocked_s = 0.0
        self._items: deque[tuple[T | None, int]] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(
        self,
        item: T | None,
        size: int,
        *,
        on_block: Callable[[], None] | None = None,
        on_unblock: Callable[[], None] | None = None,
    ) -> None:
        """Append ``item`` (``None`` marks the end of the stream), waiting for room."""
        with self._cond:
            if self._closed:
                raise Closed(self.name)
            if self.depth and self.depth + size > self.capacity:
                self.episodes += 1
                started = time.monotonic()
                if on_block is not None:
                    on_block()
                try:
                    while self.depth and self.depth + size > self.capacity:
                        if self._closed:
                            raise Closed(self.name)
                        self._cond.wait(0.1)
                finally:
                    self.blocked_s += time.monotonic() - started
                    if on_unblock is not None:
                        on_unblock()
            self._items.append((item, size))
            self.depth += size
            self.peak_depth = max(self.peak_depth, self.depth)
            self._cond.notify_all()

    def get(self, timeout_s: float | None = None) -> T | None:
        """Pop the oldest item; raises :class:`Closed` on shutdown, TimeoutError on timeout."""
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed(self.name)
                if not self._cond.wait(0.1 if timeout_s is None else timeout_s) and (
                    timeout_s is not None and not self._items
                ):
                    raise TimeoutError(self.name)
            item, size = self._items.popleft()
            self.depth -= size
            self._cond.notify_all()
            return item

    def get_many(self, max_size: int) -> list[T | None]:
        """Wait for one item, then also take those queued behind it while their sizes sum
        to at most ``max_size`` (the first is always taken); stops after a ``None``."""
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed(self.name)
                self._cond.wait(0.1)
            out: list[T | None] = []
            total = 0
            items = self._items
            while items:
                item, size = items[0]
                if out and total + size > max_size:
                    break
                items.popleft()
                self.depth -= size
                total += size
                out.append(item)
                if item is None:
                    break
            self._cond.notify_all()
            return out

    def close(self) -> None:
        """Wake every waiter with :class:`Closed` (used when the pipeline stops or fails)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
