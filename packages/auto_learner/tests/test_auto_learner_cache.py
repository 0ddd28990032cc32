"""max_cache_mb bounds the trial cache: what a search keeps between trials."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.auto_learner import AutoLearner, AutoLearnerConfig, synthetic
from tenfold.auto_learner._cache import TrialCache
from tenfold.auto_learner._config import PerformanceConfig

MB = 1024 * 1024


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 500),
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 700)), max_size=80),
)
def test_the_cache_never_holds_more_than_its_bound(bound: int, gets: list[tuple[int, int]]) -> None:
    cache = TrialCache(bound)
    sizes: dict[int, int] = {}
    for key, asked in gets:
        size = sizes.setdefault(key, asked)  # a key always builds the same value
        built: list[int] = []

        def build(key: int = key, size: int = size, built: list[int] = built) -> tuple[str, int]:
            built.append(key)
            return f"value-{key}", size

        assert cache.get(key, build) == f"value-{key}"
        st_ = cache.stats
        assert st_.bytes <= bound and st_.peak_bytes <= bound
        if size > bound:
            assert built and key not in cache._entries  # too large: built, never kept
    assert cache.stats.hits + cache.stats.misses == len(gets)


def test_least_recently_used_goes_first() -> None:
    cache = TrialCache(30)
    for key in ("a", "b", "c"):
        cache.get(key, lambda key=key: (key, 10))
    cache.get("a", lambda: ("again", 10))  # a hit: "a" is now the most recent
    cache.get("d", lambda: ("d", 10))  # evicts "b"
    assert list(cache._entries) == ["c", "a", "d"] and cache.stats.evictions == 1
    with pytest.raises(ValueError):
        TrialCache(-1)


def _fit(max_cache_mb: int):
    # 20K rows x 20 float32 columns: the training split alone is about 1.1 MB.
    df = synthetic(20_000, features=20, seed=4)
    config = AutoLearnerConfig(
        performance=PerformanceConfig(max_cache_mb=max_cache_mb, num_workers=1)
    )
    learner = AutoLearner(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = learner.fit(df, "target", time="t", budget_s=1.0, seed=0, families=("lgbm",))
    return learner, result


def test_max_cache_mb_bounds_what_the_search_keeps() -> None:
    small, small_result = _fit(1)
    stats = small.cache_stats
    assert stats is not None
    assert stats.peak_bytes <= 1 * MB
    assert stats.too_large >= 1  # the training matrix is over the bound: not kept
    assert small_result.summary()["trial_cache"]["max_mb"] == 1.0

    roomy, roomy_result = _fit(1000)
    stats = roomy.cache_stats
    assert stats is not None
    assert stats.too_large == 0 and stats.evictions == 0
    assert stats.peak_bytes > 1 * MB  # everything kept ...
    assert stats.misses == 3  # ... built once: train and validation matrices, binned pair
    assert stats.hits >= len(roomy_result.trials) - 1
    # Either way the search learns (the cache changes what is rebuilt, not what is fit).
    assert small_result.validation_score > 0.7 and roomy_result.validation_score > 0.7
