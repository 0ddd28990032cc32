"""The read path both ledgers share: entries by index or id, and filtered ranges in log order.

:class:`~tenfold.autoblocker_ledger._store.EmbeddedLedger` answers from its
segments and SQLite index, :class:`~tenfold.autoblocker_ledger._replicated.ReplicatedLedger`
from its verified in-memory replica; each supplies three hooks and inherits the
rest, so bounds checks, errors and the shape of ``range`` are written once.
"""

from __future__ import annotations

from collections.abc import Iterator

from tenfold.autoblocker_ledger._events import Entry
from tenfold.autoblocker_ledger._merkle import MerkleTree
from tenfold.autoblocker_ledger.errors import AutoblockerLedgerError, EntryOutOfRange


class LogReader:
    """Reads over a log whose leaves are in ``tree``; subclasses give the three hooks."""

    tree: MerkleTree

    # -- hooks ----------------------------------------------------------------------------
    def _entry(self, index: int) -> Entry:
        """The entry at a checked index, verified against its leaf."""
        raise NotImplementedError

    def _index_of(self, event_id: str) -> int | None:
        raise NotImplementedError

    def _matching(
        self,
        since_ms: int | None,
        until_ms: int | None,
        subject: str | None,
        domain: str | None,
        limit: int,
    ) -> list[int]:
        """Indices of up to ``limit`` entries matching every filter given, in log order."""
        raise NotImplementedError

    # -- the shared read path ---------------------------------------------------------------
    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise EntryOutOfRange(f"an entry index is an integer, got {type(index).__name__}")
        if not 0 <= index < self.tree.size:
            raise EntryOutOfRange(f"entry {index} outside a log of {self.tree.size} entries")

    def get(self, index: int) -> Entry:
        """The entry at ``index`` (:class:`EntryOutOfRange`, also an IndexError, outside the log)."""
        self._check_index(index)
        return self._entry(index)

    def get_by_id(self, event_id: str) -> Entry | None:
        index = self._index_of(event_id)
        return None if index is None else self.get(index)

    def range(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        subject: str | None = None,
        domain: str | None = None,
        limit: int = 1000,
    ) -> list[Entry]:
        """Entries matching every given filter (time window is [since, until)), in log order."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise AutoblockerLedgerError(
                f"range limit must be a non-negative integer, got {limit!r}"
            )
        return [self.get(i) for i in self._matching(since_ms, until_ms, subject, domain, limit)]

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        stop = self.tree.size if end is None else end
        for i in range(start, stop):
            yield self.get(i)
