"""The platform on one machine: autoblocker -> embedded ledger -> decision stream -> XDP.

``up`` creates two network namespaces joined by a veth pair (an attacker side and
a victim side, addresses from RFC 2544's 198.18.0.0/15), and starts the XDP
bouncer as a background process: it attaches the cloud kernel's block list to the
victim's interface and follows the decision stream from a named pipe, with a
resume file (last ledger index applied, bans held). ``replay`` runs a log through
the autoblocker's rules, appends events and decisions to the embedded ledger,
verifies each decision's inclusion proof against the signed tree head as a third
party would, writes the decisions to the stream, waits until the bouncer has
applied them, and then sends a frame from the banned address across the pair to
see that it is dropped. ``down`` stops the bouncer (its program detaches when its
last file descriptor closes: nothing is pinned) and deletes the namespaces; the
ledger is kept, being the record.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.core.files import replace_file
from tenfold.platform.errors import NotUp, PlatformError

__all__ = ["Platform", "ReplayResult", "run_bouncer", "services_endpoints"]

# The default instance's names. Another prefix (``TENFOLD_PLATFORM_PREFIX`` or
# ``Platform(home, prefix=...)``) gives another instance its own namespaces and
# interfaces, so two runs on one machine never delete each other's.
PREFIX_ENV, DEFAULT_PREFIX = "TENFOLD_PLATFORM_PREFIX", "tfp"
ATTACKER, VICTIM = "tfp-attacker", "tfp-victim"
DEV_A, DEV_V = "tfp-a0", "tfp-v0"
# An interface name has at most 15 characters (IFNAMSIZ - 1): prefix + "-a0" fits.
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,11}$")
ADDR_A, ADDR_V = "198.18.0.1", "198.18.0.2"
NETNS_DIR = Path("/var/run/netns")
NFT_TABLE = "tenfold_platform"
ENFORCERS = ("xdp", "nft")
_TENFOLD = (sys.executable, "-m", "tenfold.core")

DEFAULT_RULES = """\
# The platform's detection rules (fail2ban style; see docs/autoblocker_ledger.md).
[[rule]]
name = "sshd"
domain = "auth"
kind = "ssh_failed_login"
pattern = 'Failed password for (invalid user )?\\S+ from (?P<subject>[0-9a-fA-F.:]+)'
max_retry = 5
find_time_s = 60
ban_time_s = 600

# Security events from other systems (JSON lines of tenfold.core.events.SecurityEvent),
# e.g. one per port probed, as a flow analyser would emit them.
[[rule]]
name = "portscan"
domain = "network"
kind = "port_scan"
max_retry = 10
find_time_s = 60
ban_time_s = 600
"""


def _ip(*argv: str) -> None:
    proc = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PlatformError(f"ip {' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")


def _alive(pid: int, role: bytes = b"_bouncer") -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return role in cmdline and b"platform" in cmdline


def _stop(pid: int, role: bytes) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid, role) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, role):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid, role):
            time.sleep(0.05)


def _start(argv: list[str], log_path: Path, pid_file: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def _wait_ready(
    proc: subprocess.Popen[bytes], ready: Path, log: Path, what: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise PlatformError(f"the {what} exited: {' | '.join(tail)}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise PlatformError(f"the {what} was not ready within {timeout_s:g} s")
        time.sleep(0.05)


@dataclass
class ReplayResult:
    """What a replay did: events seen, and per decision its proof and enforcement."""

    source: str
    lines: int
    events: int
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "lines": self.lines,
            "events": self.events,
            "decisions": self.decisions,
        }


def _check_prefix(prefix: str, where: str) -> str:
    if not _PREFIX.match(prefix):
        raise PlatformError(
            f"{where}: platform prefix {prefix!r} is not 1-12 lower-case letters and digits "
            "starting with a letter"
        )
    return prefix


class Platform:
    """The platform's parts, all under ``home`` (state) and two named namespaces.

    The namespaces and interfaces are named after ``prefix``: the one given, else
    the one the platform in ``home`` was started with, else ``$TENFOLD_PLATFORM_PREFIX``,
    else ``tfp`` (``tfp-attacker``, ``tfp-victim``).
    """

    def __init__(self, home: Path, *, prefix: str | None = None) -> None:
        self.home = home
        self.prefix_file = home / "prefix"
        if prefix is not None:
            self.prefix = _check_prefix(prefix, "prefix")
        else:
            try:
                recorded = self.prefix_file.read_text().strip()
            except OSError:
                recorded = ""
            if recorded:
                self.prefix = _check_prefix(recorded, str(self.prefix_file))
            else:
                env = os.environ.get(PREFIX_ENV, "").strip()
                self.prefix = _check_prefix(env, PREFIX_ENV) if env else DEFAULT_PREFIX
        self.attacker, self.victim = f"{self.prefix}-attacker", f"{self.prefix}-victim"
        self.dev_a, self.dev_v = f"{self.prefix}-a0", f"{self.prefix}-v0"
        self.ledger_dir = home / "ledger"
        self.rules = home / "rules.toml"
        self.fifo = home / "decisions.fifo"
        self.state = home / "xdp-state.json"
        self.pid_file = home / "bouncer.pid"
        self.ready = home / "bouncer.ready"
        self.log = home / "bouncer.log"
        # The transport (``up --kafka --postgres``): the engine process owns the ledger.
        self.transport_conf = home / "transport.json"
        self.positions = home / "kafka-positions.json"
        self.engine_pid_file = home / "engine.pid"
        self.engine_ready = home / "engine.ready"
        self.engine_log = home / "engine.log"
        self.enforce_file = home / "enforce"
        # ``up --replicated``: the etcd cluster that orders the ledger (see _replicated).
        self.etcd_file = home / "etcd.json"
        self.etcd_dir = home / "etcd"

    def enforcement(self) -> str:
        """Which bouncer enforces: ``xdp`` (the default) or ``nft``."""
        try:
            return self.enforce_file.read_text().strip() or "xdp"
        except OSError:
            return "xdp"

    def where(self) -> str:
        if self.enforcement() == "nft":
            return f"nftables table inet {NFT_TABLE} in netns {self.victim}"
        return f"XDP on {self.dev_v} in netns {self.victim}"

    # -- lifecycle ----------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _engine_pid(self) -> int | None:
        try:
            pid = int(self.engine_pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid, b"_engine") else None

    def engine_url(self) -> str | None:
        """The engine's HTTP address when the transport runs, else None."""
        if self._engine_pid() is None:
            return None
        try:
            url = str(json.loads(self.engine_ready.read_text())["url"])
        except (OSError, ValueError, KeyError):
            return None
        if url.startswith("https://"):  # up --attested: the operator's certificate
            from tenfold.platform._trust import remember_operator

            remember_operator(url, self.home)
        return url

    def is_up(self) -> bool:
        return self._pid() is not None and self.ready.exists()

    def up(
        self,
        rules: Path | None = None,
        *,
        kafka: str | None = None,
        postgres: str | None = None,
        assets: Path | None = None,
        topic: str | None = None,
        model: Path | None = None,
        enforce: str = "xdp",
        chaos: Path | None = None,
        allow: tuple[str, ...] = (),
        attested: bool = False,
        attest_period_s: float = 2.0,
        replicated: bool = False,
        timeout_s: float = 120.0,
    ) -> dict[str, Any]:
        """Create the namespaces, start the engine (with ``kafka`` and ``postgres``) and the bouncer.

        With the transport, the engine process runs the pipeline Kafka -> decode ->
        asset enrichment -> ledger and serves the ledger; the bouncer follows its
        decision stream over HTTP. Without it, ``replay`` writes the ledger itself.
        ``replicated``: the ledger is ordered by a three-member etcd cluster that
        ``up`` starts (and ``down`` stops), not the embedded store.
        """
        if os.geteuid() != 0:
            raise PlatformError("the platform creates namespaces and loads XDP: it needs root")
        if self.is_up():
            if self.transport_conf.exists() and self._engine_pid() is None:
                # The engine died, the bouncer did not: the engine resumes from its
                # stored Kafka positions, the bouncer's poller finds its new address.
                self._start_engine(timeout_s)
                return self.status()
            raise PlatformError(f"the platform is already up (home {self.home})")
        if (kafka is None) != (postgres is None):
            raise PlatformError("the transport needs both --kafka and --postgres")
        if enforce not in ENFORCERS:
            raise PlatformError(f"enforce with xdp or nft, not {enforce!r}")
        for a in allow:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError as exc:
                raise PlatformError(f"--allow {a!r}: {exc}") from None
        if allow and kafka is None:
            raise PlatformError("the ban policy runs in the engine: --allow needs --kafka")
        if chaos is not None and kafka is None:
            raise PlatformError("chaos journals are followed by the engine: it needs --kafka")
        if model is not None and kafka is None:
            raise PlatformError("the learned detector runs in the engine: it needs --kafka")
        if attested and kafka is None:
            raise PlatformError(
                "attested nodes talk to the engine's ledger: --attested needs --kafka"
            )
        present = [(NETNS_DIR / ns).exists() for ns in (self.attacker, self.victim)]
        if all(present) and self.fifo.exists() and self._pid() is None:
            # The bouncer (or the engine) died: start it again. The engine resumes
            # from its stored Kafka positions; the bouncer catches up from the ledger
            # after the last index it applied, so nothing is lost or doubled.
            if self.transport_conf.exists() and self._engine_pid() is None:
                self._start_engine(timeout_s)
            self._start_bouncer(timeout_s)
            return self.status()
        if any(present):
            raise PlatformError(
                f"namespace {self.attacker} or {self.victim} exists: run tenfold platform down first"
            )
        from tenfold.autoblocker_ledger import load_rules

        if rules is not None:
            load_rules(rules)  # refused here, before anything is created
        inventory = _read_assets(assets) if assets is not None else []
        if model is not None:
            from tenfold.auto_learner import Model
            from tenfold.platform._detect import LearnedDetector

            LearnedDetector(Model.load(model))  # refused here, before anything is created
        self.home.mkdir(parents=True, exist_ok=True)
        from tenfold.platform._replicated import start_cluster, stop_cluster

        stop_cluster(self.etcd_file)  # one left by a platform that was never taken down
        try:
            self.prefix_file.write_text(self.prefix + "\n")
            if replicated:
                start_cluster(self.etcd_file, self.etcd_dir)
            self._make_network()
            if rules is not None:
                self.rules.write_text(rules.read_text())
            elif not self.rules.exists():
                self.rules.write_text(DEFAULT_RULES)
            with contextlib.suppress(FileNotFoundError):
                self.fifo.unlink()
            os.mkfifo(self.fifo, 0o600)
            self.enforce_file.write_text(enforce)
            if kafka is not None and postgres is not None:
                from tenfold.platform._transport import TOPIC, ensure_topic, load_assets

                topic = topic or TOPIC
                ensure_topic(kafka, topic)
                load_assets(postgres, inventory)
                conf: dict[str, Any] = {"kafka": kafka, "postgres": postgres, "topic": topic}
                if model is not None:
                    conf["model"] = str(model.resolve())
                if chaos is not None:
                    conf["chaos"] = str(chaos.resolve())
                if allow:
                    conf["allow"] = list(allow)
                if attested:
                    from tenfold.platform._trust import provision

                    provision(self.home, attest_period_s)
                    conf["attested"] = True
                self.transport_conf.write_text(json.dumps(conf))
                self._start_engine(timeout_s)
            self._start_bouncer(timeout_s)
        except BaseException:
            self.down()
            raise
        return self.status()

    def _make_network(self) -> None:
        _ip("netns", "add", self.attacker)
        _ip("netns", "add", self.victim)
        _ip(
            "link", "add", self.dev_a, "netns", self.attacker, "type", "veth",
            "peer", "name", self.dev_v, "netns", self.victim,
        )  # fmt: skip
        pairs = ((self.attacker, self.dev_a, ADDR_A), (self.victim, self.dev_v, ADDR_V))
        for ns, dev, addr in pairs:
            _ip("-n", ns, "addr", "add", f"{addr}/15", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # The victim takes frames from any source the replay uses (no route back needed).
        for key in ("all", "default", self.dev_v):
            _ip("netns", "exec", self.victim, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")

    def _start_bouncer(self, timeout_s: float) -> None:
        for p in (self.ready, self.pid_file):
            p.unlink(missing_ok=True)
        proc = _start(
            [*_TENFOLD, "platform", "_bouncer", "--home", str(self.home)], self.log, self.pid_file
        )
        _wait_ready(proc, self.ready, self.log, "XDP bouncer", timeout_s)

    def _start_engine(self, timeout_s: float) -> None:
        for p in (self.engine_ready, self.engine_pid_file):
            p.unlink(missing_ok=True)
        proc = _start(
            [*_TENFOLD, "platform", "_engine", "--home", str(self.home)],
            self.engine_log,
            self.engine_pid_file,
        )
        _wait_ready(proc, self.engine_ready, self.engine_log, "platform engine", timeout_s)

    def down(self) -> dict[str, Any]:
        """Stop the bouncer and delete the namespaces; idempotent. The ledger stays."""
        stopped = None
        pid = self._pid()
        if pid is not None:
            _stop(pid, b"_bouncer")
            stopped = pid
        engine = self._engine_pid()
        if engine is not None:
            _stop(engine, b"_engine")
        from tenfold.platform._trust import stop_orphans

        stop_orphans(self.home)
        from tenfold.platform._replicated import stop_cluster

        etcd = stop_cluster(self.etcd_file)  # after the engine: it writes until it stops
        removed = []
        for ns in (self.attacker, self.victim):
            if (NETNS_DIR / ns).exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
                removed.append(ns)
        for p in (
            self.fifo, self.pid_file, self.ready, self.state,
            self.engine_pid_file, self.engine_ready, self.transport_conf, self.enforce_file,
            self.prefix_file,
        ):  # fmt: skip
            p.unlink(missing_ok=True)
        return {
            "bouncer_stopped": stopped,
            "engine_stopped": engine,
            "namespaces_removed": removed,
            "etcd_stopped": etcd,
            "ledger_kept": str(self.ledger_dir) if self.ledger_dir.exists() and not etcd else None,
        }

    # -- status --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        pid = self._pid()
        ready: dict[str, Any] = {}
        if self.ready.exists():
            with contextlib.suppress(OSError, ValueError):
                ready = json.loads(self.ready.read_text())
        bouncer = {
            "running": pid is not None and bool(ready),
            "pid": pid,
            "where": self.where(),
            "mode": ready.get("mode"),
        }
        state: dict[str, Any] = {"index": -1, "bans": {}}
        if self.state.exists():
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(self.state.read_text())
        ledger: dict[str, Any] = {"entries": 0, "events": 0, "decisions": 0}
        engine: dict[str, Any] | None = None
        url = self.engine_url()
        if url is not None:
            from tenfold.platform._engine import fetch

            counts = json.loads(fetch(f"{url}/platform")[0])
            transport = counts.pop("transport")
            ledger = counts
            engine = {"running": True, "pid": self._engine_pid(), "url": url, **transport}
            from tenfold.platform._trust import trust_status

            trust = trust_status(self.home, self.engine_ready)
            if trust is not None:
                engine["trust"] = trust
        elif self.transport_conf.exists():
            engine = {"running": False, "pid": None}
        from tenfold.platform._replicated import member_health, open_ledger

        etcd = member_health(self.etcd_file)
        if url is None and (self.ledger_dir.exists() or etcd is not None):
            with open_ledger(self) as led:
                kinds = [led.get(i).event.kind for i in range(led.size)]
                ledger = {
                    "entries": led.size,
                    "events": sum(not k.startswith("decision.") for k in kinds),
                    "decisions": sum(k.startswith("decision.") for k in kinds),
                    "root": led.tree_head().root.hex() if led.size else None,
                }
        return {
            "home": str(self.home),
            "namespaces": {ns: (NETNS_DIR / ns).exists() for ns in (self.attacker, self.victim)},
            "bouncer": bouncer,
            "engine": engine,
            "ledger": ledger,
            "etcd": etcd,
            "enforced": {"last_index": state.get("index", -1), "bans": state.get("bans", {})},
        }

    # -- replay --------------------------------------------------------------------
    def replay(self, path: Path, *, timeout_s: float = 10.0) -> ReplayResult:
        """Push a recorded burst through the flow; see the module docstring."""
        from tenfold.autoblocker_ledger import (
            Autoblocker,
            inclusion_bundle,
            load_rules,
            stream_decision,
            verify_bundle,
        )
        from tenfold.core.events import encode_decision

        if not self.ready.exists():
            raise NotUp("the platform is not up (run: tenfold platform up)")
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise PlatformError(f"cannot read {path}: {exc}") from None
        from tenfold.platform._trust import attestation_attack, replay_attestation

        attack = attestation_attack(path, lines)
        if attack is not None:
            return replay_attestation(self, path, attack, timeout_s)
        if self.transport_conf.exists():
            url = self.engine_url()
            if url is None:
                raise NotUp("the platform engine is not running: tenfold platform up restarts it")
            return self._replay_via_kafka(url, path, lines, timeout_s)
        blocker = Autoblocker(load_rules(self.rules))
        result = ReplayResult(str(path), len(lines), 0)
        found = []
        recorded = _recorded_events(path, lines)
        from tenfold.platform._replicated import open_ledger

        with open_ledger(self) as led:
            for n, line in enumerate(lines):
                now_ms = int(time.time() * 1000)
                if recorded is not None:
                    events = [recorded[n]] if recorded[n] is not None else []
                else:
                    events = blocker.events_from_line(line, now_ms, source=str(path))
                for ev in events:
                    led.append(ev)
                    result.events += 1
                    new = blocker.observe(ev)
                    if new:
                        receipts = led.append_batch(blocker.decision_events(new))
                        for made, r in zip(new, receipts, strict=True):
                            sd = stream_decision(made, r.index)
                            if sd is not None:
                                found.append(sd)
            sth = led.tree_head()
            key = led.key.public_bytes
            bundles = [inclusion_bundle(led, d.index, sth) for d in found]
        if not found:
            return result
        for bundle in bundles:
            verify_bundle(bundle, key)  # as a third party would, with the public key only
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            raise NotUp(
                f"recorded at ledger index {', '.join(str(d.index) for d in found)}, but the "
                "XDP bouncer is not running: tenfold platform up restarts it and it catches up"
            ) from None
        try:
            os.set_blocking(fd, True)
            os.write(fd, b"".join(encode_decision(d) for d in found))
        finally:
            os.close(fd)
        self._enforced(result, found, bundles, sth.size, sth.root.hex(), key.hex(), timeout_s)
        return result

    def _replay_via_kafka(
        self, url: str, path: Path, lines: list[str], timeout_s: float
    ) -> ReplayResult:
        """The lines go into Kafka; the engine's pipeline records them and their decisions."""
        from tenfold.autoblocker_ledger import verify_bundle
        from tenfold.core.events import decode_decision, encode_event
        from tenfold.platform._engine import fetch, stream_after
        from tenfold.platform._transport import produce

        conf = json.loads(self.transport_conf.read_text())
        shifted = _shifted_events(path, lines)
        if shifted is not None:
            messages = [encode_event(ev) for ev in shifted if ev is not None]
        else:
            messages = [line.encode() for line in lines if line.strip()]
        before = json.loads(fetch(f"{url}/platform")[0])
        result = ReplayResult(str(path), len(lines), 0)
        if not messages:
            return result
        last = produce(conf["kafka"], conf["topic"], messages)
        stream = f"{conf['topic']}/0"
        deadline = time.monotonic() + timeout_s
        while self._stored_position(stream) <= last:
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"the pipeline did not record {stream}@{last} within {timeout_s:g} s"
                )
            time.sleep(0.01)
        after = json.loads(fetch(f"{url}/platform")[0])
        result.events = after["events"] - before["events"]
        body, _ = stream_after(url, before["entries"] - 1)
        found = [decode_decision(line, source=url) for line in body.splitlines() if line]
        if not found:
            return result
        key = bytes.fromhex((self.ledger_dir / "log.pub").read_text().strip())
        bundles = [json.loads(fetch(f"{url}/proof?index={d.index}")[0]) for d in found]
        for bundle in bundles:
            verify_bundle(bundle, key)  # as a third party would, with the public key only
        sth = bundles[-1]["sth"]
        self._enforced(
            result, found, bundles, int(sth["size"]), str(sth["root"]), key.hex(), timeout_s
        )
        return result

    def _stored_position(self, stream: str) -> int:
        try:
            return int(json.loads(self.positions.read_text()).get(stream, 0))
        except (OSError, ValueError):
            return 0

    def _enforced(
        self,
        result: ReplayResult,
        found: list[Any],
        bundles: list[dict[str, Any]],
        size: int,
        root: str,
        key: str,
        timeout_s: float,
    ) -> None:
        """Wait until the bouncer applied ``found``, then probe each ban across the pair."""
        last = found[-1].index
        deadline = time.monotonic() + timeout_s
        while self._applied_index() < last:
            if time.monotonic() > deadline or not self.is_up():
                raise PlatformError(
                    f"the XDP bouncer did not apply ledger index {last} within {timeout_s:g} s"
                )
            time.sleep(0.02)
        for d, bundle in zip(found, bundles, strict=True):
            probe = _probe_address(d.value) if d.action == "ban" else None
            dropped = (not _delivered(probe, plat=self)) if probe else None
            result.decisions.append(
                {
                    "decision": {
                        "action": d.action,
                        "scope": d.scope,
                        "value": d.value,
                        "until": d.until,
                        "reason": d.reason,
                    },
                    "ledger_index": d.index,
                    "proof": {
                        "tree_size": size,
                        "root": root,
                        "hashes": len(bundle["proof"]),
                        "verified": True,
                        "public_key": key,
                    },
                    "enforced": {
                        "where": self.where(),
                        "probe_from": probe,
                        "frame_dropped": dropped,
                    },
                }
            )

    def _applied_index(self) -> int:
        try:
            return int(json.loads(self.state.read_text())["index"])
        except (OSError, ValueError, KeyError):
            return -1


def _shifted_events(path: Path, lines: list[str]) -> list[Any] | None:
    """A file of JSON-lines security events, parsed; None for a plain log.

    Recorded times keep their spacing but are moved so that the last event is now:
    a replay is an attack happening now, and its bans must not be lapsed already.
    """
    import msgspec

    from tenfold.core.events import decode_event

    first = next((line for line in lines if line.strip()), "")
    if not first.lstrip().startswith("{"):
        return None
    parsed = [
        decode_event(line, source=str(path), lineno=n) if line.strip() else None
        for n, line in enumerate(lines, 1)
    ]
    latest = max((ev.time for ev in parsed if ev is not None), default=0.0)
    shift = time.time() - latest
    return [
        None if ev is None else msgspec.structs.replace(ev, time=ev.time + shift) for ev in parsed
    ]


def _recorded_events(path: Path, lines: list[str]) -> list[Any] | None:
    """:func:`_shifted_events` as ledger events (ids from the file's source, time and line)."""
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent

    shifted = _shifted_events(path, lines)
    if shifted is None:
        return None
    out: list[Any] = []
    for n, ev in enumerate(shifted):
        if ev is None:
            out.append(None)
            continue
        time_ms = int(ev.time * 1000)
        out.append(
            LedgerEvent(
                f"replay:{ev.source}:{time_ms}:{n}",
                ev.domain,
                ev.kind,
                ev.subject,
                time_ms,
                {**ev.attributes, "source": ev.source},
            )
        )
    return out


def services_endpoints() -> tuple[str, str]:
    """The Kafka bootstrap and PostgreSQL DSN of the servers ``tenfold services up`` started."""
    from tenfold.core.services import run_dir

    path = run_dir() / "services.json"
    try:
        state = json.loads(path.read_text())
        return str(state["kafka"]["bootstrap"]), str(state["postgres"]["dsn"])
    except (OSError, ValueError, KeyError, TypeError):
        raise PlatformError(
            "no Kafka and PostgreSQL from tenfold services (run: tenfold services up kafka postgres)"
        ) from None


def _read_assets(path: Path) -> list[Any]:
    """The asset inventory from a TOML file of ``[[asset]]`` tables (address, host, ...)."""
    import tomllib

    import msgspec

    from tenfold.platform._transport import Asset

    try:
        doc = tomllib.loads(path.read_text())
        return msgspec.convert(doc.get("asset", []), list[Asset])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PlatformError(f"cannot read assets {path}: {exc}") from None
    except msgspec.ValidationError as exc:
        raise PlatformError(f"{path}: bad asset: {exc}") from None


def _probe_address(value: str) -> str | None:
    """An IPv4 source inside the banned value that the attacker side can send from."""
    net = ipaddress.ip_network(value)
    if net.version != 4:
        return None  # the pair carries IPv4 only
    addr = net.network_address if net.num_addresses <= 2 else net.network_address + 1
    return str(addr)


def _delivered(src: str, *, tries: int = 3, plat: Platform | None = None) -> bool:
    """Send a datagram from ``src`` (added for the probe on the attacker side) to the victim."""
    from tenfold.cloud_kernel import in_netns

    if plat is None:  # the instance named by $TENFOLD_PLATFORM_PREFIX (or the default)
        plat = Platform(NETNS_DIR / "-")
    attacker, victim, dev_a = plat.attacker, plat.victim, plat.dev_a
    added = src != ADDR_A
    if added:
        _ip("-n", attacker, "addr", "add", f"{src}/32", "dev", dev_a)
    try:
        with in_netns(victim):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with in_netns(attacker):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind((ADDR_V, 0))
            rx.settimeout(0.3)
            tx.bind((src, 0))
            token = os.urandom(8)
            for _ in range(tries):
                tx.sendto(token, rx.getsockname())
                try:
                    while True:
                        data, (peer, _) = rx.recvfrom(64)
                        if data == token and peer == src:
                            return True
                except TimeoutError:
                    continue
        return False
    finally:
        if added:
            _ip("-n", attacker, "addr", "del", f"{src}/32", "dev", dev_a)


def _poll_engine(p: Platform, url: str, after: int, fd: int, *, every_s: float = 0.02) -> None:
    from tenfold.platform._engine import stream_after

    down = False
    while True:
        try:
            if down:  # a restarted engine listens on a new port
                url = p.engine_url() or url
            body, after = stream_after(url, after)
        except PlatformError as exc:
            if not down:
                print(f"engine unreachable ({exc}); retrying", flush=True)
            down = True
            time.sleep(0.5)
            continue
        if down:
            print("engine reachable again", flush=True)
            down = False
        if body:
            os.write(fd, body)
        time.sleep(every_s)


def run_bouncer(home: Path) -> None:
    """The background XDP bouncer ``up`` starts: attach, then follow the stream until SIGTERM."""
    from tenfold.cloud_kernel import XdpBlockList, XdpBouncer, in_netns
    from tenfold.core.events import Decision, FollowState, feed, follow

    p = Platform(home)
    if not p.fifo.exists() or not p.pid_file.exists():
        raise PlatformError(f"{home}: no platform here to serve (tenfold platform up starts it)")

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    bouncer: Any
    if p.enforcement() == "nft":
        from tenfold.autoblocker_ledger import NftBouncer

        bouncer = NftBouncer(NFT_TABLE, netns=p.victim).open()
        mode = "nftables"
    else:
        with in_netns(p.victim):
            blocklist = XdpBlockList()
            mode = blocklist.attach(p.dev_v)
        bouncer = XdpBouncer(blocklist)
    state = FollowState.load(p.state)
    url = p.engine_url() if p.transport_conf.exists() else None
    if p.transport_conf.exists() and url is None:
        raise PlatformError("the platform engine is not running: tenfold platform up starts it")
    if url is None and (p.ledger_dir.exists() or p.etcd_file.exists()):
        # Catch up: every decision the ledger recorded after the last one applied
        # (those a replay wrote while this bouncer was down).
        from tenfold.autoblocker_ledger import stream_decisions
        from tenfold.platform._replicated import open_ledger

        with open_ledger(p) as led:
            missed = list(stream_decisions(led, state.index))
        for d in missed:
            if feed(bouncer, d, state):
                print(f"caught up: {d.action} {d.value} (ledger index {d.index})", flush=True)
    node = None
    if url is not None and url.startswith("https://"):
        # up --attested: this node attests (its TPM, a quote every period) and follows
        # the stream with the short-lived certificate the authority issues it.
        from tenfold.platform._trust import NodeAttester, use_node

        node = NodeAttester(p.home, p.engine_ready).start()
        use_node(node.context)
    # Opened read-write: this process is also a writer, so the stream never ends
    # when a replay closes its end.
    fd = os.open(p.fifo, os.O_RDWR)
    if url is not None:
        # With the engine, the stream comes from the ledger over HTTP: a poller
        # asks for what was recorded after the last index it passed on (from the
        # last one applied at start) and feeds it to the follower through the
        # pipe; the follower skips any index it applied, so nothing is repeated.
        threading.Thread(
            target=_poll_engine, args=(p, url, state.index, fd), name="stream", daemon=True
        ).start()

    def show(what: str, item: Decision | str) -> None:
        text = (
            f"{item.action} {item.value} (ledger index {item.index})"
            if isinstance(item, Decision)
            else f"expired {item}"
        )
        print(text, flush=True)

    try:
        with os.fdopen(fd, "rb", buffering=0) as stream:
            # Whole or not at all: `up` returns once the file exists, and its status
            # reads it at once (a file created but not yet written read as "stopped").
            replace_file(p.ready, json.dumps({"pid": os.getpid(), "mode": mode}))
            print(f"{p.where()} ({mode}): following {url or p.fifo}", flush=True)
            follow(
                bouncer,
                stream,
                state=state,
                source=str(p.fifo),
                on_change=show,
            )
    finally:
        bouncer.close()
        if node is not None:
            node.close()
