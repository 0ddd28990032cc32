"""Task graphs: the ``@task`` decorator, the :class:`Graph` builder, and the compiled plan.

A graph is built from any of three shapes and compiled into one :class:`Plan`:

* ``Graph.add(key, fn, *args)`` where an argument that is a :class:`Node` (or
  ``graph[key]``) stands for that task's result, plus ``after=`` for
  ordering-only dependencies;
* a Dask-style dict ``{key: (fn, arg, other_key, ...)}`` (``Graph.from_dask``);
* a list of ``(key, fn, deps)`` triples, ``fn`` called with the results of
  ``deps`` in order (``Graph.from_tasks``).

The plan is a struct of arrays indexed by slot number (one slot per task), so a
task in flight costs a few list entries rather than an object: ``fns``,
``args`` (``None`` on the fast path: call ``fn`` with the dependency results in
order), ``deps`` (tuples of slot numbers), ``succ`` (dependents) and
``chain_next`` (the single dependent fused into this task's worker, or -1).
Compiling rejects duplicate keys, missing dependencies and cycles (naming the
cycle's path) before anything runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from tenfold.parallel_framework.errors import (
    CycleError,
    DuplicateKeyError,
    GraphError,
    MissingDependencyError,
)

__all__ = ["Graph", "Node", "Plan", "TaskFunction", "TaskOptions", "as_graph", "as_plan", "task"]

P = ParamSpec("P")
R = TypeVar("R")
Key = Hashable


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-task behaviour: ``retries`` extra attempts with exponential backoff, and a timeout."""

    retries: int = 0
    backoff_s: float = 0.05
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise GraphError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0:
            raise GraphError(f"backoff_s must be >= 0, got {self.backoff_s}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise GraphError(f"timeout_s must be positive, got {self.timeout_s}")

    @property
    def plain(self) -> bool:
        return self.retries == 0 and self.timeout_s is None

    def delay_s(self, attempt: int) -> float:
        """Backoff before attempt number ``attempt`` (1 = the first retry): doubling each time."""
        return float(self.backoff_s * (2 ** (attempt - 1)))


PLAIN = TaskOptions()


class Node:
    """A reference to one task's result inside a :class:`Graph` (what ``Graph.add`` returns)."""

    __slots__ = ("key",)

    def __init__(self, key: Key) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"Node({self.key!r})"


class Ref:
    """A compiled reference to a slot's result inside an argument template."""

    __slots__ = ("slot",)

    def __init__(self, slot: int) -> None:
        self.slot = slot

    def __reduce__(self) -> tuple[type[Ref], tuple[int]]:
        return (Ref, (self.slot,))


class Call:
    """A nested call inside arguments (Dask's ``(fn, *args)`` inside a task): evaluated in place."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def __reduce__(self) -> tuple[type[Call], tuple[Any, ...]]:
        return (Call, (self.fn, self.args))


def substitute(value: Any, results: Sequence[Any] | Mapping[int, Any]) -> Any:
    """Replace every :class:`Ref` in an argument template by the referenced result."""
    if type(value) is Ref:
        return results[value.slot]
    if type(value) is tuple:
        return tuple(substitute(v, results) for v in value)
    if type(value) is list:
        return [substitute(v, results) for v in value]
    if type(value) is dict:
        return {k: substitute(v, results) for k, v in value.items()}
    if type(value) is Call:
        return value.fn(*substitute(value.args, results))
    return value


_active_graph: contextvars.ContextVar[Graph | None] = contextvars.ContextVar(
    "tenfold_parallel_active_graph", default=None
)


class TaskFunction(Generic[P, R]):
    """A function marked with ``@task``: called normally, or adds a node inside ``with Graph()``."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions, name: str | None) -> None:
        self.fn = fn
        self.options = options
        self.name: str = name or str(getattr(fn, "__name__", "task"))
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        graph = _active_graph.get()
        if graph is None:
            return self.fn(*args, **kwargs)
        if kwargs:
            raise GraphError(
                f"task {self.name!r}: keyword arguments are not supported inside a graph; "
                "pass them positionally or bind them with functools.partial"
            )
        node = graph.add(graph.fresh_key(self.name), self, *args)
        return node  # type: ignore[return-value]

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskFunction, (self.fn, self.options, self.name))


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...
@overload
def task(
    *,
    retries: int = 0,
    backoff_s: float = 0.05,
    timeout_s: float | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...
def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    retries: int = 0,
    backoff_s: float = 0.05,
    timeout_s: float | None = None,
    name: str | None = None,
) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Mark a function as a task, optionally with retries, backoff and a timeout.

    Called outside a graph it is the plain function; called inside ``with Graph():``
    it adds a node (arguments that are nodes become dependencies) and returns it.
    """
    options = TaskOptions(retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)

    def wrap(f: Callable[P, R]) -> TaskFunction[P, R]:
        return TaskFunction(f, options, name)

    return wrap(fn) if fn is not None else wrap


@dataclass(slots=True)
class _Spec:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    after: tuple[Key, ...]
    options: TaskOptions


class Graph:
    """A task graph under construction. Keys are any hashable values, unique per graph."""

    def __init__(self) -> None:
        self._specs: dict[Key, _Spec] = {}
        self._counter = itertools.count()
        self._token: contextvars.Token[Graph | None] | None = None

    # -- building ----------------------------------------------------------------------------------
    def add(
        self,
        key: Key,
        fn: Callable[..., Any],
        *args: Any,
        after: Iterable[Key] = (),
        retries: int | None = None,
        backoff_s: float | None = None,
        timeout_s: float | None = None,
    ) -> Node:
        """Add a task; :class:`Node` arguments (also inside lists, tuples, dicts) are dependencies."""
        if key in self._specs:
            raise DuplicateKeyError(f"duplicate task key {key!r}")
        if not callable(fn):
            raise GraphError(f"task {key!r}: {fn!r} is not callable")
        base = fn.options if isinstance(fn, TaskFunction) else PLAIN
        if retries is not None or backoff_s is not None or timeout_s is not None:
            base = TaskOptions(
                retries=base.retries if retries is None else retries,
                backoff_s=base.backoff_s if backoff_s is None else backoff_s,
                timeout_s=base.timeout_s if timeout_s is None else timeout_s,
            )
        call = fn.fn if isinstance(fn, TaskFunction) else fn
        self._specs[key] = _Spec(call, args, tuple(after), base)
        return Node(key)

    def fresh_key(self, name: str) -> str:
        """A key not yet used in this graph, ``name-N``."""
        while True:
            key = f"{name}-{next(self._counter)}"
            if key not in self._specs:
                return key

    def __getitem__(self, key: Key) -> Node:
        if key not in self._specs:
            raise MissingDependencyError(f"no task with key {key!r} in the graph")
        return Node(key)

    def __contains__(self, key: object) -> bool:
        return key in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._specs)

    def __enter__(self) -> Graph:
        self._token = _active_graph.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _active_graph.reset(self._token)
            self._token = None

    # -- other shapes ------------------------------------------------------------------------------
    @classmethod
    def from_tasks(cls, tasks: Iterable[tuple[Key, Callable[..., Any], Sequence[Key]]]) -> Graph:
        """A graph from ``(key, fn, deps)`` triples; ``fn`` gets the results of ``deps`` in order."""
        graph = cls()
        for entry in tasks:
            if not isinstance(entry, tuple) or len(entry) != 3:
                raise GraphError(f"expected a (key, fn, deps) triple, got {entry!r}")
            key, fn, deps = entry
            if isinstance(deps, str | bytes) or not isinstance(deps, Iterable):
                raise GraphError(f"task {key!r}: deps must be a list of keys, got {deps!r}")
            graph.add(key, fn, *(Node(d) for d in deps))
        return graph

    @classmethod
    def from_dask(cls, dsk: Mapping[Key, Any]) -> Graph:
        """A graph from a Dask-style dict: ``{key: (fn, *args)}``; arguments naming keys are deps.

        A value that is not a task tuple is a literal (or, if it names another key, an alias).
        """
        graph = cls()
        for key, value in dsk.items():
            fn, args = _dask_task(dsk, value)
            graph.add(key, fn, *args)
        return graph

    # -- compiling -----------------------------------------------------------------------------------
    def compile(self) -> Plan:
        """Validate and compile into a :class:`Plan` (raises :class:`GraphError` subclasses)."""
        return Plan.build(self._specs)


def _identity(value: Any) -> Any:
    return value


def _dask_convert(dsk: Mapping[Key, Any], value: Any) -> Any:
    if isinstance(value, tuple) and value and callable(value[0]):
        return Call(value[0], tuple(_dask_convert(dsk, v) for v in value[1:]))
    if isinstance(value, list):
        return [_dask_convert(dsk, v) for v in value]
    if isinstance(value, tuple):
        return tuple(_dask_convert(dsk, v) for v in value)
    try:
        if value in dsk:
            return Node(value)
    except TypeError:  # unhashable literal
        pass
    return value


def _dask_task(dsk: Mapping[Key, Any], value: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """A Dask value as ``(fn, args)`` with :class:`Node` for every argument naming a key."""
    if isinstance(value, tuple) and value and callable(value[0]):
        return value[0], tuple(_dask_convert(dsk, v) for v in value[1:])
    return _identity, (_dask_convert(dsk, value),)


GraphLike = Graph | Mapping[Key, Any] | Sequence[tuple[Key, Callable[..., Any], Sequence[Key]]]


def as_plan(graph: GraphLike | Plan) -> Plan:
    """Compile any accepted graph shape (a Dask dict takes the direct path)."""
    if isinstance(graph, Plan):
        return graph
    if isinstance(graph, Mapping):
        return Plan.from_dask(graph)
    return as_graph(graph).compile()


def as_graph(graph: GraphLike) -> Graph:
    """Accept a :class:`Graph`, a Dask-style dict or a list of ``(key, fn, deps)``."""
    if isinstance(graph, Graph):
        return graph
    if isinstance(graph, Mapping):
        return Graph.from_dask(graph)
    if isinstance(graph, Sequence) and not isinstance(graph, str | bytes):
        return Graph.from_tasks(graph)
    raise GraphError(
        f"expected a Graph, a Dask-style dict or a list of (key, fn, deps), got {type(graph).__name__}"
    )


class Plan:
    """A validated graph as a struct of arrays indexed by slot; see the module docstring."""

    __slots__ = ("args", "chain_next", "deps", "fns", "index", "keys", "options", "succ")

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.index: dict[Key, int] = {}
        self.fns: list[Callable[..., Any]] = []
        self.args: list[tuple[Any, ...] | None] = []
        self.deps: list[tuple[int, ...]] = []
        self.succ: list[list[int]] = []
        self.chain_next: list[int] = []
        self.options: dict[int, TaskOptions] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, specs: Mapping[Key, _Spec]) -> Plan:
        with _gc_paused():
            return cls._build(specs)

    @classmethod
    def _build(cls, specs: Mapping[Key, _Spec]) -> Plan:
        plan = cls()
        index = plan.index
        for slot, key in enumerate(specs):
            index[key] = slot
        plan.keys = list(specs)

        for key, spec in specs.items():
            found: list[int] = []
            template = _compile_args(spec.args, index, found, key)
            for extra in spec.after:
                if extra not in index:
                    raise MissingDependencyError(
                        f"task {key!r} runs after {extra!r}, which no task in the graph produces"
                    )
                found.append(index[extra])
            deps = tuple(dict.fromkeys(found))
            direct = template is not None and all(type(a) is Ref for a in template)
            if direct and not spec.after and tuple(a.slot for a in template) == deps:
                template = None  # fast path: fn(*results of deps)
            plan.fns.append(spec.fn)
            plan.args.append(template)
            plan.deps.append(deps)
            if not spec.options.plain:
                plan.options[index[key]] = spec.options
        plan._finish()
        return plan

    @classmethod
    def from_dask(cls, dsk: Mapping[Key, Any]) -> Plan:
        """Compile a Dask-style dict directly (no intermediate :class:`Graph`)."""
        with _gc_paused():
            return cls._from_dask(dsk)

    @classmethod
    def _from_dask(cls, dsk: Mapping[Key, Any]) -> Plan:
        plan = cls()
        plan.keys = keys = list(dsk)
        plan.index = index = {k: i for i, k in enumerate(keys)}
        fns, args, deps = plan.fns, plan.args, plan.deps
        for key in keys:
            value = dsk[key]
            if type(value) is tuple and value and callable(value[0]):
                # Fast path: every argument names a key, each once.
                try:
                    ds = tuple([index[a] for a in value[1:]])
                    if len(set(ds)) == len(ds):
                        fns.append(value[0])
                        args.append(None)
                        deps.append(ds)
                        continue
                except (KeyError, TypeError):
                    pass
            fn, raw = _dask_task(dsk, value)
            found: list[int] = []
            template = _compile_args(raw, index, found, key)
            fns.append(fn)
            args.append(template)
            deps.append(tuple(dict.fromkeys(found)))
        plan._finish()
        return plan

    def _finish(self) -> None:
        succ: list[list[int]] = [[] for _ in self.keys]
        for slot, deps in enumerate(self.deps):
            for d in deps:
                succ[d].append(slot)
        self.succ = succ
        self._check_acyclic()
        self._fuse_chains()

    def _check_acyclic(self) -> None:
        pending = [len(d) for d in self.deps]
        stack = [i for i, p in enumerate(pending) if p == 0]
        seen = 0
        while stack:
            i = stack.pop()
            seen += 1
            for s in self.succ[i]:
                pending[s] -= 1
                if pending[s] == 0:
                    stack.append(s)
        if seen == len(self.keys):
            return
        # Every slot left with pending > 0 lies on or below a cycle; walk dependencies
        # among them until a slot repeats: the walk from its first visit is the cycle.
        start = next(i for i, p in enumerate(pending) if p > 0)
        order: dict[int, int] = {}
        node = start
        while node not in order:
            order[node] = len(order)
            node = next(d for d in self.deps[node] if pending[d] > 0)
        path = list(order)[order[node] :]
        path.reverse()  # deps point backwards; print in execution order
        names = " -> ".join(repr(self.keys[i]) for i in [*path, path[0]])
        raise CycleError(f"dependency cycle: {names}")

    def _fuse_chains(self) -> None:
        """Mark ``i -> j`` fused when ``j`` is ``i``'s only dependent and ``i`` is ``j``'s only dep.

        A fused ``j`` is never queued: the worker that finishes ``i`` runs ``j`` next,
        with ``i``'s result, so a chain costs one queue hand-over instead of one per task.
        """
        chain = [-1] * len(self.keys)
        succ, deps, options = self.succ, self.deps, self.options
        for i, s in enumerate(succ):
            if len(s) == 1:
                j = s[0]
                if len(deps[j]) == 1 and j not in options:
                    chain[i] = j
        self.chain_next = chain

    @property
    def fused(self) -> int:
        """How many tasks run fused behind their predecessor."""
        return sum(1 for j in self.chain_next if j >= 0)

    def roots(self) -> list[int]:
        return [i for i, d in enumerate(self.deps) if not d]

    def sinks(self) -> list[int]:
        return [i for i, s in enumerate(self.succ) if not s]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Compiling allocates millions of small containers and no cycles: skip the GC passes."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _compile_args(
    args: tuple[Any, ...], index: Mapping[Key, int], found: list[int], key: Key
) -> Any:
    def conv(value: Any) -> Any:
        if type(value) is Node:
            if value.key not in index:
                raise MissingDependencyError(
                    f"task {key!r} depends on {value.key!r}, which no task in the graph produces"
                )
            slot = index[value.key]
            found.append(slot)
            return Ref(slot)
        if type(value) is tuple:
            return tuple(conv(v) for v in value)
        if type(value) is list:
            return [conv(v) for v in value]
        if type(value) is dict:
            return {k: conv(v) for k, v in value.items()}
        if type(value) is Call:
            return Call(value.fn, tuple(conv(v) for v in value.args))
        return value

    out = tuple(conv(a) for a in args)
    return out
