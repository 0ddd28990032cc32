"""Thin adapters over the kernel: libnftables, network namespaces, cgroup v1 files, tools.

Everything here either succeeds, treats "already gone" as success (for
deletes), or raises a ChaosEngine error naming the object and the tool's own
message.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from tenfold.chaos_engine.errors import InjectionFailed, OsPlaneUnavailable, TargetGone

T = TypeVar("T")
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise OsPlaneUnavailable(
            f"{what} needs root (OS-plane faults act on the kernel); data-plane faults still work"
        )


def run_tool(
    argv: list[str], *, netns: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run an iproute2/nft tool (inside ``netns`` when given); its stderr becomes the error."""
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    if shutil.which(argv[0]) is None:
        raise OsPlaneUnavailable(f"{argv[0]} is not installed")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise InjectionFailed(f"{' '.join(argv)}: {message[0] if message else 'failed'}")
    return proc


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


# -- libnftables, optionally inside a network namespace -------------------------------


class Nft:
    """libnftables through ctypes: one context, commands as text, errors as text.

    A context belongs to the network namespace its thread was in when it was
    made; :class:`NetnsWorker` makes one inside a namespace.
    """

    _lib: Any = None

    def __init__(self) -> None:
        if Nft._lib is None:
            path = ctypes.util.find_library("nftables") or "libnftables.so.1"
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                raise OsPlaneUnavailable(
                    "libnftables is not installed (Debian: nftables)"
                ) from None
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            Nft._lib = lib
        self._ctx = Nft._lib.nft_ctx_new(0)
        Nft._lib.nft_ctx_buffer_output(self._ctx)
        Nft._lib.nft_ctx_buffer_error(self._ctx)

    def run(self, commands: str) -> str:
        """Run ``commands`` as one atomic nft transaction; raise with nft's first error line."""
        rc = Nft._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
        out = (Nft._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        err = (Nft._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            first = next((line for line in err.splitlines() if line.strip()), "failed")
            raise InjectionFailed(f"nft: {first}")
        return out

    def close(self) -> None:
        if self._ctx:
            Nft._lib.nft_ctx_free(self._ctx)
            self._ctx = None


def setns_net(name: str) -> None:
    """Move the calling *thread* into network namespace ``name``."""
    try:
        fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    except FileNotFoundError:
        raise TargetGone(f"network namespace {name!r} does not exist") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise InjectionFailed(f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsWorker:
    """A dedicated thread living in one network namespace, running calls for the engine.

    setns changes only the calling thread, so a thread per namespace keeps the
    engine's own namespace untouched, and kernel objects made here (nft tables)
    land in the target namespace without a process spawn per fault.
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._calls: queue.SimpleQueue[tuple[Callable[[Nft], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name=f"chaos-netns-{netns}", daemon=True
        )
        self._thread.start()
        ready.result()

    def _serve(self, ready: Future[None]) -> None:
        try:
            if self.netns:
                setns_net(self.netns)
            nft = Nft()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while True:
            item = self._calls.get()
            if item is None:
                break
            fn, fut = item
            try:
                fut.set_result(fn(nft))
            except BaseException as exc:
                fut.set_exception(exc)
        nft.close()

    def submit(self, fn: Callable[[Nft], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._calls.put((fn, fut))
        return fut

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join(5)


# -- cgroup v1 ------------------------------------------------------------------------


def cgroup_dir(controller: str, name: str) -> Path:
    return CGROUP_ROOT / controller / "tenfold" / name


def cgroup_make(controller: str, name: str, settings: dict[str, str] | None = None) -> Path:
    base = CGROUP_ROOT / controller
    if not base.is_dir():
        raise OsPlaneUnavailable(f"cgroup v1 controller {controller!r} is not mounted at {base}")
    path = cgroup_dir(controller, name)
    try:
        path.mkdir(parents=True, exist_ok=True)
        for key, value in (settings or {}).items():
            (path / key).write_text(value)
    except OSError as exc:
        raise InjectionFailed(f"cgroup {path}: {exc.strerror}") from None
    return path


def cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def cgroup_move(pid: int, path: Path) -> None:
    try:
        (path / "cgroup.procs").write_text(str(pid))
    except ProcessLookupError:
        raise TargetGone(f"process {pid} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise TargetGone(f"process {pid} does not exist") from None
        raise InjectionFailed(f"move {pid} into {path}: {exc.strerror}") from None


def cgroup_remove(path: Path, *, kill: bool, release_to: Path | None = None) -> None:
    """Empty a cgroup (kill its members, or move them to ``release_to``) and rmdir it.

    Idempotent: a cgroup that is already gone is success.
    """
    import signal
    import time

    if not path.exists():
        return
    freezer_state = path / "freezer.state"
    if freezer_state.exists():
        with contextlib.suppress(OSError):
            freezer_state.write_text("THAWED")
    for attempt in range(400):
        pids = cgroup_pids(path)
        if not pids:
            break
        if attempt:
            time.sleep(0.0025)  # killed members take a moment to leave
        for pid in pids:
            try:
                if kill:
                    os.kill(pid, signal.SIGKILL)
                elif release_to is not None:
                    (release_to / "cgroup.procs").write_text(str(pid))
            except (ProcessLookupError, OSError):
                pass
    for attempt in range(400):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise InjectionFailed(f"rmdir {path}: {exc.strerror}") from None
            time.sleep(0.0025 if attempt else 0.0005)
    raise InjectionFailed(f"cgroup {path} still busy after its members were removed")


def tenfold_cgroups(prefix: str) -> list[Path]:
    """Every cgroup under ``*/tenfold/`` whose name starts with ``prefix``."""
    found: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for controller in CGROUP_ROOT.iterdir():
        base = controller / "tenfold"
        if base.is_dir():
            found.extend(p for p in base.iterdir() if p.is_dir() and p.name.startswith(prefix))
    return found


# -- an NFQUEUE rule through nf_tables' xt compat layer ---------------------------------


NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 16
NFNL_MSG_BATCH_END = 17
NFT_MSG_NEWRULE = NFNL_SUBSYS_NFTABLES << 8 | 6
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_APPEND = 0x1, 0x4, 0x400, 0x800
NLA_F_NESTED = 0x8000
NFPROTO_INET = 1
NFQ_FLAG_BYPASS = 0x01
"""xt_NFQUEUE's ``--queue-bypass``: with no listener on the queue, packets pass."""


def add_nfqueue_rule(table: str, chain: str, queue: int) -> None:
    """Append ``NFQUEUE --queue-num queue --queue-bypass`` to ``inet table chain``.

    This kernel has no nft ``queue`` expression (CONFIG_NFT_QUEUE unset) but has
    xt_NFQUEUE and nft_compat, so the rule carries the xt target as an nft
    ``target`` expression (revision 3, ``struct xt_NFQ_info_v3``), sent as one
    nf_tables batch over a netlink socket opened in the calling thread's
    network namespace, exactly as iptables-nft would, without spawning it.
    """
    import socket
    import struct

    from tenfold.chaos_engine._delayer import NLMSG_ERROR, attr, message

    info = struct.pack("=HHH2x", queue, 1, NFQ_FLAG_BYPASS)  # XT_ALIGN'd to 8 bytes
    target = attr(1, b"NFQUEUE\0") + attr(2, struct.pack("!I", 3)) + attr(3, info)
    expr = attr(1, b"target\0") + attr(2 | NLA_F_NESTED, target)
    rule = (
        attr(1, table.encode() + b"\0")
        + attr(2, chain.encode() + b"\0")
        + attr(4 | NLA_F_NESTED, attr(1 | NLA_F_NESTED, expr))
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
    batch = (
        message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, NFNL_SUBSYS_NFTABLES, b"")
        + message(NFT_MSG_NEWRULE, flags, 2, 0, rule, family=NFPROTO_INET)
        + message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 3, NFNL_SUBSYS_NFTABLES, b"")
    )
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12) as sock:  # NETLINK_NETFILTER
        sock.settimeout(5)
        sock.bind((0, 0))
        sock.send(batch)
        while True:
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                raise InjectionFailed(
                    f"nf_tables: no answer adding the NFQUEUE rule to {table}"
                ) from None
            at = 0
            while at + 20 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, at)
                if kind == NLMSG_ERROR and seq == 2:
                    (err,) = struct.unpack_from("=i", data, at + 16)
                    if err:
                        raise InjectionFailed(
                            f"nf_tables: NFQUEUE rule in {table}: {os.strerror(-err)}"
                        )
                    return
                at += (max(length, 16) + 3) & ~3
