"""The online track: no label is used before its delay has elapsed, and the per-row blend learns."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tenfold.auto_learner import BudgetError, OnlineLearner

ROWS_PER_HOUR = 20
HOURS = 200


def _hourly_coin_stream(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose label is one coin per hour, and features that say nothing about it.

    Only the labels of the same hour predict a row; so a learner that waits a full
    hour for each label can do no better than chance, and one that peeks can.
    """
    rng = np.random.default_rng(seed)
    coins = rng.integers(0, 2, HOURS)
    t = np.repeat(np.arange(HOURS, dtype=float), ROWS_PER_HOUR)
    y = np.repeat(coins, ROWS_PER_HOUR)
    x = rng.normal(size=(len(t), 4)).astype(np.float32)
    x[:, 3] = rng.integers(0, 5, len(t))  # a categorical column, also noise
    return t, x, y


def _noise_booster(seed: int) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    x[:, 3] = rng.integers(0, 5, 500)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, rng.integers(0, 2, 500)), num_boost_round=5)


def _run(
    delay: float, seed: int, blend: bool = True
) -> tuple[float, list[tuple[int, float, float]]]:
    t, x, y = _hourly_coin_stream(seed)
    seen: list[tuple[int, float, float]] = []
    predicted = 0

    def audit(index: int, row_time: float, now: float) -> None:
        # The row was predicted already (its index is below the count of predictions
        # made so far), and its label is used no earlier than its time plus the delay.
        assert index < predicted
        seen.append((index, row_time, now))

    learner = OnlineLearner(
        _noise_booster(seed),
        {"objective": "binary"},
        label_delay=delay,
        background=False,
        categorical=[3],
        blend=blend,
        update_every=2_000,
        on_learn=audit,
    )
    proba = []
    for i in range(0, len(t), 7):  # batches that straddle hour boundaries
        predicted = i + len(t[i : i + 7])
        proba.append(learner.process(t[i : i + 7], x[i : i + 7], y[i : i + 7]))
    learner.finish()
    p = np.concatenate(proba)
    assert learner.stats.probabilities == pytest.approx(p.tolist())
    return float(roc_auc_score(y, p)), seen


@pytest.mark.parametrize("seed", [0, 1])
def test_a_label_is_never_used_before_its_delay(seed: int) -> None:
    auc, seen = _run(1.0, seed)
    assert len(seen) == HOURS * ROWS_PER_HOUR
    assert all(now - row_time >= 1.0 for _, row_time, now in seen)
    # Hour h's coin is revealed only at h + 1, after every row of hour h was
    # predicted: nothing to learn from, so chance level (a peek would give ~1.0).
    assert 0.35 < auc < 0.65


@pytest.mark.parametrize("seed", [0, 1])
def test_immediate_labels_are_learned_row_by_row(seed: int) -> None:
    # The same stream with no delay: after an hour's first label, the blend's
    # decayed rates know the coin for the rest of the hour.
    auc, seen = _run(0.0, seed)
    assert all(now >= row_time for _, row_time, now in seen)
    assert auc > 0.85
    # The booster alone (updated in batches) cannot follow the hourly coin.
    booster_auc, _ = _run(0.0, seed, blend=False)
    assert booster_auc < auc - 0.2


def test_the_end_of_stream_releases_the_rest_and_tables_stay_bounded() -> None:
    t, x, y = _hourly_coin_stream(3)
    learner = OnlineLearner(
        _noise_booster(3), {}, label_delay=5.0, background=False, categorical=[3]
    )
    learner.process(t, x, y)
    assert learner.stats.labelled == int((t + 5.0 <= t[-1]).sum())
    learner.finish()
    assert learner.stats.labelled == len(t)
    assert learner.blend is not None
    # One cell per (statistic, key): 4 overall rates, 2 timescales x 5 categories.
    assert learner.blend.table_entries == 4 + 2 * 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(BudgetError, match="timescales"):
        OnlineLearner(_noise_booster(0), {}, timescales=(0.0,))
    with pytest.raises(BudgetError, match="column index 9 is out of range"):
        OnlineLearner(_noise_booster(0), {}, categorical=[3], key_groups=[(3, 9)])
    rng = np.random.default_rng(0)
    three = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1},
        lgb.Dataset(rng.normal(size=(300, 4)), rng.integers(0, 3, 300)),
        num_boost_round=2,
    )
    with pytest.raises(BudgetError, match="two-class"):
        OnlineLearner(three, {})


@pytest.mark.parametrize(("delay", "jitter"), [(0.0, 0.0), (1.0, 0.0), (2.5, 0.0), (1.0, 0.7)])
def test_batches_predict_as_rows_sent_one_at_a_time(delay: float, jitter: float) -> None:
    # The blend takes a batch in one numpy pass, yet each row must see exactly the
    # labels due before it, as when rows come one at a time. The booster is held
    # fixed (no updates, no retrains), since it scores a batch with the model
    # current at the batch's start; what remains may differ only by rounding.
    t, x, y = _hourly_coin_stream(4)
    n = 1_500
    t, x, y = t[:n], x[:n], y[:n]
    # Jittered times arrive out of order, so labels fall due out of queue order too.
    t = t + np.random.default_rng(5).uniform(0.0, jitter, n)

    def run(batch: int) -> tuple[np.ndarray, OnlineLearner]:
        learner = OnlineLearner(
            _noise_booster(4),
            {"objective": "binary"},
            label_delay=delay,
            background=False,
            categorical=[3],
            key_groups=[(2, 3)],  # a float column in a group: many keys, most seen once
            update_every=10**9,
            retrain_gap=10**19,
        )
        out = [
            learner.process(t[i : i + batch], x[i : i + batch], y[i : i + batch])
            for i in range(0, n, batch)
        ]
        learner.finish()
        return np.concatenate(out), learner

    one, single = run(1)
    for batch in (7, 256, n):
        batched, learner = run(batch)
        np.testing.assert_allclose(batched, one, rtol=1e-9, atol=1e-12)
        assert learner.stats.labelled == single.stats.labelled == n
        assert learner.stats.drifts == single.stats.drifts
        assert learner.stats.probabilities == pytest.approx(single.stats.probabilities, rel=1e-9)
