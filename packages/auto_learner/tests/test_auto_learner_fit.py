from __future__ import annotations

import json
import math
import subprocess
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.auto_learner import (
    Adwin,
    AutoLearner,
    BudgetError,
    DataError,
    Model,
    ModelFileError,
    ModelServer,
    OnlineLearner,
    SchemaMismatch,
    flights,
    synthetic,
)
from tenfold.auto_learner._store import RunStore, adapt, meta_features
from tenfold.core.testing import run_cli


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return synthetic(3_000, features=6, seed=1)


@pytest.fixture(scope="module")
def fitted(small: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("store") / "runs.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoLearner(store=store).fit(small, "target", time="t", budget_s=2, seed=0), store


def test_fit_beats_chance_and_reports_the_gap(fitted) -> None:
    result, _ = fitted
    assert result.best.family in {"lgbm", "hist_gb", "linear"}
    assert result.trials[0].source == "default"  # the plain default is always a candidate
    assert result.validation_score > 0.7
    assert result.holdout_score is not None and result.holdout_score > 0.7
    assert result.gap == pytest.approx(result.validation_score - result.holdout_score, abs=1e-3)
    assert any("split by time (t)" in w for w in result.warnings)


def test_time_split_is_never_shuffled(small: pd.DataFrame) -> None:
    tr, va, ho, _ = AutoLearner._split(small, "t", None, 0.2, 0.1, 0)
    assert small["t"].to_numpy()[tr].max() < small["t"].to_numpy()[va].min()
    assert small["t"].to_numpy()[va].max() < small["t"].to_numpy()[ho].min()


def test_warm_start_uses_the_store(fitted, small: pd.DataFrame) -> None:
    _, store = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = AutoLearner(store=store).fit(small.iloc[:2_000], "target", time="t", budget_s=1.5)
    sources = [t.source for t in again.trials]
    # The nearest run's best configuration first, when it stored one (it beat its
    # default there), then the plain default, which always runs.
    assert "default" in sources[:2]
    assert sources[0] == "warm start" or fitted[0].best.source == "default"


def test_predictions_are_the_same_through_every_path(
    fitted, small: pd.DataFrame, tmp_path: Path
) -> None:
    model = fitted[0].model
    frame_p = model.predict_proba(small.head(50))
    rows = small.head(50).drop(columns=["target", "t"]).to_dict("records")
    rows_p = model.compiled().predict_proba(model.schema.encode_rows(rows))
    assert np.allclose(frame_p, rows_p, atol=1e-6)
    path = tmp_path / "m.tfm"
    model.save(path)
    assert np.allclose(Model.load(path).predict_proba(small.head(50)), frame_p, atol=1e-6)
    one = model.compiled().predict_one(model.encode(small.head(1))[0])
    assert one == pytest.approx(frame_p[0, 1], abs=1e-6)


def test_unseen_categories_and_schema_changes(fitted, small: pd.DataFrame) -> None:
    model = fitted[0].model
    probe = small.head(5).copy()
    probe["cat"] = pd.Categorical(["never-seen"] * 5)
    assert model.schema.unseen_categories(probe) == {"cat": 5}
    assert model.predict_proba(probe).shape == (5, 2)  # unseen -> missing, still predicted
    with pytest.raises(SchemaMismatch, match="lacks column"):
        model.predict_proba(small.head(5).drop(columns=["f0"]))
    retyped = small.head(5).copy()
    retyped["f1"] = "text"
    with pytest.raises(SchemaMismatch, match="'f1' was numeric in training"):
        model.predict_proba(retyped)
    with pytest.raises(SchemaMismatch, match="must be a number"):
        model.schema.encode_rows([{**small.head(1).to_dict("records")[0], "f2": "x"}])


def test_guards_refuse_bad_labels(small: pd.DataFrame) -> None:
    learner = AutoLearner()
    nan_labels = small.astype({"target": "float"}).copy()
    nan_labels.loc[3, "target"] = np.nan
    with pytest.raises(DataError, match="has 1 missing value"):
        learner.fit(nan_labels, "target", budget_s=1)
    one_class = small.assign(target=1)
    with pytest.raises(DataError, match="single class"):
        learner.fit(one_class, "target", budget_s=1)
    with pytest.raises(DataError, match="target column 'nope' is not in the data"):
        learner.fit(small, "nope", budget_s=1)
    with pytest.raises(DataError, match="at least 50 rows"):
        learner.fit(small.head(10), "target", budget_s=1)
    for budget in (0, -1, math.nan, math.inf):
        with pytest.raises(BudgetError, match="positive number of seconds"):
            learner.fit(small, "target", budget_s=budget)


def test_inf_features_by_policy(small: pd.DataFrame) -> None:
    bad = small.copy()
    bad.loc[5, "f3"] = np.inf
    with pytest.raises(DataError, match="infinite values in column"):
        AutoLearner().fit(bad, "target", budget_s=1, inf_policy="refuse")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = AutoLearner().fit(bad, "target", budget_s=1)
    assert result.validation_score > 0.6


def test_a_column_identical_to_the_label_is_dropped(small: pd.DataFrame) -> None:
    leaky = small.assign(copy_of_label=small["target"] * 3 + 1)
    with pytest.warns(UserWarning, match="'copy_of_label' predicts 'target' alone"):
        result = AutoLearner().fit(leaky, "target", time="t", budget_s=1)
    assert result.dropped_columns == ["copy_of_label"]
    assert "copy_of_label" not in result.model.schema.names
    with pytest.warns(UserWarning):
        kept = AutoLearner().fit(leaky, "target", time="t", budget_s=1, leakage="warn")
    assert "copy_of_label" in kept.model.schema.names


def test_multiclass() -> None:
    df = synthetic(2_000, features=5, classes=3, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = AutoLearner().fit(df, "target", time="t", budget_s=1.5)
    assert result.task == "multiclass" and result.metric == "log_loss"
    assert set(result.holdout_metrics) == {"log_loss", "accuracy", "macro_f1", "balanced_accuracy"}
    assert result.model.predict_proba(df.head(7)).shape == (7, 3)
    assert result.validation_score < np.log(3)  # better than the uniform guess


def test_flights_drop_label_leaks_and_join_weather() -> None:
    df = flights()
    assert len(df) > 300_000
    assert {"temp", "wind_speed", "visib"} <= set(df.columns)  # the weather join
    assert not {"air_time", "arr_time", "arr_delay"} & set(df.columns)
    leaky = flights(keep_leaky=True).iloc[:20_000]
    with pytest.warns(UserWarning, match="'arr_delay' predicts 'late' alone"):
        result = AutoLearner().fit(leaky, "late", time="time_hour", budget_s=1)
    assert "arr_delay" in result.dropped_columns


def test_model_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="model file not found"):
        Model.load(tmp_path / "missing.tfm")
    (tmp_path / "junk.tfm").write_text("{not json")
    with pytest.raises(ModelFileError, match="is not a tenfold model file"):
        Model.load(tmp_path / "junk.tfm")


def test_adwin_finds_a_change_and_stays_quiet_without_one() -> None:
    rng = np.random.default_rng(0)
    quiet = Adwin()
    assert not any(quiet.update(float(v)) for v in rng.random(5_000) < 0.2)
    noisy = Adwin()
    stream = np.concatenate([rng.random(2_000) < 0.1, rng.random(2_000) < 0.6]).astype(float)
    hits = [i for i, v in enumerate(stream) if noisy.update(float(v))]
    assert hits and 2_000 <= hits[0] < 2_600
    with pytest.raises(BudgetError):
        Adwin(delta=2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=300))
def test_adwin_window_mean_is_the_mean_of_what_it_keeps(values: list[float]) -> None:
    a = Adwin(check_every=8, min_side=5)
    for v in values:
        a.update(v)
    assert a.mean == pytest.approx(float(np.mean(list(a.window))))
    assert len(a.window) <= len(values)


def test_online_learner_respects_the_label_delay(fitted, small: pd.DataFrame) -> None:
    model = fitted[0].model
    x = model.encode(small)
    t = small["t"].to_numpy(dtype=float)
    y = small["target"].to_numpy()
    learner = OnlineLearner(
        model.booster, model.config["params"], label_delay=100.0, background=False, update_every=500
    )
    learner.process(t[:50], x[:50], y[:50])
    assert learner.stats.labelled == 0  # no label is due yet
    learner.process(t[50:200], x[50:200], y[50:200])
    assert learner.stats.labelled == int((t[:200] + 100 <= t[199]).sum())
    learner.process(t[200:], x[200:], y[200:])
    learner.finish()
    assert learner.stats.labelled == len(small)
    assert learner.stats.updates >= 1
    with pytest.raises(BudgetError):
        OnlineLearner(model.booster, {}, label_delay=-1)
    with pytest.raises(BudgetError, match="needs a boosted model"):
        OnlineLearner(None, {})


def test_http_server(fitted, small: pd.DataFrame) -> None:
    model = fitted[0].model
    server = ModelServer(model).start()
    try:
        rows = small.head(3).drop(columns=["target", "t"]).to_dict("records")
        rows = [
            {k: (str(v) if k in ("cat", "domain") else float(v)) for k, v in r.items()}
            for r in rows
        ]
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/predict",
            data=json.dumps({"rows": rows}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = json.loads(resp.read())
        assert len(body["probabilities"]) == 3
        bad = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/predict", data=b'{"rows": [{"f0": 1}]}', method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad, timeout=5)
        assert info.value.code == 400 and "lacks column" in info.value.read().decode()
    finally:
        server.stop()


def test_cli_fit_predict_report(tmp_path: Path, small: pd.DataFrame) -> None:
    data = tmp_path / "d.csv"
    small.to_csv(data, index=False)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("learn", *args, cwd=tmp_path)

    r = cli(
        "fit",
        str(data),
        "--target",
        "target",
        "--time",
        "t",
        "--budget",
        "1.5",
        "--out",
        "m.tfm",
        "--json",
        "--report",
        "r.html",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["validation_holdout_gap"] is not None
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 2 and "best validation roc_auc so far" in page
    p = cli("predict", "m.tfm", str(data), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["rows"] == len(small)
    assert cli("report", "m.tfm", "--out", "again.html").returncode == 0
    bad = cli("fit", str(tmp_path / "nope.csv"), "--target", "x")
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == f"tenfold: error: data file not found: {tmp_path / 'nope.csv'}"
    )
    bad = cli("fit", str(data), "--target", "target", "--budget", "0")
    assert (
        bad.returncode == 2
        and "positive number of seconds" in bad.stderr
        and "Traceback" not in bad.stderr
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 50))
def test_search_neighbours_stay_in_the_space(seed: int, step: int) -> None:
    from tenfold.auto_learner._search import DEFAULT_LGBM

    rng = np.random.default_rng(seed)
    cfg = dict(DEFAULT_LGBM)
    for i in range(step % 8 + 1):
        cfg = AutoLearner._neighbours(cfg, rng, step + i)
    assert 4 <= cfg["num_leaves"] <= 1024
    assert 0.01 <= cfg["learning_rate"] <= 0.3
    assert 0.3 <= cfg["feature_fraction"] <= 1.0


def test_stored_configurations_are_scaled_to_the_new_rows() -> None:
    stored = {
        "family": "lgbm",
        "num_leaves": 124,
        "learning_rate": 0.03,
        "min_child_samples": 11,
        "rounds": 31,
        "train_rows": 16_000,
    }
    family, cfg = adapt(stored, 4_000)
    # Leaves per row kept (124 leaves on 16K rows: 31 on 4K); at least LightGBM's 100
    # rounds where early stopping kept 31 on a noisy validation.
    assert family == "lgbm"
    assert cfg == {
        "num_leaves": 31,
        "learning_rate": 0.03,
        "min_child_samples": 11,
        "n_estimators": 100,
    }
    # The ratio is clipped (a 64x smaller domain: a quarter), and other families adapt too.
    assert adapt(stored, 250)[1]["num_leaves"] == 31
    hist = {"family": "hist_gb", "max_leaf_nodes": 31, "max_iter": 500, "rounds": 300}
    assert adapt({**hist, "train_rows": 2_000}, 8_000) == (
        "hist_gb",
        {"max_leaf_nodes": 124, "max_iter": 600},
    )
    # A row written before families were stored is LightGBM's, unscaled.
    assert adapt({"num_leaves": 62}, 1_000) == ("lgbm", {"num_leaves": 62})
    # XGBoost grows by depth: a quarter of the rows, two levels less (its 2**depth
    # leaves a quarter as many); within 2..12.
    xgb = {"family": "xgboost", "max_depth": 6, "learning_rate": 0.05, "train_rows": 16_000}
    assert adapt(xgb, 4_000) == ("xgboost", {"max_depth": 4, "learning_rate": 0.05})
    assert adapt({**xgb, "max_depth": 3}, 1_000)[1]["max_depth"] == 2


def test_the_store_suggests_the_best_of_each_near_run_first(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    meta = {k: 1.0 for k in ("log_rows", "log_features", "frac_categorical", "classes")}
    meta |= {"class_entropy": 1.0, "missing": 0.0}
    for domain, leaves, margin, family in (
        ("a", 1, 0.02, "hist_gb"),
        ("a", 2, 0.01, "lgbm"),
        ("b", 3, 0.03, "lgbm"),
    ):
        store.record("d", domain, meta, {"family": family, "num_leaves": leaves}, margin)
    store.record("d", "c", {**meta, "log_rows": 3.0}, {"family": "xgboost"}, 0.5)
    # Each run's best (largest margin over its default) first, nearest run first;
    # then each run's second best.
    assert store.suggest(meta, k=4) == [
        {"family": "lgbm", "num_leaves": 3},
        {"family": "hist_gb", "num_leaves": 1},
        {"family": "xgboost"},
        {"family": "lgbm", "num_leaves": 2},
    ]
    assert store.suggest(meta, k=2, exclude_domain="b") == [
        {"family": "hist_gb", "num_leaves": 1},
        {"family": "xgboost"},
    ]
    store.close()


def test_the_store_offers_each_family_the_winners_leave_out(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    meta = {k: 1.0 for k in ("log_rows", "log_features", "frac_categorical", "classes")}
    meta |= {"class_entropy": 1.0, "missing": 0.0}
    far = {**meta, "log_rows": 3.0}
    for domain, m, config, margin in (
        ("a", meta, {"family": "xgboost", "max_depth": 5}, 0.05),
        ("a", meta, {"family": "xgboost", "max_depth": 6}, 0.04),
        ("a", meta, {"family": "hist_gb", "max_leaf_nodes": 15}, 0.02),
        ("a", meta, {"family": "hist_gb", "max_leaf_nodes": 31}, 0.01),
        ("b", far, {"family": "lgbm", "num_leaves": 7}, 0.09),
        ("b", far, {"family": "hist_gb", "max_leaf_nodes": 4}, 0.08),
    ):
        store.record("d", domain, m, config, margin)
    assert store.suggest(meta, k=2) == [
        {"family": "xgboost", "max_depth": 5},
        {"family": "lgbm", "num_leaves": 7},
    ]
    # The families those leave out, each at its best on the nearest run that has it.
    assert store.family_bests(meta, {"xgboost", "lgbm"}) == [
        {"family": "hist_gb", "max_leaf_nodes": 15}
    ]
    assert store.family_bests(meta, {"xgboost"}, exclude_domain="a") == [
        {"family": "lgbm", "num_leaves": 7},
        {"family": "hist_gb", "max_leaf_nodes": 4},
    ]
    # One configuration stored by two runs (other rounds and rows) is one guess.
    store.record("d", "c", meta, {"family": "xgboost", "max_depth": 5, "rounds": 9}, 0.06)
    assert store.suggest(meta, k=2) == [
        {"family": "xgboost", "max_depth": 5, "rounds": 9},
        {"family": "lgbm", "num_leaves": 7},
    ]
    store.close()


def test_weak_transfer_tries_the_other_families(small: pd.DataFrame, tmp_path: Path) -> None:
    """When no stored winner beats the default here by half its margin there, the warm
    start tries the family they leave out, at its best on the same run; else not."""
    meta = {k: 1.0 for k in ("log_rows", "log_features", "frac_categorical", "classes")}
    meta |= {"class_entropy": 1.0, "missing": 0.0}
    # More rows a leaf than the data has: one leaf, a constant score, below any default.
    weak = [
        {"family": "lgbm", "num_leaves": leaves, "min_child_samples": 100_000}
        for leaves in (31, 30, 29)
    ]
    hist = {"family": "hist_gb", "learning_rate": 0.1, "max_leaf_nodes": 15}
    # A configuration the search reaches on this data (0.914 against the default's 0.911).
    near = {"family": "lgbm", "num_leaves": 30, "learning_rate": 0.06071}
    near |= {"min_child_samples": 35, "feature_fraction": 0.95684, "lambda_l2": 1.90731}

    def warm_trials(winners: list[tuple[dict[str, object], float]]) -> list[tuple[str, float]]:
        path = tmp_path / f"runs-{len(list(tmp_path.iterdir()))}.sqlite"
        store = RunStore(path)
        for config, margin in [*winners, (hist, 0.001)]:
            store.record("d", "a", meta, config, margin)
        store.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = AutoLearner(store=path).fit(
                small, "target", time="t", budget_s=30, seed=0, max_trials=7
            )
        floor = next(t for t in result.trials if t.source == "default" and t.family == "lgbm")
        assert result.validation_score >= floor.score
        return [(t.family, t.score) for t in result.trials if t.source == "warm start"]

    # The three winners (all LightGBM) lose to the default: HistGB's best is tried.
    tried = warm_trials([(w, 0.05 - 0.01 * i) for i, w in enumerate(weak)])
    assert [f for f, _ in tried] == ["lgbm", "lgbm", "lgbm", "hist_gb"]
    assert all(score == 0.5 for _, score in tried[:3])
    # The first winner beats the default here by 0.003, against 0.004 where it was
    # stored (more than half of it): the transfer holds, the fallback is not tried.
    tried = warm_trials([(near, 0.004), (weak[0], 0.003), (weak[1], 0.002)])
    assert [f for f, _ in tried] == ["lgbm", "lgbm", "lgbm"]
    assert tried[0][1] > 0.9
    # The same gain against a margin of 0.05 there: a tie within the validation's
    # noise, so the fallback is tried.
    tried = warm_trials([(near, 0.05), (weak[0], 0.04), (weak[1], 0.03)])
    assert [f for f, _ in tried] == ["lgbm", "lgbm", "lgbm", "hist_gb"]


def test_a_fit_stores_only_what_beat_its_default(small: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = AutoLearner(store=path).fit(
            small, "target", time="t", budget_s=30, seed=1, max_trials=14
        )
    store = RunStore(path)
    try:
        rows = store.count()
        stored = store.suggest(meta_features(np.zeros((10, 2)), np.array([0, 1] * 5), []), k=99)
    finally:
        store.close()
    floor = next(t for t in result.trials if t.source == "default" and t.family == "lgbm")
    winners = [
        t for t in result.trials if not t.partial and t.family != "linear" and t.score > floor.score
    ]
    # Up to three distinct configurations of each family: a neighbourhood, not one
    # winner (LightGBM's rounds cap is not part of what is stored).
    distinct = {
        (t.family, json.dumps({k: v for k, v in t.config.items() if k != "n_estimators"}))
        for t in winners
    }
    per_family = [sum(f == family for f, _ in distinct) for family in {f for f, _ in distinct}]
    assert rows == sum(min(3, n) for n in per_family)
    assert all(
        c["family"] in ("lgbm", "hist_gb", "xgboost") and c["train_rows"] > 0 for c in stored
    )
