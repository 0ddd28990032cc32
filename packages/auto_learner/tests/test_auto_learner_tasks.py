"""Every tabular task, messy columns, serving rows, and the faults issue 22 found (each failed before)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.auto_learner import (
    AutoLearner,
    BudgetError,
    DataError,
    Model,
    OnlineLearner,
    SchemaMismatch,
    synthetic,
)
from tenfold.auto_learner._frame import Schema
from tenfold.auto_learner._guards import detect_task
from tenfold.core.testing import run_cli


def _quiet_fit(df: pd.DataFrame, target: str, **kw: object):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoLearner().fit(df, target, **kw)  # type: ignore[arg-type]


def _regression(rows: int = 2_000, seed: int = 0) -> pd.DataFrame:
    df = synthetic(rows, features=6, seed=seed).drop(columns=["target"])
    rng = np.random.default_rng(seed)
    df["y"] = 3 * df["f0"] - df["f1"] ** 2 + rng.normal(size=rows)
    return df


def test_a_float_target_is_regression_never_classification() -> None:
    df = _regression()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = AutoLearner().fit(df, "y", time="t", budget_s=2)
    assert result.task == "regression" and result.metric == "rmse"
    assert result.model.classes == []
    assert result.dropped_columns == []  # nothing taken for a per-class "leak"
    assert set(result.holdout_metrics) == {"rmse", "mae", "r2"}
    assert all(np.isfinite(v) for v in result.holdout_metrics.values())
    assert result.holdout_metrics["r2"] > 0.5
    assert len(caught) < 5
    assert result.warnings[0].startswith("task regression: target 'y' is numeric")
    values = result.model.predict(df.head(4))
    assert values.dtype == float and values.shape == (4,)


def test_task_detection_and_forcing() -> None:
    many_ints = pd.Series(np.arange(300) % 97)
    assert detect_task(many_ints, "y")[0] == "regression"
    assert detect_task(pd.Series([0, 1, 2] * 50), "y")[0] == "multiclass"
    assert detect_task(pd.Series([0.0, 1.0] * 50), "y")[0] == "binary"
    assert detect_task(pd.Series(["a", "b", "c"] * 9), "y")[0] == "multiclass"
    assert detect_task(many_ints, "y", "multiclass")[0] == "multiclass"
    with pytest.raises(DataError, match="regression needs a numeric target"):
        detect_task(pd.Series(["a", "b"] * 9), "y", "regression")
    with pytest.raises(DataError, match="binary needs exactly 2"):
        detect_task(pd.Series([0, 1, 2] * 9), "y", "binary")
    with pytest.raises(BudgetError, match="task must be one of"):
        detect_task(many_ints, "y", "ranking")
    df = synthetic(600, features=4, classes=3, seed=2)
    forced = _quiet_fit(df, "target", budget_s=1, task="regression")
    assert forced.task == "regression"
    with pytest.raises(BudgetError, match="does not fit a multiclass task"):
        AutoLearner().fit(df, "target", budget_s=1, metric="rmse")


def test_a_class_of_two_rows_neither_crashes_nor_makes_columns_look_leaky() -> None:
    df = synthetic(1_500, features=5, classes=3, seed=4)
    df["target"] = df["target"].astype(int)
    df.loc[[10, 700], "target"] = 9  # a class with two rows
    result = _quiet_fit(df, "target", budget_s=2, families=("hist_gb", "lgbm"))
    assert result.dropped_columns == []
    assert {t.family for t in result.trials} >= {"hist_gb", "lgbm"}
    assert result.model.predict_proba(df.head(3)).shape == (3, 4)


def test_the_leak_guard_sees_pandas_str_columns() -> None:
    df = synthetic(1_500, features=4, seed=5)
    df["label_text"] = df["target"].map({0: "no", 1: "yes"}).astype("str")
    with pytest.warns(UserWarning, match="'label_text' predicts 'target' alone"):
        result = AutoLearner().fit(df, "target", budget_s=1)
    assert "label_text" in result.dropped_columns


def test_multiclass_selects_on_log_loss() -> None:
    df = synthetic(2_000, features=5, classes=4, seed=6)
    result = _quiet_fit(df, "target", time="t", budget_s=3)
    assert result.metric == "log_loss"
    assert result.best.score == min(t.score for t in result.trials)
    assert result.validation_score == result.best.score


@pytest.mark.parametrize("family", ["hist_gb", "linear", "xgboost"])
def test_only_the_families_asked_for_run_and_every_winner_is_refitted(family: str) -> None:
    df = synthetic(1_500, features=5, seed=7)
    result = _quiet_fit(df, "target", time="t", budget_s=4, families=(family,))
    assert {t.family for t in result.trials} == {family}
    assert result.model.family == family
    assert result.refit
    p = result.model.predict_proba(df.head(20))
    assert p.shape == (20, 2) and np.allclose(p.sum(axis=1), 1)
    with pytest.raises(BudgetError, match="families must be some of"):
        AutoLearner().fit(df, "target", budget_s=1, families=("xgb",))


def test_hist_gb_trials_stop_at_the_deadline_between_chunks() -> None:
    df = synthetic(1_000, features=5, seed=8)
    learner = AutoLearner()
    x = df[[f"f{i}" for i in range(5)]].to_numpy(dtype=np.float32)
    y = df["target"].to_numpy()
    cfg = {"max_iter": 500, "learning_rate": 0.01}
    _, _, iters = learner._hist_gb(
        cfg, (x[:800], x[800:]), (y[:800], y[800:]), "binary", 2, [], 0, 0.0, "roc_auc"
    )
    assert iters == 50  # one chunk, then the (past) deadline stops it


def test_messy_columns_are_handled_and_named() -> None:
    rng = np.random.default_rng(9)
    df = synthetic(1_200, features=4, seed=9)
    n = len(df)
    df["all_nan"] = np.nan
    df["all_inf"] = np.inf
    df["constant"] = 7
    df["flag"] = rng.random(n) < 0.5
    df["row_id"] = [f"id-{i:06d}" for i in range(n)]
    df["mixed"] = pd.Series([1, "a", 2.5, None] * (n // 4), dtype=object)
    df["when"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 10**7, n), unit="s"
    )
    df["text_cat"] = pd.Series(rng.choice(["x", "y", "z"], n)).astype("str")
    result = _quiet_fit(df, "target", budget_s=2)
    notes = "\n".join(result.warnings)
    for name, what in (
        ("all_nan", "has no finite value"),
        ("all_inf", "has no finite value"),
        ("constant", "is constant"),
        ("row_id", "is unique on every row"),
        ("mixed", "mixes types"),
    ):
        assert f"column '{name}' {what}" in notes
    assert {"all_nan", "all_inf", "constant", "row_id"} <= set(result.dropped_columns)
    schema = result.model.schema
    assert "when.month" in schema.feature_names and "when.hour" in schema.feature_names
    assert result.model.predict_proba(df.head(5)).shape == (5, 2)
    retyped = df.head(5).assign(when="not a date")
    with pytest.raises(SchemaMismatch, match="'when' was a datetime in training"):
        result.model.predict_proba(retyped)


def test_serving_rows_match_the_frame_path() -> None:
    rng = np.random.default_rng(10)
    n = 400
    df = pd.DataFrame(
        {
            0: rng.normal(size=n),
            "when": pd.Timestamp("2024-03-01")
            + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "code": pd.Categorical(rng.choice([6.0, 7.0, 8.5], n)),
            "maybe": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        }
    )
    schema = Schema.infer(df, list(df.columns))
    frame = schema.encode(df.head(3))
    rows = []
    for r in df.head(3).to_dict("records"):
        rows.append(
            {"0": r[0], "when": r["when"].isoformat(), "code": r["code"], "maybe": r["maybe"]}
        )
    assert np.allclose(schema.encode_rows(rows), frame, equal_nan=True)
    as_stamp = [{**r, "when": df["when"].iloc[i]} for i, r in enumerate(rows)]
    assert np.allclose(schema.encode_rows(as_stamp), frame, equal_nan=True)
    json_like = [
        {**r, "code": int(r["code"]) if float(r["code"]).is_integer() else r["code"]} for r in rows
    ]
    assert np.allclose(schema.encode_rows(json_like), frame, equal_nan=True)
    # A model saved before keys were canonical stored the category as '6.0'.
    old = Schema.from_json(
        {"columns": [{"name": "code", "kind": "categorical", "categories": ["6.0", "7.0"]}]}
    )
    assert old.encode_rows([{"code": 6}, {"code": "7.0"}, {"code": 9}]).tolist()[:2] == [
        [0.0],
        [1.0],
    ]
    missing = schema.encode_rows([{**rows[0], "maybe": pd.NA, "code": None}])
    assert np.isnan(missing[0, -1]) and np.isnan(missing[0, -2])
    with pytest.raises(SchemaMismatch, match="row 0 lacks column 0"):
        schema.encode_rows([{"when": rows[0]["when"]}])
    with pytest.raises(SchemaMismatch, match="lacks column"):
        schema.encode(df.drop(columns=[0]))
    with pytest.raises(SchemaMismatch, match="must be an ISO date-time"):
        schema.encode_rows([{**rows[0], "when": "yesterday"}])


def test_str_paths_for_the_store_and_model_files(tmp_path: Path) -> None:
    df = synthetic(800, features=4, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = AutoLearner(store=str(tmp_path / "runs.sqlite")).fit(df, "target", budget_s=1)
    result.model.save(str(tmp_path / "m.tfm"))
    assert Model.load(str(tmp_path / "m.tfm")).family == result.model.family
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 50)
    with pytest.raises(DataError, match="run store"):
        AutoLearner(store=tmp_path / "junk.sqlite").fit(df, "target", budget_s=1)
    with pytest.raises(BudgetError, match="seed must be"):
        AutoLearner().fit(df, "target", budget_s=1, seed=-1)


def test_online_refuses_rows_of_the_wrong_width() -> None:
    df = synthetic(800, features=4, seed=12)
    model = _quiet_fit(df, "target", budget_s=1, families=("lgbm",)).model
    learner = OnlineLearner.from_model(model, background=False)
    x = model.encode(df.head(10))
    with pytest.raises(SchemaMismatch, match="expected rows of"):
        learner.process(np.arange(10.0), x[:, :-1], np.zeros(10))


def test_more_budget_never_gives_a_worse_validation_score() -> None:
    df = synthetic(2_000, features=6, seed=13)
    short = _quiet_fit(df, "target", time="t", budget_s=1)
    long = _quiet_fit(df, "target", time="t", budget_s=3)
    assert long.validation_score >= short.validation_score - 1e-9
    assert [t.config for t in long.trials[:2]] == [t.config for t in short.trials[:2]]
    curve = long.best_over_time()
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(curve))


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("learn", *args, cwd=tmp_path)


def test_cli_bad_input_gives_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    df = synthetic(300, features=24, seed=14)
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    cases = [
        (["--target", "target", "--seed", "-1"], "-1"),
        (["--target", "target", "--store", str(tmp_path)], "is a directory"),
        (["--target", "target", "--report", "/nonexistent/r.html"], "does not exist"),
        (["--target", "target", "--out", str(tmp_path)], "is a directory"),
        (["--target", "target", "--out", f"{data}/m.tfm"], "does not exist"),
        (["--target", "nope"], ", ..."),
    ]
    for extra, needle in cases:
        r = _cli(tmp_path, "fit", str(data), "--budget", "1", *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert "Traceback" not in r.stderr and needle in r.stderr, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 3
    assert not list(tmp_path.glob("*.tfm"))
    r = _cli(
        tmp_path, "fit", str(data), "--target", "target", "--budget", "1", "--task", "regression"
    )
    assert r.returncode == 0 and "regression" in r.stdout
    r = _cli(
        tmp_path,
        "fit",
        str(data),
        "--target",
        "target",
        "--budget",
        "60",
        "--max-trials",
        "3",
        "--no-halving",
        "--class-weight",
        "none",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["trials"] == 3, report
    assert report["halving"] == {"rung_trials": 0, "promoted": 0}


def test_regression_never_below_the_default_per_row_either() -> None:
    # The datetime and integer-name paths above, through a full fit and predict.
    df = _regression(1_500, seed=15)
    df["when"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(df)), unit="h")
    result = _quiet_fit(df, "y", budget_s=1.5, time="t")
    rows = df.head(3).drop(columns=["y", "t"]).to_dict("records")
    for r in rows:
        r["when"] = r["when"].isoformat()
        r["cat"], r["domain"] = int(r["cat"]), int(r["domain"])
    direct = result.model.predict(df.head(3))
    served = result.model.compiled().predict_values(result.model.schema.encode_rows(rows))
    assert np.allclose(direct, served)
    assert dt.datetime.fromisoformat(rows[0]["when"]).year == 2024


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.text(max_size=8),
        st.booleans(),
    )
)
def test_a_category_is_found_whatever_type_it_arrives_as(value: object) -> None:
    df = pd.DataFrame({"c": pd.Series([value, "other"], dtype=object)})
    schema = Schema.infer(df, ["c"])
    code = schema.encode(df)[0, 0]
    assert schema.encode_rows([{"c": value}])[0, 0] == code
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        assert schema.encode_rows([{"c": int(value)}])[0, 0] == code
        # a model file that stored the float's text still matches the integer
        old = Schema.from_json(
            {"columns": [{"name": "c", "kind": "categorical", "categories": [str(value)]}]}
        )
        assert old.encode_rows([{"c": int(value)}])[0, 0] == 0


def test_a_damaged_model_file_is_refused(tmp_path: Path) -> None:
    from tenfold.auto_learner import ModelFileError

    path = tmp_path / "m.tfm"
    path.write_text('{"format": "tenfold-auto-learner/1", "schema": {}}')
    with pytest.raises(ModelFileError, match="damaged model file"):
        Model.load(path)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_an_xgboost_winner_is_refitted_and_survives_save_and_load(
    kind: str, tmp_path: Path
) -> None:
    if kind == "regression":
        df, target = _regression(1_500, seed=8), "y"
    else:
        df, target = synthetic(1_500, features=5, classes=3, seed=8), "target"
    result = _quiet_fit(df, target, time="t", budget_s=60, families=("xgboost",), max_trials=1)
    assert result.task == kind and result.model.family == "xgboost" and result.refit
    assert 10 <= result.best.iterations < 1000  # early stopping on validation kept fewer
    if kind == "regression":
        assert result.holdout_metrics["r2"] > 0.5
        before = result.model.predict(df.head(30))
    else:
        assert result.validation_score < np.log(3)  # better than the uniform guess
        before = result.model.predict_proba(df.head(30))
    result.model.save(tmp_path / "m.json")
    loaded = Model.load(tmp_path / "m.json")
    after = (
        loaded.predict(df.head(30)) if kind == "regression" else loaded.predict_proba(df.head(30))
    )
    np.testing.assert_allclose(after, before)


def test_the_search_explores_around_a_leading_xgboost(tmp_path: Path) -> None:
    df = synthetic(1_500, features=5, seed=9)
    result = _quiet_fit(df, "target", time="t", budget_s=30, families=("xgboost",), max_trials=4)
    # One plain XGBoost trial, then neighbours of the best one (XGBoost leads: the only family).
    assert [t.source for t in result.trials] == ["family", "search", "search", "search"]
    assert all(t.family == "xgboost" for t in result.trials)
    searched = [t.config for t in result.trials[1:]]
    assert all({"min_child_weight", "subsample", "colsample_bytree"} <= set(c) for c in searched)
    assert len({json.dumps(c, sort_keys=True) for c in searched}) == 3
    assert result.refit and result.model.family == "xgboost"
    before = result.model.predict_proba(df.head(30))
    result.model.save(tmp_path / "m.json")
    np.testing.assert_allclose(Model.load(tmp_path / "m.json").predict_proba(df.head(30)), before)
