"""Guards that refuse or repair bad training data before any search runs, and task detection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tenfold.auto_learner.errors import BudgetError, DataError

__all__ = ["TASKS", "GuardReport", "check_target", "detect_task", "find_leaks"]

TASKS = ("auto", "binary", "multiclass", "regression")
MAX_CLASSES_AUTO = 20  # an integer target with more distinct values is taken as a number


@dataclass
class GuardReport:
    warnings: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _columns_line(df: pd.DataFrame) -> str:
    names = [str(c) for c in df.columns[:20]]
    return ", ".join(names) + (f", ... ({len(df.columns)} in all)" if len(df.columns) > 20 else "")


def check_target(df: pd.DataFrame, target: Any) -> np.ndarray[Any, Any]:
    """The label's values; refuses a missing column, missing or infinite labels, or one value."""
    if target not in df.columns:
        raise DataError(
            f"target column {target!r} is not in the data (columns: {_columns_line(df)})"
        )
    y = df[target]
    if isinstance(y, pd.DataFrame):
        raise DataError(f"target column {target!r} appears more than once in the data")
    n_missing = int(y.isna().sum())
    if n_missing:
        raise DataError(
            f"target column {target!r} has {n_missing} missing value(s); drop or fill them first"
        )
    if pd.api.types.is_float_dtype(y.dtype) and not np.isfinite(y.to_numpy(dtype=float)).all():
        raise DataError(f"target column {target!r} has infinite values")
    classes = pd.unique(y)
    if len(classes) < 2:
        raise DataError(
            f"target column {target!r} has a single class ({classes[0]!r}): nothing to learn"
        )
    values: np.ndarray[Any, Any] = y.to_numpy()
    return values


def detect_task(y: pd.Series, target: Any, task: str = "auto") -> tuple[str, str]:
    """The task (binary, multiclass or regression) and a one-line note saying why.

    A float target with a fractional value, or a numeric one with more than
    ``MAX_CLASSES_AUTO`` distinct values, is regression; anything else is
    classification (binary with two values). ``task`` forces the choice, and is
    refused when the target cannot be that task.
    """
    if task not in TASKS:
        raise BudgetError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    numeric = pd.api.types.is_numeric_dtype(y.dtype) and not pd.api.types.is_bool_dtype(y.dtype)
    distinct = int(y.nunique())
    if task == "regression":
        if not numeric:
            raise DataError(
                f"target column {target!r} has type {y.dtype}: regression needs a numeric target"
            )
        return "regression", f"task regression (forced; {distinct} distinct values)"
    if task == "binary":
        if distinct != 2:
            raise DataError(
                f"target column {target!r} has {distinct} distinct values: binary needs exactly 2"
            )
        return "binary", "task binary (forced)"
    if task == "multiclass":
        return (
            ("multiclass", f"task multiclass (forced; {distinct} classes)")
            if distinct > 2
            else ("binary", "task binary (2 classes, asked for multiclass)")
        )
    if numeric:
        values = y.to_numpy(dtype=float)
        fractional = bool((values != np.round(values)).any())
        if fractional or distinct > MAX_CLASSES_AUTO:
            why = "fractional values" if fractional else f"{distinct} distinct values"
            return (
                "regression",
                f"task regression: target {target!r} is numeric with {why} (--task to force)",
            )
    if distinct == 2:
        return "binary", f"task binary: target {target!r} has 2 classes"
    return (
        "multiclass",
        f"task multiclass: target {target!r} has {distinct} classes (--task regression to treat it as a number)",
    )


def _auc(score: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    """Rank AUC of ``score`` against binary ``y`` (ties averaged); NaNs ranked lowest."""
    score = np.where(np.isnan(score), -np.inf, score)
    order = pd.Series(score).rank(method="average").to_numpy()
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return 0.5
    return float((order[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _is_categorical(s: pd.Series) -> bool:
    # pandas 3 reads text as the `str` dtype, not object: test for every non-numeric kind.
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
        or pd.api.types.is_bool_dtype(s.dtype)
    )


def _numeric(s: pd.Series) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any]
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s.astype("int64").to_numpy(dtype=float)
    else:
        out = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return out


def find_leaks(
    df: pd.DataFrame,
    features: list[Any],
    y: np.ndarray[Any, Any],
    *,
    task: str = "binary",
    threshold: float = 0.985,
    sample: int = 50_000,
    seed: int = 0,
) -> list[tuple[Any, float]]:
    """Columns that predict the label almost perfectly on their own: (name, strength).

    Classification: for a numeric column the AUC of its raw value (either
    direction); for a categorical one the AUC of its per-category label rate,
    fitted on one half and scored on the other so that high-cardinality ids do
    not look perfect. Multiclass labels are judged one class against the rest,
    for classes with at least 30 rows in the sample (a class of two rows is
    separated perfectly by almost any column). Regression: the absolute rank
    correlation of a numeric column, and the out-of-half R² of a categorical
    column's per-category mean.
    """
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))[:sample]
    sub = df.iloc[idx]
    ys = y[idx]
    half = len(sub) // 2
    leaks: list[tuple[Any, float]] = []
    if task == "regression":
        yf = ys.astype(float)
        y_rank = pd.Series(yf).rank().to_numpy()
        for name in features:
            s = sub[name]
            if _is_categorical(s):
                keys = s.astype(str).to_numpy()
                mean = pd.Series(yf[:half]).groupby(keys[:half]).mean()
                pred = pd.Series(keys[half:]).map(mean).to_numpy(dtype=float)
                ok = ~np.isnan(pred)
                if ok.sum() < 10:
                    continue
                resid = ((yf[half:][ok] - pred[ok]) ** 2).sum()
                total = ((yf[half:][ok] - yf[half:][ok].mean()) ** 2).sum() or 1.0
                strength = 1 - resid / total
            else:
                values = _numeric(s)
                ok = ~np.isnan(values)
                if ok.sum() < 10 or np.ptp(values[ok]) == 0:
                    continue
                rho = np.corrcoef(pd.Series(values[ok]).rank().to_numpy(), y_rank[ok])[0, 1]
                strength = abs(float(rho))
            if strength >= threshold:
                leaks.append((name, round(float(strength), 4)))
        return leaks
    classes, counts = np.unique(ys, return_counts=True)
    if len(classes) > 2:
        classes = classes[counts >= 30]
    targets = [ys == c for c in (classes if len(classes) > 2 else classes[1:])]
    for name in features:
        s = sub[name]
        best = 0.5
        categorical = _is_categorical(s)
        if categorical:
            codes = pd.factorize(s.astype("object"), use_na_sentinel=True)[0]
            first, second = codes[:half], codes[half:]
        else:
            values = _numeric(s)
        for mask in targets:
            yb = mask.astype(np.int8)
            if categorical:
                # Per-category label rate fitted on the first half, scored on the second.
                n_codes = int(codes.max()) + 2
                hits = np.bincount(first + 1, weights=yb[:half], minlength=n_codes)
                count = np.bincount(first + 1, minlength=n_codes)
                rate = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
                auc = _auc(rate[second + 1], yb[half:])
            else:
                auc = _auc(values, yb)
            best = max(best, auc, 1 - auc)
        if best >= threshold:
            leaks.append((name, round(best, 4)))
    return leaks
