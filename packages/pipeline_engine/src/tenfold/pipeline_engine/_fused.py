"""decode -> filter -> join as one compiled pass, when the three stages are written as data.

The row-by-row path decodes each message into the decode schema ``S``, tests the
filter, then builds a second Struct of the join's output type ``T`` (``S``'s
fields, then the lookup's columns) from the first. Most of that is Python work
per event: a predicate call, a key call, a merge call and a second object.

When the filter is a :class:`Where` and the join a :func:`column_join` over an
in-memory table, this module compiles the three into one function that decodes
each message straight into ``T`` (its columns left at their default, None),
keeps the events the conditions hold for, with the conditions as inline
comparisons, and writes each kept event's row into its columns in place. The
profile of the in-memory benchmark row puts that at about two thirds of the
row-by-row path's CPU per event.

Invariant: for every batch, the fused pass returns exactly the events the three
stages would, or ``None``. It returns ``None`` (and the engine runs the stages
one by one, which make dead letters and name errors as usual) whenever it
cannot vouch for that batch: a message that is None, oversized, malformed or of
the wrong type for ``T``; a key that is not hashable; a row whose length is not
the number of columns; a comparison that raises; or an event without a row
whose JSON set one of ``T``'s columns (``S`` would have ignored that key, ``T``
would keep its value). Messages the filter drops may set those keys freely: a
``T`` that decodes gives the same ``S`` fields an ``S`` decode would, since
``S`` ignores unknown keys (checked below) and ``T``'s other fields are ``S``'s.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

import msgspec

from tenfold.pipeline_engine._batch import Batch
from tenfold.pipeline_engine._stages import _OPS, DecodeJson, Enrich, Filter, Stage, Where

__all__ = ["DecodeFilterJoin", "decode_filter_join"]


class _ColumnSetByMessage(Exception):
    """An event without a row carried one of the join's columns in its JSON."""


def _plain(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _decodes_alike(
    s: type[msgspec.Struct], t: type[msgspec.Struct], columns: tuple[str, ...]
) -> bool:
    """Whether decoding a message into ``t`` gives ``s``'s fields as an ``s`` decode would,
    with ``columns`` at None unless the message names them."""
    for cls in (s, t):
        cfg = cls.__struct_config__
        if cfg.array_like or cfg.forbid_unknown_fields or cfg.tag is not None:
            return False
        if cls.__struct_encode_fields__ != cls.__struct_fields__:  # renamed fields
            return False
    if t.__struct_config__.frozen:
        return False  # columns are written in place
    sf, tf = msgspec.structs.fields(s), msgspec.structs.fields(t)
    if len(tf) != len(sf) + len(columns) or tuple(f.name for f in tf[len(sf) :]) != columns:
        return False
    for a, b in zip(sf, tf, strict=False):
        if (a.name, a.type, a.default, a.default_factory) != (
            b.name,
            b.type,
            b.default,
            b.default_factory,
        ):
            return False
    return all(f.default is None for f in tf[len(sf) :])


def _kernel_source(where: Where, key: str, columns: tuple[str, ...], on_missing: str) -> str:
    """The fused pass as Python source; every name in it was checked to be an identifier."""
    tests = " and ".join(
        f"e.{field} {op} v{i}" for i, (field, op, _) in enumerate(where.conditions)
    )
    values = "".join(f", v{i}" for i in range(len(where.conditions)))
    targets = "".join(f"e.{c}, " for c in columns)
    lines = [
        f"def kernel(items, decode, get, Mismatch{values}):",
        f"    kept = [e for e in map(decode, items) if {tests}]",
    ]
    if on_missing == "keep":
        unset = " or ".join(f"e.{c} is not None" for c in columns)
        lines += [
            "    for e in kept:",
            f"        r = get(e.{key})",
            "        if r:",
            f"            {targets}= r",
            f"        elif {unset}:",
            "            raise Mismatch",
            "    return kept, len(kept)",
        ]
    else:  # drop: events without a row go, whatever their JSON held
        lines += [
            "    out = []",
            "    for e in kept:",
            f"        r = get(e.{key})",
            "        if r:",
            f"            {targets}= r",
            "            out.append(e)",
            "    return out, len(kept)",
        ]
    return "\n".join(lines) + "\n"


class DecodeFilterJoin:
    """The compiled pass for one decode, filter and join; call it with a batch."""

    def __init__(self, decode: DecodeJson[Any], flt: Filter[Any], enrich: Enrich[Any, Any]) -> None:
        assert isinstance(flt.predicate, Where) and enrich.join is not None
        assert enrich._table is not None
        key, columns, out = enrich.join
        self.max_bytes = decode.max_bytes
        self._decode = msgspec.json.Decoder(out).decode
        self._get = enrich._table.get
        self._values = [v for _, _, v in flt.predicate.conditions]
        namespace: dict[str, Any] = {}
        exec(_kernel_source(flt.predicate, key, columns, enrich.on_missing), namespace)
        self._kernel: Callable[..., tuple[list[Any], int]] = namespace["kernel"]

    def __call__(self, batch: Batch[Any]) -> tuple[Batch[Any], int] | None:
        """The batch's output and how many events passed the filter, or None (see the module)."""
        items = batch.items
        try:
            if max(map(len, items), default=0) > self.max_bytes:
                return None
            out, kept = self._kernel(
                items, self._decode, self._get, _ColumnSetByMessage, *self._values
            )
        except Exception:
            return None
        return batch.replace(out), kept


def decode_filter_join(
    decode: Stage[Any, Any], flt: Stage[Any, Any], enrich: Stage[Any, Any]
) -> DecodeFilterJoin | None:
    """The fused pass for these three stages in a row, or None when it would not be the
    same thing (stages of other kinds or written as code, a lookup that is not in memory,
    dead letters for missing rows, schemas that do not decode alike)."""
    if type(decode) is not DecodeJson or type(flt) is not Filter or type(enrich) is not Enrich:
        return None
    where = flt.predicate
    if not isinstance(where, Where) or enrich.join is None or enrich._table is None:
        return None
    if enrich.on_missing not in ("keep", "drop"):
        return None
    key, columns, out = enrich.join
    schema = decode.schema
    fields = set(schema.__struct_fields__)
    names = [key, *columns, *(f for f, _, _ in where.conditions)]
    if not all(_plain(n) for n in names):
        return None
    if key not in fields or any(f not in fields for f, _, _ in where.conditions):
        return None
    if any(op not in _OPS for _, op, _ in where.conditions):  # each one Python spells alike
        return None
    if not _decodes_alike(schema, out, columns):
        return None
    return DecodeFilterJoin(decode, flt, enrich)
