"""Guards that refuse or repair bad training data before any search runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tenfold.auto_learner.errors import DataError

__all__ = ["GuardReport", "check_target", "find_leaks"]


@dataclass
class GuardReport:
    warnings: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def check_target(df: pd.DataFrame, target: str) -> np.ndarray:
    """The label as class indices; refuses a missing column, missing labels or one class."""
    if target not in df.columns:
        raise DataError(
            f"target column {target!r} is not in the data (columns: {', '.join(map(str, df.columns[:20]))})"
        )
    y = df[target]
    n_missing = int(y.isna().sum())
    if n_missing:
        raise DataError(
            f"target column {target!r} has {n_missing} missing value(s); drop or fill them first"
        )
    if pd.api.types.is_float_dtype(y.dtype) and not np.isfinite(y.to_numpy()).all():
        raise DataError(f"target column {target!r} has infinite values")
    classes = pd.unique(y)
    if len(classes) < 2:
        raise DataError(
            f"target column {target!r} has a single class ({classes[0]!r}): nothing to learn"
        )
    values: np.ndarray = y.to_numpy()
    return values


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """Rank AUC of ``score`` against binary ``y`` (ties averaged); NaNs ranked lowest."""
    score = np.where(np.isnan(score), -np.inf, score)
    order = pd.Series(score).rank(method="average").to_numpy()
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return 0.5
    return float((order[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def find_leaks(
    df: pd.DataFrame,
    features: list[str],
    y_index: np.ndarray,
    *,
    threshold: float = 0.985,
    sample: int = 50_000,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """Columns that predict the label almost perfectly on their own: (name, single-column AUC).

    For a numeric column the AUC of its raw value (either direction); for a
    categorical one the AUC of its per-category label rate, fitted on one half
    and scored on the other so that high-cardinality ids do not look perfect.
    Multiclass labels are judged one class against the rest (the best class).
    """
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))[:sample]
    sub = df.iloc[idx]
    ys = y_index[idx]
    classes = np.unique(ys)
    targets = [ys == c for c in (classes if len(classes) > 2 else classes[1:])]
    leaks = []
    half = len(sub) // 2
    for name in features:
        s = sub[name]
        best = 0.5
        for mask in targets:
            yb = mask.astype(np.int8)
            if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object:
                keys = s.astype(str).to_numpy()
                rate = pd.Series(yb[:half]).groupby(keys[:half]).mean()
                score = pd.Series(keys[half:]).map(rate).to_numpy(dtype=float)
                auc = _auc(score, yb[half:])
            else:
                values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
                auc = _auc(values, yb)
            best = max(best, auc, 1 - auc)
        if best >= threshold:
            leaks.append((name, round(best, 4)))
    return leaks
