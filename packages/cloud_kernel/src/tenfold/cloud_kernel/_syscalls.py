"""Syscall numbers and names for this architecture, read from the kernel's uapi header."""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["syscall_name", "syscall_number"]

_HEADERS = (
    Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    Path("/usr/include/asm/unistd_64.h"),
)


@functools.cache
def _table() -> dict[int, str]:
    for header in _HEADERS:
        if header.is_file():
            text = header.read_text()
            return {int(n): name for name, n in re.findall(r"#define __NR_(\w+) (\d+)", text)}
    return {}


def syscall_name(number: int) -> str:
    return _table().get(number, f"syscall_{number}")


def syscall_number(name: str) -> int | None:
    for number, known in _table().items():
        if known == name:
            return number
    return None
