"""The store of past runs (SQLite): dataset meta-features and the configurations that won.

A new search asks for the configurations that did best on the most similar
past datasets (nearest by meta-features) and tries them first: the warm start.

What is stored is what transfers between domains of different sizes: each
configuration with its family, the training rows it was fitted on, the rounds
early stopping kept, and its margin over that run's plain default (raw scores of
two domains are not comparable; "beat the default there, by this much" is).
:func:`adapt` rescales a stored configuration's capacity to the new data's rows.

A run stores a neighbourhood, not only its winner: the best few configurations of
each family (``STORE_PER_FAMILY``). The winner of one domain is often not the
best guess for another: when none of the near runs' winners (:meth:`RunStore.suggest`)
beats the new data's plain default by half its margin there, the transfer is weak,
and the search tries each family they leave out at its best on the nearest run
(:meth:`RunStore.family_bests`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from tenfold.auto_learner.errors import DataError

__all__ = ["STORE_PER_FAMILY", "SUGGESTIONS", "RunStore", "adapt", "meta_features"]


def meta_features(
    x: np.ndarray[Any, Any], y_index: np.ndarray[Any, Any] | None, categorical: list[int]
) -> dict[str, float]:
    """Dataset descriptors the warm start compares (``y_index`` None: a regression target)."""
    n, d = x.shape
    if y_index is None:
        p = np.ones(0)
    else:
        counts = np.bincount(y_index.astype(int))
        p = counts[counts > 0] / counts.sum()
    missing = float(np.isnan(x).mean()) if x.size else 0.0
    return {
        "log_rows": math.log10(max(n, 1)),
        "log_features": math.log10(max(d, 1)),
        "frac_categorical": len(categorical) / max(d, 1),
        "classes": float(len(p)),
        "class_entropy": float(-(p * np.log2(p)).sum()),
        "missing": missing,
    }


_KEYS = ("log_rows", "log_features", "frac_categorical", "classes", "class_entropy", "missing")
_SCALE = np.array([1.0, 1.0, 0.5, 2.0, 0.5, 0.2])


# The capacity knobs that grow with the rows a tree sees (leaves per row held constant
# between domains: 124 leaves fitted on 15K rows overfit 4K rows), per family.
_LEAF_KNOBS = {"lgbm": ("num_leaves", 4, 1024), "hist_gb": ("max_leaf_nodes", 4, 255)}
# XGBoost grows trees by depth: the depth moves by log2 of the rows ratio (its leaves,
# 2**depth, then scale like the other families' leaves).
_DEPTH_KNOB = ("max_depth", 2, 12)
# Per run, the best configurations of each family that beat its default are stored;
# a warm start tries the nearest runs' SUGGESTIONS best, and when none of those beats
# the new data's default by half its margin there, one per family missing from them
# (RunStore.family_bests).
STORE_PER_FAMILY = 3
SUGGESTIONS = 3
# What a stored configuration says about its run rather than the point it is: two
# with the same other keys are one guess.
_BOOKKEEPING = ("rounds", "train_rows", "max_iter", "n_estimators", "margin")
# A stored configuration keeps at least this many rounds (LightGBM's default number):
# early stopping on a noisy validation may have kept only a few dozen, and the cap
# is twice that; early stopping still ends a trial sooner on the new data.
_MIN_ROUNDS = 100


def adapt(stored: dict[str, Any], rows: int) -> tuple[str, dict[str, Any]]:
    """A stored configuration made ready for ``rows`` training rows: (family, config).

    The tree size scales with the rows (the ratio clipped to 1/4..4; XGBoost's depth
    by log2 of it), the rounds
    cap is twice what early stopping kept (at least ``_MIN_ROUNDS``), and the
    bookkeeping keys go. Rows written before families were stored are LightGBM's.
    """
    cfg = dict(stored)
    family = str(cfg.pop("family", "lgbm"))
    rounds = cfg.pop("rounds", None)
    cfg.pop("margin", None)
    source_rows = cfg.pop("train_rows", None)
    knob = _LEAF_KNOBS.get(family)
    if knob is not None and isinstance(source_rows, int) and source_rows > 0 and knob[0] in cfg:
        name, low, high = knob
        ratio = min(4.0, max(0.25, rows / source_rows))
        cfg[name] = int(min(high, max(low, round(int(cfg[name]) * ratio))))
    name, low, high = _DEPTH_KNOB
    if family == "xgboost" and isinstance(source_rows, int) and source_rows > 0 and name in cfg:
        ratio = min(4.0, max(0.25, rows / source_rows))
        cfg[name] = int(min(high, max(low, round(int(cfg[name]) + math.log2(ratio)))))
    if isinstance(rounds, int) and rounds > 0:
        cap = max(_MIN_ROUNDS, 2 * rounds)
        if family == "lgbm":
            cfg["n_estimators"] = cap
        elif family == "hist_gb":
            cfg["max_iter"] = cap
    return family, cfg


class RunStore:
    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if path.is_dir():
            raise DataError(f"run store {path} is a directory, not a SQLite file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise DataError(f"cannot open run store {path}: {exc}") from None
        self.path = path
        try:
            self._db.execute(
                "create table if not exists runs (id integer primary key, dataset text, domain text,"
                " meta text, config text, score real, created real)"
            )
            self._db.execute("select domain, meta, config, score from runs limit 1").fetchall()
            self._db.commit()
        except sqlite3.Error as exc:
            self._db.close()
            raise DataError(f"run store {path} is not a usable SQLite store: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def record(
        self,
        dataset: str,
        domain: str,
        meta: dict[str, float],
        config: dict[str, Any],
        score: float,
    ) -> None:
        self._db.execute(
            "insert into runs (dataset, domain, meta, config, score, created) values (?, ?, ?, ?, ?, ?)",
            (dataset, domain, json.dumps(meta), json.dumps(config), score, time.time()),
        )
        self._db.commit()

    def count(self) -> int:
        return int(self._db.execute("select count(*) from runs").fetchone()[0])

    def suggest(
        self,
        meta: dict[str, float],
        k: int = SUGGESTIONS,
        exclude_domain: str | None = None,
        *,
        margins: bool = False,
    ) -> list[dict[str, Any]]:
        """The winning configurations of the ``k`` most similar past runs, nearest first
        (within a run, the largest margin over its default first); ``margins``: each
        with its margin there under ``"margin"``."""
        out: list[dict[str, Any]] = []
        # The best configuration of each of the nearest runs first, then each run's
        # second best, ...: a configuration that won on one domain is a guess for
        # another, and guesses from several domains fail less often together.
        for *_, minus_margin, config in sorted(
            self._ranked(meta, exclude_domain), key=lambda t: (t[0], t[2], t[3])
        ):
            if len(out) == k:
                break
            _take(out, {**config, "margin": -minus_margin} if margins else config)
        return out

    def family_bests(
        self, meta: dict[str, float], skip: set[str], exclude_domain: str | None = None
    ) -> list[dict[str, Any]]:
        """For each family not in ``skip``, its best configuration on the nearest run
        that stored one (nearest family first): the guesses to try when the winners
        :meth:`suggest` gives do not beat this data's default (by half their margin
        there)."""
        out: list[dict[str, Any]] = []
        families = set(skip)
        for _, family_rank, _, _, config in sorted(
            self._ranked(meta, exclude_domain), key=lambda t: (t[2], t[0])
        ):
            family = str(config.get("family", "lgbm"))
            if family_rank == 0 and family not in families:
                families.add(family)
                _take(out, config)
        return out

    def _ranked(
        self, meta: dict[str, float], exclude_domain: str | None
    ) -> list[tuple[int, int, float, float, dict[str, Any]]]:
        """Every stored configuration as (place in its run, place among its run's
        configurations of its family, distance of its run, minus its margin, config)."""
        try:
            rows = self._db.execute(
                "select dataset, domain, meta, config, score from runs"
            ).fetchall()
        except sqlite3.Error as exc:
            raise DataError(f"run store {self.path} cannot be read: {exc}") from None
        target = np.array([meta[k_] for k_ in _KEYS]) / _SCALE
        runs: dict[tuple[str, str, str], list[tuple[float, float, dict[str, Any]]]] = {}
        for dataset, domain, meta_json, config_json, score in rows:
            if exclude_domain is not None and domain == exclude_domain:
                continue
            try:
                m = json.loads(meta_json)
                config = json.loads(config_json)
                vec = np.array([float(m.get(k_, 0.0)) for k_ in _KEYS]) / _SCALE
            except (TypeError, ValueError, AttributeError):
                continue  # a row another version wrote: not a suggestion
            if isinstance(config, dict):
                distance = round(float(np.linalg.norm(vec - target)), 6)
                runs.setdefault((dataset, domain, meta_json), []).append(
                    (distance, -float(score), config)
                )
        ranked: list[tuple[int, int, float, float, dict[str, Any]]] = []
        for configs in runs.values():
            configs.sort(key=lambda t: t[1])
            seen: dict[str, int] = {}
            for place, (d, s_, c) in enumerate(configs):
                family = str(c.get("family", "lgbm"))
                ranked.append((place, seen.get(family, 0), d, s_, c))
                seen[family] = seen.get(family, 0) + 1
        return ranked


def _take(out: list[dict[str, Any]], config: dict[str, Any]) -> None:
    """Add ``config`` unless ``out`` has it: one configuration stored by several runs
    (its rounds and rows differ) is one guess, the nearest run's copy."""
    point = {k: v for k, v in config.items() if k not in _BOOKKEEPING}
    if all({k: v for k, v in c.items() if k not in _BOOKKEEPING} != point for c in out):
        out.append(config)
