"""Plain classes that compare, print, hash and freeze as dataclasses do, without defining one.

Defining a dataclass compiles and runs its generated methods: about 1.8M instructions
for a plain one and 3.4M for a frozen one under callgrind, and ``chaos run`` defined 22
of them before it read its experiment (a sixth of a one-step run). The classes on that
path derive from :class:`Record` or :class:`Frozen` instead: each names its fields in
``_fields`` (in order) and writes its ``__init__`` with the same parameters, and these
shared methods give what the dataclass gave:

- ``==`` by class and fields in order (``NotImplemented`` for another class);
- ``repr`` as ``Name(field=value, ...)``, over ``_repr_fields`` when some are hidden;
- :class:`Record` is unhashable, :class:`Frozen` hashes its fields and refuses
  assignment and deletion with :class:`dataclasses.FrozenInstanceError`;
- copies and pickles of a :class:`Frozen` restore its fields;
- :meth:`Record.replace` for ``dataclasses.replace`` and :meth:`Record.to_dict` for
  ``dataclasses.asdict`` (records, lists, tuples and dicts copied recursively).

A frozen class's ``__init__`` fills ``self.__dict__`` (or calls ``object.__setattr__``
for slots), as the generated one did.
"""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn, Self

__all__ = ["Frozen", "Record"]


class Record:
    """A mutable record: eq and repr over ``_fields``, unhashable."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _repr_fields: ClassVar[tuple[str, ...] | None] = None  # None: every field

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self._fields])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            assert isinstance(other, Record)
            return self._values() == other._values()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as a dataclass with eq and not frozen

    def __repr__(self) -> str:
        names = self._fields if self._repr_fields is None else self._repr_fields
        inner = ", ".join([f"{name}={getattr(self, name)!r}" for name in names])
        return f"{type(self).__qualname__}({inner})"

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (``dataclasses.replace``); an unknown name is a TypeError."""
        values = {name: getattr(self, name) for name in self._fields}
        for name in changes:
            if name not in values:
                raise TypeError(f"{type(self).__qualname__} has no field {name!r}")
        values.update(changes)
        return type(self)(**values)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, nested records too (``dataclasses.asdict``)."""
        return {name: _plain(getattr(self, name)) for name in self._fields}


class Frozen(Record):
    """An immutable record: hashable over its fields, assignment refused."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._values())

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        _refuse(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        _refuse(f"cannot delete field {name!r}")

    # copy and pickle restore the fields past __setattr__, as a frozen dataclass's do
    def __getstate__(self) -> list[Any]:
        return list(self._values())

    def __setstate__(self, state: list[Any]) -> None:
        for name, value in zip(self._fields, state, strict=True):
            object.__setattr__(self, name, value)


def _refuse(message: str) -> NoReturn:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(message)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        items = [_plain(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if value is None or type(value) in (str, int, float, bool):
        return value
    import copy

    return copy.deepcopy(value)
