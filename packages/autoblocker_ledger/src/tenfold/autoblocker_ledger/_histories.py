"""Histories recorded around a real atomic register, with verdicts known by construction.

:func:`record_register_history` runs ``processes`` threads against one
register guarded by a lock (a real atomic register: every operation takes
effect at one instant inside the lock). Each operation is stamped from a shared
logical clock just before it is called and just after it returns, so the
stamps respect real time. At most ``in_flight`` operations are between their
two stamps at once. A process may crash in the middle of a write or a
compare-and-set: the operation took effect or not (a coin flip, as in a client
timeout), it never returns (``ret = inf``, output :data:`UNKNOWN`), and the
process continues under a new id, the way Jepsen replaces a crashed client.

Every value written (by a write or a successful compare-and-set) is unique, so
the recorded history is linearizable by construction: the order in which the
lock was taken is a legal sequential run that respects real time.
:func:`make_stale_read` turns it into one that is not linearizable, also by
construction: a read that began after two writes had completed one after the
other is changed to return the older write's value, which no linearization can
explain (both writes precede the read in real time, and only the first wrote
that value).
"""

from __future__ import annotations

import itertools
import math
import random
import threading
from dataclasses import replace
from typing import Any

from tenfold.autoblocker_ledger._linearizability import UNKNOWN, Operation


class _Clock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = itertools.count(1)

    def tick(self) -> int:
        with self._lock:
            return next(self._next)


def record_register_history(
    operations: int = 5_000,
    *,
    processes: int = 100,
    in_flight: int = 17,
    crash_rate: float = 0.01,
    read_share: float = 0.5,
    cas_share: float = 0.2,
    seed: int = 0,
) -> list[Operation]:
    """Run ``operations`` reads, writes and compare-and-sets on a real register; return the history."""
    if operations < 1 or processes < 1 or in_flight < 1:
        raise ValueError("operations, processes and in_flight must be positive")
    clock = _Clock()
    register: list[Any] = [None]
    reg_lock = threading.Lock()
    slots = threading.BoundedSemaphore(in_flight)
    budget = itertools.count()
    values = itertools.count(1)
    ids = itertools.count(processes)
    history: list[Operation] = []
    hist_lock = threading.Lock()

    def run(proc: int) -> None:
        rng = random.Random(seed * 1_000_003 + proc)
        client = proc
        while next(budget) < operations:
            roll = rng.random()
            with slots:
                if roll < read_share:
                    inp: tuple[Any, Any, Any] = ("read", None, None)
                elif roll < read_share + cas_share:
                    written = register[0]  # racy peek: the compare fails sometimes
                    inp = ("cas", written if rng.random() < 0.7 else -1, next(values))
                else:
                    inp = ("write", next(values), None)
                crashed = inp[0] != "read" and rng.random() < crash_rate
                call = clock.tick()
                if rng.random() < 0.5:
                    threading.Event().wait(rng.random() * 0.0004)
                applied = not crashed or rng.random() < 0.5
                out: Any = None
                if applied:
                    with reg_lock:  # the linearization point
                        if inp[0] == "read":
                            out = register[0]
                        elif inp[0] == "write":
                            register[0] = inp[1]
                        else:
                            out = register[0] == inp[1]
                            if out:
                                register[0] = inp[2]
                if crashed:
                    op = Operation(client, inp, UNKNOWN, call, math.inf)
                    client = next(ids)  # a crashed client is replaced
                else:
                    if rng.random() < 0.5:
                        threading.Event().wait(rng.random() * 0.0004)
                    op = Operation(client, inp, out, call, clock.tick())
            with hist_lock:
                history.append(op)

    threads = [threading.Thread(target=run, args=(p,)) for p in range(processes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history.sort(key=lambda op: op.call)
    return history


def make_stale_read(history: list[Operation], *, seed: int = 0) -> list[Operation]:
    """The same history with one read changed to a value overwritten before it began.

    Raises :class:`ValueError` when the history has no read preceded by two
    completed writes one after the other.
    """
    rng = random.Random(seed)
    writes = sorted(
        (op for op in history if op.input[0] == "write" and op.ret != math.inf),
        key=lambda op: op.ret,
    )
    reads = [i for i, op in enumerate(history) if op.input[0] == "read" and op.ret != math.inf]
    rng.shuffle(reads)
    for i in reads:
        read = history[i]
        done = [w for w in writes if w.ret < read.call]
        for k in range(len(done) - 1, 0, -1):
            w2 = done[k]
            older = [w for w in done[:k] if w.ret < w2.call]
            if older:
                w1 = older[-1]
                bad = replace(read, output=w1.input[1])
                return [*history[:i], bad, *history[i + 1 :]]
    raise ValueError("no read follows two sequential completed writes")


def make_future_read(history: list[Operation], *, seed: int = 0) -> list[Operation]:
    """The same history with one read changed to a value first written after it returned."""
    rng = random.Random(seed)
    reads = [i for i, op in enumerate(history) if op.input[0] == "read" and op.ret != math.inf]
    rng.shuffle(reads)
    for i in reads:
        read = history[i]
        later = [op for op in history if op.input[0] == "write" and op.call > read.ret]
        if later:
            bad = replace(read, output=later[0].input[1])
            return [*history[:i], bad, *history[i + 1 :]]
    raise ValueError("no read is followed by a write")


def make_stale_cas(history: list[Operation], *, seed: int = 0) -> list[Operation]:
    """The same history with a successful compare-and-set that expected an overwritten value."""
    rng = random.Random(seed)
    writes = sorted(
        (op for op in history if op.input[0] == "write" and op.ret != math.inf),
        key=lambda op: op.ret,
    )
    cases = [
        i
        for i, op in enumerate(history)
        if op.input[0] == "cas" and op.output is True and op.ret != math.inf
    ]
    rng.shuffle(cases)
    for i in cases:
        cas = history[i]
        done = [w for w in writes if w.ret < cas.call]
        for k in range(len(done) - 1, 0, -1):
            older = [w for w in done[:k] if w.ret < done[k].call]
            if older:
                bad = replace(cas, input=("cas", older[-1].input[1], cas.input[2]))
                return [*history[:i], bad, *history[i + 1 :]]
    raise ValueError("no successful compare-and-set follows two sequential completed writes")
