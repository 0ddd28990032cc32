"""Experiments: a steady-state hypothesis, a method of faults and actions, rollbacks, limits.

Files are TOML, YAML or JSON, validated field by field (unknown keys and wrong
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
import functools
import importlib
import json
import math
import re
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import random

from tenfold.chaos_engine._record import Frozen, Record
from tenfold.chaos_engine.errors import (
    ChaosEngineError,
    ExperimentError,
    InvalidFault,
    ProbeFailed,
)

# Validation is plain Python over the parsed document (no schema library): it is a
# fraction of a millisecond for a 2,000-step experiment and keeps `chaos run`'s
# start-up to the interpreter, the CLI and the engine.

_WEEK_S = 7 * 24 * 3600.0
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Invalid(ValueError):
    """A validation problem at ``loc`` (a dotted path), rendered as one line."""

    def __init__(self, loc: str, msg: str, kind: str = "value") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind

    def line(self) -> str:
        if self.kind == "extra":
            return f"unknown key '{self.loc}'"
        if self.kind == "missing":
            return f"missing key '{self.loc}'"
        return f"{self.loc}: {self.msg}" if self.loc else self.msg


Loc = tuple[str | int, ...]
"""Where a value sits, as the keys from the document's root: ``("method", 3, "action")``.

Validation carries the tuple and renders it (``method.3.action``) only for an
error, so a valid document formats no location at all: a 2,000-step
experiment used to build some 16,000 location strings it never printed.
"""


def _where(loc: Loc, key: str | int | None = None) -> str:
    """``loc`` (and ``key`` under it) as the dotted path an error names."""
    return ".".join(str(part) for part in (loc if key is None else (*loc, key)))


def _table(
    value: Any, loc: Loc, known: frozenset[str], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(_where(loc), f"must be a table, got {type(value).__name__}")
    if not known.issuperset(value):
        for key in value:  # the first unknown key, in the document's order
            if key not in known:
                raise _Invalid(_where(loc, key), "", "extra")
    for key in required:
        if key not in value:
            raise _Invalid(_where(loc, key), "", "missing")
    return value


def _number(
    value: Any,
    loc: Loc,
    key: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(_where(loc, key), f"must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise _Invalid(_where(loc, key), "must be finite")
    if gt is not None and not out > gt:
        raise _Invalid(_where(loc, key), f"must be > {gt:g}, got {out:g}")
    if ge is not None and not out >= ge:
        raise _Invalid(_where(loc, key), f"must be >= {ge:g}, got {out:g}")
    if le is not None and not out <= le:
        raise _Invalid(_where(loc, key), f"must be <= {le:g}, got {out:g}")
    return out


_PLAIN_NUMBERS = (int, float)
"""Exact types a hot path accepts inline (``type(x) in``: a bool is not one)."""


def _seconds(value: Any, loc: Loc, key: str) -> float:
    return _number(value, loc, key, gt=0, le=_WEEK_S)


def _integer(value: Any, loc: Loc, key: str, ge: int, le: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(_where(loc, key), f"must be a whole number, got {value!r}")
    if not ge <= value <= le:
        raise _Invalid(_where(loc, key), f"must be within [{ge}, {le}], got {value}")
    return value


def _text(value: Any, loc: Loc, key: str | int) -> str:
    if not isinstance(value, str):
        raise _Invalid(_where(loc, key), f"must be a string, got {value!r}")
    return value


def _flag(value: Any, loc: Loc, key: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(_where(loc, key), f"must be true or false, got {value!r}")
    return value


def _list(value: Any, loc: Loc, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(_where(loc, key), f"must be a list, got {type(value).__name__}")
    return value


def _dict_of_any(value: Any, loc: Loc, key: str | int) -> dict[str, Any]:
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                break
        else:
            return dict(value)
    raise _Invalid(_where(loc, key), f"must be a table, got {type(value).__name__}")


class _Model(Frozen):
    """Frozen records built from a parsed document by :meth:`model_validate`."""

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> Any:
        raise NotImplementedError

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        """Build from a parsed document; a problem raises ``ValueError`` naming its place."""
        try:
            return cls._from(data, ())
        except _Invalid as exc:
            raise ValueError(exc.line()) from None

    def model_dump(self) -> dict[str, Any]:
        return self.to_dict()


_PROVIDER_KEYS = frozenset(("type", "module", "func", "arguments", "path", "timeout_s"))


class Provider(_Model):
    """What a probe or action calls: a Python function, or a process."""

    _fields = ("type", "module", "func", "arguments", "path", "timeout_s")
    type: Literal["python", "process"]
    module: str
    func: str
    arguments: dict[str, Any] | list[str]
    path: str
    timeout_s: float

    def __init__(
        self,
        type: Literal["python", "process"] = "python",
        module: str = "",
        func: str = "",
        arguments: dict[str, Any] | list[str] | None = None,
        path: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        # There is one per step. A frozen dataclass's generated __init__ stored each
        # field with object.__setattr__: 11.1K instructions for these six under
        # callgrind, against 4.9K filling the new instance's dict.
        fields = self.__dict__
        fields["type"] = type
        fields["module"] = module
        fields["func"] = func
        fields["arguments"] = {} if arguments is None else arguments
        fields["path"] = path
        fields["timeout_s"] = timeout_s

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> Provider:
        d = _table(data, loc, _PROVIDER_KEYS)
        kind = d.get("type", "python")
        if kind not in ("python", "process"):
            raise _Invalid(_where(loc, "type"), f"must be 'python' or 'process', got {kind!r}")
        args: Any = d.get("arguments", {})
        if isinstance(args, list):
            at = (*loc, "arguments")
            args = [_text(a, at, i) for i, a in enumerate(args)]
        else:
            args = _dict_of_any(args, loc, "arguments")
        # The common case is accepted inline; anything else goes to the checks, which
        # accept the same values (str subclasses, numbers that are not plain) or name the
        # first bad one in field order, so errors are theirs alone.
        module, func, path = d.get("module", ""), d.get("func", ""), d.get("path", "")
        if type(module) is not str or type(func) is not str or type(path) is not str:
            module = _text(module, loc, "module")
            func = _text(func, loc, "func")
            path = _text(path, loc, "path")
        timeout = d.get("timeout_s", 10.0)
        if type(timeout) in _PLAIN_NUMBERS and 0 < timeout <= _WEEK_S:
            timeout = float(timeout)
        else:
            timeout = _seconds(timeout, loc, "timeout_s")
        out = cls(kind, module, func, args, path, timeout)  # positional, in field order
        if out.type == "python" and not (out.module and out.func):
            raise _Invalid(_where(loc), "a python provider needs module and func")
        if out.type == "process" and not out.path:
            raise _Invalid(_where(loc), "a process provider needs path")
        return out


class Tolerance(_Model):
    """Accept a value within [min, max], or equal to ``equals``."""

    _fields = ("min", "max", "equals")
    min: float | None
    max: float | None
    equals: bool | int | float | str | None

    def __init__(
        self,
        min: float | None = None,
        max: float | None = None,
        equals: bool | int | float | str | None = None,
    ) -> None:
        fields = self.__dict__
        fields["min"] = min
        fields["max"] = max
        fields["equals"] = equals

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> Tolerance:
        d = _table(data, loc, frozenset(("min", "max", "equals")))
        lo, hi, eq = d.get("min"), d.get("max"), d.get("equals")
        if eq is not None and not isinstance(eq, bool | int | float | str):
            raise _Invalid(
                _where(loc, "equals"), f"must be a number, string or boolean, got {eq!r}"
            )
        return cls(
            min=None if lo is None else _number(lo, loc, "min"),
            max=None if hi is None else _number(hi, loc, "max"),
            equals=eq,
        )

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
    _fields = ("name", "provider", "tolerance", "timeout_s")
    name: str
    provider: Provider
    tolerance: Tolerance
    timeout_s: float

    def __init__(
        self, name: str, provider: Provider, tolerance: Tolerance, timeout_s: float = 5.0
    ) -> None:
        fields = self.__dict__
        fields["name"] = name
        fields["provider"] = provider
        fields["tolerance"] = tolerance
        fields["timeout_s"] = timeout_s

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> Probe:
        d = _table(
            data,
            loc,
            frozenset(("name", "provider", "tolerance", "timeout_s")),
            ("name", "provider", "tolerance"),
        )
        return cls(
            name=_text(d["name"], loc, "name"),
            provider=Provider._from(d["provider"], (*loc, "provider")),
            tolerance=Tolerance._from(d["tolerance"], (*loc, "tolerance")),
            timeout_s=_seconds(d.get("timeout_s", 5.0), loc, "timeout_s"),
        )


class SteadyState(_Model):
    """The hypothesis: probes, how often they are re-checked, how many misses in a row count.

    ``tolerated_failures``: a probe out of tolerance is asked again at once, up
    to this many times, before it counts as a violation (a flapping probe does
    not abort an experiment on one bad sample).
    """

    _fields = ("probes", "interval_s", "continuous", "tolerated_failures")
    probes: list[Probe]
    interval_s: float
    continuous: bool
    tolerated_failures: int

    def __init__(
        self,
        probes: list[Probe] | None = None,
        interval_s: float = 0.1,
        continuous: bool = True,
        tolerated_failures: int = 0,
    ) -> None:
        fields = self.__dict__
        fields["probes"] = [] if probes is None else probes
        fields["interval_s"] = interval_s
        fields["continuous"] = continuous
        fields["tolerated_failures"] = tolerated_failures

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> SteadyState:
        d = _table(
            data, loc, frozenset(("probes", "interval_s", "continuous", "tolerated_failures"))
        )
        probes = _list(d.get("probes", []), loc, "probes")
        return cls(
            probes=[Probe._from(p, (*loc, "probes", i)) for i, p in enumerate(probes)],
            interval_s=_seconds(d.get("interval_s", 0.1), loc, "interval_s"),
            continuous=_flag(d.get("continuous", True), loc, "continuous"),
            tolerated_failures=_integer(
                d.get("tolerated_failures", 0), loc, "tolerated_failures", 0, 100
            ),
        )


def _step_id(value: Any, loc: Loc) -> str:
    text = _text(value, loc, "id")
    if not _ID.match(text):
        raise _Invalid(
            _where(loc, "id"), f"must be 1-64 letters, digits, '_', '.' or '-', got {text!r}"
        )
    return text


_FAULT_STEP_FIELDS = (
    "id",
    "fault",
    "params",
    "targets",
    "mode",
    "value",
    "probability",
    "duration_s",
    "wait",
    "agent",
)
_FAULT_STEP_KEYS = frozenset(_FAULT_STEP_FIELDS)


class FaultStep(_Model):
    """Inject a fault (optionally over several targets, chosen by ``mode``)."""

    _fields = _FAULT_STEP_FIELDS
    id: str
    fault: str
    params: dict[str, Any]
    targets: list[dict[str, Any]]
    mode: Literal["one", "all", "count", "percent"]
    value: float
    probability: float
    duration_s: float | None
    wait: bool
    agent: str

    def __init__(
        self,
        id: str,
        fault: str,
        params: dict[str, Any] | None = None,
        targets: list[dict[str, Any]] | None = None,
        mode: Literal["one", "all", "count", "percent"] = "all",
        value: float = 100.0,
        probability: float = 1.0,
        duration_s: float | None = None,
        wait: bool = False,
        agent: str = "",
    ) -> None:
        fields = self.__dict__
        fields["id"] = id
        fields["fault"] = fault
        fields["params"] = {} if params is None else params
        fields["targets"] = [] if targets is None else targets
        fields["mode"] = mode
        fields["value"] = value
        fields["probability"] = probability
        fields["duration_s"] = duration_s
        fields["wait"] = wait
        fields["agent"] = agent

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> FaultStep:
        d = _table(data, loc, _FAULT_STEP_KEYS, ("id", "fault"))
        mode = d.get("mode", "all")
        if mode not in ("one", "all", "count", "percent"):
            raise _Invalid(
                _where(loc, "mode"),
                f"must be one of 'one', 'all', 'count', 'percent', got {mode!r}",
            )
        targets = _list(d.get("targets", []), loc, "targets")
        at = (*loc, "targets")
        duration = d.get("duration_s")
        out = cls(
            id=_step_id(d["id"], loc),
            fault=_text(d["fault"], loc, "fault"),
            params=_dict_of_any(d.get("params", {}), loc, "params"),
            targets=[_dict_of_any(t, at, i) for i, t in enumerate(targets)],
            mode=mode,
            value=_number(d.get("value", 100.0), loc, "value", ge=0),
            probability=_number(d.get("probability", 1.0), loc, "probability", ge=0, le=1),
            duration_s=None if duration is None else _seconds(duration, loc, "duration_s"),
            wait=_flag(d.get("wait", False), loc, "wait"),
            agent=_text(d.get("agent", ""), loc, "agent"),
        )
        if out.mode == "percent" and out.value > 100:
            raise _Invalid(_where(loc), f"percent must be <= 100, got {out.value:g}")
        if out.mode == "count" and out.value != int(out.value):
            raise _Invalid(_where(loc), f"count must be a whole number, got {out.value:g}")
        return out


_ACTION_STEP_KEYS = frozenset(("id", "action", "pause_s"))


class ActionStep(_Model):
    """Call a provider (a Python function or a process); ``pause_s`` waits after it."""

    _fields = ("id", "action", "pause_s")
    id: str
    action: Provider | None
    pause_s: float

    def __init__(self, id: str, action: Provider | None = None, pause_s: float = 0.0) -> None:
        fields = self.__dict__  # one per step: as Provider's __init__
        fields["id"] = id
        fields["action"] = action
        fields["pause_s"] = pause_s

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> ActionStep:
        d = _table(data, loc, _ACTION_STEP_KEYS, ("id",))
        step_id, action, pause = d["id"], d.get("action"), d.get("pause_s", 0.0)
        if type(step_id) is not str or not _ID.match(step_id):  # inline as in Provider._from
            step_id = _step_id(step_id, loc)
        if action is not None:
            action = Provider._from(action, (*loc, "action"))
        if type(pause) in _PLAIN_NUMBERS and 0 <= pause <= 3600:
            pause = float(pause)
        else:
            pause = _number(pause, loc, "pause_s", ge=0, le=3600)
        return cls(step_id, action, pause)


class Safety(_Model):
    _fields = ("max_faults", "max_duration_s")
    max_faults: int
    max_duration_s: float

    def __init__(self, max_faults: int = 100, max_duration_s: float = 3600.0) -> None:
        fields = self.__dict__
        fields["max_faults"] = max_faults
        fields["max_duration_s"] = max_duration_s

    @classmethod
    def _from(cls, data: Any, loc: Loc) -> Safety:
        d = _table(data, loc, frozenset(("max_faults", "max_duration_s")))
        return cls(
            max_faults=_integer(d.get("max_faults", 100), loc, "max_faults", 1, 1_000_000),
            max_duration_s=_seconds(d.get("max_duration_s", 3600.0), loc, "max_duration_s"),
        )


_EXPERIMENT_KEYS = frozenset(
    ("title", "description", "steady_state", "method", "rollbacks", "safety", "agents")
)


class Experiment(_Model):
    """A validated experiment.

    ``agents``: chaos agents by name, where each listens (``https://HOST:PORT``).
    """

    _fields = (
        "title",
        "method",
        "description",
        "steady_state",
        "rollbacks",
        "safety",
        "agents",
    )
    title: str
    method: list[FaultStep | ActionStep]
    description: str
    steady_state: SteadyState
    rollbacks: list[ActionStep]
    safety: Safety
    agents: dict[str, str]

    def __init__(
        self,
        title: str,
        method: list[FaultStep | ActionStep],
        description: str = "",
        steady_state: SteadyState | None = None,
        rollbacks: list[ActionStep] | None = None,
        safety: Safety | None = None,
        agents: dict[str, str] | None = None,
    ) -> None:
        fields = self.__dict__
        fields["title"] = title
        fields["method"] = method
        fields["description"] = description
        fields["steady_state"] = SteadyState() if steady_state is None else steady_state
        fields["rollbacks"] = [] if rollbacks is None else rollbacks
        fields["safety"] = Safety() if safety is None else safety
        fields["agents"] = {} if agents is None else agents

    @classmethod
    def _from(cls, data: Any, loc: Loc, *, built: bool = False) -> Experiment:
        """``built``: the document comes from :func:`_from_chaostoolkit`, whose steps may
        already be :class:`ActionStep` (each one the checks below would accept)."""
        d = _table(data, loc, _EXPERIMENT_KEYS, ("title", "method"))
        method: list[FaultStep | ActionStep] = []
        for i, step in enumerate(_list(d["method"], loc, "method")):
            if built and type(step) is ActionStep:
                method.append(step)
            elif isinstance(step, dict) and "fault" in step:
                method.append(FaultStep._from(step, (*loc, "method", i)))
            else:
                method.append(ActionStep._from(step, (*loc, "method", i)))
        rollbacks = [
            step
            if built and type(step) is ActionStep
            else ActionStep._from(step, (*loc, "rollbacks", i))
            for i, step in enumerate(_list(d.get("rollbacks", []), loc, "rollbacks"))
        ]
        exp = cls(
            title=_text(d["title"], loc, "title"),
            method=method,
            description=_text(d.get("description", ""), loc, "description"),
            steady_state=SteadyState._from(d.get("steady_state", {}), (*loc, "steady_state")),
            rollbacks=rollbacks,
            safety=Safety._from(d.get("safety", {}), (*loc, "safety")),
            agents=_agents(d.get("agents", {})),
        )
        exp._check()
        return exp

    def _check(self) -> None:
        seen: set[str] = set()
        faults = 0
        for step in [*self.method, *self.rollbacks]:
            if step.id in seen:
                raise _Invalid("", f"duplicate step id {step.id!r}")
            seen.add(step.id)
            if isinstance(step, FaultStep):
                faults += max(1, len(step.targets))
        if faults > self.safety.max_faults:
            raise _Invalid(
                "",
                f"the method injects up to {faults} faults, over safety.max_faults "
                f"= {self.safety.max_faults}",
            )
        if not self.fault_steps:
            return
        # The fault models only when faults are named (their classes are most of an import).
        from tenfold.chaos_engine._faults import fault_from_dict

        for step in self.method:
            if isinstance(step, FaultStep):
                for agent, params in _placed(step):
                    if agent and agent not in self.agents:
                        raise _Invalid(
                            "", f"step {step.id!r}: agent {agent!r} is not declared in [agents]"
                        )
                    try:
                        fault_from_dict(step.fault, params)
                    except InvalidFault as exc:
                        raise _Invalid("", f"step {step.id!r}: {exc}") from None

    @functools.cached_property
    def fault_steps(self) -> int:
        """How many method steps inject faults (counted once: loading and running both ask)."""
        return sum(1 for s in self.method if isinstance(s, FaultStep))


def _expand(step: FaultStep) -> list[dict[str, Any]]:
    base = dict(step.params)
    if step.duration_s is not None:
        base["duration_s"] = step.duration_s
    if not step.targets:
        return [base]
    return [{**base, **target} for target in step.targets]


def _agents(value: Any) -> dict[str, str]:
    table = _dict_of_any(value, (), "agents")
    if not table:
        return {}  # no agents: the controller's modules stay unloaded
    from tenfold.chaos_engine._controller import check_agent

    for name, url in table.items():
        try:
            check_agent(name, url)
        except ExperimentError as exc:
            raise _Invalid("agents", str(exc)) from None
    return {str(k): str(v) for k, v in table.items()}


def _placed(
    step: FaultStep, targets: list[dict[str, Any]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Each parameter set with the agent it runs on ("" for this host), ``agent`` taken out."""
    out = []
    for given in _expand(step) if targets is None else targets:
        params = dict(given)
        agent = params.pop("agent", step.agent)
        if not isinstance(agent, str):
            raise _Invalid("", f"step {step.id!r}: agent must be a string, got {agent!r}")
        out.append((agent, params))
    return out


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


def parse_document(text: str, suffix: str, source: str) -> dict[str, Any]:
    try:
        if suffix == ".toml":
            import tomllib  # only for TOML files: JSON and YAML runs start without it

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
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
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
    built = is_chaostoolkit(data)
    if built:
        data = _from_chaostoolkit(data, source, build=True)
    try:
        exp: Experiment = Experiment._from(data, (), built=built)
    except _Invalid as exc:
        raise ExperimentError(f"{source}: {exc.line()}") from None
    return exp


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


def _ctk_where(source: str, loc: Loc) -> str:
    """An import error's place: the file, then the activity's path in the Chaos Toolkit document."""
    return f"{source}: {_where(loc)}"


def _ctk_provider(activity: dict[str, Any], source: str, loc: Loc) -> dict[str, Any]:
    provider = activity.get("provider")
    if not isinstance(provider, dict):
        raise ExperimentError(f"{_ctk_where(source, loc)}: activity has no provider")
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
        elif not hasattr(args, "__iter__"):  # list() would raise a TypeError: a traceback
            raise ExperimentError(
                f"{_ctk_where(source, loc)}: process arguments must be a list or a string, "
                f"got {type(args).__name__}"
            )
        out = {"type": "process", "path": provider.get("path", ""), "arguments": list(args)}
    else:
        raise ExperimentError(
            f"{_ctk_where(source, loc)}: Chaos Toolkit provider type {kind!r} is not supported"
        )
    if "timeout" in provider:
        out["timeout_s"] = provider["timeout"]
    return out


def _ctk_tolerance(value: Any, source: str, loc: Loc) -> dict[str, Any]:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    ):
        return {"min": value[0], "max": value[1]}
    if isinstance(value, bool | int | float | str):
        return {"equals": value}
    raise ExperimentError(
        f"{_ctk_where(source, loc)}: tolerance {value!r} is not supported "
        "(use a value or [min, max])"
    )


def _ctk_action(activity: dict[str, Any], step_id: str, after: Any) -> ActionStep | None:
    """The step of a plain python activity, built as the checks would build it from its
    converted table; None for anything else (converted, then checked, errors and all)."""
    provider = activity.get("provider")
    if type(provider) is not dict or provider.get("type") != "python":
        return None
    module, func = provider.get("module", ""), provider.get("func", "")
    args = provider.get("arguments", {})
    timeout = provider.get("timeout", 10.0)
    if (
        type(module) is not str
        or type(func) is not str
        or not (module and func)
        or type(args) is not dict
        or type(timeout) not in _PLAIN_NUMBERS
        or not 0 < timeout <= _WEEK_S
        or type(after) not in _PLAIN_NUMBERS
        or not 0 <= after <= 3600
    ):
        return None
    for key in args:
        if type(key) is not str:
            return None
    action = Provider("python", module, func, dict(args), "", float(timeout))
    return ActionStep(step_id, action, float(after))


def from_chaostoolkit(data: dict[str, Any], source: str = "<ctk>") -> dict[str, Any]:
    """Convert a Chaos Toolkit experiment into ours (python and process providers)."""
    return _from_chaostoolkit(data, source, build=False)


def _from_chaostoolkit(data: dict[str, Any], source: str, *, build: bool) -> dict[str, Any]:
    """:func:`from_chaostoolkit`; with ``build``, a plain python activity becomes its
    :class:`ActionStep` at once (a 2,000-step document is mostly these), for
    ``Experiment._from(..., built=True)``."""
    hypothesis = data.get("steady-state-hypothesis") or {}
    probes = []
    for i, probe in enumerate(hypothesis.get("probes", [])):
        where = ("steady-state-hypothesis", "probes", i)
        probes.append(
            {
                "name": probe.get("name", f"probe-{i}"),
                "provider": _ctk_provider(probe, source, where),
                "tolerance": _ctk_tolerance(probe.get("tolerance"), source, where),
            }
        )

    def steps(items: list[dict[str, Any]], prefix: str) -> list[dict[str, Any] | ActionStep]:
        out: list[dict[str, Any] | ActionStep] = []
        for i, activity in enumerate(items):
            if "ref" in activity:
                raise ExperimentError(
                    f"{_ctk_where(source, (prefix, i))}: "
                    "activity references ('ref') are not supported"
                )
            pauses = activity.get("pauses", {})
            if pauses.get("before"):
                out.append({"id": f"{prefix}-{i}-before", "pause_s": pauses["before"]})
            step_id, after = f"{prefix}-{i}", pauses.get("after", 0)
            step = _ctk_action(activity, step_id, after) if build else None
            if step is not None:
                out.append(step)
                continue
            out.append(
                {
                    "id": step_id,
                    "action": _ctk_provider(activity, source, (prefix, i)),
                    "pause_s": after,
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


class StepRecord(Record):
    _fields = ("id", "kind", "duration_s", "ok", "detail")

    def __init__(self, id: str, kind: str, duration_s: float, ok: bool, detail: str = "") -> None:
        self.id = id
        self.kind = kind
        self.duration_s = duration_s
        self.ok = ok
        self.detail = detail


Status = Literal["completed", "deviated", "aborted", "failed", "interrupted"]


class RunReport(Record):
    """What :func:`run_experiment` did."""

    _fields = (
        "title",
        "status",
        "reason",
        "steps",
        "faults_injected",
        "rollbacks_run",
        "violation_to_reverted_s",
        "duration_s",
    )

    def __init__(
        self,
        title: str,
        status: Status = "completed",
        reason: str = "",
        steps: list[StepRecord] | None = None,
        faults_injected: int = 0,
        rollbacks_run: int = 0,
        violation_to_reverted_s: float | None = None,
        duration_s: float = 0.0,
    ) -> None:
        self.title = title
        self.status: Status = status
        self.reason = reason
        self.steps: list[StepRecord] = [] if steps is None else steps
        self.faults_injected = faults_injected
        self.rollbacks_run = rollbacks_run
        self.violation_to_reverted_s = violation_to_reverted_s
        self.duration_s = duration_s

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


def _seeded(seed: int | None) -> random.Random:
    import random

    return random.Random(seed)


async def run_experiment(
    experiment: Experiment, engine: Any, *, seed: int | None = None
) -> RunReport:
    """Run ``experiment`` on ``engine``; always reverts every fault and runs the rollbacks.

    A steady state that does not hold ends the run with status ``aborted`` (before
    the method) or ``deviated``; a probe that raises or times out, or a step that
    fails, raises after the cleanup.
    """
    report = RunReport(experiment.title)
    # Seeded choices are made for fault steps only: a run of actions never loads `random`.
    rng = _seeded(seed) if experiment.fault_steps else None
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
                assert rng is not None  # set whenever the method has a fault step
                if step.probability < 1 and rng.random() >= step.probability:
                    report.steps.append(StepRecord(step.id, "fault", 0.0, True, "skipped"))
                    continue
                # one batch: the targets' journal records share a write, nft changes a commit
                from tenfold.chaos_engine._faults import fault_from_dict

                placed = [
                    (agent, fault_from_dict(step.fault, p))
                    for agent, p in _placed(step, select_targets(step, rng))
                ]
                if any(agent for agent, _ in placed):
                    if not hasattr(engine, "inject_placed"):
                        raise ExperimentError(
                            f"step {step.id!r} names an agent, but no controller is running"
                        )
                    handles = await engine.inject_placed(placed)
                else:
                    handles = await engine.inject_faults([f for _, f in placed])
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

    async def agents_watch() -> None:
        why = await engine.failures()
        violation["why"] = why
        violation["t"] = time.perf_counter()
        violation["lost"] = why
        if method_task is not None:
            method_task.cancel()

    watcher: asyncio.Task[None] | None = None
    lost_watcher: asyncio.Task[None] | None = None
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
        if hasattr(engine, "failures"):
            lost_watcher = asyncio.ensure_future(agents_watch())
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
            if "lost" in violation:
                report.status = "failed"
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
        if lost_watcher is not None:
            lost_watcher.cancel()
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
