"""Online adaptation: test-then-train with delayed labels and ADWIN drift detection.

Each arriving row is predicted first (test); its label arrives ``label_delay``
later (in the stream's time units) and only then counts towards the error and
the training window (train). The error stream feeds ADWIN (Bifet and Gavalda,
2007): when two sub-windows' mean errors differ by more than the Hoeffding-style
bound, the older part is dropped and a retrain on the recent window starts in
the background; predictions continue on the current model until the new one is
swapped in.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from tenfold.auto_learner.errors import BudgetError

__all__ = ["Adwin", "OnlineLearner", "OnlineStats"]

Array = np.ndarray[Any, Any]


class Adwin:
    """ADWIN over a bounded window of values in [0, 1]; ``update`` returns True on a drift."""

    def __init__(
        self,
        delta: float = 0.002,
        max_window: int = 20_000,
        check_every: int = 32,
        min_side: int = 30,
    ) -> None:
        if not 0 < delta < 1:
            raise BudgetError(f"ADWIN delta must be in (0, 1), got {delta}")
        self.delta = delta
        self.window: deque[float] = deque(maxlen=max_window)
        self.check_every = check_every
        self.min_side = min_side
        self._since = 0
        self.drifts = 0

    def update(self, value: float) -> bool:
        self.window.append(value)
        self._since += 1
        if self._since < self.check_every or len(self.window) < 2 * self.min_side:
            return False
        self._since = 0
        values = np.fromiter(self.window, dtype=float)
        n = len(values)
        prefix = np.cumsum(values)
        total = prefix[-1]
        cut = self._find_cut(prefix, total, n)
        if cut is None:
            return False
        for _ in range(cut):
            self.window.popleft()
        self.drifts += 1
        return True

    def _find_cut(self, prefix: Array, total: float, n: int) -> int | None:
        splits = np.arange(self.min_side, n - self.min_side + 1, max(1, n // 256))
        if not len(splits):
            return None
        n0 = splits.astype(float)
        n1 = n - n0
        mean0 = prefix[splits - 1] / n0
        mean1 = (total - prefix[splits - 1]) / n1
        m = 1.0 / (1.0 / n0 + 1.0 / n1)
        delta_p = self.delta / math.log(n)
        variance = float(np.var(np.fromiter(self.window, dtype=float)))
        eps = np.sqrt(2 * m**-1 * variance * math.log(2 / delta_p)) + 2 / (3 * m) * math.log(
            2 / delta_p
        )
        hits = np.nonzero(np.abs(mean0 - mean1) > eps)[0]
        if not len(hits):
            return None
        return int(splits[hits[-1]])

    @property
    def mean(self) -> float:
        return float(np.mean(self.window)) if self.window else 0.0


@dataclass
class OnlineStats:
    seen: int = 0
    labelled: int = 0
    correct: int = 0
    drifts: int = 0
    retrains: int = 0
    updates: int = 0
    probabilities: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else 0.0


class OnlineLearner:
    """Keeps a LightGBM booster current on a stream of (time, features, label) rows."""

    def __init__(
        self,
        booster: lgb.Booster,
        params: dict[str, Any],
        *,
        label_delay: float = 0.0,
        window: int = 20_000,
        update_every: int = 2_000,
        update_rounds: int = 10,
        adwin_delta: float = 0.002,
        background: bool = True,
    ) -> None:
        if booster is None:
            raise BudgetError(
                "online adaptation needs a boosted model (fit with families=('lgbm',))"
            )
        if label_delay < 0 or not math.isfinite(label_delay):
            raise BudgetError(f"label delay must be a non-negative number, got {label_delay}")
        self.booster = booster
        self.params = {**params, "verbose": -1, "num_threads": 1}
        self.label_delay = label_delay
        self.update_every = update_every
        self.update_rounds = update_rounds
        self.adwin = Adwin(adwin_delta)
        self.stats = OnlineStats()
        self.background = background
        self._pending: deque[tuple[float, Array, int, float]] = deque()
        self._xs: deque[Array] = deque(maxlen=window)
        self._ys: deque[int] = deque(maxlen=window)
        self._since_update = 0
        self._lock = threading.Lock()
        self._retrain: threading.Thread | None = None
        self._last_retrain_at = -(10**18)
        self.retrain_rounds = 100
        self.max_trees = 400

    def process(self, t: Array, x: Array, y: Array) -> Array:
        """Predict a batch arriving at times ``t`` (test), then release labels that are due (train)."""
        with self._lock:
            booster = self.booster
        proba = np.asarray(booster.predict(x, num_threads=1))
        for ti, xi, yi, pi in zip(t, x, y, proba, strict=True):
            self._pending.append((float(ti) + self.label_delay, xi, int(yi), float(pi)))
        self.stats.seen += len(x)
        now = float(t[-1]) if len(t) else 0.0
        while self._pending and self._pending[0][0] <= now:
            _, xi, yi, pi = self._pending.popleft()
            self._learn(xi, yi, pi)
        return proba

    def finish(self) -> None:
        """Release every pending label (end of stream) and wait for a running retrain."""
        while self._pending:
            _, xi, yi, pi = self._pending.popleft()
            self._learn(xi, yi, pi)
        if self._retrain is not None:
            self._retrain.join()

    def _learn(self, x: Array, y: int, p: float) -> None:
        st = self.stats
        st.labelled += 1
        wrong = int((p >= 0.5) != bool(y))
        st.correct += 1 - wrong
        st.probabilities.append(p)
        st.labels.append(y)
        self._xs.append(x)
        self._ys.append(y)
        self._since_update += 1
        if self.adwin.update(float(wrong)):
            st.drifts += 1
            self._start_retrain(len(self.adwin.window))
        elif self._since_update >= self.update_every:
            self._since_update = 0
            self._update()

    def _update(self) -> None:
        """Continue boosting a few rounds on the recent labelled rows."""
        if self._retrain is not None and self._retrain.is_alive():
            return
        n = min(len(self._xs), self.update_every * 2)
        x = np.vstack(list(self._xs)[-n:])
        y = np.fromiter(list(self._ys)[-n:], dtype=np.int32)
        if len(np.unique(y)) < 2:
            return
        with self._lock:
            booster = self.booster
        if booster.num_trees() >= self.max_trees:
            # Bounded model size: refit on the window instead of adding trees.
            new = lgb.train(self.params, lgb.Dataset(x, y), num_boost_round=self.retrain_rounds)
        else:
            new = lgb.train(
                self.params,
                lgb.Dataset(x, y),
                num_boost_round=self.update_rounds,
                init_model=booster,
                keep_training_booster=True,
            )
        with self._lock:
            self.booster = new
        self.stats.updates += 1

    def _start_retrain(self, recent: int) -> None:
        # At most one retrain per `update_every` labels: a stream whose error rate wanders
        # (hour of day, weather) would otherwise retrain on every wobble.
        if self._retrain is not None and self._retrain.is_alive():
            return
        if self.stats.labelled - self._last_retrain_at < self.update_every:
            return
        self._last_retrain_at = self.stats.labelled
        n = max(self.update_every * 2, min(len(self._xs), recent))
        x = np.vstack(list(self._xs)[-n:])
        y = np.fromiter(list(self._ys)[-n:], dtype=np.int32)
        if len(np.unique(y)) < 2:
            return

        def retrain() -> None:
            # A fresh model on the window after the change (not more trees on the old
            # ones), so the model's size stays bounded however often the stream drifts.
            new = lgb.train(self.params, lgb.Dataset(x, y), num_boost_round=self.retrain_rounds)
            with self._lock:
                self.booster = new
            self.stats.retrains += 1

        if self.background:
            self._retrain = threading.Thread(target=retrain, daemon=True, name="tenfold-retrain")
            self._retrain.start()
        else:
            retrain()
