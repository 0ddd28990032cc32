"""The two context-manager shapes every system's resources take, written once.

* :class:`Closing`: the object is live once built; ``with obj:`` gives it back and
  calls ``obj.close()`` on the way out (a loaded BPF object, an attached filter).
* :class:`Started`: ``with obj:`` calls ``obj.start()`` and, on the way out,
  ``obj.stop()``; when ``start()`` raises part-way, ``stop()`` runs before the error
  propagates, so a half-started cluster leaves no process behind. ``stop()`` must
  therefore accept being called on what ``start()`` only partly built.
"""

from __future__ import annotations

from typing import Self

__all__ = ["Closing", "Started"]


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
