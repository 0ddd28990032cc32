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
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.platform.errors import NotUp, PlatformError

__all__ = ["Platform", "ReplayResult", "run_bouncer"]

ATTACKER, VICTIM = "tfp-attacker", "tfp-victim"
DEV_A, DEV_V = "tfp-a0", "tfp-v0"
ADDR_A, ADDR_V = "198.18.0.1", "198.18.0.2"
NETNS_DIR = Path("/var/run/netns")
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


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"_bouncer" in cmdline and b"platform" in cmdline


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


class Platform:
    """The platform's parts, all under ``home`` (state) and two named namespaces."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ledger_dir = home / "ledger"
        self.rules = home / "rules.toml"
        self.fifo = home / "decisions.fifo"
        self.state = home / "xdp-state.json"
        self.pid_file = home / "bouncer.pid"
        self.ready = home / "bouncer.ready"
        self.log = home / "bouncer.log"

    # -- lifecycle ----------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def is_up(self) -> bool:
        return self._pid() is not None and self.ready.exists()

    def up(self, rules: Path | None = None, *, timeout_s: float = 120.0) -> dict[str, Any]:
        if os.geteuid() != 0:
            raise PlatformError("the platform creates namespaces and loads XDP: it needs root")
        if self.is_up():
            raise PlatformError(f"the platform is already up (home {self.home})")
        present = [(NETNS_DIR / ns).exists() for ns in (ATTACKER, VICTIM)]
        if all(present) and self.fifo.exists() and self._pid() is None:
            # The bouncer died (killed, crashed): start it again. It catches up from
            # the ledger after the last index it applied, so nothing is lost or doubled.
            self._start_bouncer(timeout_s)
            return self.status()
        if any(present):
            raise PlatformError(
                f"namespace {ATTACKER} or {VICTIM} exists: run tenfold platform down first"
            )
        if rules is not None:
            from tenfold.autoblocker_ledger import load_rules

            load_rules(rules)  # refused here, before anything is created
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self._make_network()
            if rules is not None:
                self.rules.write_text(rules.read_text())
            elif not self.rules.exists():
                self.rules.write_text(DEFAULT_RULES)
            with contextlib.suppress(FileNotFoundError):
                self.fifo.unlink()
            os.mkfifo(self.fifo, 0o600)
            self._start_bouncer(timeout_s)
        except BaseException:
            self.down()
            raise
        return self.status()

    def _make_network(self) -> None:
        _ip("netns", "add", ATTACKER)
        _ip("netns", "add", VICTIM)
        _ip(
            "link", "add", DEV_A, "netns", ATTACKER, "type", "veth",
            "peer", "name", DEV_V, "netns", VICTIM,
        )  # fmt: skip
        for ns, dev, addr in ((ATTACKER, DEV_A, ADDR_A), (VICTIM, DEV_V, ADDR_V)):
            _ip("-n", ns, "addr", "add", f"{addr}/15", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # The victim takes frames from any source the replay uses (no route back needed).
        for key in ("all", "default", DEV_V):
            _ip("netns", "exec", VICTIM, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")

    def _start_bouncer(self, timeout_s: float) -> None:
        for p in (self.ready, self.pid_file):
            p.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                [*_TENFOLD, "platform", "_bouncer", "--home", str(self.home)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            if proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise PlatformError(f"the XDP bouncer exited: {' | '.join(tail)}")
            if time.monotonic() > deadline:
                proc.kill()
                raise PlatformError(f"the XDP bouncer was not ready within {timeout_s:g} s")
            time.sleep(0.05)

    def down(self) -> dict[str, Any]:
        """Stop the bouncer and delete the namespaces; idempotent. The ledger stays."""
        stopped = None
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
            stopped = pid
        removed = []
        for ns in (ATTACKER, VICTIM):
            if (NETNS_DIR / ns).exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
                removed.append(ns)
        for p in (self.fifo, self.pid_file, self.ready, self.state):
            p.unlink(missing_ok=True)
        return {
            "bouncer_stopped": stopped,
            "namespaces_removed": removed,
            "ledger_kept": str(self.ledger_dir) if self.ledger_dir.exists() else None,
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
            "where": f"XDP on {DEV_V} in netns {VICTIM}",
            "mode": ready.get("mode"),
        }
        state: dict[str, Any] = {"index": -1, "bans": {}}
        if self.state.exists():
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(self.state.read_text())
        ledger: dict[str, Any] = {"entries": 0, "events": 0, "decisions": 0}
        if self.ledger_dir.exists():
            from tenfold.autoblocker_ledger import EmbeddedLedger

            with EmbeddedLedger(self.ledger_dir) as led:
                kinds = [led.get(i).event.kind for i in range(led.size)]
                ledger = {
                    "entries": led.size,
                    "events": sum(not k.startswith("decision.") for k in kinds),
                    "decisions": sum(k.startswith("decision.") for k in kinds),
                    "root": led.tree_head().root.hex() if led.size else None,
                }
        return {
            "home": str(self.home),
            "namespaces": {ns: (NETNS_DIR / ns).exists() for ns in (ATTACKER, VICTIM)},
            "bouncer": bouncer,
            "ledger": ledger,
            "enforced": {"last_index": state.get("index", -1), "bans": state.get("bans", {})},
        }

    # -- replay --------------------------------------------------------------------
    def replay(self, path: Path, *, timeout_s: float = 10.0) -> ReplayResult:
        """Push a recorded burst through the flow; see the module docstring."""
        from tenfold.autoblocker_ledger import (
            Autoblocker,
            EmbeddedLedger,
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
        blocker = Autoblocker(load_rules(self.rules))
        result = ReplayResult(str(path), len(lines), 0)
        found = []
        recorded = _recorded_events(path, lines)
        with EmbeddedLedger(self.ledger_dir) as led:
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
                        "tree_size": sth.size,
                        "root": sth.root.hex(),
                        "hashes": len(bundle["proof"]),
                        "verified": True,
                        "public_key": key.hex(),
                    },
                    "enforced": {
                        "where": f"XDP on {DEV_V} in netns {VICTIM}",
                        "probe_from": probe,
                        "frame_dropped": (not _delivered(probe)) if probe else None,
                    },
                }
            )
        return result

    def _applied_index(self) -> int:
        try:
            return int(json.loads(self.state.read_text())["index"])
        except (OSError, ValueError, KeyError):
            return -1


def _recorded_events(path: Path, lines: list[str]) -> list[Any] | None:
    """A file of JSON-lines security events, as ledger events; None for a plain log.

    Recorded times keep their spacing but are moved so that the last event is now:
    a replay is an attack happening now, and its bans must not be lapsed already.
    """
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent
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
    out: list[Any] = []
    for n, ev in enumerate(parsed):
        if ev is None:
            out.append(None)
            continue
        time_ms = int((ev.time + shift) * 1000)
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


def _probe_address(value: str) -> str | None:
    """An IPv4 source inside the banned value that the attacker side can send from."""
    net = ipaddress.ip_network(value)
    if net.version != 4:
        return None  # the pair carries IPv4 only
    addr = net.network_address if net.num_addresses <= 2 else net.network_address + 1
    return str(addr)


def _delivered(src: str, *, tries: int = 3) -> bool:
    """Send a datagram from ``src`` (added for the probe on the attacker side) to the victim."""
    from tenfold.cloud_kernel import in_netns

    added = src != ADDR_A
    if added:
        _ip("-n", ATTACKER, "addr", "add", f"{src}/32", "dev", DEV_A)
    try:
        with in_netns(VICTIM):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with in_netns(ATTACKER):
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
            _ip("-n", ATTACKER, "addr", "del", f"{src}/32", "dev", DEV_A)


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
    with in_netns(VICTIM):
        blocklist = XdpBlockList()
        mode = blocklist.attach(DEV_V)
    bouncer = XdpBouncer(blocklist)
    state = FollowState.load(p.state)
    if p.ledger_dir.exists():
        # Catch up: every decision the ledger recorded after the last one applied
        # (those a replay wrote while this bouncer was down).
        from tenfold.autoblocker_ledger import EmbeddedLedger, stream_decisions

        with EmbeddedLedger(p.ledger_dir) as led:
            missed = list(stream_decisions(led, state.index))
        for d in missed:
            if feed(bouncer, d, state):
                print(f"caught up: {d.action} {d.value} (ledger index {d.index})", flush=True)
    # Opened read-write: this process is also a writer, so the stream never ends
    # when a replay closes its end.
    fd = os.open(p.fifo, os.O_RDWR)

    def show(what: str, item: Decision | str) -> None:
        text = (
            f"{item.action} {item.value} (ledger index {item.index})"
            if isinstance(item, Decision)
            else f"expired {item}"
        )
        print(text, flush=True)

    try:
        with os.fdopen(fd, "rb", buffering=0) as stream:
            p.ready.write_text(json.dumps({"pid": os.getpid(), "mode": mode}))
            print(f"XDP ({mode}) on {DEV_V} in {VICTIM}: following {p.fifo}", flush=True)
            follow(
                bouncer,
                stream,
                state=state,
                source=str(p.fifo),
                on_change=show,
            )
    finally:
        bouncer.close()
