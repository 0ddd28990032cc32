"""The shared schemas and the one decision stream: round trips, refusals, and following."""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenfold.core.errors import DecisionStreamError, TenfoldError
from tenfold.core.events import (
    BanTable,
    Bouncer,
    Decision,
    FollowState,
    SecurityEvent,
    decode_decision,
    decode_event,
    encode_decision,
    encode_event,
    follow,
    iter_decisions,
)

epochs = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ranges = st.one_of(
    st.ip_addresses(v=4).flatmap(
        lambda a: st.integers(0, 32).map(lambda p: str(ipaddress.ip_network(f"{a}/{p}", False)))
    ),
    st.ip_addresses(v=6).flatmap(
        lambda a: st.integers(0, 128).map(lambda p: str(ipaddress.ip_network(f"{a}/{p}", False)))
    ),
)


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    scope: Literal["ip", "range"] = draw(st.sampled_from(["ip", "range"]))
    value = draw(st.one_of(ipv4, ipv6) if scope == "ip" else ranges)
    return Decision(
        action=draw(st.sampled_from(["ban", "unban"])),
        scope=scope,
        value=value,
        until=draw(epochs),
        reason=draw(st.text(max_size=60)),
        index=draw(st.integers(0, 2**62)),
    )


@given(decisions())
def test_decision_round_trips_as_one_line(d: Decision) -> None:
    line = encode_decision(d)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_decision(line) == d
    assert decode_decision(line.decode()) == d


@given(st.lists(decisions(), max_size=20))
def test_stream_round_trips(ds: list[Decision]) -> None:
    blob = b"".join(encode_decision(d) for d in ds)
    assert list(iter_decisions(blob.splitlines())) == ds


_events = st.builds(
    SecurityEvent,
    source=st.sampled_from(["autoblocker", "cloud_kernel.trace", "chaos_engine"]),
    kind=st.text(min_size=1, max_size=20).filter(str.strip),
    subject=st.one_of(ipv4, st.text(min_size=1, max_size=20).filter(str.strip)),
    domain=st.sampled_from(["auth", "network", "attestation", "chaos"]),
    time=epochs,
    attributes=st.dictionaries(
        st.text(max_size=10),
        st.one_of(
            st.text(max_size=10),
            st.integers(-(2**62), 2**62),
            st.booleans(),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=5,
    ),
)


@given(_events)
def test_security_event_round_trips(ev: SecurityEvent) -> None:
    assert decode_event(encode_event(ev)) == ev


def test_equal_spellings_are_one_value() -> None:
    d = decode_decision('{"action":"ban","scope":"ip","value":"2001:DB8:0::1","until":5,"index":1}')
    assert d.value == "2001:db8::1"


GOOD = {"action": "ban", "scope": "ip", "value": "203.0.113.9", "until": 10.0, "index": 3}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"action": "block"}, "action"),
        ({"scope": "subject"}, "scope"),
        ({"value": "10.0.0.1/8", "scope": "range"}, "not a valid range"),
        ({"value": "300.1.1.1"}, "not a valid ip"),
        ({"value": "10.0.0.0/8"}, "not a valid ip"),
        ({"until": -1}, "until"),
        ({"until": "soon"}, "until"),
        ({"index": -4}, "index"),
        ({"index": 1.5}, "index"),
        ({"duration_s": 600}, "duration_s"),
        ({"value": None}, "value"),
    ],
)
def test_bad_decisions_are_refused_naming_the_line(change: dict[str, object], needle: str) -> None:
    line = json.dumps({**GOOD, **change})
    with pytest.raises(DecisionStreamError) as err:
        list(iter_decisions(["", json.dumps(GOOD), line], source="feed.jsonl"))
    assert isinstance(err.value, TenfoldError)
    assert str(err.value).startswith("feed.jsonl:3: bad decision")
    assert needle in str(err.value)


def test_missing_fields_and_non_json_are_refused() -> None:
    for line, needle in (
        ('{"action":"ban","scope":"ip","value":"1.2.3.4","index":1}', "until"),
        ("ban ip 1.2.3.4 for 600 s (sshd: 5 x auth.failure)", "malformed"),
        ('[{"action":"ban"}]', "Expected `object`"),
    ):
        with pytest.raises(DecisionStreamError, match=needle):
            decode_decision(line, lineno=1)


@given(st.text(max_size=200))
def test_arbitrary_text_is_a_decision_or_a_typed_error(text: str) -> None:
    try:
        d = decode_decision(text)
    except DecisionStreamError as exc:
        assert "bad decision" in str(exc)
    else:
        assert decode_decision(encode_decision(d)) == d


@given(st.lists(st.tuples(decisions(), epochs), max_size=30), epochs)
def test_ban_table_never_holds_a_lapsed_ban(
    steps: list[tuple[Decision, float]], end: float
) -> None:
    table = BanTable()
    for d, now in steps:
        table.apply(d, now)
        if d.action == "unban":
            assert d.value not in table.bans
    table.expire(end)
    assert all(until > end for until in table.bans.values())


class ListBouncer:
    """A bouncer over a dict: what the stream logic decides, without a kernel."""

    def __init__(self) -> None:
        self.table = BanTable()
        self.applied: list[Decision] = []
        self.now = 0.0
        self.closed = False

    def apply(self, decision: Decision) -> None:
        self.applied.append(decision)
        self.table.apply(decision, self.now)

    def expire(self, now: float) -> list[str]:
        return self.table.expire(now)

    def close(self) -> None:
        self.closed = True


def _ban(value: str, until: float, index: int) -> bytes:
    return encode_decision(
        Decision(action="ban", scope="ip", value=value, until=until, reason="t", index=index)
    )


def test_follow_resumes_after_its_last_index_and_lifts_lapsed_bans(tmp_path: Path) -> None:
    assert isinstance(ListBouncer(), Bouncer)
    state_file = tmp_path / "state.json"
    now = [100.0]
    lines = [_ban("192.0.2.1", 150, 1), _ban("192.0.2.2", 500, 4), _ban("192.0.2.3", 500, 9)]

    first = ListBouncer()
    r, w = os.pipe()
    os.write(w, b"".join(lines[:2]))
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        rep = follow(
            first, stream, state=FollowState.load(state_file), clock=lambda: now[0], linger=False
        )
    assert (rep.applied, rep.skipped) == (2, 0)
    assert json.loads(state_file.read_text())["index"] == 4

    # Reconnect: the source replays from the start; only index 9 is new.
    now[0] = 200.0  # the first ban (until 150) lapsed while nobody was following
    second = ListBouncer()
    second.now = now[0]
    r, w = os.pipe()
    os.write(w, b"".join(lines))
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        rep = follow(
            second, stream, state=FollowState.load(state_file), clock=lambda: now[0], linger=False
        )
    assert (rep.applied, rep.skipped) == (1, 2)
    assert [d.index for d in second.applied if d.reason == "t"] == [9]
    assert sorted(second.table.bans) == ["192.0.2.2", "192.0.2.3"]
    assert "192.0.2.1" not in json.loads(state_file.read_text())["bans"]


def test_follow_lingers_until_the_last_ban_lapses() -> None:
    clock = [0.0]
    b = ListBouncer()
    r, w = os.pipe()
    os.write(w, _ban("198.51.100.7", 3.0, 0))
    os.close(w)

    def tick() -> float:
        clock[0] += 0.5
        return clock[0]

    with os.fdopen(r, "rb") as stream:
        rep = follow(b, stream, clock=tick, poll_s=0.01)
    assert rep.expired == 1 and b.table.bans == {}


def test_follow_stops_at_a_bad_line_after_applying_what_came_before() -> None:
    b = ListBouncer()
    r, w = os.pipe()

    def feed() -> None:
        os.write(w, _ban("192.0.2.1", 1e9, 1) + b"ban 192.0.2.2\n")
        os.close(w)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb") as stream, pytest.raises(DecisionStreamError, match="stdin:2"):
        follow(b, stream, source="stdin", linger=False)
    t.join()
    assert [d.value for d in b.applied] == ["192.0.2.1"]


class BatchBouncer(ListBouncer):
    """A bouncer that takes several decisions at once (as the nftables one does)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    def apply_many(self, decisions: Sequence[Decision]) -> None:
        self.calls.append([d.index for d in decisions])
        for d in decisions:
            super().apply(d)


def test_decisions_read_together_are_applied_together_and_the_state_saved_once(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "state.json"
    state = FollowState.load(state_file)
    state.index = 2  # applied by an earlier run: skipped, in the same read
    b = BatchBouncer()
    r, w = os.pipe()
    os.write(w, b"".join(_ban(f"192.0.2.{i}", 4e9, i) for i in range(1, 7)))
    os.close(w)
    saves = []
    save = state.save
    state.save = lambda: (saves.append(state.index), save())  # type: ignore[method-assign]
    with os.fdopen(r, "rb") as stream:
        rep = follow(b, stream, state=state, linger=False)
    assert (rep.applied, rep.skipped) == (4, 2)
    assert b.calls == [[3, 4, 5, 6]]  # one call for the read, in stream order
    assert saves[-1] == 6 and not {3, 4, 5} & set(saves)  # saved after the read, not per decision
    assert json.loads(state_file.read_text())["index"] == 6

    # A restart takes over the held bans in one call too.
    again = BatchBouncer()
    r, w = os.pipe()
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        follow(again, stream, state=FollowState.load(state_file), linger=False)
    assert [len(c) for c in again.calls] == [4]


def test_a_bad_line_in_a_batch_applies_what_came_before_it() -> None:
    b = BatchBouncer()
    r, w = os.pipe()
    os.write(w, _ban("192.0.2.1", 1e9, 1) + _ban("192.0.2.2", 1e9, 2) + b"ban 192.0.2.3\n")
    os.close(w)
    with os.fdopen(r, "rb") as stream, pytest.raises(DecisionStreamError, match="s:3"):
        follow(b, stream, source="s", linger=False)
    assert b.calls == [[1, 2]]


def test_bad_state_file_is_a_typed_error(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text("{nope")
    with pytest.raises(DecisionStreamError, match="bad follower state"):
        FollowState.load(p)
