"""Class imbalance: balanced class weights are a search option when the smallest class is
small, kept where validation on the user's metric says they help."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import balanced_accuracy_score, f1_score

from tenfold.auto_learner import AutoLearner
from tenfold.auto_learner._trials import balanced_weights


def test_balanced_weights_give_every_class_the_same_total() -> None:
    y = np.array([0] * 90 + [1] * 9 + [2] * 1)
    w = balanced_weights(y, 4)  # class 3 is absent: it takes no share
    totals = [w[y == c].sum() for c in range(3)]
    np.testing.assert_allclose(totals, [100 / 3] * 3)
    assert w.mean() == 1.0


def _imbalanced(rows: int, seed: int, minority: float) -> pd.DataFrame:
    x, y = make_classification(
        rows,
        12,
        n_informative=5,
        weights=[1 - minority],
        flip_y=0.01,
        class_sep=0.8,
        random_state=seed,
    )
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(12)])
    df["target"] = y
    return df


@pytest.mark.slow
def test_class_weights_raise_balanced_accuracy_and_f1_on_a_5_percent_minority() -> None:
    df = _imbalanced(8_000, 5, 0.05)
    train, test = df.iloc[:6_000], df.iloc[6_000:]
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # A trial count bounds both searches, not the clock: the same trials under load.
        for cw in ("auto", "none"):
            result = AutoLearner().fit(
                train,
                "target",
                budget_s=600.0,
                seed=5,
                metric="balanced_accuracy",
                class_weight=cw,
                max_trials=5,
                families=("lgbm",),
            )
            label = result.model.predict_proba(test).argmax(axis=1)
            scores[cw] = (
                balanced_accuracy_score(test["target"], label),
                f1_score(test["target"], label),
                result,
            )
    weighted, plain = scores["auto"], scores["none"]
    assert any(t.source == "class weights" for t in weighted[2].trials)
    assert not any(t.config.get("class_weight") for t in plain[2].trials)
    assert weighted[2].best.config.get("class_weight") == "balanced"
    assert weighted[0] > plain[0] + 0.02, (weighted[0], plain[0])
    assert weighted[1] > plain[1], (weighted[1], plain[1])


def test_even_classes_get_no_class_weight_trial() -> None:
    df = _imbalanced(2_000, 6, 0.45)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = AutoLearner().fit(df, "target", budget_s=600.0, seed=6, max_trials=4)
    assert not any(t.config.get("class_weight") for t in result.trials)
