"""A BPF socket filter: attach to a socket to count packets and drop matching ones."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from tenfold.cloud_kernel._build import build_object
from tenfold.cloud_kernel._libbpf import BpfObject
from tenfold.cloud_kernel.errors import CloudKernelError
from tenfold.core.lifecycle import Closing

__all__ = ["SocketFilter", "SocketFilterStats"]

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27
_PROTOCOLS = {"any": 0, "icmp": 1, "tcp": 6, "udp": 17}


@dataclass(frozen=True)
class SocketFilterStats:
    seen: int
    dropped: int


class SocketFilter(Closing):
    """Drop packets of ``protocol`` (tcp/udp/icmp/any) to ``dst_port`` (0: any) on attached sockets."""

    def __init__(self, protocol: str = "any", dst_port: int = 0, *, drop: bool = True) -> None:
        if protocol not in _PROTOCOLS:
            raise CloudKernelError(
                f"unknown protocol {protocol!r} (one of {', '.join(_PROTOCOLS)})"
            )
        if not 0 <= dst_port <= 65535:
            raise CloudKernelError(f"port must be 0-65535, got {dst_port}")
        self._obj = BpfObject(build_object("sockfilter")).load(["sock_filter"])
        try:
            self.program = self._obj.program("sock_filter")
            self._rule = self._obj.map("sock_rule")
            self._stats = self._obj.map("sock_stats", per_cpu=True)
            self._rule.update(
                struct.pack("<I", 0),
                struct.pack("<IIII", _PROTOCOLS[protocol], dst_port, int(drop), 0),
            )
        except BaseException:
            self._obj.close()
            raise

    def attach(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, self.program.fd)
        except OSError as exc:
            raise CloudKernelError(f"cannot attach the socket filter: {exc.strerror}") from None

    @staticmethod
    def detach(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
        except OSError as exc:
            raise CloudKernelError(f"cannot detach the socket filter: {exc.strerror}") from None

    def stats(self) -> SocketFilterStats:
        values = []
        for index in (0, 1):
            cells = self._stats.lookup_per_cpu(struct.pack("<I", index))
            values.append(sum(struct.unpack("<Q", c[:8])[0] for c in cells))
        return SocketFilterStats(*values)

    def close(self) -> None:
        self._obj.close()
