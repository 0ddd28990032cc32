"""The platform under faults: its chaos experiments, run against the live parts.

``platform_faults.toml`` (next to this module) is a chaos-engine experiment: it
SIGKILLs the pipeline engine and the bouncer, stops PostgreSQL for 10 s and
freezes the Kafka broker, each fault injected (and journaled) by the chaos
engine, each followed by the part's recovery and a :func:`check`.
``platform_etcd_faults.toml`` does the same for the replicated ledger's etcd
cluster (``up --replicated``): SIGKILLs the leader, then cuts the next leader
off (frozen; see the file for why not a network partition). The files name
the parts by ``${...}`` placeholders (their process ids, the SLO), which
:func:`run_faults` fills in from the running platform before the chaos engine
validates and runs it.

The experiment's Python steps (:func:`recover`, :func:`check`, :func:`gap`) act
on the run in progress, which :func:`run_faults` holds for them (one run at a
time in a process), as the chaos engine's fault points are found by name.

:class:`AttackStream` is the attack that flows meanwhile: a brute-force burst
(five failed logins) from a new address every ``1/per_s`` seconds into Kafka,
each address in its own /24 (no range escalation), every message acknowledged
by the broker (``acks=all``) before it counts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tenfold.platform.errors import PlatformError

__all__ = [
    "ETCD_EXPERIMENT",
    "EXPERIMENT",
    "AttackStream",
    "FaultRun",
    "nft_elements",
    "run_faults",
]

EXPERIMENT = Path(__file__).with_name("platform_faults.toml")
ETCD_EXPERIMENT = Path(__file__).with_name("platform_etcd_faults.toml")
_PLACEHOLDER = re.compile(r"^\$\{([a-z_]+)\}$")


class _Service(Protocol):
    """What the runner needs of a service: its process id, and to start it again."""

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...


def _fill(doc: Any, values: dict[str, Any]) -> Any:
    """``doc`` with every string that is exactly ``${name}`` replaced by ``values[name]``."""
    if isinstance(doc, dict):
        return {k: _fill(v, values) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_fill(v, values) for v in doc]
    if isinstance(doc, str):
        m = _PLACEHOLDER.match(doc)
        if m is not None:
            if m.group(1) not in values:
                raise PlatformError(f"the fault experiment names ${{{m.group(1)}}}: no such part")
            return values[m.group(1)]
    return doc


def load_experiment(values: dict[str, Any], path: Path = EXPERIMENT) -> Any:
    """The experiment in ``path`` with its placeholders filled, validated by the chaos engine."""
    from tenfold.chaos_engine._experiment import experiment_from_dict

    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PlatformError(f"cannot read the fault experiment {path}: {exc}") from None
    return experiment_from_dict(_fill(doc, values), str(path))


def nft_elements(netns: str, table: str) -> list[str]:
    """Every element of every set of ``table`` in ``netns``, canonical (hosts, prefixes)."""
    from tenfold.autoblocker_ledger._bouncer import NftBouncer
    from tenfold.autoblocker_ledger.errors import BouncerError

    try:
        return NftBouncer(table, netns=netns).blocked()
    except BouncerError as exc:
        raise PlatformError(f"nft list table inet {table} in {netns}: {exc}") from None


def _canonical(value: str) -> str:
    net = ipaddress.ip_network(value, strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


class AttackStream(threading.Thread):
    """Brute-force bursts into Kafka at a steady pace until :meth:`stop`.

    ``sent`` maps each attacker to when its burst was handed to the producer;
    ``acked`` to when the broker acknowledged all five lines; ``last_offset`` is
    the highest offset acknowledged.
    """

    LINES = 5  # the rule's max_retry

    def __init__(self, bootstrap: str, topic: str, *, per_s: float = 4.0, net: int = 100) -> None:
        super().__init__(name="attack-stream", daemon=True)
        self.bootstrap, self.topic, self.per_s, self.net = bootstrap, topic, per_s, net
        self.sent: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.last_offset = -1
        self.error: BaseException | None = None
        self._done: Counter[str] = Counter()
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def address(self, k: int) -> str:
        return f"10.{self.net + k // 250}.{k % 250}.7"

    def acked_offset(self) -> int:
        with self._lock:
            return self.last_offset

    def run(self) -> None:
        from confluent_kafka import Producer

        def done(err: Any, msg: Any) -> None:
            if err is not None:
                self.error = PlatformError(f"kafka refused an attack line: {err}")
                return
            ip = msg.key().decode()
            with self._lock:
                self.last_offset = max(self.last_offset, msg.offset())
                self._done[ip] += 1
                if self._done[ip] == self.LINES:
                    self.acked[ip] = time.monotonic()

        try:
            producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "linger.ms": 2,
                    "acks": "all",
                    "log_level": 3,
                    "message.timeout.ms": 300_000,
                }
            )
            k = 0
            while not self._halt.is_set():
                ip = self.address(k)
                stamp = time.strftime("%b %d %H:%M:%S")
                self.sent[ip] = time.monotonic()
                for i in range(self.LINES):
                    line = (
                        f"{stamp} web sshd[{1000 + k}]: Failed password for root "
                        f"from {ip} port {40000 + i} ssh2"
                    )
                    producer.produce(self.topic, line.encode(), key=ip.encode(), partition=0,
                                     on_delivery=done)  # fmt: skip
                producer.poll(0)
                k += 1
                self._halt.wait(1.0 / self.per_s)  # the attack's pace, not a wait for work
            left = producer.flush(300)
            if left:
                self.error = PlatformError(f"{left} attack lines never acknowledged by Kafka")
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout_s: float = 300.0) -> None:
        self._halt.set()
        self.join(timeout_s)
        if self.is_alive():
            raise PlatformError(f"the attack stream did not flush within {timeout_s:g} s")
        if self.error is not None:
            raise PlatformError(f"the attack stream failed: {self.error}")


@dataclass
class Check:
    """One check after a fault: what the ledger held, and how long enforcement took."""

    after: str
    decisions: int
    enforced: int
    tree_size: int
    proofs_verified: int
    consistent_with: int | None
    recovered_s: float  # from the check's start until every decision was enforced
    etcd_replica: int | None = None  # entries a replica rebuilt from etcd held (replicated)


@dataclass
class FaultRun:
    """The parts an experiment acts on and what its checks found."""

    platform: Any  # tenfold.platform.Platform
    kafka: _Service
    postgres: _Service
    stream: AttackStream | None = None
    checks: list[Check] = field(default_factory=list)
    sth: dict[str, Any] | None = None
    on_check: Callable[[Check], None] | None = None


_RUN: FaultRun | None = None


def _run() -> FaultRun:
    if _RUN is None:
        raise PlatformError("no platform fault run in progress (see tenfold.platform.run_faults)")
    return _RUN


def _tail(log: Path, lines: int = 3) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _engine_url(plat: Any, deadline: float) -> str:
    while True:
        url = plat.engine_url()
        if url is not None:
            return str(url)
        if time.monotonic() > deadline:
            raise PlatformError("the platform engine is not running")
        time.sleep(0.05)


def _verify(run: FaultRun, deadline: float) -> tuple[list[Any], list[str], Check]:
    """Wait until the bouncer applied every decision the ledger holds; what is amiss."""
    from tenfold.autoblocker_ledger import verify_bundle
    from tenfold.core.events import decode_decision
    from tenfold.platform._engine import fetch, stream_after
    from tenfold.platform._platform import NFT_TABLE

    plat = run.platform
    t0 = time.monotonic()
    url = _engine_url(plat, deadline)
    # The pipeline flows again: everything Kafka acknowledged so far is read.
    if run.stream is not None:
        target = run.stream.acked_offset()
        stream = f"{json.loads(plat.transport_conf.read_text())['topic']}/0"
        while plat._stored_position(stream) <= target:
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"the pipeline did not read past offset {target} within the SLO "
                    f"(stored position {plat._stored_position(stream)})"
                )
            time.sleep(0.02)
    body, _ = stream_after(url, -1)
    decisions = [decode_decision(x, source=url) for x in body.splitlines() if x]
    last = max((d.index for d in decisions), default=-1)
    while plat._applied_index() < last:
        if plat._pid() is None:  # it exited: say why, without waiting out the SLO
            raise PlatformError(f"the bouncer is not running: {_tail(plat.log)}")
        if time.monotonic() > deadline:
            raise PlatformError(
                f"the bouncer did not apply ledger index {last} within the SLO "
                f"(it is at {plat._applied_index()})"
            )
        time.sleep(0.02)
    recovered = time.monotonic() - t0
    problems: list[str] = []
    now = time.time()
    held = Counter(nft_elements(plat.victim, NFT_TABLE))
    for d in decisions:
        if d.action == "ban" and d.until > now and held[_canonical(d.value)] != 1:
            problems.append(f"{d.value} (ledger index {d.index}) is not in the nftables sets")
    twice = [k for k, n in Counter((d.scope, d.value) for d in decisions).items() if n > 1]
    problems += [f"{scope} {value} recorded more than once" for scope, value in twice]
    key = bytes.fromhex((plat.ledger_dir / "log.pub").read_text().strip())
    sth = json.loads(fetch(f"{url}/sth")[0])
    for d in decisions:
        bundle = json.loads(fetch(f"{url}/proof?index={d.index}")[0])
        verify_bundle(bundle, key)  # raises on a bad proof or signature
    consistent = None
    if run.sth is not None and run.sth["size"] == 0:
        consistent = 0  # the empty tree is a prefix of every tree
    elif run.sth is not None and run.sth["size"] <= sth["size"]:
        old = run.sth
        proof = json.loads(fetch(f"{url}/consistency?old={old['size']}")[0])
        verify_bundle({"type": "consistency", "old": old, **proof}, key)
        consistent = int(old["size"])
    elif run.sth is not None:
        problems.append(f"the ledger shrank from {run.sth['size']} to {sth['size']} entries")
    replica = None
    if plat.etcd_file.exists():
        # The record is etcd's: a replica rebuilt from it alone (walking the hash
        # chain) holds the tree the engine signed, at that size.
        from tenfold.autoblocker_ledger import SignedTreeHead
        from tenfold.platform._replicated import open_ledger

        with open_ledger(plat) as fresh:
            replica = fresh.size
            if replica < sth["size"]:
                problems.append(f"etcd holds {replica} entries, the engine signed {sth['size']}")
            elif fresh.root(sth["size"]) != SignedTreeHead.from_dict(sth).root:
                problems.append(f"etcd's tree at size {sth['size']} is not the one signed")
    run.sth = sth
    check = Check(
        "", len(decisions), len(decisions) - len(problems), int(sth["size"]),
        len(decisions), consistent, recovered, replica,
    )  # fmt: skip
    return decisions, problems, check


async def check(after: str, slo_s: float) -> dict[str, Any]:
    """After ``after`` and its recovery: every decision enforced (within ``slo_s``), once, proved."""
    run = _run()
    deadline = time.monotonic() + slo_s
    _, problems, result = await asyncio.to_thread(_verify, run, deadline)
    result.after = after
    if problems:
        raise PlatformError(f"after {after}: " + "; ".join(problems[:5]))
    run.checks.append(result)
    if run.on_check is not None:
        run.on_check(result)
    return result.__dict__


async def gap(slo_s: float) -> int:
    """The steady-state probe: decisions recorded but not enforced or recorded twice (0)."""
    run = _run()
    _, problems, _ = await asyncio.to_thread(_verify, run, time.monotonic() + slo_s)
    for p in problems[:5]:  # the report carries the count; the reasons go to the log
        print(f"steady state: {p}", file=sys.stderr, flush=True)
    return len(problems)


def _wait_gone(pid: int | None, role: bytes | None, timeout_s: float = 60.0) -> None:
    from tenfold.platform._platform import _alive

    if pid is None:
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid, role) if role is not None else Path(f"/proc/{pid}/cmdline").exists():
        if time.monotonic() > deadline:
            raise PlatformError(f"process {pid} did not exit within {timeout_s:g} s")
        time.sleep(0.02)


def _wait_member_gone(path: Path, pid: int | None, timeout_s: float) -> None:
    from tenfold.platform._replicated import _is_member, read_state

    state = read_state(path)
    if pid is None or state is None:
        return
    members = [m for m in state["members"] if m["pid"] == pid]
    deadline = time.monotonic() + timeout_s
    while members and _is_member(pid, members[0]) and time.monotonic() < deadline:
        time.sleep(0.02)


def _recover(run: FaultRun, part: str, pids: dict[str, int | None], leader: str = "") -> None:
    plat = run.platform
    if part == "etcd":
        from tenfold.platform._replicated import restart_dead, transfer_leadership

        # A member killed a moment ago can still be finishing an fsync (state D): SIGKILL
        # lands only when it returns, and until then the member looks alive and would not
        # be restarted. Give the killed leader up to 10 s to be gone first.
        _wait_member_gone(plat.etcd_file, pids.get("etcd_leader"), 10.0)
        restart_dead(plat.etcd_file)  # every member down, on its data and ports
        if leader:
            transfer_leadership(plat.etcd_file, leader)
    elif part in ("engine", "bouncer"):
        _wait_gone(pids[part], b"_" + part.encode())
        plat.up()  # restarts the dead part in place (tenfold platform up)
    elif part == "postgres":
        pg = run.postgres
        deadline = time.monotonic() + 60
        while pg.pid is not None and _zombie_or_alive(pg.pid):
            if time.monotonic() > deadline:
                raise PlatformError("PostgreSQL did not stop")
            time.sleep(0.05)
        pg.start()
    else:
        raise PlatformError(f"no part {part!r} to recover (engine, bouncer, postgres, etcd)")


def _zombie_or_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


_PIDS: dict[str, int | None] = {}


def _etcd_values(path: Path) -> dict[str, Any]:
    """The etcd placeholders: the leader's pid, and the member to lead next (name, pid)."""
    from tenfold.platform._replicated import leader, member_health

    lead = leader(path)
    members = member_health(path) or []
    if not all(m["healthy"] for m in members):
        down = [m["name"] for m in members if not m["healthy"]]
        raise PlatformError(f"etcd members not healthy before the faults: {', '.join(down)}")
    nxt = members[(lead + 1) % len(members)]
    return {
        "etcd_leader_pid": members[lead]["pid"],
        "etcd_next": nxt["name"],
        "etcd_next_pid": nxt["pid"],
    }


async def recover(part: str, leader: str = "") -> None:
    """Bring ``part`` back: the engine or bouncer through ``platform up``, PostgreSQL started,
    etcd's dead members started (then ``leader``, a member's name, made the leader)."""
    run = _run()
    await asyncio.to_thread(_recover, run, part, _PIDS, leader)


def run_faults(
    platform: Any,
    *,
    kafka: _Service,
    postgres: _Service,
    stream: AttackStream | None = None,
    slo_s: float = 60.0,
    experiment: Path = EXPERIMENT,
    journal_dir: Path | None = None,
    on_check: Callable[[Check], None] | None = None,
) -> tuple[dict[str, Any], FaultRun]:
    """Run the fault experiment against ``platform`` (up, with the transport and nft).

    ``journal_dir`` is where the chaos engine journals its faults (default: the
    directory the platform's engine follows, ``up --chaos-journals``), so each
    fault is recorded in the ledger. Returns the chaos engine's report (as a dict)
    and the run with each check's figures; a check that fails fails the run
    (status ``failed``, its reason in the report).
    """
    global _RUN
    from tenfold.chaos_engine import ChaosEngine
    from tenfold.chaos_engine._experiment import run_experiment

    conf = json.loads(platform.transport_conf.read_text())
    if journal_dir is None:
        if not conf.get("chaos"):
            raise PlatformError("the platform was started without --chaos-journals")
        journal_dir = Path(conf["chaos"])
    if platform.enforcement() != "nft":
        raise PlatformError("the fault experiment checks nftables sets: start with --enforce nft")
    pids = {
        "engine": platform._engine_pid(),
        "bouncer": platform._pid(),
        "postgres": postgres.pid,
        "kafka": kafka.pid,
    }
    missing = [k for k, v in pids.items() if v is None]
    if missing:
        raise PlatformError(f"not running: {', '.join(missing)}")
    values: dict[str, Any] = {**{f"{k}_pid": v for k, v in pids.items()}, "slo_s": slo_s}
    if platform.etcd_file.exists():
        values.update(_etcd_values(platform.etcd_file))
    exp = load_experiment(values, experiment)
    if _RUN is not None:
        raise PlatformError("a platform fault run is already in progress in this process")
    run = FaultRun(platform, kafka, postgres, stream, on_check=on_check)
    _RUN = run
    _PIDS.clear()
    _PIDS.update(pids)
    if "etcd_leader_pid" in values:
        _PIDS["etcd_leader"] = values["etcd_leader_pid"]

    async def main() -> dict[str, Any]:
        engine = await ChaosEngine.create(
            None, None, experiment="platform-faults", journal_dir=journal_dir
        )
        async with engine:
            report = await run_experiment(exp, engine)
        return report.as_dict() | {
            "steps_detail": [
                {"id": s.id, "kind": s.kind, "ok": s.ok, "s": s.duration_s, "detail": s.detail}
                for s in report.steps
            ]
        }

    try:
        return asyncio.run(main()), run
    finally:
        _RUN = None
        _PIDS.clear()


def fault_experiment(
    *,
    replicated: bool = False,
    experiment: Path | None = None,
    slo_s: float = 120.0,
    per_s: float = 4.0,
) -> dict[str, Any]:
    """Bring up a platform of its own, run a fault experiment against it, take it all down.

    What ``tenfold platform faults`` runs: Kafka and PostgreSQL (core services),
    the platform with the transport, nftables and the chaos journals (and with
    ``replicated`` its etcd cluster), under a prefix of its own so a platform the
    user runs is left alone; an attack stream flows throughout. The default
    experiment is ``platform_etcd_faults.toml`` with ``replicated``, else
    ``platform_faults.toml``. ``passed`` is true when the experiment completed
    and, after it, every attacker Kafka acknowledged is banned exactly once.
    """
    import os
    import shutil
    import tempfile

    from tenfold.core.errors import ServiceError
    from tenfold.core.services import KafkaBroker, Postgres, run_dir
    from tenfold.platform._platform import Platform
    from tenfold.platform._replicated import settled_health

    path = experiment or (ETCD_EXPERIMENT if replicated else EXPERIMENT)
    # Bad input is refused before anything starts: the file is validated with
    # stand-in values for the live parts' placeholders.
    parts = ("engine", "bouncer", "postgres", "kafka", "etcd_leader", "etcd_next")
    load_experiment({f"{p}_pid": 2 for p in parts} | {"etcd_next": "m1", "slo_s": slo_s}, path)
    if os.geteuid() != 0:
        raise PlatformError("the fault experiment creates namespaces and nft tables: it needs root")
    work = Path(tempfile.mkdtemp(prefix="platform-faults-", dir=run_dir()))
    plat = Platform(work / "home", prefix=f"tfx{os.getpid():x}"[:12])
    out: dict[str, Any] = {"experiment": str(path), "replicated": replicated}
    try:
        with KafkaBroker() as kafka, Postgres() as pg:
            chaos = work / "chaos"
            chaos.mkdir()
            topic = "tenfold.signals"
            plat.up(
                kafka=kafka.bootstrap, postgres=pg.dsn, topic=topic, enforce="nft", chaos=chaos,
                replicated=replicated,
            )  # fmt: skip
            stream = AttackStream(kafka.bootstrap, topic, per_s=per_s)
            stream.start()
            try:
                report, run = run_faults(
                    plat, kafka=kafka, postgres=pg, stream=stream, slo_s=slo_s, experiment=path
                )
            finally:
                stream.stop()
            try:
                decisions, problems, _ = _verify(run, time.monotonic() + slo_s)
            except PlatformError as exc:  # a part did not come back: a failed check
                decisions, problems = [], [str(exc)]
            banned = Counter(d.value for d in decisions if d.action == "ban")
            missing = sorted(set(stream.acked) - set(banned))
            problems += [f"{ip}: acknowledged by Kafka, never banned" for ip in missing[:5]]
            problems += [f"{ip} banned {n} times" for ip, n in banned.items() if n > 1]
            out |= {
                "report": report,
                "checks": [c.__dict__ for c in run.checks],
                "attackers": len(stream.acked),
                "banned": len(banned),
                "problems": problems,
                "etcd": settled_health(plat.etcd_file, slo_s) if replicated else None,
                "passed": report["status"] == "completed" and not problems,
            }
    except ServiceError as exc:
        raise PlatformError(f"a service the experiment needs did not start: {exc}") from None
    finally:
        try:
            plat.down()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out
