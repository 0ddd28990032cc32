"""The benchmark scenarios are well formed and the in-process ones run at smoke size."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tenfold.autoblocker_ledger.bench import scenarios
from tenfold.core.bench import BenchContext, Outcome


def test_one_headline_and_unique_names() -> None:
    all_scenarios = scenarios()
    assert sum(s.headline for s in all_scenarios) == 1
    names = [s.name for s in all_scenarios]
    assert len(names) == len(set(names))
    rows = {s.row for s in all_scenarios if s.table == "Write Performance"}
    nodes = {"3 nodes", "5 nodes", "7 nodes", "9 nodes"}
    assert rows == nodes | {f"{n}, beside batched etcd transactions" for n in nodes}


@pytest.mark.parametrize(
    "name", ["merkle_inclusion_proofs", "embedded_group_commit", "snapshot", "recovery"]
)
def test_in_process_scenarios_run_at_smoke_size(name: str, tmp_path: Path) -> None:
    (scenario,) = [s for s in scenarios() if s.name == name]
    subjects = [scenario.ours] + ([scenario.peer] if scenario.peer else [])
    for subject in subjects:
        ctx = BenchContext(mode="smoke", workdir=tmp_path / subject.name.replace(" ", "_"))
        ctx.workdir.mkdir(parents=True)
        with ctx.stack:
            result = subject.prepare(ctx)()
        assert isinstance(result, Outcome) and result.ops > 0
        if result.latencies_ms is not None:
            assert len(result.latencies_ms) in (1, result.ops)


@pytest.mark.slow
@pytest.mark.service
def test_scaling_writers_run_in_their_own_processes_and_stop(tmp_path: Path) -> None:
    (scenario,) = [s for s in scenarios() if s.name == "scale_2_writers"]
    assert scenario.peer is not None
    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    with ctx.stack:
        for subject in (scenario.ours, scenario.peer):
            result = subject.prepare(ctx)()
            assert isinstance(result, Outcome)
            assert result.latencies_ms is not None and len(result.latencies_ms) == result.ops
            assert result.ops == (1000 if subject is scenario.ours else 200)
    # Writer processes and the cluster are gone once the scenario's stack closes.
    pattern = r"tenfold\.autoblocker_ledger\.bench"
    out = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "--", pattern], check=False, capture_output=True
    )
    assert out.returncode == 1, out  # 1: no process matched


def test_shard_rows_are_named_for_the_scaling_table() -> None:
    rows = [s for s in scenarios() if s.table == "Horizontal Scaling"]
    assert [s.name for s in rows] == [f"append_{n}_nodes" for n in (1, 2, 4, 8)]
    assert [s.modes for s in rows] == [("smoke", "quick", "full")] * 2 + [("full",)] * 2
    assert all(s.seed is not None and s.peer is not None for s in rows)


@pytest.mark.service
def test_two_shard_row_runs_both_sides_and_checks_them(tmp_path: Path) -> None:
    """Both sides put the same events in the same shards; the after-run checks pass."""
    (scenario,) = [s for s in scenarios() if s.name == "append_2_nodes"]
    assert scenario.peer is not None
    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    with ctx.stack:  # closing it runs ours' checkpoint check and the peer's key count
        ours = scenario.ours.prepare(ctx)()
        peer = scenario.peer.prepare(ctx)()
        assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
        assert ours.ops == peer.ops == 2000
        assert ours.result == peer.result and len(ours.result) == 2  # type: ignore[arg-type]
        assert all(n > 0 for n in ours.result)  # type: ignore[union-attr]


def test_peer_transactions_are_retried_when_etcd_times_out() -> None:
    """The peer's batched puts retry etcd's "request timed out" as our side does."""
    import asyncio

    import aetcd.exceptions

    from tenfold.autoblocker_ledger.bench import txn_puts

    class Event:
        def __init__(self, n: int) -> None:
            self.event_id = f"e{n}"

        def canonical(self) -> bytes:
            return self.event_id.encode()

    class FlakyEtcd:
        class transactions:  # aetcd names its put builders so
            @staticmethod
            def put(key: bytes, value: bytes) -> tuple[bytes, bytes]:
                return key, value

        def __init__(self) -> None:
            self.calls = 0
            self.stored: dict[bytes, bytes] = {}

        async def transaction(self, compare: list, success: list, failure: list) -> bool:
            self.calls += 1
            if self.calls == 1:
                raise aetcd.exceptions.ConnectionFailedError("etcdserver: request timed out")
            self.stored.update(success)
            return True

    etcd = FlakyEtcd()

    async def main() -> None:
        await asyncio.gather(*txn_puts(etcd, b"/p/", [Event(n) for n in range(200)]))

    asyncio.run(main())
    assert etcd.calls == 3  # two transactions of up to 128 puts, the first tried twice
    assert sorted(etcd.stored) == sorted(f"/p/e{n}".encode() for n in range(200))
