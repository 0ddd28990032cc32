"""The platform's benchmark: signal to enforcement, beside fail2ban with its nftables action.

Each timed call writes one burst of auth-log lines: five failed logins from each
of ``n`` attackers (each in its own /24, so the policy's escalation never adds a
range ban that fail2ban would not). Ours produces the burst to Kafka, where the
platform's engine decodes, enriches, records in the ledger (fsync'd), applies
the rules and the lattice policy, and its nftables bouncer, following the
decision stream over HTTP, adds each address to its set. The peer appends the
same lines to a log file that fail2ban 1.0 watches with inotify, with the same
rule (5 failures in 60 s, a 600 s ban) and its ``nftables`` action. On both
sides ``nft monitor`` in the enforcing namespace timestamps each set element as
it is added: the latency of an attacker is from the burst's write to its
address in the set, and the call ends when every attacker is in.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Subject
from tenfold.core.declare import command_version
from tenfold.core.errors import BenchError
from tenfold.core.lifecycle import stop_processes

TABLE = "Platform"
_ELEMENT = re.compile(r"add element (?:inet|ip) \S+ \S+ \{ ([^}]*) \}")
_ADDR = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
RULES = """
[[rule]]
name = "sshd"
domain = "auth"
kind = "ssh_failed_login"
pattern = 'Failed password for \\S+ from (?P<subject>[0-9.]+) port [0-9]+'
max_retry = 5
find_time_s = 60
ban_time_s = 600
"""


class _Monitor:
    """``nft monitor`` in a namespace: when each address first appeared in any set."""

    def __init__(self, netns: str) -> None:
        self.seen: dict[str, float] = {}
        self.cv = threading.Condition()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "nft", "monitor", "new", "elements"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.2)  # subscribed before anything is sent

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            m = _ELEMENT.search(line)
            if m is None:
                continue
            with self.cv:
                for addr in _ADDR.findall(m.group(1)):
                    self.seen.setdefault(addr, now)
                self.cv.notify_all()

    def collect(self, addrs: list[str], timeout_s: float) -> dict[str, float]:
        """When each of ``addrs`` appeared, waiting up to ``timeout_s`` for all of them."""
        deadline = time.monotonic() + timeout_s
        with self.cv:
            while not all(a in self.seen for a in addrs):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            return {a: self.seen[a] for a in addrs if a in self.seen}

    def wait(self, addrs: list[str], timeout_s: float) -> dict[str, float]:
        seen = self.collect(addrs, timeout_s)
        if len(seen) < len(addrs):
            raise BenchError(f"{len(addrs) - len(seen)} attackers never reached nftables")
        return seen

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class _Bursts:
    """Fresh attackers per call (a banned address is not banned again), same for both sides."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0

    def next(self) -> tuple[list[str], list[str]]:
        self.calls += 1
        c = self.calls
        attackers = [f"10.{c}.{i}.7" for i in range(self.n)]
        stamp = time.strftime("%b %d %H:%M:%S")
        lines = [
            f"{stamp} web sshd[{1000 + i}]: Failed password for root from {ip} port {40000 + k} ssh2"
            for k in range(5)
            for i, ip in enumerate(attackers)
        ]
        return attackers, lines


def _root(ctx: BenchContext) -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (network namespaces, nftables)")


def _outcome(attackers: list[str], t0: float, seen: dict[str, float]) -> Outcome:
    lat = [(seen[a] - t0) * 1000 for a in attackers]
    return Outcome(
        len(attackers),
        {"attackers": len(attackers), "lines": 5 * len(attackers)},
        latencies_ms=lat,
        latency_kind="per_unit",
        result=tuple(sorted(attackers)),
    )


def _ours(ctx: BenchContext) -> Op:
    _root(ctx)
    from tenfold.core.services import KafkaBroker, Postgres
    from tenfold.platform._platform import Platform
    from tenfold.platform._transport import produce

    broker = ctx.enter(KafkaBroker())
    pg = ctx.enter(Postgres())
    rules = ctx.workdir / "platform-rules.toml"
    rules.write_text(RULES)
    plat = Platform(ctx.workdir / "platform")
    plat.down()
    ctx.callback(plat.down)
    plat.up(rules, kafka=broker.bootstrap, postgres=pg.dsn, enforce="nft")
    topic = "tenfold.signals"
    monitor = _Monitor(plat.victim)
    ctx.callback(monitor.close)
    bursts = ctx.once("bursts", lambda: _Bursts(ctx.size(5, 50, 200)))
    mine = _Bursts(bursts.n)

    def op() -> Outcome:
        attackers, lines = mine.next()
        t0 = time.monotonic()
        produce(broker.bootstrap, topic, [line.encode() for line in lines])
        return _outcome(attackers, t0, monitor.wait(attackers, 120))

    return op


def _ours_faults(ctx: BenchContext, *, replicated: bool = False) -> Op:
    """The platform's fault experiment per call, with bursts flowing through it.

    ``replicated``: the platform records into the etcd-ordered ledger and the
    experiment is the etcd one (the leader SIGKILLed, the next leader frozen).
    """
    _root(ctx)
    from tenfold.core.services import KafkaBroker, Postgres
    from tenfold.platform._faults import ETCD_EXPERIMENT, EXPERIMENT, AttackStream, run_faults
    from tenfold.platform._platform import Platform

    broker = ctx.enter(KafkaBroker())
    pg = ctx.enter(Postgres())
    rules = ctx.workdir / "platform-rules.toml"
    rules.write_text(RULES)
    chaos = ctx.workdir / "chaos"
    chaos.mkdir(exist_ok=True)
    plat = Platform(ctx.workdir / "platform")
    plat.down()
    ctx.callback(plat.down)
    plat.up(
        rules, kafka=broker.bootstrap, postgres=pg.dsn, enforce="nft", chaos=chaos,
        replicated=replicated,
    )  # fmt: skip
    monitor = _Monitor(plat.victim)
    ctx.callback(monitor.close)
    experiment = ETCD_EXPERIMENT if replicated else EXPERIMENT
    per_s = 5.0
    state = {"calls": 0, "lost": 0}

    def op() -> Outcome:
        state["calls"] += 1
        net = 100 + 5 * state["calls"]
        stream = AttackStream(broker.bootstrap, "tenfold.signals", per_s=per_s, net=net)
        stream.start()
        try:
            report, run = run_faults(
                plat, kafka=broker, postgres=pg, stream=stream, slo_s=120, experiment=experiment
            )
        finally:
            stream.stop()
        if report["status"] != "completed":
            raise BenchError(f"the fault experiment {report['status']}: {report['reason']}")
        attackers = sorted(stream.acked)
        seen = monitor.collect(attackers, 120)
        lost = len(attackers) - len(seen)
        state["lost"] += lost
        if lost:
            raise BenchError(
                f"{lost} of {len(attackers)} bursts Kafka acknowledged never reached nftables"
            )
        return Outcome(
            len(attackers),
            {
                "attackers": len(attackers),
                "decisions_lost": state["lost"],
                "faults": report["faults_injected"],
                "slowest_recovery_s": round(max(c.recovered_s for c in run.checks), 2),
            },
            latencies_ms=[(seen[a] - stream.sent[a]) * 1000 for a in attackers],
            latency_kind="per_unit",
        )

    return op


_F2B_CONF = """[Definition]
loglevel = INFO
logtarget = {dir}/fail2ban.log
socket = {dir}/fail2ban.sock
pidfile = {dir}/fail2ban.pid
dbfile = :memory:
"""
_F2B_JAIL = """[DEFAULT]
backend = pyinotify
[bench]
enabled = true
filter = tenfold-bench
logpath = {dir}/auth.log
maxretry = 5
findtime = 60
bantime = 600
action = nftables[type=allports, name=bench, blocktype=drop]
"""
_F2B_FILTER = """[Definition]
failregex = Failed password for \\S+ from <HOST> port \\d+
"""


def fail2ban_version() -> str:
    out = command_version("fail2ban-server", "-V", timeout_s=20)
    if out is None:
        return "(not installed)"
    return out.splitlines()[0].removeprefix("Fail2Ban v") if out else ""


def _peer(ctx: BenchContext) -> Op:
    _root(ctx)
    server = shutil.which("fail2ban-server")
    if server is None:
        raise BenchError("fail2ban is not installed (Debian package fail2ban, python3-pyinotify)")
    ns = "tfp-f2b"
    d = ctx.workdir / "fail2ban"
    shutil.rmtree(d, ignore_errors=True)
    (d / "filter.d").mkdir(parents=True)
    shutil.copytree("/etc/fail2ban/action.d", d / "action.d")
    (d / "fail2ban.conf").write_text(_F2B_CONF.format(dir=d))
    (d / "jail.conf").write_text(_F2B_JAIL.format(dir=d))
    (d / "filter.d" / "tenfold-bench.conf").write_text(_F2B_FILTER)
    log = d / "auth.log"
    log.write_text("")
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    ctx.callback(lambda: subprocess.run(["ip", "netns", "del", ns], check=False))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, server, "-f", "-x", "-c", str(d)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    ctx.callback(functools.partial(stop_processes, [proc], 20))
    _wait_for(lambda: "Jail 'bench' started" in _text(d / "fail2ban.log"), proc, 60)
    monitor = _Monitor(ns)
    ctx.callback(monitor.close)
    bursts = ctx.once("bursts", lambda: _Bursts(ctx.size(5, 50, 200)))
    mine = _Bursts(bursts.n)

    def op() -> Outcome:
        attackers, lines = mine.next()
        data = "".join(f"{line}\n" for line in lines).encode()
        t0 = time.monotonic()
        with log.open("ab") as f:
            f.write(data)
        return _outcome(attackers, t0, monitor.wait(attackers, 120))

    return op


def _text(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def _wait_for(ready: Callable[[], bool], proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise BenchError(f"fail2ban-server exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise BenchError(f"fail2ban was not ready within {timeout_s:g} s")
        time.sleep(0.05)


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            "signal_to_enforcement",
            "attackers banned",
            Subject("tenfold platform (Kafka -> ledger -> nft bouncer)", _ours),
            Subject(f"fail2ban {fail2ban_version()} (inotify, nftables action)", _peer),
            None,
            TABLE,
            "Signal to enforcement (brute-force bursts, line to nftables set element)",
            "per attacker, from the write of a burst (5 failed logins from each of n attackers) "
            "to the attacker's address in an nftables set, timestamped by nft monitor",
            needs_root=True,
            rounds=3,
            full_rounds=5,
            fairness="both read the same lines with the same rule (5 in 60 s, 600 s ban) and "
            "enforce with nftables in a network namespace; ours goes through Kafka, the "
            "pipeline, the fsync'd ledger, the lattice policy and an HTTP stream poll (20 ms) "
            "before its bouncer runs nft, fail2ban reads a local file through inotify and runs "
            "nft from its action; services and daemons start outside the timer",
            checks="the set of addresses banned is checked equal to the attackers on each "
            "call, on both sides (a missing one fails the row)",
        ),
        Scenario(
            "signal_to_enforcement_during_faults",
            "attackers banned during faults",
            Subject(
                "tenfold platform under its fault experiment (platform_faults.toml)", _ours_faults
            ),
            None,
            None,
            TABLE,
            "Signal to enforcement during faults (engine and bouncer SIGKILLed, PostgreSQL "
            "stopped 10 s, broker frozen 4 s)",
            counts="per call, one run of the chaos experiment while bursts of 5 failed logins "
            "arrive at a fixed pace of 5 attackers/s (so attackers/s is the attack's pace, not "
            "a capacity); the latency is per attacker, from its burst handed to the Kafka "
            "producer to its address in the bouncer's nftables set (nft monitor), faults and "
            "recoveries included; decisions_lost counts acknowledged bursts never enforced "
            "(must be 0; one fails the call); no peer: fail2ban has no such parts to fault",
            rounds=1,
            full_rounds=3,
            warmup=0,
            needs_root=True,
            checks="every attacker whose five lines Kafka acknowledged must reach the nftables "
            "set; the experiment's own checks (each decision enforced once, proofs and tree "
            "head consistency) must pass",
        ),
        Scenario(
            "signal_to_enforcement_during_faults_replicated",
            "attackers banned during etcd faults",
            Subject(
                "tenfold platform --replicated under platform_etcd_faults.toml",
                functools.partial(_ours_faults, replicated=True),
            ),
            None,
            None,
            TABLE,
            "Signal to enforcement during etcd faults (replicated ledger: leader SIGKILLed, "
            "next leader frozen 4 s)",
            counts="per call, one run of the etcd chaos experiment while bursts of 5 failed "
            "logins arrive at a fixed pace of 5 attackers/s (attackers/s is the pace, not a "
            "capacity); the latency is per attacker, from its burst handed to the Kafka "
            "producer to its address in the bouncer's nftables set, through a ledger that a "
            "3-member etcd cluster orders; decisions_lost counts acknowledged bursts never "
            "enforced (must be 0); no peer: fail2ban has no replicated record to fault",
            rounds=1,
            full_rounds=3,
            warmup=0,
            needs_root=True,
            checks="every attacker whose five lines Kafka acknowledged must reach the nftables "
            "set; the experiment's own checks (each decision enforced once, proofs, tree head "
            "consistency, etcd's replica equal to the signed tree) must pass",
        ),
    ]
