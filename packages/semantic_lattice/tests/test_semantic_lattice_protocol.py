"""The SPARQL 1.1 Protocol endpoint: the ASGI app in-process, and `lattice serve` for real clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from SPARQLWrapper import CSV, JSON, TSV, XML, SPARQLWrapper
from SPARQLWrapper.SPARQLExceptions import QueryBadFormed
from starlette.testclient import TestClient

from tenfold.semantic_lattice import LatticeStore
from tenfold.semantic_lattice._protocol import ProtocolBudget, sparql_app

EX = "http://example.org/"
DATA = f"""@prefix ex: <{EX}> .
ex:tom a ex:Cat ; ex:name "Tom" ; ex:age 3 .
ex:rex a ex:Dog ; ex:name "Rex"@en .
ex:Cat ex:sub ex:Animal .
"""
SELECT = f"PREFIX ex: <{EX}> SELECT ?x ?n WHERE {{ ?x ex:name ?n }} ORDER BY ?x"


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = LatticeStore()
    store.load_text(DATA)
    with TestClient(sparql_app(store, budget=ProtocolBudget(max_query_chars=2_000))) as c:
        yield c
    store.close()


def test_get_and_both_posts_give_the_same_json(client: TestClient) -> None:
    got = client.get("/sparql", params={"query": SELECT})
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/sparql-results+json")
    doc = got.json()
    assert doc["head"]["vars"] == ["x", "n"]
    assert doc["results"]["bindings"][0]["n"] == {
        "type": "literal",
        "value": "Rex",
        "xml:lang": "en",
    }
    form = client.post("/sparql", data={"query": SELECT})
    direct = client.post(
        "/sparql", content=SELECT.encode(), headers={"content-type": "application/sparql-query"}
    )
    assert form.json() == doc == direct.json()


def test_content_negotiation(client: TestClient) -> None:
    xml = client.get(
        "/sparql", params={"query": SELECT}, headers={"accept": "application/sparql-results+xml"}
    )
    assert xml.headers["content-type"].startswith("application/sparql-results+xml")
    assert '<binding name="n"><literal xml:lang="en">Rex</literal></binding>' in xml.text
    csv = client.get("/sparql", params={"query": SELECT}, headers={"accept": "text/csv"})
    assert csv.text == f"x,n\r\n{EX}rex,Rex\r\n{EX}tom,Tom\r\n"
    tsv = client.get(
        "/sparql",
        params={"query": SELECT},
        headers={"accept": "text/csv;q=0.5, text/tab-separated-values"},
    )
    assert tsv.text == f'?x\t?n\n<{EX}rex>\t"Rex"@en\n<{EX}tom>\t"Tom"\n'
    ask = client.get("/sparql", params={"query": f"ASK {{ <{EX}tom> a <{EX}Cat> }}"})
    assert ask.json() == {"head": {}, "boolean": True}
    construct = client.get(
        "/sparql",
        params={"query": f"CONSTRUCT {{ ?x a <{EX}Pet> }} WHERE {{ ?x a <{EX}Cat> }}"},
        headers={"accept": "text/turtle"},
    )
    assert construct.headers["content-type"].startswith("text/turtle")
    assert (
        construct.text
        == f"<{EX}tom> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{EX}Pet> .\n"
    )


def test_bad_requests_get_one_line_and_a_status(client: TestClient) -> None:
    bad = client.get("/sparql", params={"query": "SELECT ?x WHERE { ?x"})
    assert bad.status_code == 400 and bad.text.startswith("<query>:1:")
    assert bad.text.count("\n") == 1
    svc = client.get(
        "/sparql", params={"query": "SELECT * WHERE { SERVICE <http://x/> { ?s ?p ?o } }"}
    )
    assert svc.status_code == 400 and "unsupported: SERVICE" in svc.text
    upd = client.post("/sparql", data={"update": "INSERT DATA { <a:b> <a:c> <a:d> }"})
    assert upd.status_code == 400 and "unsupported: SPARQL Update" in upd.text
    big = client.get("/sparql", params={"query": "SELECT * WHERE { ?s ?p ?o }" + " " * 3_000})
    assert big.status_code == 413
    assert client.get("/sparql").status_code == 400
    odd = client.post("/sparql", content=b"x", headers={"content-type": "text/plain"})
    assert odd.status_code == 415
    assert client.get("/health").json() == {"ok": True, "triples": 6}


def test_a_query_past_its_time_budget_gets_503_and_frees_the_store() -> None:
    store = LatticeStore()
    store.add_triples([(f"<{EX}n{i}>", f"<{EX}p>", f"<{EX}n{i + 1}>") for i in range(400)])
    with TestClient(sparql_app(store, budget=ProtocolBudget(timeout_s=0.3))) as c:
        slow = c.get(
            "/sparql", params={"query": "SELECT * WHERE { ?a ?p ?b . ?c ?q ?d . ?e ?r ?f }"}
        )
        assert slow.status_code == 503 and "time budget of 0.3 s" in slow.text, slow.text
        quick = c.get("/sparql", params={"query": f"ASK {{ <{EX}n0> <{EX}p> ?x }}"})
        assert quick.json() == {"head": {}, "boolean": True}
    store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tenfold lattice serve` on a free port, as a user starts it."""
    store_path = tmp_path_factory.mktemp("serve") / "kb.duckdb"
    with LatticeStore(store_path) as store:
        store.load_text(DATA)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "tenfold.core", "lattice", "serve", "--store", str(store_path)]
    proc = subprocess.Popen(
        [*argv, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the CLI imports every system's commands first
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as resp:
                    assert json.load(resp)["triples"] == 6
                break
            except OSError:
                assert proc.poll() is None, "serve exited early"
                assert time.monotonic() < deadline, "serve did not start listening"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_sparqlwrapper_talks_to_lattice_serve(served: str) -> None:
    endpoint = SPARQLWrapper(served + "/sparql")
    endpoint.setQuery(SELECT)
    endpoint.setReturnFormat(JSON)
    doc = endpoint.query().convert()
    assert isinstance(doc, dict)
    assert [b["x"]["value"] for b in doc["results"]["bindings"]] == [f"{EX}rex", f"{EX}tom"]
    endpoint.setMethod("POST")
    assert endpoint.query().convert() == doc
    endpoint.setMethod("GET")
    endpoint.setReturnFormat(XML)
    xml = endpoint.query().convert()
    assert len(xml.getElementsByTagName("result")) == 2  # type: ignore[union-attr]
    for fmt, needle in ((CSV, b"x,n\r\n"), (TSV, b"?x\t?n\n")):
        endpoint.setReturnFormat(fmt)
        raw = endpoint.query().convert()
        assert isinstance(raw, bytes) and raw.startswith(needle)
    endpoint.setReturnFormat(JSON)
    endpoint.setQuery(f"ASK {{ <{EX}rex> a <{EX}Dog> }}")
    assert endpoint.query().convert() == {"head": {}, "boolean": True}
    endpoint.setQuery("SELECT ?x WHERE { ?x")
    with pytest.raises(QueryBadFormed):
        endpoint.query()
    with urllib.request.urlopen(f"{served}/query?q=triple(X,%20<{EX}sub>,%20Y)", timeout=5) as resp:
        assert json.load(resp)["rows"] == [[f"<{EX}Cat>", f"<{EX}Animal>"]]
