"""Covariate shift: a domain classifier tells training rows from target rows.

If a classifier separates them (AUC well above 0.5), the two differ; its
probabilities give importance weights w = p / (1 - p) (clipped) that make the
training rows look like the target rows (Shimodaira 2000; Sugiyama et al.).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tenfold.auto_learner._omp  # noqa: F401  (before lightgbm loads OpenMP)

# isort: split
import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["ShiftReport", "shift_test"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class ShiftReport:
    auc: float
    shifted: bool
    top_features: list[tuple[str, float]]
    weights: Array | None
    time_like: list[str]


def shift_test(
    source: Array,
    target: Array,
    names: list[str],
    categorical: list[int],
    *,
    threshold: float = 0.6,
    max_rows: int = 10_000,
    seed: int = 0,
    clip: float = 20.0,
) -> ShiftReport:
    rng = np.random.default_rng(seed)
    s_idx = rng.permutation(len(source))[:max_rows]
    t_idx = rng.permutation(len(target))[:max_rows]
    x = np.vstack([source[s_idx], target[t_idx]])
    d = np.concatenate([np.zeros(len(s_idx)), np.ones(len(t_idx))])
    order = rng.permutation(len(x))
    x, d = x[order], d[order]
    # A column that alone tells the two apart (a calendar field under a time
    # split) is expected to differ; weighting on it would only erase it. Such
    # columns are reported and left out of the classifier.
    time_like = []
    keep = []
    for j in range(x.shape[1]):
        col = np.nan_to_num(x[:, j], nan=-1e30)
        auc_j = float(roc_auc_score(d, col)) if np.ptp(col) > 0 else 0.5
        if max(auc_j, 1 - auc_j) >= 0.95:
            time_like.append(names[j])
        else:
            keep.append(j)
    if not keep:
        return ShiftReport(1.0, True, [(n, 1.0) for n in time_like[:5]], None, time_like)
    x = x[:, keep]
    names = [names[j] for j in keep]
    categorical = [keep.index(j) for j in categorical if j in keep]
    source = source[:, keep]
    half = len(x) // 2
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
    }
    booster = lgb.train(
        params, lgb.Dataset(x[:half], d[:half], categorical_feature=categorical), num_boost_round=40
    )
    auc = float(roc_auc_score(d[half:], booster.predict(x[half:])))
    gain = booster.feature_importance("gain")
    total = float(gain.sum()) or 1.0
    top = sorted(
        ((names[i], round(float(g) / total, 3)) for i, g in enumerate(gain)), key=lambda t: -t[1]
    )[:5]
    shifted = auc >= threshold
    weights = None
    if shifted:
        p = np.clip(booster.predict(source), 1e-3, 1 - 1e-3)
        ratio = p / (1 - p) * (len(s_idx) / len(t_idx))
        weights = np.clip(ratio, 1 / clip, clip)
        weights = weights / weights.mean()
    return ShiftReport(round(auc, 4), shifted, top, weights, time_like)
