"""What systems exchange: security events, block decisions, and the one decision stream.

A system that detects something emits a :class:`SecurityEvent`; whatever decides
to block emits a :class:`Decision` once the ledger has recorded it (its ``index``
is the ledger entry that holds it). Every bouncer reads the same decision stream:
JSON lines, one :class:`Decision` object per line, in ledger order::

    {"action":"ban","scope":"ip","value":"203.0.113.9","until":1765000600.0,"reason":"...","index":17}

A bouncer implements :class:`Bouncer`; :func:`follow` drives one over a stream,
skipping what it has already applied (by ledger index, so a follower that
reconnects neither misses nor repeats a decision) and lifting each ban once its
``until`` has passed, whether or not an unban ever arrives.

Invariants the stream keeps: values are canonical (``str(ip_address(...))`` for an
``ip``, ``str(ip_network(..., strict=True))`` for a ``range``), ``until`` is a finite
epoch time in seconds, and ``index`` only grows along a stream.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import select
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol, runtime_checkable

import msgspec

from tenfold.core.errors import DecisionStreamError
from tenfold.core.files import replace_file

__all__ = [
    "BanTable",
    "Bouncer",
    "Decision",
    "DecisionStreamError",
    "FollowReport",
    "FollowState",
    "SecurityEvent",
    "apply_all",
    "decode_decision",
    "decode_event",
    "encode_decision",
    "encode_event",
    "feed",
    "follow",
    "iter_decisions",
]

Attribute = str | int | float | bool


def _text(name: str, value: str, *, limit: int = 1024) -> None:
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")


def _epoch(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite epoch time in seconds >= 0, got {value!r}")


class SecurityEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Something a system saw: ``source`` saw ``kind`` about ``subject`` (an IP, a node, a cgroup)."""

    source: str
    """The emitting system and part, e.g. ``autoblocker``, ``cloud_kernel.trace``."""
    kind: str
    """What happened, e.g. ``auth.failure``, ``exec.unexpected``, ``attestation.failed``."""
    subject: str
    domain: str
    """The area it belongs to: ``auth``, ``network``, ``attestation``, ``chaos`` ..."""
    time: float
    """Epoch seconds."""
    attributes: dict[str, Attribute] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("source", "kind", "subject", "domain"):
            _text(name, getattr(self, name))
        _epoch("time", self.time)


class Decision(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Ban or unban one address (``scope="ip"``) or prefix (``scope="range"``) until ``until``."""

    action: Literal["ban", "unban"]
    scope: Literal["ip", "range"]
    value: str
    until: float
    """Epoch seconds at which a ban lapses (for an unban: when it took effect)."""
    reason: str = ""
    index: int
    """The ledger entry that records this decision."""

    def __post_init__(self) -> None:
        # Normalised here so that two spellings of one address are one ban.
        try:
            if self.scope == "ip":
                self.value = str(ipaddress.ip_address(self.value.strip()))
            else:
                self.value = str(ipaddress.ip_network(self.value.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"value {self.value!r} is not a valid {self.scope}: {exc}") from None
        _epoch("until", self.until)
        if self.index < 0:
            raise ValueError(f"index must be >= 0, got {self.index}")
        if len(self.reason) > 4096:
            raise ValueError("reason is longer than 4096 characters")

    @property
    def key(self) -> str:
        """What a bouncer installs: the address or the prefix."""
        return self.value


_ENCODER = msgspec.json.Encoder()
_DECISION = msgspec.json.Decoder(Decision)
_EVENT = msgspec.json.Decoder(SecurityEvent)


def encode_decision(decision: Decision) -> bytes:
    """One stream line, newline included."""
    return _ENCODER.encode(decision) + b"\n"


def encode_event(event: SecurityEvent) -> bytes:
    return _ENCODER.encode(event) + b"\n"


def _where(source: str, lineno: int | None) -> str:
    return f"{source}:{lineno}" if lineno is not None else source


def decode_decision(
    line: bytes | str, *, source: str = "decision stream", lineno: int | None = None
) -> Decision:
    """Parse one stream line; a bad one raises :class:`DecisionStreamError` naming it."""
    try:
        return _DECISION.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        shown = line if isinstance(line, str) else line.decode("utf-8", "replace")
        shown = shown.strip()
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise DecisionStreamError(
            f"{_where(source, lineno)}: bad decision {shown!r}: {exc}"
        ) from None


def decode_event(
    line: bytes | str, *, source: str = "event stream", lineno: int | None = None
) -> SecurityEvent:
    try:
        return _EVENT.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecisionStreamError(f"{_where(source, lineno)}: bad security event: {exc}") from None


def iter_decisions(
    lines: Iterable[bytes | str], *, source: str = "decision stream"
) -> Iterator[Decision]:
    """Decisions from JSON lines (blank lines skipped), each error naming its line number."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        yield decode_decision(line, source=source, lineno=lineno)


@runtime_checkable
class Bouncer(Protocol):
    """Something that enforces decisions: the XDP block list, an nftables table."""

    def apply(self, decision: Decision) -> None:
        """Install a ban (or lift it, for an unban) now."""

    def expire(self, now: float) -> list[str]:
        """Lift every ban whose ``until`` is at or before ``now``; returns the values lifted."""

    def close(self) -> None:
        """Stop enforcing what this bouncer owns and release it."""


def apply_all(bouncer: Bouncer, decisions: Sequence[Decision]) -> None:
    """Apply ``decisions`` in order: through the bouncer's ``apply_many`` when it has
    one (an nftables bouncer then makes one transaction, not one ``nft`` per
    decision), else one :meth:`Bouncer.apply` each."""
    many = getattr(bouncer, "apply_many", None)
    if many is not None and len(decisions) > 1:
        many(decisions)
        return
    for d in decisions:
        bouncer.apply(d)


@dataclass
class BanTable:
    """The pure bookkeeping every bouncer shares: which value is banned until when.

    :meth:`apply` says what the kernel object must do (``"add"``, ``"remove"`` or
    nothing); :meth:`expire` returns the values whose time is up. A ban that is
    renewed keeps the later ``until``; a ban already past its ``until`` is not added.
    """

    bans: dict[str, float] = field(default_factory=dict)

    def apply(self, decision: Decision, now: float) -> Literal["add", "remove", "extend", None]:
        held = self.bans.get(decision.value)
        if decision.action == "unban":
            # Removed from the kernel even when not held here: an earlier run may have
            # installed it, and removing an absent entry is harmless.
            self.bans.pop(decision.value, None)
            return "remove"
        if decision.until <= now:
            return None
        if held is not None:
            self.bans[decision.value] = max(held, decision.until)
            return "extend"
        self.bans[decision.value] = decision.until
        return "add"

    def expire(self, now: float) -> list[str]:
        gone = sorted(v for v, until in self.bans.items() if until <= now)
        for v in gone:
            del self.bans[v]
        return gone

    def next_expiry(self) -> float | None:
        return min(self.bans.values(), default=None)


@dataclass
class FollowState:
    """Where a follower is: the last ledger index it applied and the bans it holds.

    Kept in a JSON file (written to a temporary name, then renamed) after every
    applied decision, so a follower that restarts resumes after ``index`` and still
    lifts the bans an earlier run installed.
    """

    index: int = -1
    bans: dict[str, float] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None) -> FollowState:
        if path is not None and not path.parent.is_dir():
            raise DecisionStreamError(f"state file {path}: folder {path.parent} does not exist")
        if path is None or not path.exists():
            return cls(path=path)
        try:
            doc = json.loads(path.read_text())
            index = int(doc["index"])
            bans = {str(k): float(v) for k, v in dict(doc.get("bans", {})).items()}
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise DecisionStreamError(f"{path}: bad follower state: {exc}") from None
        return cls(index=index, bans=bans, path=path)

    def save(self) -> None:
        if self.path is None:
            return
        try:
            replace_file(self.path, json.dumps({"index": self.index, "bans": self.bans}))
        except OSError as exc:
            raise DecisionStreamError(f"cannot save state {self.path}: {exc.strerror}") from None


def feed(
    bouncer: Bouncer,
    decision: Decision,
    state: FollowState,
    *,
    clock: Callable[[], float] = time.time,
) -> bool:
    """Apply one decision unless ``state`` shows it applied (its index is not past
    ``state.index``); record it and save. Returns whether it was applied.

    This is the whole exactly-once rule: a catch-up from the ledger and a live
    stream may both carry a decision, and only the first one to arrive applies it.
    """
    if decision.index <= state.index:
        return False
    bouncer.apply(decision)
    _record(decision, state, clock())
    state.save()
    return True


def _record(decision: Decision, state: FollowState, now: float) -> None:
    state.index = decision.index
    if decision.action == "ban" and decision.until > now:
        state.bans[decision.value] = max(state.bans.get(decision.value, 0.0), decision.until)
    elif decision.action == "unban":
        state.bans.pop(decision.value, None)


@dataclass
class FollowReport:
    applied: int = 0
    skipped: int = 0
    expired: int = 0


def follow(
    bouncer: Bouncer,
    stream: IO[bytes],
    *,
    state: FollowState | None = None,
    source: str = "decision stream",
    clock: Callable[[], float] = time.time,
    poll_s: float = 0.5,
    linger: bool = True,
    on_change: Callable[[str, Decision | str], None] | None = None,
) -> FollowReport:
    """Apply a decision stream to ``bouncer`` until it ends, lifting bans as they lapse.

    Decisions at or below ``state.index`` were applied by an earlier run and are
    skipped. The decisions that arrive together (one read of the stream) are
    applied together (:func:`apply_all`), then the state is advanced past them and
    saved before the next read: a follower killed in between applies them again
    on restart, which every bouncer takes as a no-op, and never skips one.
    At the end of the stream, with ``linger`` the follower keeps lifting bans until
    none is left; without it, it returns at once and leaves them to the next run.
    A bad line raises :class:`DecisionStreamError` after everything before it is applied.
    """
    st = state if state is not None else FollowState()
    report = FollowReport()
    fd = stream.fileno()
    buffer = b""
    lineno = 0
    at_eof = False

    def lift(now: float) -> None:
        lifted = bouncer.expire(now)
        for value in lifted:
            st.bans.pop(value, None)
            report.expired += 1
            if on_change:
                on_change("expired", value)
        if lifted:
            st.save()

    # Bans an earlier run installed: the bouncer takes them over (re-adding one that
    # is still in the kernel is a no-op), so they lapse on time from here too; one
    # that lapsed while nobody followed is lifted now.
    start = clock()
    held = []
    for value, until in sorted(st.bans.items()):
        if until <= start:
            del st.bans[value]
        held.append(
            Decision(
                action="ban" if until > start else "unban",
                scope="range" if "/" in value else "ip",
                value=value,
                until=until,
                reason="held by an earlier run",
                index=max(st.index, 0),
            )
        )
    apply_all(bouncer, held)
    st.save()

    while True:
        lift(clock())
        if at_eof:
            if not linger or not st.bans:
                return report
            time.sleep(max(0.0, min(poll_s, min(st.bans.values()) - clock())))
            continue
        ready, _, _ = select.select([fd], [], [], poll_s)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            at_eof = True
            if buffer.strip():
                chunk = b"\n"  # the last line had no newline: take it as complete
            else:
                continue
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        fresh: list[Decision] = []
        bad: DecisionStreamError | None = None
        last = st.index
        for line in lines:
            lineno += 1
            if not line.strip():
                continue
            try:
                decision = decode_decision(line, source=source, lineno=lineno)
            except DecisionStreamError as exc:
                bad = exc  # raised once everything before it is applied
                break
            if decision.index <= last:
                report.skipped += 1
                continue
            last = decision.index
            fresh.append(decision)
        if fresh:
            apply_all(bouncer, fresh)
            now = clock()
            for decision in fresh:
                _record(decision, st, now)
            st.save()
            report.applied += len(fresh)
            if on_change:
                for decision in fresh:
                    on_change("applied", decision)
        if bad is not None:
            raise bad
