"""Property tests of TOML pipelines: what a definition says is what the pipeline does,
and no definition, however wrong, escapes as anything but the engine's own errors."""

from __future__ import annotations

import contextlib
import json
import operator
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenfold.pipeline_engine import build_pipeline
from tenfold.pipeline_engine.errors import PipelineEngineError

OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
KINDS = ["buy", "view", "sell"]

rows = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(-1000, 1000),
            "kind": st.sampled_from(KINDS),
            "amount": st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2)),
        }
    ),
    max_size=60,
)
conditions = st.lists(
    st.one_of(
        st.tuples(st.just("id"), st.sampled_from(sorted(OPS)), st.integers(-1000, 1000)),
        st.tuples(st.just("amount"), st.sampled_from(sorted(OPS)), st.integers(-100, 100)),
        st.tuples(st.just("kind"), st.sampled_from(["==", "!="]), st.sampled_from(KINDS)),
        st.tuples(
            st.just("kind"), st.sampled_from(["in", "not in"]), st.sets(st.sampled_from(KINDS))
        ),
    ),
    min_size=1,
    max_size=4,
)


def _literal(value: Any) -> str:
    if isinstance(value, set | frozenset):
        return "[" + ", ".join(repr(v) for v in sorted(value)) + "]"
    return repr(value)


def _holds(row: dict[str, Any], field: str, op: str, value: Any) -> bool:
    if op == "in":
        return row[field] in value
    if op == "not in":
        return row[field] not in value
    return bool(OPS[op](row[field], value))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows, conds=conditions, batch_size=st.integers(1, 50))
def test_a_filter_keeps_exactly_the_rows_its_conditions_hold_for(
    rows: list[dict[str, Any]], conds: list[tuple[str, str, Any]], batch_size: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
        doc = {
            "pipeline": {"name": "p", "batch_size": batch_size},
            "schemas": {"Row": {"id": "int", "kind": "str", "amount": "float"}},
            "source": {"type": "ndjson", "path": "in.ndjson"},
            "stages": [
                {"type": "decode", "schema": "Row"},
                {"type": "filter", "where": [f"{f} {op} {_literal(v)}" for f, op, v in conds]},
            ],
            "sink": {"type": "ndjson", "path": "out.ndjson", "fsync": False},
        }
        report = build_pipeline(doc, origin="props", base_dir=folder).run()
        out = [json.loads(x) for x in (folder / "out.ndjson").read_text().splitlines()]
        expected = [r for r in rows if all(_holds(r, f, op, v) for f, op, v in conds)]
        assert [o["id"] for o in out] == [r["id"] for r in expected]
        assert report.events_read == len(rows)


toml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["ndjson", "decode", "filter", "null", "Row", "int", "str?", "kafka"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = ["pipeline", "schemas", "source", "stages", "sink", "dead_letters", "type", "path"]
documents = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), toml_values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(doc=documents)
def test_any_definition_builds_or_is_refused_with_the_engines_own_error(
    doc: dict[str, Any],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.suppress(PipelineEngineError):
            build_pipeline(doc, origin="fuzz", base_dir=Path(tmp))
