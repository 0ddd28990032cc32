from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.chaos_engine import (
    ChaosEngine,
    CpuHog,
    FaultPoints,
    MemoryHog,
    PerformanceConfig,
    PointFault,
    fault_from_dict,
)
from tenfold.chaos_engine._journal import Journal, read_records, replay
from tenfold.chaos_engine._points import corrupt
from tenfold.chaos_engine.errors import (
    ConcurrencyLimit,
    EngineClosed,
    FaultQueueFull,
    FaultRefused,
    InjectedFault,
    InvalidFault,
    JournalLocked,
)
from tenfold.core.errors import ConfigError


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def perf(**kw: int) -> PerformanceConfig:
    return PerformanceConfig.model_validate(kw)


# -- fault validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"point": "db", "duration_s": 0}, "duration_s must be > 0"),
        ({"point": "db", "duration_s": -1}, "duration_s must be > 0"),
        ({"point": "db", "duration_s": math.nan}, "must be finite"),
        ({"point": "db", "duration_s": 1e12}, "a week"),
        ({"point": "db", "duration_s": "1"}, "must be a number"),
        ({"point": "db", "probability": 1.5}, "probability must be within"),
        ({"point": "db", "probability": -0.1}, "probability must be within"),
        ({"point": "db", "probability": math.inf}, "must be finite"),
        ({"point": "db", "action": "explode"}, "action must be"),
        ({"point": "db", "action": "delay"}, "needs delay_s > 0"),
        ({"point": "db; rm -rf"}, "point must be a name"),
        ({"point": "db", "colour": "red"}, "unknown parameter 'colour'"),
        ({}, "missing target parameter 'point'"),
    ],
)
def test_bad_point_faults_are_one_line_errors(params: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidFault, match=message) as info:
        fault_from_dict("point", params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("packet_loss", {"netns": "a", "percent": 120}, "percent must be within"),
        ("process_pause", {"pid": 0}, "pid must be an integer > 1"),
        ("process_kill", {}, "missing target parameter 'pid'"),
        ("connection_reset", {"netns": "a", "port": 70000}, "port must be within"),
        ("bandwidth", {"netns": "a"}, "missing target parameter 'interface'"),
        ("disk_error", {"mount": "/m", "source": "/s", "path_glob": "../etc/*"}, "path traversal"),
        ("disk_error", {"mount": "/m", "source": "/s", "path_glob": "/etc/passwd"}, "relative to"),
        ("disk_error", {"mount": "/m", "source": "/s", "errno_name": "ENOPE"}, "unknown errno"),
        ("disk_latency", {"mount": "/m", "source": "s"}, "source must be an absolute path"),
        ("disk_latency", {"mount": "/m", "source": "/s", "operations": ["nuke"]}, "operations"),
        ("disk_error", {"mount": "/m"}, "missing target parameter 'source'"),
        ("partition", {"netns": "a", "peer": "10.0.0.1; drop"}, "address or CIDR"),
        ("warp_core_breach", {}, "unknown fault type"),
        ("memory_hog", {"size_bytes": 0}, "size_bytes must be within"),
        ("network_latency", {"netns": "a", "interface": "e0", "jitter_ms": -1}, "jitter_ms"),
        ("network_latency", {"netns": "a", "interface": "e0", "latency_ms": 0}, "latency_ms"),
        ("network_latency", {"netns": "a", "interface": "e0", "port": 65536}, "port must be"),
        ("network_latency", {"netns": "a", "interface": "e0", "port": "80"}, "port must be"),
        ("network_latency", {"netns": "a", "interface": "e 0"}, "interface must be a name"),
    ],
)
def test_bad_os_faults_are_one_line_errors(
    kind: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidFault, match=message):
        fault_from_dict(kind, params)


@given(
    duration=st.floats(allow_nan=True, allow_infinity=True),
    probability=st.floats(allow_nan=True, allow_infinity=True),
)
@settings(max_examples=200, deadline=None)
def test_point_fault_accepts_exactly_the_valid_range(duration: float, probability: float) -> None:
    valid = (
        math.isfinite(duration)
        and 0 < duration <= 7 * 24 * 3600
        and math.isfinite(probability)
        and 0 <= probability <= 1
    )
    try:
        PointFault(point="p", duration_s=duration, probability=probability)
    except InvalidFault:
        assert not valid
    else:
        assert valid
        assert (
            fault_from_dict("point", {"point": "p", "duration_s": duration}).duration_s == duration
        )


# -- fault points ---------------------------------------------------------------------------


def test_point_without_fault_is_transparent(points: FaultPoints) -> None:
    @points.point("db.query")
    def query(x: int) -> int:
        return x * 2

    assert query(21) == 42
    assert points.decide("db.query") is None


def test_point_faults_raise_delay_corrupt_and_revert(
    points: FaultPoints, journal_dir: Path
) -> None:
    @points.point("db.query")
    def query() -> bytes:
        return b"row"

    @points.point("db.async")
    async def aquery() -> str:
        return "row"

    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), points=points, journal_dir=journal_dir
        ) as engine:
            handle = await engine.inject_fault(PointFault(point="db.query", action="raise"))
            with pytest.raises(InjectedFault, match=r"db\.query"):
                query()
            await handle.revert()
            await handle.revert()  # idempotent
            assert query() == b"row"
            corrupting = await engine.inject_fault(PointFault(point="db.async", action="corrupt"))
            assert await aquery() == "wor"
            await corrupting.revert()
            delay = await engine.inject_fault(
                PointFault(point="db.async", action="delay", delay_s=0.05)
            )
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await aquery() == "row"
            assert loop.time() - start >= 0.045
            await delay.revert()
            assert engine.active_faults == 0

    run(main())


def test_observed_fault_ratio_matches_probability(points: FaultPoints, journal_dir: Path) -> None:
    @points.point("svc")
    def call() -> int:
        return 1

    async def main() -> tuple[int, int]:
        async with await ChaosEngine.create(
            perf(), points=points, journal_dir=journal_dir
        ) as engine:
            await engine.inject_fault(PointFault(point="svc", probability=0.1))
            failures = 0
            for _ in range(20_000):
                try:
                    call()
                except InjectedFault:
                    failures += 1
            return failures, points.stats["svc"].decisions

    failures, _ = run(main())
    assert abs(failures / 20_000 - 0.1) < 0.01
    assert points.stats["svc"].decisions == 20_000  # counted when the rule was reverted


def test_ttl_reverts_fault(points: FaultPoints, journal_dir: Path) -> None:
    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), points=points, journal_dir=journal_dir
        ) as engine:
            handle = await engine.inject_fault(PointFault(point="ttl", duration_s=0.05))
            assert points.active() == {"ttl": 1}
            await asyncio.sleep(0.15)
            assert handle.reverted and points.active() == {}

    run(main())


@pytest.mark.parametrize("value", [b"abc", "abc", 5, 0, True, [1, 2], (1,), {"a": 1}, None, 2.5])
def test_corrupt_changes_the_value(value: object) -> None:
    assert corrupt(value) != value or value is None


# -- admission ---------------------------------------------------------------------------------


def test_concurrency_limit_refuses(points: FaultPoints, journal_dir: Path) -> None:
    async def main() -> None:
        cfg = perf(max_concurrent_faults=3)
        async with await ChaosEngine.create(cfg, points=points, journal_dir=journal_dir) as engine:
            for i in range(3):
                await engine.inject_fault(PointFault(point=f"p{i}"))
            with pytest.raises(ConcurrencyLimit, match="max_concurrent_faults = 3"):
                await engine.inject_fault(PointFault(point="p9"))
            snap = engine.collect_metrics(sample_kernel=False)
            assert snap.counters['faults_refused_total{reason="concurrency"}'] == 1

    run(main())


def test_queue_full_refuses_instead_of_waiting(points: FaultPoints, journal_dir: Path) -> None:
    class Slow:
        def undo_steps(self, fault: object, name: str) -> list[dict[str, object]]:
            return []

        async def apply(self, fault: object, name: str) -> object:
            await asyncio.sleep(0.05)

            class Done:
                async def revert(self) -> None:
                    return None

            return Done()

    async def main() -> None:
        cfg = perf(fault_queue_size=4)
        async with await ChaosEngine.create(cfg, points=points, journal_dir=journal_dir) as engine:
            engine.register_actuator("point", Slow())  # type: ignore[arg-type]
            results = await asyncio.gather(
                *(engine.inject_fault(PointFault(point="q")) for _ in range(10)),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, FaultQueueFull)]
            assert len(refused) == 6
            assert "fault_queue_size = 4" in str(refused[0])
            assert isinstance(refused[0], FaultRefused)

    run(main())


def test_duplicate_fault_id_and_closed_engine(points: FaultPoints, journal_dir: Path) -> None:
    async def main() -> None:
        engine = await ChaosEngine.create(perf(), points=points, journal_dir=journal_dir)
        await engine.inject_fault(PointFault(point="a", fault_id="same"))
        with pytest.raises(InvalidFault, match="duplicate fault id 'same'"):
            await engine.inject_fault(PointFault(point="b", fault_id="same"))
        await engine.close()
        assert points.active() == {}
        with pytest.raises(EngineClosed):
            await engine.inject_fault(PointFault(point="a"))

    run(main())


def test_governor_budgets_memory_hogs(journal_dir: Path) -> None:
    from tenfold.core.governor import Governor, GovernorConfig

    governor = Governor(
        GovernorConfig.model_validate({"memory_limit_bytes": 1 << 30}), start_sampler=False
    )

    async def main() -> None:
        async with await ChaosEngine.create(perf(), governor, journal_dir=journal_dir) as engine:
            with pytest.raises(FaultRefused, match="governor refused memory_hog"):
                await engine.inject_fault(MemoryHog(size_bytes=1 << 40))
            snap = engine.collect_metrics(sample_kernel=False)
            assert snap.counters['faults_refused_total{reason="governor"}'] == 1

    asyncio.run(main())


def test_per_target_rate_refuses_a_burst(points: FaultPoints, journal_dir: Path) -> None:
    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), points=points, journal_dir=journal_dir, per_target_rate_per_s=5
        ) as engine:
            for _ in range(5):
                await (await engine.inject_fault(PointFault(point="hot"))).revert()
            with pytest.raises(FaultRefused, match="point=hot: more than 5 faults a second"):
                await engine.inject_fault(PointFault(point="hot"))
            await engine.inject_fault(PointFault(point="cold"))  # other targets are unaffected

    asyncio.run(main())


def test_bad_experiment_name_is_refused(journal_dir: Path) -> None:
    async def main() -> None:
        with pytest.raises(InvalidFault, match="experiment name"):
            await ChaosEngine.create(perf(), experiment="../x", journal_dir=journal_dir)

    run(main())


def test_without_root_os_plane_refuses_and_data_plane_works(
    points: FaultPoints, journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI runs as root, so the unprivileged path is exercised by presenting another euid:
    # the refusal happens before any kernel call, on this check alone.
    import os

    from tenfold.chaos_engine.errors import OsPlaneUnavailable

    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), points=points, journal_dir=journal_dir
        ) as engine:
            with pytest.raises(
                OsPlaneUnavailable, match="needs root.*data-plane faults still work"
            ):
                await engine.inject_fault(CpuHog(duration_s=1))
            handle = await engine.inject_fault(PointFault(point="still-works"))
            assert points.active() == {"still-works": 1}
            await handle.revert()

    run(main())


# -- journal ---------------------------------------------------------------------------------


def test_second_engine_on_same_journal_is_refused(points: FaultPoints, journal_dir: Path) -> None:
    async def main() -> None:
        async with await ChaosEngine.create(perf(), points=points, journal_dir=journal_dir):
            with pytest.raises(JournalLocked, match="in use by another engine"):
                await ChaosEngine.create(perf(), points=points, journal_dir=journal_dir)
        # released on close: a new engine may open it
        async with await ChaosEngine.create(perf(), points=points, journal_dir=journal_dir):
            pass

    run(main())


def test_journal_group_commit_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal = Journal(path)
    journal.open()

    async def main() -> None:
        await asyncio.gather(
            *(
                journal.append_durable({"op": "inject", "id": f"f{i}", "undo": [], "deadline": 0})
                for i in range(50)
            )
        )

    run(main())
    journal.append({"op": "reverted", "id": "f3"})
    journal.close()
    with path.open("ab") as fh:
        fh.write(b'{"op":"inject","id":"torn"')  # killed mid-write
    records, _ = read_records(path)
    assert len(records) == 51
    state = replay(path)
    assert len(state.faults) == 49 and "f3" not in state.faults and "torn" not in state.faults
    assert json.loads(path.read_text().splitlines()[0])["op"] == "inject"


@pytest.mark.parametrize("fsync", [False, True])
def test_journal_fsyncs_once_per_batch_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    import os

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    journal = Journal(tmp_path / "j.journal", fsync=fsync)
    journal.open()

    async def main() -> None:
        records = [{"op": "inject", "id": f"f{i}", "undo": [], "deadline": 0} for i in range(30)]
        await asyncio.gather(*(journal.append_durable(r) for r in records))
        await journal.append_durable({"op": "inject", "id": "alone", "undo": [], "deadline": 0})

    run(main())
    journal.append({"op": "reverted", "id": "f1"}, sync=False)
    journal.close()
    assert len(synced) == (2 if fsync else 0)  # one per batch: 30 records, then 1
    assert len(replay(tmp_path / "j.journal").faults) == 30  # written either way


# -- monitoring -----------------------------------------------------------------------------------


def test_metrics_ring_is_bounded_and_prometheus_is_well_formed(
    points: FaultPoints, journal_dir: Path
) -> None:
    async def main() -> None:
        cfg = perf(monitoring_buffer_size=16)
        async with await ChaosEngine.create(cfg, points=points, journal_dir=journal_dir) as engine:
            for _ in range(20):
                handle = await engine.inject_fault(PointFault(point="m"))
                await handle.revert()
            snap = engine.collect_metrics()
            assert len(snap.samples) == 16
            assert snap.counters['faults_injected_total{kind="point"}'] == 20
            text = snap.prometheus()
            from prometheus_client.parser import text_string_to_metric_families

            families = {f.name: f for f in text_string_to_metric_families(text)}
            assert families["tenfold_chaos_faults_injected"].samples[0].value == 20
            assert "tenfold_chaos_faults_active" in families

    run(main())


def test_config_rejects_unknown_key(tmp_path: Path) -> None:
    from tenfold.chaos_engine._config import load_config

    path = tmp_path / "t.toml"
    path.write_text("[chaos_engine.performance]\nmax_concurrent_faults = 5\nqueue = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'performance\.queue'"):
        load_config(path)
    path.write_text("[chaos_engine.performance]\nfault_queue_size = 0\n")
    with pytest.raises(ConfigError, match="fault_queue_size"):
        load_config(path)


def _rss() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_governor_memory_bound_refuses_faults_instead_of_growing(journal_dir: Path) -> None:
    """The engine's hard upper bound: past the governor's limit a fault is refused
    with a clear error (the process keeps running), and admitted again once
    memory is back under the limit."""
    from tenfold.core.governor import Governor, GovernorConfig

    limit = _rss() + (64 << 20)
    governor = Governor(
        GovernorConfig.model_validate({"memory_limit_bytes": limit}), start_sampler=False
    )

    async def main() -> None:
        async with await ChaosEngine.create(perf(), governor, journal_dir=journal_dir) as engine:
            await engine.inject_fault(PointFault(point="a", duration_s=60))
            ballast = b"x" * (96 << 20)  # written, so resident
            with pytest.raises(FaultRefused, match=r"memory limit of [\d,]+ MiB reached"):
                await engine.inject_fault(PointFault(point="b", duration_s=60))
            assert engine.active_faults == 1
            snap = engine.collect_metrics(sample_kernel=False)
            assert snap.counters['faults_refused_total{reason="memory"}'] == 1
            del ballast
            await engine.inject_fault(PointFault(point="b", duration_s=60))
            assert engine.active_faults == 2

    asyncio.run(main())
