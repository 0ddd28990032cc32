"""Where a worker process runs: the small interface scale-out code starts its workers through.

A supervisor of N pipeline engines, a Ray or Dask cluster of N workers: each starts
one process per *place* and needs only two things from it, a way to start a process
there and the address that process is reached at. :class:`Place` is that protocol;
:class:`LocalPlace` is this host (127.0.0.1), optionally inside a governor cgroup.
A :class:`tenfold.core.nodes.Node` (a network namespace with its own address and
cgroup) is another place, as is anything else with ``address`` and ``spawn``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["LocalPlace", "Place", "local_places", "place_name"]


@runtime_checkable
class Place(Protocol):
    """Somewhere to start a process: its ``address``, and ``spawn``."""

    @property
    def address(self) -> str:
        """The IP address a process started here listens on and is reached at."""
        ...

    def spawn(self, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` here, with :class:`subprocess.Popen`'s keyword arguments."""
        ...


class LocalPlace:
    """This host at 127.0.0.1; processes go into ``cgroup`` (a governor Cgroup) when given."""

    address = "127.0.0.1"

    def __init__(self, name: str = "local", cgroup: Any = None) -> None:
        self.name = name
        self.cgroup = cgroup

    def spawn(self, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` as a child of this process (in the cgroup, if there is one)."""
        if self.cgroup is not None:
            proc: subprocess.Popen[Any] = self.cgroup.spawn(argv, **popen_kw)
            return proc
        return subprocess.Popen(list(argv), **popen_kw)

    def __repr__(self) -> str:
        return f"LocalPlace({self.name!r})"


def local_places(count: int) -> list[Place]:
    """``count`` places on this host (``local0`` ...), for runs without nodes."""
    return [LocalPlace(f"local{i}") for i in range(count)]


def place_name(place: Place) -> str:
    """A short label for logs and reports: its ``name``, a node's namespace, or its address."""
    for attr in ("name", "netns"):
        value = getattr(place, attr, None)
        if isinstance(value, str) and value:
            return value
    return place.address
