"""Successive halving: search configurations start on a quarter of the rows and only the
promising ones go on to all of them, so fewer full-budget trials run for as many ideas,
and the model is still never below the plain default."""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from tenfold.auto_learner import AutoLearner
from tenfold.auto_learner._search import _promote


def test_a_rung_score_is_promoted_only_in_the_top_third_so_far() -> None:
    assert _promote([0.7], 3)  # the first of a rung always goes on
    assert not _promote([0.7, 0.6], 3)
    assert _promote([0.7, 0.6, 0.8], 3)
    assert _promote([0.7, 0.6, 0.8, 0.75], 3)  # top 2 of 4
    assert not _promote([0.7, 0.6, 0.8, 0.75, 0.65], 3)


@pytest.mark.slow
def test_halving_trains_fewer_full_trials_and_stays_above_the_default() -> None:
    x, y = make_classification(
        24_000, 20, n_informative=8, flip_y=0.05, class_sep=0.6, random_state=3
    )
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    df["target"] = y
    train, test = df.iloc[:18_000].reset_index(drop=True), df.iloc[18_000:]
    features = [c for c in df.columns if c != "target"]
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # A trial count, not the clock, bounds both searches (the budget is never
        # reached), so a loaded machine runs the same trials.
        for halving in (True, False):
            runs[halving] = AutoLearner().fit(
                train,
                "target",
                budget_s=900.0,
                seed=3,
                halving=halving,
                max_trials=10,
                families=("lgbm",),
            )
        plain = lgb.LGBMClassifier(verbose=-1, n_jobs=1).fit(train[features], train["target"])
    with_h, without = runs[True], runs[False]
    assert len(with_h.trials) == len(without.trials) == 10
    rung = [t for t in with_h.trials if t.partial]
    full = [t for t in with_h.trials if not t.partial]
    assert rung and all(t.rows < 0.3 * full[0].rows for t in rung)
    # Every configuration the search proposed started on the rung; not all went on.
    promoted = [t for t in with_h.trials if t.source == "promoted"]
    assert 0 < len(promoted) < len(rung)
    assert len(full) < len(without.trials)
    assert not with_h.best.partial
    # The winner is validated on all the rows: never below the plain default's trial.
    default = next(t for t in with_h.trials if t.source == "default")
    assert with_h.validation_score >= default.score
    yt = test["target"].to_numpy()
    ours = with_h.model.predict_proba(test)[:, 1]
    theirs = plain.predict_proba(test[features])[:, 1]
    rng = np.random.default_rng(3)
    diffs = []
    for _ in range(200):
        idx = rng.integers(0, len(yt), len(yt))
        diffs.append(roc_auc_score(yt[idx], ours[idx]) - roc_auc_score(yt[idx], theirs[idx]))
    assert float(np.quantile(diffs, 0.975)) >= 0, (
        roc_auc_score(yt, ours),
        roc_auc_score(yt, theirs),
    )
