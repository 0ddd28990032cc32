"""A content-addressed artifact cache bounded by bytes (``cache_size_mb``).

Keys are SHA-256 digests of everything an artifact depends on; values are
bytes. Entries live in memory (least recently used evicted first) and, when a
directory is given, on disk as one file per key so that a new process (the
CLI) sees earlier compiles; the directory is trimmed oldest-first to the same
byte budget.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

__all__ = ["ArtifactCache", "digest"]


def digest(*parts: str | bytes | int) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class ArtifactCache:
    """Bytes by key, at most ``max_bytes`` in memory and at most ``max_bytes`` on disk."""

    def __init__(self, max_bytes: int, directory: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.directory = directory
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._size

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._mem.get(key)
            if value is not None:
                self._mem.move_to_end(key)
                self.hits += 1
                return value
        if self.directory is not None:
            path = self.directory / key
            try:
                value = path.read_bytes()
            except OSError:
                value = None
            if value is not None:
                os.utime(path)
                self._remember(key, value)
                self.hits += 1
                return value
        self.misses += 1
        return None

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        self._remember(key, value)
        if self.directory is not None:
            # Made on the first artifact, not before: a compile that fails leaves nothing.
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{key}.{os.getpid()}.tmp"
            tmp.write_bytes(value)
            tmp.replace(self.directory / key)
            self._trim_disk()

    def _remember(self, key: str, value: bytes) -> None:
        with self._lock:
            old = self._mem.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._mem[key] = value
            self._size += len(value)
            while self._size > self.max_bytes and self._mem:
                _k, dropped = self._mem.popitem(last=False)
                self._size -= len(dropped)

    def _trim_disk(self) -> None:
        assert self.directory is not None
        entries = []
        total = 0
        for path in self.directory.iterdir():
            if path.name.startswith("."):
                continue
            st = path.stat()
            entries.append((st.st_mtime, st.st_size, path))
            total += st.st_size
        entries.sort()
        for _mtime, size, path in entries:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def clear(self) -> None:
        with self._lock:
            self._mem.clear()
            self._size = 0
