"""``platform up --replicated``: the ledger ordered by an etcd cluster the platform starts.

The cluster (:class:`tenfold.core.services.Etcd`, three members on 127.0.0.1)
runs in the background after ``up`` returns; ``home/etcd.json`` names its
members (pid, command line, client address, log), so ``status`` asks each for
its health, the fault runner restarts a member it killed, and ``down`` stops
them by pid and removes their data. The log's key stays in ``home/ledger``
(``log.key``, ``log.pub``), as with the embedded ledger: every tree head is
signed by the platform and verified with the same public key.

:class:`SyncLedger` gives the platform's synchronous parts (the engine's
pipeline sink and HTTP routes, ``replay``, the bouncer's catch-up) the face of
:class:`~tenfold.autoblocker_ledger.EmbeddedLedger` over an
:class:`~tenfold.autoblocker_ledger.ReplicatedLedger`: the client's coroutines
run on an event loop in a thread of its own, and one lock serialises every call,
so a reader never sees a replica half way through applying a block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tenfold.platform.errors import PlatformError

__all__ = ["SyncLedger", "member_health", "open_ledger", "start_cluster", "stop_cluster"]

LOG_NAME = "platform"  # the log's keys in etcd: /tenfold/ledger/platform/
_T = TypeVar("_T")


class SyncLedger:
    """A :class:`ReplicatedLedger` behind the synchronous calls the platform makes of a ledger."""

    def __init__(self, endpoints: Sequence[str], key_dir: Path, *, timeout_s: float = 2.0) -> None:
        from tenfold.autoblocker_ledger import LogKey, ReplicatedLedger

        key_dir.mkdir(parents=True, exist_ok=True)
        self.key = LogKey.load_or_create(key_dir)
        self._lock = threading.RLock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="etcd-ledger", daemon=True
        )
        self._thread.start()
        # A short per-request timeout: a frozen member is given up on quickly and
        # the leader asked for (etcd elects a new one within its 100 ms timeout);
        # an append keeps retrying for a minute before it fails.
        self._led = ReplicatedLedger(
            endpoints, name=LOG_NAME, key=self.key, timeout_s=timeout_s, retry_for_s=60.0
        )
        try:
            self._call(self._led.sync())
        except BaseException:
            self.close()
            raise

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        from tenfold.autoblocker_ledger import AutoblockerLedgerError

        with self._lock:
            try:
                return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
            except AutoblockerLedgerError as exc:
                raise PlatformError(f"the replicated ledger: {exc}") from None

    # -- what EmbeddedLedger offers and the platform uses ---------------------------
    @property
    def size(self) -> int:
        with self._lock:
            return self._led.size

    def get(self, index: int) -> Any:
        with self._lock:
            return self._led.get(index)

    def append(self, event: Any) -> Any:
        return self.append_batch([event])[0]

    def append_batch(self, events: Sequence[Any]) -> list[Any]:
        """Appended in order, once each by event id, acknowledged by an etcd quorum."""
        return self._call(self._led.append_batch(events))

    def sync(self) -> int:
        """Pull what other writers appended (a quorum read); the replica's size."""
        return self._call(self._led.sync())

    def tree_head(self) -> Any:
        with self._lock:
            return self._led.tree_head()

    def raw_entries(self, start: int = 0, end: int | None = None) -> list[bytes]:
        with self._lock:
            return self._led.raw_entries(start, end)

    def root(self, size: int | None = None) -> bytes:
        """The Merkle root at ``size`` entries (default: all the replica holds)."""
        with self._lock:
            return self._led.tree.root(size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        with self._lock:
            return self._led.tree.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        with self._lock:
            return self._led.tree.consistency_proof(size1, size2)

    def snapshot(self, dest: Path | str) -> Any:
        raise PlatformError("the replicated ledger lives in etcd: it has no snapshot file")

    def close(self) -> None:
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._led.close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> SyncLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_ledger(plat: Any) -> Any:
    """The ledger the platform in ``plat.home`` records into: replicated or embedded.

    Typed ``Any``: both answer the calls the platform makes (size, get,
    append_batch, tree_head, proofs), and the ledger's functions name the embedded one.
    """
    state = read_state(plat.etcd_file)
    if state is None:
        from tenfold.autoblocker_ledger import EmbeddedLedger

        return EmbeddedLedger(plat.ledger_dir)
    return SyncLedger([m["endpoint"] for m in state["members"]], plat.ledger_dir)


# -- the cluster ---------------------------------------------------------------------


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PlatformError(f"{path}: unreadable etcd state ({exc})") from None
    return state


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def start_cluster(path: Path, workdir: Path, members: int = 3) -> dict[str, Any]:
    """Start ``members`` etcd members with data in ``workdir``; record them in ``path``."""
    from tenfold.core.errors import ServiceError
    from tenfold.core.services import Etcd

    shutil.rmtree(workdir, ignore_errors=True)  # a cluster is born once: no stale members
    cluster = Etcd(members=members, workdir=workdir)
    cluster.keep_data = True
    try:
        cluster.__enter__()
    except ServiceError as exc:
        raise PlatformError(f"the etcd cluster did not start: {exc}") from None
    argvs = [cluster.argv(i) for i in range(members)]
    state = {
        "workdir": str(workdir),
        "members": [
            {
                "name": f"m{i}",
                "endpoint": endpoint,
                "pid": pid,
                "argv": argvs[i],
                "log": str(workdir / f"m{i}.log"),
            }
            for i, (endpoint, pid) in enumerate(
                zip(cluster.endpoints, cluster.detach(), strict=True)
            )
        ],
    }
    _write_state(path, state)
    return state


def _is_member(pid: int | None, member: dict[str, Any]) -> bool:
    """``pid`` runs this member (its etcd with its data directory), not a reused pid."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and [a.decode() for a in cmdline[: len(member["argv"])]] == member["argv"]


def _status(endpoint: str, timeout_s: float = 1.0) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://{endpoint}/v3/maintenance/status", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def member_health(path: Path) -> list[dict[str, Any]] | None:
    """Each member: running, whether it answers, whether it leads, its raft term and index."""
    state = read_state(path)
    if state is None:
        return None
    out = []
    for m in state["members"]:
        row: dict[str, Any] = {
            "name": m["name"],
            "endpoint": m["endpoint"],
            "pid": m["pid"],
            "running": _is_member(m["pid"], m),
            "healthy": False,
            "leader": False,
        }
        if row["running"]:
            with contextlib.suppress(OSError, ValueError, KeyError, urllib.error.URLError):
                st = _status(m["endpoint"])
                me = st["header"]["member_id"]
                row.update(
                    healthy=True,
                    leader=st.get("leader") == me,
                    raft_term=int(st.get("raftTerm", 0)),
                    raft_index=int(st.get("raftIndex", 0)),
                )
        out.append(row)
    return out


def settled_health(path: Path, timeout_s: float) -> list[dict[str, Any]] | None:
    """``member_health`` once every member answers, or as it stands after ``timeout_s``.

    A member just thawed or restarted can miss a status probe while it catches up
    with the leader; a report of the cluster after faults shows it recovered, not
    caught mid-step.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        rows = member_health(path)
        if rows is None or all(r["healthy"] for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def leader(path: Path, timeout_s: float = 30.0) -> int:
    """The index of the member that leads (waiting out an election)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for i, row in enumerate(member_health(path) or []):
            if row["leader"]:
                return i
        if time.monotonic() > deadline:
            raise PlatformError(f"the etcd cluster has no leader after {timeout_s:g} s")
        time.sleep(0.05)


def restart_member(path: Path, i: int, timeout_s: float = 60.0) -> int:
    """Start member ``i`` again on its data and ports (after a crash); its new pid."""
    state = read_state(path)
    if state is None:
        raise PlatformError("the platform runs no etcd cluster (up --replicated)")
    m = state["members"][i]
    if _is_member(m["pid"], m):
        raise PlatformError(f"etcd member {m['name']} is still running (pid {m['pid']})")
    with open(m["log"], "ab") as log:
        proc = subprocess.Popen(
            m["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    m["pid"] = proc.pid
    _write_state(path, state)
    deadline = time.monotonic() + timeout_s
    while True:
        with (
            contextlib.suppress(OSError, ValueError, urllib.error.URLError),
            urllib.request.urlopen(f"http://{m['endpoint']}/health", timeout=1.0) as resp,
        ):
            if json.loads(resp.read()).get("health") in ("true", True):
                return proc.pid
        if proc.poll() is not None:
            raise PlatformError(f"etcd member {m['name']} exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise PlatformError(f"etcd member {m['name']} was not healthy within {timeout_s:g} s")
        time.sleep(0.05)


def stop_cluster(path: Path) -> list[int]:
    """Stop every member by its pid (SIGTERM, then SIGKILL) and remove the data; their pids."""
    state = read_state(path)
    if state is None:
        return []
    live = [m for m in state["members"] if _is_member(m["pid"], m)]
    for m in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(m["pid"], signal.SIGCONT)  # a member left frozen stops too
            os.kill(m["pid"], signal.SIGTERM)
    for sig, wait_s in ((signal.SIGKILL, 20.0), (None, 10.0)):
        deadline = time.monotonic() + wait_s
        while any(_is_member(m["pid"], m) for m in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        stuck = [m for m in live if _is_member(m["pid"], m)]
        if not stuck:
            break
        if sig is None:
            raise PlatformError(f"etcd members did not stop: pids {[m['pid'] for m in stuck]}")
        for m in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(m["pid"], sig)
    shutil.rmtree(state["workdir"], ignore_errors=True)
    path.unlink(missing_ok=True)
    return [m["pid"] for m in live]


def restart_dead(path: Path, timeout_s: float = 60.0) -> list[str]:
    """Start again every member that is not running (after a crash); their names."""
    state = read_state(path)
    if state is None:
        raise PlatformError("the platform runs no etcd cluster (up --replicated)")
    dead = [i for i, m in enumerate(state["members"]) if not _is_member(m["pid"], m)]
    for i in dead:
        restart_member(path, i, timeout_s)
    return [state["members"][i]["name"] for i in dead]


def transfer_leadership(path: Path, name: str, timeout_s: float = 30.0) -> None:
    """Make member ``name`` the leader (etcd's MoveLeader, asked of the leader it replaces)."""
    state = read_state(path)
    if state is None:
        raise PlatformError("the platform runs no etcd cluster (up --replicated)")
    names = [m["name"] for m in state["members"]]
    if name not in names:
        raise PlatformError(f"no etcd member {name!r} (members: {', '.join(names)})")
    target = state["members"][names.index(name)]
    deadline = time.monotonic() + timeout_s
    while True:
        lead = leader(path, max(0.1, deadline - time.monotonic()))
        if state["members"][lead]["name"] == name:
            return
        with contextlib.suppress(OSError, ValueError, KeyError, urllib.error.URLError):
            target_id = _status(target["endpoint"])["header"]["member_id"]
            req = urllib.request.Request(
                f"http://{state['members'][lead]['endpoint']}/v3/maintenance/transfer-leadership",
                data=json.dumps({"targetID": target_id}).encode(),
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=5.0) as resp:
                resp.read()
        if time.monotonic() > deadline:
            raise PlatformError(f"etcd member {name} did not become the leader in {timeout_s:g} s")
        time.sleep(0.05)
