"""Sustained scrapes of the pipeline's metrics endpoint, with mutual TLS beside none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenfold.core.bench import BenchContext, Scenario, Subject
from tenfold.core.server_load import LoadTarget, http_load_row, load_subject, served

_TOML = (
    '[pipeline]\nname = "scraped"\n'
    '[schemas.Tick]\nid = "int"\nts = "float"\n'
    '[source]\ntype = "generator"\nschema = "Tick"\nrate = 1000\n'
    '[[stages]]\ntype = "decode"\nschema = "Tick"\n'
    '[sink]\ntype = "null"\n'
)


def _ours(mtls: bool) -> Any:
    def make(ctx: BenchContext) -> LoadTarget:
        from tenfold.pipeline_engine._metrics_http import metrics_app
        from tenfold.pipeline_engine._toml import load_pipeline

        def pipeline() -> Any:
            path = Path(ctx.workdir) / "scraped.toml"
            path.write_text(_TOML)
            return load_pipeline(path)

        app = metrics_app(ctx.once("scraped-pipeline", pipeline))
        url, tls = served(ctx, f"metrics-{mtls}", app, mtls=mtls, name="metrics")
        return LoadTarget(url, "GET", "/metrics", tls=tls)

    return make


def http_scenarios() -> list[Scenario]:
    return [
        http_load_row(
            "http_metrics_mtls",
            Subject("tenfold metrics (mutual TLS)", load_subject(_ours(True))),
            Subject("tenfold metrics (no TLS)", load_subject(_ours(False))),
            row="GET /metrics, Prometheus text (mutual TLS vs none)",
            counts=(
                "metrics scrapes over HTTP/1.1 from a load generator in another process, closed "
                "loop at the concurrency whose p99 stays under 10 ms; the peer is the same "
                "endpoint without TLS, so the row shows what mutual TLS costs"
            ),
            mtls_overhead=True,
            unchecked_reason="both sides are the same code; status codes are counted (error rate)",
        )
    ]
