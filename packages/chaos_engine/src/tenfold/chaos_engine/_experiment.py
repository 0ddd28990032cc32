"""Experiments: a steady-state hypothesis, a method of faults and actions, rollbacks, limits.

Files are TOML, YAML or JSON, validated by pydantic (unknown keys and wrong
types are errors naming the place). A Chaos Toolkit experiment (JSON or YAML
with ``steady-state-hypothesis`` or ``type``'d activities) is converted on load,
so ``tenfold chaos run experiment.json`` runs a Chaos Toolkit file unchanged.

Run order, and what always happens:

1. the steady state is checked; outside tolerance, nothing is injected;
2. the method runs step by step while the probes are re-checked every
   ``steady_state.interval_s``; a violation cancels the method at once;
3. the steady state is checked again;
4. *always* (success, violation, error, Ctrl-C, SIGTERM): every fault is
   reverted, then every rollback runs.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import random
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from tenfold.chaos_engine._faults import fault_from_dict
from tenfold.chaos_engine.errors import (
    ChaosEngineError,
    ExperimentError,
    InvalidFault,
    ProbeFailed,
)

PositiveSeconds = Annotated[float, Field(gt=0, le=7 * 24 * 3600, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(_Model):
    """What a probe or action calls: a Python function, or a process."""

    type: Literal["python", "process"] = "python"
    module: str = ""
    func: str = ""
    arguments: dict[str, Any] | list[str] = Field(default_factory=dict)
    path: str = ""
    timeout_s: PositiveSeconds = 10.0

    @model_validator(mode="after")
    def _complete(self) -> Provider:
        if self.type == "python" and not (self.module and self.func):
            raise ValueError("a python provider needs module and func")
        if self.type == "process" and not self.path:
            raise ValueError("a process provider needs path")
        return self


class Tolerance(_Model):
    """Accept a value within [min, max], or equal to ``equals``."""

    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)
    equals: bool | int | float | str | None = None

    def accepts(self, value: Any) -> bool:
        if self.equals is not None:
            return bool(value == self.equals)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.equals is not None:
            return f"== {self.equals!r}"
        return f"in [{self.min if self.min is not None else '-inf'}, {self.max if self.max is not None else 'inf'}]"


class Probe(_Model):
    name: str
    provider: Provider
    tolerance: Tolerance
    timeout_s: PositiveSeconds = 5.0


class SteadyState(_Model):
    """The hypothesis: probes, how often they are re-checked, how many misses in a row count.

    ``tolerated_failures``: a probe out of tolerance is asked again at once, up
    to this many times, before it counts as a violation (a flapping probe does
    not abort an experiment on one bad sample).
    """

    probes: list[Probe] = Field(default_factory=list)
    interval_s: PositiveSeconds = 0.1
    continuous: bool = True
    tolerated_failures: int = Field(0, ge=0, le=100)


class FaultStep(_Model):
    """Inject a fault (optionally over several targets, chosen by ``mode``)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    fault: str
    params: dict[str, Any] = Field(default_factory=dict)
    targets: list[dict[str, Any]] = Field(default_factory=list)
    mode: Literal["one", "all", "count", "percent"] = "all"
    value: float = Field(100.0, ge=0, allow_inf_nan=False)
    probability: float = Field(1.0, ge=0, le=1, allow_inf_nan=False)
    duration_s: PositiveSeconds | None = None
    wait: bool = False

    @model_validator(mode="after")
    def _mode(self) -> FaultStep:
        if self.mode == "percent" and self.value > 100:
            raise ValueError(f"percent must be <= 100, got {self.value:g}")
        if self.mode == "count" and self.value != int(self.value):
            raise ValueError(f"count must be a whole number, got {self.value:g}")
        return self


class ActionStep(_Model):
    """Call a provider (a Python function or a process); ``pause_s`` waits after it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    action: Provider | None = None
    pause_s: float = Field(0.0, ge=0, le=3600, allow_inf_nan=False)


class Safety(_Model):
    max_faults: int = Field(100, ge=1, le=1_000_000)
    max_duration_s: PositiveSeconds = 3600.0


def _step_kind(value: Any) -> str:
    has_fault = isinstance(value, dict) and "fault" in value
    return "FaultStep" if has_fault or isinstance(value, FaultStep) else "ActionStep"


class Experiment(_Model):
    """A validated experiment."""

    title: str
    description: str = ""
    steady_state: SteadyState = Field(default_factory=lambda: SteadyState.model_validate({}))
    method: list[
        Annotated[
            Annotated[FaultStep, Tag("FaultStep")] | Annotated[ActionStep, Tag("ActionStep")],
            Discriminator(_step_kind),
        ]
    ]
    rollbacks: list[ActionStep] = Field(default_factory=list)
    safety: Safety = Field(default_factory=lambda: Safety.model_validate({}))

    @model_validator(mode="after")
    def _unique_ids(self) -> Experiment:
        seen: set[str] = set()
        for step in [*self.method, *self.rollbacks]:
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r}")
            seen.add(step.id)
        faults = sum(max(1, len(s.targets)) for s in self.method if isinstance(s, FaultStep))
        if faults > self.safety.max_faults:
            raise ValueError(
                f"the method injects up to {faults} faults, over safety.max_faults "
                f"= {self.safety.max_faults}"
            )
        for step in self.method:
            if isinstance(step, FaultStep):
                for params in _expand(step):
                    try:
                        fault_from_dict(step.fault, params)
                    except InvalidFault as exc:
                        raise ValueError(f"step {step.id!r}: {exc}") from None
        return self


def _expand(step: FaultStep) -> list[dict[str, Any]]:
    base = dict(step.params)
    if step.duration_s is not None:
        base["duration_s"] = step.duration_s
    if not step.targets:
        return [base]
    return [{**base, **target} for target in step.targets]


def select_targets(step: FaultStep, rng: random.Random) -> list[dict[str, Any]]:
    """The parameter sets this run injects: one, all, a count or a percent of the targets."""
    every = _expand(step)
    if step.mode == "all":
        return every
    if step.mode == "one":
        return [rng.choice(every)]
    n = int(step.value) if step.mode == "count" else math.ceil(len(every) * step.value / 100)
    return rng.sample(every, min(n, len(every)))


# -- loading -----------------------------------------------------------------------------


def _where(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(
        str(p)
        for p in err["loc"]
        if not str(p).startswith(("FaultStep", "ActionStep", "function-")) and "[" not in str(p)
    )
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    if err["type"] == "missing":
        return f"missing key '{loc}'"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_document(text: str, suffix: str, source: str) -> dict[str, Any]:
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml  # only for YAML files: it is a tenth of `chaos run`'s start-up

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(str(exc)) from None
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ExperimentError(
                f"{source}: unknown experiment format {suffix!r} (toml, yaml, json)"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise ExperimentError(f"{source}: malformed {suffix[1:].upper()}: {first}") from None
    except RecursionError:
        raise ExperimentError(f"{source}: nested too deeply to be an experiment") from None
    if not isinstance(data, dict):
        raise ExperimentError(
            f"{source}: an experiment must be a table/object, got {type(data).__name__}"
        )
    return data


def is_chaostoolkit(data: dict[str, Any]) -> bool:
    return "steady-state-hypothesis" in data or any(
        isinstance(a, dict) and "type" in a for a in data.get("method", [])
    )


def experiment_from_dict(data: dict[str, Any], source: str = "<experiment>") -> Experiment:
    if is_chaostoolkit(data):
        data = from_chaostoolkit(data, source)
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(f"{source}: {_where(exc)}") from None


def load_experiment(path: Path) -> Experiment:
    """Read and validate an experiment file (TOML, YAML, JSON, or Chaos Toolkit JSON/YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentError(f"cannot read experiment {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ExperimentError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    return experiment_from_dict(parse_document(text, path.suffix.lower(), str(path)), str(path))


# -- Chaos Toolkit import ---------------------------------------------------------------------


def _ctk_provider(activity: dict[str, Any], where: str) -> dict[str, Any]:
    provider = activity.get("provider")
    if not isinstance(provider, dict):
        raise ExperimentError(f"{where}: activity has no provider")
    kind = provider.get("type")
    if kind == "python":
        out = {
            "type": "python",
            "module": provider.get("module", ""),
            "func": provider.get("func", ""),
        }
        if "arguments" in provider:
            out["arguments"] = provider["arguments"]
    elif kind == "process":
        args = provider.get("arguments", [])
        if isinstance(args, str):
            args = args.split()
        out = {"type": "process", "path": provider.get("path", ""), "arguments": list(args)}
    else:
        raise ExperimentError(f"{where}: Chaos Toolkit provider type {kind!r} is not supported")
    if "timeout" in provider:
        out["timeout_s"] = provider["timeout"]
    return out


def _ctk_tolerance(value: Any, where: str) -> dict[str, Any]:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    ):
        return {"min": value[0], "max": value[1]}
    if isinstance(value, bool | int | float | str):
        return {"equals": value}
    raise ExperimentError(
        f"{where}: tolerance {value!r} is not supported (use a value or [min, max])"
    )


def from_chaostoolkit(data: dict[str, Any], source: str = "<ctk>") -> dict[str, Any]:
    """Convert a Chaos Toolkit experiment into ours (python and process providers)."""
    hypothesis = data.get("steady-state-hypothesis") or {}
    probes = []
    for i, probe in enumerate(hypothesis.get("probes", [])):
        where = f"{source}: steady-state-hypothesis.probes.{i}"
        probes.append(
            {
                "name": probe.get("name", f"probe-{i}"),
                "provider": _ctk_provider(probe, where),
                "tolerance": _ctk_tolerance(probe.get("tolerance"), where),
            }
        )

    def steps(items: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
        out = []
        for i, activity in enumerate(items):
            where = f"{source}: {prefix}.{i}"
            if "ref" in activity:
                raise ExperimentError(f"{where}: activity references ('ref') are not supported")
            pauses = activity.get("pauses", {})
            if pauses.get("before"):
                out.append({"id": f"{prefix}-{i}-before", "pause_s": pauses["before"]})
            out.append(
                {
                    "id": f"{prefix}-{i}",
                    "action": _ctk_provider(activity, where),
                    "pause_s": pauses.get("after", 0),
                }
            )
        return out

    return {
        "title": data.get("title", "imported from Chaos Toolkit"),
        "description": data.get("description", ""),
        "steady_state": {"probes": probes, "continuous": False},
        "method": steps(data.get("method", []), "method"),
        "rollbacks": steps(data.get("rollbacks", []), "rollbacks"),
        "safety": {"max_faults": 1_000_000},
    }


# -- running ------------------------------------------------------------------------------------


_FUNCS: dict[tuple[str, str], Callable[..., Any]] = {}
YIELD_EVERY_S = 0.005
"""A method of synchronous steps yields to the event loop this often, so the
steady-state watcher (and Ctrl-C) can act between steps."""


def _resolve(provider: Provider) -> Callable[..., Any]:
    key = (provider.module, provider.func)
    fn = _FUNCS.get(key)
    if fn is None:
        try:
            fn = getattr(importlib.import_module(provider.module), provider.func)
        except (ImportError, AttributeError) as exc:
            raise ExperimentError(f"cannot load {provider.module}.{provider.func}: {exc}") from None
        _FUNCS[key] = fn
    return fn


async def call_provider(provider: Provider) -> Any:
    """Call a provider; a coroutine function is awaited, a process's exit status is returned."""
    if provider.type == "process":
        argv = [
            provider.path,
            *(provider.arguments if isinstance(provider.arguments, list) else []),
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            return await asyncio.wait_for(proc.wait(), provider.timeout_s)
        except BaseException:  # timed out or cancelled: never leave the process behind
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
    result = call_python(provider)
    if hasattr(result, "__await__"):  # cheaper than asyncio.iscoroutine's ABC check
        result = await asyncio.wait_for(result, provider.timeout_s)
    return result


def call_python(provider: Provider) -> Any:
    """Call a python provider's function (its awaitable, if it returns one, is not awaited)."""
    fn = _FUNCS.get((provider.module, provider.func)) or _resolve(provider)
    args = provider.arguments
    return fn(**args) if isinstance(args, dict) else fn()


@dataclass
class StepRecord:
    id: str
    kind: str
    duration_s: float
    ok: bool
    detail: str = ""


@dataclass
class RunReport:
    """What :func:`run_experiment` did."""

    title: str
    status: Literal["completed", "deviated", "aborted", "failed", "interrupted"] = "completed"
    reason: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    faults_injected: int = 0
    rollbacks_run: int = 0
    violation_to_reverted_s: float | None = None
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "steps": len(self.steps),
            "faults_injected": self.faults_injected,
            "rollbacks_run": self.rollbacks_run,
            "violation_to_reverted_s": self.violation_to_reverted_s,
            "duration_s": self.duration_s,
        }


async def check_steady_state(steady: SteadyState, monitor: Any = None) -> str | None:
    """Run every probe: ``None`` when all hold, else why not (raises when a probe fails to answer).

    A probe out of tolerance is asked again, up to ``tolerated_failures`` times.
    """
    for probe in steady.probes:
        for attempt in range(steady.tolerated_failures + 1):
            value = await _ask(probe)
            ok = probe.tolerance.accepts(value)
            if monitor is not None:
                number = float(value) if isinstance(value, int | float) else float(ok)
                monitor.record("probe", probe.name, number)
                monitor.count(f'probe_checks_total{{ok="{str(ok).lower()}"}}')
            if ok:
                break
            if attempt == steady.tolerated_failures:
                expected = probe.tolerance.describe()
                return f"probe {probe.name!r} returned {value!r}, expected {expected}"
    return None


async def _ask(probe: Probe) -> Any:
    try:
        return await asyncio.wait_for(call_provider(probe.provider), probe.timeout_s)
    except TimeoutError:
        raise ProbeFailed(f"probe {probe.name!r} timed out after {probe.timeout_s:g} s") from None
    except ChaosEngineError:
        raise
    except Exception as exc:
        raise ProbeFailed(f"probe {probe.name!r} raised {type(exc).__name__}: {exc}") from None


async def run_experiment(
    experiment: Experiment, engine: Any, *, seed: int | None = None
) -> RunReport:
    """Run ``experiment`` on ``engine``; always reverts every fault and runs the rollbacks.

    A steady state that does not hold ends the run with status ``aborted`` (before
    the method) or ``deviated``; a probe that raises or times out, or a step that
    fails, raises after the cleanup.
    """
    report = RunReport(experiment.title)
    rng = random.Random(seed)
    start = time.perf_counter()
    violation: dict[str, float | str] = {}
    loop = asyncio.get_running_loop()
    method_task: asyncio.Task[None] | None = None

    async def method() -> None:
        yielded = time.perf_counter()
        for step in experiment.method:
            t0 = time.perf_counter()
            if t0 - yielded > YIELD_EVERY_S:  # let the steady-state watcher run
                await asyncio.sleep(0)
                yielded = t0
            if isinstance(step, FaultStep):
                if step.probability < 1 and rng.random() >= step.probability:
                    report.steps.append(StepRecord(step.id, "fault", 0.0, True, "skipped"))
                    continue
                # one batch: the targets' journal records share a write, nft changes a commit
                faults = [fault_from_dict(step.fault, p) for p in select_targets(step, rng)]
                handles = await engine.inject_faults(faults)
                report.faults_injected += len(handles)
                if step.wait:
                    await asyncio.sleep(max(h.fault.duration_s for h in handles))
                report.steps.append(StepRecord(step.id, "fault", time.perf_counter() - t0, True))
            else:
                action = step.action
                if action is not None:
                    if action.type == "python":  # the common case, without a coroutine
                        result = call_python(action)
                        if hasattr(result, "__await__"):
                            await asyncio.wait_for(result, action.timeout_s)
                    else:
                        await call_provider(action)
                if step.pause_s:
                    await asyncio.sleep(step.pause_s)
                report.steps.append(StepRecord(step.id, "action", time.perf_counter() - t0, True))

    async def watch() -> None:
        while True:
            await asyncio.sleep(experiment.steady_state.interval_s)
            why = await check_steady_state(experiment.steady_state, engine.monitor)
            if why is not None:
                violation["why"] = why
                violation["t"] = time.perf_counter()
                if method_task is not None:
                    method_task.cancel()
                return

    def on_sigterm() -> None:
        if method_task is not None:
            violation.setdefault("why", "interrupted by SIGTERM")
            method_task.cancel()

    watcher: asyncio.Task[None] | None = None
    sigterm_installed = False
    try:
        why = await check_steady_state(experiment.steady_state, engine.monitor)
        if why is not None:
            report.status = "aborted"
            report.reason = f"steady state did not hold before the method: {why}"
            return report
        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
            sigterm_installed = True
        except (RuntimeError, ValueError):
            pass
        method_task = asyncio.ensure_future(method())
        if experiment.steady_state.continuous and experiment.steady_state.probes:
            watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait_for(method_task, experiment.safety.max_duration_s)
        except asyncio.CancelledError:
            if not violation:
                raise
        except TimeoutError:
            violation["why"] = (
                f"safety.max_duration_s = {experiment.safety.max_duration_s:g} s exceeded"
            )
        if violation:
            report.status = "interrupted" if "SIGTERM" in str(violation["why"]) else "deviated"
            report.reason = str(violation["why"])
        else:
            why = await check_steady_state(experiment.steady_state, engine.monitor)
            if why is not None:
                report.status = "deviated"
                report.reason = f"steady state did not hold after the method: {why}"
    except (ChaosEngineError, Exception) as exc:
        if report.status == "completed":
            report.status = "failed"
            report.reason = str(exc)
        if not isinstance(exc, ChaosEngineError):
            raise ExperimentError(f"{experiment.title}: {type(exc).__name__}: {exc}") from None
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        if sigterm_installed:
            loop.remove_signal_handler(signal.SIGTERM)
        interrupted = False
        try:
            await _to_completion(engine.revert_all())
        except asyncio.CancelledError:
            interrupted = True
        if "t" in violation:
            report.violation_to_reverted_s = time.perf_counter() - float(violation["t"])
        for step in experiment.rollbacks:
            try:
                if step.action is not None:
                    await _to_completion(call_provider(step.action))
                report.rollbacks_run += 1
            except asyncio.CancelledError:
                interrupted = True
                report.rollbacks_run += 1
            except Exception as exc:  # a failing rollback must not stop the others
                report.steps.append(StepRecord(step.id, "rollback", 0.0, False, str(exc)))
                # ...but the run did not put things back as promised: it failed, by name.
                if report.status in ("completed", "deviated"):
                    report.status = "failed"
                    report.reason = f"rollback {step.id!r} failed: {exc}"
        report.duration_s = time.perf_counter() - start
        if interrupted:
            raise asyncio.CancelledError
    return report


async def _to_completion(step: Coroutine[Any, Any, Any]) -> Any:
    """Await ``step`` to its end even if the caller is cancelled (Ctrl-C) meanwhile.

    Cleanup must not be cut short by the interrupt that asked for it; the
    cancellation is re-raised once the step is done. A second Ctrl-C makes
    asyncio raise KeyboardInterrupt outright, and then the watchdog cleans up.
    """
    task = asyncio.ensure_future(step)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
            cancelled = True
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
    if cancelled:
        raise asyncio.CancelledError
    return result
