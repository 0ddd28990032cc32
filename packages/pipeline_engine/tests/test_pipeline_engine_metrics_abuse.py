"""The core abuse suite against the pipeline's Prometheus metrics endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.core.server import Credentials, Server
from tenfold.core.server_abuse import ATTACKS, AbuseTarget, abuse_options, run_attack
from tenfold.pipeline_engine._metrics_http import metrics_app
from tenfold.pipeline_engine._toml import load_pipeline


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AbuseTarget]:
    path: Path = tmp_path_factory.mktemp("metrics-abuse") / "p.toml"
    path.write_text(
        '[pipeline]\nname = "abuse"\n'
        '[schemas.Tick]\nid = "int"\nts = "float"\n'
        '[source]\ntype = "generator"\nschema = "Tick"\nrate = 100\n'
        '[[stages]]\ntype = "decode"\nschema = "Tick"\n'
        '[sink]\ntype = "null"\n'
    )
    pipeline = load_pipeline(path)
    creds = Credentials()
    key = creds.issue("prometheus", ["reader"])
    server = Server(metrics_app(pipeline), abuse_options(credentials=creds), name="metrics")
    with server:
        yield AbuseTarget(
            server=server,
            normal=("GET", "/metrics", None),
            body_path=None,
            headers={"Authorization": f"Bearer {key}"},
        )


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_metrics_survive_abuse(attack: str, target: AbuseTarget) -> None:
    run_attack(attack, target)
    with target.client() as c:
        r = target.normal_request(c)
    assert "tenfold_pipeline_stage_events_total" in r.text or r.status_code == 429
