"""``tenfold pipeline run|check PIPELINE``: run or check a pipeline file."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from tenfold.core.cli import Finite, emit, json_option

__all__ = ["pipeline_group"]


def _progress(pipeline: Any) -> None:
    m = pipeline.metrics()
    src, sink = m["stages"][0], m["stages"][-1]
    depth = sum(int(b["depth"]) for b in m["buffers"])
    episodes = sum(int(b["episodes"]) for b in m["buffers"])
    click.echo(
        f"read {int(src['events_in']):,}  written {int(sink['events_in']):,}"
        f"  {float(src['events_per_s']):,.0f} ev/s  buffered {depth:,}"
        f"  backpressure {episodes}  e2e p95 {m['e2e']['p95_ms']:.1f} ms",
        err=True,
    )


@click.group("pipeline")
def pipeline_group() -> None:
    """Synthetic Pipeline Engine: run and check pipelines (TOML files)."""


@pipeline_group.command("check")
@click.argument("pipeline_file", metavar="PIPELINE", type=click.Path(path_type=Path))
@json_option
def check_cmd(pipeline_file: Path, as_json: bool) -> None:
    """Parse and type-check PIPELINE without running it."""
    from tenfold.pipeline_engine._toml import load_pipeline

    p = load_pipeline(pipeline_file)
    names = [p.source.name, *(s.name for s in p.stages), p.sink.name]
    emit(
        {"pipeline": p.name, "ok": True, "stages": names},
        as_json,
        f"{pipeline_file}: ok ({' -> '.join(names)})",
    )


def _parse_partitions(text: str) -> list[int]:
    from tenfold.pipeline_engine.errors import PipelineDefinitionError

    try:
        parts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise PipelineDefinitionError(
            f"--partitions must be comma-separated partition numbers, got {text!r}"
        ) from None
    if not parts or parts[0] < 0:
        raise PipelineDefinitionError(f"--partitions needs partition numbers >= 0, got {text!r}")
    return parts


def _kafka_source(p: Any, option: str) -> Any:
    from tenfold.pipeline_engine._kafka import KafkaSource
    from tenfold.pipeline_engine.errors import SupervisorError

    if not isinstance(p.source, KafkaSource):
        raise SupervisorError(f"{option} needs a kafka source, this pipeline reads {p.source.name}")
    return p.source


def _loopback_endpoints(p: Any) -> list[str]:
    """The pipeline's broker and database endpoints that name this host's loopback."""
    import ipaddress

    def loopback(host: str) -> bool:
        host = host.strip().strip("[]")
        if host in ("", "localhost") or host.startswith("/"):  # a Unix socket is local too
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    found: list[str] = []
    for part in str(getattr(p.source, "bootstrap", "") or "").split(","):
        if part.strip() and loopback(part.strip().rsplit(":", 1)[0]):
            found.append(f"kafka bootstrap {part.strip()}")
    for end in (*p.stages, p.sink):
        dsn = getattr(end, "dsn", None)
        if not isinstance(dsn, str):
            continue
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            hosts = str(conninfo_to_dict(dsn).get("host") or "")
        except psycopg.Error:
            continue  # a bad DSN is the engine's to report
        if any(loopback(h) for h in hosts.split(",")):
            found.append(f"postgres host {hosts or '(none: a local socket)'}")
    return found


def _nodes(
    stack: contextlib.ExitStack, p: Any, count: int, cpu: float, memory_mb: int
) -> list[Any]:
    """``count`` measured nodes for ``--nodes``, removed when ``stack`` closes.

    Refused first when the pipeline names this host's loopback: a node's own
    127.0.0.1 is not the host's, so its engine would find nothing there.
    """
    from tenfold.core.nodes import NodeSet
    from tenfold.pipeline_engine.errors import SupervisorError

    _kafka_source(p, "--nodes")
    local = _loopback_endpoints(p)
    if local:
        raise SupervisorError(
            f"--nodes: {', '.join(local)} is this host's loopback, which no node reaches"
            " (a node's 127.0.0.1 is its own); let the service listen on another address"
            " of this host and name that address in the pipeline file"
        )
    node_set = stack.enter_context(NodeSet(count, cpu=cpu, memory_mb=memory_mb))
    click.echo(
        f"supervisor: {count} node(s) {node_set.prefix}-0..{count - 1} on"
        f" {node_set.host_address}/24, {cpu:g} core and {memory_mb} MiB each",
        err=True,
    )
    return list(node_set)


def _supervise(
    pipeline_file: Path,
    p: Any,
    workers: int,
    *,
    max_events: int | None,
    duration_s: float | None,
    metrics_port: int | None,
    max_restarts: int,
    rebalance: bool,
    as_json: bool,
    places: Sequence[Any] = (),
) -> None:
    from tenfold.pipeline_engine._supervisor import Supervisor, split_partitions

    source = _kafka_source(p, "--nodes" if places else "--workers")
    all_parts = source.partitions or source.topic_partitions()
    shares = split_partitions(all_parts, workers)
    args: list[str] = []
    if max_events is not None:
        args += ["--max-events", str(max_events)]
    if duration_s is not None:
        args += ["--duration-s", str(duration_s)]
    sup = Supervisor(
        pipeline_file,
        shares,
        worker_args=args,
        max_restarts=max_restarts,
        metrics_port=metrics_port,
        on_event=lambda line: click.echo(f"supervisor: {line}", err=True),
        rebalance=rebalance,
        places=places,
    )
    in_main = threading.current_thread() is threading.main_thread()
    restore = sup.install_signal_handlers() if in_main else None
    try:
        summary = sup.run()
    finally:
        if restore is not None:
            restore()
    emit(
        summary,
        as_json,
        lambda: "\n".join(
            f"worker {w['worker']}: partitions {w['partitions']}, restarts {w['restarts']},"
            f" written {w['events_written']}"
            for w in summary["workers"]
        ),
    )


@pipeline_group.command("run")
@click.argument("pipeline_file", metavar="PIPELINE", type=click.Path(path_type=Path))
@click.option(
    "--max-events",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after reading this many events.",
)
@click.option(
    "--duration-s",
    type=Finite(0.0, open_min=True),
    default=None,
    help="Stop reading after this many seconds.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1 (worker i of --workers on PORT+i).",
)
@click.option(
    "--progress/--no-progress", default=True, help="A progress line on stderr each second."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Run N engine processes under a supervisor, sharing the Kafka topic's partitions"
    " (restarted when they crash; SIGTERM/Ctrl-C stops them all).",
)
@click.option(
    "--partitions",
    default=None,
    metavar="P,Q,...",
    help="Read only these partitions of the Kafka source (what each --workers process gets).",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="With --workers: give up once one worker has been restarted this many times.",
)
@click.option(
    "--rebalance",
    is_flag=True,
    help="With --workers: when a worker dies, the others take over its partitions until it is"
    " back (a stop-the-world rebalance each time) instead of waiting for its restart.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 250),
    default=None,
    help="Run the engines in N measured nodes on this machine (a network namespace and a"
    " cgroup each; root): one engine per node, or --workers engines spread over them. The"
    " broker and database must listen on an address of this host other than loopback.",
)
@click.option(
    "--node-cpu",
    type=Finite(0.01, 1024.0),
    default=0.25,
    show_default=True,
    help="With --nodes: each node's CPU quota, in cores.",
)
@click.option(
    "--node-memory-mb",
    type=click.IntRange(min=16),
    default=768,
    show_default=True,
    help="With --nodes: each node's memory limit, in MiB.",
)
@json_option
def run_cmd(
    pipeline_file: Path,
    max_events: int | None,
    duration_s: float | None,
    metrics_port: int | None,
    progress: bool,
    workers: int | None,
    partitions: str | None,
    max_restarts: int,
    rebalance: bool,
    nodes: int | None,
    node_cpu: float,
    node_memory_mb: int,
    as_json: bool,
) -> None:
    """Run PIPELINE (a TOML file) until its source ends, a limit is hit, or SIGINT/SIGTERM."""
    from tenfold.pipeline_engine._toml import load_pipeline
    from tenfold.pipeline_engine.errors import SupervisorError

    p = load_pipeline(pipeline_file)
    if nodes is not None or workers is not None:
        option = "--nodes" if nodes is not None else "--workers"
        if partitions is not None:
            raise SupervisorError(f"{option} splits the partitions itself; drop --partitions")
        with contextlib.ExitStack() as stack:
            places = [] if nodes is None else _nodes(stack, p, nodes, node_cpu, node_memory_mb)
            _supervise(
                pipeline_file,
                p,
                workers or len(places),
                max_events=max_events,
                duration_s=duration_s,
                metrics_port=metrics_port,
                max_restarts=max_restarts,
                rebalance=rebalance,
                as_json=as_json,
                places=places,
            )
        return
    if rebalance:
        raise SupervisorError("--rebalance needs --workers or --nodes")
    if partitions is not None:
        _kafka_source(p, "--partitions").use_partitions(_parse_partitions(partitions))
    server = None
    if metrics_port is not None:
        from tenfold.pipeline_engine._metrics_http import serve_metrics

        server = serve_metrics(p, metrics_port)

    def graceful(signum: int, frame: Any) -> None:
        p.stop()

    # Signal handlers can only be installed from the main thread (an embedding
    # program may call us from another one; then SIGTERM keeps its own meaning).
    in_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, graceful) if in_main else None
    try:
        report = p.run(
            max_events=max_events,
            duration_s=duration_s,
            on_progress=_progress if progress else None,
        )
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old)
        if server is not None:
            server.stop()
    doc = {
        "pipeline": report.pipeline,
        "events_read": report.events_read,
        "events_written": report.events_written,
        "dead_letters": report.dead_letters,
        "elapsed_s": round(report.elapsed_s, 3),
        "events_per_s": round(report.events_per_s, 1),
        "e2e_p50_ms": round(report.e2e_p50_ms, 3),
        "e2e_p95_ms": round(report.e2e_p95_ms, 3),
        "backpressure_episodes": report.backpressure_episodes,
    }
    emit(doc, as_json, lambda: "\n".join(f"{k}: {v}" for k, v in doc.items()))
