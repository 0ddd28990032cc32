"""The learner's view of a table: a schema, and numpy matrices encoded by it.

Categorical columns are encoded as integer codes of the categories seen in
training (a category never seen becomes NaN, which the boosters treat as
missing); numeric columns become float32. The same schema encodes training and
prediction data, so a column that changes type or disappears is caught here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tenfold.auto_learner.errors import DataError, SchemaMismatch

__all__ = ["Column", "Schema", "epoch_seconds"]


def epoch_seconds(s: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Seconds since 1970 for a datetime column, whatever its unit or time zone."""
    epoch = pd.Timestamp("1970-01-01", tz=s.dt.tz)
    values: np.ndarray[Any, np.dtype[np.float64]] = (
        (s - epoch).dt.total_seconds().to_numpy(dtype=np.float64)
    )
    return values


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "numeric" | "categorical"
    categories: tuple[str, ...] = ()


@dataclass
class Schema:
    columns: list[Column]
    inf_policy: str = "nan"  # "nan": treat inf as missing; "refuse": raise
    _lookup: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def infer(cls, df: pd.DataFrame, features: list[str], inf_policy: str = "nan") -> Schema:
        cols = []
        for name in features:
            s = df[name]
            if (
                isinstance(s.dtype, pd.CategoricalDtype)
                or s.dtype == object
                or pd.api.types.is_string_dtype(s.dtype)
            ):
                cats = tuple(sorted({str(v) for v in s.dropna().unique()}))
                cols.append(Column(name, "categorical", cats))
            elif (
                pd.api.types.is_bool_dtype(s.dtype)
                or pd.api.types.is_numeric_dtype(s.dtype)
                or pd.api.types.is_datetime64_any_dtype(s.dtype)
            ):
                cols.append(Column(name, "numeric"))
            else:
                raise DataError(f"column {name!r} has type {s.dtype}, which the learner cannot use")
        return cls(cols, inf_policy)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.kind == "categorical"]

    def _codes(self, col: Column) -> dict[str, int]:
        if col.name not in self._lookup:
            self._lookup[col.name] = {c: i for i, c in enumerate(col.categories)}
        return self._lookup[col.name]

    def encode(self, df: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A float32 matrix in schema order; raises :class:`SchemaMismatch` on missing or retyped columns."""
        missing = [c.name for c in self.columns if c.name not in df.columns]
        if missing:
            raise SchemaMismatch(
                f"prediction data lacks column(s) {', '.join(missing)} that the model was trained on"
            )
        out = np.empty((len(df), len(self.columns)), dtype=np.float32)
        for j, col in enumerate(self.columns):
            s = df[col.name]
            if col.kind == "categorical":
                codes = self._codes(col)
                values = s.astype("object").map(
                    lambda v, codes=codes: np.nan if pd.isna(v) else codes.get(str(v), np.nan)
                )
                out[:, j] = values.to_numpy(dtype=np.float32, na_value=np.nan)
                continue
            if pd.api.types.is_datetime64_any_dtype(s.dtype):
                out[:, j] = epoch_seconds(s)
                continue
            if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
                raise SchemaMismatch(
                    f"column {col.name!r} was numeric in training but is {s.dtype} now"
                )
            out[:, j] = s.to_numpy(dtype=np.float32, na_value=np.nan)
        bad = ~np.isfinite(out) & ~np.isnan(out)
        if bad.any():
            where = sorted({self.columns[j].name for j in np.nonzero(bad.any(axis=0))[0]})
            if self.inf_policy == "refuse":
                raise DataError(
                    f"infinite values in column(s) {', '.join(where)} (inf_policy='refuse')"
                )
            warnings.warn(f"infinite values in {', '.join(where)} treated as missing", stacklevel=2)
            out[bad] = np.nan
        return out

    def encode_rows(self, rows: list[dict[str, Any]]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Encode plain dict rows (the serving path: no pandas)."""
        out = np.empty((len(rows), len(self.columns)), dtype=np.float32)
        for i, row in enumerate(rows):
            for j, col in enumerate(self.columns):
                if col.name not in row:
                    raise SchemaMismatch(f"row {i} lacks column {col.name!r}")
                v = row[col.name]
                if v is None:
                    out[i, j] = np.nan
                elif col.kind == "categorical":
                    out[i, j] = self._codes(col).get(str(v), np.nan)
                else:
                    try:
                        out[i, j] = float(v)
                    except (TypeError, ValueError):
                        raise SchemaMismatch(
                            f"row {i}: column {col.name!r} must be a number, got {v!r}"
                        ) from None
        if self.inf_policy == "nan":
            out[np.isinf(out)] = np.nan
        elif np.isinf(out).any():
            raise DataError("infinite values in the rows (inf_policy='refuse')")
        return out

    def unseen_categories(self, df: pd.DataFrame) -> dict[str, int]:
        """How many values per categorical column were never seen in training."""
        out = {}
        for col in self.columns:
            if col.kind == "categorical" and col.name in df.columns:
                known = self._codes(col)
                s = df[col.name].dropna().astype(str)
                n = int((~s.isin(known.keys())).sum())
                if n:
                    out[col.name] = n
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "inf_policy": self.inf_policy,
            "columns": [
                {"name": c.name, "kind": c.kind, "categories": list(c.categories)}
                for c in self.columns
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schema:
        cols = [Column(c["name"], c["kind"], tuple(c["categories"])) for c in data["columns"]]
        return cls(cols, data.get("inf_policy", "nan"))
