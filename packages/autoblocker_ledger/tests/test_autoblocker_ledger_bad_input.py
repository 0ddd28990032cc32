"""Issue 17: no input the user (or an attacker) gives loses data, hangs, or crashes.

Each test here failed before its fix: an event that poisoned the store, two
processes losing an acknowledged event, reads that created stores, a rule that
backtracked for minutes, replays that doubled decisions, and foreign exceptions
(RecursionError, UnicodeDecodeError, OSError, IndexError) on bad input.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.autoblocker_ledger._autoblock import Autoblocker, Rule, load_rules
from tenfold.autoblocker_ledger._events import SecurityEvent
from tenfold.autoblocker_ledger._store import EmbeddedLedger
from tenfold.autoblocker_ledger._testing import EVENTS
from tenfold.autoblocker_ledger.errors import (
    AutoblockerLedgerError,
    EntryOutOfRange,
    MalformedEvent,
    NoSuchStore,
    RuleError,
    StoreError,
    StoreLocked,
)

PKG_SRC = Path(__file__).resolve().parents[1] / "src"


def _ev(i: int, **over: object) -> SecurityEvent:
    raw = {**EVENTS[0], "event_id": f"e{i}", **over}
    return SecurityEvent.from_dict(raw)


# -- 1. one event must not make the store unusable ------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"time_ms": 10**19},
        {"time_ms": 2**63},
        {"evidence": {"n": 10**19}},
        {"evidence": {"n": -(2**64)}},
        {"subject": "\ud800"},
        {"evidence": {"k": "\udcff"}},
        {"evidence": {"x" * 200: 1}},
    ],
)
def test_out_of_range_fields_are_refused_before_anything_is_written(
    cli: Callable[..., Any], tmp_path: Path, bad: dict[str, object]
) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append(_ev(0))
        with pytest.raises(MalformedEvent):
            led.append(_ev(1, **bad))
        led.append(_ev(2))
        assert [e.event.event_id for e in led.range()] == ["e0", "e2"]
        led.tree_head()
    with EmbeddedLedger(tmp_path / "s") as led:  # opens and serves after the refusal
        assert led.size == 2 and led.get(1).event.event_id == "e2"


def test_the_index_refusing_a_batch_leaves_nothing_on_disk(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    """The last line of defence: a value that slipped past validation is cut back off."""
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append(_ev(0))
        sneaky = _ev(1)
        object.__setattr__(sneaky, "time_ms", 10**19)  # bypasses __post_init__
        with pytest.raises(MalformedEvent, match="index refused"):
            led.append(sneaky)
        led.append(_ev(2))
        assert led.size == 2
    with EmbeddedLedger(tmp_path / "s") as led:
        assert [e.event.event_id for e in led.entries()] == ["e0", "e2"]


def test_time_ms_10_to_19_through_the_cli_keeps_the_store_usable(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    store = str(tmp_path / "st")
    assert cli("ledger", "append", "--store", store, stdin=json.dumps(EVENTS[0])).returncode == 0
    r = cli(
        "ledger", "append", "--store", store, stdin=json.dumps({**EVENTS[1], "time_ms": 10**19})
    )
    assert r.returncode == 2 and "time_ms" in r.stderr and r.stderr.count("\n") == 1
    assert cli("ledger", "get", "--store", store, "0").returncode == 0
    assert cli("ledger", "append", "--store", store, stdin=json.dumps(EVENTS[1])).returncode == 0
    assert len(json.loads(cli("ledger", "range", "--store", store, "--json").stdout)) == 2


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=300),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    time_ms=scalars,
    subject=scalars,
    evidence=st.one_of(scalars, st.dictionaries(st.text(max_size=140), scalars, max_size=4)),
)
def test_any_event_is_stored_or_refused_with_malformed_event(
    cli: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
    time_ms: object,
    subject: object,
    evidence: object,
) -> None:
    raw = {**EVENTS[0], "time_ms": time_ms, "subject": subject, "evidence": evidence}
    path = tmp_path_factory.mktemp("h")
    with EmbeddedLedger(path, fsync=False) as led:
        try:
            event = SecurityEvent.from_dict(raw)
        except MalformedEvent:
            event = None
        if event is not None:
            led.append(event)  # whatever validation lets through, the store can hold
        led.append(_ev(99))
    with EmbeddedLedger(path, fsync=False) as led:
        assert led.size == (2 if event is not None else 1)
        if event is not None:
            assert led.get(0).event == event


# -- 2. one writer per store ------------------------------------------------------------
def test_a_second_handle_in_this_process_is_refused_naming_the_holder(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append(_ev(0))
        with pytest.raises(StoreLocked, match=f"in use by pid {os.getpid()}"):
            EmbeddedLedger(tmp_path / "s")
        r = cli("ledger", "append", "--store", str(tmp_path / "s"), stdin=json.dumps(EVENTS[1]))
        assert r.returncode == 2 and f"store is in use by pid {os.getpid()}" in r.stderr
        led.append(_ev(1))  # the holder goes on: nothing it acknowledged is lost
        led.tree_head()
    with EmbeddedLedger(tmp_path / "s") as led:  # released on close; reopens and verifies
        assert [e.event.event_id for e in led.entries()] == ["e0", "e1"]


def test_another_process_cannot_append_while_a_holder_has_the_store(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    store = tmp_path / "s"
    child = (
        "import json,sys\n"
        "from tenfold.autoblocker_ledger._store import EmbeddedLedger\n"
        "from tenfold.autoblocker_ledger._events import SecurityEvent\n"
        "from tenfold.autoblocker_ledger.errors import StoreLocked\n"
        "try:\n"
        "    with EmbeddedLedger(sys.argv[1]) as led:\n"
        "        led.append(SecurityEvent.from_dict(json.loads(sys.argv[2])))\n"
        "        print('appended 1')\n"
        "except StoreLocked as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )

    def append_from_another_process() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", child, str(store), json.dumps(EVENTS[1])],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    with EmbeddedLedger(store) as led:
        led.append(_ev(0))
        led.tree_head()
        proc = append_from_another_process()
        assert proc.returncode == 2, proc.stderr
        assert f"store is in use by pid {os.getpid()}" in proc.stdout
        led.append(_ev(1))
        led.tree_head()
    # Once the holder is gone the other process can write, and the store reopens.
    proc = append_from_another_process()
    assert proc.returncode == 0 and "appended 1" in proc.stdout, proc.stderr
    with EmbeddedLedger(store) as led:
        assert [e.event.event_id for e in led.entries()] == ["e0", "e1", "a2"]


# -- 3. reads never create stores ----------------------------------------------------------
@pytest.mark.parametrize(
    "cmd",
    [["range"], ["get", "0"], ["proof", "--index", "0"], ["snapshot", "SNAP"]],
)
def test_reads_never_create_a_store(
    cli: Callable[..., Any], tmp_path: Path, cmd: list[str]
) -> None:
    typo = tmp_path / "typo" / "dir"
    args = [a.replace("SNAP", str(tmp_path / "snap.bin")) for a in cmd]
    r = cli("ledger", *args, "--store", str(typo))
    assert r.returncode == 2 and "no ledger store" in r.stderr
    assert not typo.exists() and not (tmp_path / "snap.bin").exists()


def test_reads_never_create_a_store_named_by_the_environment(
    cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typo = tmp_path / "typo"
    monkeypatch.setenv("TENFOLD_AUTOBLOCKER_LEDGER__STORE", str(typo))
    r = cli("ledger", "range")
    assert r.returncode == 2 and "no ledger store" in r.stderr and not typo.exists()
    with pytest.raises(NoSuchStore):
        EmbeddedLedger(typo, create=False)
    assert not typo.exists()


# -- 4. linear-time rule matching --------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_runs_in_linear_time(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "evil"\nkind = "k"\npattern = \'(?P<subject>(a+)+)b\'\nmax_retry = 1\n'
    )
    log = tmp_path / "log"
    log.write_bytes(b"a" * 200_000 + b"\n" + b"aaab\n")
    r = cli("autoblock", "run", str(rules), "--store", str(tmp_path / "st"), "--log", str(log))
    assert r.returncode == 0, r.stderr  # Python's re needs longer than the universe's age here
    with EmbeddedLedger(tmp_path / "st") as led:
        assert [e.event.subject for e in led.entries()][:1] == ["aaa"]


@pytest.mark.parametrize("pattern", [r"(?P<subject>a)\1", r"(?=x)(?P<subject>\w+)"])
def test_rules_that_need_backtracking_are_refused_with_the_reason(
    cli: Callable[..., Any], pattern: str
) -> None:
    with pytest.raises(ValueError, match="linear time"):
        Rule(name="r", kind="k", pattern=pattern)


# -- 5. a replay is idempotent -------------------------------------------------------------
def test_replaying_a_log_records_nothing_twice(cli: Callable[..., Any], tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "sshd"\ndomain = "auth"\nkind = "ssh_failed_login"\n'
        "pattern = 'Failed password for \\S+ from (?P<subject>[0-9.]+)'\nmax_retry = 2\n"
        "ban_time_s = 0.001\n"
    )
    log = tmp_path / "auth.log"
    # The same text twice on different lines: two events (offsets differ), one ban.
    log.write_text("Failed password for root from 203.0.113.7\n" * 2 + "noise\n")
    store = str(tmp_path / "st")
    first = cli("autoblock", "run", str(rules), "--store", store, "--log", str(log), "--json")
    assert first.returncode == 0, first.stderr
    assert [d["action"] for d in json.loads(first.stdout)] == ["ban"]
    with EmbeddedLedger(store) as led:
        size = led.size
    assert size == 3
    again = cli("autoblock", "run", str(rules), "--store", store, "--log", str(log), "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == []
    # The log grows: only the new line is recorded; the expired ban is lifted once.
    with log.open("a") as fh:
        fh.write("Failed password for root from 203.0.113.8\n")
    grown = cli("autoblock", "run", str(rules), "--store", store, "--log", str(log), "--json")
    assert [d["action"] for d in json.loads(grown.stdout)] == ["unban"]
    with EmbeddedLedger(store) as led:
        kinds = [e.event.kind for e in led.entries()]
    assert kinds.count("decision.ban") == 1 and kinds.count("decision.unban") == 1
    assert kinds.count("ssh_failed_login") == 3


# -- crashes on bad input: one clear line, exit 2 -----------------------------------------
def test_deeply_nested_json_is_refused(cli: Callable[..., Any], tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    store = str(tmp_path / "st")
    r = cli("ledger", "append", "--store", store, stdin=deep)
    assert r.returncode == 2 and "nested too deeply" in r.stderr and not (tmp_path / "st").exists()
    r = cli("ledger", "verify", "--public-key", "ab" * 32, stdin=deep)
    assert r.returncode == 2 and "nested too deeply" in r.stderr
    cli("ledger", "append", "--store", store, stdin=json.dumps(EVENTS[0]))
    (tmp_path / "old.json").write_text(deep)
    r = cli("ledger", "proof", "--store", store, "--from-sth", str(tmp_path / "old.json"))
    assert r.returncode == 2 and "nested too deeply" in r.stderr


def test_deeply_nested_rules_toml_is_refused(cli: Callable[..., Any], tmp_path: Path) -> None:
    p = tmp_path / "rules.toml"
    p.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(RuleError, match="nested too deeply"):
        load_rules(p)


def test_invalid_utf8_is_named_not_a_traceback(cli: Callable[..., Any], tmp_path: Path) -> None:
    store = str(tmp_path / "st")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(EVENTS[0]).encode() + b"\n\xff\xfe{}\n")
    r = cli("ledger", "append", "--store", store, str(bad))
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr and str(bad) in r.stderr
    assert not (tmp_path / "st").exists()  # nothing half-written: the first line is not in
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(b'{"type": "\xff"}')
    r = cli("ledger", "verify", str(bundle), "--public-key", "ab" * 32)
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr
    cli("ledger", "append", "--store", store, stdin=json.dumps(EVENTS[0]))
    r = cli("ledger", "proof", "--store", store, "--from-sth", str(bundle))
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr
    key = tmp_path / "key.pub"
    key.write_bytes(b"\xff" * 64)
    r = cli("ledger", "verify", str(bundle), "--public-key", str(key))
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_autoblock_reads_attacker_log_bytes_and_never_stops_on_one_line(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "r"\nkind = "k"\nscope = "subject"\n'
        "pattern = 'user (?P<subject>\\S+) failed'\nmax_retry = 2\n"
    )
    log = tmp_path / "log"
    log.write_bytes(
        b"user \xff\xfe failed\n"  # not UTF-8: replaced, still matched
        + b"user "
        + b"x" * 1000
        + b" failed\n"  # subject too long: skipped, counted
        + b"\x00\x01 garbage \xc3\n"
        + b"user bob failed\nuser bob failed\n"
    )
    r = cli(
        "autoblock", "run", str(rules), "--store", str(tmp_path / "st"), "--log", str(log), "--json"
    )
    assert r.returncode == 0, r.stderr
    assert [(d["action"], d["value"]) for d in json.loads(r.stdout)] == [("ban", "bob")]
    with EmbeddedLedger(tmp_path / "st") as led:
        subjects = [e.event.subject for e in led.entries() if e.event.kind == "k"]
    assert subjects == ["\ufffd\ufffd", "bob", "bob"]


def test_an_unwritable_proof_output_is_one_line(cli: Callable[..., Any], tmp_path: Path) -> None:
    store = str(tmp_path / "st")
    cli("ledger", "append", "--store", store, stdin=json.dumps(EVENTS[0]))
    for out in (tmp_path / "no" / "such" / "p.json", Path("/dev/null/p.json")):
        r = cli("ledger", "proof", "--store", store, "--index", "0", "--out", str(out))
        assert r.returncode == 2 and "cannot write" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "no").exists()


def test_api_arguments_are_checked(cli: Callable[..., Any], tmp_path: Path) -> None:
    with EmbeddedLedger(tmp_path / "s") as led:
        led.append(_ev(0))
        for bad in (-1, 1, 10**30):
            with pytest.raises(EntryOutOfRange, match="outside a log of 1"):
                led.get(bad)
        with pytest.raises(IndexError):  # still an IndexError for sequence-style callers
            led.get(-1)
        with pytest.raises(AutoblockerLedgerError):
            led.get("0")  # type: ignore[arg-type]
    for seg in (0, -5, 4095, 1.5, True, "64"):
        with pytest.raises(StoreError, match="segment_bytes"):
            EmbeddedLedger(tmp_path / "t", segment_bytes=seg)  # type: ignore[arg-type]
    assert not (tmp_path / "t").exists()


def test_long_bad_inputs_are_cut_in_the_message(cli: Callable[..., Any], tmp_path: Path) -> None:
    huge = "z" * 10_000_000
    with pytest.raises(MalformedEvent) as info:
        _ev(0, subject=huge)
    assert len(str(info.value)) < 300
    with pytest.raises(MalformedEvent) as info:
        SecurityEvent.from_dict({**EVENTS[0], huge: 1})
    assert len(str(info.value)) < 300
    rules = tmp_path / "rules.toml"
    rules.write_text(f"[[rule]]\nname = 'r'\nkind = 'k'\npattern = '(?P<subject>{huge}'\n")
    with pytest.raises(RuleError) as rinfo:
        load_rules(rules)
    assert len(str(rinfo.value)) < 500
    r = cli("ledger", "verify", "--public-key", huge, stdin="{}")
    assert r.returncode == 2 and len(r.stderr) < 300


def test_autoblocker_api_skips_bad_subjects(
    cli: Callable[..., Any],
) -> None:
    rule = Rule(name="r", kind="k", scope="subject", pattern=r"u=(?P<subject>.*)")
    blocker = Autoblocker([rule])
    assert blocker.events_from_line("u=" + "y" * 300, 1, offset=0) == []
    assert blocker.skipped == 1
    (ev,) = blocker.events_from_line("u=ok", 1, source="f", offset=7)
    assert ev.event_id == blocker.events_from_line("u=ok", 2, source="f", offset=7)[0].event_id
    assert ev.event_id != blocker.events_from_line("u=ok", 1, source="f", offset=8)[0].event_id


# -- crash consistency: SIGKILL the writer anywhere, lose nothing acknowledged ---------------
_WRITER = """
import random, sys, threading
from tenfold.autoblocker_ledger._events import SecurityEvent
from tenfold.autoblocker_ledger._store import EmbeddedLedger

path, run = sys.argv[1], sys.argv[2]
led = EmbeddedLedger(path, segment_bytes=64 * 1024)
out = threading.Lock()
print("open", flush=True)

def writer(t):
    rng = random.Random(f"{run}-{t}")
    n = 0
    while True:
        batch = []
        for _ in range(rng.randint(1, 12)):
            n += 1
            batch.append(SecurityEvent(
                event_id=f"r{run}-t{t}-{n}", domain="auth", kind="k",
                subject=f"10.0.{t}.{n % 250}", time_ms=n,
                evidence={"pad": "x" * rng.randint(0, 300)}))
        led.append_batch(batch)
        with out:  # printed only once the append returned: acknowledged
            print(" ".join(e.event_id for e in batch), flush=True)
        if rng.random() < 0.1:
            led.tree_head()

threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(3)]
for th in threads:
    th.start()
for th in threads:
    th.join()
"""


def test_sigkill_during_appends_loses_no_acknowledged_write(tmp_path: Path) -> None:
    import random
    import signal
    import time

    rng = random.Random(17)
    store = tmp_path / "s"
    acked: list[str] = []
    for run in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(store), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == "open\n", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.02, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err
        # A line cut by the kill was never fully acknowledged: keep only whole lines.
        lines = out.split("\n")[:-1]
        acked += [i for line in lines for i in line.split()]
        with EmbeddedLedger(store) as led:  # reopening verifies chain, tree and signed head
            have = {e.event.event_id for e in led.entries()}
            assert led.size == len(have)
            missing = [i for i in acked if i not in have]
            assert not missing, f"run {run}: {len(missing)} acknowledged events lost"
            sth = led.tree_head()
            sth.verify(led.key.public_bytes)
            assert sth.size == led.size
    assert len(acked) > 0


@pytest.mark.parametrize("header", [b"[" * 100_000, b"[1, 2]", b'{"sth": 1}', b"\xff"])
def test_a_malformed_snapshot_header_is_corrupt_store(tmp_path: Path, header: bytes) -> None:
    import struct

    from tenfold.autoblocker_ledger.errors import CorruptStore, SignatureError

    snap = tmp_path / "snap.bin"
    snap.write_bytes(b"TFLSNAP2" + struct.pack("<I", len(header)) + header)
    with pytest.raises((CorruptStore, SignatureError), match="snapshot header|tree head"):
        EmbeddedLedger.recover(snap, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_deeply_nested_head_is_corrupt_store(tmp_path: Path) -> None:
    from tenfold.autoblocker_ledger.errors import CorruptStore

    with EmbeddedLedger(tmp_path / "s") as led:
        led.append(_ev(0))
    (tmp_path / "s" / "head.json").write_text("[" * 100_000)
    with pytest.raises(CorruptStore, match="nested too deeply"):
        EmbeddedLedger(tmp_path / "s")


_JEPSEN_BITS = st.sampled_from(
    [
        "INFO  jepsen.util - ",
        "1",
        "99999999999999999999",
        "\t",
        " ",
        ":invoke",
        ":ok",
        ":fail",
        ":info",
        ":read",
        ":write",
        ":cas",
        ":frob",
        "nil",
        "[1 2]",
        "[nil 3]",
        "[1]",
        "x",
        "-",
        "3",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_JEPSEN_BITS, max_size=8).map("".join), max_size=6))
def test_history_parsers_return_operations_or_history_error(lines: list[str]) -> None:
    from tenfold.autoblocker_ledger._linearizability import parse_jepsen_register, parse_kv_history
    from tenfold.autoblocker_ledger.errors import HistoryError

    for parse in (parse_jepsen_register, parse_kv_history):
        with contextlib.suppress(HistoryError):
            parse(lines)


_TOML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.dictionaries(st.sampled_from(["rule", "x"]), _TOML_VALUES, max_size=2),
        st.fixed_dictionaries(
            {
                "rule": st.lists(
                    st.dictionaries(
                        st.sampled_from(
                            [
                                "name",
                                "kind",
                                "domain",
                                "pattern",
                                "max_retry",
                                "scope",
                                "find_time_s",
                                "ban_time_s",
                                "range_prefix",
                                "subject_group",
                            ]
                        ),
                        _TOML_VALUES,
                    ),
                    max_size=3,
                )
            }
        ),
    )
)
def test_rule_parsing_returns_rules_or_rule_error(raw: dict[str, object]) -> None:
    from tenfold.autoblocker_ledger._autoblock import parse_rules

    try:
        parse_rules(raw)
    except RuleError as exc:
        assert len(str(exc)) < 600
