"""The processes backend: real worker processes, SIGKILL mid-batch, timeouts, pickling, cgroups."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.core.testing import needs_root
from tenfold.parallel_framework import Executor, Graph
from tenfold.parallel_framework._workloads import last_layer, stencil_dask, stencil_expected
from tenfold.parallel_framework.errors import (
    TaskFailed,
    TaskTimeout,
    UnpicklableTaskError,
    UpstreamFailed,
    WorkerCrashed,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[Executor]:
    with Executor("processes", 2) as ex:
        yield ex


def record(log: str, key: str, sleep_s: float = 0.0) -> str:
    with open(log, "a") as f:
        f.write(key + "\n")
    if sleep_s:
        time.sleep(sleep_s)
    return key


def kill_self(log: str, key: str, marker: str) -> str:
    record(log, key)
    if not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return key


def runs(log: Path) -> collections.Counter[str]:
    return collections.Counter(log.read_text().split())


def test_stencil_matches_in_worker_processes(pool: Executor) -> None:
    n = 2000
    dsk = stencil_dask(n)
    result = pool.run(dsk, keys=last_layer(n))
    assert sum(result.values()) == stencil_expected(n)
    assert result.metrics.backend == "processes" and result.metrics.tasks == len(dsk)
    parent = os.getpid()
    pids = pool.run({"pid": (os.getpid,)})["pid"]
    assert pids != parent and pids in pool.worker_pids()


def test_task_failure_and_upstream_in_processes(pool: Executor) -> None:
    def bad() -> int:
        raise KeyError("missing thing")

    result = pool.run([("bad", bad, []), ("down", lambda x: x, ["bad"]), ("ok", lambda: 1, [])])
    assert result["ok"] == 1
    with pytest.raises(TaskFailed, match="missing thing") as info:
        result["bad"]
    assert "in bad" in info.value.traceback
    with pytest.raises(UpstreamFailed, match="'bad'"):
        result["down"]


def test_fused_chain_in_processes(pool: Executor) -> None:
    tasks = [("c0", lambda: 1, [])] + [
        (f"c{i}", lambda x: x * 2, [f"c{i - 1}"]) for i in range(1, 20)
    ]
    result = pool.run(tasks)
    assert result["c19"] == 2**19 and result.metrics.fused == 19


def test_unpicklable_function_is_named(pool: Executor) -> None:
    lock = threading.Lock()
    g = Graph()
    g.add("fine", lambda: 1)
    g.add("holds-a-lock", lambda: not lock.locked())
    with pytest.raises(UnpicklableTaskError, match="task 'holds-a-lock'"):
        pool.run(g)
    g2 = Graph()
    g2.add("lock-arg", lambda x: x, threading.Lock())
    with pytest.raises(UnpicklableTaskError, match="task 'lock-arg': its arguments"):
        pool.run(g2)


def test_unpicklable_result_fails_that_task_only(pool: Executor) -> None:
    result = pool.run({"lock": (threading.Lock,), "n": (int, "7")})
    assert result["n"] == 7
    with pytest.raises(TaskFailed, match="cannot be sent back"):
        result["lock"]


def test_sigkill_mid_batch_no_task_lost_or_run_twice(tmp_path: Path, pool: Executor) -> None:
    log, marker = str(tmp_path / "log"), str(tmp_path / "marker")
    g = Graph()
    keys = [f"t{i}" for i in range(60)]
    for key in keys[:30]:
        g.add(key, record, log, key, 0.002)
    killer = g.add("killer", kill_self, log, "killer", marker)
    g.add("after-killer", record, log, "after-killer", after=["killer"])
    for key in keys[30:]:
        g.add(key, record, log, key, 0.002)
    result = pool.run(g)
    counts = runs(tmp_path / "log")
    assert all(counts[k] == 1 for k in keys), counts  # none lost, none twice
    assert counts["killer"] == 1 and counts["after-killer"] == 0
    with pytest.raises(WorkerCrashed, match="died"):
        result[killer.key]
    with pytest.raises(UpstreamFailed):
        result["after-killer"]
    assert result.metrics.respawns == 1
    assert len(pool.worker_pids()) == 2


def test_sigkill_with_retries_reruns_only_the_running_task(tmp_path: Path, pool: Executor) -> None:
    log, marker = str(tmp_path / "log"), str(tmp_path / "marker")
    g = Graph()
    keys = [f"t{i}" for i in range(40)]
    for key in keys[:20]:
        g.add(key, record, log, key)
    g.add("killer", kill_self, log, "killer", marker, retries=1, backoff_s=0.01)
    for key in keys[20:]:
        g.add(key, record, log, key)
    result = pool.run(g)
    assert result.ok and result["killer"] == "killer"
    counts = runs(tmp_path / "log")
    assert counts["killer"] == 2 and all(counts[k] == 1 for k in keys)


def test_worker_killed_from_outside_is_respawned(tmp_path: Path) -> None:
    log = tmp_path / "log"
    g = Graph()
    keys = [f"t{i}" for i in range(40)]
    for key in keys:
        g.add(key, record, str(log), key, 0.05, retries=1, backoff_s=0.0)
    with Executor("processes", 2) as ex:
        handle = ex.start(g)
        victim = ex.worker_pids()[0]
        deadline = time.monotonic() + 20
        while (
            not log.exists() or len(log.read_text().split()) < 5
        ) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)
        result = handle.wait(60)
        assert victim not in ex.worker_pids()
    assert result.ok, result.failures
    counts = runs(log)
    assert set(counts) == set(keys)
    assert sum(1 for k in keys if counts[k] == 2) <= 1  # only the task running at the kill
    assert result.metrics.respawns == 1


def test_timeout_kills_the_worker_and_the_run_goes_on(pool: Executor) -> None:
    g = Graph()
    g.add("stuck", time.sleep, 30, timeout_s=0.3)
    g.add("after", lambda _: 1, g["stuck"])
    for i in range(20):
        g.add(i, lambda i: i * i, i)
    before = set(pool.worker_pids())
    t = time.monotonic()
    result = pool.run(g)
    assert time.monotonic() - t < 10
    with pytest.raises(TaskTimeout, match="timeout"):
        result["stuck"]
    with pytest.raises(UpstreamFailed):
        result["after"]
    assert [result[i] for i in range(20)] == [i * i for i in range(20)]
    assert len(before - set(pool.worker_pids())) == 1


@pytest.mark.root
@needs_root("cgroups")
def test_process_workers_run_under_a_governor_cgroup() -> None:
    from tenfold.core.governor import cgroups_available, leftover_cgroups

    if not cgroups_available():
        pytest.skip("cgroup v1 controllers are not mounted")

    def hog() -> int:
        block = bytearray(600 * 1024 * 1024)
        return len(block)

    with Executor("processes", 2, cpu_quota_pct=50, memory_limit_bytes=256 * 1024 * 1024) as ex:
        result = ex.run({"x": (os.getpid,)})
        cgroup = ex.cgroup
        assert cgroup is not None
        name = cgroup.name
        assert set(ex.worker_pids()) <= set(cgroup.pids())
        assert result["x"] in cgroup.pids()
        quota = (cgroup.path("cpu") / "cpu.cfs_quota_us").read_text().strip()
        assert quota == "50000"
        g = Graph()
        g.add("hog", hog)
        g.add("small", lambda: 3)
        out = ex.run(g)
        with pytest.raises(WorkerCrashed):
            out["hog"]
        assert out["small"] == 3
        assert cgroup.stats()["oom_kills"] >= 1 or cgroup.stats()["memory_failcnt"] >= 1
        assert set(ex.worker_pids()) <= set(cgroup.pids())  # the respawned worker too
    assert name not in leftover_cgroups()


# -- whole sub-graphs per batch (closures), reports through the shared-memory log ----------------------
def stencil_of(fn_for: dict[str, object], width: int, depth: int) -> dict[str, object]:
    """A stencil whose node functions can be overridden per key (others: inc_sum)."""
    from tenfold.parallel_framework._workloads import inc_sum

    dsk: dict[str, object] = {}
    for layer in range(depth):
        for i in range(width):
            key = f"s-{layer}-{i}"
            deps = [f"s-{layer - 1}-{j}" for j in (i - 1, i, i + 1) if layer and 0 <= j < width]
            dsk[key] = (fn_for.get(key, inc_sum), *deps)
    return dsk


def test_trivial_tasks_travel_as_whole_subgraphs(pool: Executor) -> None:
    n = 1000
    dsk = stencil_dask(n)
    pool.run(dsk, keys=last_layer(n))  # the workers measure the function's cost
    result = pool.run(dsk, keys=last_layer(n))
    assert sum(result.values()) == stencil_expected(n)
    # Levels of the stencil went out together: far fewer messages than tasks.
    assert result.metrics.batches * 20 <= len(dsk), result.metrics


def boom(*_: int) -> int:
    raise ValueError("boom in the middle")


def test_failure_inside_a_closure_fails_only_its_descendants(pool: Executor) -> None:
    from tenfold.parallel_framework._workloads import inc_sum

    width, depth = 12, 12
    pool.run(stencil_of({}, width, depth))  # learn inc_sum's cost: closures form
    dsk = stencil_of({"s-3-5": boom}, width, depth)
    result = pool.run(dsk)
    assert result.metrics.batches < len(dsk)
    with pytest.raises(TaskFailed, match="boom in the middle"):
        result["s-3-5"]
    # The failure's light cone: layer L, columns 5 +- (L - 3).
    for layer in range(depth):
        for i in range(width):
            key = f"s-{layer}-{i}"
            if layer > 3 and abs(i - 5) <= layer - 3:
                with pytest.raises(UpstreamFailed, match="'s-3-5'"):
                    result[key]
            elif key != "s-3-5":
                assert isinstance(result[key], int)
    # Everything outside the cone has the value a sequential evaluation gives.
    seq: dict[str, int] = {}
    for key, (fn, *deps) in dsk.items():
        if fn is inc_sum:
            ins = [seq.get(d, -1) for d in deps]
            seq[key] = -1 if -1 in ins else inc_sum(*ins)
    cone = {f"s-{la}-{i}" for la in range(4, depth) for i in range(width) if abs(i - 5) <= la - 3}
    assert {k for k, v in seq.items() if v < 0} == cone
    assert all(result[k] == v for k, v in seq.items() if v >= 0)


def flaky(marker: str, *values: int) -> int:
    if not os.path.exists(marker):
        Path(marker).touch()
        raise RuntimeError("first attempt fails")
    return sum(values) + 1


def test_retry_inside_a_closure_reruns_the_skipped_dependents(
    tmp_path: Path, pool: Executor
) -> None:
    width, depth = 10, 10
    pool.run(stencil_of({}, width, depth))
    g = Graph()
    nodes: dict[str, object] = {}
    from tenfold.parallel_framework._workloads import inc_sum

    for layer in range(depth):
        for i in range(width):
            key = f"s-{layer}-{i}"
            deps = [
                nodes[f"s-{layer - 1}-{j}"] for j in (i - 1, i, i + 1) if layer and 0 <= j < width
            ]
            if key == "s-2-4":
                nodes[key] = g.add(key, flaky, str(tmp_path / "m"), *deps, retries=1, backoff_s=0.0)
            else:
                nodes[key] = g.add(key, inc_sum, *deps)
    result = pool.run(g)
    assert result.ok, result.failures
    assert result.metrics.retries == 1
    last = [result[f"s-{depth - 1}-{i}"] for i in range(width)]
    seq = stencil_dask(width * depth)
    assert len(seq) == width * depth
    assert sum(last) == stencil_expected(width * depth)


def test_sigkill_inside_a_closure_runs_every_other_task_once(
    tmp_path: Path, pool: Executor
) -> None:
    log, marker = str(tmp_path / "log"), str(tmp_path / "marker")
    width, depth = 8, 8
    warm = Graph()
    warm.add("warm", record, log, "warm")
    pool.run(warm)  # record's cost is measured: closures form from here
    g = Graph()
    for layer in range(depth):
        for i in range(width):
            key = f"s-{layer}-{i}"
            after = [f"s-{layer - 1}-{j}" for j in (i - 1, i, i + 1) if layer and 0 <= j < width]
            if key == "s-4-3":
                g.add(key, kill_self, log, key, marker, after=after)
            else:
                g.add(key, record, log, key, after=after)
    result = pool.run(g)
    counts = runs(Path(log))
    cone = {f"s-{la}-{i}" for la in range(5, depth) for i in range(width) if abs(i - 3) <= la - 4}
    for layer in range(depth):
        for i in range(width):
            key = f"s-{layer}-{i}"
            if key in cone:
                assert counts[key] == 0, key
                with pytest.raises(UpstreamFailed):
                    result[key]
            else:
                assert counts[key] == 1, (key, counts[key])
    with pytest.raises(WorkerCrashed):
        result["s-4-3"]
    assert result.metrics.respawns == 1


def test_a_result_larger_than_the_log_comes_over_the_pipe(pool: Executor) -> None:
    from tenfold.parallel_framework._procs import LOG_HALF

    result = pool.run(
        [
            ("big", lambda: b"x" * (LOG_HALF + 10), []),
            ("size", len, ["big"]),
            ("small", lambda: 5, []),
        ]
    )
    assert result["size"] == LOG_HALF + 10 and result["small"] == 5
    assert len(result["big"]) == LOG_HALF + 10


def test_bench_reports_the_worker_processes_cpu(pool: Executor) -> None:
    from tenfold.core.bench import Outcome
    from tenfold.parallel_framework._workloads import spin
    from tenfold.parallel_framework.bench import TreeCpu

    work = spin(200_000)  # some tens of ms of pure Python per task
    tree = TreeCpu(pool.worker_pids)
    before = tree.cpu_now()

    def op() -> Outcome:
        return Outcome(len(pool.run({i: (work,) for i in range(8)})))

    outcome = tree.wrap(op)()
    assert outcome.ops == 8
    spent = tree.cpu_now() - before
    assert spent > 0.02  # the workers' CPU, which the harness's own CPU column misses
    assert outcome.metrics["workers_cpu_us_per_task"] == pytest.approx(1e6 * tree.cpu_s / 8)
    # /proc counts CPU in 10 ms ticks: over a call of a few hundred ms the share can read
    # a few points over the cores' wall time, never far over it.
    assert 0 < float(outcome.metrics["workers_cpu_pct"]) <= 115


def test_workers_killed_while_idle_leave_no_stale_reports() -> None:
    with Executor("processes", 2) as ex:
        first = ex.run(stencil_dask(400))
        assert first.ok
        for pid in ex.worker_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        # Different values under the same slot numbers: a report left in a dead
        # worker's log from the first run would show up here as a wrong result.
        dsk = {
            key: (lambda *xs: sum(xs) - 1, *deps) for key, (_, *deps) in stencil_dask(400).items()
        }
        second = ex.run(dsk)
        assert second.ok, second.failures
        assert second.metrics.respawns == 2
        assert all(second[k] == -first[k] for k in dsk)


def test_a_worker_killed_before_starting_its_batch_fails_nothing(tmp_path: Path) -> None:
    log = tmp_path / "log"
    g = Graph()
    keys = [f"t{i}" for i in range(30)]
    for key in keys:
        g.add(key, record, str(log), key, 0.01)
    with Executor("processes", 2) as ex:
        ex.run({"warm": (int,)})
        victim = ex.worker_pids()[1]
        os.kill(victim, signal.SIGSTOP)  # alive, but it never reads its batch
        handle = ex.start(g)
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        result = handle.wait(60)
    assert result.ok, result.failures  # no task was running there: none is WorkerCrashed
    assert result.metrics.respawns == 1
    assert runs(log) == collections.Counter(keys)


def busy_pid(_: int) -> int:
    acc = 0
    for k in range(40_000):  # a couple of milliseconds of pure Python
        acc += k * k
    return os.getpid() + 0 * acc


def test_measured_slow_tasks_still_spread_over_every_worker(pool: Executor) -> None:
    dsk: dict[str, object] = {"root": (int,)}
    dsk.update({f"leaf-{i}": (busy_pid, "root") for i in range(60)})
    pool.run(dsk)  # now the cost of busy_pid is known: no closure swallows the fan-out
    result = pool.run(dsk)
    assert {result[f"leaf-{i}"] for i in range(60)} == set(pool.worker_pids())
    assert result.metrics.batches > 2
