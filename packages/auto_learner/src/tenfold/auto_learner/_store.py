"""The store of past runs (SQLite): dataset meta-features and the configurations that won.

A new search asks for the configurations that did best on the most similar
past datasets (nearest by meta-features) and tries them first: the warm start.
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

__all__ = ["RunStore", "meta_features"]


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
        self, meta: dict[str, float], k: int = 3, exclude_domain: str | None = None
    ) -> list[dict[str, Any]]:
        """The winning configurations of the ``k`` most similar past runs, nearest first."""
        try:
            rows = self._db.execute("select domain, meta, config, score from runs").fetchall()
        except sqlite3.Error as exc:
            raise DataError(f"run store {self.path} cannot be read: {exc}") from None
        target = np.array([meta[k_] for k_ in _KEYS]) / _SCALE
        scored = []
        for domain, meta_json, config_json, score in rows:
            if exclude_domain is not None and domain == exclude_domain:
                continue
            try:
                m = json.loads(meta_json)
                config = json.loads(config_json)
                vec = np.array([float(m.get(k_, 0.0)) for k_ in _KEYS]) / _SCALE
            except (TypeError, ValueError, AttributeError):
                continue  # a row another version wrote: not a suggestion
            if isinstance(config, dict):
                scored.append(
                    (round(float(np.linalg.norm(vec - target)), 6), -float(score), config)
                )
        scored.sort(key=lambda t: (t[0], t[1]))  # nearest run first, its best config first
        out: list[dict[str, Any]] = []
        for _, _, config in scored:
            if config not in out:
                out.append(config)
            if len(out) == k:
                break
        return out
