"""A fitted model and its compiled predictor (no pandas or sklearn wrapper on the hot path)."""

from __future__ import annotations

import base64
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenfold.auto_learner._omp  # noqa: F401  (before lightgbm loads OpenMP)

# isort: split
import lightgbm as lgb
import numpy as np
import pandas as pd

from tenfold.auto_learner._frame import Schema
from tenfold.auto_learner.errors import ModelFileError, SchemaMismatch
from tenfold.core.files import replace_file

__all__ = ["Model", "Predictor"]

FORMAT = "tenfold-auto-learner/1"
Array = np.ndarray[Any, Any]


class FullProba:
    """A scikit-learn classifier whose probabilities always have one column per class.

    A class absent from a training split (a class of two rows) gets no column from
    scikit-learn; here it gets probability zero, so every family's output lines
    up with the model's classes.
    """

    def __init__(self, estimator: Any, n_classes: int) -> None:
        self.estimator = estimator
        self.n_classes = n_classes

    def predict_proba(self, x: Array) -> Array:
        p = np.asarray(self.estimator.predict_proba(x), dtype=float)
        # Rows summing to one in float64: XGBoost's float32 probabilities are a few ulps
        # off, which scikit-learn's log loss flags (and a caller summing them would see).
        p /= p.sum(axis=1, keepdims=True)
        seen = np.asarray(self.estimator.classes_, dtype=int)
        if len(seen) == self.n_classes:
            return p
        out = np.zeros((len(x), self.n_classes))
        out[:, seen] = p
        return out


class Predictor:
    """The hot path: a raw LightGBM booster (or a bare estimator) over float32 rows."""

    __slots__ = ("_binary", "_booster", "_estimator", "_n_features", "_regression")

    def __init__(
        self,
        booster: lgb.Booster | None,
        estimator: Any,
        n_features: int,
        binary: bool,
        regression: bool = False,
    ) -> None:
        self._booster = booster
        self._estimator = estimator
        self._n_features = n_features
        self._binary = binary
        self._regression = regression

    def _check(self, x: Array) -> Array:
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self._n_features:
            raise SchemaMismatch(f"expected {self._n_features} features per row, got {x.shape[-1]}")
        return x

    def predict_values(self, x: Array) -> Array:
        """Predicted numbers for an encoded matrix (regression models)."""
        x = self._check(x)
        if not self._regression:
            raise SchemaMismatch("this is a classifier: use predict_proba")
        if self._booster is not None:
            return np.asarray(self._booster.predict(x, num_threads=1), dtype=float)
        return np.asarray(self._estimator.predict(x), dtype=float)

    def predict_proba(self, x: Array) -> Array:
        """Class probabilities for an encoded matrix (rows x features)."""
        x = self._check(x)
        if self._regression:
            raise SchemaMismatch(
                "this is a regression model: it predicts values, not probabilities"
            )
        if self._booster is not None:
            p = np.asarray(self._booster.predict(x, num_threads=1))
            return np.column_stack([1 - p, p]) if self._binary else p
        result: Array = self._estimator.predict_proba(x)
        return result

    def predict_one(self, row: Array) -> float:
        """P(class 1) for one encoded row (a value for regression): the batch-1 serving path."""
        if self._regression:
            return float(self.predict_values(row.reshape(1, -1))[0])
        if self._booster is not None:
            out = np.asarray(self._booster.predict(row.reshape(1, -1), num_threads=1))
            return float(out[0] if self._binary else out[0, 1])
        return float(self._estimator.predict_proba(row.reshape(1, -1))[0, 1])


@dataclass
class Model:
    """A fitted model: its schema, classes, family and configuration, and the estimator."""

    schema: Schema
    classes: list[Any]
    family: str
    config: dict[str, Any]
    booster: lgb.Booster | None = None
    estimator: Any = None
    report: dict[str, Any] = field(default_factory=dict)
    task: str = ""  # "binary" | "multiclass" | "regression"; "" in older files (classification)

    @property
    def binary(self) -> bool:
        return self.task != "regression" and len(self.classes) == 2

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def compiled(self) -> Predictor:
        return Predictor(
            self.booster, self.estimator, self.schema.width, self.binary, self.regression
        )

    def encode(self, df: pd.DataFrame) -> Array:
        return self.schema.encode(df)

    def predict_proba(self, df: pd.DataFrame) -> Array:
        return self.compiled().predict_proba(self.encode(df))

    def predict(self, df: pd.DataFrame) -> Array:
        """Predicted labels (classification) or values (regression)."""
        if self.regression:
            return self.compiled().predict_values(self.encode(df))
        proba = self.predict_proba(df)
        labels: Array = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        return labels

    def fine_tune(
        self, df: pd.DataFrame, y_index: Array, rounds: int = 50, learning_rate: float | None = None
    ) -> Model:
        """Continue boosting on new-domain data (transfer); returns a new model."""
        if self.booster is None:
            raise ModelFileError(f"fine-tuning needs a boosted model, this one is {self.family}")
        params = dict(self.config.get("params", {}))
        if learning_rate is not None:
            params["learning_rate"] = learning_rate
        params["verbose"] = -1
        data = lgb.Dataset(
            self.encode(df),
            label=y_index,
            categorical_feature=self.schema.categorical_indices,
            free_raw_data=True,
        )
        booster = lgb.train(
            params,
            data,
            num_boost_round=rounds,
            init_model=self.booster,
            keep_training_booster=True,
        )
        return Model(
            self.schema,
            self.classes,
            self.family,
            {**self.config, "fine_tuned_rounds": rounds},
            booster,
            None,
            dict(self.report),
            self.task,
        )

    # -- files ---------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write the model file atomically (a temporary file renamed into place)."""
        path = Path(path)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "schema": self.schema.to_json(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes],
            "family": self.family,
            "config": self.config,
            "report": self.report,
            "task": self.task,
        }
        if self.booster is not None:
            doc["booster"] = self.booster.model_to_string()
        else:
            doc["estimator_pickle"] = base64.b64encode(pickle.dumps(self.estimator)).decode()
        text = json.dumps(doc, default=str)
        try:
            replace_file(path, text)
        except OSError as exc:
            raise ModelFileError(f"cannot write model file {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path: Path | str) -> Model:
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ModelFileError(f"model file not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{path} is not a tenfold model file: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not a {FORMAT} model file")
        try:
            booster = lgb.Booster(model_str=doc["booster"]) if "booster" in doc else None
            estimator = (
                pickle.loads(base64.b64decode(doc["estimator_pickle"]))
                if "estimator_pickle" in doc
                else None
            )
            return cls(
                Schema.from_json(doc["schema"]),
                list(doc["classes"]),
                str(doc["family"]),
                dict(doc["config"]),
                booster,
                estimator,
                doc.get("report", {}),
                doc.get("task", ""),
            )
        except (
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            pickle.UnpicklingError,
            lgb.basic.LightGBMError,
        ) as exc:
            raise ModelFileError(
                f"{path} is a damaged model file: {type(exc).__name__}: {exc}"
            ) from None
