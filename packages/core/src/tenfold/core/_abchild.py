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
        units = 0
        gc_was = gc.isenabled()
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            units += _units(op())
        dt = time.perf_counter_ns() - t0
        if gc_was and not gc.isenabled():
            gc.enable()
        return {"ns": dt, "units": units, "calls": calls}

    def finish(self, _req: dict[str, Any]) -> dict[str, Any]:
        self.op = None
        if self.ctx is not None:
            ctx, self.ctx = self.ctx, None
            ctx.stack.close()
            gc.collect()
        return {"ok": True}


def main(argv: list[str]) -> int:
    target, mode = argv[0], argv[1]
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
        side.finish({})
        send({"ok": True})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
