"""Segment files: framed records, the torn-tail rule, and kernel-side copies.

A segment is a run of records ``<u32 length><u32 crc32><entry bytes>``. Only
the last record of the last segment may be torn (a crash between write and
fsync, never acknowledged); a bad record anywhere else is corruption.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator

from tenfold.autoblocker_ledger.errors import CorruptStore

_HEADER = struct.Struct("<II")
HEADER = _HEADER
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
SEG_SHIFT = 40  # a position packs segment number << 40 | byte offset


def frame(data: bytes) -> bytes:
    return _HEADER.pack(len(data), zlib.crc32(data)) + data


def iter_frames(buf: bytes | memoryview, *, where: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, data)`` for each framed record; stops at a torn tail.

    Raises :class:`CorruptStore` for a bad record that is followed by more data
    (corruption, not a crash mid-append); the caller decides what a torn tail means.
    """
    data_of = bytes(buf) if isinstance(buf, memoryview) else buf
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    pos = 0
    end = len(data_of)
    while end - pos >= _HEADER.size:
        length, crc = unpack(data_of, pos)
        start = pos + _HEADER.size
        stop = start + length
        if stop > end:
            return
        data = data_of[start:stop]
        if crc32(data) != crc:
            if stop >= end:
                return  # torn last record
            raise CorruptStore(f"{where}: record at byte {pos} fails its checksum")
        yield pos, data
        pos = stop


def split_frames(buf: bytes, *, where: str) -> tuple[list[int], list[bytes], int]:
    """Offsets and payloads of every whole record, and where the last one ends.

    Checksums are compared in one pass after the split. A bad record followed
    by more data is corruption (:class:`CorruptStore`); a bad or short last
    record is a torn tail, left out.
    """
    unpack = _HEADER.unpack_from
    offsets: list[int] = []
    datas: list[bytes] = []
    crcs: list[int] = []
    pos = 0
    end = len(buf)
    while end - pos >= _HEADER.size:
        length, crc = unpack(buf, pos)
        stop = pos + _HEADER.size + length
        if stop > end:
            break
        offsets.append(pos)
        crcs.append(crc)
        datas.append(buf[pos + _HEADER.size : stop])
        pos = stop
    if list(map(zlib.crc32, datas)) != crcs:
        bad = next(k for k, d in enumerate(datas) if zlib.crc32(d) != crcs[k])
        if bad != len(datas) - 1 or pos != end:
            raise CorruptStore(f"{where}: record at byte {offsets[bad]} fails its checksum")
        pos = offsets.pop()  # torn last record
        datas.pop()
    return offsets, datas, pos


def copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes of ``src`` from ``offset`` to the end of ``dst`` (in kernel when possible)."""
    done = 0
    try:
        while done < count:
            n = os.copy_file_range(src, dst, count - done, offset + done)
            if n == 0:
                break
            done += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    while done < count:  # another filesystem, or no copy_file_range: copy through memory
        chunk = os.pread(src, min(8 << 20, count - done), offset + done)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
        done += len(chunk)
