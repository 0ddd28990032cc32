from pathlib import Path

import pytest

import tenfold.parallel_framework as api
from tenfold.core.errors import ConfigError, TenfoldError
from tenfold.parallel_framework import errors


def test_every_error_has_a_docstring_and_the_one_root() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    ours = [c for c in classes if c.__module__ == errors.__name__]
    assert len(ours) >= 10
    for cls in ours:
        assert issubclass(cls, errors.ParallelFrameworkError) and issubclass(cls, TenfoldError)
        assert cls.__doc__ and "\n" not in cls.__doc__.strip()
    assert errors.TaskFailed.exit_code == 1 and errors.CycleError.exit_code == 2


def test_configuration_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tenfold.toml"
    path.write_text("[parallel_framework]\nbackend = 'inline'\nbatch_cap = 8\n")
    monkeypatch.setenv("TENFOLD_CONFIG", str(path))
    ex = api.Executor()
    assert ex.backend == "inline" and ex.workers == 1 and ex.batch_cap == 8
    monkeypatch.setenv("TENFOLD_PARALLEL_FRAMEWORK__BACKEND", "threads")
    monkeypatch.setenv("TENFOLD_PARALLEL_FRAMEWORK__WORKERS", "3")
    ex = api.Executor()
    assert ex.backend == "threads" and ex.workers == 3
    path.write_text("[parallel_framework]\nbackedn = 'inline'\n")
    with pytest.raises(ConfigError, match="unknown key 'backedn'"):
        api.Executor()


def test_benchmark_scenarios_are_declared_once_with_one_headline() -> None:
    from tenfold.core.bench import BenchContext
    from tenfold.parallel_framework._plugin import plugin

    assert plugin.scenarios is not None and plugin.commands
    scenarios = list(plugin.scenarios())
    names = [s.name for s in scenarios]
    assert len(names) == len(set(names))
    assert sum(s.headline for s in scenarios) == 1
    tables = {s.table for s in scenarios}
    assert {"Task Execution Performance", "Work-Stealing Performance", "Resource Usage"} <= tables
    # the in-process scenarios run end to end at smoke size (the Ray/Dask ones are in the remote tests)
    by_name = {s.name: s for s in scenarios}
    for name in ("stencil_100_threads", "memory_per_task_in_flight", "steal_4_workers_sleep"):
        scenario = by_name[name]
        ctx = BenchContext(mode="smoke", workdir=Path("."))
        with ctx.stack:
            outcome = scenario.ours.prepare(ctx)()
            assert outcome is not None and not isinstance(outcome, int) and outcome.ops > 0
            if scenario.peer is not None:
                assert scenario.peer.prepare(ctx)() is not None
    assert plugin.kernel is not None
    plugin.kernel()
