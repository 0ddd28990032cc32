"""SQLite checkpoints of stage state, each tagged with the source positions it reflects."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from tenfold.pipeline_engine.errors import CheckpointError

__all__ = ["CheckpointStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    pipeline TEXT NOT NULL,
    stage TEXT NOT NULL,
    state BLOB NOT NULL,
    positions BLOB NOT NULL,
    PRIMARY KEY (pipeline, stage)
)
"""


class CheckpointStore:
    """One row per (pipeline, stage): the stage's state after the batch whose positions it holds.

    A save is one SQLite transaction (WAL, synchronous=FULL), so a crash leaves
    either the previous checkpoint or the new one, never a torn mix.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise CheckpointError(f"checkpoint store {self.path}: {exc}") from None

    def save(self, pipeline: str, stage: str, state: bytes, positions: dict[str, int]) -> None:
        try:
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT (pipeline, stage)"
                " DO UPDATE SET state = excluded.state, positions = excluded.positions",
                (pipeline, stage, state, msgspec.msgpack.encode(positions)),
            )
        except sqlite3.Error as exc:
            raise CheckpointError(f"checkpoint store {self.path}: {exc}") from None

    def load(self, pipeline: str, stage: str) -> tuple[bytes, dict[str, int]] | None:
        try:
            row = self._db.execute(
                "SELECT state, positions FROM checkpoints WHERE pipeline = ? AND stage = ?",
                (pipeline, stage),
            ).fetchone()
        except sqlite3.Error as exc:
            raise CheckpointError(f"checkpoint store {self.path}: {exc}") from None
        if row is None:
            return None
        positions: dict[str, int] = msgspec.msgpack.decode(row[1], type=dict[str, int])
        return bytes(row[0]), positions

    def close(self) -> None:
        self._db.close()
