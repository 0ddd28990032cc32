"""One trial, wherever it runs: in the searching process, or in a worker of the parallel
framework's executor (its processes backend here, Ray when given an address).

A trial reads :class:`TrialInputs` (the encoded matrix, the split and the
trial cache) and returns a :class:`TrialRun`: the model, its validation
predictions and how long the training itself took. The same function,
:func:`execute_trial`, serves both places, so a trial's result does not depend
on where it ran (apart from its clock).

Workers get the inputs once per search, not once per trial: the searching
process writes them as ``.npy`` files (under ``/dev/shm`` when it exists, so
the pages are shared memory), and each worker maps them and keeps its own
trial cache, bounded by ``max_cache_mb``, for the search's lifetime. On Ray
the arrays travel in the task graph instead (a remote worker shares no files).
Every trial in a worker runs under the governor's memory limit
(``[core.governor] memory_limit_bytes``): its resident set is checked before
and after training, and the process workers sit in a cgroup with that limit
when cgroups are available, so the kernel enforces it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenfold.auto_learner._omp  # noqa: F401  (before lightgbm loads OpenMP)

# isort: split
import lightgbm as lgb
import numpy as np

from tenfold.auto_learner._cache import TrialCache
from tenfold.core.errors import ResourceLimitExceeded

__all__ = [
    "TrialInputs",
    "TrialPool",
    "TrialRun",
    "TrialSpec",
    "balanced_weights",
    "execute_trial",
    "run_trial",
]

Array = np.ndarray[Any, Any]
_ARRAYS = ("x", "y", "tr", "va", "weights")
# A halving rung trains at most this many boosting rounds (a quarter of a search
# trial's 1000) on its quarter of the rows: ASHA's resource is rows and rounds both,
# so a rung costs about a sixteenth of a full trial, not a third.
RUNG_ROUNDS = 250


def balanced_weights(y: Array, n_classes: int) -> Array:
    """Row weights giving every class the same total weight (scikit-learn's "balanced":
    n_rows / (n_classes_present * class_count)); the mean weight is one."""
    counts = np.bincount(y.astype(np.int64), minlength=n_classes).astype(float)
    present = int((counts > 0).sum())
    per_class = np.where(counts > 0, len(y) / (present * np.maximum(counts, 1)), 0.0)
    out: Array = per_class[y.astype(np.int64)]
    return out


@dataclass
class TrialInputs:
    """What every trial of one search reads: the matrix, the split and the cache over them."""

    x: Array
    y: Array
    tr: Array
    va: Array
    weights: Array | None
    cat: list[int]
    task: str
    n_classes: int
    seed: int
    metric: str
    cache: TrialCache

    def sized(self, name: str) -> Array:
        """The training or validation rows of the matrix, built once and cached."""
        rows = self.tr if name == "x_train" else self.va

        def build() -> tuple[Array, int]:
            a = np.ascontiguousarray(self.x[rows])
            return a, int(a.nbytes)

        value: Array = self.cache.get(name, build)
        return value

    def binned(
        self, learner: Any, reweighted: bool, balanced: bool = False
    ) -> tuple[lgb.Dataset, lgb.Dataset]:
        w = self.weights if reweighted else None
        if balanced:
            cw = balanced_weights(self.y[self.tr], self.n_classes)
            w = cw if w is None else w * cw

        def build() -> tuple[tuple[lgb.Dataset, lgb.Dataset], int]:
            built: tuple[tuple[lgb.Dataset, lgb.Dataset], int] = learner._binned(
                self.sized("x_train"),
                self.sized("x_valid"),
                (self.y[self.tr], self.y[self.va]),
                w,
                self.cat,
                self.seed,
            )
            return built

        value: tuple[lgb.Dataset, lgb.Dataset] = self.cache.get(
            ("lgbm_binned", reweighted, balanced), build
        )
        return value

    def binned_rows(
        self, learner: Any, reweighted: bool, rows: int, balanced: bool = False
    ) -> tuple[lgb.Dataset, lgb.Dataset]:
        """The binned pair with the training side cut to ``rows`` rows (a halving rung).

        The cut is a LightGBM subset of the full binned set: the same bin edges, so
        the validation set binned against the full set serves it too. The rows are
        the first ``rows`` of one seeded permutation, the same for every trial.
        """
        full = self.binned(learner, reweighted, balanced)
        if rows <= 0 or rows >= len(self.tr):
            return full

        def build() -> tuple[tuple[lgb.Dataset, lgb.Dataset], int]:
            pick = np.sort(np.random.default_rng(self.seed).permutation(len(self.tr))[:rows])
            sub = full[0].subset(pick.tolist()).construct()
            return (sub, full[1]), rows * (self.x.shape[1] + 8)

        value: tuple[lgb.Dataset, lgb.Dataset] = self.cache.get(
            ("lgbm_binned", reweighted, balanced, rows), build
        )
        return value


@dataclass
class TrialSpec:
    """One trial to run: the family and configuration, and the clock times that bound it."""

    family: str
    config: dict[str, Any]
    source: str
    must_finish: bool
    stop_at: float | None  # time.monotonic() after which no round is added
    overrun_at: float | None = None  # a must-finish LightGBM trial switches to row sampling
    hist_rows: int = 0  # HistGradientBoosting's training rows (0: all of them)
    rung_rows: int = 0  # a successive-halving rung: train on this many rows (0: all)


@dataclass
class TrialRun:
    """What a trial gives back: the model and its validation predictions, or why it failed."""

    model: Any = None
    pred: Array | None = None
    score: float = float("nan")
    iterations: int = 0
    rounds_trained: int = 0
    fraction: float = 1.0  # the share of training rows the model saw
    rows: int = 0
    fit_s: float = 0.0
    seconds: float = 0.0
    ended_at: float = 0.0  # time.monotonic() when it ended (one clock for the machine)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    worker_pid: int = 0


def execute_trial(learner: Any, inputs: TrialInputs, spec: TrialSpec) -> TrialRun:
    """Train and score one trial with ``learner``'s trainers (LightGBM, HistGB, linear).

    A family that cannot train on this data (a LightGBM or scikit-learn refusal, no
    memory) gives a run with ``error`` set, never an exception.
    """
    from tenfold.auto_learner._search import _hist_codes, score_metrics  # noqa: F401

    t0 = time.monotonic()
    out = TrialRun(worker_pid=os.getpid())
    y, tr, va = inputs.y, inputs.tr, inputs.va
    task, n_classes, seed, metric = inputs.task, inputs.n_classes, inputs.seed, inputs.metric
    cfg, family = spec.config, spec.family
    if spec.rung_rows:
        rounds_key = "n_estimators" if family == "lgbm" else "max_iter"
        cfg = {**cfg, rounds_key: min(int(cfg.get(rounds_key, 1000)), RUNG_ROUNDS)}
    try:
        x_va = inputs.sized("x_valid")
        y_va = y[va]
        if family == "lgbm":
            data = inputs.binned_rows(
                learner,
                bool(cfg.get("reweight")),
                spec.rung_rows,
                balanced=cfg.get("class_weight") == "balanced" and task != "regression",
            )
            if 0 < spec.rung_rows < len(tr):
                out.fraction = spec.rung_rows / len(tr)
            t_fit = time.monotonic()
            model, pred, iters = learner._lgbm(
                cfg,
                data,
                x_va,
                task,
                n_classes,
                seed,
                spec.stop_at,
                overrun_at=spec.overrun_at,
                plain=spec.source == "default",
            )
            if learner.last_fraction < 1.0:
                out.fraction *= learner.last_fraction
                out.notes.append(
                    "the plain LightGBM default would overrun the budget: after five "
                    f"rounds each tree grew on a {out.fraction:.0%} row sample"
                )
            trained = int(model.current_iteration())
        elif family == "hist_gb":
            x_tr = inputs.sized("x_train")
            affordable = spec.hist_rows or len(tr)
            rows = min(affordable, spec.rung_rows or len(tr))
            if rows < len(tr):
                out.fraction = rows / len(tr)
                pick = np.random.default_rng(seed).permutation(len(tr))[:rows]
                x_tr, y_tr = x_tr[pick], y[tr][pick]
                if affordable < min(len(tr), spec.rung_rows or len(tr)):
                    out.notes.append(
                        f"HistGradientBoosting {spec.source} trained on {rows:,} of {len(tr):,} rows to fit the budget"
                    )
            else:
                y_tr = y[tr]
            t_fit = time.monotonic()
            model, pred, iters = learner._hist_gb(
                cfg,
                (x_tr, x_va),
                (y_tr, y_va),
                task,
                n_classes,
                inputs.cat,
                seed,
                spec.stop_at,
                metric,
            )
            trained = iters
        elif family == "xgboost":
            x_tr = inputs.sized("x_train")
            t_fit = time.monotonic()
            model, pred, iters = learner._xgboost(
                cfg, (x_tr, x_va), (y[tr], y_va), task, n_classes, seed, spec.stop_at
            )
            trained = int(model.get_booster().num_boosted_rounds())
        else:
            x_tr = inputs.sized("x_train")
            t_fit = time.monotonic()
            model, pred, iters = learner._linear((x_tr, x_va), (y[tr], y_va), task, n_classes)
            trained = 1
        out.score = score_metrics(task, y_va, pred, metric)
    except (ValueError, MemoryError, lgb.basic.LightGBMError, ResourceLimitExceeded) as exc:
        out.error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        out.seconds = time.monotonic() - t0
        return out
    now = time.monotonic()
    out.model, out.pred, out.iterations, out.rounds_trained = model, pred, iters, trained
    out.rows = int(len(tr) * out.fraction)
    out.fit_s, out.seconds, out.ended_at = now - t_fit, now - t0, now
    return out


# -- the worker side ------------------------------------------------------------------------------------
# One search's inputs per worker process, kept between its trials (a new search replaces them).
_WORKER: dict[str, tuple[TrialInputs, Any]] = {}


def run_trial(
    source: str | dict[str, Array | None],
    token: str,
    meta: dict[str, Any],
    spec: TrialSpec,
) -> TrialRun:
    """A trial in an executor's worker: the inputs from ``source`` (a directory of ``.npy``
    files, or the arrays themselves), cached under ``token`` for the search's later trials."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from tenfold.auto_learner._config import AutoLearnerConfig, PerformanceConfig
    from tenfold.auto_learner._search import AutoLearner
    from tenfold.core.governor import Governor, GovernorConfig

    governor = Governor(
        GovernorConfig(memory_limit_bytes=int(meta["memory_limit_bytes"])), start_sampler=False
    )
    held = _WORKER.get(token)
    if held is None:
        _WORKER.clear()  # an earlier search's inputs: never needed again
        if isinstance(source, str):
            arrays = {
                name: (
                    np.load(Path(source) / f"{name}.npy", mmap_mode="r")
                    if (Path(source) / f"{name}.npy").exists()
                    else None
                )
                for name in _ARRAYS
            }
        else:
            arrays = dict(source)
        x, y, tr, va = (arrays[k] for k in ("x", "y", "tr", "va"))
        assert x is not None and y is not None and tr is not None and va is not None
        inputs = TrialInputs(
            x,
            np.asarray(y),
            np.asarray(tr),
            np.asarray(va),
            None if arrays["weights"] is None else np.asarray(arrays["weights"]),
            list(meta["cat"]),
            str(meta["task"]),
            int(meta["n_classes"]),
            int(meta["seed"]),
            str(meta["metric"]),
            TrialCache(int(meta["max_cache_mb"]) * 1024 * 1024),
        )
        threads = int(meta["threads"])
        learner = AutoLearner(
            AutoLearnerConfig(
                performance=PerformanceConfig(
                    num_workers=threads, max_cache_mb=int(meta["max_cache_mb"])
                )
            )
        )
        learner.threads = threads
        held = (inputs, learner)
        _WORKER[token] = held
    inputs, learner = held
    what = f"auto learner trial ({spec.family}) in worker {os.getpid()}"
    try:
        governor.check_rss(what)
        with threadpool_limits(learner.threads):
            run = execute_trial(learner, inputs, spec)
        governor.check_rss(what)
    except ResourceLimitExceeded as exc:
        _WORKER.clear()
        return TrialRun(error=str(exc), worker_pid=os.getpid())
    return run


# -- the searching side -----------------------------------------------------------------------------------
def _shared_dir() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class TrialPool:
    """The parallel framework's executor, running a search's trials ``workers`` at a time.

    Found through the core's plugin registry (a system never imports another).
    ``address``: a Ray cluster (``ray://...`` or ``host:port``); otherwise the
    processes backend on this machine, its workers in a cgroup limited to the
    governor's memory limit when cgroups are available.
    """

    def __init__(self, workers: int, *, address: str | None = None) -> None:
        from tenfold.core.governor import Governor, cgroups_available
        from tenfold.core.plugins import import_object, load_system

        load_system("parallel_framework")  # registered, and importable: or PluginError
        executor_cls = import_object("tenfold.parallel_framework:Executor")
        self._graph_cls = import_object("tenfold.parallel_framework:Graph")
        self.workers = workers
        self.address = address
        self.memory_limit_bytes = Governor.from_config(
            start_sampler=False
        ).config.memory_limit_bytes
        kernel_limit = (
            self.memory_limit_bytes if (address is None and cgroups_available()) else None
        )
        self.executor: Any = executor_cls(
            "ray" if address else "processes",
            workers,
            address=address,
            memory_limit_bytes=kernel_limit,
        )
        self.token = uuid.uuid4().hex
        self._dir: str | None = None
        self._arrays: dict[str, Array | None] = {}
        self._meta: dict[str, Any] = {}
        self._warming: Any = None

    def warm_up(self) -> None:
        """Start the workers now (in the background): they import the trainers meanwhile."""
        if self.address is None:
            graph = self._graph_cls()
            for i in range(self.workers):
                graph.add(("warm", i), _warm, timeout_s=_START_S)
            self._warming = self.executor.start(graph)

    def ready(self) -> None:
        """Wait until the workers have started (and loaded the trainers)."""
        if self._warming is not None:
            with contextlib.suppress(Exception):
                self._warming.wait()
            self._warming = None

    def share(self, inputs: TrialInputs, *, threads: int, max_cache_mb: int) -> None:
        """Make the search's inputs readable by every worker (files here, arrays on Ray)."""
        arrays: dict[str, Array | None] = {
            "x": inputs.x,
            "y": inputs.y,
            "tr": inputs.tr,
            "va": inputs.va,
            "weights": inputs.weights,
        }
        self._meta = {
            "cat": list(inputs.cat),
            "task": inputs.task,
            "n_classes": inputs.n_classes,
            "seed": inputs.seed,
            "metric": inputs.metric,
            "threads": threads,
            "max_cache_mb": max_cache_mb,
            "memory_limit_bytes": self.memory_limit_bytes,
        }
        if self.address is not None:
            self._arrays = arrays
            return
        self._dir = tempfile.mkdtemp(prefix="tenfold-trials-", dir=_shared_dir())
        for name, a in arrays.items():
            if a is not None:
                np.save(Path(self._dir) / f"{name}.npy", np.ascontiguousarray(a))

    def run(self, specs: list[TrialSpec], timeout_s: float) -> list[TrialRun]:
        """Run the trials at once, one per worker; their runs in the order given.

        ``timeout_s`` bounds each trial from outside: a worker still busy then is
        killed (and replaced), its trial reported failed. A timeout also makes the
        executor hand each trial alone to an idle worker, so none waits behind another.
        """
        self.ready()
        source: str | dict[str, Array | None] = self._dir if self._dir is not None else self._arrays
        graph = self._graph_cls()
        for i, spec in enumerate(specs):
            graph.add(i, run_trial, source, self.token, self._meta, spec, timeout_s=timeout_s)
        result = self.executor.run(graph)
        out = []
        for i, spec in enumerate(specs):
            if i in result.failures:
                error = result.failures[i]
                out.append(TrialRun(error=f"{spec.family} trial failed in its worker: {error}"))
            else:
                out.append(result[i])
        return out

    def release(self) -> None:
        """Drop one search's shared inputs (the workers stay up for the next search)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._arrays = {}
        self.token = uuid.uuid4().hex  # the workers' cached inputs are stale from now on

    def close(self) -> None:
        """Stop the workers (after their start-up, if it is still running)."""
        if self._warming is not None:
            with contextlib.suppress(Exception):
                self._warming.wait(60)
            self._warming = None
        self.release()
        self.executor.close()


_START_S = 120.0  # a worker that cannot load the trainers in this long is replaced


def _warm() -> int:
    """A worker's first task: load the trainers (the search's own trials follow)."""
    import sklearn.ensemble  # noqa: F401

    import tenfold.auto_learner._search  # noqa: F401

    return os.getpid()
