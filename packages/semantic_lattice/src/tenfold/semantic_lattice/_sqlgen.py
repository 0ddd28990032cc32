"""The SQL the lattice engine runs, generated from a Datalog program: no I/O here.

:class:`SqlGen` turns rules, queries and lattice merges into DuckDB SQL text
over the storage layout the engine keeps (see :mod:`._engine`): ``r_<rel>`` all
facts, ``e_<rel>`` base facts, columns ``c0..``, symbols as dictionary ids. The
only thing it needs from outside is ``encode``, the term -> id function for
constants, so every statement can be checked as text without a database (the
unit tests give it a dictionary in a Python dict).

Conventions: a body atom ``i`` reads ``r_<rel>`` aliased ``a<i>`` unless
``sources`` names another table for it (a round's delta, a recursive CTE's
working table); negated atoms become ``NOT EXISTS`` over ``r_<rel>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tenfold.semantic_lattice._datalog import (
    Agg,
    Atom,
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Program,
    Query,
    Relation,
    Rule,
    Var,
    bound_order,
)
from tenfold.semantic_lattice.errors import SchemaError

__all__ = ["LatticeMerge", "SqlGen"]

LATTICE_SQL = {
    "min": "DOUBLE",
    "max": "DOUBLE",
    "set": "BIGINT[]",
    "interval": "STRUCT(lo DOUBLE, hi DOUBLE)",
}

Env = dict[str, tuple[str, str]]  # variable -> (SQL expression, kind)


@dataclass(frozen=True)
class LatticeMerge:
    """Statements that join candidate rows into a lattice relation.

    ``compute`` creates the delta table (keys whose value grew) and returns its row
    count; when that count is non-zero, ``apply`` replaces those keys in ``r_<rel>``.
    """

    compute: str
    apply: tuple[str, ...]


class SqlGen:
    """SQL text for one program; ``encode`` maps a term to its dictionary id."""

    def __init__(self, program: Program, encode: Callable[[str], int]) -> None:
        self.program = program
        self.encode = encode

    # -- schema --------------------------------------------------------------------
    def relation(self, name: str) -> Relation:
        rel = self.program.relations.get(name)
        if rel is None:
            raise SchemaError(f"unknown relation {name!r}")
        return rel

    def kind(self, rel: Relation, i: int) -> str:
        """``symbol``, ``number`` or the lattice name of column ``i``."""
        if rel.lattice and i == rel.arity - 1:
            return rel.lattice
        return rel.types[i]

    def sql_type(self, rel: Relation, i: int) -> str:
        if rel.lattice and i == rel.arity - 1:
            if rel.lattice in LATTICE_SQL:
                return LATTICE_SQL[rel.lattice]
            return self.program.lattice_types[rel.lattice].sql_type
        return "BIGINT" if rel.types[i] == "symbol" else "DOUBLE"

    def create_tables(self, rel: Relation) -> list[str]:
        cols = ", ".join(f"c{i} {self.sql_type(rel, i)}" for i in range(rel.arity))
        return [
            f"CREATE TABLE IF NOT EXISTS r_{rel.name}({cols})",
            f"CREATE TABLE IF NOT EXISTS e_{rel.name}({cols})",
        ]

    def lattice_macros(self, name: str) -> list[str]:
        lt = self.program.lattice_types[name]
        leq = lt.leq or f"lat_join_{lt.name}(a, b) = b"
        return [
            f"CREATE OR REPLACE TEMP MACRO lat_join_{lt.name}(a, b) AS ({lt.join})",
            f"CREATE OR REPLACE TEMP MACRO lat_leq_{lt.name}(a, b) AS ({leq})",
        ]

    # -- terms and expressions -----------------------------------------------------------
    def const_sql(self, c: Const, kind: str) -> str:
        if isinstance(c.value, str):
            if kind == "symbol":
                return str(self.encode(c.value))
            raise SchemaError(f"constant {c.value} used where a number is expected")
        if kind == "symbol":
            from tenfold.semantic_lattice._rdf import XSD, literal

            dt = "integer" if isinstance(c.value, int) else "double"
            return str(self.encode(literal(str(c.value), XSD + dt)))
        return f"{float(c.value)!r}::DOUBLE"

    def expr_sql(self, e: Expr, env: Env) -> str:
        if isinstance(e, Var):
            return env[e.name][0]
        if isinstance(e, Const):
            if isinstance(e.value, str):
                return str(self.encode(e.value))
            return f"{float(e.value)!r}::DOUBLE"
        if isinstance(e, BinOp):
            return f"({self.expr_sql(e.left, env)} {e.op} {self.expr_sql(e.right, env)})"
        args = [self.expr_sql(a, env) for a in e.args]
        if e.func == "interval":
            return f"{{'lo': ({args[0]})::DOUBLE, 'hi': ({args[1]})::DOUBLE}}"
        if e.func in ("lo", "hi"):
            return f"({args[0]}).{e.func}"
        return {"min": "least", "max": "greatest", "abs": "abs"}[e.func] + f"({', '.join(args)})"

    @staticmethod
    def expr_kind(e: Expr, env: Env) -> str:
        if isinstance(e, Var):
            return env[e.name][1]
        if isinstance(e, Const):
            return "symbol" if isinstance(e.value, str) else "number"
        if isinstance(e, Call) and e.func == "interval":
            return "interval"
        return "number"

    # -- rules and queries ------------------------------------------------------------------
    def body(
        self, body: Sequence[Any], rule: Rule | Query, sources: dict[int, str]
    ) -> tuple[list[str], list[str], Env]:
        """FROM items, WHERE conditions and variable bindings (sql, kind) of a body."""
        froms: list[str] = []
        where: list[str] = []
        env: Env = {}
        for i, b in enumerate(body):
            if not isinstance(b, Atom) or b.negated:
                continue
            rel = self.relation(b.relation)
            alias = f"a{i}"
            froms.append(f"{sources.get(i, 'r_' + rel.name)} {alias}")
            for j, arg in enumerate(b.args):
                col = f"{alias}.c{j}"
                kind = self.kind(rel, j)
                if isinstance(arg, Var):
                    if arg.name in env:
                        where.append(f"{col} = {env[arg.name][0]}")
                    else:
                        env[arg.name] = (col, kind)
                elif isinstance(arg, Const):
                    where.append(f"{col} = {self.const_sql(arg, kind)}")
        for assign in bound_order(rule):
            env[assign.var.name] = (
                f"({self.expr_sql(assign.expr, env)})",
                self.expr_kind(assign.expr, env),
            )
        for b in body:
            if isinstance(b, Compare):
                op = "<>" if b.op == "!=" else b.op
                where.append(f"{self.expr_sql(b.left, env)} {op} {self.expr_sql(b.right, env)}")
            elif isinstance(b, Atom) and b.negated:
                rel = self.relation(b.relation)
                conds = []
                for j, arg in enumerate(b.args):
                    if isinstance(arg, Var) and arg.name in env:
                        conds.append(f"n.c{j} = {env[arg.name][0]}")
                    elif isinstance(arg, Const):
                        conds.append(f"n.c{j} = {self.const_sql(arg, self.kind(rel, j))}")
                cond = " AND ".join(conds) or "TRUE"
                where.append(f"NOT EXISTS (SELECT 1 FROM r_{rel.name} n WHERE {cond})")
        if not froms:
            froms.append("(SELECT 1) unit")
        return froms, where, env

    def rule(self, rule: Rule, sources: dict[int, str]) -> str:
        """The SELECT that applies ``rule`` once (atoms read ``sources`` where given)."""
        froms, where, env = self.body(rule.body, rule, sources)
        head = self.relation(rule.head.relation)
        cols: list[str] = []
        group: list[str] = []
        has_agg = False
        for j, arg in enumerate(rule.head.args):
            kind = self.kind(head, j)
            if isinstance(arg, Agg):
                has_agg = True
                ref = env[arg.var.name][0]
                func = {"count": "count(DISTINCT {})", "mean": "avg({})"}.get(
                    arg.func, arg.func + "({})"
                )
                cols.append(f"({func.format(ref)})::DOUBLE")
                continue
            if isinstance(arg, Const):
                sql = self.const_sql(arg, "symbol" if kind == "symbol" else "number")
                if head.lattice == "set" and j == head.arity - 1:
                    sql = f"[{self.const_sql(arg, 'symbol')}]"
            else:
                sql, vkind = env[arg.name]
                if head.lattice == "set" and j == head.arity - 1 and vkind == "symbol":
                    sql = f"[{sql}]"
                elif kind == "number" and vkind == "symbol":
                    raise SchemaError(
                        f"rule at line {rule.line}: {arg.name} is a symbol, "
                        f"{head.name} column {j} takes numbers"
                    )
            cols.append(
                f"{sql} AS c{j}"
                if head.lattice is None
                else f"({sql})::{self.sql_type(head, j)} AS c{j}"
            )
            group.append(sql)
        sql = f"SELECT {', '.join(cols)} FROM {', '.join(froms)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if has_agg and group:
            sql += " GROUP BY " + ", ".join(group)
        return sql

    def query(self, query: Query) -> tuple[str, list[str], list[str]]:
        """SQL, output variable names and their kinds for a Datalog query body."""
        for b in query.body:
            if isinstance(b, Atom) and b.relation not in self.program.relations:
                raise SchemaError(f"query at line {query.line}: unknown relation {b.relation!r}")
        froms, where, env = self.body(query.body, query, {})
        names = [n for n in env if "#" not in n]
        cols = ", ".join(env[n][0] for n in names) or "1"
        sql = f"SELECT DISTINCT {cols} FROM {', '.join(froms)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql, names, [env[n][1] for n in names]

    def probe_key(self, table: str, atom: Atom) -> tuple[str, tuple[tuple[int, str], ...]]:
        """(table, constant pattern) of an atom: what :meth:`probe` asks about."""
        rel = self.relation(atom.relation)
        consts = tuple(
            (j, self.const_sql(a, self.kind(rel, j)))
            for j, a in enumerate(atom.args)
            if isinstance(a, Const)
        )
        return (table, consts)

    @staticmethod
    def probe(keys: Sequence[tuple[str, tuple[tuple[int, str], ...]]]) -> str:
        """One query whose rows are the positions of the keys with a matching row."""
        parts = []
        for n, (table, consts) in enumerate(keys):
            where = " AND ".join(f"c{j} = {v}" for j, v in consts) or "TRUE"
            parts.append(f"SELECT {n} AS k WHERE EXISTS (SELECT 1 FROM {table} WHERE {where})")
        return " UNION ALL ".join(parts)

    # -- lattices ------------------------------------------------------------------------
    @staticmethod
    def lattice_agg(rel: Relation, col: str) -> str:
        """The aggregate that joins every value of ``col`` in a group."""
        lat = rel.lattice
        if lat in ("min", "max"):
            return f"{lat}({col})"
        if lat == "set":
            return f"list_sort(list_distinct(flatten(list({col}))))"
        if lat == "interval":
            return f"{{'lo': min({col}.lo), 'hi': max({col}.hi)}}"
        return f"list_reduce(list({col}), lambda a, b: lat_join_{lat}(a, b))"

    @staticmethod
    def lattice_join(rel: Relation, a: str, b: str) -> str:
        """The join of two lattice values."""
        lat = rel.lattice
        if lat == "min":
            return f"least({a}, {b})"
        if lat == "max":
            return f"greatest({a}, {b})"
        if lat == "set":
            return f"list_sort(list_distinct(list_concat({a}, {b})))"
        if lat == "interval":
            return f"{{'lo': least({a}.lo, {b}.lo), 'hi': greatest({a}.hi, {b}.hi)}}"
        return f"lat_join_{lat}({a}, {b})"

    def merge_lattice(self, rel: Relation, cand: str, delta: str) -> LatticeMerge:
        """Join the rows of table ``cand`` into ``r_<rel>`` by key (see :class:`LatticeMerge`)."""
        n = rel.arity
        keys = [f"c{i}" for i in range(n - 1)]
        last = f"c{n - 1}"
        key_list = ", ".join(keys)
        grouped = (
            f"SELECT {key_list + ', ' if keys else ''}{self.lattice_agg(rel, last)} AS {last} "
            f"FROM {cand}"
        )
        if keys:
            grouped += f" GROUP BY {key_list}"
        on = " AND ".join(f"o.{k} = g.{k}" for k in keys) or "TRUE"
        joined = self.lattice_join(rel, "o." + last, "g." + last)
        gsel = ", ".join(f"g.{k}" for k in keys)
        compute = (
            f"CREATE OR REPLACE TEMP TABLE {delta} AS "
            f"SELECT {gsel + ', ' if keys else ''}"
            f"CASE WHEN o.{last} IS NULL THEN g.{last} ELSE {joined} END AS {last} "
            f"FROM ({grouped}) g LEFT JOIN r_{rel.name} o ON {on} "
            f"WHERE o.{last} IS NULL OR ({joined}) IS DISTINCT FROM o.{last}"
        )
        if keys:
            match = " AND ".join(f"r_{rel.name}.{k} = d.{k}" for k in keys)
            delete = (
                f"DELETE FROM r_{rel.name} WHERE EXISTS (SELECT 1 FROM {delta} d WHERE {match})"
            )
        else:
            delete = f"DELETE FROM r_{rel.name}"
        return LatticeMerge(compute, (delete, f"INSERT INTO r_{rel.name} SELECT * FROM {delta}"))

    def recursive_stratum(self, name: str, rules: Sequence[Rule]) -> str | None:
        """One ``WITH RECURSIVE`` query computing a linear single-relation stratum, or None.

        Fits when the relation is plain or a min/max lattice with at least one key
        column, and every rule reads it at most once, without negation or
        aggregation. Plain relations recurse with ``UNION`` (DuckDB keeps only new
        rows in the working table: semi-naive); a min/max lattice recurses ``USING
        KEY`` and each step keeps the keys whose value improved. The query's rows
        are the relation's whole content.
        """
        rel = self.relation(name)
        if rel.lattice not in (None, "min", "max") or (rel.lattice and rel.arity < 2):
            return None
        base: list[str] = []
        step: list[str] = []
        for rule in rules:
            if any(isinstance(a, Agg) for a in rule.head.args):
                return None
            own = [i for i, b in enumerate(rule.body) if isinstance(b, Atom) and b.relation == name]
            if len(own) > 1 or any(rule.body[i].negated for i in own):  # type: ignore[union-attr]
                return None
            if own:
                step.append(self.rule(rule, {own[0]: "rec"}))
            else:
                base.append(self.rule(rule, {}))
        if not step:
            return None
        cols = ", ".join(f"c{i}" for i in range(rel.arity))
        seed = " UNION ALL ".join([f"SELECT * FROM e_{name}", *(f"({b})" for b in base)])
        steps = " UNION ALL ".join(f"({s})" for s in step)
        if rel.lattice is None:
            body = f"SELECT * FROM ({seed}) s UNION SELECT * FROM ({steps}) t"
            head = f"rec({cols})"
        else:
            keys = [f"c{i}" for i in range(rel.arity - 1)]
            last = f"c{rel.arity - 1}"
            key_list = ", ".join(keys)
            better = "<" if rel.lattice == "min" else ">"
            on = " AND ".join(f"o.{k} = g.{k}" for k in keys)
            body = (
                f"SELECT {key_list}, {rel.lattice}({last}) FROM ({seed}) s GROUP BY {key_list} "
                f"UNION SELECT {', '.join('g.' + k for k in keys)}, g.{last} FROM "
                f"(SELECT {key_list}, {rel.lattice}({last}) AS {last} FROM ({steps}) t "
                f"GROUP BY {key_list}) g LEFT JOIN recurring.rec o ON {on} "
                f"WHERE o.{last} IS NULL OR g.{last} {better} o.{last}"
            )
            head = f"rec({cols}) USING KEY ({key_list})"
        return f"WITH RECURSIVE {head} AS ({body}) SELECT * FROM rec"
