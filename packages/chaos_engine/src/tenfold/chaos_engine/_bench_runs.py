"""Chaos Engine benchmarks of whole runs: orchestration against Chaos Toolkit, safety (violation to revert), concurrency, crash recovery."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenfold.chaos_engine._bench_common import (
    RUN,
    _engine,
    _netns,
    _one,
    _run,
    _sleeper,
)
from tenfold.core.bench import BenchContext, Op, Outcome
from tenfold.core.errors import BenchError

# -- orchestration ------------------------------------------------------------------------------------


def _ctk_experiment(ctx: BenchContext, steps: int, name: str) -> Path:
    (ctx.workdir / "tfbench_steps.py").write_text("def step(i):\n    return i\n")
    experiment = {
        "title": f"{steps} steps",
        "description": "generated for the orchestration benchmark",
        "steady-state-hypothesis": {
            "title": "steps answer",
            "probes": [
                {
                    "type": "probe",
                    "name": "answers",
                    "tolerance": 0,
                    "provider": {
                        "type": "python",
                        "module": "tfbench_steps",
                        "func": "step",
                        "arguments": {"i": 0},
                    },
                }
            ],
        },
        "method": [
            {
                "type": "action",
                "name": f"step-{i}",
                "provider": {
                    "type": "python",
                    "module": "tfbench_steps",
                    "func": "step",
                    "arguments": {"i": i},
                },
            }
            for i in range(steps)
        ],
        "rollbacks": [],
    }
    path = ctx.workdir / name
    path.write_text(json.dumps(experiment))
    return path


def _orchestration(
    ctx: BenchContext,
    argv_for: Callable[[Path], list[str]],
    in_run: Callable[[str], tuple[float, int, str]],
) -> Op:
    """End to end (process start-up included) as the op; the tool's own run time as a metric.

    ``in_run`` reads how long the run itself took from the tool's output (ours:
    the ``--json`` report; Chaos Toolkit: its journal's ``duration``), both
    counting the steady-state checks and every step, neither the interpreter's
    start-up, plus how many steps ran and the final status: both tools must
    complete every step, or the figures are not comparable.
    """
    steps = ctx.size(50, 2000, 2000)
    big = ctx.once("ctk-big", lambda: _ctk_experiment(ctx, steps, "experiment.json"))
    tiny = ctx.once("ctk-tiny", lambda: _ctk_experiment(ctx, 1, "tiny.json"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ctx.workdir), *sys.path])}
    # Start-up as a user's installed tools have it, with cached bytecode, for both tools
    # (some shells export PYTHONDONTWRITEBYTECODE: every run would compile every module).
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run(path: Path, expect: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        argv = argv_for(path)
        proc = subprocess.run(
            argv, cwd=ctx.workdir, env=env, capture_output=True, text=True, check=False
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise BenchError(f"{' '.join(argv[:3])} failed: {tail}")
        inside, ran, status = in_run(proc.stdout)
        if ran != expect or status != "completed":
            raise BenchError(f"{argv[0]} ran {ran} of {expect} steps, status {status}")
        return elapsed, inside

    # the best of three one-step runs (the first may also write bytecode caches)
    startup_s = round(min(run(tiny, 1)[0] for _ in range(3)), 3)

    def op() -> Outcome:
        _, inside = run(big, steps)
        metrics: dict[str, float | str] = {
            "startup_s": startup_s,
            "in_run_steps_per_s": round(steps / inside) if inside else 0,
        }
        return Outcome(steps, metrics)

    return op


def _ours_run(report: dict[str, Any]) -> tuple[float, int, str]:
    return float(report["duration_s"]), int(report["steps"]), str(report["status"])


def _ctk_run(journal: dict[str, Any]) -> tuple[float, int, str]:
    return float(journal["duration"]), len(journal["run"]), str(journal["status"])


def _ours_orchestration(ctx: BenchContext) -> Op:
    journals = str(ctx.workdir / "j")
    return _orchestration(
        ctx,
        lambda p: (
            [
                sys.executable,
                "-m",
                "tenfold.chaos_engine",
                "run",
                str(p),
                "--json",
                "--journal-dir",
                journals,
            ]
        ),
        lambda out: _ours_run(json.loads(out)),
    )


def _peer_orchestration(ctx: BenchContext) -> Op:
    chaos = shutil.which("chaos") or str(Path(sys.executable).with_name("chaos"))
    if not Path(chaos).exists():
        raise BenchError("chaostoolkit's `chaos` command is not installed")
    journal = ctx.workdir / "ctk-journal.json"
    return _orchestration(
        ctx,
        lambda p: (
            [
                chaos,
                "--no-version-check",
                "--no-log-file",
                "run",
                "--journal-path",
                str(journal),
                str(p),
            ]
        ),
        lambda out: _ctk_run(json.loads(journal.read_text())),
    )


# -- safety ------------------------------------------------------------------------------------------------


def _violation_op(ctx: BenchContext, fault_for: Callable[[int], dict[str, Any]], faults: int) -> Op:
    import types

    from tenfold.chaos_engine._experiment import experiment_from_dict, run_experiment

    module_name = f"tfbench_probe_{ctx.workdir.name}"  # one per scenario: providers are cached
    module = types.ModuleType(module_name)
    state = {"bad": 0}
    module.health = lambda: state["bad"]  # type: ignore[attr-defined]
    module.breaks = lambda: state.__setitem__("bad", 1)  # type: ignore[attr-defined]
    sys.modules[module_name] = module
    provider = {"type": "python", "module": module_name}
    experiment = experiment_from_dict(
        {
            "title": "violation",
            "steady_state": {
                "interval_s": 0.01,
                "probes": [
                    {
                        "name": "h",
                        "provider": {**provider, "func": "health"},
                        "tolerance": {"max": 0},
                    }
                ],
            },
            "method": [
                *(
                    {
                        "id": f"f{i}",
                        "fault": f["kind"],
                        "params": {k: v for k, v in f.items() if k != "kind"},
                    }
                    for i, f in enumerate(fault_for(i) for i in range(faults))
                ),
                {"id": "break", "action": {**provider, "func": "breaks"}},
                {"id": "wait", "pause_s": 5},
            ],
            "safety": {"max_faults": faults + 1},
        }
    )
    engine = _engine(ctx)

    def op() -> Outcome:
        state["bad"] = 0
        report = _run(ctx, run_experiment(experiment, engine))
        if report.status != "deviated" or engine.active_faults:
            raise BenchError(
                f"violation run ended {report.status} with {engine.active_faults} faults left"
            )
        ms = (report.violation_to_reverted_s or 0.0) * 1000
        return Outcome(
            1, {"faults_reverted": faults, "violation_to_reverted_ms": round(ms, 2)}, [ms]
        )

    return op


def _ours_violation_data(ctx: BenchContext) -> Op:
    return _violation_op(ctx, lambda i: {"kind": "point", "point": f"p{i}", "duration_s": 60}, 100)


def _ours_violation_os(ctx: BenchContext) -> Op:
    netns = _netns(ctx)
    return _violation_op(
        ctx, lambda i: {"kind": "packet_loss", "netns": netns, "percent": 5, "duration_s": 60}, 20
    )


# -- scalability ---------------------------------------------------------------------------------------------


def _ours_concurrent(level: int) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.chaos_engine._faults import PointFault

        engine = _engine(ctx, max_concurrent_faults=level + 100, fault_queue_size=level + 100)
        n = ctx.size(100, 500, 10000)

        async def batch() -> Outcome:
            held = await asyncio.gather(
                *(
                    engine.inject_fault(PointFault(point=f"s{i % 1000}", duration_s=3600))
                    for i in range(level)
                )
            )
            lat: list[float] = []
            for i in range(n):
                t0 = time.perf_counter()
                await _one(engine, PointFault(point=f"s{i % 1000}", duration_s=60))
                engine.points.decide(f"s{i % 1000}")
                lat.append((time.perf_counter() - t0) * 1000)
            await asyncio.gather(*(h.revert() for h in held))
            return Outcome(n, {"concurrent_faults": level}, lat)

        return lambda: _run(ctx, batch())

    return prepare


# -- crash recovery -----------------------------------------------------------------------------------------


def _veth_netns(ctx: BenchContext) -> tuple[str, str]:
    def make() -> tuple[str, str]:
        netns = f"tfchaos_crash{RUN}"
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
        for argv in (
            ["ip", "netns", "add", netns],
            ["ip", "-n", netns, "link", "add", "tfcrash0", "type", "veth", "peer", "tfcrash1"],
            ["ip", "-n", netns, "link", "set", "tfcrash0", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        ctx.callback(
            lambda: subprocess.run(
                ["ip", "netns", "delete", netns], capture_output=True, check=False
            )
        )
        return netns, "tfcrash0"

    return ctx.once("veth", make)


def _leftovers(netns: str, dev: str, victim: int) -> int:
    from tenfold.chaos_engine._kernel import tenfold_cgroups

    found = len(tenfold_cgroups(f"tfchaos_crash{RUN}"))
    run = subprocess.run
    tables = run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=False,
    )
    found += tables.stdout.count(f"tfchaos_crash{RUN}")
    qdisc = run(
        ["tc", "-n", netns, "qdisc", "show", "dev", dev],
        capture_output=True,
        text=True,
        check=False,
    )
    found += qdisc.stdout.count("tbf")
    found += Path(f"/proc/{victim}/cgroup").read_text().count(f"tfchaos_crash{RUN}")
    workers = run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    found += sum(1 for line in mounts if line.split()[0] == "tfchaos")
    helpers = ("_hogworker", "_fusefs", "_delayer")
    return found + sum(workers.count(name) for name in helpers)


def _ours_crash_recover(ctx: BenchContext) -> Op:
    from tenfold.chaos_engine._watchdog import recover

    netns, dev = _veth_netns(ctx)
    victim = _sleeper(ctx)
    journals = ctx.workdir / "journal"

    def op() -> Outcome:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenfold.chaos_engine._crashchild",
                str(journals),
                netns,
                dev,
                str(victim),
                f"crash{RUN}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stderr is not None
            if child.stdout.readline().strip() != "ready":
                child.kill()
                tail = child.stderr.read().strip().splitlines()[-1:]
                raise BenchError(f"the crash child did not put its faults in place: {tail}")
            before = _leftovers(netns, dev, victim)
            child.kill()
            child.wait()
            t0 = time.perf_counter()
            report = recover(journals / f"crash{RUN}.journal")
            ms = (time.perf_counter() - t0) * 1000
        finally:
            child.kill()
            child.wait()
        after = _leftovers(netns, dev, victim)
        if after or report.errors:
            raise BenchError(f"recover left {after} kernel objects behind: {report.errors}")
        metrics: dict[str, float | str] = {
            "objects_before_kill": before,
            "objects_after_recover": after,
            "faults_reverted": len(report.faults_reverted),
        }
        return Outcome(1, metrics, [ms])

    return op
