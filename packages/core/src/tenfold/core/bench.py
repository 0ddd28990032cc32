"""The benchmark vocabulary every system uses to declare its scenarios.

A :class:`Scenario` is one row of the performance document: what we run
(``ours``), what a Python user would otherwise run (``peer``), the unit counted,
and the document's figure for the same row (``seed``). Each subject's
``prepare`` does its set-up outside the timer and returns the *op*: a
zero-argument callable that the harness times. One call of the op may do many
units of work (a batch of 10,000 checks, a 300K-event pipeline run); it returns
how many units it did (an ``int``, or an :class:`Outcome` carrying extra
metrics such as accuracy), and the harness derives throughput and per-unit
latency from that. Ops never return hard-coded figures: what they count is what
they did.

The harness (``tenfold bench``) warms each op up, then interleaves ours and the
peer (A B A B ...) for ``rounds`` calls, records latencies in an HDR histogram,
peak RSS and CPU%, and prints or writes the results.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["BenchContext", "Mode", "Op", "Outcome", "Scenario", "Seed", "Subject"]

Mode = Literal["smoke", "quick", "full"]
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What one timed call did: ``ops`` units of work, plus optional named metrics."""

    ops: int = 1
    metrics: Mapping[str, float | str] = field(default_factory=dict)
    latencies_ms: Sequence[float] | None = None
    """Per-unit latencies measured inside the op (end-to-end event latency, per
    request...); when given, the percentiles come from these instead of
    call time / ops."""


Op = Callable[[], "int | Outcome | None"]
"""A timed call; returns the units of work it did (``None`` means 1)."""


@dataclass(frozen=True)
class Seed:
    """The performance document's figure for a row (Rust, 8 cores); ``None`` where it has none."""

    ops_per_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass
class BenchContext:
    """What a subject's ``prepare`` receives: the mode, a scratch folder, a seeded RNG and a stack.

    ``mode`` is ``smoke`` (CI: the smallest size, just proving the scenario runs),
    ``quick`` (the default of ``make bench``) or ``full`` (the document's sizes).
    Resources entered with :meth:`enter` (services, pools, temp dirs) are closed
    after the scenario, ours and the peer's alike.
    """

    mode: Mode
    workdir: Path
    seed: int = 1234
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def rng(self) -> random.Random:
        return random.Random(self.seed)

    def size(self, smoke: T, quick: T, full: T) -> T:
        """Pick a size by mode."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.mode]

    def enter(self, cm: contextlib.AbstractContextManager[T]) -> T:
        """Enter a context manager that stays open until the scenario ends."""
        return self.stack.enter_context(cm)

    def callback(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` when the scenario ends."""
        self.stack.callback(fn)

    def once(self, key: str, make: Callable[[], T]) -> T:
        """Build a value once per scenario and share it between ours and the peer (same input)."""
        if key not in self.shared:
            self.shared[key] = make()
        value: T = self.shared[key]
        return value


@dataclass(frozen=True)
class Subject:
    """One side of a scenario: a label and a ``prepare`` that returns the op to time."""

    name: str
    prepare: Callable[[BenchContext], Op]


@dataclass(frozen=True)
class Scenario:
    """One benchmark row, ours beside a peer, with the document's figure.

    ``table`` and ``row`` place it in the document (for example
    ``"Throughput Benchmarks"`` and ``"CPU Fault Injection"``); ``headline`` marks
    the one scenario a system shows in the Quick Reference table. ``counts`` says
    honestly what one unit is ("fault decisions applied in process", "swtpm
    quotes, not hardware TPM"). ``rounds`` are timed calls per subject in quick
    mode (``full_rounds`` in full mode, one call plus warm-up in smoke mode).
    ``modes`` restricts where the scenario runs (e.g. only ``full`` for 10M rows).
    ``peer_optional``: when the peer's prepare raises ImportError or
    ``BenchError``, report ours alone with the reason instead of failing.
    ``regression_pct``: the row's own threshold for ``tenfold bench --compare``
    (percent more time per unit), where the row needs other than the default 10%.
    """

    name: str
    unit: str
    ours: Subject
    peer: Subject | None = None
    seed: Seed | None = None
    table: str = ""
    row: str = ""
    counts: str = ""
    headline: bool = False
    rounds: int = 5
    full_rounds: int = 10
    warmup: int = 1
    modes: tuple[Mode, ...] = ("smoke", "quick", "full")
    needs_root: bool = False
    peer_optional: bool = True
    regression_pct: float | None = None


@contextlib.contextmanager
def scratch_cwd(path: Path) -> Iterator[Path]:
    """Run a block with ``path`` as the working directory (some peers write to cwd)."""
    old = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    import os

    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)
