from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenfold.core.errors import PluginError
from tenfold.core.plugins import PluginManager, PluginRecord, PluginState


class Good:
    def __init__(self) -> None:
        self.calls: list[object] = []
        self.stopped = False

    def initialize(self, context: object) -> None:
        self.context = context

    def execute(self, x: int) -> int:
        self.calls.append(x)
        return x * 2

    def stop(self) -> None:
        self.stopped = True


class RaisesOnExecute(Good):
    def execute(self, x: int) -> int:
        raise ValueError("boom")


class HangsOnInit(Good):
    def initialize(self, context: object) -> None:
        time.sleep(5)


def broken_import() -> object:
    raise ImportError("No module named 'missing_dep'")


def test_lifecycle_happy_path() -> None:
    pm = PluginManager(timeout_s=2)
    pm.add("good", Good)
    assert pm.initialize("good", {"k": 1}).state is PluginState.INITIALIZED
    assert pm.execute("good", 21) == 42
    assert pm.execute_fast("good", 2) == 4
    record = pm.stop("good")
    assert record.state is PluginState.STOPPED
    assert record.obj.stopped
    assert record.history == [
        PluginState.DISCOVERED,
        PluginState.LOADED,
        PluginState.INITIALIZED,
        PluginState.RUNNING,
        PluginState.INITIALIZED,
    ]


def test_failures_are_isolated_and_explained() -> None:
    pm = PluginManager(timeout_s=0.3)
    pm.add("good", Good)
    pm.add("broken", broken_import)
    pm.add("raises", RaisesOnExecute)
    pm.add("hangs", HangsOnInit)
    pm.add("good", Good)  # duplicate name
    for name in ("good", "broken", "raises", "hangs"):
        pm.initialize(name)
    with pytest.raises(PluginError, match="failed in execute: ValueError: boom"):
        pm.execute("raises", 1)
    states = {r.name: (r.state, r.reason) for r in pm.records()}
    assert states["good"][0] is PluginState.INITIALIZED
    assert states["broken"] == (
        PluginState.FAILED,
        "failed to load: ImportError: No module named 'missing_dep'",
    )
    assert states["raises"][0] is PluginState.FAILED
    assert states["hangs"] == (
        PluginState.FAILED,
        "failed to initialize: did not return within 0.3 s",
    )
    assert states["good#dup"][0] is PluginState.FAILED
    assert "duplicate plugin name 'good'" in states["good#dup"][1]
    assert pm.execute("good", 1) == 2  # the others go on
    with pytest.raises(PluginError, match="is failed"):
        pm.execute("hangs", 1)


def test_execute_timeout_marks_failed() -> None:
    class Slow(Good):
        def execute(self, x: int) -> int:
            time.sleep(2)
            return x

    pm = PluginManager(timeout_s=1)
    pm.add("slow", Slow)
    pm.initialize("slow")
    with pytest.raises(PluginError, match="did not return within 0.2 s"):
        pm.execute("slow", 1, timeout_s=0.2)
    assert pm.get("slow").state is PluginState.FAILED


def test_unknown_plugin_and_bad_timeout() -> None:
    with pytest.raises(PluginError, match="unknown plugin 'x'"):
        PluginManager().get("x")
    with pytest.raises(PluginError, match="must be positive"):
        PluginManager(timeout_s=0)


ALLOWED = {
    (PluginState.DISCOVERED, PluginState.LOADED),
    (PluginState.LOADED, PluginState.INITIALIZED),
    (PluginState.INITIALIZED, PluginState.RUNNING),
    (PluginState.INITIALIZED, PluginState.STOPPED),
    (PluginState.RUNNING, PluginState.INITIALIZED),
    (PluginState.RUNNING, PluginState.STOPPED),
}


@given(st.lists(st.sampled_from(list(PluginState)), max_size=12))
def test_state_machine_accepts_exactly_the_allowed_edges(steps: list[PluginState]) -> None:
    record = PluginRecord(name="p", source="test", loader=object)
    for new in steps:
        old = record.state
        legal = (old, new) in ALLOWED or (
            new is PluginState.FAILED and old not in (PluginState.STOPPED, PluginState.FAILED)
        )
        if legal:
            record.transition(new)
            assert record.state is new
        else:
            with pytest.raises(PluginError, match="illegal transition"):
                record.transition(new)
            assert record.state is old
