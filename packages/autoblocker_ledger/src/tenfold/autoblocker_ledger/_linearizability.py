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
    lazy_unknown: bool = False
    flow: Callable[[Any, Any], tuple[tuple[Hashable, ...], tuple[Hashable, ...]]] | None = None
    """Optional: for an operation (input, output), the states it can only run in (a
    read of v runs only when the state is v) and every state it may produce (none
    means it never changes the state). A node where some remaining operation
    needs a state that is not the current one and that no remaining operation can
    produce is abandoned, and operations that produce nothing are placed greedily."""
    refute: Callable[[Sequence[Operation]], bool] | None = None
    """Optional fast refutation run before the search: True only when a partition
    is certainly not linearizable (a read that real time forbids)."""
    names: Callable[[Any, Any], tuple[Hashable, ...]] | None = None
    """Optional state reduction: the states an operation (input, output) compares the
    state with. A model that gives it promises that every operation treats all
    states it does not name alike (as the register does), so the checker may fold
    states that no remaining operation names into one."""
    """An unknown-outcome operation need only be placed right before an operation it
    enables (true for a register, where a later write hides an earlier one; false
    for appends, whose effects accumulate)."""


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


class _Unnamed:
    """The state "a value no remaining operation reads or compares with"."""

    def __repr__(self) -> str:
        return "<unnamed>"


_UNNAMED = _Unnamed()
# A node after its greedy closure: slots forced, bitset, state, branches (slot, unknown op, state).
_Expanded = tuple[list[int], int, Any, list[tuple[int, int, Any]]]


def _check_partition(
    model: Model[Any], ops: Sequence[Operation], budget: list[int], deadline: float
) -> bool:
    """Depth-first search over linearization prefixes with four sound reductions.

    1. *Memoization* (Lowe): a node is the pair (set of linearized operations as
       a bitset, model state); a pair seen before is not expanded again.
    2. *Unnamed states are one state* (models with ``names``): the future of a
       node depends on its state only through the values the operations still
       to place compare it with, so a state none of them names is replaced by
       one marker, and nodes that differ only there are one node.
    3. *Greedy pure steps* (partial-order reduction, models with ``flow``): a
       callable operation that never changes the state (its ``flow`` produces
       nothing: a read, a compare-and-set that failed) and is legal now is
       linearized at once, with no branch for placing it later. Any
       linearization that places it later can move it here: wherever it stood it
       changed no state, and every operation that must precede it in real time
       is already linearized. (An operation that merely leaves *this* state
       unchanged, like a write of the current value, may be needed later where
       it does change the state, so it still branches.)
    4. *Unknown outcomes on demand*: an operation that never returned is kept
       out of the event list (it would be callable at every node). One that
       would not change the state is never linearized (placing it anywhere is
       the same as never). For models that declare ``lazy_unknown`` (the
       register), one that would change it is tried only where it enables a
       callable operation; see :data:`REGISTER` for why that is complete.
    """
    n = len(ops)
    if n == 0:
        return True
    if model.refute is not None and model.refute(ops):
        return False
    step = model.step
    lazy = model.lazy_unknown
    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    need: dict[Any, int] = {}
    op_names: list[tuple[Any, ...]] = [()] * n
    if model.names is not None:
        op_names = [model.names(inputs[i], outputs[i]) for i in range(n)]
        for named in op_names:
            for v in named:
                need[v] = need.get(v, 0) + 1
    reduce_states = model.names is not None
    # Starvation: an operation that must see the state equal to v (a read of v) can
    # never be placed once the state is not v and no remaining operation can make
    # it v; such a node is a dead end however the rest is ordered.
    op_req: list[tuple[Any, ...]] = [()] * n
    op_prod: list[tuple[Any, ...]] = [()] * n
    if model.flow is not None:
        flows = [model.flow(inputs[i], outputs[i]) for i in range(n)]
        op_req = [f[0] for f in flows]
        op_prod = [f[1] for f in flows]
    wanted: dict[Any, int] = {}
    makers: dict[Any, int] = {}
    for i in range(n):
        for v in op_req[i]:
            wanted[v] = wanted.get(v, 0) + 1
        for v in op_prod[i]:
            makers[v] = makers.get(v, 0) + 1
    starved: set[Any] = {v for v in wanted if not makers.get(v)}
    # An operation that produces no state never changes it, wherever it is placed.
    pure = [model.flow is not None and not op_prod[i] for i in range(n)]

    def canon(state: Any) -> Any:
        return state if not reduce_states or need.get(state) else _UNNAMED

    def take(i: int) -> None:
        for v in op_names[i]:
            need[v] -= 1
        for v in op_req[i]:
            wanted[v] -= 1
            if not wanted[v]:
                starved.discard(v)
        for v in op_prod[i]:
            makers[v] -= 1
            if not makers[v] and wanted.get(v):
                starved.add(v)

    def untake(i: int) -> None:
        for v in op_names[i]:
            need[v] += 1
        for v in op_prod[i]:
            makers[v] += 1
            starved.discard(v)
        for v in op_req[i]:
            wanted[v] += 1
            if not makers.get(v):
                starved.add(v)

    unknown = sorted(
        (i for i, op in enumerate(ops) if op.ret == math.inf), key=lambda i: ops[i].call
    )
    known = [i for i, op in enumerate(ops) if op.ret != math.inf]
    unknown_call = [ops[i].call for i in unknown]
    # Events of the operations that returned: (time, is_return, op id). Calls sort
    # before returns at equal times, so operations touching at an instant overlap.
    events = sorted([(ops[i].call, 0, i) for i in known] + [(ops[i].ret, 1, i) for i in known])
    m = len(events)
    nxt = list(range(1, m + 2))
    prv = list(range(-1, m))
    nxt[m] = 0  # 0 ends the list once past the head sentinel
    is_ret = [0] * (m + 1)
    opid = [0] * (m + 1)
    at = [0.0] * (m + 1)
    match = [0] * (m + 1)  # call slot -> its return slot
    call_slot = [0] * n
    for slot, (t, r, i) in enumerate(events, 1):
        is_ret[slot] = r
        opid[slot] = i
        at[slot] = t
        if r:
            match[call_slot[i]] = slot
        else:
            call_slot[i] = slot

    def lift(slot: int) -> None:
        for s in (slot, match[slot]):
            nxt[prv[s]] = nxt[s]
            if nxt[s]:
                prv[nxt[s]] = prv[s]
        take(opid[slot])

    def unlift(slot: int) -> None:
        untake(opid[slot])
        for s in (match[slot], slot):
            if nxt[s]:
                prv[nxt[s]] = s
            nxt[prv[s]] = s

    unknown_on = [False] * n
    memo: set[tuple[int, Any]] = set()
    work = [0]

    def expand(state: Any, lin: int) -> _Expanded | None:
        """Greedy closure at a node, then its branches; None once every operation is placed."""
        forced: list[int] = []
        while True:
            slot = nxt[0]
            window: list[tuple[int, bool, Any]] = []
            while slot and not is_ret[slot]:
                i = opid[slot]
                ok, new = step(state, inputs[i], outputs[i])
                if ok and pure[i]:
                    lift(slot)
                    forced.append(slot)
                    lin |= 1 << i
                    state = canon(state)  # it may have been the last to name the state
                    break
                window.append((slot, ok, new))
                slot = nxt[slot]
            else:
                break
        work[0] += len(window) + 1
        if not nxt[0]:
            return None
        if starved and (len(starved) > 1 or state not in starved):
            return forced, lin, state, []  # a wanted value can no longer appear
        # Branch order (a heuristic; every branch is still tried): first an operation
        # whose new state makes a waiting operation legal (a write that a pending read
        # returns), then by return time (the one that must be placed soonest).
        waiting = [opid[s] for s, ok, _ in window if not ok]
        ranked: list[tuple[int, float, float, int, Any]] = []
        for s, ok, new in window:
            if ok:
                helps = any(step(new, inputs[w], outputs[w])[0] for w in waiting)
                ranked.append((0 if helps else 1, 0.0, at[match[s]], s, new))
        ranked.sort(key=lambda r: (r[0], r[2]))
        branches: list[tuple[int, int, Any]] = [(r[3], -1, r[4]) for r in ranked]
        limit = at[slot] if slot else math.inf
        callable_unknown = [
            c for k, c in enumerate(unknown) if unknown_call[k] <= limit and not unknown_on[c]
        ]
        for c in callable_unknown:
            _, new = step(state, inputs[c], outputs[c])
            take(c)
            noop = canon(new) == canon(state)
            untake(c)
            if noop:
                continue  # placing it anywhere is the same as never
            if lazy and not _enables(
                step, state, new, window, callable_unknown, c, inputs, outputs, opid
            ):
                continue
            branches.append((0, c, new))
        return forced, lin, state, branches

    init = canon(model.init())
    root = expand(init, 0)
    if root is None:
        return True
    forced0, lin0, state0, branches0 = root
    memo.add((lin0, state0))
    # A frame: branches, next branch, state, bitset, slots forced on entry, entry (slot, unknown op).
    stack: list[list[Any]] = [[branches0, 0, state0, lin0, forced0, 0, -1]]
    while stack:
        if work[0] > 0x4000 or work[0] >= budget[0]:
            budget[0] -= work[0]
            work[0] = 0
            if budget[0] <= 0 or time.monotonic() > deadline:
                raise _Budget
        frame = stack[-1]
        branches, k, lin = frame[0], frame[1], frame[3]
        if k == len(branches):
            stack.pop()
            for s in reversed(frame[4]):
                unlift(s)
            if frame[5]:
                unlift(frame[5])
            elif frame[6] >= 0:
                unknown_on[frame[6]] = False
                untake(frame[6])
            continue
        frame[1] = k + 1
        slot, c, new = branches[k]
        if slot:
            lift(slot)
            child_lin = lin | (1 << opid[slot])
        else:
            unknown_on[c] = True
            take(c)
            child_lin = lin | (1 << c)
        work[0] += 1
        child = expand(canon(new), child_lin)
        if child is None:
            return True
        forced, child_lin, child_state, child_branches = child
        if (child_lin, child_state) in memo:
            for s in reversed(forced):
                unlift(s)
            if slot:
                unlift(slot)
            else:
                unknown_on[c] = False
                untake(c)
            continue
        memo.add((child_lin, child_state))
        stack.append([child_branches, 0, child_state, child_lin, forced, slot, c])
    return False


def _enables(
    step: Callable[[Any, Any, Any], tuple[bool, Any]],
    state: Any,
    new: Any,
    window: list[tuple[int, bool, Any]],
    callable_unknown: list[int],
    c: int,
    inputs: list[Any],
    outputs: list[Any],
    opid: list[int],
) -> bool:
    """Whether placing unknown-outcome op ``c`` (``state`` -> ``new``) helps a callable op.

    It does when a returned operation is legal after it but not now, or when
    another unknown-outcome operation ends in a different state after it.
    """
    for slot, ok_now, _ in window:
        if not ok_now:
            i = opid[slot]
            if step(new, inputs[i], outputs[i])[0]:
                return True
    for o in callable_unknown:
        if o != c and step(new, inputs[o], outputs[o])[1] != step(state, inputs[o], outputs[o])[1]:
            return True
    return False


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


def _register_names(inp: tuple[str, Any, Any], out: Any) -> tuple[Hashable, ...]:
    """A read names the value it returned; a compare-and-set names the value it expected."""
    if inp[0] == "read":
        return () if out is UNKNOWN else (out,)
    if inp[0] == "cas":
        return (inp[1],)
    return ()


def _register_flow(
    inp: tuple[str, Any, Any], out: Any
) -> tuple[tuple[Hashable, ...], tuple[Hashable, ...]]:
    """A read (or a successful compare-and-set) needs its value; writes produce theirs."""
    kind = inp[0]
    if kind == "read":
        return ((), ()) if out is UNKNOWN else ((out,), ())
    if kind == "write":
        return (), (inp[1],)
    if out is True:
        return (inp[1],), (inp[2],)
    return (), (() if out is False else (inp[2],))


def _register_refute(ops: Sequence[Operation]) -> bool:
    """Find a read (or successful compare-and-set) that real time alone forbids, in O(n log n).

    A read returning ``v`` (a compare-and-set that found ``v``) is impossible when every operation that can produce
    ``v`` (and the initial state, if it is ``v``) is followed, before the read
    was called, by a write that certainly happened (it returned) and wrote
    something else: in any linearization, whichever producer of ``v`` comes last
    before the read is overwritten before the read. Values produced by an
    operation that never returned are never refuted here.
    """
    from bisect import bisect_right

    changes = sorted(
        (op.call, op.ret, _register_flow(op.input, op.output)[1][0])
        for op in ops
        if op.ret != math.inf
        and (op.input[0] == "write" or (op.input[0] == "cas" and op.output is True))
    )
    if not changes:
        return False
    calls = [c[0] for c in changes]
    # best[k]: the change with the earliest return among changes[k:] (its return, value)
    best: list[tuple[float, Any]] = [(math.inf, None)] * (len(changes) + 1)
    for k in range(len(changes) - 1, -1, -1):
        ret, value = changes[k][1], changes[k][2]
        best[k] = min(best[k + 1], (ret, value), key=lambda b: b[0])
    producers: dict[Any, list[float]] = {}
    first_call: dict[Any, float] = {}
    for op in ops:
        made = _register_flow(op.input, op.output)[1]
        for v in made:
            producers.setdefault(v, []).append(op.ret)
            first_call[v] = min(first_call.get(v, math.inf), op.call)

    def overwritten_before(after: float, value: Any, deadline: float) -> bool:
        ret, written = best[bisect_right(calls, after)]
        return ret < deadline and written != value

    for op in ops:
        needs = _register_flow(op.input, op.output)[0]
        if not needs or op.ret == math.inf:
            continue
        v = needs[0]  # a read's value, or the value a successful compare-and-set saw
        if v is None and not overwritten_before(-math.inf, v, op.call):
            continue  # the initial state may still be there
        if v is not None and first_call.get(v, math.inf) > op.ret:
            return True  # a read of a value nobody had begun to write
        if all(overwritten_before(ret, v, op.call) for ret in producers.get(v, [])):
            return True
    return False


REGISTER = Model[Any](
    name="register",
    refute=_register_refute,
    flow=_register_flow,
    init=lambda: None,
    step=_register_step,
    lazy_unknown=True,
    names=_register_names,
)
"""A single register with read, write and compare-and-set (Jepsen's etcd test).

Why unknown outcomes may be placed on demand: take a linearization with an
unknown-outcome operation ``c`` that moves the state from ``s`` to ``v != s``,
and look at the operation ``o`` right after it. If ``o`` is a write (known or
not), it hides ``c``: drop ``c``. If ``o`` is legal after ``c`` but not at
``s`` (a read of ``v``, a successful compare-and-set from ``v``, a failed one
from ``s``), ``c`` enables it. A known ``o`` legal both at ``s`` and ``v`` can
only be a failed compare-and-set, which changes nothing: swap it before ``c``.
An unknown compare-and-set ends either in the same state both ways (drop ``c``),
or differently (``c`` enables it), or is a no-op after ``c`` (swap it first:
then it is a no-op or is hidden by the write ``c``). Repeating this ends with
every remaining unknown operation right before an operation it enables, which
is what the search tries.
"""


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
