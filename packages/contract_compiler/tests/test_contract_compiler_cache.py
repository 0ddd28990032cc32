"""The content-hash cache, the parallel path and the configuration section."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenfold.contract_compiler import (
    ArtifactCache,
    CompileOptions,
    compile_source,
    generate_contract,
    load_config,
    shutdown_pool,
)
from tenfold.core.errors import ConfigError


def test_recompiling_an_unchanged_file_is_a_hit() -> None:
    cache = ArtifactCache(64 * 1024 * 1024)
    text = generate_contract(100, seed=5).ours
    first = compile_source(text, "g.ct", CompileOptions(cache=cache))
    again = compile_source(text, "g.ct", CompileOptions(cache=cache))
    assert (first.cache, again.cache) == ("miss", "hit")
    assert again.object_code == first.object_code
    assert again.jit().call("batch_1", [10]) == first.jit().call("batch_1", [10])


def test_editing_one_function_reuses_the_others() -> None:
    cache = ArtifactCache(64 * 1024 * 1024)
    text = generate_contract(100, seed=5).ours
    compile_source(text, "g.ct", CompileOptions(cache=cache, emit="none"))
    hits = cache.hits
    edited = text.replace('"batch too large"', '"batch is too large"')
    result = compile_source(edited, "g.ct", CompileOptions(cache=cache, emit="none"))
    assert result.cache == "partial"
    assert cache.hits - hits >= len(result.contract.fns) - 1


def test_cache_is_bounded_in_memory_and_on_disk(tmp_path: Path) -> None:
    cache = ArtifactCache(10_000, tmp_path)
    for i in range(20):
        cache.put(f"k{i}", bytes(1000))
    assert cache.size_bytes <= 10_000
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 10_000
    assert cache.get("k19") is not None
    assert cache.get("k0") is None


def test_parallel_compile_equals_serial() -> None:
    text = generate_contract(500, seed=9).ours
    try:
        serial = compile_source(text, "p.ct", CompileOptions(parallel_jobs=1, emit="llvm"))
        parallel = compile_source(text, "p.ct", CompileOptions(parallel_jobs=2, emit="llvm"))
        objects = compile_source(text, "p.ct", CompileOptions(parallel_jobs=2, emit="obj"))
    finally:
        shutdown_pool()
    assert len(objects.objects) == 2  # one object per worker's chunk of functions
    joined = objects.object_code
    assert joined[:4] == b"\x7fELF"
    for fn in objects.contract.fns:
        assert f"{objects.contract.name}.{fn.name}".encode() in joined
    assert len(serial.contract.fns) >= 24  # large enough to use the pool
    assert parallel.ir == serial.ir
    assert [(v.gid, v.status) for v in parallel.verdicts] == [
        (v.gid, v.status) for v in serial.verdicts
    ]


def test_config_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[compiler.performance]\noptimization_level = 3\ncache_size_mb = 5\n")
    cfg = load_config(path)
    assert (cfg.optimization_level, cfg.cache_size_mb) == (3, 5)
    assert cfg.parallel_jobs >= 1
    monkeypatch.setenv("TENFOLD_COMPILER__PERFORMANCE__OPTIMIZATION_LEVEL", "0")
    assert load_config(path).optimization_level == 0
    monkeypatch.delenv("TENFOLD_COMPILER__PERFORMANCE__OPTIMIZATION_LEVEL")
    path.write_text("[compiler.performance]\noptimisation_level = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'performance.optimisation_level'"):
        load_config(path)
    path.write_text("[compiler.performance]\noptimization_level = 4\n")
    with pytest.raises(ConfigError, match="optimization_level"):
        load_config(path)


def test_output_size_limit() -> None:
    from tenfold.contract_compiler import LimitExceeded

    text = generate_contract(100, seed=1).ours
    with pytest.raises(LimitExceeded, match="over max_output_bytes"):
        compile_source(text, "o.ct", CompileOptions(max_output_bytes=1000))
