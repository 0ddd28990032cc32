"""Files written whole or not at all: one way for every system to replace a file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: Path | str, data: str | bytes, *, mode: int = 0o666) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file beside it, then rename.

    A reader sees the old file or the new one, never part of either, and a failed
    write leaves ``path`` as it was with no temporary file behind: the ``OSError``
    propagates for the caller to name in its own error. The new file gets ``mode``
    less the umask, from the moment it is created (``0o600`` keeps a secret from
    ever being readable by others). Two writers never share a temporary file; the
    last rename wins.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
