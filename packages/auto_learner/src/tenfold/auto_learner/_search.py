"""The search: model families and hyperparameters under a time budget, validated honestly.

Order of trials (cost-aware, cheap first): the plain LightGBM default (always a
candidate, so the search can never do worse than it on validation), then the
configurations that won on the most similar past datasets (warm start), then a
local search around the incumbent that grows model capacity step by step, and
the other families (scikit-learn's histogram gradient boosting, a linear model)
while the budget lasts. Every boosted trial stops early on the validation split.

Splits are never shuffled when the data has time: the last ``holdout_frac`` by
time is a holdout that the search never sees (its score is reported beside the
validation score, so the gap is visible), the ``valid_frac`` before it is the
validation split. With a domain column and no time, whole domains are held out.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from tenfold.auto_learner._cache import CacheStats, TrialCache
from tenfold.auto_learner._config import AutoLearnerConfig
from tenfold.auto_learner._frame import Schema
from tenfold.auto_learner._guards import check_target, find_leaks
from tenfold.auto_learner._model import Model
from tenfold.auto_learner._shift import shift_test
from tenfold.auto_learner._store import RunStore, meta_features
from tenfold.auto_learner.errors import BudgetError, DataError

__all__ = ["AutoLearner", "FitResult", "Trial"]

Array = np.ndarray[Any, Any]

DEFAULT_LGBM: dict[str, Any] = {
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_child_samples": 20,
    "feature_fraction": 1.0,
    "lambda_l2": 0.0,
}


@dataclass
class Trial:
    family: str
    config: dict[str, Any]
    score: float
    seconds: float
    iterations: int = 0
    source: str = "search"


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

    @property
    def gap(self) -> float | None:
        return (
            None
            if self.holdout_score is None
            else round(self.validation_score - self.holdout_score, 4)
        )

    def summary(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "best": {
                "family": self.best.family,
                "config": self.best.config,
                "source": self.best.source,
            },
            "validation_score": round(self.validation_score, 4),
            "holdout_score": None if self.holdout_score is None else round(self.holdout_score, 4),
            "validation_holdout_gap": self.gap,
            "trials": len(self.trials),
            "shift": self.shift,
            "warnings": self.warnings,
            "dropped_columns": self.dropped_columns,
            "trial_cache": self.cache,
        }


def _score(y: Array, proba: Array, n_classes: int) -> float:
    """AUC for two classes, one-vs-rest macro AUC for more (higher is better)."""
    try:
        if n_classes == 2:
            return float(roc_auc_score(y, proba[:, 1] if proba.ndim == 2 else proba))
        return float(roc_auc_score(y, proba, multi_class="ovr", labels=list(range(n_classes))))
    except ValueError:
        return float(-log_loss(y, proba, labels=list(range(n_classes))))


class AutoLearner:
    """Fit the best model a time budget allows; remember what won for the next domain."""

    def __init__(
        self, config: AutoLearnerConfig | None = None, *, store: Path | None = None
    ) -> None:
        self.config = config or AutoLearnerConfig()
        self.store_path = store
        self.cache_stats: CacheStats | None = None  # the last fit's trial cache

    # -- splits -----------------------------------------------------------------------
    @staticmethod
    def _split(
        df: pd.DataFrame,
        time_col: str | None,
        domain_col: str | None,
        valid_frac: float,
        holdout_frac: float,
        seed: int,
    ) -> tuple[Array, Array, Array, str]:
        n = len(df)
        if time_col is not None:
            order = np.argsort(df[time_col].to_numpy(), kind="stable")
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
        order = rng.permutation(n)
        n_hold, n_val = int(n * holdout_frac), int(n * valid_frac)
        return (
            order[n_hold + n_val :],
            order[n_hold : n_hold + n_val],
            order[:n_hold],
            "random (no time or domain column)",
        )

    # -- trials -----------------------------------------------------------------------
    def _lgbm(
        self,
        cfg: dict[str, Any],
        data: tuple[lgb.Dataset, lgb.Dataset],
        x_va: Array,
        y_va: Array,
        n_classes: int,
        seed: int,
        deadline: float,
    ) -> tuple[lgb.Booster, float, int]:
        train, valid = data
        params = {
            **DEFAULT_LGBM,
            **cfg,
            **self._dataset_params(seed),
            "objective": "binary" if n_classes == 2 else "multiclass",
        }
        if n_classes > 2:
            params["num_class"] = n_classes

        def stop_at_deadline(env: Any) -> None:
            if time.monotonic() > deadline and env.iteration > 10:
                raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

        booster = lgb.train(
            params,
            train,
            num_boost_round=int(cfg.get("n_estimators", 1000)),
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(30, verbose=False), stop_at_deadline],
        )
        proba = np.asarray(booster.predict(x_va, num_iteration=booster.best_iteration))
        proba = np.column_stack([1 - proba, proba]) if n_classes == 2 else proba
        return (
            booster,
            _score(y_va, proba, n_classes),
            int(booster.best_iteration or booster.current_iteration()),
        )

    def _dataset_params(self, seed: int) -> dict[str, Any]:
        # feature_pre_filter off: one binned dataset then serves every trial, whatever
        # its min_child_samples (LightGBM would otherwise drop features at build time).
        return {
            "verbose": -1,
            "seed": seed,
            "num_threads": self.config.performance.num_workers,
            "deterministic": True,
            "feature_pre_filter": False,
        }

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
        """A configuration near ``best``: capacity grows with the step (cheap first)."""
        cfg = dict(best)
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
            np.clip(cfg.get("learning_rate", 0.1) * math.exp(rng.normal(0, 0.5)), 0.01, 0.3)
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

    def _sklearn(
        self,
        family: str,
        xs: tuple[Array, Array],
        ys: tuple[Array, Array],
        n_classes: int,
        cat: list[int],
        seed: int,
    ) -> tuple[Any, float]:
        x_tr, x_va = xs
        y_tr, y_va = ys
        if family == "hist_gb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            model: Any = HistGradientBoostingClassifier(
                early_stopping=True,
                random_state=seed,
                categorical_features=cat or None,
                max_iter=300,
            )
        else:
            from sklearn.impute import SimpleImputer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            model = make_pipeline(
                SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=300)
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if family == "hist_gb" and cat:
                # sklearn wants categorical codes below 255 and non-negative; clip rare codes.
                x_tr = x_tr.copy()
                x_va = x_va.copy()
                for j in cat:
                    for arr in (x_tr, x_va):
                        col = arr[:, j]
                        col[col >= 250] = 250
            model.fit(x_tr, y_tr)
            proba = model.predict_proba(x_va)
        return model, _score(y_va, proba, n_classes)

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
        families: tuple[str, ...] = ("lgbm", "hist_gb", "linear"),
        refit: bool = True,
    ) -> FitResult:
        if not isinstance(budget_s, int | float) or not math.isfinite(budget_s) or budget_s <= 0:
            raise BudgetError(f"budget must be a positive number of seconds, got {budget_s!r}")
        if leakage not in ("drop", "warn", "keep"):
            raise BudgetError(f"leakage must be drop, warn or keep, got {leakage!r}")
        if inf_policy not in ("nan", "refuse"):
            raise BudgetError(f"inf_policy must be nan or refuse, got {inf_policy!r}")
        for col, what in ((time, "time"), (domain, "domain")):
            if col is not None and col not in df.columns:
                raise DataError(f"{what} column {col!r} is not in the data")
        if len(df) < 50:
            raise DataError(f"need at least 50 rows to train and validate, got {len(df)}")
        started = _now()
        deadline = started + budget_s
        y_raw = check_target(df, target)
        classes = sorted(pd.unique(y_raw).tolist(), key=lambda v: (str(type(v)), v))
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in y_raw], dtype=np.int32)
        n_classes = len(classes)
        features = [c for c in df.columns if c not in (target, time)]
        notes: list[str] = []
        dropped: list[str] = []
        leaks = find_leaks(df, features, y, seed=seed)
        for name, auc in leaks:
            msg = f"column {name!r} predicts {target!r} alone (AUC {auc}): likely leakage"
            if leakage == "drop":
                features.remove(name)
                dropped.append(name)
                msg += "; dropped"
            notes.append(msg)
            warnings.warn(msg, stacklevel=2)
        if not features:
            raise DataError(
                "no feature columns left after removing the target, time and leaky columns"
            )
        schema = Schema.infer(df, features, inf_policy)
        x = schema.encode(df)
        cat = schema.categorical_indices
        tr, va, ho, split_note = self._split(df, time, domain, valid_frac, holdout_frac, seed)
        notes.append(f"split {split_note}")
        if len(np.unique(y[tr])) < n_classes:
            notes.append("some classes are missing from the training split")
        # Shift between what we train on and what we will be judged on.
        shift_rep = shift_test(x[tr], x[np.concatenate([va, ho])], schema.names, cat, seed=seed)
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
                    else "training rows reweighted"
                )
            )
        shift = {
            "domain_classifier_auc": shift_rep.auc,
            "shifted": shift_rep.shifted,
            "top_features": shift_rep.top_features,
            "time_like_columns": shift_rep.time_like,
            "reweighted": weights is not None,
        }
        meta = meta_features(x[tr], y[tr], cat)
        store = RunStore(self.store_path) if self.store_path is not None else None
        suggestions = (
            store.suggest(meta, exclude_domain=None) if (store is not None and warm_start) else []
        )
        # Split matrices and binned datasets, built once and reused by every trial
        # while they fit under max_cache_mb (dropped when the search ends).
        cache = TrialCache(self.config.performance.max_cache_mb * 1024 * 1024)
        self.cache_stats = cache.stats

        def binned() -> tuple[tuple[lgb.Dataset, lgb.Dataset], int]:
            return self._binned(
                cache.get("x_train", lambda: _sized(x[tr])),
                cache.get("x_valid", lambda: _sized(x[va])),
                (y[tr], y[va]),
                weights,
                cat,
                seed,
            )

        trials: list[Trial] = []
        best_model: Any = None
        best: Trial | None = None
        queue: list[tuple[str, dict[str, Any], str]] = [("lgbm", dict(DEFAULT_LGBM), "default")]
        queue += [("lgbm", cfg, "warm start") for cfg in suggestions if cfg != DEFAULT_LGBM]
        rng = np.random.default_rng(seed)
        others = [f for f in families if f != "lgbm"]
        step = 0
        while _now() < deadline or not trials:
            if queue:
                family, cfg, source = queue.pop(0)
            elif others and step % 4 == 3:
                family, cfg, source = others.pop(0), {}, "family"
            else:
                base = best.config if best is not None and best.family == "lgbm" else DEFAULT_LGBM
                family, cfg, source = "lgbm", self._neighbours(base, rng, step), "search"
            step += 1
            if family != "lgbm" and family not in families:
                continue
            t0 = _now()
            x_va = cache.get("x_valid", lambda: _sized(x[va]))
            if family == "lgbm":
                data = cache.get("lgbm_binned", binned)
                model, score, iters = self._lgbm(cfg, data, x_va, y[va], n_classes, seed, deadline)
            else:
                x_tr = cache.get("x_train", lambda: _sized(x[tr]))
                model, score = self._sklearn(
                    family, (x_tr, x_va), (y[tr], y[va]), n_classes, cat, seed
                )
                iters = 0
            trial = Trial(family, cfg, round(score, 5), round(_now() - t0, 3), iters, source)
            trials.append(trial)
            if best is None or trial.score > best.score:
                best, best_model = trial, model
            if "lgbm" not in families and not others and not queue:
                break
            if step > 500:
                break
        assert best is not None
        cache.clear()
        holdout_score = None
        if len(ho):
            proba = self._predict(best, best_model, x[ho], n_classes)
            holdout_score = _score(y[ho], proba, n_classes)
        booster, estimator = (best_model, None) if best.family == "lgbm" else (None, best_model)
        config = (
            {"params": {**DEFAULT_LGBM, **best.config}, "iterations": best.iterations}
            if best.family == "lgbm"
            else dict(best.config)
        )
        if refit and best.family == "lgbm":
            # Refit on everything we were given, for as many rounds as validation chose (+10%).
            params = {
                **DEFAULT_LGBM,
                **best.config,
                "objective": "binary" if n_classes == 2 else "multiclass",
                "verbose": -1,
                "seed": seed,
                "num_threads": self.config.performance.num_workers,
            }
            if n_classes > 2:
                params["num_class"] = n_classes
            params.pop("n_estimators", None)
            rounds = max(10, int(best.iterations * 1.1))
            full_w = None
            booster = lgb.train(
                params,
                lgb.Dataset(x, y, weight=full_w, categorical_feature=cat),
                num_boost_round=rounds,
            )
            config["params"] = {
                k: v for k, v in params.items() if k not in ("verbose", "num_threads")
            }
            config["iterations"] = rounds
        elif best.family == "lgbm":
            config["params"] = {
                **DEFAULT_LGBM,
                **best.config,
                "objective": "binary" if n_classes == 2 else "multiclass",
            }
        result = FitResult(
            model=Model(schema, classes, best.family, config, booster, estimator),
            trials=trials,
            best=best,
            validation_score=best.score,
            holdout_score=holdout_score,
            metric="roc_auc" if n_classes == 2 else "roc_auc_ovr",
            shift=shift,
            warnings=notes,
            dropped_columns=dropped,
            cache=cache.stats.as_dict(),
        )
        result.model.report = result.summary()
        if store is not None:
            if best.family == "lgbm":
                store.record(
                    dataset,
                    str(domain or ""),
                    meta,
                    {k: v for k, v in best.config.items()},
                    best.score,
                )
            store.close()
        return result

    @staticmethod
    def _predict(trial: Trial, model: Any, x: Array, n_classes: int) -> Array:
        if trial.family == "lgbm":
            p = np.asarray(model.predict(x, num_iteration=model.best_iteration))
            return np.column_stack([1 - p, p]) if n_classes == 2 else p
        result: Array = model.predict_proba(x)
        return result


def _sized(a: Array) -> tuple[Array, int]:
    return a, int(a.nbytes)


def _now() -> float:
    return time.monotonic()
