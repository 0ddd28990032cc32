"""The search: model families and hyperparameters under a time budget, validated honestly.

Order of trials: the plain LightGBM default, the configurations that won on the
most similar past datasets (warm start), the plain HistGradientBoosting
default, then, until the budget is spent, a local search around the incumbent
(capacity, learning rate, regularisation, row and column sampling, importance
weights under shift) with the other families' variants (HistGradientBoosting,
a linear model) in between. The two plain defaults always finish, on a row
subsample if the budget cannot hold them (the result says so), so the winner,
chosen on validation, is never a model that validation ranks below a default.
The trial order does not depend on timing: a larger budget runs the same
trials and more, so its validation score is never lower.

Successive halving (``halving``, from ``HALVING_MIN_ROWS`` training rows): each
search configuration first trains on a quarter of the rows and at most
``RUNG_ROUNDS`` rounds; ASHA's rule promotes the top third of that rung to all
the rows. Only full trials can win, so the validated floor is unchanged.

Splits are never shuffled when the data has time: the last ``holdout_frac`` by
time is a holdout that the search never sees (its score is reported beside the
validation score, so the gap is visible), the ``valid_frac`` before it is the
validation split. With a domain column and no time, whole domains are held out.

Budget: every trial after the defaults stops at a deadline that leaves room for
the final refit (estimated from the winner's own fit time). At ``REFIT_ALWAYS_ROWS``
rows and more the refit is skipped, and the validated model kept, when it would
still overrun; below that it always runs (a few seconds at most), so the floor
does not depend on how loaded the machine is.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenfold.auto_learner._omp  # noqa: F401  (before lightgbm loads OpenMP)

# isort: split
import lightgbm as lgb
import numpy as np
import pandas as pd

# Imported here, not in the first trial: the import costs a second or more and
# belongs to start-up, not to the search's budget.
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from tenfold.auto_learner._cache import CacheStats, TrialCache
from tenfold.auto_learner._config import AutoLearnerConfig
from tenfold.auto_learner._frame import Schema, epoch_seconds, inspect_columns
from tenfold.auto_learner._guards import check_target, detect_task, find_leaks
from tenfold.auto_learner._model import FullProba, Model
from tenfold.auto_learner._omp import available_cpus
from tenfold.auto_learner._shift import shift_test
from tenfold.auto_learner._store import STORE_PER_FAMILY, RunStore, adapt, meta_features
from tenfold.auto_learner._trials import (
    TrialInputs,
    TrialPool,
    TrialRun,
    TrialSpec,
    balanced_weights,
    execute_trial,
)
from tenfold.auto_learner.errors import BudgetError, DataError

__all__ = ["AutoLearner", "FitResult", "Trial", "score_metrics"]

Array = np.ndarray[Any, Any]

DEFAULT_LGBM: dict[str, Any] = {
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_child_samples": 20,
    "feature_fraction": 1.0,
    "lambda_l2": 0.0,
}
# A small, regularised LightGBM tried early: the local search starts at the default
# and seldom walks this far in a short budget, yet when the test period differs from
# the training one (a shift in class priors) the less confident model wins. On 50K
# flights delay classes (time split, 10 s) it won on validation (1.1098 against the
# default's 1.1422) and scored test log loss 0.9705 against the default's 1.0011
# (FLAML's winner, a LightGBM of the same size: 0.9733).
SMALL_LGBM: dict[str, Any] = {
    "num_leaves": 10,
    "learning_rate": 0.05,
    "min_child_samples": 40,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
}
# The queue's mark for a warm-start fallback (RunStore.family_bests): another family's
# best configuration on the nearest runs, tried only when the runs' winners, tried
# first, do not beat this data's plain default by half their margin there (weak
# transfer).
WARM_IF_WEAK = "warm start, if weak"
PLAIN_ROUNDS = 100  # LightGBM's and HistGradientBoosting's default number of rounds
# The floor under "never below the default" is built from the data's size, not the
# clock, so a loaded machine can only make the search find less, never return less:
# below REFIT_ALWAYS_ROWS rows the winner is always refitted on every row (the plain
# default a user would train sees them all; a model on 70% of them loses to it), and
# the plain LightGBM default never samples fewer than SAMPLE_MIN_ROWS rows per tree.
REFIT_ALWAYS_ROWS = 100_000
SAMPLE_MIN_ROWS = 50_000
# Successive halving (one rung, ASHA's promotion rule): a search trial first trains on
# a quarter of the rows; the top third of that rung's scores go on to all of them.
HALVING_MIN_ROWS = 10_000
HALVING_SHARE = 4
HALVING_ETA = 3
DEFAULT_HIST: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    "max_iter": PLAIN_ROUNDS,
}
KNOWN_FAMILIES = ("lgbm", "hist_gb", "linear", "xgboost")
# XGBoost joins the default families when it is installed (it is not a dependency).
FAMILIES = ("lgbm", "hist_gb", "linear") + (
    ("xgboost",) if importlib.util.find_spec("xgboost") is not None else ()
)
DEFAULT_XGB: dict[str, Any] = {"max_depth": 6, "learning_rate": 0.1, "n_estimators": 1000}
# Configuration keys that are the search's, not LightGBM parameters: the rounds cap,
# shift importance weights, and balanced class weights (each a row weight).
NOT_PARAMS = ("n_estimators", "reweight", "class_weight")
# Class weights: with the smallest class under IMBALANCED_SHARE of an even share
# (binary: under 25% of the rows), the LightGBM default with balanced class weights
# (each class weighing the same in total) is queued as a search option; validation
# keeps it only where the selection metric gains (balanced accuracy, macro-F1).
IMBALANCED_SHARE = 0.5
# The least budget for which a fit starts local trial workers itself: each loads
# LightGBM and scikit-learn first, 4 to 6 s measured on this 2-core machine (far
# more under load), which a smaller budget cannot repay. Workers already running
# (``start_workers``) serve a fit of any budget.
PARALLEL_MIN_BUDGET_S = 60.0
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "log_loss", "accuracy", "balanced_accuracy", "macro_f1"),
    "multiclass": ("log_loss", "accuracy", "macro_f1", "balanced_accuracy"),
    "regression": ("rmse", "mae", "r2"),
}
GREATER_IS_BETTER = {
    "roc_auc": True,
    "accuracy": True,
    "macro_f1": True,
    "balanced_accuracy": True,
    "r2": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
}


@dataclass
class Trial:
    family: str
    config: dict[str, Any]
    score: float  # the selection metric on validation, in its own units
    seconds: float
    iterations: int = 0
    source: str = "search"
    rows: int = 0  # training rows the trial used
    finished_s: float = 0.0  # seconds since the fit started when the trial ended
    fit_s: float = 0.0  # of ``seconds``, the training itself (cached inputs excluded)
    rounds_trained: int = 0  # boosting rounds built (early stopping's patience included)
    worker: int = 0  # the process that ran it
    partial: bool = False  # a successive-halving rung on a share of the rows: never the winner


@dataclass
class FitResult:
    model: Model
    trials: list[Trial]
    best: Trial
    validation_score: float
    holdout_score: float | None
    metric: str
    shift: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    task: str = "binary"
    holdout_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    refit: bool = False

    @property
    def gap(self) -> float | None:
        return (
            None
            if self.holdout_score is None
            else round(self.validation_score - self.holdout_score, 4)
        )

    def best_over_time(self) -> list[tuple[float, float]]:
        """(seconds since the start, best validation score so far), one point per improvement."""
        out: list[tuple[float, float]] = []
        sign = 1.0 if GREATER_IS_BETTER[self.metric] else -1.0
        for t in sorted((t for t in self.trials if not t.partial), key=lambda t: t.finished_s):
            if not out or sign * t.score > sign * out[-1][1]:
                out.append((t.finished_s, t.score))
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "best": {
                "family": self.best.family,
                "config": self.best.config,
                "source": self.best.source,
            },
            "validation_score": round(self.validation_score, 4),
            "holdout_score": None if self.holdout_score is None else round(self.holdout_score, 4),
            "validation_holdout_gap": self.gap,
            "holdout_metrics": self.holdout_metrics,
            "trials": len(self.trials),
            "seconds": round(self.seconds, 2),
            "refit_on_all_rows": self.refit,
            "halving": {
                "rung_trials": sum(t.partial for t in self.trials),
                "promoted": sum(t.source == "promoted" for t in self.trials),
            },
            "best_over_time": [[round(s, 3), round(v, 5)] for s, v in self.best_over_time()],
            "shift": self.shift,
            "warnings": self.warnings,
            "dropped_columns": self.dropped_columns,
            "trial_cache": self.cache,
        }


def score_metrics(task: str, y: Array, pred: Array, metric: str) -> float:
    """One metric of ``pred`` (probabilities, or values for regression) against ``y``."""
    from sklearn import metrics as m

    if task == "regression":
        if metric == "rmse":
            return float(np.sqrt(np.mean((y - pred) ** 2)))
        if metric == "mae":
            return float(np.mean(np.abs(y - pred)))
        return float(m.r2_score(y, pred))
    n_classes = pred.shape[1]
    labels = list(range(n_classes))
    if metric == "log_loss":
        return float(m.log_loss(y, np.clip(pred, 1e-15, 1), labels=labels))
    if metric == "accuracy":
        return float(np.mean(pred.argmax(axis=1) == y))
    if metric == "balanced_accuracy":
        return float(m.balanced_accuracy_score(y, pred.argmax(axis=1)))
    if metric == "macro_f1":
        return float(m.f1_score(y, pred.argmax(axis=1), average="macro", labels=labels))
    if len(np.unique(y)) < 2:
        return 0.5
    return float(m.roc_auc_score(y, pred[:, 1]))


def _key(metric: str, score: float) -> float:
    """Higher is better, whatever the metric."""
    if not math.isfinite(score):
        return -math.inf
    return score if GREATER_IS_BETTER[metric] else -score


class AutoLearner:
    """Fit the best model a time budget allows; remember what won for the next domain."""

    def __init__(
        self,
        config: AutoLearnerConfig | None = None,
        *,
        store: Path | str | None = None,
        address: str | None = None,
    ) -> None:
        """``config``: ``[auto_learner.performance]`` (``num_workers`` trials at once,
        ``max_cache_mb`` per trial cache). ``address``: run the trials on that Ray
        cluster; otherwise, with ``num_workers`` above one, on worker processes here."""
        self.config = config or AutoLearnerConfig()
        self.store_path = Path(store) if store is not None else None
        self.address = address or None
        self.cache_stats: CacheStats | None = None  # the last fit's trial cache
        self.threads = available_cpus()  # per trial run in this process
        self.trial_threads = self.threads  # per trial in a worker, num_workers at once
        self.last_fraction = 1.0
        # The trial workers, in a box the finalizer can close without holding the
        # learner: workers left running by a learner nobody closed stop with it.
        self._pools: list[TrialPool] = []
        weakref.finalize(self, _close_pools, self._pools)

    # -- splits -----------------------------------------------------------------------
    @staticmethod
    def _split(
        df: pd.DataFrame,
        time_col: str | None,
        domain_col: str | None,
        valid_frac: float,
        holdout_frac: float,
        seed: int,
        strata: Array | None = None,
    ) -> tuple[Array, Array, Array, str]:
        n = len(df)
        if time_col is not None:
            column = df[time_col]
            key = (
                epoch_seconds(column)
                if pd.api.types.is_datetime64_any_dtype(column.dtype)
                else column.to_numpy()
            )
            order = np.argsort(key, kind="stable")
            n_hold = int(n * holdout_frac)
            n_val = int(n * valid_frac)
            train = order[: n - n_hold - n_val]
            valid = order[n - n_hold - n_val : n - n_hold]
            hold = order[n - n_hold :]
            return (
                train,
                valid,
                hold,
                f"by time ({time_col}): last {holdout_frac:.0%} holdout, {valid_frac:.0%} before it validation",
            )
        if domain_col is not None:
            domains = pd.unique(df[domain_col].astype(str))
            rng = np.random.default_rng(seed)
            rng.shuffle(domains)
            if len(domains) >= 3:
                keys = df[domain_col].astype(str).to_numpy()
                hold = np.nonzero(keys == domains[0])[0]
                valid = np.nonzero(keys == domains[1])[0]
                train = np.nonzero(~np.isin(keys, domains[:2]))[0]
                return (
                    train,
                    valid,
                    hold,
                    f"by domain ({domain_col}): {domains[0]} held out, {domains[1]} validation",
                )
        rng = np.random.default_rng(seed)
        if strata is None:
            order = rng.permutation(n)
            n_hold, n_val = int(n * holdout_frac), int(n * valid_frac)
            return (
                order[n_hold + n_val :],
                order[n_hold : n_hold + n_val],
                order[:n_hold],
                "random (no time or domain column)",
            )
        # Stratified: each class split in the same proportions (a rare class keeps
        # its training rows first, so it is never missing from training).
        parts: tuple[list[Array], list[Array], list[Array]] = ([], [], [])
        for c in np.unique(strata):
            rows = rng.permutation(np.nonzero(strata == c)[0])
            n_hold = int(len(rows) * holdout_frac)
            n_val = int(len(rows) * valid_frac)
            parts[2].append(rows[:n_hold])
            parts[1].append(rows[n_hold : n_hold + n_val])
            parts[0].append(rows[n_hold + n_val :])
        train, valid, hold = (rng.permutation(np.concatenate(p)) for p in parts)
        return train, valid, hold, "random, stratified by class (no time or domain column)"

    # -- trials -----------------------------------------------------------------------
    def _objective(self, task: str, n_classes: int) -> dict[str, Any]:
        if task == "regression":
            return {"objective": "regression"}
        if task == "binary":
            return {"objective": "binary"}
        return {"objective": "multiclass", "num_class": n_classes}

    def _dataset_params(self, seed: int) -> dict[str, Any]:
        # feature_pre_filter off: one binned dataset then serves every trial, whatever
        # its min_child_samples (LightGBM would otherwise drop features at build time).
        return {
            "verbose": -1,
            "seed": seed,
            "num_threads": self.threads,
            "deterministic": True,
            "feature_pre_filter": False,
        }

    def _lgbm(
        self,
        cfg: dict[str, Any],
        data: tuple[lgb.Dataset, lgb.Dataset],
        x_va: Array,
        task: str,
        n_classes: int,
        seed: int,
        stop_at: float | None,
        overrun_at: float | None = None,
        fraction: float = 1.0,
        plain: bool = False,
    ) -> tuple[lgb.Booster, Array, int]:
        """One LightGBM trial with early stopping on validation; its validation predictions.

        ``plain``: no early stopping, every round kept: the plain default exactly as a
        user would train it, so the floor the search must beat is that model's score.

        ``stop_at``: stop adding rounds at this clock time (the search's deadline).
        ``overrun_at``: when a must-finish trial's first five rounds project a finish
        past this time, its remaining rounds grow each tree on a row sample (LightGBM's
        bagging, switched on mid-training) sized to end near it, at least a tenth of
        the rows (70K rows per tree of a 700K split: still the default's model, and the
        budget kept on a loaded machine); ``self.last_fraction`` says which share was used.
        """
        train, valid = data
        knobs = {k: v for k, v in cfg.items() if k not in NOT_PARAMS}
        params = {
            **DEFAULT_LGBM,
            **knobs,
            **self._dataset_params(seed),
            **self._objective(task, n_classes),
        }
        if fraction < 1.0:
            params.update(bagging_fraction=fraction, bagging_freq=1)
        rounds = int(cfg.get("n_estimators", 1000))
        started = _now()
        self.last_fraction = fraction

        def watch(env: Any) -> None:
            it = env.iteration + 1
            now = _now()
            if stop_at is not None and now > stop_at and it > 10:
                raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)
            if overrun_at is not None and it == 5 and fraction == 1.0:
                projected = now + (now - started) / it * (rounds - it)
                # Never fewer than SAMPLE_MIN_ROWS rows per tree: below that the sample,
                # not the machine's load, would decide the default's score, and a small
                # split is cheap to train whole anyway.
                floor = min(1.0, max(0.1, SAMPLE_MIN_ROWS / max(train.num_data(), 1)))
                if projected > overrun_at and floor < 0.9:
                    share = float(np.clip((overrun_at - now) / (projected - now), floor, 0.9))
                    env.model.reset_parameter({"bagging_fraction": share, "bagging_freq": 1})
                    self.last_fraction = share

        booster = lgb.train(
            params,
            train,
            num_boost_round=rounds,
            valid_sets=[] if plain else [valid],
            callbacks=[watch] if plain else [lgb.early_stopping(30, verbose=False), watch],
        )
        best_it = int(
            booster.current_iteration()
            if plain
            else (booster.best_iteration or booster.current_iteration())
        )
        pred = np.asarray(booster.predict(x_va, num_iteration=best_it))
        if task == "binary":
            pred = np.column_stack([1 - pred, pred])
        return booster, pred, best_it

    def _binned(
        self,
        x_tr: Array,
        x_va: Array,
        ys: tuple[Array, Array],
        weights: Array | None,
        cat: list[int],
        seed: int,
    ) -> tuple[tuple[lgb.Dataset, lgb.Dataset], int]:
        """LightGBM's binned train and validation datasets, with their size estimate.

        The pair is one cache entry: the validation set is binned by the training
        set's bin edges and keeps it alive. LightGBM stores at most one byte per
        value (256 bins or fewer) plus label and weight per row.
        """
        params = self._dataset_params(seed)
        train = lgb.Dataset(
            x_tr, ys[0], weight=weights, categorical_feature=cat, params=params, free_raw_data=True
        ).construct()
        valid = lgb.Dataset(
            x_va,
            ys[1],
            categorical_feature=cat,
            params=params,
            reference=train,
            free_raw_data=True,
        ).construct()
        size = (len(x_tr) + len(x_va)) * (x_tr.shape[1] + 8)
        return (train, valid), size

    @staticmethod
    def _neighbours(best: dict[str, Any], rng: np.random.Generator, step: int) -> dict[str, Any]:
        """A LightGBM configuration near ``best``: capacity grows with the step (cheap first)."""
        cfg = {k: v for k, v in best.items() if k != "n_estimators"}
        leaves = int(cfg.get("num_leaves", 31))
        cfg["num_leaves"] = int(
            np.clip(
                leaves * 2.0 ** int(rng.choice([-1, 0, 1, 1]))
                if step > 2
                else leaves * 2.0 ** int(rng.choice([-1, 0])),
                4,
                1024,
            )
        )
        cfg["learning_rate"] = float(
            np.clip(cfg.get("learning_rate", 0.1) * math.exp(rng.normal(-0.1, 0.5)), 0.01, 0.3)
        )
        cfg["min_child_samples"] = int(
            np.clip(cfg.get("min_child_samples", 20) * math.exp(rng.normal(0, 0.7)), 2, 500)
        )
        cfg["feature_fraction"] = float(
            np.clip(cfg.get("feature_fraction", 1.0) + rng.normal(0, 0.15), 0.3, 1.0)
        )
        cfg["lambda_l2"] = float(
            np.clip(cfg.get("lambda_l2", 0.0) + abs(rng.normal(0, 1.0)), 0.0, 50.0)
        )
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in cfg.items()}

    @staticmethod
    def _xgb_neighbours(best: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """An XGBoost configuration near ``best`` (searched only while XGBoost leads)."""
        cfg = dict(DEFAULT_XGB, **best)
        cfg["max_depth"] = int(np.clip(int(cfg["max_depth"]) + int(rng.choice([-1, 0, 1])), 2, 12))
        cfg["learning_rate"] = round(
            float(np.clip(cfg["learning_rate"] * math.exp(rng.normal(-0.1, 0.4)), 0.01, 0.3)), 5
        )
        cfg["min_child_weight"] = round(
            float(
                np.clip(cfg.get("min_child_weight", 1.0) * math.exp(rng.normal(0, 0.7)), 0.1, 100)
            ),
            4,
        )
        for knob in ("subsample", "colsample_bytree"):
            cfg[knob] = round(float(np.clip(cfg.get(knob, 1.0) + rng.normal(0, 0.15), 0.4, 1.0)), 4)
        cfg["reg_lambda"] = round(
            float(np.clip(cfg.get("reg_lambda", 1.0) + abs(rng.normal(0, 1.0)), 0.0, 50.0)), 4
        )
        return cfg

    @staticmethod
    def _hist_neighbours(best: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        cfg = dict(DEFAULT_HIST, **best)
        cfg["max_leaf_nodes"] = int(
            np.clip(cfg["max_leaf_nodes"] * 2.0 ** int(rng.choice([-1, 0, 1])), 4, 255)
        )
        cfg["learning_rate"] = round(
            float(np.clip(cfg["learning_rate"] * math.exp(rng.normal(-0.2, 0.4)), 0.01, 0.3)), 5
        )
        cfg["min_samples_leaf"] = int(
            np.clip(cfg["min_samples_leaf"] * math.exp(rng.normal(0, 0.6)), 2, 500)
        )
        cfg["l2_regularization"] = round(
            float(np.clip(cfg["l2_regularization"] + abs(rng.normal(0, 1.0)), 0, 50)), 5
        )
        cfg["max_iter"] = 500
        return cfg

    def _hist_gb(
        self,
        cfg: dict[str, Any],
        xs: tuple[Array, Array],
        ys: tuple[Array, Array],
        task: str,
        n_classes: int,
        cat: list[int],
        seed: int,
        stop_at: float | None,
        metric: str,
    ) -> tuple[Any, Array, int]:
        """HistGradientBoosting grown in chunks of rounds, scored on our validation after each.

        Its own early stopping would split off a stratified sample inside the
        training rows, which fails on a class of one row; chunks also let the
        deadline stop it between two chunks.
        """
        cfg = dict(DEFAULT_HIST, **cfg)
        x_tr, x_va = _hist_codes(xs[0], cat), _hist_codes(xs[1], cat)
        y_tr, y_va = ys
        max_iter = int(cfg["max_iter"])
        # A trial with no deadline (a must-finish default) is one chunk: it cannot be
        # stopped anyway, and two chunks never stop early (that takes two worse ones),
        # while each chunk scores the whole validation split (seconds at 1M rows).
        chunk = max_iter if stop_at is None else min(max_iter, 50)
        kwargs = {
            "learning_rate": cfg["learning_rate"],
            "max_leaf_nodes": int(cfg["max_leaf_nodes"]),
            "min_samples_leaf": int(cfg["min_samples_leaf"]),
            "l2_regularization": cfg["l2_regularization"],
            "early_stopping": False,
            "warm_start": True,
            "random_state": seed,
            "categorical_features": cat or None,
        }
        model: Any = (
            HistGradientBoostingRegressor(max_iter=chunk, **kwargs)
            if task == "regression"
            else HistGradientBoostingClassifier(max_iter=chunk, **kwargs)
        )
        best_key, pred, worse = -math.inf, None, 0
        while True:
            t0 = _now()
            model.fit(x_tr, y_tr)
            p = _sk_predict(model, x_va, task, n_classes)
            k = _key(metric, score_metrics(task, y_va, p, metric))
            if k > best_key:
                best_key, worse = k, 0
            else:
                worse += 1
            pred = p
            done = model.n_iter_ < model.max_iter  # no split left to make
            if done or model.max_iter >= max_iter or worse >= 2:
                break
            if stop_at is not None and _now() + (_now() - t0) > stop_at:
                break
            model.max_iter = min(max_iter, model.max_iter + chunk)
        assert pred is not None
        return model, pred, int(model.n_iter_)

    def _xgboost(
        self,
        cfg: dict[str, Any],
        xs: tuple[Array, Array],
        ys: tuple[Array, Array],
        task: str,
        n_classes: int,
        seed: int,
        stop_at: float | None,
    ) -> tuple[Any, Array, int]:
        """One XGBoost trial (histogram trees), early-stopped on our validation split and
        stopped between rounds at ``stop_at``; category codes are taken as numbers."""
        import xgboost as xgb

        class Deadline(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                return stop_at is not None and epoch >= 10 and _now() > stop_at

        kwargs = {
            **_xgb_params(cfg),
            "n_estimators": int(cfg.get("n_estimators", 1000)),
            "early_stopping_rounds": 30,
            "n_jobs": self.threads,
            "random_state": seed,
            "callbacks": [Deadline()],
        }
        model: Any = (
            xgb.XGBRegressor(**kwargs) if task == "regression" else xgb.XGBClassifier(**kwargs)
        )
        model.fit(xs[0], ys[0], eval_set=[(xs[1], ys[1])], verbose=False)
        iters = int(model.best_iteration) + 1
        return model, _sk_predict(model, xs[1], task, n_classes), iters

    def _linear(
        self,
        xs: tuple[Array, Array],
        ys: tuple[Array, Array],
        task: str,
        n_classes: int,
    ) -> tuple[Any, Array, int]:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        final: Any = Ridge() if task == "regression" else LogisticRegression(max_iter=300)
        model = make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(), final)
        model.fit(xs[0], ys[0])
        return model, _sk_predict(model, xs[1], task, n_classes), 0

    # -- fit ----------------------------------------------------------------------------
    def fit(
        self,
        df: pd.DataFrame,
        target: str,
        *,
        time: str | None = None,
        domain: str | None = None,
        budget_s: float = 30.0,
        seed: int = 0,
        leakage: str = "drop",
        inf_policy: str = "nan",
        reweight: str = "auto",
        warm_start: bool = True,
        dataset: str = "data",
        valid_frac: float = 0.2,
        holdout_frac: float = 0.1,
        families: tuple[str, ...] = FAMILIES,
        refit: bool = True,
        task: str = "auto",
        metric: str | None = None,
        halving: bool = True,
        max_trials: int | None = None,
        class_weight: str = "auto",
    ) -> FitResult:
        if (
            isinstance(budget_s, bool)
            or not isinstance(budget_s, int | float)
            or not math.isfinite(budget_s)
            or budget_s <= 0
        ):
            raise BudgetError(f"budget must be a positive number of seconds, got {budget_s!r}")
        if (
            isinstance(seed, bool)
            or not isinstance(seed, int | np.integer)
            or not 0 <= seed < 2**31
        ):
            raise BudgetError(f"seed must be an integer from 0 to 2**31-1, got {seed!r}")
        if max_trials is not None and (
            isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1
        ):
            raise BudgetError(f"max_trials must be a positive integer or None, got {max_trials!r}")
        if class_weight not in ("auto", "none"):
            raise BudgetError(f"class_weight must be auto or none, got {class_weight!r}")
        if leakage not in ("drop", "warn", "keep"):
            raise BudgetError(f"leakage must be drop, warn or keep, got {leakage!r}")
        if inf_policy not in ("nan", "refuse"):
            raise BudgetError(f"inf_policy must be nan or refuse, got {inf_policy!r}")
        unknown = [f for f in families if f not in KNOWN_FAMILIES]
        if not families or unknown:
            raise BudgetError(
                f"families must be some of {', '.join(KNOWN_FAMILIES)}, got {', '.join(map(str, families)) or 'none'}"
            )
        if "xgboost" in families and "xgboost" not in FAMILIES:
            raise BudgetError(
                "the xgboost family needs the xgboost package, which is not installed"
            )
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame, got {type(df).__name__}")
        for col, what in ((time, "time"), (domain, "domain")):
            if col is not None and col not in df.columns:
                raise DataError(f"{what} column {col!r} is not in the data")
        if len(df) < 50:
            raise DataError(f"need at least 50 rows to train and validate, got {len(df)}")
        started = _now()
        deadline = started + budget_s
        # num_workers trials at once, each with its share of the cores: two trials of two
        # threads on two cores oversubscribe them (every OpenMP barrier then waits for a
        # descheduled thread). Below ~100K rows a round is too short for a second thread
        # to pay for its wake-ups (measured: 100 rounds on 2,100 rows, 0.14 s on one thread
        # and 0.22 s on two; HistGradientBoosting 0.27 s and 0.61 s, 12 s with spinning waits).
        # A trial alone (in this process: one at a time, the LightGBM default while the
        # workers start, the refit) takes every core.
        workers = self.config.performance.num_workers
        self.threads = available_cpus()
        self.trial_threads = max(1, available_cpus() // workers)
        if len(df) < 100_000:
            self.threads = self.trial_threads = 1
        pool = self._trial_pool(workers, budget_s)
        return self._fit(
            df,
            target,
            time,
            domain,
            budget_s,
            seed,
            leakage,
            inf_policy,
            reweight,
            warm_start,
            dataset,
            valid_frac,
            holdout_frac,
            families,
            refit,
            task,
            metric,
            halving,
            max_trials,
            class_weight,
            started,
            deadline,
            pool,
        )

    def start_workers(self, *, wait: bool = False) -> None:
        """Start the trial workers now (``num_workers`` above one, or a Ray address);
        ``wait``: return once they have loaded the trainers.

        They stay up for every later fit of this learner until :meth:`close`; a fit
        that finds none starts them itself, inside its budget, when the budget is
        at least ``PARALLEL_MIN_BUDGET_S``.
        """
        workers = self.config.performance.num_workers
        if not self._pools and (self.address is not None or workers > 1):
            pool = TrialPool(workers, address=self.address)
            try:
                pool.warm_up()
            except BaseException:
                pool.close()
                raise
            self._pools.append(pool)
        if wait and self._pools:
            self._pools[0].ready()

    def close(self) -> None:
        """Stop the trial workers (a later fit starts new ones when it needs them)."""
        _close_pools(self._pools)

    def __enter__(self) -> AutoLearner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _trial_pool(self, workers: int, budget_s: float) -> TrialPool | None:
        """The executor for parallel trials, or None to run them one at a time here.

        Local workers take seconds to start (each loads LightGBM and scikit-learn:
        4 to 6 s measured on this loaded 2-core machine), so a fit that has none
        running starts them only when its budget is at least
        ``PARALLEL_MIN_BUDGET_S``; they then load while this process prepares the
        data and trains the plain LightGBM default.
        """
        if (
            not self._pools
            and self.address is None
            and (workers < 2 or budget_s < PARALLEL_MIN_BUDGET_S)
        ):
            return None
        self.start_workers()
        return self._pools[0] if self._pools else None

    def _fit(
        self,
        df: pd.DataFrame,
        target: str,
        time: str | None,
        domain: str | None,
        budget_s: float,
        seed: int,
        leakage: str,
        inf_policy: str,
        reweight: str,
        warm_start: bool,
        dataset: str,
        valid_frac: float,
        holdout_frac: float,
        families: tuple[str, ...],
        refit: bool,
        task: str,
        metric: str | None,
        halving: bool,
        max_trials: int | None,
        class_weight: str,
        started: float,
        deadline: float,
        pool: TrialPool | None,
    ) -> FitResult:
        y_raw = check_target(df, target)
        task, task_note = detect_task(df[target], target, task)
        metric = metric or METRICS[task][0]
        if metric not in METRICS[task]:
            raise BudgetError(
                f"metric {metric!r} does not fit a {task} task: use one of {', '.join(METRICS[task])}"
            )
        notes: list[str] = [task_note]
        if task == "regression":
            classes: list[Any] = []
            y = y_raw.astype(np.float64)
            n_classes = 0
        else:
            classes = sorted(pd.unique(y_raw).tolist(), key=lambda v: (str(type(v)), v))
            index = {c: i for i, c in enumerate(classes)}
            y = np.array([index[v] for v in y_raw], dtype=np.int32)
            n_classes = len(classes)
        features, dropped, column_notes = inspect_columns(
            df, [c for c in df.columns if c not in (target, time)]
        )
        notes += column_notes
        leaks = find_leaks(df, features, y, task=task, seed=seed)
        for name, strength in leaks:
            msg = f"column {name!r} predicts {target!r} alone ({'rank correlation' if task == 'regression' else 'AUC'} {strength}): likely leakage"
            if leakage == "drop":
                features.remove(name)
                dropped.append(str(name))
                msg += "; dropped"
            notes.append(msg)
            warnings.warn(msg, stacklevel=2)
        if not features:
            raise DataError(
                "no feature columns left after removing the target, time, unusable and leaky columns"
            )
        schema = Schema.infer(df, features, inf_policy)
        x = schema.encode(df)
        cat = schema.categorical_indices
        strata = y if (task != "regression" and time is None and domain is None) else None
        tr, va, ho, split_note = self._split(
            df, time, domain, valid_frac, holdout_frac, seed, strata
        )
        notes.append(f"split {split_note}")
        if task != "regression" and len(np.unique(y[tr])) < n_classes:
            notes.append("some classes are missing from the training split")
        # Shift between what we train on and what we will be judged on.
        shift_rep = shift_test(
            x[tr], x[np.concatenate([va, ho])], schema.feature_names, cat, seed=seed
        )
        # Importance weights bridge a moderate shift; when the classifier separates the two
        # almost perfectly the supports barely overlap and the weights would be noise.
        severe = shift_rep.auc >= 0.9
        weights = (
            shift_rep.weights if (reweight == "auto" and shift_rep.shifted and not severe) else None
        )
        if shift_rep.shifted:
            notes.append(
                f"covariate shift between training and later data (domain classifier AUC {shift_rep.auc}); "
                + (
                    "too severe to reweight: trust the time-ordered validation"
                    if severe
                    else "reweighted training rows tried as a search option"
                )
            )
        shift = {
            "domain_classifier_auc": shift_rep.auc,
            "shifted": shift_rep.shifted,
            "top_features": shift_rep.top_features,
            "time_like_columns": shift_rep.time_like,
            "reweighted": False,
        }
        meta = meta_features(x[tr], y[tr] if task != "regression" else None, cat)
        store = RunStore(self.store_path) if self.store_path is not None else None
        try:
            suggestions = (
                store.suggest(meta, margins=True) if (store is not None and warm_start) else []
            )
            # Tried only when no suggestion beats this data's plain default by half its
            # margin where it was stored (_transfer_holds).
            fallbacks = (
                store.family_bests(meta, {str(c.get("family", "lgbm")) for c in suggestions})
                if (store is not None and warm_start)
                else []
            )
        except BaseException:
            if store is not None:
                store.close()
            raise
        # Split matrices and binned datasets, built once and reused by every trial
        # while they fit under max_cache_mb (dropped when the search ends).
        cache = TrialCache(self.config.performance.max_cache_mb * 1024 * 1024)
        self.cache_stats = cache.stats
        inputs = TrialInputs(x, y, tr, va, weights, cat, task, n_classes, seed, metric, cache)

        # The queue: (family, config, source, must_finish). What beat the default on the
        # most similar past datasets (of any family, its tree size scaled to these rows
        # and its rounds bounded by what early stopping kept there: _store.adapt), the
        # best of them first and the plain LightGBM default second.
        queue: list[tuple[str, dict[str, Any], str, bool]] = []
        warm_families: set[str] = set()
        warm_points: list[tuple[str, dict[str, Any]]] = []
        # Each warm guess's margin over its default where it was stored, by its config.
        expected: dict[str, float] = {}
        for suggested in suggestions + fallbacks:
            family, cfg = adapt(suggested, len(tr))
            # Two stored configurations scaled to the same tree size are one guess here.
            point = (
                family,
                {k: v for k, v in cfg.items() if k not in ("n_estimators", "max_iter")},
            )
            if point in warm_points:
                continue
            warm_points.append(point)
            plain = {"lgbm": DEFAULT_LGBM, "hist_gb": DEFAULT_HIST, "xgboost": DEFAULT_XGB}
            fallback = suggested in fallbacks
            if fallback and cfg == plain.get(family):
                continue  # a family's plain default: its own trial runs it anyway
            if family == "xgboost" and family in families and cfg == DEFAULT_XGB:
                # XGBoost's one trial won there: it runs now, not after the others.
                warm_families.add(family)
            elif family not in families or family not in plain or cfg == plain[family]:
                continue
            source = WARM_IF_WEAK if fallback else "warm start"
            if not fallback:
                expected[_config_key(family, cfg)] = float(suggested.get("margin", 0.0))
            queue.append((family, cfg, source, False))
        if "lgbm" in families:
            # The best configuration of the nearest past run is the first guess (the warm
            # start's point: when it is right, nothing before it spends the time); the
            # plain LightGBM default follows at once and always finishes, so the floor
            # under "never below the default" is the same with or without a store.
            plain_lgbm = ("lgbm", {**DEFAULT_LGBM, "n_estimators": PLAIN_ROUNDS}, "default", True)
            queue.insert(min(1, len(queue)), plain_lgbm)
        if "hist_gb" in families:
            queue.append(("hist_gb", dict(DEFAULT_HIST), "default", True))
        if "lgbm" in families:
            queue.append(("lgbm", dict(SMALL_LGBM), "small model", False))
        if weights is not None and "lgbm" in families:
            queue.append(("lgbm", {**DEFAULT_LGBM, "reweight": True}, "shift weights", False))
        if class_weight == "auto" and "lgbm" in families and task != "regression":
            counts = np.bincount(y[tr], minlength=n_classes)
            if counts.min() < IMBALANCED_SHARE * len(tr) / n_classes:
                queue.append(
                    ("lgbm", {**DEFAULT_LGBM, "class_weight": "balanced"}, "class weights", False)
                )
                notes.append(
                    f"imbalanced classes (the smallest has {counts.min() / len(tr):.1%} of the "
                    "training rows): balanced class weights tried as a search option"
                )
        if "linear" in families:
            queue.append(("linear", {}, "family", False))
        if "xgboost" in families and "xgboost" not in warm_families:
            queue.append(("xgboost", dict(DEFAULT_XGB), "family", False))
        rng = np.random.default_rng(seed)
        trials: list[Trial] = []
        models: dict[int, Any] = {}
        best: Trial | None = None
        broken: set[str] = set()
        n_all = len(x)
        step = 0
        issued = 0  # trials started (the must-finish defaults always are)
        trial_cap = max_trials if max_trials is not None else math.inf
        # Successive halving: with HALVING_MIN_ROWS training rows or more, each new
        # search configuration first trains on a 1/HALVING_SHARE of them; only those
        # _promote ranks high go on to all the rows (and only those can win).
        rung_rows = len(tr) // HALVING_SHARE if (halving and len(tr) >= HALVING_MIN_ROWS) else 0
        rung_keys: list[float] = []

        def refit_cost() -> float:
            """Seconds the refit of the current best is expected to take."""
            if best is None or not refit:
                return 0.0
            per_row = best.fit_s * n_all / max(best.rows, 1)
            if best.family == "linear":
                return per_row
            refit_rounds = _refit_rounds(best)
            return per_row * refit_rounds / max(best.rounds_trained, 1)

        def reserve() -> float:
            # The search stops this long before the deadline: the refit, with a margin
            # (trial times vary twofold on a loaded machine).
            return max(1.25 * refit_cost(), 0.05 * budget_s) if refit else 0.0

        def next_spec() -> TrialSpec | None:
            """The next trial worth starting, or None when the budget is spent."""
            nonlocal step, issued
            while True:
                if queue:
                    family, cfg, source, must_finish = queue.pop(0)
                else:
                    if _now() + reserve() >= deadline or step > 500 or issued >= trial_cap:
                        return None
                    live = [f for f in ("lgbm", "hist_gb") if f in families and f not in broken]
                    # XGBoost is searched only while it leads (its trials cost several
                    # LightGBM ones): then every other search trial explores around it.
                    xgb_leads = best is not None and best.family == "xgboost"
                    if not live and not xgb_leads:
                        return None
                    if xgb_leads and (step % 2 == 0 or not live):
                        family = "xgboost"
                    else:
                        family = live[step % 4 == 3 and len(live) > 1]
                    if family == "xgboost":
                        base = _best_of(trials, "xgboost", metric)
                        cfg = self._xgb_neighbours(base.config if base else DEFAULT_XGB, rng)
                    elif family == "lgbm":
                        base = _best_of(trials, "lgbm", metric)
                        cfg = self._neighbours(base.config if base else DEFAULT_LGBM, rng, step)
                    else:
                        base = _best_of(trials, "hist_gb", metric)
                        cfg = self._hist_neighbours(base.config if base else DEFAULT_HIST, rng)
                    source, must_finish = "search", False
                if source == WARM_IF_WEAK:
                    # Another family's best on the nearest runs: worth a trial only
                    # when no warm-start guess so far clearly beats a plain default
                    # here (a skipped one leaves the search's steps as they were).
                    if _transfer_holds(trials, metric, expected):
                        continue
                    source = "warm start"
                step += 1
                # max_trials counts every trial; the plain defaults still queued keep
                # their places (they always run), optional trials give way to them.
                if not must_finish and issued + sum(q[3] for q in queue) >= trial_cap:
                    continue
                if family in broken:
                    continue
                if not must_finish and _now() + reserve() >= deadline:
                    continue  # drain the queue's optional trials: the budget is spent
                stop_at = None if must_finish else deadline - reserve()
                if stop_at is not None and _now() + 2 * _first_step_s(trials, family) > stop_at:
                    continue  # its first uninterruptible step would not end in time
                issued += 1
                return TrialSpec(
                    family,
                    cfg,
                    source,
                    must_finish,
                    stop_at,
                    # The LightGBM default switches to row sampling when it would end
                    # past the deadline (it was a quarter of the budget past it: the
                    # 1M-row fit then took 30 s of 20); the HistGB default that follows
                    # is sized from its pace to a tenth of the budget.
                    overrun_at=deadline if (must_finish and family == "lgbm") else None,
                    hist_rows=(
                        _budget_rows(trials, len(tr), deadline, must_finish, budget_s)
                        if family == "hist_gb"
                        else 0
                    ),
                    # (XGBoost trials always take every row: the rung's sample is
                    # LightGBM's and HistGradientBoosting's.) Warm-start guesses after
                    # the first go through the rung too: one that does not transfer
                    # then costs a quarter of a trial.
                    rung_rows=(
                        rung_rows
                        if (
                            rung_rows
                            and family != "xgboost"
                            and (
                                source == "search"
                                or (
                                    source == "warm start"
                                    and any(t.source == "warm start" for t in trials)
                                )
                            )
                        )
                        else 0
                    ),
                )

        def record(spec: TrialSpec, run: TrialRun) -> None:
            nonlocal best, models
            if run.error is not None:
                broken.add(spec.family)
                notes.append(f"{spec.family} skipped: {run.error}")
                return
            notes.extend(run.notes)
            if spec.must_finish and _now() > deadline:
                notes.append(
                    f"the plain {'LightGBM' if spec.family == 'lgbm' else 'HistGradientBoosting'} "
                    f"default ran {_now() - deadline:.1f} s past the budget: finished anyway, "
                    "so the result is never one validation ranks below it"
                )
            trial = Trial(
                spec.family,
                spec.config,
                round(run.score, 6),
                round(run.seconds, 3),
                run.iterations,
                spec.source,
                run.rows,
                # When it ended, by the machine's one monotonic clock (a trial that ran
                # in a remote worker: when its result arrived).
                round(
                    (run.ended_at if pool is None or pool.address is None else _now()) - started, 3
                ),
                round(run.fit_s, 3),
                run.rounds_trained,
                worker=run.worker_pid,
                partial=bool(spec.rung_rows),
            )
            trials.append(trial)
            if trial.partial:
                # ASHA's rule: the configuration goes on to all the rows when its score
                # is in the top 1/HALVING_ETA of this rung's so far.
                rung_keys.append(_key(metric, trial.score))
                if _promote(rung_keys, HALVING_ETA):
                    queue.insert(0, (spec.family, spec.config, "promoted", False))
                return
            if best is None or _key(metric, trial.score) > _key(metric, best.score):
                best = trial
                models = {len(trials) - 1: run.model}

        if pool is None:
            with threadpool_limits(self.threads):
                while (spec := next_spec()) is not None:
                    record(spec, execute_trial(self, inputs, spec))
        else:
            # Trials ``pool.workers`` at a time: each round proposes that many from the
            # incumbent, runs them at once, and records them in the order proposed.
            try:
                if queue and queue[0][3] and queue[0][0] == "lgbm":
                    # While the workers start, this process trains the plain LightGBM
                    # default itself (its pace then sizes the HistGB default's rows).
                    spec = next_spec()
                    assert spec is not None
                    with threadpool_limits(self.threads):
                        record(spec, execute_trial(self, inputs, spec))
                pool.share(
                    inputs,
                    threads=self.trial_threads,
                    max_cache_mb=self.config.performance.max_cache_mb,
                )
                while True:
                    specs: list[TrialSpec] = []
                    deferred: list[tuple[str, dict[str, Any], str, bool]] = []
                    while len(specs) < pool.workers and (spec := next_spec()) is not None:
                        if (
                            spec.family == "hist_gb"
                            and spec.must_finish
                            and any(s.family == "lgbm" for s in specs)
                        ):
                            # Its row budget comes from LightGBM's measured pace: it
                            # starts once the LightGBM default has finished.
                            deferred.append((spec.family, spec.config, spec.source, True))
                            continue
                        specs.append(spec)
                    queue[:0] = deferred
                    if not specs:
                        break
                    # A trial past this is killed: the must-finish defaults may overrun the
                    # deadline by a quarter of the budget, any trial by half of it.
                    limit = deadline + 0.5 * budget_s - _now() + 5.0
                    for spec, run in zip(specs, pool.run(specs, limit), strict=True):
                        record(spec, run)
            finally:
                pool.release()
        cache.clear()
        if best is None:
            if store is not None:
                store.close()
            raise DataError(f"no model family could be trained: {'; '.join(notes[-len(broken) :])}")
        best_model = next(iter(models.values()))
        holdout_score = None
        holdout_metrics: dict[str, float] = {}
        if len(ho):
            pred_ho = _predict(best, best_model, x[ho], task, n_classes)
            holdout_metrics = {
                m: round(score_metrics(task, y[ho], pred_ho, m), 5) for m in METRICS[task]
            }
            holdout_score = holdout_metrics[metric]
        # Refit the winner on everything we were given, for as long as validation chose.
        refitted = False
        if refit:
            # A model fit on 70% of the rows loses to the plain default fit on all of
            # them: the refit may overrun by a quarter of the budget (on a loaded
            # machine trial times vary twofold, so the reserve alone is not enough).
            if n_all < REFIT_ALWAYS_ROWS or _now() + refit_cost() <= deadline + 0.25 * budget_s:
                refit_started = _now()
                with threadpool_limits(self.threads):
                    best_model = self._refit(best, x, y, task, n_classes, cat, seed)
                refitted = True
                if _now() > deadline + 0.25 * budget_s:
                    notes.append(
                        f"refit on all rows ran {_now() - max(deadline, refit_started):.1f} s past the "
                        f"budget: below {REFIT_ALWAYS_ROWS:,} rows it always runs, so the model never "
                        "sees fewer rows than the plain default would"
                    )
            else:
                notes.append(
                    f"refit on all rows skipped: it would take about {refit_cost():.1f} s "
                    "beyond the budget; the model is the one validation scored"
                )
        if not refitted and best.family != "lgbm":
            best_model = _wrap(best_model, task, n_classes, cat if best.family == "hist_gb" else [])
        booster, estimator = (best_model, None) if best.family == "lgbm" else (None, best_model)
        if best.family == "lgbm":
            knobs = {k: v for k, v in best.config.items() if k not in NOT_PARAMS}
            config: dict[str, Any] = {
                "params": {
                    **DEFAULT_LGBM,
                    **knobs,
                    **self._objective(task, n_classes),
                    "seed": seed,
                },
                "iterations": best_model.current_iteration() if refitted else best.iterations,
            }
        else:
            config = dict(best.config)
        shift["reweighted"] = bool(best.config.get("reweight"))
        result = FitResult(
            model=Model(schema, classes, best.family, config, booster, estimator, task=task),
            trials=trials,
            best=best,
            validation_score=best.score,
            holdout_score=holdout_score,
            metric=metric,
            shift=shift,
            warnings=notes,
            dropped_columns=dropped,
            cache=cache.stats.as_dict(),
            task=task,
            holdout_metrics=holdout_metrics,
            seconds=_now() - started,
            refit=refitted,
        )
        result.model.report = result.summary()
        if store is not None:
            try:
                # The best STORE_PER_FAMILY distinct configurations of each family (but
                # the linear one) that beat the plain LightGBM default, each with its
                # family, the rows it trained on, the rounds early stopping kept, and
                # its margin over the default: the next domain's warm start. A
                # neighbourhood per family, not the winner alone: another domain's
                # best is often a runner-up here, or another family's.
                floor = next(
                    (t for t in trials if t.family == "lgbm" and t.source == "default"), None
                )
                ranked = sorted(
                    (t for t in trials if t.family != "linear" and not t.partial),
                    key=lambda t: -_key(metric, t.score),
                )
                kept: list[dict[str, Any]] = []
                for t in ranked:
                    margin = _key(metric, t.score) - (
                        _key(metric, floor.score) if floor is not None else 0.0
                    )
                    if floor is not None and margin <= 0:
                        break
                    if sum(c["family"] == t.family for c in kept) == STORE_PER_FAMILY:
                        continue
                    cfg = {
                        "family": t.family,
                        **{
                            k: v
                            for k, v in t.config.items()
                            if not (t.family == "lgbm" and k == "n_estimators")
                        },
                    }
                    if cfg not in kept:
                        kept.append(cfg)
                        store.record(
                            dataset,
                            str(domain or ""),
                            meta,
                            {**cfg, "rounds": int(t.iterations), "train_rows": int(t.rows)},
                            margin,
                        )
            finally:
                store.close()
        return result

    def _refit(
        self,
        best: Trial,
        x: Array,
        y: Array,
        task: str,
        n_classes: int,
        cat: list[int],
        seed: int,
    ) -> Any:
        if best.family == "lgbm":
            knobs = {k: v for k, v in best.config.items() if k not in NOT_PARAMS}
            params = {
                **DEFAULT_LGBM,
                **knobs,
                **self._objective(task, n_classes),
                "verbose": -1,
                "seed": seed,
                "num_threads": self.threads,
            }
            rounds = _refit_rounds(best)
            balanced = best.config.get("class_weight") == "balanced" and task != "regression"
            weight = balanced_weights(y, n_classes) if balanced else None
            return lgb.train(
                params,
                lgb.Dataset(x, y, weight=weight, categorical_feature=cat),
                num_boost_round=rounds,
            )
        if best.family == "hist_gb":
            from sklearn.ensemble import (
                HistGradientBoostingClassifier,
                HistGradientBoostingRegressor,
            )

            cfg = dict(DEFAULT_HIST, **best.config)
            kwargs = {
                "learning_rate": cfg["learning_rate"],
                "max_leaf_nodes": int(cfg["max_leaf_nodes"]),
                "min_samples_leaf": int(cfg["min_samples_leaf"]),
                "l2_regularization": cfg["l2_regularization"],
                "early_stopping": False,
                "random_state": seed,
                "categorical_features": cat or None,
                "max_iter": max(1, best.iterations),
            }
            model: Any = (
                HistGradientBoostingRegressor(**kwargs)
                if task == "regression"
                else HistGradientBoostingClassifier(**kwargs)
            )
            model.fit(_hist_codes(x, cat), y)
            return _wrap(model, task, n_classes, cat)
        if best.family == "xgboost":
            import xgboost as xgb

            params = {
                **_xgb_params(best.config),
                "n_estimators": max(10, int(best.iterations * 1.1)),
                "n_jobs": self.threads,
                "random_state": seed,
            }
            model = (
                xgb.XGBRegressor(**params) if task == "regression" else xgb.XGBClassifier(**params)
            )
            model.fit(x, y, verbose=False)
            return _wrap(model, task, n_classes, [])
        model = self._linear((x, x[:1]), (y, y[:1]), task, n_classes)[0]
        return _wrap(model, task, n_classes, [])

    @staticmethod
    def _predict(trial: Trial, model: Any, x: Array, task: str, n_classes: int) -> Array:
        return _predict(trial, model, x, task, n_classes)


def _config_key(family: str, config: dict[str, Any]) -> str:
    return json.dumps([family, config], sort_keys=True, default=str)


def _transfer_holds(trials: list[Trial], metric: str, expected: dict[str, float]) -> bool:
    """Whether a warm-start guess beats every plain default so far by at least half the
    margin it had over its own default where it was stored (a guess that only ties
    the default here, within the validation's noise, is weak transfer)."""
    floor = [_key(metric, t.score) for t in trials if t.source == "default"]
    if not floor:
        return False
    for t in trials:
        if t.source == "warm start" and not t.partial:
            gain = _key(metric, t.score) - max(floor)
            there = max(0.0, expected.get(_config_key(t.family, t.config), 0.0))
            if gain > 0 and gain >= 0.5 * there:
                return True
    return False


def _close_pools(pools: list[TrialPool]) -> None:
    while pools:
        pools.pop().close()


class HistCodes:
    """A HistGradientBoosting model whose categorical codes are clipped as in training."""

    def __init__(self, model: Any, cat: list[int]) -> None:
        self.model = model
        self.cat = cat

    @property
    def classes_(self) -> Array:
        return np.asarray(self.model.classes_)

    def predict_proba(self, x: Array) -> Array:
        return np.asarray(self.model.predict_proba(_hist_codes(x, self.cat)))

    def predict(self, x: Array) -> Array:
        return np.asarray(self.model.predict(_hist_codes(x, self.cat)))


def _wrap(model: Any, task: str, n_classes: int, cat: list[int]) -> Any:
    inner: Any = HistCodes(model, cat) if cat else model
    return inner if task == "regression" else FullProba(inner, n_classes)


def _hist_codes(x: Array, cat: list[int]) -> Array:
    """HistGradientBoosting wants category codes below its 255 bins: rare codes share one."""
    if not cat:
        return x
    if all(not (np.nan_to_num(x[:, j], nan=0) >= 250).any() for j in cat):
        return x
    x = x.copy()
    for j in cat:
        col = x[:, j]
        col[col >= 250] = 250
    return x


def _sk_predict(model: Any, x: Array, task: str, n_classes: int) -> Array:
    if task == "regression":
        return np.asarray(model.predict(x), dtype=float)
    p = np.asarray(model.predict_proba(x), dtype=float)
    # Rows summing to one in float64: XGBoost's float32 probabilities are a few ulps off,
    # which scikit-learn's log loss flags (and a caller summing them would see).
    p /= p.sum(axis=1, keepdims=True)
    seen = np.asarray(model.classes_, dtype=int)
    if len(seen) == n_classes:
        return p
    out = np.zeros((len(x), n_classes))
    out[:, seen] = p
    return out


def _predict(trial: Trial, model: Any, x: Array, task: str, n_classes: int) -> Array:
    if trial.family == "lgbm":
        p = np.asarray(model.predict(x, num_iteration=trial.iterations or None))
        return np.column_stack([1 - p, p]) if task == "binary" else p
    if trial.family == "hist_gb":
        return _sk_predict(model, _hist_codes(x, _cat_of(model)), task, n_classes)
    return _sk_predict(model, x, task, n_classes)


def _cat_of(model: Any) -> list[int]:
    mask = getattr(model, "is_categorical_", None)
    return [] if mask is None else [int(j) for j in np.nonzero(mask)[0]]


def _best_of(trials: list[Trial], family: str, metric: str) -> Trial | None:
    own = [t for t in trials if t.family == family and not t.partial]
    return max(own, key=lambda t: _key(metric, t.score)) if own else None


def _promote(keys: list[float], eta: int) -> bool:
    """Whether the newest rung score (the last of ``keys``, higher better) is in the top
    1/``eta`` of the rung's scores so far (asynchronous successive halving, Li et al. 2020)."""
    newest = keys[-1]
    better = sum(1 for k in keys[:-1] if k > newest)
    return better < math.ceil(len(keys) / eta)


def _budget_rows(
    trials: list[Trial], n: int, deadline: float, must_finish: bool, budget_s: float
) -> int:
    """Training rows a HistGradientBoosting trial can afford, from LightGBM's measured pace.

    The two cost about the same per row and round; a must-finish default gets at
    least a tenth of the budget's worth, even past the deadline (and never fewer
    than 2,000 rows).
    """
    lgbm = [t for t in trials if t.family == "lgbm" and t.rows]
    if not lgbm:
        return n
    pace = min(t.fit_s / max(t.rows * max(t.rounds_trained, 1), 1) for t in lgbm)
    left = deadline - _now()
    if must_finish:
        left = max(left, 0.1 * budget_s)
    affordable = int(left / max(pace * PLAIN_ROUNDS, 1e-12))
    return int(min(n, max(affordable, min(n, 2_000))))


def _first_step_s(trials: list[Trial], family: str) -> float:
    """Seconds before a trial of ``family`` can first stop: 10 LightGBM rounds, one
    chunk of 50 HistGradientBoosting rounds, or a whole linear fit (from earlier trials)."""
    own = [t for t in trials if t.family == family and t.fit_s > 0]
    if not own:
        return 0.0
    if family == "linear":
        return min(t.fit_s for t in own)
    per_round = min(t.fit_s / max(t.rounds_trained, 1) for t in own)
    return per_round * (10 if family in ("lgbm", "xgboost") else 50)


def _xgb_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """The XGBoost model parameters of a configuration (the search's and the refit's)."""
    params: dict[str, Any] = {
        "max_depth": int(cfg.get("max_depth", 6)),
        "learning_rate": float(cfg.get("learning_rate", 0.1)),
        "tree_method": "hist",
    }
    for knob in ("min_child_weight", "subsample", "colsample_bytree", "reg_lambda"):
        if knob in cfg:
            params[knob] = float(cfg[knob])
    return params


def _refit_rounds(best: Trial) -> int:
    """LightGBM rounds for the refit on all rows: a tenth more than early stopping kept
    on the smaller training split; the plain default keeps its own number of rounds."""
    if best.source == "default":
        return max(1, best.iterations)
    return max(10, int(best.iterations * 1.1))


def _now() -> float:
    return time.monotonic()
