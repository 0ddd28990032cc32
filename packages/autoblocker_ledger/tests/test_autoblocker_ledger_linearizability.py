"""The linearizability checker against histories with known verdicts, and generated ones."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.autoblocker_ledger._linearizability import (
    KV,
    REGISTER,
    UNKNOWN,
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
