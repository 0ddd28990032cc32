"""Sustained prediction load on `learn serve`, with mutual TLS beside the same server without it."""

from __future__ import annotations

import json
import warnings
from typing import Any

from tenfold.core.bench import BenchContext, Scenario, Subject
from tenfold.core.server_load import LoadTarget, http_load_row, load_subject, served


def _model_and_body(ctx: BenchContext) -> tuple[Any, bytes]:
    def make() -> tuple[Any, bytes]:
        from tenfold.auto_learner import AutoLearner, synthetic

        data = synthetic(2_000, features=6, seed=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = (
                AutoLearner(store=ctx.workdir / "http-runs.sqlite")
                .fit(data, "target", time="t", budget_s=2, seed=0)
                .model
            )
        rows = data.head(10).drop(columns=["target", "t"]).to_dict("records")
        rows = [
            {k: (str(v) if k in ("cat", "domain") else float(v)) for k, v in r.items()}
            for r in rows
        ]
        return model, json.dumps({"rows": rows}).encode()

    result: tuple[Any, bytes] = ctx.once("http-model", make)
    return result


def _ours(mtls: bool) -> Any:
    def make(ctx: BenchContext) -> LoadTarget:
        from tenfold.auto_learner._serve import model_app

        model, body = _model_and_body(ctx)
        url, tls = served(ctx, f"learn-{mtls}", model_app(model), mtls=mtls, name="learn")
        return LoadTarget(url, "POST", "/predict", body, tls=tls)

    return make


def http_scenarios() -> list[Scenario]:
    return [
        http_load_row(
            "http_predict_mtls",
            Subject("tenfold learn serve (mutual TLS)", load_subject(_ours(True))),
            Subject("tenfold learn serve (no TLS)", load_subject(_ours(False))),
            row="POST /predict, 10 rows per request (mutual TLS vs none)",
            counts=(
                "prediction requests (10 rows each, compiled model) over HTTP/1.1 from a load "
                "generator in another process, closed loop at the concurrency whose p99 stays "
                "under 10 ms; the peer is the same server without TLS, so the row shows what "
                "mutual TLS costs (no outside peer serves this model)"
            ),
            mtls_overhead=True,
            unchecked_reason="both sides are the same code; status codes are counted (error rate)",
        )
    ]
