"""A linearizability checker: Wing & Gong's search with Lowe's memoization.

A history is a set of operations, each with a call time, a return time, an
input and an output. It is linearizable when some total order of the operations
(a) respects real time (an operation that returned before another was called
comes first) and (b) is a legal sequential run of the model. The search (Wing &
Gong 1993) linearizes one pending call at a time, walking a doubly linked list of
call and return events; reaching a return event whose call is not yet
linearized means the current prefix is a dead end, so it backtracks. Lowe
(2017) prunes the search by remembering every ``(set of linearized operations,
model state)`` already explored: the future of the search depends only on that
pair. Histories are split first by the model's partition function (per key for
a key-value store): linearizability is compositional (Herlihy & Wing), so each
key is checked alone.

An operation whose outcome is unknown (Jepsen's ``:info``, a client timeout) may
have taken effect at any point after its call, or never; it is modelled as
returning after every other event, with an output the model accepts for any
result. Placing it last is the same as "never" for every other operation.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tenfold.autoblocker_ledger.errors import HistoryError

S = TypeVar("S", bound=Hashable)

UNKNOWN: Any = object()
"""Output of an operation whose outcome is unknown (it may or may not have happened)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation: its input, output, and when it was called and returned."""

    client: int
    input: Any
    output: Any
    call: float
    ret: float
    key: Hashable = None


@dataclass(frozen=True)
class Model(Generic[S]):
    """A sequential specification: initial state and a step that checks an output."""

    name: str
    init: Callable[[], S]
    step: Callable[[S, Any, Any], tuple[bool, S]]
    partition: Callable[[Sequence[Operation]], list[list[Operation]]] = field(
        default=lambda ops: [list(ops)]
    )


@dataclass(frozen=True)
class CheckResult:
    """The verdict: ``True``, ``False``, or ``None`` when the search ran out of budget."""

    linearizable: bool | None
    partitions: int
    operations: int
    steps: int
    elapsed_s: float
    failed_key: Hashable = None

    @property
    def ok(self) -> bool:
        return self.linearizable is True


class _Budget(Exception):
    pass


def _check_partition(
    model: Model[Any], ops: Sequence[Operation], budget: list[int], deadline: float
) -> bool:
    n = len(ops)
    if n == 0:
        return True
    # Events: (time, is_return, op id). Calls sort before returns at equal times,
    # so operations that touch at an instant count as concurrent.
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)]
    )
    m = len(events)
    # Linked list over event slots 1..m with sentinel 0 as head.
    nxt = list(range(1, m + 2))
    prv = list(range(-1, m))
    is_ret = [0] * (m + 1)
    opid = [0] * (m + 1)
    match = [0] * (m + 1)  # call slot -> its return slot
    call_slot = [0] * n
    for slot, (_t, r, i) in enumerate(events, 1):
        is_ret[slot] = r
        opid[slot] = i
        if r:
            match[call_slot[i]] = slot
        else:
            call_slot[i] = slot
    nxt[m] = 0  # end of list marker: 0 means "none" once past the head

    def lift(slot: int) -> None:
        for s in (slot, match[slot]):
            nxt[prv[s]] = nxt[s]
            if nxt[s]:
                prv[nxt[s]] = prv[s]

    def unlift(slot: int) -> None:
        for s in (match[slot], slot):
            if nxt[s]:
                prv[nxt[s]] = s
            nxt[prv[s]] = s

    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    step = model.step
    state = model.init()
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    calls: list[tuple[int, Any]] = []
    slot = nxt[0]
    steps = 0
    while nxt[0]:
        steps += 1
        if steps & 0xFFF == 0:
            budget[0] -= 0x1000
            if budget[0] <= 0 or time.monotonic() > deadline:
                raise _Budget
        if not is_ret[slot]:
            i = opid[slot]
            ok, new_state = step(state, inputs[i], outputs[i])
            if ok:
                new_lin = linearized | (1 << i)
                memo = (new_lin, new_state)
                if memo not in cache:
                    cache.add(memo)
                    calls.append((slot, state))
                    state = new_state
                    linearized = new_lin
                    lift(slot)
                    slot = nxt[0]
                    continue
            slot = nxt[slot]
        else:
            if not calls:
                return False
            slot, state = calls.pop()
            linearized &= ~(1 << opid[slot])
            unlift(slot)
            slot = nxt[slot]
    return True


def check_history(
    model: Model[Any],
    ops: Sequence[Operation],
    *,
    max_steps: int = 50_000_000,
    timeout_s: float = math.inf,
) -> CheckResult:
    """Check a history against a model, partition by partition.

    ``max_steps`` and ``timeout_s`` bound the search (the problem is NP-complete);
    when either runs out the verdict is ``None`` (unknown), never a guess.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    budget = [max_steps]
    parts = model.partition(ops)
    verdict: bool | None = True
    failed: Hashable = None
    for part in parts:
        try:
            if not _check_partition(model, part, budget, deadline):
                verdict = False
                failed = part[0].key if part else None
                break
        except _Budget:
            verdict = None
    return CheckResult(
        linearizable=verdict,
        partitions=len(parts),
        operations=len(ops),
        steps=max_steps - budget[0],
        elapsed_s=time.monotonic() - start,
        failed_key=failed,
    )


# -- models --------------------------------------------------------------------


def _register_step(
    state: int | None, inp: tuple[str, Any, Any], out: Any
) -> tuple[bool, int | None]:
    op, a, b = inp
    if op == "read":
        return (out is UNKNOWN or out == state), state
    if op == "write":
        return True, a
    # cas: output True (applied), False (compare failed) or UNKNOWN
    if state == a:
        return out is not False, b
    return out is not True, state


REGISTER = Model[Any](name="register", init=lambda: None, step=_register_step)
"""A single register with read, write and compare-and-set (Jepsen's etcd test)."""


def _by_key(ops: Sequence[Operation]) -> list[list[Operation]]:
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        groups.setdefault(op.key, []).append(op)
    return list(groups.values())


def _kv_step(state: str, inp: tuple[str, str], out: Any) -> tuple[bool, str]:
    op, value = inp
    if op == "get":
        return (out is UNKNOWN or out == state), state
    if op == "put":
        return True, value
    return True, state + value  # append


KV = Model[Any](name="kv", init=lambda: "", step=_kv_step, partition=_by_key)
"""A key-value store with get, put and append, partitioned per key."""


# -- history parsers ----------------------------------------------------------------

_JEPSEN = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(\w+)\s+(.*)$")


def _jepsen_value(text: str, where: str) -> Any:
    text = text.strip()
    if text == "nil":
        return None
    if text.startswith(":"):
        return UNKNOWN
    if text.startswith("["):
        parts = text.strip("[]").split()
        if len(parts) != 2:
            raise HistoryError(f"{where}: expected [old new], got {text!r}")
        return tuple(None if p == "nil" else int(p) for p in parts)
    try:
        return int(text)
    except ValueError:
        raise HistoryError(f"{where}: unexpected value {text!r}") from None


def parse_jepsen_register(lines: Iterable[str], *, source: str = "<history>") -> list[Operation]:
    """Parse a Jepsen etcd register log (``:invoke``/``:ok``/``:fail``/``:info`` lines)."""
    pending: dict[int, tuple[str, Any, int]] = {}
    ops: list[Operation] = []
    t = 0
    for n, raw_line in enumerate(lines, 1):
        line = raw_line.rstrip("\n")
        if not line.strip():
            continue
        where = f"{source}:{n}"
        m = _JEPSEN.match(line)
        if not m:
            raise HistoryError(f"{where}: not a Jepsen history line: {line[:60]!r}")
        proc, kind, f, raw = int(m[1]), m[2], m[3], m[4]
        if f not in ("read", "write", "cas"):
            raise HistoryError(f"{where}: unknown operation :{f}")
        t += 1
        value = _jepsen_value(raw, where)
        if kind == "invoke":
            if proc in pending:
                raise HistoryError(f"{where}: process {proc} invoked twice without a result")
            pending[proc] = (f, value, t)
            continue
        if proc not in pending:
            raise HistoryError(f"{where}: result for process {proc} with no invocation")
        f0, arg, called = pending.pop(proc)
        if f0 != f:
            raise HistoryError(f"{where}: result :{f} for an invoked :{f0}")
        if kind == "fail" and f != "cas":
            continue  # a failed read or write did not happen
        ret: float = t
        if kind == "info":
            ret, out = math.inf, UNKNOWN
        elif f == "read":
            out = value
        elif f == "cas":
            out = kind == "ok"
        else:
            out = None
        if f == "cas":
            if not isinstance(arg, tuple):
                raise HistoryError(f"{where}: a cas takes [old new]")
            inp = ("cas", arg[0], arg[1])
        else:
            inp = (f, arg if f == "write" else None, None)
        ops.append(Operation(proc, inp, out, called, ret))
    for proc, (f, arg, called) in pending.items():  # never returned: unknown outcome
        if f == "read":
            continue
        inp = ("cas", arg[0], arg[1]) if f == "cas" else ("write", arg, None)
        ops.append(Operation(proc, inp, UNKNOWN, called, math.inf))
    return ops


_EDN = re.compile(
    r'^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(\w+), :key "([^"]*)", '
    r':value (nil|"[^"]*")\}$'
)


def parse_kv_history(lines: Iterable[str], *, source: str = "<history>") -> list[Operation]:
    """Parse the EDN-like key-value histories (``:append``, ``:put``, ``:get`` per key)."""
    pending: dict[int, tuple[str, str, str | None, int]] = {}
    ops: list[Operation] = []
    t = 0
    for n, raw_line in enumerate(lines, 1):
        line = raw_line.strip()
        if not line:
            continue
        where = f"{source}:{n}"
        m = _EDN.match(line)
        if not m:
            raise HistoryError(f"{where}: not a key-value history line: {line[:60]!r}")
        proc, kind, f, key, raw = int(m[1]), m[2], m[3], m[4], m[5]
        if f not in ("get", "put", "append"):
            raise HistoryError(f"{where}: unknown operation :{f}")
        value = None if raw == "nil" else raw[1:-1]
        t += 1
        if kind == "invoke":
            pending[proc] = (f, key, value, t)
            continue
        if proc not in pending:
            raise HistoryError(f"{where}: result for process {proc} with no invocation")
        f0, key0, arg, called = pending.pop(proc)
        if kind == "fail":
            continue
        if kind == "info":
            ops.append(Operation(proc, (f0, arg or ""), UNKNOWN, called, math.inf, key0))
        elif f0 == "get":
            ops.append(Operation(proc, ("get", ""), value or "", called, t, key0))
        else:
            ops.append(Operation(proc, (f0, arg or ""), None, called, t, key0))
    for proc, (f0, key0, arg, called) in pending.items():
        if f0 != "get":
            ops.append(Operation(proc, (f0, arg or ""), UNKNOWN, called, math.inf, key0))
    return ops


def load_history(path: Path) -> tuple[Model[Any], list[Operation]]:
    """Read a history file, guessing its format from its first line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"cannot read history {path}: {exc}") from None
    first = next((ln for ln in lines if ln.strip()), "")
    if first.lstrip().startswith("{"):
        return KV, parse_kv_history(lines, source=str(path))
    return REGISTER, parse_jepsen_register(lines, source=str(path))
