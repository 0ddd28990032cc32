"""The benchmark vocabulary every system uses to declare its scenarios.

A :class:`Scenario` is one row of the performance document: what we run
(``ours``), what a Python user would otherwise run (``peer``), the unit counted,
and the document's figure for the same row (``seed``). Each subject's
``prepare`` does its set-up outside the timer and returns the *op*: a
zero-argument callable that the harness times. One call of the op may do many
units of work (a batch of 10,000 checks, a 300K-event pipeline run); it returns
how many units it did (an ``int``, or an :class:`Outcome` carrying extra
metrics such as accuracy), and the harness derives throughput from that. Ops
never return hard-coded figures: what they count is what they did.

Latency is per unit only where it is measured per unit. An op that stamps each
unit in and out (an event from produce to commit, a task from submit to done)
returns those stamps in :attr:`Outcome.latencies_ms`. An op that does one unit
per call is timed per unit by the harness. An op whose units run strictly one
after another (a loop of 50,000 checks) may declare ``sequential=True`` on its
:class:`Subject`: its latency is then the mean per unit of each call, labelled
so. Anything else (a batch, a stream, a pool) is reported *per call*, never
divided into a per-unit figure it did not measure.

Every row with a peer says what both sides did and what differs
(``fairness``), and how the two results were checked equal (``checks``), or
why they cannot be (``unchecked_reason``); the harness refuses a peer row that
says neither. An op may also return :attr:`Outcome.result`, a small value
summarising what it produced; when both sides do, the harness compares them
call by call and fails the row when they differ.

The harness (``tenfold bench``) warms each op up, then interleaves ours and the
peer (A B A B ...) for ``rounds`` calls, records latencies in an HDR histogram,
each side's own memory and CPU (its process tree included), and prints or
writes the results.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = [
    "BenchContext",
    "Comparison",
    "LatencyKind",
    "Mode",
    "Op",
    "Outcome",
    "Scenario",
    "Seed",
    "Subject",
    "doc_seed",
]

Mode = Literal["smoke", "quick", "full"]
LatencyKind = Literal["per_unit", "per_unit_mean", "per_batch", "per_call"]
"""What one latency sample measures: one unit stamped in and out (``per_unit``),
the mean unit of a call whose units ran one after another (``per_unit_mean``),
one batch of units the op stamped itself (``per_batch``), or one whole call of
many units (``per_call``)."""
Comparison = Literal["speedup", "no_ratio", "overhead"]
"""How ours relates to the peer: a ``speedup`` (same work, ratio reported), side by
side with ``no_ratio`` (the two do different things), or the peer is the
baseline ours adds to (``overhead``: a proxy beside a direct connection)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What one timed call did: ``ops`` units of work, plus optional named metrics."""

    ops: int = 1
    metrics: Mapping[str, float | str] = field(default_factory=dict)
    latencies_ms: Sequence[float] | None = None
    """Latencies measured inside the op, one per unit (end-to-end event latency,
    per request...) unless ``latency_unit`` says what else one sample covers;
    when given, the percentiles come from these instead of the call time."""
    latency_unit: str | None = None
    """What one entry of ``latencies_ms`` times when it is not one unit (for
    example ``"batch of 10,000 events"``); the row is then labelled per batch."""
    latency_kind: LatencyKind | None = None
    """What ``latencies_ms`` holds, when the op knows better than the default:
    one entry per unit is ``per_unit``, fewer entries are ``per_batch``;
    ``per_unit_mean`` says each entry is the mean unit of a batch run one unit
    after another (a tight loop of syscalls timed 64 at a time), and
    ``latencies_sampled`` below keeps a sample of per-unit latencies per unit."""
    latencies_sampled: bool = False
    """``latencies_ms`` is a sample (a reservoir) of per-unit latencies, not one
    per unit: still per unit."""
    result: object = None
    """A small, comparable summary of what the call produced (a digest, a count,
    a sorted tuple); when ours and the peer both return one, the harness checks
    them equal call by call."""


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
    shared_hook: Callable[[], contextlib.AbstractContextManager[object]] | None = None
    """Set by the harness: wraps :meth:`once` builds so that their memory and
    processes count as shared between the sides, not charged to either."""

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
            if self.shared_hook is None:
                self.shared[key] = make()
            else:
                with self.shared_hook():
                    self.shared[key] = make()
        value: T = self.shared[key]
        return value


@dataclass(frozen=True)
class Subject:
    """One side of a scenario: a label and a ``prepare`` that returns the op to time.

    ``name`` is what the report shows for this side, so it names the backend or
    mode ("tenfold (Ray backend, 2 workers)", "bytewax 0.21 (batched)").
    ``sequential``: the op's units run strictly one after another, so call time
    over units is each unit's mean latency (labelled ``per_unit_mean``).
    """

    name: str
    prepare: Callable[[BenchContext], Op]
    sequential: bool = False


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

    ``seed``: the document's figure. Left at ``"doc"`` it is looked up in the
    document's tables by this system's section, ``table`` and ``doc_row`` (or
    ``row`` when the two are named alike); ``None`` means the row has none.

    Fairness, required of every row with a peer: ``fairness`` says in one
    sentence what both sides do and what differs (batching, warm state, process
    start-up); ``checks`` says how the results are checked equal (inside the op
    or through :attr:`Outcome.result`), or ``unchecked_reason`` why they cannot
    be. ``comparison`` says whether the ratio means anything (see
    :data:`Comparison`); ``like_for_like=False`` keeps a ratio out of the
    Quick Reference (the row differs in a way its fairness sentence states).
    """

    name: str
    unit: str
    ours: Subject
    peer: Subject | None = None
    seed: Seed | Literal["doc"] | None = "doc"
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
    fairness: str = ""
    checks: str | None = None
    unchecked_reason: str | None = None
    comparison: Comparison = "speedup"
    like_for_like: bool = True
    doc_row: str = ""


def doc_seed(section: str, row: str, *, table: str = "", column: str | None = None) -> Seed | None:
    """The document's figure from any of its tables, for a row outside the system's own section.

    ``section`` and ``table`` name the document's headings ("Horizontal Scaling",
    ``""``); ``column``, when given, takes that one cell as the throughput (the
    scaling tables put one rate per column: ``column="2 Nodes"``).
    """
    from tenfold.core._docfigures import doc_row, seed_from_cells, to_rate

    cells = doc_row(section, table, row)
    if cells is None:
        return None
    if column is None:
        return seed_from_cells(cells)
    cell = cells.get(column)
    if cell is None:
        return None
    return Seed(ops_per_s=to_rate(cell), extra={column.lower(): cell})


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
