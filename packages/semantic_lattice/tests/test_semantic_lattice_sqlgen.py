"""The SQL generator on its own: golden SQL text, no database.

The generator is pure: it needs a program and a term -> id function, nothing
else. These tests give it a dictionary in a Python dict and compare the text
(DuckDB itself is never imported here; a subprocess checks that).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenfold.semantic_lattice._datalog import Atom, parse_program
from tenfold.semantic_lattice._sqlgen import SqlGen
from tenfold.semantic_lattice.errors import SchemaError


class _Ids:
    """A term -> id map that hands out ids in first-seen order."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, term: str) -> int:
        return self.ids.setdefault(term, len(self.ids))


def _gen(text: str) -> tuple[SqlGen, list[object], _Ids]:
    program = parse_program(text)
    ids = _Ids()
    return SqlGen(program, ids), list(program.rules), ids


def test_generator_does_not_import_duckdb() -> None:
    code = (
        "import sys; import tenfold.semantic_lattice._sqlgen; "
        "sys.exit(1 if 'duckdb' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_join_rule_golden_sql() -> None:
    gen, rules, ids = _gen(
        """.decl edge(a, b)
        .decl path(a, b)
        path(X, Z) :- path(X, Y), edge(Y, Z), Z != "stop"."""
    )
    sql = gen.rule(rules[0], {})  # type: ignore[arg-type]
    (stop,) = (i for term, i in ids.ids.items() if "stop" in term)
    assert sql == (
        "SELECT a0.c0 AS c0, a1.c1 AS c1 FROM r_path a0, r_edge a1 "
        f"WHERE a1.c0 = a0.c1 AND a1.c1 <> {stop}"
    )
    # The semi-naive variant reads the delta table for the chosen atom.
    delta = gen.rule(rules[0], {0: "d_path_1"})  # type: ignore[arg-type]
    assert delta.startswith("SELECT a0.c0 AS c0, a1.c1 AS c1 FROM d_path_1 a0, r_edge a1 ")


def test_constants_negation_and_aggregation() -> None:
    gen, rules, ids = _gen(
        """.decl person(p)
        .decl likes(a, b)
        .decl lonely(p)
        .decl fans(p, n: number)
        lonely(P) :- person(P), !likes(_, P).
        fans(P, count(F)) :- likes(F, P), person(P).
        likes(P, "bob") :- person(P)."""
    )
    lonely, fans, bob = rules
    assert gen.rule(lonely, {}) == (  # type: ignore[arg-type]
        "SELECT a0.c0 AS c0 FROM r_person a0 "
        "WHERE NOT EXISTS (SELECT 1 FROM r_likes n WHERE n.c1 = a0.c0)"
    )
    assert gen.rule(fans, {}) == (  # type: ignore[arg-type]
        "SELECT a0.c1 AS c0, (count(DISTINCT a0.c0))::DOUBLE FROM r_likes a0, r_person a1 "
        "WHERE a1.c0 = a0.c1 GROUP BY a0.c1"
    )
    sql = gen.rule(bob, {})  # type: ignore[arg-type]
    bob_id = ids('"bob"')  # the id the generator was given
    assert sql == f"SELECT a0.c0 AS c0, {bob_id} AS c1 FROM r_person a0"


def test_tables_and_types() -> None:
    gen, _, _ = _gen(".lattice dist(a, b, d: min)\n.decl w(a, x: number)")
    assert gen.create_tables(gen.relation("dist")) == [
        "CREATE TABLE IF NOT EXISTS r_dist(c0 BIGINT, c1 BIGINT, c2 DOUBLE)",
        "CREATE TABLE IF NOT EXISTS e_dist(c0 BIGINT, c1 BIGINT, c2 DOUBLE)",
    ]
    assert gen.sql_type(gen.relation("w"), 1) == "DOUBLE"
    with pytest.raises(SchemaError, match="unknown relation 'nope'"):
        gen.relation("nope")


def test_lattice_merge_statements() -> None:
    gen, _, _ = _gen(".lattice dist(a, b, d: min)")
    merge = gen.merge_lattice(gen.relation("dist"), "cand", "delta")
    assert merge.compute == (
        "CREATE OR REPLACE TEMP TABLE delta AS SELECT g.c0, g.c1, "
        "CASE WHEN o.c2 IS NULL THEN g.c2 ELSE least(o.c2, g.c2) END AS c2 "
        "FROM (SELECT c0, c1, min(c2) AS c2 FROM cand GROUP BY c0, c1) g "
        "LEFT JOIN r_dist o ON o.c0 = g.c0 AND o.c1 = g.c1 "
        "WHERE o.c2 IS NULL OR (least(o.c2, g.c2)) IS DISTINCT FROM o.c2"
    )
    assert merge.apply == (
        "DELETE FROM r_dist WHERE EXISTS "
        "(SELECT 1 FROM delta d WHERE r_dist.c0 = d.c0 AND r_dist.c1 = d.c1)",
        "INSERT INTO r_dist SELECT * FROM delta",
    )


def test_recursive_stratum_fits_linear_rules_only() -> None:
    gen, rules, _ = _gen(
        """.decl edge(a, b)
        .decl path(a, b)
        path(X, Y) :- edge(X, Y).
        path(X, Z) :- path(X, Y), edge(Y, Z)."""
    )
    sql = gen.recursive_stratum("path", rules)  # type: ignore[arg-type]
    assert sql == (
        "WITH RECURSIVE rec(c0, c1) AS (SELECT * FROM (SELECT * FROM e_path UNION ALL "
        "(SELECT a0.c0 AS c0, a0.c1 AS c1 FROM r_edge a0)) s UNION SELECT * FROM "
        "((SELECT a0.c0 AS c0, a1.c1 AS c1 FROM rec a0, r_edge a1 WHERE a1.c0 = a0.c1)) t) "
        "SELECT * FROM rec"
    )
    gen, rules, _ = _gen(
        """.decl path(a, b)
        path(X, Z) :- path(X, Y), path(Y, Z)."""
    )
    assert gen.recursive_stratum("path", rules) is None  # type: ignore[arg-type]  # non-linear


def test_query_and_probe() -> None:
    gen, _, ids = _gen('.decl edge(a, b)\n?- edge(X, "b").')
    program = parse_program('.decl edge(a, b)\n?- edge(X, "b").')
    sql, names, kinds = gen.query(program.queries[0])
    (b,) = ids.ids.values()
    assert (sql, names, kinds) == (
        f"SELECT DISTINCT a0.c0 FROM r_edge a0 WHERE a0.c1 = {b}",
        ["X"],
        ["symbol"],
    )
    atom = program.queries[0].body[0]
    assert isinstance(atom, Atom)
    key = gen.probe_key("r_edge", atom)
    assert key == ("r_edge", ((1, str(b)),))
    assert gen.probe([key, ("d_x", ())]) == (
        f"SELECT 0 AS k WHERE EXISTS (SELECT 1 FROM r_edge WHERE c1 = {b}) UNION ALL "
        "SELECT 1 AS k WHERE EXISTS (SELECT 1 FROM d_x WHERE TRUE)"
    )


def test_symbol_in_number_column_is_refused() -> None:
    gen, rules, _ = _gen(".decl w(a, x: number)\n.decl s(a, b)\nw(A, B) :- s(A, B).")
    with pytest.raises(SchemaError, match="B is a symbol"):
        gen.rule(rules[0], {})  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(["A", "B", "C", '"k"']), min_size=2, max_size=2))
def test_every_variable_is_bound_to_a_column(args: list[str]) -> None:
    head = [a for a in args if not a.startswith('"')] or ['"k"']
    text = (
        ".decl e(a, b)\n.decl h(" + ", ".join(f"c{i}" for i in range(len(head))) + ")\n"
        f"h({', '.join(head)}) :- e({', '.join(args)})."
    )
    gen, rules, _ = _gen(text)
    sql = gen.rule(rules[0], {})  # type: ignore[arg-type]
    assert sql.startswith("SELECT ") and " FROM r_e a0" in sql
    # A variable repeated in the atom becomes an equality on the columns.
    if args[0] == args[1] and not args[0].startswith('"'):
        assert "a0.c1 = a0.c0" in sql
