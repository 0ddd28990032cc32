"""The per-row layer of the online learner: a logistic blend learnt one label at a time.

A boosted model updated in batches misses what a stream says from one row to the
next: flights late in this hour make the next one likely late too. This layer
adds that, on top of the booster's raw score, with three kinds of inputs:

- the booster's margin (log-odds), so the blend starts where the booster is;
- recency statistics: the label rate with exponential time decay, overall and
  per value of each categorical column (and of chosen column groups), as
  smoothed log-odds relative to the long-run rate;
- the raw numeric columns, standardised with running moments of the rows seen.

The statistics take each label as soon as it is due; the weights are learnt by
logistic regression with AdaGrad steps over every ``step_rows`` due labels.

Each row is predicted with the state it would have if the rows came one at a
time: every label released before it (and only those) is in the statistics and
the weight steps, and its numeric columns are standardised with the moments of
the rows before it. The work is done per batch in numpy: the caller says, for
each released label, how many of the batch's rows were predicted before it
(``before``), and per-key running sums over the batch give each row its
statistics. Invariant (no leakage): a statistic or weight changes only through
released labels, which the caller releases for a row only once its label is due
(its time plus the label delay).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RecencyBlend"]

Array = np.ndarray[Any, Any]

# exp(300) ~ 2e130: scaled sums stay far from float64's overflow (1.8e308).
_MAX_EXPONENT = 300.0

# Category codes below this take a slot from a lookup array (others go through a dict).
_MAX_CODE = 1 << 20

# A key group is a tuple of column indices; () is the whole stream.
KeyGroup = tuple[int, ...]


def _sigmoid(score: Array) -> Array:
    s = np.clip(score, -35.0, 35.0)
    e = np.exp(-np.abs(s))
    out: Array = np.where(s >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return out


class RecencyBlend:
    """Online logistic regression over the booster margin, decayed label rates and raw columns."""

    def __init__(
        self,
        n_features: int,
        categorical: Sequence[int] = (),
        *,
        timescales: Sequence[float] = (1.0, 3.0, 12.0, 48.0),
        key_timescales: Sequence[float] = (3.0, 24.0),
        key_groups: Sequence[KeyGroup] = (),
        learning_rate: float = 0.1,
        raw_learning_rate: float = 0.05,
        l2: float = 1e-4,
        prior_rows: float = 3.0,
        step_rows: int = 32,
    ) -> None:
        cats = sorted(set(categorical))
        self.numeric = [j for j in range(n_features) if j not in cats]
        # (column group, e-folding time): the overall rate at several timescales, each
        # categorical column at `key_timescales`, and each chosen group at the longest.
        specs: list[tuple[KeyGroup, float]] = [((), tau) for tau in timescales]
        specs += [((c,), tau) for c in cats for tau in key_timescales]
        specs += [(tuple(g), max(key_timescales, default=24.0)) for g in key_groups]
        self.specs = specs
        # One table per key group: a row per key (its slot), and per statistic of the
        # group two columns, [decayed sum of labels | decayed count], both scaled by
        # exp((t - ref) / tau) for the label's row time t, so that decaying everything
        # to a moment is one factor per column. `_rebase` moves `ref` forward before
        # the scale could overflow.
        self._groups: list[KeyGroup] = [(), *sorted({g for g, _ in specs if g})]
        self._group_cols = [
            np.array([2 + s for s, (g, _) in enumerate(specs) if g == grp], dtype=np.int64)
            for grp in self._groups
        ]
        self._group_inv = [
            np.array([1.0 / tau for g, tau in specs if g == grp]) for grp in self._groups
        ]
        self._slot_of: list[dict[Any, int]] = [{0: 0}] + [{} for _ in self._groups[1:]]
        # Per single-column group: slot by category code + 1 (-1: not seen yet).
        self._lookup = [np.full(1, -1, dtype=np.int64) for _ in self._groups]
        self._tables = [np.zeros((1, 2 * len(c))) for c in self._group_cols]
        self._learned = [np.zeros(1, dtype=bool) for _ in self._groups]
        self._max_inv = max((1.0 / tau for _, tau in specs), default=0.0)
        self._ref: float | None = None
        self.prior_rows = prior_rows
        self.l2 = l2
        n_dense = 2 + len(specs)  # bias, margin, one per statistic
        self.n_inputs = n_dense + len(self.numeric)
        self._w = np.zeros(self.n_inputs)
        self._w[1] = 1.0  # start as the booster alone
        self._g2 = np.full(self.n_inputs, 1e-6)
        self._lr = np.array([learning_rate] * n_dense + [raw_learning_rate] * len(self.numeric))
        self.step_rows = step_rows
        # Due labels not yet in a weight step: their inputs and labels.
        self._buf_f = np.empty((0, self.n_inputs))
        self._buf_y = np.empty(0)
        self._label_sum = 0.0
        self._label_n = 0
        # Running moments of the numeric columns (features only, never labels).
        self._mom_n = 0
        self._mom_mean = np.zeros(len(self.numeric))
        self._mom_m2 = np.zeros(len(self.numeric))

    @property
    def batch_span(self) -> float:
        """The most time one call of :meth:`features` should span.

        Per key, a row's sum is a difference of two running sums over the batch's
        labels of all keys; labels up to this span after the row weigh up to e^10
        times its own, so rounding stays below 1e-9 of a label.
        """
        keyed = [1.0 / tau for g, tau in self.specs if g]
        limits = [_MAX_EXPONENT / 3 / self._max_inv] if self._max_inv else []
        limits += [10.0 / max(keyed)] if keyed else []
        return min(limits, default=math.inf)

    # -- keys (label-free) -------------------------------------------------------------
    def slots(self, x: Array) -> Array:
        """Per row and key group, the row's slot in that group's table (new keys get new slots)."""
        out = np.zeros((len(x), len(self._groups)), dtype=np.int64)
        for gi, g in enumerate(self._groups):
            if not g or not len(x):
                continue
            codes = x[:, list(g)]
            ints = np.where(np.isnan(codes), -1, codes).astype(np.int64)
            slot_of = self._slot_of[gi]
            if len(g) == 1 and ints.min() >= -1 and ints.max() < _MAX_CODE:
                # A category code: its slot from a lookup array, and the dict only
                # for codes not seen before.
                lookup = self._lookup[gi]
                codes1 = ints[:, 0] + 1
                if codes1.max() >= len(lookup):
                    grown = max(2 * len(lookup), int(codes1.max()) + 1)
                    lookup = np.concatenate([lookup, np.full(grown - len(lookup), -1)])
                    self._lookup[gi] = lookup
                found = lookup[codes1]
                if (found < 0).any():
                    for c in np.unique(codes1[found < 0]).tolist():
                        lookup[c] = slot_of.setdefault(c - 1, len(slot_of))
                    found = lookup[codes1]
                out[:, gi] = found
            else:
                keys: list[Any]
                if len(g) == 1:
                    uniq, inverse = np.unique(ints[:, 0], return_inverse=True)
                    keys = uniq.tolist()
                else:
                    uniq, inverse = np.unique(ints, axis=0, return_inverse=True)
                    keys = list(map(tuple, uniq.tolist()))
                ids = np.fromiter(
                    (slot_of.setdefault(k, len(slot_of)) for k in keys),
                    dtype=np.int64,
                    count=len(keys),
                )
                out[:, gi] = ids[inverse.reshape(-1)]
            table = self._tables[gi]
            if len(slot_of) > len(table):
                grown = max(2 * len(table), len(slot_of))
                self._tables[gi] = np.vstack(
                    [table, np.zeros((grown - len(table), table.shape[1]))]
                )
                self._learned[gi] = np.concatenate(
                    [self._learned[gi], np.zeros(grown - len(table), dtype=bool)]
                )
        return out

    # -- inputs, and the statistics' learning ------------------------------------------
    def features(
        self,
        now: Array,
        margin: Array,
        slots: Array,
        x: Array,
        released: tuple[Array, Array, Array],
        before: Array,
    ) -> Array:
        """The inputs of rows predicted at times ``now``; then their released labels join the statistics.

        ``released`` is (row times, slots, labels) of the labels released during
        the batch, in release order, and ``before[j]`` the number of the batch's
        rows predicted before label ``j`` (non-decreasing). Row ``i`` sees exactly
        the labels with ``before <= i``, as if the rows had come one at a time.
        """
        rel_time, rel_slots, rel_y = released
        n, m = len(now), len(rel_y)
        f = np.empty((n, self.n_inputs))
        f[:, 0] = 1.0
        f[:, 1] = margin
        y = rel_y.astype(np.float64)
        # Labels released before each row: counts and sums, for the long-run rate.
        per_row = np.bincount(before, minlength=n + 1)
        n_before = self._label_n + np.cumsum(per_row)[:n]
        sum_before = (
            self._label_sum + np.cumsum(np.bincount(before, weights=y, minlength=n + 1))[:n]
        )
        a_pos = self.prior_rows * (sum_before + 1.0) / (n_before + 5.0)
        a_neg = self.prior_rows - a_pos
        base = np.log(a_pos / a_neg)
        self._move_ref(now, rel_time)
        ref = self._ref if self._ref is not None else 0.0
        since = rel_time - ref
        for gi, cols in enumerate(self._group_cols):
            k = len(cols)
            if not k:
                continue
            inv = self._group_inv[gi]
            table = self._tables[gi]
            sp = slots[:, gi]
            cur = table[sp]  # the state at the batch's start, per row (a copy)
            if m:
                scale = np.exp(since[:, None] * inv)
                contrib = np.concatenate([y[:, None] * scale, scale], axis=1)
                sr = rel_slots[:, gi]
                if n:
                    # Per row: the sum over the labels of its key released before it. The
                    # labels sorted by key (release order kept) make each key's labels
                    # one run, in which `before` does not decrease; a running sum
                    # over the sorted labels, read at the run's start and at the
                    # row's place in it, gives the sum.
                    order = np.argsort(sr, kind="stable")
                    keyed = sr[order] * (n + 1) + before[order]
                    running = np.zeros((m + 1, 2 * k))
                    np.cumsum(contrib[order], axis=0, out=running[1:])
                    lo = np.searchsorted(keyed, sp * (n + 1), side="left")
                    hi = np.searchsorted(keyed, sp * (n + 1) + np.arange(n), side="right")
                    cur += running[hi] - running[lo]
                np.add.at(table, sr, contrib)
                self._learned[gi][sr] = True
            if n:
                decay = np.exp(-(now - ref)[:, None] * inv)
                pos = cur[:, :k] * decay
                # Smoothed log-odds of the decayed rate, relative to the long-run rate.
                f[:, cols] = (
                    np.log((pos + a_pos[:, None]) / (cur[:, k:] * decay - pos + a_neg[:, None]))
                    - base[:, None]
                )
        self._label_n += m
        self._label_sum += float(y.sum())
        if self.numeric:
            f[:, 2 + len(self.specs) :] = self._standardise(x)
        return f

    def _standardise(self, x: Array) -> Array:
        """Each row's numeric columns standardised with the moments of the rows before it."""
        raw = np.nan_to_num(x[:, self.numeric].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        n = len(raw)
        if not n:
            return raw
        n0 = self._mom_n
        # Sums of deviations from a shift (the running mean, or the first row): with
        # them a prefix's mean and squared deviations follow without cancellation.
        shift = self._mom_mean if n0 else raw[0]
        dev = raw - shift
        s1 = np.cumsum(dev, axis=0)
        s2 = np.cumsum(dev * dev, axis=0)
        zero = np.zeros((1, raw.shape[1]))
        s1b = np.vstack([zero, s1[:-1]])
        s2b = np.vstack([zero, s2[:-1]])
        count = (n0 + np.arange(n, dtype=np.float64))[:, None]
        safe = np.maximum(count, 1.0)
        mean = shift + s1b / safe
        var = (self._mom_m2 + s2b - s1b * s1b / safe) / safe
        z: Array = np.clip((raw - mean) / np.sqrt(np.maximum(var, 1e-12)), -5.0, 5.0)
        z[count[:, 0] <= 1] = 0.0
        total = n0 + n
        self._mom_mean = shift + s1[-1] / total
        self._mom_m2 = self._mom_m2 + s2[-1] - s1[-1] * s1[-1] / total
        self._mom_n = total
        return z

    def _move_ref(self, now: Array, rel_time: Array) -> None:
        """Keep every scale exponent of this batch within bounds (a change of representation only)."""
        if not len(now) and not len(rel_time):
            return
        latest = max(
            float(now.max()) if len(now) else -np.inf, float(rel_time.max(initial=-np.inf))
        )
        if self._ref is None:
            self._ref = float(now.min()) if len(now) else latest
        elif (latest - self._ref) * self._max_inv > _MAX_EXPONENT:
            self._rebase(float(now.min()) if len(now) else latest)

    def _rebase(self, new_ref: float) -> None:
        assert self._ref is not None
        for gi, inv in enumerate(self._group_inv):
            shrink = np.exp((self._ref - new_ref) * inv)
            self._tables[gi] *= np.concatenate([shrink, shrink])
        self._ref = new_ref

    # -- the weights -------------------------------------------------------------------
    def weigh(self, f: Array, released: tuple[Array, Array], before: Array) -> Array:
        """Probabilities for rows with inputs ``f``; then an AdaGrad step per ``step_rows`` released labels.

        ``released`` is (inputs the row was predicted with, label) per released
        label, in release order, and ``before`` as in :meth:`features`: row ``i``
        is scored with the weights after the steps taken on labels with
        ``before <= i``.
        """
        rel_f, rel_y = released
        b0 = len(self._buf_y)
        buf_f = np.vstack([self._buf_f, rel_f])
        buf_y = np.concatenate([self._buf_y, rel_y.astype(np.float64)])
        steps = len(buf_y) // self.step_rows
        weights = [self._w]
        for s in range(steps):
            rows = slice(s * self.step_rows, (s + 1) * self.step_rows)
            self._step(buf_f[rows], buf_y[rows])
            weights.append(self._w)
        self._buf_f = buf_f[steps * self.step_rows :]
        self._buf_y = buf_y[steps * self.step_rows :]
        n = len(f)
        if not n:
            return np.empty(0)
        n_before = np.cumsum(np.bincount(before, minlength=n + 1))[:n]
        epoch = (b0 + n_before) // self.step_rows
        return _sigmoid(np.einsum("ij,ij->i", f, np.asarray(weights)[epoch]))

    def flush(self) -> None:
        """A weight step on the labels still buffered (the end of a stream)."""
        if len(self._buf_y):
            self._step(self._buf_f, self._buf_y)
            self._buf_f = self._buf_f[:0]
            self._buf_y = self._buf_y[:0]

    def _step(self, f: Array, y: Array) -> None:
        """One AdaGrad step on labelled rows (weights frozen within the step).

        The weights drift slowly; what moves from row to row lives in the
        statistics. AdaGrad accumulates each row's squared gradient, as per-row
        steps would.
        """
        err = _sigmoid(f @ self._w) - y
        rows = err[:, None] * f + self.l2 * self._w
        self._g2 = self._g2 + (rows * rows).sum(axis=0)
        self._w = self._w - self._lr * rows.sum(axis=0) / np.sqrt(self._g2)

    @property
    def table_entries(self) -> int:
        """How many (statistic, key) cells hold labels (bounded by the categories seen)."""
        return sum(
            int(learned.sum()) * len(cols)
            for learned, cols in zip(self._learned, self._group_cols, strict=True)
        )
