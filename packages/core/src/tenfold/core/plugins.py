"""Plugins: entry-point discovery and an explicit lifecycle.

Two kinds of thing come in through the ``tenfold.plugins`` entry-point group:

* a :class:`SystemPlugin` registers a whole system with the core: its CLI
  commands and its benchmark scenarios;
* a :class:`Plugin` is any other extension (a fault type, a detector, ...):
  an object with optional ``initialize(context)``, ``execute(*args)`` and
  ``stop()``, driven through :class:`PluginManager`.

The lifecycle is a state machine::

    discovered -> loaded -> initialized -> running -> stopped
         \\           \\           \\            \\-> failed
          `-----------`-----------`--------------> failed

A plugin that fails to import, raises, hangs past its timeout or duplicates
a name is marked ``failed`` with its reason; the others go on.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tenfold.core.errors import PluginError

if TYPE_CHECKING:
    import click

    from tenfold.core.bench import Scenario

__all__ = [
    "ENTRY_POINT_GROUP",
    "CommandRef",
    "Plugin",
    "PluginManager",
    "PluginRecord",
    "PluginState",
    "SystemPlugin",
    "import_object",
    "load_system",
    "system_names",
    "system_plugins",
]

ENTRY_POINT_GROUP = "tenfold.plugins"


def import_object(target: str) -> Any:
    """The object an import string names: ``"package.module:attribute"`` (dots after the colon
    walk attributes). Raises :class:`PluginError` naming the string when it does not resolve."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise PluginError(f"import string {target!r} is not of the form 'module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"import string {target!r}: no attribute {part!r}") from None
    return obj


@dataclass(frozen=True)
class CommandRef:
    """A top-level CLI command known by name and one-line summary; its module loads on use."""

    name: str
    target: str
    summary: str

    def load(self) -> click.Command:
        """Import the command; :class:`PluginError` if the string names no click command."""
        import click

        command = import_object(self.target)
        if not isinstance(command, click.Command):
            raise PluginError(f"command {self.name!r}: {self.target} is not a click command")
        return command


class _Lazy:
    """A zero-argument callable that imports ``target`` on first call and calls it."""

    __slots__ = ("_fn", "target")

    def __init__(self, target: str) -> None:
        self.target = target
        self._fn: Callable[[], Any] | None = None

    def __call__(self) -> Any:
        if self._fn is None:
            fn = import_object(self.target)
            if not callable(fn):
                raise PluginError(f"{self.target} is not callable")
            self._fn = fn
        return self._fn()

    def __repr__(self) -> str:
        return f"<lazy {self.target}>"


class SystemPlugin:
    """How a system registers itself: name, summary, CLI commands, scenarios and kernel.

    Everything is given as import strings (``"tenfold.x.bench:scenarios"``), so that
    listing the systems or their commands imports none of them; heavy modules load only
    when a command, a benchmark or the kernel runs. ``commands`` maps each top-level
    command name to ``(import string, one-line summary)``. ``config`` names the system's
    section of ``tenfold.toml`` and its :class:`~tenfold.core.config.Section` model (import
    string), so that the core can validate every section and show effective values.
    ``scenarios()`` returns the
    system's :class:`~tenfold.core.bench.Scenario` list; ``kernel()`` runs a small
    deterministic function whose instruction count (callgrind) guards against
    regressions without machine noise.
    """

    __slots__ = ("commands", "config", "kernel", "name", "scenarios", "summary", "title")

    def __init__(
        self,
        name: str,
        title: str,
        summary: str,
        *,
        commands: Mapping[str, tuple[str, str]] | None = None,
        config: tuple[str, str] | None = None,
        scenarios: str | None = None,
        kernel: str | None = None,
    ) -> None:
        self.name = name
        self.title = title
        self.summary = summary
        self.commands: tuple[CommandRef, ...] = tuple(
            CommandRef(command, target, text)
            for command, (target, text) in (commands or {}).items()
        )
        self.config = config
        self.scenarios: Callable[[], Sequence[Scenario]] | None = (
            _Lazy(scenarios) if scenarios else None
        )
        self.kernel: Callable[[], None] | None = _Lazy(kernel) if kernel else None

    def load_commands(self) -> list[click.Command]:
        """Import every command of this system."""
        return [ref.load() for ref in self.commands]

    def __repr__(self) -> str:
        return f"SystemPlugin({self.name!r})"


@runtime_checkable
class Plugin(Protocol):
    """A generic plugin: any object; the hooks below are optional."""


class PluginState(enum.Enum):
    DISCOVERED = "discovered"
    LOADED = "loaded"
    INITIALIZED = "initialized"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


_ALLOWED: dict[PluginState, frozenset[PluginState]] = {
    PluginState.DISCOVERED: frozenset({PluginState.LOADED, PluginState.FAILED}),
    PluginState.LOADED: frozenset({PluginState.INITIALIZED, PluginState.FAILED}),
    PluginState.INITIALIZED: frozenset(
        {PluginState.RUNNING, PluginState.STOPPED, PluginState.FAILED}
    ),
    PluginState.RUNNING: frozenset(
        {PluginState.INITIALIZED, PluginState.STOPPED, PluginState.FAILED}
    ),
    PluginState.STOPPED: frozenset(),
    PluginState.FAILED: frozenset(),
}


@dataclass
class PluginRecord:
    """One plugin's entry in the registry: where it came from, its state, and why it failed."""

    name: str
    source: str
    loader: Callable[[], Any]
    state: PluginState = PluginState.DISCOVERED
    obj: Any = None
    reason: str = ""
    history: list[PluginState] = field(default_factory=list)

    def transition(self, new: PluginState) -> None:
        """Move to ``new``; raises :class:`PluginError` on a transition the machine forbids."""
        if new not in _ALLOWED[self.state]:
            raise PluginError(
                f"plugin {self.name!r}: illegal transition {self.state.value} -> {new.value}"
            )
        self.history.append(self.state)
        self.state = new

    def fail(self, reason: str) -> None:
        if self.state is not PluginState.FAILED:
            self.history.append(self.state)
            self.state = PluginState.FAILED
        self.reason = reason


def _call_with_timeout(fn: Callable[[], Any], timeout_s: float) -> Any:
    """Run ``fn`` in a daemon thread; raise TimeoutError if it does not return in time.

    A Python thread cannot be killed: a hung plugin's thread is abandoned (daemon),
    the plugin is marked failed and never called again.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="tenfold-plugin")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"did not return within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if not isinstance(exc, TimeoutError) else text


class PluginManager:
    """The registry of plugins and the driver of their lifecycle.

    Every step takes a timeout; a failure marks only that plugin failed.
    """

    def __init__(self, *, timeout_s: float = 5.0) -> None:
        if timeout_s <= 0:
            raise PluginError(f"plugin timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self._records: dict[str, PluginRecord] = {}
        self._lock = threading.Lock()

    # -- discovery ---------------------------------------------------------
    def discover(self, group: str = ENTRY_POINT_GROUP) -> list[PluginRecord]:
        """Register every entry point of ``group`` (not yet imported)."""
        found = []
        for ep in importlib.metadata.entry_points(group=group):
            found.append(self.add(ep.name, ep.load, source=ep.value))
        return found

    def add(self, name: str, loader: Callable[[], Any], *, source: str = "") -> PluginRecord:
        """Register a plugin by name and loader; a duplicate name is recorded failed."""
        with self._lock:
            record = PluginRecord(name=name, source=source or repr(loader), loader=loader)
            if name in self._records:
                dup = PluginRecord(name=f"{name}#dup", source=record.source, loader=loader)
                dup.fail(
                    f"duplicate plugin name {name!r} (already from {self._records[name].source})"
                )
                self._records[dup.name] = dup
                return dup
            self._records[name] = record
            return record

    # -- lifecycle -----------------------------------------------------------
    def load(self, name: str) -> PluginRecord:
        record = self.get(name)
        if record.state is PluginState.DISCOVERED:
            try:
                record.obj = _call_with_timeout(record.loader, self.timeout_s)
            except BaseException as exc:
                record.fail(f"failed to load: {_describe(exc)}")
                return record
            record.transition(PluginState.LOADED)
        return record

    def initialize(self, name: str, context: Any = None) -> PluginRecord:
        record = self.load(name)
        if record.state is PluginState.LOADED:
            hook = getattr(record.obj, "initialize", None)
            try:
                if callable(hook):
                    _call_with_timeout(lambda: hook(context), self.timeout_s)
            except BaseException as exc:
                record.fail(f"failed to initialize: {_describe(exc)}")
                return record
            record.transition(PluginState.INITIALIZED)
        return record

    def execute(self, name: str, *args: Any, timeout_s: float | None = None) -> Any:
        """Call the plugin's ``execute``; raises :class:`PluginError` if it fails or hangs."""
        record = self.get(name)
        if record.state is not PluginState.INITIALIZED:
            raise PluginError(
                f"plugin {name!r} is {record.state.value}"
                + (f" ({record.reason})" if record.reason else "")
                + ", not initialized"
            )
        hook = getattr(record.obj, "execute", None)
        if not callable(hook):
            raise PluginError(f"plugin {name!r} has no execute()")
        record.transition(PluginState.RUNNING)
        try:
            result = _call_with_timeout(lambda: hook(*args), timeout_s or self.timeout_s)
        except BaseException as exc:
            record.fail(f"failed in execute: {_describe(exc)}")
            raise PluginError(f"plugin {name!r} {record.reason}") from None
        record.transition(PluginState.INITIALIZED)
        return result

    def execute_fast(self, name: str, *args: Any) -> Any:
        """Dispatch to an initialized plugin in the calling thread, without a timeout.

        For hot paths (a plugin called thousands of times a second); a raise still
        marks the plugin failed.
        """
        record = self._records[name]
        if record.state is not PluginState.INITIALIZED:
            raise PluginError(f"plugin {name!r} is {record.state.value}, not initialized")
        try:
            return record.obj.execute(*args)
        except Exception as exc:
            record.fail(f"failed in execute: {_describe(exc)}")
            raise PluginError(f"plugin {name!r} {record.reason}") from None

    def stop(self, name: str) -> PluginRecord:
        record = self.get(name)
        if record.state in (PluginState.INITIALIZED, PluginState.RUNNING):
            hook = getattr(record.obj, "stop", None)
            try:
                if callable(hook):
                    _call_with_timeout(hook, self.timeout_s)
            except BaseException as exc:
                record.fail(f"failed to stop: {_describe(exc)}")
                return record
            record.transition(PluginState.STOPPED)
        return record

    def stop_all(self) -> None:
        for name in list(self._records):
            self.stop(name)

    # -- registry --------------------------------------------------------------
    def get(self, name: str) -> PluginRecord:
        try:
            return self._records[name]
        except KeyError:
            known = ", ".join(sorted(self._records)) or "none"
            raise PluginError(f"unknown plugin {name!r} (known: {known})") from None

    def records(self) -> list[PluginRecord]:
        return sorted(self._records.values(), key=lambda r: r.name)

    def load_all(self, names: Iterable[str] | None = None) -> list[PluginRecord]:
        for name in list(names if names is not None else self._records):
            self.load(name)
        return self.records()


def system_plugins(*, strict: bool = False) -> tuple[list[SystemPlugin], list[PluginRecord]]:
    """Load every registered system; return the good ones and the failed records."""
    manager = PluginManager(timeout_s=30.0)
    manager.discover()
    good: list[SystemPlugin] = []
    failed: list[PluginRecord] = []
    for record in manager.load_all():
        if record.state is PluginState.LOADED and isinstance(record.obj, SystemPlugin):
            good.append(record.obj)
        elif record.state is PluginState.LOADED:
            record.fail(f"entry point is a {type(record.obj).__name__}, not a SystemPlugin")
            failed.append(record)
        else:
            failed.append(record)
    if strict and failed:
        raise PluginError("; ".join(f"{r.name}: {r.reason}" for r in failed))
    return sorted(good, key=lambda p: p.name), failed


def system_names(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """The registered systems' names, without importing any of them."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})


def load_system(
    name: str, group: str = ENTRY_POINT_GROUP, *, timeout_s: float = 60.0
) -> SystemPlugin:
    """Import one system's plugin (and only that one); :class:`PluginError` says why it failed."""
    manager = PluginManager(timeout_s=timeout_s)
    for ep in importlib.metadata.entry_points(group=group):
        if ep.name == name:
            manager.add(ep.name, ep.load, source=ep.value)
    if not manager.records():
        raise PluginError(f"unknown system {name!r} (known: {', '.join(system_names(group))})")
    record = manager.load(name)
    if record.state is not PluginState.LOADED:
        raise PluginError(f"system {name!r} failed to load: {record.reason}")
    if not isinstance(record.obj, SystemPlugin):
        raise PluginError(
            f"system {name!r}: entry point is a {type(record.obj).__name__}, not a SystemPlugin"
        )
    return record.obj
