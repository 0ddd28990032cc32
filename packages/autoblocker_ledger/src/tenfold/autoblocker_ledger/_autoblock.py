"""The autoblocker: detections become decisions, decisions are ledger entries.

Rules (TOML, one ``[[rule]]`` table each) work the way fail2ban's jails do: a
``pattern`` (a regular expression with a named group for the subject) turns a
log line into a security event, and a threshold (``max_retry`` events for the
same subject within ``find_time_s``) turns events into a ban for ``ban_time_s``.
A rule without a pattern is a pure threshold over events already in the log
(any domain's detections: ``domain`` and ``kind`` select them). Learned
detectors plug in as callables (or plugins of the
``tenfold.autoblocker_ledger.detectors`` entry-point group) that look at each
event and may return a decision.

Every decision is itself an event in the ledger (domain ``autoblocker``, kind
``decision.ban`` or ``decision.unban``), so the bans are as tamper-evident as the
detections that caused them. :class:`DecisionStream` replays those entries for
bouncers the way CrowdSec's decision stream does: a startup snapshot of the
active bans, then only the changes since a position.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import tomllib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any, Literal, Protocol

import re2  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tenfold.autoblocker_ledger._events import Entry, SecurityEvent
from tenfold.autoblocker_ledger.errors import MalformedEvent, RuleError

Scope = Literal["ip", "range", "subject"]
DECISION_DOMAIN = "autoblocker"
MAX_PATTERN = 4096  # characters of one rule's pattern
_MAX_MESSAGE = 200

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors are raised as RuleError, not printed by the C++ side


def _cut(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """Compile a rule's pattern with RE2: matching time is linear in the line's length.

    Log lines are written by attackers, so a backtracking engine would let one
    line like ``aaaa...`` stall the autoblocker on ``(a+)+b``. Patterns RE2
    cannot run in linear time (backreferences, lookaround) are refused.
    """
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = (
            exc.args[0].decode(errors="replace")
            if exc.args and isinstance(exc.args[0], bytes)
            else str(exc)
        )
        raise ValueError(
            f"pattern is not a regular expression RE2 can match in linear time (no backreferences "
            f"or lookaround): {_cut(reason, 120)}"
        ) from None


class Rule(BaseModel):
    """One detection rule (a fail2ban jail, or a threshold over logged events)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    domain: str = Field(default="host", pattern=r"^[A-Za-z0-9_.:/@\-]{1,128}$")
    kind: str = Field(pattern=r"^[A-Za-z0-9_.:/@\-]{1,128}$")
    pattern: str | None = None
    subject_group: str = "subject"
    max_retry: int = Field(default=5, ge=1)
    find_time_s: float = Field(default=600.0, gt=0)
    ban_time_s: float = Field(default=3600.0, gt=0)
    scope: Scope = "ip"
    range_prefix: int = Field(default=24, ge=8, le=32)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            if len(value) > MAX_PATTERN:
                raise ValueError(f"pattern is {len(value)} characters, at most {MAX_PATTERN}")
            compiled = compile_pattern(value)
            if not compiled.groupindex:
                raise ValueError(
                    "the pattern needs a named group for the subject, e.g. (?P<subject>...)"
                )
        return value


class _RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: list[Rule]


def load_rules(path: Path) -> list[Rule]:
    """Read a TOML rule file; raises :class:`RuleError` naming the rule and key."""
    try:
        raw = tomllib.loads(path.read_bytes().decode())
    except OSError as exc:
        raise RuleError(f"cannot read rules {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RuleError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: malformed TOML: {_cut(str(exc))}") from None
    except RecursionError:
        raise RuleError(f"{path}: malformed TOML: nested too deeply") from None
    return parse_rules(raw, source=str(path))


def parse_rules(raw: dict[str, Any], *, source: str = "<rules>") -> list[Rule]:
    try:
        rules = _RuleFile.model_validate(raw).rule
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _cut(".".join(str(p) for p in err["loc"]), 80)
        raise RuleError(f"{source}: {loc}: {_cut(err['msg'])}") from None
    names = [r.name for r in rules]
    if len(names) != len(set(names)):
        raise RuleError(f"{source}: rule names must be unique")
    for r in rules:
        if r.pattern is not None and r.subject_group not in compile_pattern(r.pattern).groupindex:
            raise RuleError(
                f"{source}: rule {r.name!r}: pattern has no group "
                f"(?P<{_cut(r.subject_group, 40)}>...)"
            )
    return rules


@dataclass(frozen=True, slots=True)
class Decision:
    """A block decision: what to ban (scope and value), for how long, from where, and why."""

    action: Literal["ban", "unban"]
    scope: Scope
    value: str
    duration_s: float
    origin: str
    reason: str
    rule: str
    time_ms: int
    cause: str = ""  # the event id that triggered it: a replay derives the same decision id

    @property
    def until_ms(self) -> int:
        return self.time_ms + int(self.duration_s * 1000)

    def event_id(self, seq: int) -> str:
        """Derived from the input (rule, value, triggering event) when the cause is known."""
        if not self.cause:
            return f"decision:{self.action}:{self.rule}:{self.time_ms}:{seq}"
        key = "\x00".join((self.rule, self.scope, self.value, self.cause))
        return f"decision:{self.action}:{blake2b(key.encode(), digest_size=16).hexdigest()}"

    def to_event(self, seq: int) -> SecurityEvent:
        return SecurityEvent(
            event_id=self.event_id(seq),
            domain=DECISION_DOMAIN,
            kind=f"decision.{self.action}",
            subject=self.value,
            time_ms=self.time_ms,
            evidence={
                "scope": self.scope,
                "duration_s": self.duration_s,
                "origin": self.origin,
                "reason": self.reason,
                "rule": self.rule,
            },
        )

    @classmethod
    def from_event(cls, event: SecurityEvent) -> Decision | None:
        if event.domain != DECISION_DOMAIN or not event.kind.startswith("decision."):
            return None
        ev = event.evidence
        action = event.kind.removeprefix("decision.")
        scope = str(ev.get("scope", "ip"))
        if action not in ("ban", "unban") or scope not in ("ip", "range", "subject"):
            return None
        return cls(
            action=action,  # type: ignore[arg-type]
            scope=scope,  # type: ignore[arg-type]
            value=event.subject,
            duration_s=float(ev.get("duration_s", 0)),
            origin=str(ev.get("origin", "")),
            reason=str(ev.get("reason", "")),
            rule=str(ev.get("rule", "")),
            time_ms=event.time_ms,
        )


def scoped_value(subject: str, scope: Scope, prefix: int) -> str:
    """The value a ban applies to: the IP itself, its /prefix network, or the raw subject."""
    if scope == "subject":
        return subject
    try:
        ip = ipaddress.ip_address(subject)
    except ValueError:
        raise RuleError(f"subject {subject!r} is not an IP address (scope {scope!r})") from None
    if scope == "ip":
        return str(ip)
    bits = prefix if ip.version == 4 else min(128, prefix * 4)
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


class Detector(Protocol):
    """A learned detector: sees each event, may return a decision."""

    def __call__(self, event: SecurityEvent) -> Decision | None: ...


@dataclass
class Autoblocker:
    """Runs rules and detectors over log lines and events; returns the decisions taken.

    The caller records the returned decisions (``decision.to_event``) in a
    ledger; :meth:`run_lines` does both with an embedded ledger-like sink.
    """

    rules: Sequence[Rule]
    detectors: Sequence[Detector] = ()
    _hits: dict[tuple[str, str], deque[int]] = field(default_factory=dict)
    _active: dict[tuple[str, str], Decision] = field(default_factory=dict)
    _seq: int = 0
    skipped: int = 0  # matches whose subject is not a valid event subject (skipped, counted)

    def events_from_line(
        self, line: str, time_ms: int, *, source: str = "log", offset: int | None = None
    ) -> list[SecurityEvent]:
        """Events for every rule whose pattern matches the line (fail2ban's failregex).

        With ``offset`` (the line's byte offset in ``source``) the event id is
        derived from the input alone, source, offset and the line, so reading the
        same log again yields the same ids and the ledger skips them as duplicates.
        A match whose subject cannot be an event subject is skipped and counted
        in :attr:`skipped`; one bad line never stops the run.
        """
        out = []
        for rule in self.rules:
            if rule.pattern is None:
                continue
            m = compile_pattern(rule.pattern).search(line)
            if m is None:
                continue
            subject = m.group(rule.subject_group)
            if not subject:
                continue
            if offset is None:
                self._seq += 1
                event_id = f"{rule.name}:{time_ms}:{self._seq}"
            else:
                key = "\x00".join((rule.name, source, str(offset), line))
                digest = blake2b(key.encode(errors="replace"), digest_size=16).hexdigest()
                event_id = f"{rule.name}:{digest}"
            try:
                event = SecurityEvent(
                    event_id=event_id,
                    domain=rule.domain,
                    kind=rule.kind,
                    subject=subject,
                    time_ms=time_ms,
                    evidence={"line": line[:1000], "source": source[:1000], "rule": rule.name},
                )
            except MalformedEvent:
                self.skipped += 1
                continue
            out.append(event)
        return out

    def observe(self, event: SecurityEvent) -> list[Decision]:
        """Count the event against every matching rule; return new bans and expired unbans."""
        decisions = self.expire(event.time_ms)
        if event.domain == DECISION_DOMAIN:
            return decisions
        for rule in self.rules:
            if rule.kind != event.kind or rule.domain != event.domain:
                continue
            try:  # hits count per banned value: a range rule counts the whole range
                value = scoped_value(event.subject, rule.scope, rule.range_prefix)
            except RuleError:
                continue  # a non-IP subject under an IP rule: nothing to block
            window = self._hits.setdefault((rule.name, value), deque())
            window.append(event.time_ms)
            horizon = event.time_ms - int(rule.find_time_s * 1000)
            while window and window[0] < horizon:
                window.popleft()
            if len(window) < rule.max_retry:
                continue
            ban_key = (rule.scope, value)
            if ban_key in self._active:
                continue
            decision = Decision(
                action="ban",
                scope=rule.scope,
                value=value,
                duration_s=rule.ban_time_s,
                origin=event.domain,
                reason=f"{len(window)} x {rule.kind} within {rule.find_time_s:g} s",
                rule=rule.name,
                time_ms=event.time_ms,
                cause=event.event_id,
            )
            self._active[ban_key] = decision
            window.clear()
            decisions.append(decision)
        for detector in self.detectors:
            d = detector(event)
            if d is not None and not d.cause:
                d = dataclasses.replace(d, cause=event.event_id)
            if d is not None and (d.scope, d.value) not in self._active:
                self._active[(d.scope, d.value)] = d
                decisions.append(d)
        return decisions

    def expire(self, now_ms: int) -> list[Decision]:
        """Unban decisions for every ban whose duration has passed by ``now_ms``."""
        out = []
        for key, ban in list(self._active.items()):
            if ban.until_ms <= now_ms:
                del self._active[key]
                out.append(
                    Decision(
                        "unban",
                        ban.scope,
                        ban.value,
                        0.0,
                        ban.origin,
                        "ban expired",
                        ban.rule,
                        ban.until_ms,
                        ban.cause,
                    )
                )
        return out

    def decision_events(self, decisions: Iterable[Decision]) -> list[SecurityEvent]:
        out = []
        for d in decisions:
            self._seq += 1
            out.append(d.to_event(self._seq))
        return out


@dataclass(frozen=True)
class StreamBatch:
    """A bouncer's view: the position reached, new bans, and values to unban."""

    position: int
    new: list[Decision]
    deleted: list[Decision]


class _Readable(Protocol):
    @property
    def size(self) -> int: ...

    def get(self, index: int) -> Entry: ...


class DecisionStream:
    """Startup snapshot, then changes: what bouncers poll (CrowdSec's decision stream)."""

    def __init__(self, ledger: _Readable) -> None:
        self.ledger = ledger

    def _scan(self, start: int, end: int) -> list[Decision]:
        out = []
        for i in range(start, end):
            d = Decision.from_event(self.ledger.get(i).event)
            if d is not None:
                out.append(d)
        return out

    def snapshot(self, now_ms: int) -> StreamBatch:
        """Every ban in force at ``now_ms`` and the position to poll changes from."""
        end = self.ledger.size
        active: dict[tuple[str, str], Decision] = {}
        for d in self._scan(0, end):
            if d.action == "ban":
                active[(d.scope, d.value)] = d
            else:
                active.pop((d.scope, d.value), None)
        live = [d for d in active.values() if d.until_ms > now_ms]
        return StreamBatch(end, live, [])

    def changes(self, since: int) -> StreamBatch:
        """Bans and unbans recorded after position ``since``."""
        end = self.ledger.size
        new: list[Decision] = []
        deleted: list[Decision] = []
        for d in self._scan(since, end):
            (new if d.action == "ban" else deleted).append(d)
        return StreamBatch(end, new, deleted)
