"""The store: loading, OWL 2 RL and RDFS reasoning, inconsistencies, SPARQL, persistence, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenfold.core.cli import cli, main
from tenfold.semantic_lattice import (
    Budget,
    BudgetExceededError,
    LatticeStore,
    QueryError,
    RDFSyntaxError,
    SchemaError,
    generate_lubm,
    lubm_tbox,
)
from tenfold.semantic_lattice.errors import InconsistencyError

EX = "http://example.org/"
ONTOLOGY = f"""
@prefix ex: <{EX}> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:Cat rdfs:subClassOf ex:Animal . ex:Dog rdfs:subClassOf ex:Animal .
ex:Animal rdfs:subClassOf ex:Cat .
ex:Cat owl:disjointWith ex:Dog .
ex:tom a ex:Cat . ex:rex a ex:Dog .
ex:ancestor a owl:TransitiveProperty .
ex:a ex:ancestor ex:b . ex:b ex:ancestor ex:c . ex:c ex:ancestor ex:d .
ex:x1 owl:sameAs ex:x2 . ex:x2 owl:sameAs ex:x3 . ex:x3 owl:sameAs ex:x4 .
ex:x1 ex:likes ex:tom .
"""


def _iri(local: str) -> str:
    return f"<{EX}{local}>"


TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"


def test_owl_rl_closure_cycles_transitivity_and_same_as_chains() -> None:
    with LatticeStore() as store:
        store.load_text(ONTOLOGY)
        store.add_rules("owl-rl")
        stats = store.reason()
        closure = set(store.triples())
        assert stats.rounds > 0
        # A subClassOf cycle reaches a fixpoint: Cat and Animal become equivalent.
        assert (_iri("rex"), TYPE, _iri("Cat")) in closure
        assert (_iri("a"), _iri("ancestor"), _iri("d")) in closure
        # A sameAs chain: every member likes tom, in both directions.
        for x in ("x2", "x3", "x4"):
            assert (_iri(x), _iri("likes"), _iri("tom")) in closure
            assert (_iri(x), "<http://www.w3.org/2002/07/owl#sameAs>", _iri("x1")) in closure
        # rex is a Dog and (through the cycle) a Cat: disjointWith is violated, with its cause.
        found = store.inconsistencies()
        assert [i.rule for i in found] == ["cax-dw"]
        assert {t[0] for t in found[0].triples} == {_iri("rex")}
        with pytest.raises(InconsistencyError, match=r"cax-dw: <http://example.org/rex>"):
            store.check_consistency()


def test_owl_nothing_is_reported_with_its_triple() -> None:
    with LatticeStore() as store:
        store.load_text(f"<{EX}ghost> a <http://www.w3.org/2002/07/owl#Nothing> .")
        store.add_rules("owl-rl")
        store.reason()
        assert [str(i) for i in store.inconsistencies()] == [
            f"cls-nothing2: <{EX}ghost> {TYPE} <http://www.w3.org/2002/07/owl#Nothing>"
        ]


def test_incremental_reasoning_matches_a_fresh_closure() -> None:
    tbox, abox = lubm_tbox(), generate_lubm(700, seed=3)
    with LatticeStore() as inc, LatticeStore() as fresh:
        inc.add_triples(tbox + abox[:500])
        inc.add_rules("owl-rl")
        inc.reason()
        inc.add_triples(abox[500:])
        inc.reason()
        fresh.add_triples(tbox + abox)
        fresh.add_rules("owl-rl")
        fresh.reason()
        assert set(inc.triples()) == set(fresh.triples())
        # The dictionary holds each term once, however many loads added it.
        con = inc.engine.con
        assert con.execute("SELECT count(*) = count(DISTINCT term) FROM dict").fetchone() == (True,)
        inc.retract_triples(abox[500:])
        inc.reason()
        with LatticeStore() as small:
            small.add_triples(tbox + abox[:500])
            small.add_rules("owl-rl")
            small.reason()
            assert set(inc.triples()) == set(small.triples())


def test_dense_closure_aborts_on_its_budget() -> None:
    nodes = range(60)
    with LatticeStore() as store:
        store.add_triples(
            [(_iri(f"n{i}"), _iri("next"), _iri(f"n{(i + 1) % 60}")) for i in nodes]
            + [(_iri("next"), TYPE, "<http://www.w3.org/2002/07/owl#TransitiveProperty>")]
        )
        store.add_rules("owl-rl")
        with pytest.raises(BudgetExceededError, match=r"row budget of 500 exceeded"):
            store.reason(Budget(rows=500))


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    with LatticeStore() as store:
        with pytest.raises(RDFSyntaxError, match=r"1:1: a literal cannot be the subject"):
            store.load_text('"lit" <http://e/p> <http://e/o> .')
        with pytest.raises(SchemaError, match="literal cannot be a subject"):
            store.add_triples([('"x"', "<http://e/p>", "<http://e/o>")])
        bad = tmp_path / "bad.nt"
        bad.write_text('<http://e/s> <http://e/p> "open .\n', encoding="utf-8")
        with pytest.raises(RDFSyntaxError, match=r"bad\.nt:1:27: unterminated"):
            store.load(bad)
        store.load_text(f"<{EX}s> <{EX}p> <{EX}o> .")
        # SPARQL answers a pattern over a predicate the store never saw with no rows.
        assert store.sparql("SELECT ?x WHERE { ?x <http://nope/q> ?y }").rows == []
        with pytest.raises(QueryError, match="unsupported: SERVICE"):
            store.sparql("SELECT ?x WHERE { SERVICE <http://e/> { ?x ?p ?o } }")
        with pytest.raises(QueryError, match=r"<query>:1:28: expected '\.' or '}'"):
            store.sparql("SELECT ?x WHERE { ?x ?p ?o ?z }")
        with pytest.raises(SchemaError, match="unknown relation 'nosuch'"):
            store.datalog("nosuch(X)")


def _int(n: int) -> str:
    return f'"{n}"^^<http://www.w3.org/2001/XMLSchema#integer>'


def test_sparql_filters_optional_aggregates_order_limit() -> None:
    with LatticeStore() as store:
        store.load_text(
            f"""@prefix ex: <{EX}> .
            ex:a ex:age 30 ; ex:name "Ann" ; ex:knows ex:b .
            ex:b ex:age 25 ; ex:name "Bob" .
            ex:c ex:age 41 ; ex:name "Cy" ; ex:knows ex:a, ex:b ."""
        )
        p = f"PREFIX ex: <{EX}> "
        older = store.sparql(
            p + "SELECT ?n WHERE { ?x ex:name ?n ; ex:age ?a . FILTER(?a > 26) } ORDER BY DESC(?n)"
        )
        assert older.rows == [('"Cy"',), ('"Ann"',)]
        opt = store.sparql(
            p + "SELECT ?x ?y WHERE { ?x ex:age ?a . OPTIONAL { ?x ex:knows ?y } } ORDER BY ?x ?y"
        )
        assert [(x[-3:-1], y and y[-3:-1]) for x, y in opt.rows] == [
            ("/a", "/b"),
            ("/b", None),
            ("/c", "/a"),
            ("/c", "/b"),
        ]
        agg = store.sparql(
            p
            + "SELECT ?x (COUNT(?y) AS ?n) WHERE { ?x ex:knows ?y } GROUP BY ?x ORDER BY DESC(?n) LIMIT 1"
        )
        assert agg.rows == [(_iri("c"), _int(2))]
        total = store.sparql(p + "SELECT (SUM(?a) AS ?s) (MAX(?a) AS ?m) WHERE { ?x ex:age ?a }")
        assert total.rows == [(_int(96), _int(41))]
        before = store.cache_hits
        store.sparql(p + "SELECT (SUM(?a) AS ?s) (MAX(?a) AS ?m) WHERE { ?x ex:age ?a }")
        assert store.cache_hits == before + 1 and 0 < store.cache_hit_rate < 1


def test_closure_equals_owlrl_and_reasonable_on_small_lubm(tmp_path: Path) -> None:
    """The benchmark's equality check, in CI: same inferred instance facts as both peers."""
    from tenfold.core.bench import BenchContext
    from tenfold.semantic_lattice import bench

    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    for scenario in bench.scenarios():
        if scenario.name in ("owl_rl_1000_vs_owlrl", "owl_rl_1000_vs_reasonable"):
            assert scenario.peer is not None
            outcome = scenario.peer.prepare(ctx)()  # raises BenchError when the sets differ
            assert outcome.metrics["equal_to_peer"] == 1.0  # type: ignore[union-attr]
    ctx.stack.close()


def test_query_row_counts_equal_pyoxigraph(tmp_path: Path) -> None:
    from tenfold.core.bench import BenchContext
    from tenfold.semantic_lattice import bench

    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    rows = {}
    for scenario in bench.scenarios():
        if scenario.table == "Query Performance" and "smoke" in scenario.modes:
            assert scenario.peer is not None
            # Both sides check their rows against the other's in every call (BenchError if not).
            outcome = scenario.peer.prepare(ctx)()
            ours = scenario.ours.prepare(ctx)()
            assert outcome.metrics["rows_equal_to_peer"] == 1.0  # type: ignore[union-attr]
            assert ours.metrics["rows"] == outcome.metrics["rows"]  # type: ignore[union-attr]
            rows[scenario.name] = outcome.metrics["rows"]  # type: ignore[union-attr]
    ctx.stack.close()
    assert len(rows) == 7 and all(n > 0 for n in rows.values()), rows


def test_persistent_store_reopens_with_rules_and_closure(tmp_path: Path) -> None:
    path = tmp_path / "kb.duckdb"
    with LatticeStore(path) as store:
        store.load_text(ONTOLOGY)
        store.add_rules(
            ".prefix ex <http://example.org/>\n"
            "reach(X, Y) :- triple(X, ex:ancestor, Y).\n"
            "reach(X, Z) :- reach(X, Y), triple(Y, ex:ancestor, Z)."
        )
        store.reason()
        count = store.count()
    with LatticeStore(path) as again:
        assert again.count() == count
        assert len(again.datalog("reach(X, Y)")) == 6
        again.load_text(f"<{EX}d> <{EX}ancestor> <{EX}e> .")
        again.reason()
        assert len(again.datalog("reach(X, ex:e)")) == 4


def test_cli_load_reason_query_explain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "onto.ttl").write_text(ONTOLOGY, encoding="utf-8")
    runner = CliRunner()
    main_commands = cli  # the core group with every system's commands
    load = runner.invoke(main_commands, ["lattice", "load", "onto.ttl", "--json"])
    assert load.exit_code == 0, load.output
    assert json.loads(load.output)["triples"] == 14
    reason = runner.invoke(main_commands, ["lattice", "reason", "--json"])
    assert reason.exit_code == 0, reason.output
    assert json.loads(reason.output)["inconsistencies"][0]["rule"] == "cax-dw"
    query = runner.invoke(
        main_commands,
        ["lattice", "query", "--json", f"SELECT ?x WHERE {{ ?x a <{EX}Animal> }} ORDER BY ?x"],
    )
    assert json.loads(query.output)["rows"] == [[_iri("rex")], [_iri("tom")]]
    explain = runner.invoke(main_commands, ["lattice", "explain", f"triple(X, <{EX}ancestor>, Y)"])
    assert "SELECT DISTINCT" in explain.output and "r_triple" in explain.output


def test_cli_errors_are_one_line_with_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.ttl").write_text("<a:s> <a:p> .\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["lattice", "load", "bad.ttl"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "tenfold: error: bad.ttl:1:13: expected an object, found '.'"
    (tmp_path / "onto.ttl").write_text(ONTOLOGY, encoding="utf-8")
    main(["lattice", "load", "onto.ttl"])
    with pytest.raises(SystemExit) as check:
        main(["lattice", "reason", "--check"])
    assert check.value.code == 1


def test_long_same_as_chain_reaches_its_fixpoint() -> None:
    same_as = "<http://www.w3.org/2002/07/owl#sameAs>"
    chain = [(_iri(f"x{i}"), same_as, _iri(f"x{i + 1}")) for i in range(40)]
    with LatticeStore() as store:
        store.add_triples([*chain, (_iri("x0"), _iri("p"), _iri("v"))])
        store.add_rules("owl-rl")
        store.reason()
        # Every member is sameAs every member, itself included (eq-sym then eq-trans),
        # and carries x0's fact.
        assert len(store.datalog(f"triple(X, {same_as}, Y)")) == 41 * 41
        assert len(store.datalog(f"triple(X, {_iri('p')}, {_iri('v')})")) == 41


def test_file_store_keeps_pending_work_across_processes(tmp_path: Path) -> None:
    """Each step in its own session: pending rules, added rows (semi-naive from the
    stored change), retracted rows (DRed from the stored deletions) and a budget
    abort (recomputed next time) all end in the closure a fresh store computes."""
    path = tmp_path / "kb.duckdb"
    tbox, abox = lubm_tbox(), generate_lubm(600, seed=5)

    def fresh(triples: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        with LatticeStore() as store:
            store.add_triples(triples)
            store.add_rules("owl-rl")
            store.reason()
            return set(store.triples())

    def session_closure() -> set[tuple[str, str, str]]:
        with LatticeStore(path) as store:
            store.reason()
            return set(store.triples())

    with LatticeStore(path) as store:
        store.add_triples(tbox + abox[:300])
        store.add_rules("owl-rl")
    assert session_closure() == fresh(tbox + abox[:300])
    with LatticeStore(path) as store:
        store.add_triples(abox[300:])
    assert session_closure() == fresh(tbox + abox)
    with LatticeStore(path) as store:
        store.retract_triples(abox[:100])
    assert session_closure() == fresh(tbox + abox[100:])
    with LatticeStore(path) as store:
        store.retract_triples(abox[100:200])
        with pytest.raises(BudgetExceededError):
            store.reason(Budget(rows=1))
    assert session_closure() == fresh(tbox + abox[200:])
