"""The linearizability checker against histories with known verdicts, and generated ones."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.autoblocker_ledger._histories import (
    make_future_read,
    make_stale_cas,
    make_stale_read,
    record_register_history,
)
from tenfold.autoblocker_ledger._linearizability import (
    KV,
    REGISTER,
    UNKNOWN,
    Model,
    Operation,
    check_history,
    load_history,
    parse_jepsen_register,
    parse_kv_history,
)
from tenfold.autoblocker_ledger.errors import HistoryError

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "linearizability"


def _expected(folder: str) -> list[tuple[str, bool]]:
    with open(DATA / folder / "expected.tsv") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return [(r[0], r[1] == "true") for r in rows[1:]]


JEPSEN = _expected("jepsen-etcd")
KV_CASES = _expected("kv")


def test_all_histories_are_listed() -> None:
    assert len(JEPSEN) == 102
    assert sum(v for _, v in JEPSEN) == 23
    assert len(KV_CASES) == 6


@pytest.mark.parametrize(("name", "want"), JEPSEN, ids=[n for n, _ in JEPSEN])
def test_jepsen_etcd_verdicts(name: str, want: bool) -> None:
    model, ops = load_history(DATA / "jepsen-etcd" / name)
    assert model is REGISTER
    result = check_history(model, ops, timeout_s=60)
    assert result.linearizable is want


@pytest.mark.parametrize(("name", "want"), KV_CASES, ids=[n for n, _ in KV_CASES])
def test_kv_verdicts(name: str, want: bool) -> None:
    model, ops = load_history(DATA / "kv" / name)
    assert model is KV
    result = check_history(model, ops, timeout_s=60)
    assert result.linearizable is want
    assert result.partitions > 1


def test_budget_gives_unknown_not_a_guess() -> None:
    model, ops = load_history(DATA / "jepsen-etcd" / "etcd_002.log")
    assert check_history(model, ops, max_steps=1).linearizable is None


@st.composite
def sequential_register_history(draw: st.DrawFn) -> list[Operation]:
    """Operations run one after another against a real register, so always linearizable."""
    state: int | None = None
    ops = []
    t = 0
    for client in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        if kind == "read":
            inp: tuple[object, ...] = ("read", None, None)
            out: object = state
        elif kind == "write":
            v = draw(st.integers(0, 4))
            inp, out, state = ("write", v, None), None, v
        else:
            old, new = draw(st.integers(0, 4)), draw(st.integers(0, 4))
            inp, out = ("cas", old, new), state == old
            if state == old:
                state = new
        ops.append(Operation(client, inp, out, t, t + 1))
        t += 2
    return ops


@settings(max_examples=80, deadline=None)
@given(sequential_register_history())
def test_sequential_histories_are_linearizable(ops: list[Operation]) -> None:
    assert check_history(REGISTER, ops).linearizable is True


@settings(max_examples=80, deadline=None)
@given(sequential_register_history(), st.data())
def test_a_stale_read_after_a_write_is_caught(ops: list[Operation], data: st.DataObject) -> None:
    t = ops[-1].ret + 1
    value = data.draw(st.integers(0, 4))
    ops = [*ops, Operation(98, ("write", value, None), None, t, t + 1)]
    ops.append(Operation(99, ("read", None, None), value + 1, t + 2, t + 3))
    assert check_history(REGISTER, ops).linearizable is False


def test_unknown_outcome_may_or_may_not_apply() -> None:
    write = Operation(0, ("write", 1, None), UNKNOWN, 0, math.inf)
    saw_new = Operation(1, ("read", None, None), 1, 1, 2)
    saw_old = Operation(2, ("read", None, None), None, 3, 4)
    assert check_history(REGISTER, [write, saw_new]).linearizable is True
    assert check_history(REGISTER, [write, saw_old]).linearizable is True
    assert check_history(REGISTER, [write, saw_new, saw_old]).linearizable is False


def test_malformed_histories_are_refused() -> None:
    with pytest.raises(HistoryError, match="unknown operation"):
        parse_jepsen_register(["INFO  jepsen.util - 1\t:invoke\t:frob\t3"])
    with pytest.raises(HistoryError, match="no invocation"):
        parse_jepsen_register(["INFO  jepsen.util - 1\t:ok\t:read\t3"])
    with pytest.raises(HistoryError):
        parse_kv_history(["{:process 0, :type :invoke}"])


# -- histories recorded around a real atomic register (verdicts known by construction) ----
def test_generated_histories_at_scale_get_both_verdicts() -> None:
    """About 5,000 operations from 100 processes, 17 in flight, crashed writes and CAS."""
    history = record_register_history(5_000, processes=100, in_flight=17, seed=3)
    assert len(history) == 5_000
    assert any(op.ret == math.inf for op in history)  # crashed operations are in it
    assert len({op.client for op in history}) > 100  # crashed clients were replaced
    assert check_history(REGISTER, history, timeout_s=60).linearizable is True
    for mutate in (make_stale_read, make_future_read, make_stale_cas):
        assert check_history(REGISTER, mutate(history), timeout_s=60).linearizable is False


@pytest.mark.parametrize("seed", range(4))
def test_the_search_alone_gets_both_verdicts(seed: int) -> None:
    """Without the real-time pre-pass, the reduced search must still refute and accept."""
    search_only = dataclasses.replace(REGISTER, refute=None)
    history = record_register_history(400, processes=20, in_flight=8, crash_rate=0.05, seed=seed)
    assert check_history(search_only, history, timeout_s=60).linearizable is True
    for mutate in (make_stale_read, make_future_read, make_stale_cas):
        assert check_history(search_only, mutate(history), timeout_s=60).linearizable is False


PLAIN_REGISTER = Model[object](name="plain", init=lambda: None, step=REGISTER.step)


@st.composite
def concurrent_register_history(draw: st.DrawFn) -> list[Operation]:
    """Small overlapping histories with arbitrary outputs: both verdicts occur."""
    ops = []
    for client in range(draw(st.integers(1, 7))):
        call = draw(st.integers(0, 12))
        crashed = draw(st.integers(0, 5)) == 0
        ret = math.inf if crashed else call + draw(st.integers(1, 6))
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        v, w = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        if kind == "read":
            if crashed:
                continue
            inp: tuple[object, ...] = ("read", None, None)
            out: object = draw(st.sampled_from([None, 0, 1, 2]))
        elif kind == "write":
            inp, out = ("write", v, None), None
        else:
            inp, out = ("cas", v, w), draw(st.booleans())
        ops.append(Operation(client, inp, UNKNOWN if crashed else out, call, ret))
    return ops


@settings(max_examples=400, deadline=None)
@given(concurrent_register_history())
def test_reductions_agree_with_the_plain_search(ops: list[Operation]) -> None:
    """Memo only (Wing & Gong with Lowe) against every reduction and the pre-pass."""
    assert (
        check_history(REGISTER, ops).linearizable is check_history(PLAIN_REGISTER, ops).linearizable
    )
