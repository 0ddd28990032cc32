"""The core abuse suite against `lattice serve`, plus its query size and time budgets."""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.core.server import Credentials, Server
from tenfold.core.server_abuse import ATTACKS, AbuseTarget, abuse_options, run_attack
from tenfold.core.testing import run_cli
from tenfold.semantic_lattice import Budget, LatticeStore, SemanticLatticeError
from tenfold.semantic_lattice._protocol import ProtocolBudget, sparql_app

EX = "http://example.org/"
DATA = f"""
@prefix ex: <{EX}> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:Cat rdfs:subClassOf ex:Animal .
ex:tom a ex:Cat . ex:felix a ex:Cat .
"""
QUERY = "/query?q=" + urllib.parse.quote(f"SELECT ?x WHERE {{ ?x a <{EX}Cat> }}")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, str]]:
    store = LatticeStore()
    store.load_text(DATA)
    creds = Credentials()
    key = creds.issue("analyst", ["reader"])
    server = Server(
        sparql_app(store, budget=ProtocolBudget(max_query_chars=2048)),
        abuse_options(credentials=creds),
        name="lattice",
    )
    with server:
        yield server, key
    store.close()


@pytest.fixture(scope="module")
def target(served: tuple[Server, str]) -> AbuseTarget:
    server, key = served
    return AbuseTarget(
        server=server, normal=("GET", QUERY, None), body_path=None, headers={"X-Api-Key": key}
    )


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_lattice_serve_survives_abuse(attack: str, target: AbuseTarget) -> None:
    run_attack(attack, target)


def test_query_limits(served: tuple[Server, str]) -> None:
    import httpx

    server, key = served
    with httpx.Client(base_url=server.url, headers={"X-Api-Key": key}) as c:
        rows = c.get(QUERY).json()["rows"]
        assert sorted(rows) == [[f"<{EX}felix>"], [f"<{EX}tom>"]]
        big = "SELECT ?x WHERE { ?x a <" + EX + "C" * 3000 + "> }"
        r = c.get("/query", params={"q": big})
        assert r.status_code == 413 and "2,048" in r.json()["error"]
        assert c.get("/query").status_code == 400
        r = c.get("/query", params={"q": "SELECT ?x WHERE { ?x <http://nope/p> ?y }"})
        assert r.status_code == 200 and r.json()["rows"] == []  # SPARQL: no rows, no error
        r = c.get("/query", params={"q": "SELECT ?x WHERE { ?x"})
        assert r.status_code == 400 and "error" in r.json()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "-1"], "-1 is not in the range 0<=x<=65535"),
        (["--port", "65536"], "65536 is not in the range"),
        (["--host", "0.0.0.0"], "refusing to serve on 0.0.0.0:7878 without credentials"),
        (["--credentials", "/nonexistent/keys.json"], "credentials file /nonexistent/keys.json"),
        (["--tls-cert", "x.pem"], "needs all of --tls-cert, --tls-key and --tls-ca"),
    ],
)
def test_serve_refuses_bad_options_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    from tenfold.core.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["lattice", "serve", "--store", "/nonexistent/kb.duckdb", *args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout-s", "inf"], "inf is not a finite number"),
        (["--timeout-s", "nan"], "nan is not a finite number"),
        (["--timeout-s", "-1"], "must be at least 0 s"),
        (["--timeout-s", "1e308"], "must be at most"),
        (["--max-rounds", "-1"], "-1 is not in the range x>=0"),
        (["--max-rows", "-5"], "-5 is not in the range x>=0"),
    ],
)
def test_reason_refuses_bad_budgets_before_opening_the_store(
    tmp_path: Path, args: list[str], message: str
) -> None:
    store = tmp_path / "s.duckdb"
    with LatticeStore(store) as s:
        s.load_text(f"<{EX}a> <{EX}p> <{EX}b> .", fmt="nt")
    r = run_cli("lattice", "reason", "--store", str(store), *args, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_s": math.inf},
        {"time_s": math.nan},
        {"time_s": -0.5},
        {"time_s": "5"},
        {"rounds": -1},
        {"rows": 2.5},
        {"rounds": True},
    ],
)
def test_budget_refuses_what_is_no_budget(kwargs: dict[str, object]) -> None:
    with pytest.raises(SemanticLatticeError, match="budget must be"):
        Budget(**kwargs)  # type: ignore[arg-type]
