"""The learner's view of a table: a schema, and numpy matrices encoded by it.

Categorical columns are encoded as integer codes of the categories seen in
training (a category never seen becomes NaN, which the boosters treat as
missing); numeric and boolean columns become float32; a datetime column expands
to calendar parts (year, month, day, day of week, hour, day of year), which a
model can use on days it has not seen, unlike a raw timestamp under a time split.
The same schema encodes training and prediction data (a pandas frame or plain
dict rows), so a column that changes type or disappears is caught here.

Category keys are canonical: an integral number is the same category whether it
arrives as ``6``, ``6.0``, ``np.int64(6)`` or the training frame's ``'6.0'``.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tenfold.auto_learner.errors import DataError, SchemaMismatch

__all__ = ["Column", "Schema", "category_key", "epoch_seconds", "inspect_columns"]

DATE_PARTS = ("year", "month", "day", "dayofweek", "hour", "dayofyear")
MAX_CATEGORIES = 1000  # kept per column, most frequent first; the rest encode as missing


def epoch_seconds(s: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Seconds since 1970 for a datetime column, whatever its unit or time zone."""
    epoch = pd.Timestamp("1970-01-01", tz=s.dt.tz)
    values: np.ndarray[Any, np.dtype[np.float64]] = (
        (s - epoch).dt.total_seconds().to_numpy(dtype=np.float64)
    )
    return values


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, float | np.floating) and math.isnan(v)


def category_key(v: Any) -> str:
    """The canonical string of a category value (integral numbers without a fraction)."""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
    return str(v)


def _alias(text: str) -> str | None:
    """The canonical key of a stored category string that spells a number ('6.0' -> '6')."""
    try:
        f = float(text)
    except ValueError:
        return None
    return category_key(f) if math.isfinite(f) else None


def _name(name: Hashable) -> str:
    return repr(name)


@dataclass(frozen=True)
class Column:
    name: Any
    kind: str  # "numeric" | "categorical" | "datetime"
    categories: tuple[str, ...] = ()
    tz: str | None = None  # datetime columns: the training data's time zone

    @property
    def width(self) -> int:
        return len(DATE_PARTS) if self.kind == "datetime" else 1


def inspect_columns(
    df: pd.DataFrame, features: list[Any]
) -> tuple[list[Any], list[str], list[str]]:
    """The usable features, the columns dropped and one note per decision.

    Dropped with a note naming the column: all missing (or all infinite), one
    value only, unique strings on every row (an ID: it cannot generalise).
    Refused with :class:`DataError`: a type the learner cannot encode.
    """
    keep: list[Any] = []
    dropped: list[str] = []
    notes: list[str] = []
    n = len(df)
    for name in features:
        s = df[name]
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                dropped.append(str(name))
                notes.append(f"column {_name(name)} has no finite value; dropped")
                continue
            if np.ptp(finite) == 0 and finite.size == values.size:
                dropped.append(str(name))
                notes.append(f"column {_name(name)} is constant; dropped")
                continue
            keep.append(name)
            continue
        non_null = s.dropna()
        if non_null.empty:
            dropped.append(str(name))
            notes.append(f"column {_name(name)} has no value; dropped")
            continue
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            keep.append(name)
            continue
        if not (
            isinstance(s.dtype, pd.CategoricalDtype)
            or pd.api.types.is_bool_dtype(s.dtype)
            or pd.api.types.is_object_dtype(s.dtype)
            or pd.api.types.is_string_dtype(s.dtype)
        ):
            raise DataError(
                f"column {_name(name)} has type {s.dtype}, which the learner cannot use"
            )
        unique = non_null.nunique()
        if unique == 1:
            dropped.append(str(name))
            notes.append(f"column {_name(name)} is constant; dropped")
            continue
        if (
            not isinstance(s.dtype, pd.CategoricalDtype)
            and not pd.api.types.is_bool_dtype(s.dtype)
            and n >= 50
            and unique >= 0.95 * len(non_null)
            and non_null.map(lambda v: isinstance(v, str)).all()
        ):
            dropped.append(str(name))
            notes.append(f"column {_name(name)} is unique on every row (an ID); dropped")
            continue
        if pd.api.types.is_object_dtype(s.dtype):
            kinds = sorted({type(v).__name__ for v in non_null.head(10_000)})
            if len(kinds) > 1:
                notes.append(
                    f"column {_name(name)} mixes types ({', '.join(kinds)}): treated as categorical"
                )
        if unique > MAX_CATEGORIES:
            notes.append(
                f"column {_name(name)} has {unique} distinct values: the {MAX_CATEGORIES} most "
                "frequent kept, the rest encoded as missing"
            )
        keep.append(name)
    return keep, dropped, notes


@dataclass
class Schema:
    columns: list[Column]
    inf_policy: str = "nan"  # "nan": treat inf as missing; "refuse": raise
    _lookup: dict[int, dict[str, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def infer(cls, df: pd.DataFrame, features: list[Any], inf_policy: str = "nan") -> Schema:
        cols = []
        for name in features:
            s = df[name]
            if pd.api.types.is_bool_dtype(s.dtype):
                cols.append(Column(name, "numeric"))
            elif pd.api.types.is_datetime64_any_dtype(s.dtype):
                tz = s.dt.tz
                cols.append(Column(name, "datetime", tz=None if tz is None else str(tz)))
            elif (
                isinstance(s.dtype, pd.CategoricalDtype)
                or pd.api.types.is_object_dtype(s.dtype)
                or pd.api.types.is_string_dtype(s.dtype)
            ):
                keys = s.dropna().map(category_key)
                counts = keys.value_counts()
                top = (
                    counts.index[:MAX_CATEGORIES] if len(counts) > MAX_CATEGORIES else counts.index
                )
                cols.append(Column(name, "categorical", tuple(sorted(str(k) for k in top))))
            elif pd.api.types.is_numeric_dtype(s.dtype):
                cols.append(Column(name, "numeric"))
            else:
                raise DataError(
                    f"column {_name(name)} has type {s.dtype}, which the learner cannot use"
                )
        return cls(cols, inf_policy)

    @property
    def names(self) -> list[Any]:
        """The input columns, in order."""
        return [c.name for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        """The encoded matrix's columns (a datetime column gives one per calendar part)."""
        out: list[str] = []
        for c in self.columns:
            if c.kind == "datetime":
                out += [f"{c.name}.{p}" for p in DATE_PARTS]
            else:
                out.append(str(c.name))
        return out

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def categorical_indices(self) -> list[int]:
        """Matrix columns holding category codes."""
        out, j = [], 0
        for c in self.columns:
            if c.kind == "categorical":
                out.append(j)
            j += c.width
        return out

    def _codes(self, j: int) -> dict[str, int]:
        table = self._lookup.get(j)
        if table is None:
            col = self.columns[j]
            table = {c: i for i, c in enumerate(col.categories)}
            # Models saved before keys were canonical stored a float category as '6.0'.
            for c, i in list(table.items()):
                alias = _alias(c)
                if alias is not None:
                    table.setdefault(alias, i)
            self._lookup[j] = table
        return table

    @staticmethod
    def _category_codes(s: pd.Series, codes: dict[str, int]) -> np.ndarray[Any, Any]:
        """Codes of a column's values, keyed once per distinct value (not per row)."""
        if isinstance(s.dtype, pd.CategoricalDtype):
            per_category = np.array(
                [codes.get(category_key(v), np.nan) for v in s.cat.categories], dtype=np.float32
            )
            raw = s.cat.codes.to_numpy()
            out = np.full(len(s), np.nan, dtype=np.float32)
            ok = raw >= 0
            out[ok] = per_category[raw[ok]]
            return out
        index, uniques = pd.factorize(s.astype("object"), use_na_sentinel=True)
        per_value = np.array(
            [np.nan if _is_missing(v) else codes.get(category_key(v), np.nan) for v in uniques],
            dtype=np.float32,
        )
        out = np.full(len(s), np.nan, dtype=np.float32)
        ok = index >= 0
        out[ok] = per_value[index[ok]]
        return out

    def _date_parts(self, s: pd.Series, col: Column) -> np.ndarray[Any, np.dtype[np.float32]]:
        if not pd.api.types.is_datetime64_any_dtype(s.dtype):
            try:
                s = pd.to_datetime(s, utc=col.tz is not None, format="ISO8601")
            except (ValueError, TypeError):
                raise SchemaMismatch(
                    f"column {_name(col.name)} was a datetime in training but is {s.dtype} now"
                ) from None
        if col.tz is not None:
            s = s.dt.tz_localize("UTC") if s.dt.tz is None else s
            s = s.dt.tz_convert(col.tz)
        elif s.dt.tz is not None:
            s = s.dt.tz_localize(None)
        d = s.dt
        parts = [d.year, d.month, d.day, d.dayofweek, d.hour, d.dayofyear]
        return np.column_stack([p.to_numpy(dtype=np.float32, na_value=np.nan) for p in parts])

    def encode(self, df: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A float32 matrix in schema order; raises :class:`SchemaMismatch` on missing or retyped columns."""
        missing = [str(c.name) for c in self.columns if c.name not in df.columns]
        if missing:
            shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
            raise SchemaMismatch(
                f"prediction data lacks column(s) {shown} that the model was trained on"
            )
        out = np.empty((len(df), self.width), dtype=np.float32)
        j = 0
        for k, col in enumerate(self.columns):
            s = df[col.name]
            if col.kind == "datetime":
                out[:, j : j + col.width] = self._date_parts(s, col)
            elif col.kind == "categorical":
                out[:, j] = self._category_codes(s, self._codes(k))
            elif pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
                out[:, j] = s.to_numpy(dtype=np.float32, na_value=np.nan)
            elif pd.api.types.is_datetime64_any_dtype(s.dtype):
                out[:, j] = epoch_seconds(s)  # a model saved when datetimes were one number
            elif s.isna().all():
                out[:, j] = np.nan
            else:
                raise SchemaMismatch(
                    f"column {_name(col.name)} was numeric in training but is {s.dtype} now"
                )
            j += col.width
        return self._finite(out)

    def _finite(
        self, out: np.ndarray[Any, np.dtype[np.float32]]
    ) -> np.ndarray[Any, np.dtype[np.float32]]:
        bad = np.isinf(out)
        if bad.any():
            names = self.feature_names
            where = sorted({names[j] for j in np.nonzero(bad.any(axis=0))[0]})
            if self.inf_policy == "refuse":
                raise DataError(
                    f"infinite values in column(s) {', '.join(where)} (inf_policy='refuse')"
                )
            warnings.warn(f"infinite values in {', '.join(where)} treated as missing", stacklevel=3)
            out[bad] = np.nan
        return out

    def _row_date(self, i: int, col: Column, v: Any) -> list[float]:
        if isinstance(v, str):
            try:
                v = dt.datetime.fromisoformat(v)
            except ValueError:
                raise SchemaMismatch(
                    f"row {i}: column {_name(col.name)} must be an ISO date-time, got {v!r}"
                ) from None
        elif isinstance(v, int | float) and not isinstance(v, bool):
            v = dt.datetime.fromtimestamp(float(v), dt.UTC)  # seconds since 1970
        if not isinstance(v, dt.datetime):
            raise SchemaMismatch(
                f"row {i}: column {_name(col.name)} must be a date-time, got {type(v).__name__}"
            )
        if col.tz is not None:
            stamp = pd.Timestamp(v)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
            v = stamp.tz_convert(col.tz)
        elif v.tzinfo is not None:
            v = v.replace(tzinfo=None)
        return [
            float(v.year),
            float(v.month),
            float(v.day),
            float(v.weekday()),
            float(v.hour),
            float(v.timetuple().tm_yday),
        ]

    def encode_rows(self, rows: list[dict[Any, Any]]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Encode plain dict rows (the serving path: no pandas frame).

        A column is looked up by its name and, for a non-string name, by its
        string form (JSON keys are strings). ``None``, ``NaN`` and ``pd.NA`` are missing.
        """
        out = np.empty((len(rows), self.width), dtype=np.float32)
        for i, row in enumerate(rows):
            j = 0
            for k, col in enumerate(self.columns):
                if col.name in row:
                    v = row[col.name]
                elif not isinstance(col.name, str) and str(col.name) in row:
                    v = row[str(col.name)]
                else:
                    raise SchemaMismatch(f"row {i} lacks column {_name(col.name)}")
                if _is_missing(v):
                    out[i, j : j + col.width] = np.nan
                elif col.kind == "categorical":
                    code = self._codes(k).get(category_key(v))
                    out[i, j] = np.nan if code is None else code
                elif col.kind == "datetime":
                    out[i, j : j + col.width] = self._row_date(i, col, v)
                else:
                    try:
                        out[i, j] = float(v)
                    except (TypeError, ValueError):
                        raise SchemaMismatch(
                            f"row {i}: column {_name(col.name)} must be a number, got {v!r}"
                        ) from None
                j += col.width
        if self.inf_policy == "nan":
            out[np.isinf(out)] = np.nan
        elif np.isinf(out).any():
            raise DataError("infinite values in the rows (inf_policy='refuse')")
        return out

    def unseen_categories(self, df: pd.DataFrame) -> dict[str, int]:
        """How many values per categorical column were never seen in training."""
        out = {}
        for k, col in enumerate(self.columns):
            if col.kind == "categorical" and col.name in df.columns:
                known = self._codes(k)
                s = df[col.name].dropna().map(category_key)
                n = int((~s.isin(known.keys())).sum())
                if n:
                    out[str(col.name)] = n
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "inf_policy": self.inf_policy,
            "columns": [
                {"name": c.name, "kind": c.kind, "categories": list(c.categories), "tz": c.tz}
                for c in self.columns
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schema:
        cols = [
            Column(c["name"], c["kind"], tuple(c["categories"]), c.get("tz"))
            for c in data["columns"]
        ]
        return cls(cols, data.get("inf_policy", "nan"))
