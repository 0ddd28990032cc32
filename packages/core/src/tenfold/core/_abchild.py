"""One side of ``tenfold bench --compare``: a process that runs our subject's op on command.

The gate starts this file by path (``python -P _abchild.py TARGET MODE``) with
each side's own interpreter: the base revision's venv for A, the working
tree's for B. Both sides therefore run this same driver, so the measurement
is identical and only the code under test differs. It uses nothing but the
standard library and the oldest parts of the bench API (``load_system``,
``BenchContext``, a scenario's ``ours.prepare``), so it runs against older
revisions too.

Protocol: one JSON request per line on stdin, one JSON reply per line on the
file descriptor the parent reads (the original stdout). Anything else that
writes to stdout (a scenario's print, a child process) goes to stderr, so it
cannot corrupt a reply.

Requests: ``hello`` (scenarios and where the code comes from), ``prepare``
(one scenario's op, outside any timer), ``run`` (``calls`` calls of the op,
timed together), ``finish`` (close the scenario's resources), ``bye``.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


def _load(target: str) -> Any:
    """A registered system by name, or any SystemPlugin object by ``module:attribute``."""
    if ":" in target:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    from tenfold.core.plugins import load_system

    return load_system(target, timeout_s=300.0)


def _origin(target: str) -> str:
    module = target.partition(":")[0] if ":" in target else f"tenfold.{target}"
    spec = importlib.util.find_spec(module)
    return str(spec.origin) if spec is not None and spec.origin else ""


def _units(value: object) -> int:
    if value is None:
        return 1
    if isinstance(value, bool):
        raise TypeError("an op must return int, Outcome or None, not bool")
    if isinstance(value, int):
        return value
    ops = getattr(value, "ops", None)
    if isinstance(ops, int) and not isinstance(ops, bool):
        return ops
    raise TypeError(f"an op must return int, Outcome or None, not {type(value).__name__}")


def _run_delay_ns() -> int | None:
    """Nanoseconds this thread has spent runnable but waiting for a CPU (None if unknown).

    Under load from other processes, a timed call's wall time includes turns it
    waited for a core; the gate takes them out (see :mod:`tenfold.core._compare`).
    """
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


class _Side:
    def __init__(self, target: str, mode: str, workdir: Path) -> None:
        self.target = target
        self.mode = mode
        self.workdir = workdir
        self.plugin = _load(target)
        self.scenarios = {s.name: s for s in (self.plugin.scenarios() or [])}
        self.ctx: Any = None
        self.op: Any = None

    def hello(self, _req: dict[str, Any]) -> dict[str, Any]:
        import tenfold.core

        return {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "core": str(Path(tenfold.core.__file__).resolve()),
            "origin": _origin(self.target),
            "name": getattr(self.plugin, "name", self.target),
            "title": getattr(self.plugin, "title", self.target),
            "scenarios": [
                {
                    "name": s.name,
                    "unit": s.unit,
                    "modes": list(getattr(s, "modes", ("smoke", "quick", "full"))),
                    "needs_root": bool(getattr(s, "needs_root", False)),
                    "warmup": int(getattr(s, "warmup", 1)),
                    "regression_pct": getattr(s, "regression_pct", None),
                }
                for s in self.scenarios.values()
            ],
        }

    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        from tenfold.core.bench import BenchContext

        self.finish({})
        scenario = self.scenarios[req["scenario"]]
        ctx = BenchContext(
            mode=self.mode,  # type: ignore[arg-type]
            workdir=self.workdir / scenario.name,
            seed=int(req.get("seed", 1234)),
        )
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        self.ctx = ctx
        op = scenario.ours.prepare(ctx)
        if not callable(op):
            raise TypeError(f"{scenario.ours.name}: prepare must return a callable op")
        self.op = op
        return {"ok": True, "subject": scenario.ours.name}

    def run(self, req: dict[str, Any]) -> dict[str, Any]:
        op = self.op
        if op is None:
            raise RuntimeError("run before prepare")
        calls = max(1, int(req.get("calls", 1)))
        # The calling thread on the CPU the gate names (the same for both sides), for
        # the sample only; threads and processes started before keep their CPUs.
        cpu = req.get("cpu")
        saved = None
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            try:
                saved = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {int(cpu)})
            except OSError:
                saved = None
        try:
            return self._timed(op, calls)
        finally:
            if saved is not None:
                os.sched_setaffinity(0, saved)

    @staticmethod
    def _timed(op: Any, calls: int) -> dict[str, Any]:
        units = 0
        gc_was = gc.isenabled()
        # The run-queue reads sit inside the timed window, so every wait they count
        # happened within it: 0 <= delay <= dt.
        cpu0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        delay0 = _run_delay_ns()
        for _ in range(calls):
            units += _units(op())
        delay1 = _run_delay_ns()
        dt = time.perf_counter_ns() - t0
        cpu = time.process_time_ns() - cpu0
        if gc_was and not gc.isenabled():
            gc.enable()
        delay = delay1 - delay0 if delay0 is not None and delay1 is not None else None
        return {"ns": dt, "delay_ns": delay, "cpu_ns": cpu, "units": units, "calls": calls}

    def finish(self, _req: dict[str, Any]) -> dict[str, Any]:
        self.op = None
        if self.ctx is not None:
            ctx, self.ctx = self.ctx, None
            ctx.stack.close()
            gc.collect()
        return {"ok": True}


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the gate dies, and turn SIGTERM into a clean exit.

    A driver busy in a long sample would otherwise outlive a killed gate.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        sys.exit(143)


def main(argv: list[str]) -> int:
    target, mode = argv[0], argv[1]
    _die_with_parent()
    # Replies go to the original stdout; fd 1 now points at stderr for everyone else.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out = os.fdopen(reply_fd, "w", buffering=1)

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    with tempfile.TemporaryDirectory(prefix="tenfold-compare-") as tmp:
        try:
            side = _Side(target, mode, Path(tmp))
        except BaseException as exc:
            send({"error": f"cannot load {target}: {type(exc).__name__}: {exc}"})
            return 1
        handlers = {
            "hello": side.hello,
            "prepare": side.prepare,
            "run": side.run,
            "finish": side.finish,
        }
        try:
            for line in sys.stdin:
                req = json.loads(line)
                cmd = req.get("cmd")
                if cmd == "bye":
                    break
                try:
                    send(handlers[cmd](req))
                except Exception as exc:
                    send(
                        {
                            "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(limit=6),
                        }
                    )
        finally:
            side.finish({})
        send({"ok": True})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
