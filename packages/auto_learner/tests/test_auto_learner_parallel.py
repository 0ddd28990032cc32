"""num_workers trials at once, on the parallel framework's process workers."""

from __future__ import annotations

import os
import warnings

import pytest

from tenfold.auto_learner import AutoLearner, AutoLearnerConfig, synthetic
from tenfold.auto_learner._config import PerformanceConfig


def _learner(workers: int) -> AutoLearner:
    return AutoLearner(AutoLearnerConfig(performance=PerformanceConfig(num_workers=workers)))


def _workers() -> set[int]:
    """This process's live worker children (loky's resource trackers, one per
    interpreter and gone with it, are not workers)."""
    me = os.getpid()
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    worker = b"LokyProcess" in f.read()
            except (OSError, ValueError, IndexError):
                continue
            if parent == me and worker:
                out.add(int(entry))
    return out


@pytest.mark.slow
def test_two_workers_run_trials_at_once_in_two_processes() -> None:
    df = synthetic(6_000, seed=3)
    # Only this test's segments count: /dev/shm is the machine's, and a run killed
    # elsewhere (another checkout's timeout) may have left its own behind.
    shm_before = set(_trial_segments())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _learner(2) as learner:
            # A fit of 60 s or more starts the workers itself; here they start first.
            learner.start_workers(wait=True)
            result = learner.fit(df, "target", time="t", budget_s=8.0, seed=0)
            again = learner.fit(df, "target", time="t", budget_s=8.0, seed=0)
            assert len(_workers()) == 2
    workers = {t.worker for t in result.trials[1:]}
    # The second fit found the workers up: the same two processes ran its trials.
    assert {t.worker for t in again.trials[1:]} == workers
    assert len(workers) == 2 and os.getpid() not in workers
    # The LightGBM default runs in the searching process (while workers would start);
    # then two trials at a time, one in each worker.
    assert result.trials[0].worker == os.getpid() and result.trials[0].source == "default"
    a, b = result.trials[1:3]
    assert a.worker != b.worker
    # HistGB's default and the small LightGBM that follows the defaults.
    assert {a.source, b.source} == {"default", "small model"}
    proba = result.model.predict_proba(df.head(50))
    assert proba.shape == (50, 2)
    # Every worker is gone once the learner is closed (each fit's shared inputs at its end).
    assert not _workers()
    assert not set(_trial_segments()) - shm_before


def _trial_segments() -> list[str]:
    return [p for p in os.listdir("/dev/shm") if p.startswith("tenfold-trials-")]


def test_a_trial_over_the_governors_memory_limit_is_refused(tmp_path) -> None:
    """The check every worker runs around each trial (here in this process: a cgroup
    that small would leave a worker thrashing rather than failing fast)."""
    import numpy as np

    from tenfold.auto_learner._trials import _WORKER, TrialSpec, run_trial

    x = np.random.default_rng(0).normal(size=(400, 3))
    for name, a in (
        ("x", x),
        ("y", (x[:, 0] > 0).astype(np.int32)),
        ("tr", np.arange(300)),
        ("va", np.arange(300, 400)),
    ):
        np.save(tmp_path / f"{name}.npy", a)
    meta = {
        "cat": [],
        "task": "binary",
        "n_classes": 2,
        "seed": 0,
        "metric": "roc_auc",
        "threads": 1,
        "max_cache_mb": 10,
        "memory_limit_bytes": 1024**2,  # 1 MiB: any Python process is over it
    }
    spec = TrialSpec("lgbm", {"n_estimators": 5}, "search", False, None)
    try:
        run = run_trial(str(tmp_path), "token", meta, spec)
        assert run.model is None and run.error is not None
        assert "memory limit" in run.error and "memory_limit_bytes" in run.error
        fine = run_trial(str(tmp_path), "token", {**meta, "memory_limit_bytes": 64 * 1024**3}, spec)
        assert fine.error is None and fine.pred is not None and fine.pred.shape == (100, 2)
    finally:
        _WORKER.clear()


@pytest.mark.slow
def test_trials_run_on_a_ray_cluster_given_its_address() -> None:
    """``address``: the trials run in Ray's workers (a loopback cluster here), the
    arrays travelling in the task graph, and the fit's result is the same kind."""
    from tenfold.core.plugins import import_object

    cluster_cls = import_object("tenfold.parallel_framework._raycluster:LocalRayCluster")
    df = synthetic(4_000, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with cluster_cls(nodes=1, cpus_per_node=2) as cluster:
            config = AutoLearnerConfig(performance=PerformanceConfig(num_workers=2))
            with AutoLearner(config, address=cluster.address) as learner:
                # A trial count, not the clock, bounds the search: Ray's start-up is slow.
                result = learner.fit(df, "target", time="t", budget_s=300.0, seed=0, max_trials=6)
    assert len(result.trials) == 6
    # The LightGBM default runs here while the workers start; the rest ran in Ray's.
    assert result.trials[0].worker == os.getpid() and result.trials[0].source == "default"
    remote = {t.worker for t in result.trials[1:]}
    assert remote and os.getpid() not in remote and 0 not in remote
    assert result.validation_score >= result.trials[0].score
    proba = result.model.predict_proba(df.head(50))
    assert proba.shape == (50, 2)
