"""The core abuse suite against `learn serve`, plus its prediction batch limit."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.auto_learner import AutoLearner, ModelServer, synthetic
from tenfold.core.server import Credentials
from tenfold.core.server_abuse import ATTACKS, AbuseTarget, abuse_options, run_attack


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelServer, str, bytes]]:
    data = synthetic(600, features=4, seed=3)
    store = tmp_path_factory.mktemp("learn-abuse") / "runs.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoLearner(store=store).fit(data, "target", time="t", budget_s=1, seed=0).model
    creds = Credentials()
    key = creds.issue("app", ["reader"])
    server = ModelServer(model, options=abuse_options(credentials=creds), max_batch_rows=50)
    rows = data.head(2).drop(columns=["target", "t"]).to_dict("records")
    rows = [
        {k: (str(v) if k in ("cat", "domain") else float(v)) for k, v in r.items()} for r in rows
    ]
    body = json.dumps({"rows": rows}).encode()
    server.start()
    yield server, key, body
    server.stop()


@pytest.fixture(scope="module")
def target(served: tuple[ModelServer, str, bytes]) -> AbuseTarget:
    server, key, body = served
    return AbuseTarget(
        server=server.server,
        normal=("POST", "/predict", body),
        body_path="/predict",
        headers={"X-Api-Key": key},
    )


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_learn_serve_survives_abuse(attack: str, target: AbuseTarget) -> None:
    run_attack(attack, target)


def test_prediction_batch_limit(served: tuple[ModelServer, str, bytes], tmp_path: Path) -> None:
    server, key, body = served
    import httpx

    rows = json.loads(body)["rows"]
    with httpx.Client(base_url=server.url, headers={"X-Api-Key": key}) as c:
        r = c.post("/predict", json={"rows": rows * 26})  # 52 rows > 50
        assert r.status_code == 413 and "limit is 50" in r.json()["error"]
        r = c.post("/predict", json={"rows": rows * 25})
        assert r.status_code == 200 and len(r.json()["probabilities"]) == 50
        assert c.post("/predict", json={"rows": "x"}).status_code == 400
        assert c.post("/predict", json=[1]).status_code == 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "-1"], "-1 is not in the range 0<=x<=65535"),
        (["--port", "99999"], "99999 is not in the range"),
        (["--host", "192.0.2.1"], "refusing to serve on 192.0.2.1:8088 without credentials"),
        (["--max-batch-rows", "0"], "0 is not in the range x>=1"),
    ],
)
def test_serve_refuses_bad_options_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tenfold.core.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["learn", "serve", str(tmp_path / "missing.tfm"), *args])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert len(err.splitlines()) == 1 and message in err, err
