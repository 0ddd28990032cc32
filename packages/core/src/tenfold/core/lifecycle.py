"""The two context-manager shapes every system's resources take, and stopping children, once.

* :class:`Closing`: the object is live once built; ``with obj:`` gives it back and
  calls ``obj.close()`` on the way out (a loaded BPF object, an attached filter).
* :class:`Started`: ``with obj:`` calls ``obj.start()`` and, on the way out,
  ``obj.stop()``; when ``start()`` raises part-way, ``stop()`` runs before the error
  propagates, so a half-started cluster leaves no process behind. ``stop()`` must
  therefore accept being called on what ``start()`` only partly built.

:func:`reap` and :func:`stop_processes` end child processes the one way every
system does: ask (a signal, or a closed stdin), wait a grace period, then kill
and wait, so that no child outlives its owner and none is left a zombie.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterable
from typing import Any, Self

__all__ = ["Closing", "Started", "reap", "stop_processes"]


class Closing:
    """Mixin: ``with obj:`` yields ``obj`` and calls its :meth:`close` when the block ends."""

    def close(self) -> None:
        """Release what the object holds; subclasses implement it."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Started:
    """Mixin: ``with obj:`` runs :meth:`start` (undone by :meth:`stop` if it fails) and :meth:`stop`."""

    def start(self) -> None:
        """Bring the resource up; subclasses implement it."""
        raise NotImplementedError

    def stop(self) -> None:
        """Tear down whatever :meth:`start` brought up, even part of it; subclasses implement it."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def reap(proc: subprocess.Popen[Any], timeout_s: float) -> int:
    """Wait for ``proc`` to exit; past ``timeout_s`` kill it and wait. Its return code."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def stop_processes(
    procs: Iterable[subprocess.Popen[Any]], grace_s: float, sig: int = signal.SIGTERM
) -> None:
    """Send ``sig`` to every process at once, then :func:`reap` each within ``grace_s``."""
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    for proc in procs:
        reap(proc, grace_s)
