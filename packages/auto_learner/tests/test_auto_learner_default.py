"""Never worse than the default: on seeded tasks of every kind, the learner's holdout score is
not below the plain LightGBM default's by more than a paired bootstrap interval allows."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from tenfold.auto_learner import AutoLearner, synthetic


def _categorical_heavy(rows: int, seed: int, kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"c{i}": rng.integers(0, 30, rows) for i in range(5)})
    effects = [rng.normal(size=30) for _ in range(5)]
    score = sum(effects[i][df[f"c{i}"]] for i in range(5)) + rng.normal(scale=1.0, size=rows)
    score = score + 0.5 * rng.normal(size=rows)
    for i in range(5):
        df[f"c{i}"] = pd.Categorical(df[f"c{i}"].map(lambda v: f"k{v}"))
    df["n0"] = rng.normal(size=rows)
    if kind == "regression":
        df["target"] = score
    else:
        df["target"] = (score > np.median(score)).astype(int)
    return df


def _numeric(rows: int, seed: int, kind: str) -> pd.DataFrame:
    if kind == "multiclass":
        return synthetic(rows, features=8, classes=4, seed=seed).drop(columns=["t"])
    df = synthetic(rows, features=8, seed=seed).drop(columns=["t", "target"])
    rng = np.random.default_rng(seed)
    score = df["f0"] * 1.5 - df["f1"] * df["f2"] + np.sin(3 * df["f3"]) + rng.normal(size=rows)
    df["target"] = score if kind == "regression" else (score > 0).astype(int)
    return df


Metric = Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any]], float]


def _metric(kind: str) -> Metric:
    """Higher is better for every kind (negated losses)."""
    if kind == "binary":
        return lambda y, p: float(roc_auc_score(y, p[:, 1]))
    if kind == "multiclass":
        return lambda y, p: -float(log_loss(y, np.clip(p, 1e-15, 1), labels=[0, 1, 2, 3]))
    return lambda y, p: -float(np.sqrt(np.mean((y - p) ** 2)))


CASES = [
    ("binary", _numeric, 1),
    ("binary", _categorical_heavy, 2),
    ("multiclass", _numeric, 3),
    ("regression", _numeric, 4),
    ("regression", _categorical_heavy, 5),
]


@pytest.mark.parametrize(("kind", "make", "seed"), CASES)
def test_holdout_score_is_never_below_the_plain_default(
    kind: str, make: Callable[[int, int, str], pd.DataFrame], seed: int
) -> None:
    df = make(3_000, seed, kind)
    train, test = df.iloc[:2_000].reset_index(drop=True), df.iloc[2_000:].reset_index(drop=True)
    features = [c for c in df.columns if c != "target"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = AutoLearner().fit(train, "target", budget_s=5.0, seed=seed)
        plain: Any = (
            lgb.LGBMRegressor(verbose=-1, n_jobs=1)
            if kind == "regression"
            else lgb.LGBMClassifier(verbose=-1, n_jobs=1)
        )
        plain.fit(train[features], train["target"])
    y = test["target"].to_numpy()
    if kind == "regression":
        ours, default = result.model.predict(test), plain.predict(test[features])
    else:
        ours, default = result.model.predict_proba(test), plain.predict_proba(test[features])
    assert result.task == kind
    metric = _metric(kind)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(200):
        idx = rng.integers(0, len(y), len(y))
        if kind != "regression" and len(np.unique(y[idx])) < len(np.unique(y)):
            continue
        diffs.append(metric(y[idx], ours[idx]) - metric(y[idx], default[idx]))
    upper = float(np.quantile(diffs, 0.975))
    # Ours may be level with the default; the whole 95% interval below zero is a loss.
    assert upper >= 0, (kind, metric(y, ours), metric(y, default), np.quantile(diffs, 0.025))


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_a_budget_spent_before_the_search_returns_the_plain_default_itself(kind: str) -> None:
    """The floor is built, not timed: with no time left after the plain LightGBM default
    (as on a machine too loaded to run anything else), the model is that default,
    trained on every row for its own 100 rounds, exactly as a user would train it."""
    df = _numeric(3_000, 7, kind)
    features = [c for c in df.columns if c != "target"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = AutoLearner().fit(
            df, "target", budget_s=0.01, seed=7, families=("lgbm",), holdout_frac=0.0
        )
        plain: Any = (
            lgb.LGBMRegressor(verbose=-1, n_jobs=1)
            if kind == "regression"
            else lgb.LGBMClassifier(verbose=-1, n_jobs=1)
        )
        plain.fit(df[features], df["target"])
    assert [t.source for t in result.trials] == ["default"]
    assert result.refit
    if kind == "regression":
        ours, default = result.model.predict(df), plain.predict(df[features])
    else:
        ours, default = result.model.predict_proba(df), plain.predict_proba(df[features])
    np.testing.assert_allclose(np.asarray(ours, dtype=float), default, atol=1e-6)
