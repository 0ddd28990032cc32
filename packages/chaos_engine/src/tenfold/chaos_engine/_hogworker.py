"""The hog worker: a small process in the pool's cgroup that burns CPU or holds memory on command.

Protocol, one ASCII line per command on stdin, one ``k`` (or ``e <why>``) line
back per command on stdout:

* ``C <id> <ttl_s>``: burn CPU for fault ``id`` until told to stop or its TTL ends;
* ``c <id>``: stop burning for ``id``;
* ``M <id> <bytes> <ttl_s>``: map and touch ``bytes`` for ``id`` (every page written);
* ``m <id>``: unmap it.

The worker enforces each TTL itself, so a hog outlives neither its fault nor
(through ``PR_SET_PDEATHSIG``) the engine. It spins in 1 ms slices and checks
stdin between slices, so a stop takes effect within about a millisecond.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import select
import signal
import sys
import time

PAGE = mmap.PAGESIZE
PR_SET_PDEATHSIG = 1


def main() -> int:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        return 0
    cpu: dict[str, float] = {}
    mem: dict[str, tuple[mmap.mmap, float]] = {}
    buf = b""
    out = sys.stdout.buffer
    while True:
        now = time.monotonic()
        deadlines = [d for d in cpu.values()] + [d for _, d in mem.values()]
        if cpu:
            timeout: float | None = 0.0
        elif deadlines:
            timeout = max(0.0, min(deadlines) - now)
        else:
            timeout = None
        ready, _, _ = select.select([0], [], [], timeout)
        if ready:
            chunk = os.read(0, 65536)
            if not chunk:
                return 0
            buf += chunk
            replies = []
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                replies.append(_command(line.decode().split(), cpu, mem))
            out.write("".join(replies).encode())
            out.flush()
        now = time.monotonic()
        for key in [k for k, d in cpu.items() if d <= now]:
            del cpu[key]
        for key in [k for k, (_, d) in mem.items() if d <= now]:
            mem.pop(key)[0].close()
        if cpu:
            stop = time.perf_counter() + 0.001
            while time.perf_counter() < stop:
                pass


def _command(
    words: list[str], cpu: dict[str, float], mem: dict[str, tuple[mmap.mmap, float]]
) -> str:
    try:
        op, key = words[0], words[1]
        if op == "C":
            cpu[key] = time.monotonic() + float(words[2])
        elif op == "c":
            cpu.pop(key, None)
        elif op == "M":
            size = int(words[2])
            area = mmap.mmap(-1, size)
            for offset in range(0, size, PAGE):
                area[offset] = 1
            mem[key] = (area, time.monotonic() + float(words[3]))
        elif op == "m":
            entry = mem.pop(key, None)
            if entry is not None:
                entry[0].close()
        else:
            return f"e unknown command {op}\n"
    except (IndexError, ValueError, OSError, MemoryError) as exc:
        return f"e {type(exc).__name__}: {exc}\n".replace("\n", " ").rstrip() + "\n"
    return "k\n"


if __name__ == "__main__":
    sys.exit(main())
