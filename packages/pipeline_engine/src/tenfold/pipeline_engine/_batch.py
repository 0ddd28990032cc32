"""The unit that moves between stages: a batch of events with its source bookkeeping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

__all__ = ["Batch", "DeadLetter"]


class DeadLetter(msgspec.Struct, frozen=True):
    """A message the pipeline could not process, with why and where it came from."""

    stage: str
    reason: str
    source: str
    payload: bytes


def _nowhere(index: int) -> str:
    return f"#{index}"


@dataclass(slots=True)
class Batch(Generic[T]):
    """A batch of events.

    Invariants: ``positions`` is the cumulative source position *after* this
    batch (``"topic/partition" -> next offset``), so storing it with the
    batch's output makes a restart resume right after it; ``born_ns`` is the
    ``time.monotonic_ns()`` at which the oldest event of the batch entered the
    engine (its scheduled time for the synthetic generator), so end-to-end
    latency measured at the sink is the oldest event's; ``dead`` travels with
    the batch so dead letters commit atomically with the rows and offsets;
    ``starts`` gives, for each stream with events in the batch, the position of
    its first event, so a sink storing positions can refuse a batch whose
    events another writer already stored (fencing, when a partition moved).
    """

    items: list[T]
    born_ns: int
    positions: dict[str, int] = field(default_factory=dict)
    ack: Any = None
    dead: list[DeadLetter] = field(default_factory=list)
    where: Callable[[int], str] = _nowhere
    seq: int = 0
    starts: dict[str, int] = field(default_factory=dict)

    def replace(self, items: list[Any]) -> Batch[Any]:
        """The same batch bookkeeping around new items (item provenance no longer lines up)."""
        return Batch(
            items,
            self.born_ns,
            self.positions,
            self.ack,
            self.dead,
            _nowhere,
            self.seq,
            self.starts,
        )

    @staticmethod
    def merge(batches: list[Batch[Any]]) -> Batch[Any]:
        """Consecutive batches as one (a group commit): the items and dead letters in
        order, the oldest birth time, the positions after the last batch.

        ``ack`` is left out: each batch's own ack is handed back to the source
        (acknowledgements are not cumulative for every source, Redis ids are not).
        """
        if len(batches) == 1:
            return batches[0]
        items: list[Any] = []
        dead: list[DeadLetter] = []
        positions: dict[str, int] = {}
        starts: dict[str, int] = {}
        for b in batches:
            items += b.items
            dead += b.dead
            positions.update(b.positions)
            starts = b.starts | starts  # the first batch with a stream gives its start
        born = min(b.born_ns for b in batches)
        return Batch(items, born, positions, None, dead, _nowhere, batches[0].seq, starts)

    def __len__(self) -> int:
        return len(self.items)
