"""Hog processes of the worker pool: CPU spinners and memory holders.

``spin SLOT DEADLINES_FILE``: a CPU slot. It stops itself (SIGSTOP) at once;
the engine activates it with SIGCONT and parks it again with SIGSTOP, so an
activation is one signal, whatever the cgroup's CPU quota is doing to the
spinner at that moment. The spinner reads its slot's deadline (a float in a
shared file) every millisecond and idles once it passes: a hog never
outlives its TTL, and ``PR_SET_PDEATHSIG`` means it never outlives the engine.

``mem``: a memory holder, one ASCII command per line on stdin, one ``k`` (or
``e <why>``) line back:

* ``M <id> <bytes> <ttl_s>``: map and touch ``bytes`` for ``id`` (every page written);
* ``m <id>``: unmap it.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import select
import signal
import struct
import sys
import time

PAGE = mmap.PAGESIZE
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        sys.exit(0)


def spin(slot: int, path: str) -> int:
    _die_with_parent()
    fd = os.open(path, os.O_RDONLY)
    deadlines = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    offset = slot * 8
    me = os.getpid()
    os.kill(me, signal.SIGSTOP)
    while True:
        (deadline,) = struct.unpack_from("d", deadlines, offset)
        if time.time() >= deadline:
            # Past its TTL: idle (the engine parks it with SIGSTOP on revert). Parking
            # itself here could swallow a SIGCONT sent for a new fault in between.
            time.sleep(0.005)
            continue
        stop = time.perf_counter() + 0.001
        while time.perf_counter() < stop:
            pass


def hold() -> int:
    _die_with_parent()
    mem: dict[str, tuple[mmap.mmap, float]] = {}
    buf = b""
    out = sys.stdout.buffer
    while True:
        now = time.monotonic()
        deadlines = [d for _, d in mem.values()]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        ready, _, _ = select.select([0], [], [], timeout)
        if ready:
            chunk = os.read(0, 65536)
            if not chunk:
                return 0
            buf += chunk
            replies = []
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                replies.append(_command(line.decode().split(), mem))
            out.write("".join(replies).encode())
            out.flush()
        now = time.monotonic()
        for key in [k for k, (_, d) in mem.items() if d <= now]:
            mem.pop(key)[0].close()


def _command(words: list[str], mem: dict[str, tuple[mmap.mmap, float]]) -> str:
    try:
        op, key = words[0], words[1]
        if op == "M":
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
        return "e " + f"{type(exc).__name__}: {exc}".replace("\n", " ") + "\n"
    return "k\n"


if __name__ == "__main__":
    if sys.argv[1] == "spin":
        sys.exit(spin(int(sys.argv[2]), sys.argv[3]))
    sys.exit(hold())
