"""Experiment validation: every problem is one line naming its place in the document.

Validation carries locations as key tuples and renders them only for an error
(a valid document formats none), so these tests pin the rendered place for
each kind of problem, at every position a document can hold one.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.chaos_engine._experiment import (
    ActionStep,
    Experiment,
    Provider,
    experiment_from_dict,
    from_chaostoolkit,
)
from tenfold.chaos_engine._record import Frozen, Record
from tenfold.chaos_engine.errors import ExperimentError


def _document() -> dict[str, Any]:
    """A valid experiment that uses every table and field kind the validator checks."""
    python = {"type": "python", "module": "m", "func": "f", "arguments": {"i": 1}, "timeout_s": 2}
    process = {"type": "process", "path": "/bin/true", "arguments": ["-a", "b"]}
    return {
        "title": "t",
        "description": "d",
        "steady_state": {
            "probes": [
                {
                    "name": "p",
                    "provider": copy.deepcopy(python),
                    "tolerance": {"min": 0, "max": 5},
                    "timeout_s": 1,
                },
                {"name": "q", "provider": copy.deepcopy(process), "tolerance": {"equals": 0}},
            ],
            "interval_s": 0.5,
            "continuous": True,
            "tolerated_failures": 1,
        },
        "method": [
            {
                "id": "f0",
                "fault": "point",
                "params": {"point": "p"},
                "mode": "all",
                "value": 100,
                "probability": 1,
                "duration_s": 1,
                "wait": False,
                "agent": "",
            },
            {"id": "a1", "action": copy.deepcopy(python), "pause_s": 0},
            {"id": "a2", "action": copy.deepcopy(process)},
        ],
        "rollbacks": [{"id": "r0", "action": copy.deepcopy(python)}],
        "safety": {"max_faults": 10, "max_duration_s": 60},
    }


def _checked(key: str | int, value: Any) -> bool:
    """Whether the validator types what is under ``key`` (a fault's params and a python
    provider's arguments are free-form; a process's argument list holds strings)."""
    return key != "params" and not (key == "arguments" and isinstance(value, dict))


def _places(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every scalar the validator types, as its path from the root."""
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return [path]
    return [p for key, value in items if _checked(key, value) for p in _places(value, (*path, key))]


def _tables(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every table whose keys the validator checks, as its path from the root."""
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _tables(value, (*path, i))]
    if not isinstance(node, dict):
        return []
    inner = [p for k, v in node.items() if _checked(k, v) for p in _tables(v, (*path, k))]
    return [path, *inner]


def _at(doc: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = doc
    for key in path:
        node = node[key]
    return node


def _error(doc: dict[str, Any]) -> str:
    with pytest.raises(ExperimentError) as info:
        experiment_from_dict(doc, "x.json")
    text = str(info.value)
    assert "\n" not in text
    return text


def test_the_document_is_valid() -> None:
    exp = experiment_from_dict(_document())
    assert [s.id for s in exp.method] == ["f0", "a1", "a2"] and exp.fault_steps == 1


@pytest.mark.parametrize("index", range(len(_places(_document()))))
def test_a_wrong_type_is_named_by_its_place(index: int) -> None:
    doc = _document()
    path = _places(doc)[index]
    _at(doc, path[:-1])[path[-1]] = [[]]  # a list of lists: no field of any kind takes it
    expected = {
        "equals": "must be a number, string or boolean",
        "type": "must be 'python' or 'process'",
        "mode": "must be one of 'one', 'all', 'count', 'percent'",
    }.get(str(path[-1]), "must be ")
    dotted = ".".join(str(p) for p in path)
    text = _error(doc)
    assert text.startswith(f"x.json: {dotted}: {expected}"), text


def _required(table: tuple[str | int, ...]) -> tuple[str, ...]:
    """The keys a table must have: the root's title and method, a probe's three, a step's id."""
    if not table:
        return ("title", "method")
    parent = table[-2] if len(table) >= 2 else None
    if parent in ("method", "rollbacks"):
        return ("id",)
    return ("name", "provider", "tolerance") if parent == "probes" else ()


@given(data=st.data())
@settings(max_examples=80, deadline=None)
def test_an_unknown_or_missing_key_is_named_by_its_place(data: st.DataObject) -> None:
    doc = _document()
    table = data.draw(st.sampled_from(_tables(doc)))
    required = _required(table)
    if required and data.draw(st.booleans(), label="delete a required key") is True:
        key = data.draw(st.sampled_from(required))
        del _at(doc, table)[key]
        assert _error(doc) == f"x.json: missing key '{'.'.join(map(str, (*table, key)))}'"
    else:
        _at(doc, table)["zz"] = 1
        assert _error(doc) == f"x.json: unknown key '{'.'.join(map(str, (*table, 'zz')))}'"


def test_positional_construction_matches_the_fields() -> None:
    """Hot steps are built positionally: each value must land in its own field."""
    exp = experiment_from_dict(_document())
    step = exp.method[1]
    assert step == ActionStep(
        id="a1",
        action=Provider(type="python", module="m", func="f", arguments={"i": 1}, timeout_s=2.0),
        pause_s=0.0,
    )
    assert exp.method[2] == ActionStep(
        id="a2", action=Provider(type="process", path="/bin/true", arguments=["-a", "b"])
    )
    assert Experiment.model_validate(exp.model_dump()) == exp
    # Provider and ActionStep fill their own dicts in __init__: still frozen, hashable, replaceable.
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.pause_s = 1.0
    assert hash(ActionStep("x")) == hash(ActionStep("x", None, 0.0))
    assert isinstance(step, ActionStep)
    assert step.replace(pause_s=2.0) == ActionStep("a1", step.action, 2.0)
    assert Provider().arguments == {} and Provider().arguments is not Provider().arguments


def test_chaostoolkit_import_errors_name_the_activity() -> None:
    ctk: dict[str, Any] = {
        "title": "c",
        "method": [
            {"type": "action", "name": "ok", "provider": {"type": "python", "module": "m"}},
            {"type": "action", "name": "bad", "provider": {"type": "http", "url": "u"}},
        ],
    }
    with pytest.raises(ExperimentError) as info:
        from_chaostoolkit(copy.deepcopy(ctk), "c.json")
    assert str(info.value) == (
        "c.json: method.1: Chaos Toolkit provider type 'http' is not supported"
    )
    ctk["method"][1] = {"type": "action", "name": "r", "ref": "ok"}
    with pytest.raises(ExperimentError, match=r"^c\.json: method\.1: activity references"):
        from_chaostoolkit(ctk, "c.json")


@pytest.mark.parametrize(
    ("place", "value", "message"),
    [
        (("action", "timeout_s"), 0, "action.timeout_s: must be > 0, got 0"),
        (("action", "timeout_s"), float("nan"), "action.timeout_s: must be finite"),
        (("action", "timeout_s"), float("inf"), "action.timeout_s: must be finite"),
        (("action", "timeout_s"), True, "action.timeout_s: must be a number, got True"),
        (("action", "timeout_s"), 1e9, "action.timeout_s: must be <= 604800, got 1e+09"),
        (("pause_s",), 3601, "pause_s: must be <= 3600, got 3601"),
        (("pause_s",), -0.5, "pause_s: must be >= 0, got -0.5"),
        (("pause_s",), False, "pause_s: must be a number, got False"),
        (("id",), "a b", "id: must be 1-64 letters, digits, '_', '.' or '-', got 'a b'"),
        (("id",), "x" * 65, "id: must be 1-64 letters"),
    ],
)
def test_values_a_step_accepts_inline_are_bounded_as_the_checks_say(
    place: tuple[str, ...], value: object, message: str
) -> None:
    """A step's id, pause and provider timeout are accepted inline when plain and in
    range; anything else must get the checks' own one-line error."""
    doc = _document()
    _at(doc, ("method", 1, *place[:-1]))[place[-1]] = value
    assert _error(doc).startswith(f"x.json: method.1.{message}")


# -- the run path's records: plain classes that behave as the dataclasses they replaced --


def _records() -> list[tuple[type[Record], tuple[Any, ...], tuple[str, ...]]]:
    """Each record class with a full set of field values and its fields hidden from repr."""
    from tenfold.chaos_engine._engine import (
        FaultHandle,
        _CallbackApplied,
        _DefaultPerformance,
        _PointActuator,
        _PointApplied,
    )
    from tenfold.chaos_engine._experiment import (
        FaultStep,
        Probe,
        RunReport,
        Safety,
        SteadyState,
        StepRecord,
        Tolerance,
    )
    from tenfold.chaos_engine._journal import Outstanding
    from tenfold.chaos_engine._monitor import MetricsSnapshot, Sample
    from tenfold.chaos_engine._points import ActiveRule, FaultPoints, PointStats
    from tenfold.chaos_engine._runner import Cluster

    provider = Provider("python", "m", "f", {"i": 1}, "", 2.0)
    probe = Probe("p", provider, Tolerance(0.0, 1.0, None), 5.0)
    step = ActionStep("a", provider, 0.5)
    points = FaultPoints(3)
    hidden = ("_engine", "_applied", "_release", "_timer")
    return [
        (Provider, ("process", "", "", ["-a"], "/bin/true", 1.0), ()),
        (Tolerance, (None, 2.5, "up"), ()),
        (Probe, ("p", provider, Tolerance(), 3.0), ()),
        (SteadyState, ([probe], 0.2, False, 2), ()),
        (
            FaultStep,
            ("f", "point", {"point": "p"}, [{"a": 1}], "count", 2.0, 0.5, 1.0, True, "n"),
            (),
        ),
        (ActionStep, ("a", provider, 0.5), ()),
        (Safety, (7, 60.0), ()),
        (Experiment, ("t", [step], "d", SteadyState([probe]), [step], Safety(), {"n": "x"}), ()),
        (StepRecord, ("a", "action", 0.1, True, "ok"), ()),
        (
            RunReport,
            ("t", "deviated", "why", [StepRecord("a", "action", 0.1, True)], 1, 2, 0.3, 4.0),
            (),
        ),
        (_DefaultPerformance, (1, 2, 3), ()),
        (_PointApplied, (points, "rule"), ()),
        (_PointActuator, (points,), ()),
        (_CallbackApplied, (print, True), ()),
        (FaultHandle, ("h1", "fault", 1.0, 2.0, "engine", "applied", None, None, True), hidden),
        (Outstanding, ({"f": {"op": "inject"}}, {"r": {}}, 42, True), ()),
        (Sample, (1.0, "probe", "p", 2.0), ()),
        (MetricsSnapshot, ({"c": 1.0}, {"g": 2.0}, [Sample(1.0, "probe", "p", 2.0)]), ()),
        (ActiveRule, ("fault", "rng", 3, 1), ()),
        (PointStats, (1, 2, 3), ()),
        (FaultPoints, (5, {"p": []}, {"p": PointStats()}, {"p"}), ()),
        (Cluster, ({"n": "https://h:1"}, "tls"), ()),
    ]


def _holds_record(value: Any) -> bool:
    if isinstance(value, Record):
        return True
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, list | tuple) and any(_holds_record(v) for v in value)


@pytest.mark.parametrize("index", range(22))
def test_a_record_compares_prints_hashes_and_freezes_as_its_dataclass_did(index: int) -> None:
    cls, values, hidden = _records()[index]
    frozen = issubclass(cls, Frozen)
    names = cls._fields
    ref = dataclasses.make_dataclass(
        cls.__qualname__,
        [(n, Any, dataclasses.field(repr=n not in hidden)) for n in names],
        frozen=frozen,
    )
    ours, theirs = cls(*values), ref(*values)
    assert [getattr(ours, n) for n in names] == list(values)
    assert cls(**dict(zip(names, values, strict=True))) == ours
    assert repr(ours) == repr(theirs).replace(ref.__qualname__, cls.__qualname__)
    # equal by class and fields, in order; another class (even with the same fields) is not
    assert ours == cls(*copy.deepcopy(values)) and ours != theirs
    assert copy.deepcopy(ours) == ours and pickle.loads(pickle.dumps(ours)) == ours
    changed = ours.replace(**{names[-1]: "other"})
    assert changed != ours and getattr(changed, names[-1]) == "other"
    assert [getattr(changed, n) for n in names[:-1]] == list(values[:-1])
    with pytest.raises(TypeError, match="no field 'nope'"):
        ours.replace(nope=1)
    if not _holds_record(values):  # asdict copies our records whole: compared below
        assert ours.to_dict() == dataclasses.asdict(theirs)
    if not frozen:
        assert cls.__hash__ is None and ref.__hash__ is None
        setattr(ours, names[0], "set")
        assert getattr(ours, names[0]) == "set"
        return
    try:
        expected: Any = hash(theirs)
    except TypeError as exc:
        expected = str(exc)
        with pytest.raises(TypeError, match=expected):
            hash(ours)
    else:
        assert hash(ours) == expected
    for name in (names[0], "unknown"):
        with pytest.raises(dataclasses.FrozenInstanceError) as ours_error:
            setattr(ours, name, 1)
        with pytest.raises(dataclasses.FrozenInstanceError) as their_error:
            setattr(theirs, name, 1)
        assert str(ours_error.value) == str(their_error.value)
        with pytest.raises(dataclasses.FrozenInstanceError) as ours_error:
            delattr(ours, name)
        with pytest.raises(dataclasses.FrozenInstanceError) as their_error:
            delattr(theirs, name)
        assert str(ours_error.value) == str(their_error.value)


def test_the_records_defaults_and_nested_dumps() -> None:
    from tenfold.chaos_engine._experiment import FaultStep, RunReport, Safety, SteadyState
    from tenfold.chaos_engine._journal import Outstanding
    from tenfold.chaos_engine._points import FaultPoints

    exp = Experiment("t", [ActionStep("a")])
    assert (exp.description, exp.steady_state, exp.rollbacks, exp.safety, exp.agents) == (
        "",
        SteadyState([], 0.1, True, 0),
        [],
        Safety(100, 3600.0),
        {},
    )
    # every mutable default is the instance's own, as a default_factory made it
    assert FaultStep("f", "p").params is not FaultStep("f", "p").params
    assert RunReport("t").steps is not RunReport("t").steps
    assert Outstanding().faults is not Outstanding().faults
    assert FaultPoints().known is not FaultPoints().known
    assert RunReport("t") == RunReport("t", "completed", "", [], 0, 0, None, 0.0)
    # model_dump is dataclasses.asdict: nested records become dicts, copied
    doc = experiment_from_dict(_document())
    dumped = doc.model_dump()
    assert isinstance(dumped["steady_state"]["probes"][0]["tolerance"], dict)
    assert dumped["method"][1]["action"]["arguments"] == {"i": 1}
    dumped["method"][1]["action"]["arguments"]["i"] = 9
    action = doc.method[1]
    assert isinstance(action, ActionStep) and action.action is not None
    assert action.action.arguments == {"i": 1}
    assert Experiment.model_validate(dumped) != doc
    # the cached fault count sits beside the frozen fields
    assert doc.fault_steps == 1 and doc == experiment_from_dict(_document())


# -- Chaos Toolkit documents: plain python activities are built at once, as the checks build them --

_ODD = st.sampled_from(
    [0, -1, 0.5, 2, 3600, 3601, 1e9, float("nan"), float("inf"), True, None, "1"]
)


@st.composite
def _ctk_activity(draw: st.DrawFn) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "type": draw(st.sampled_from(["python", "python", "process", "http"])),
        "module": draw(st.sampled_from(["m", "", 3])),
        "func": draw(st.sampled_from(["f", "", None])),
    }
    if draw(st.booleans()):
        provider["arguments"] = draw(
            st.sampled_from([{"i": 1}, {}, {1: 2}, ["-a"], "x y", None, {"nested": {"k": [1]}}])
        )
    if draw(st.booleans()):
        provider["timeout"] = draw(_ODD)
    if provider["type"] == "process":
        provider["path"] = draw(st.sampled_from(["/bin/true", "", 5]))
    activity: dict[str, Any] = {"type": "action", "name": "a", "provider": provider}
    if draw(st.booleans()):
        activity["pauses"] = {"after": draw(_ODD)}
    if draw(st.integers(0, 9)) == 0:
        del activity["provider"]
    return activity


def _outcome(build: Any) -> Any:
    try:
        return build()
    except ExperimentError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ctk_activity(), max_size=4), st.lists(_ctk_activity(), max_size=2))
def test_a_chaostoolkit_document_builds_as_its_conversion_checks(
    method: list[dict[str, Any]], rollbacks: list[dict[str, Any]]
) -> None:
    doc = {"title": "c", "steady-state-hypothesis": {}, "method": method, "rollbacks": rollbacks}
    direct = _outcome(lambda: experiment_from_dict(copy.deepcopy(doc), "x.json"))

    def converted() -> Any:
        try:
            return Experiment.model_validate(from_chaostoolkit(copy.deepcopy(doc), "x.json"))
        except ValueError as exc:
            raise ExperimentError(f"x.json: {exc}") from None

    assert direct == _outcome(converted)


def test_a_built_chaostoolkit_step_is_the_checked_one() -> None:
    activity = {
        "type": "action",
        "name": "a",
        "provider": {"type": "python", "module": "m", "func": "f", "arguments": {"i": 1}},
        "pauses": {"after": 1},
    }
    doc = {"title": "c", "method": [activity], "rollbacks": [activity]}
    exp = experiment_from_dict(doc)
    step = ActionStep("method-0", Provider("python", "m", "f", {"i": 1}, "", 10.0), 1.0)
    assert exp.method == [step] and exp.rollbacks == [step.replace(id="rollbacks-0")]
    # the built step's arguments are its own copy, as the checks' copy was
    assert exp.rollbacks[0].action is not None
    assert exp.rollbacks[0].action.arguments is not activity["provider"]["arguments"]  # type: ignore[index]
    # a document of our own never takes an already-built step
    with pytest.raises(ExperimentError, match="method.0: must be a table, got ActionStep"):
        experiment_from_dict({"title": "t", "method": [step]})
    # a process activity's arguments that are neither a list nor a string: one line, no traceback
    bad = {"type": "action", "name": "p", "provider": {"type": "process", "path": "/bin/true"}}
    bad["provider"]["arguments"] = None  # type: ignore[index]
    with pytest.raises(ExperimentError, match="^x.json: method.0: process arguments must be a"):
        experiment_from_dict({"title": "c", "method": [bad]}, "x.json")
