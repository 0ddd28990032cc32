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
logistic regression with AdaGrad steps over the last few dozen due labels. Invariant (no leakage): a statistic or weight changes only in
:meth:`RecencyBlend.learn` (and :meth:`RecencyBlend.flush` over rows given to it), which the caller invokes for a row only once its
label is due (its time plus the label delay); :meth:`RecencyBlend.features`
reads state and never changes it, and the numeric moments a batch is
standardised with are those of earlier batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import mul
from typing import Any

import numpy as np

__all__ = ["RecencyBlend"]

Array = np.ndarray[Any, Any]

# exp(300) ~ 2e130: scaled sums stay far from float64's overflow (1.8e308).
_MAX_EXPONENT = 300.0

# A key group is a tuple of column indices; () is the whole stream.
KeyGroup = tuple[int, ...]


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
        # Each table maps a key to [sum of labels, count], both decayed and scaled by
        # exp((t - ref) / tau) for the row's time t: decaying everything to a moment
        # is then one factor per timescale, not one exp per cell. `_rebase` moves
        # `ref` forward before the scale could overflow.
        self._tables: list[dict[Any, list[float]]] = [{} for _ in specs]
        taus = sorted({tau for _, tau in specs})
        self._inv_taus = [1.0 / tau for tau in taus]
        self._spec_scale = [taus.index(tau) for _, tau in specs]
        self._max_inv = max(self._inv_taus, default=0.0)
        self._ref: float | None = None
        self._scale_memo: dict[tuple[float, float, float], list[float]] = {}
        self._groups = sorted({g for g, _ in specs if g})
        self.prior_rows = prior_rows
        self.l2 = l2
        n_dense = 2 + len(specs)  # bias, margin, one per statistic
        self.n_inputs = n_dense + len(self.numeric)
        self._w = np.zeros(self.n_inputs)
        self._w[1] = 1.0  # start as the booster alone
        self.w: list[float] = self._w.tolist()  # the same weights, for the per-row dot product
        self._g2 = np.full(self.n_inputs, 1e-6)
        self._lr = np.array([learning_rate] * n_dense + [raw_learning_rate] * len(self.numeric))
        self.step_rows = step_rows
        self._buf_f: list[list[float]] = []
        self._buf_y: list[int] = []
        self._label_sum = 0.0
        self._label_n = 0
        # Running moments of the numeric columns (features only, never labels).
        self._mom_n = 0
        self._mom_mean = np.zeros(len(self.numeric))
        self._mom_m2 = np.zeros(len(self.numeric))

    # -- reading (no state changes) ----------------------------------------------------
    def batch_inputs(self, x: Array) -> tuple[list[list[Any]], list[list[float]]]:
        """Per row: its key for each statistic, and its standardised numeric columns.

        The moments used are those of earlier batches; this batch's rows are added
        to them afterwards (label-free, so this is not a leak either way).
        """
        keys_by_group: dict[KeyGroup, list[Any]] = {}
        for g in self._groups:
            codes = x[:, list(g)]
            ints = np.where(np.isnan(codes), -1, codes).astype(np.int64)
            keys_by_group[g] = ints[:, 0].tolist() if len(g) == 1 else list(map(tuple, ints))
        n = len(x)
        keys = [[keys_by_group[g][i] if g else 0 for g, _ in self.specs] for i in range(n)]
        raw = np.nan_to_num(x[:, self.numeric].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if self._mom_n > 1:
            sd = np.sqrt(np.maximum(self._mom_m2 / self._mom_n, 1e-12))
            z = np.clip((raw - self._mom_mean) / sd, -5.0, 5.0)
        else:
            z = np.zeros_like(raw)
        self._add_moments(raw)
        return keys, z.tolist()

    def features(self, now: float, margin: float, keys: list[Any], z: list[float]) -> list[float]:
        """The blend's inputs for one row predicted at time ``now``."""
        prior = (self._label_sum + 1.0) / (self._label_n + 5.0)
        a_pos = self.prior_rows * prior
        a_neg = self.prior_rows - a_pos
        base = math.log(a_pos / a_neg)
        f = [1.0, margin]
        ref = self._ref
        if ref is None:
            f.extend([0.0] * len(self.specs))
            f.extend(z)
            return f
        if (now - ref) * self._max_inv > _MAX_EXPONENT:
            self._rebase(now)  # a change of representation only: every rate stays the same
            ref = now
        scales = self._scales(ref, now, -1.0)
        log = math.log
        for table, key, si in zip(self._tables, keys, self._spec_scale, strict=True):
            cell = table.get(key)
            if cell is None:
                f.append(0.0)
                continue
            k = scales[si]
            pos = cell[0] * k
            # Smoothed log-odds of the decayed rate, relative to the long-run rate.
            f.append(log((pos + a_pos) / (cell[1] * k - pos + a_neg)) - base)
        f.extend(z)
        return f

    def predict(self, f: list[float]) -> float:
        score = sum(map(mul, self.w, f))
        if score >= 0:
            return 1.0 / (1.0 + math.exp(-min(score, 35.0)))
        e = math.exp(max(score, -35.0))
        return e / (1.0 + e)

    # -- learning (only for labels that are due) ---------------------------------------
    def learn(self, row_time: float, keys: list[Any], f: list[float], y: int) -> None:
        """A due label: it joins the recency statistics now, and the weight step's buffer.

        ``f`` are the inputs the row was predicted with (the statistics as they were
        then), so the weights learn the mapping that prediction-time inputs need.
        """
        self._label_sum += y
        self._label_n += 1
        ref = self._ref
        if ref is None:
            ref = self._ref = row_time
        elif (row_time - ref) * self._max_inv > _MAX_EXPONENT:
            self._rebase(row_time)
            ref = row_time
        # Labels may arrive out of order: an older one simply gets a smaller scale.
        scales = self._scales(ref, row_time, 1.0)
        for table, key, si in zip(self._tables, keys, self._spec_scale, strict=True):
            k = scales[si]
            cell = table.get(key)
            if cell is None:
                table[key] = [y * k, k]
            else:
                cell[0] += y * k
                cell[1] += k
        self._buf_f.append(f)
        self._buf_y.append(y)
        if len(self._buf_y) >= self.step_rows:
            self.flush()

    def flush(self) -> None:
        """One AdaGrad step on the buffered labelled rows (weights frozen within the step).

        The weights drift slowly; what moves from row to row lives in the statistics,
        which :meth:`learn` updates at once. Stepping on a few dozen rows at a time
        keeps the per-row cost to the statistics and one dot product.
        """
        if not self._buf_y:
            return
        f = np.asarray(self._buf_f)
        y = np.asarray(self._buf_y, dtype=np.float64)
        self._buf_f.clear()
        self._buf_y.clear()
        score = np.clip(f @ self._w, -35.0, 35.0)
        err = 1.0 / (1.0 + np.exp(-score)) - y
        # AdaGrad accumulates each row's squared gradient, as per-row steps would.
        rows = err[:, None] * f + self.l2 * self._w
        self._g2 += (rows * rows).sum(axis=0)
        self._w -= self._lr * rows.sum(axis=0) / np.sqrt(self._g2)
        self.w = self._w.tolist()

    def _scales(self, ref: float, t: float, sign: float) -> list[float]:
        """exp(sign * (t - ref) / tau) per timescale; rows arrive many to a timestamp
        (flights are stamped by the hour), so the last few are remembered."""
        key = (ref, t, sign)
        hit = self._scale_memo.get(key)
        if hit is None:
            hit = [math.exp(sign * (t - ref) * inv) for inv in self._inv_taus]
            if len(self._scale_memo) >= 8:
                self._scale_memo.clear()
            self._scale_memo[key] = hit
        return hit

    def _rebase(self, new_ref: float) -> None:
        assert self._ref is not None
        shrink = [math.exp((self._ref - new_ref) * inv) for inv in self._inv_taus]
        for table, si in zip(self._tables, self._spec_scale, strict=True):
            k = shrink[si]
            for cell in table.values():
                cell[0] *= k
                cell[1] *= k
        self._ref = new_ref

    def _add_moments(self, raw: Array) -> None:
        # Chan et al.'s parallel update of count, mean and sum of squared deviations.
        nb = len(raw)
        if not nb:
            return
        mb = raw.mean(axis=0)
        m2b = ((raw - mb) ** 2).sum(axis=0)
        na = self._mom_n
        n = na + nb
        delta = mb - self._mom_mean
        self._mom_mean = self._mom_mean + delta * (nb / n)
        self._mom_m2 = self._mom_m2 + m2b + delta**2 * (na * nb / n)
        self._mom_n = n

    @property
    def table_entries(self) -> int:
        """How many (statistic, key) cells are held (bounded by the categories seen)."""
        return sum(len(t) for t in self._tables)
