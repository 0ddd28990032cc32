"""The packet delayer of the NetworkLatency fault: nfnetlink_queue spoken over a netlink socket.

This kernel has no netem, so latency is made in userspace: an iptables rule
(``-j NFQUEUE --queue-num N --queue-bypass``, iptables-nft through the xt
compat layer) hands each matching packet to queue ``N``; this process holds
the packet's id and issues the ``NF_ACCEPT`` verdict once the packet's delay
has passed. The payload never leaves the kernel (``NFQNL_COPY_META``).

One delayer serves one network namespace (it is started inside it, and queue
numbers are per namespace), any number of queues at once. It is driven over
stdin, one ASCII command per line:

* ``B <first_queue> <delay_s> <jitter_s> <seed>``: bind the first free queue
  number from ``first_queue`` on; reply ``k <queue>`` (or ``e <why>``);
* ``U <queue>``: accept every packet held for the queue now, then unbind it;
  no reply (a revert does not wait on this process: commands run in order, so
  a later bind sees the queue free, and there is nothing to do on failure).

Invariants:

* a held packet is always released by an ACCEPT verdict, never dropped: on
  unbind, on EOF of stdin (the engine is gone) and on SIGTERM every held packet
  is accepted before the process exits; ``NFQA_CFG_F_FAIL_OPEN`` makes the
  kernel accept, not drop, when a queue is full, and ``--queue-bypass`` lets
  traffic through once nothing listens;
* a packet's release time is fixed when it arrives: ``delay`` plus a uniform
  draw in ``[-jitter, +jitter]`` (clamped at zero); with jitter, packets may
  overtake each other, as with netem.

Only the standard library: this runs as ``python -S`` to start in milliseconds.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = NFNL_SUBSYS_QUEUE << 8 | 0
NFQNL_MSG_VERDICT = NFNL_SUBSYS_QUEUE << 8 | 1
NFQNL_MSG_CONFIG = NFNL_SUBSYS_QUEUE << 8 | 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NFQA_CFG_F_GSO = 4
NF_ACCEPT = 1
QUEUE_MAXLEN = 16384
"""Packets one queue may hold; past that the kernel accepts (fail-open) instead of queueing."""

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_GEN = struct.Struct("!BBH")  # nfgenmsg: family, version, res_id (the queue number)
_ATTR = struct.Struct("=HH")  # nlattr: len, type
_VERDICT_LEN = _HDR.size + _GEN.size + _ATTR.size + 8


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    pad = -len(payload) % 4
    return _ATTR.pack(_ATTR.size + len(payload), kind) + payload + b"\0" * pad


def message(
    kind: int, flags: int, seq: int, res_id: int, attrs: bytes, family: int = socket.AF_UNSPEC
) -> bytes:
    """One nfnetlink message: header, ``nfgenmsg`` (``res_id``: the queue or subsystem), attrs."""
    body = _GEN.pack(family, 0, res_id) + attrs
    return _HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body


def verdict(queue: int, packet_id: int) -> bytes:
    """One ``NF_ACCEPT`` verdict message for ``packet_id`` of ``queue``."""
    return message(
        NFQNL_MSG_VERDICT,
        NLM_F_REQUEST,
        0,
        queue,
        attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)),
    )


def parse(data: bytes) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """Packets ``(queue, packet_id)`` and acks ``{seq: errno}`` in one netlink datagram."""
    packets: list[tuple[int, int]] = []
    acks: dict[int, int] = {}
    offset = 0
    while offset + _HDR.size <= len(data):
        length, kind, _, seq, _ = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            break
        end = offset + length
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, offset + _HDR.size)
            acks[seq] = -err
        elif kind == NFQNL_MSG_PACKET:
            _, _, queue = _GEN.unpack_from(data, offset + _HDR.size)
            at = offset + _HDR.size + _GEN.size
            while at + _ATTR.size <= end:
                alen, atype = _ATTR.unpack_from(data, at)
                if alen < _ATTR.size:
                    break
                if atype & 0x3FFF == NFQA_PACKET_HDR:
                    (packet_id,) = struct.unpack_from("!I", data, at + _ATTR.size)
                    packets.append((queue, packet_id))
                    break
                at += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return packets, acks


class Delayer:
    """Holds queued packets until their release time; one netlink socket for every queue."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.sock.setblocking(False)
        self.queues: dict[int, tuple[float, float, random.Random]] = {}
        self.held: list[tuple[float, int, int, int]] = []  # (release, seq, queue, id)
        self.order = 0
        self.seq = 0

    # -- configuration -------------------------------------------------------------
    def _config(self, queue: int, attrs: bytes) -> int:
        """Send one config message; return its errno (0 = done), holding packets meanwhile."""
        self.seq += 1
        seq = self.seq
        self.sock.send(message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue, attrs))
        deadline = time.monotonic() + 2.0
        while True:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return 110  # ETIMEDOUT
            result = self.receive(only_ack=seq)
            if result is not None:
                return result

    def bind(self, first: int, delay_s: float, jitter_s: float, seed: int) -> int:
        flags = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO
        attrs = (
            attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))
            + attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
            + attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))
            + attr(NFQA_CFG_MASK, struct.pack("!I", flags))
            + attr(NFQA_CFG_FLAGS, struct.pack("!I", flags))
        )
        for step in range(64):
            queue = (first + step) % 65536
            if queue in self.queues:
                continue
            err = self._config(queue, attrs)
            if err == 0:
                self.queues[queue] = (delay_s, jitter_s, random.Random(seed))
                return queue
            if err != 16:  # EBUSY: another listener owns that number; try the next
                raise OSError(err, f"bind queue {queue}: {os.strerror(err)}")
        raise OSError(16, f"no free queue number from {first} on")

    def unbind(self, queue: int) -> None:
        self.queues.pop(queue, None)
        kept = [item for item in self.held if item[2] != queue]
        released = [item for item in self.held if item[2] == queue]
        if released:
            heapq.heapify(kept)
            self.held = kept
            self.accept(released)
        self._config(queue, attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0)))

    # -- packets -------------------------------------------------------------------
    def receive(self, only_ack: int = 0) -> int | None:
        """Drain the socket: hold every packet; return the errno of ack ``only_ack`` if seen."""
        found: int | None = None
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return found
            now = time.monotonic()
            packets, acks = parse(data)
            for queue, packet_id in packets:
                rule = self.queues.get(queue)
                if rule is None:
                    self.accept([(now, 0, queue, packet_id)])
                    continue
                delay_s, jitter_s, rng = rule
                wait = delay_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
                self.order += 1
                heapq.heappush(self.held, (now + max(0.0, wait), self.order, queue, packet_id))
            if only_ack and only_ack in acks:
                found = acks[only_ack]

    def accept(self, items: list[tuple[float, int, int, int]]) -> None:
        """ACCEPT verdicts for ``items``, many messages per datagram."""
        batch = b"".join(verdict(queue, packet_id) for _, _, queue, packet_id in items)
        step = 400 * _VERDICT_LEN  # well under the socket's send buffer
        for at in range(0, len(batch), step):
            while True:
                try:
                    self.sock.send(batch[at : at + step])
                    break
                except BlockingIOError:
                    select.select([], [self.sock], [], 0.01)

    def release_due(self) -> float | None:
        """Accept every packet whose time has come; return seconds to the next one."""
        now = time.monotonic()
        due: list[tuple[float, int, int, int]] = []
        while self.held and self.held[0][0] <= now:
            due.append(heapq.heappop(self.held))
        if due:
            self.accept(due)
        return self.held[0][0] - now if self.held else None

    def release_all(self) -> None:
        held, self.held = self.held, []
        if held:
            self.accept(held)


def _reply(text: str) -> None:
    os.write(1, (text + "\n").encode())


def _command(delayer: Delayer, line: str) -> None:
    parts = line.split()
    try:
        if parts[:1] == ["B"] and len(parts) == 5:
            queue = delayer.bind(int(parts[1]), float(parts[2]), float(parts[3]), int(parts[4]))
            _reply(f"k {queue}")
        elif parts[:1] == ["U"] and len(parts) == 2:
            with contextlib.suppress(OSError, ValueError):  # nobody waits for an answer
                delayer.unbind(int(parts[1]))
        else:
            _reply(f"e unknown command {line!r}")
    except (OSError, ValueError) as exc:
        _reply(f"e {exc}")


def serve() -> int:
    try:
        delayer = Delayer()
    except OSError as exc:
        _reply(f"e netlink: {exc}")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _reply("k")
    pending = b""
    sock = delayer.sock.fileno()
    try:
        while True:
            wait = delayer.release_due()
            ready, _, _ = select.select([0, sock], [], [], wait)
            if sock in ready:
                delayer.receive()
            if 0 in ready:
                chunk = os.read(0, 4096)
                if not chunk:
                    return 0  # the engine is gone: release everything and leave
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    _command(delayer, line.decode())
    finally:
        delayer.release_all()


if __name__ == "__main__":
    sys.exit(serve())
