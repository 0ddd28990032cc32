"""Detection by a learned model: an auto-learner classifier behind the autoblocker's hook.

The rules count (N events in a window); the learned detector looks at the shape
of a source's recent activity: how many events, how many distinct ports and
kinds, how fast they come, failed logins among them. :func:`features` computes
those over a sliding window per source, the same way when generating training
rows (:func:`training_frame`, simulated benign users and attackers) and when
scoring live events (:class:`LearnedDetector`, a
:class:`tenfold.autoblocker_ledger.Detector`), so what the model was fitted on is
what it sees. A detector keeps its windows in memory; the ledger sink rebuilds
them by replaying the ledger at start, so its decisions after a restart are the
ones it would have taken without one.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenfold.platform.errors import PlatformError

if TYPE_CHECKING:
    import pandas as pd

    from tenfold.auto_learner import Model
    from tenfold.autoblocker_ledger import Decision
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent

__all__ = ["FEATURES", "LearnedDetector", "features", "train_detector", "training_frame"]

FEATURES = (
    "events",
    "failed_logins",
    "distinct_ports",
    "distinct_kinds",
    "mean_gap_s",
    "span_s",
)
WINDOW_S = 60.0
_PORT = re.compile(r"\bport (\d{1,5})\b")


def _port(ev: LedgerEvent) -> str:
    for key in ("dport", "port"):
        if key in ev.evidence:
            return str(ev.evidence[key])
    m = _PORT.search(str(ev.evidence.get("line", "")))
    return m.group(1) if m else ""


def features(window: Sequence[tuple[int, str, str]]) -> dict[str, float]:
    """The features of one source's window: ``(time_ms, kind, port)`` tuples, oldest first."""
    n = len(window)
    span = (window[-1][0] - window[0][0]) / 1000 if n else 0.0
    return {
        "events": float(n),
        "failed_logins": float(sum(1 for _, k, _ in window if k == "ssh_failed_login")),
        "distinct_ports": float(len({p for _, _, p in window if p})),
        "distinct_kinds": float(len({k for _, k, _ in window})),
        "mean_gap_s": span / (n - 1) if n > 1 else WINDOW_S,
        "span_s": span,
    }


class _Windows:
    def __init__(self, window_s: float) -> None:
        self.window_ms = int(window_s * 1000)
        self.by_subject: dict[str, deque[tuple[int, str, str]]] = {}

    def add(self, subject: str, time_ms: int, kind: str, port: str) -> deque[tuple[int, str, str]]:
        w = self.by_subject.setdefault(subject, deque())
        w.append((time_ms, kind, port))
        while w and w[0][0] < time_ms - self.window_ms:
            w.popleft()
        return w


class LearnedDetector:
    """Scores each event's source with ``model``; bans it when P(attack) >= ``threshold``.

    Only address subjects are scored (a ban is of an address); at least
    ``min_events`` in the window are needed, so one stray event is never banned.
    """

    def __init__(
        self,
        model: Model,
        *,
        threshold: float = 0.9,
        ban_time_s: float = 600.0,
        min_events: int = 3,
        window_s: float = WINDOW_S,
    ) -> None:
        if not model.schema.names or not set(model.schema.names) <= set(FEATURES):
            raise PlatformError(
                f"the detector model must take features among {', '.join(FEATURES)}; "
                f"this one takes {', '.join(map(str, model.schema.names))}"
            )
        if not model.binary:
            raise PlatformError("the detector model must be a binary classifier (attack or not)")
        self.model = model
        self.predictor = model.compiled()
        self.threshold = threshold
        self.ban_time_s = ban_time_s
        self.min_events = min_events
        self.windows = _Windows(window_s)
        self.scored = 0

    def score(self, window: Sequence[tuple[int, str, str]]) -> float:
        import pandas as pd

        row = self.model.encode(pd.DataFrame([features(window)], columns=list(FEATURES)))  # by name
        self.scored += 1
        return self.predictor.predict_one(row[0])

    def __call__(self, event: LedgerEvent) -> Decision | None:
        from tenfold.autoblocker_ledger import Decision

        if event.domain == "platform":
            return None  # the platform's own records (dead letters, refusals)
        try:
            ipaddress.ip_address(event.subject)
        except ValueError:
            return None
        w = self.windows.add(event.subject, event.time_ms, event.kind, _port(event))
        if len(w) < self.min_events:
            return None
        p = self.score(w)
        if p < self.threshold:
            return None
        return Decision(
            action="ban",
            scope="ip",
            value=event.subject,
            duration_s=self.ban_time_s,
            origin=event.domain,
            reason=f"learned detector: P(attack) {p:.2f} over {len(w)} events",
            rule="learned",
            time_ms=event.time_ms,
        )


def _simulated(seed: int, n_sources: int) -> Iterator[tuple[bool, list[tuple[int, str, str]]]]:
    """Event sequences of benign users and attackers, each ``(attack, [(ms, kind, port)])``."""
    import random

    rng = random.Random(seed)
    for i in range(n_sources):
        attack = i % 2 == 1
        t = rng.randrange(0, 10_000_000)
        seq = []
        if attack:
            kind = rng.choice(["ssh_failed_login", "port_scan"])
            for _ in range(rng.randint(3, 40)):
                t += int(rng.expovariate(1 / rng.uniform(50, 3000)))
                port = str(rng.randint(1, 65535)) if kind == "port_scan" else "22"
                seq.append((t, kind, port if rng.random() < 0.9 else str(rng.randint(1024, 65535))))
        else:
            for _ in range(rng.randint(1, 6)):
                t += int(rng.uniform(8_000, 120_000))
                kind = rng.choice(["ssh_failed_login", "ssh_failed_login", "http_request"])
                seq.append((t, kind, rng.choice(["22", "443", "22"])))
        yield attack, seq


def training_frame(n_sources: int = 2000, *, seed: int = 0) -> pd.DataFrame:
    """Labelled feature rows (``attack`` 0/1) from simulated sources, one per event past the first."""
    import pandas as pd

    rows = []
    for attack, seq in _simulated(seed, n_sources):
        windows = _Windows(WINDOW_S)
        for t, kind, port in seq:
            w = windows.add("s", t, kind, port)
            if len(w) >= 2:
                rows.append({**features(w), "attack": int(attack)})
    return pd.DataFrame(rows, columns=[*FEATURES, "attack"])


def train_detector(
    out: Path, *, n_sources: int = 2000, budget_s: float = 5.0, seed: int = 0
) -> dict[str, Any]:
    """Fit the detector's model on :func:`training_frame` with the auto-learner; save it."""
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise PlatformError(f"cannot write {out}: {out.parent} is not a writable folder")
    from tenfold.auto_learner import AutoLearner

    df = training_frame(n_sources, seed=seed)
    result = AutoLearner().fit(
        df,
        "attack",
        budget_s=budget_s,
        seed=seed,
        families=("lgbm",),
        task="binary",
        leakage="keep",  # a feature that alone separates attacks is the point, not a leak
    )
    result.model.save(out)
    return {
        "model": str(out),
        "rows": len(df),
        "metric": result.metric,
        "validation": result.validation_score,
        "holdout": result.holdout_score,
    }
