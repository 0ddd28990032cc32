"""Horizontal Scaling rows: Kafka -> Postgres with N engines, each in its own node.

A node (:class:`tenfold.core.nodes.NodeSet`) is a network namespace with its own
address on a bridge and a cgroup of ``NODE_CPU`` cores and ``NODE_MEMORY_MB``
MiB, the same at every N, so the rows show what adding nodes buys, coordination
included. The Tansu broker and PostgreSQL run on the host, listening on the
nodes' host-side address.

Ours: the supervisor of ``tenfold pipeline run --workers N`` with one engine per
node, sharing the topic's 8 partitions under one consumer group id (offsets
stored with the rows). The peer: N Quix Streams processes, one per node, in one
consumer group (Kafka's group protocol spreads the partitions), the same decode,
filter and enrichment, and the same COPY into PostgreSQL.

Both sides start their processes and see one warm-up event per partition land
in PostgreSQL before the timer; an op then produces a fresh slice of events and
ends when PostgreSQL holds every kept one. The slice's rows are read back on
each side (count, distinct ids, a digest of the enriched columns) and compared.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Subject
from tenfold.core.declare import scaling_seed
from tenfold.core.errors import BenchError
from tenfold.core.lifecycle import stop_processes

__all__ = ["node_scenarios"]

PARTITIONS = 8
NODE_CPU = 0.25  # cores per node: 8 nodes fill this machine's 2 cores
NODE_MEMORY_MB = 768
_COLUMNS = "id, user_id, kind, amount, ts, country, tier"
_WARM_BASE = 1_000_000_000  # warm-up event ids, apart from the measured ones

_TOML = """
[pipeline]
name = "{name}"
batch_size = 5000
linger_ms = 20

[schemas.Order]
id = "int"
user_id = "int"
kind = "str"
amount = "float"
ts = "float"

[source]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{topic}"
group = "{name}"

[[stages]]
type = "decode"
schema = "Order"

[[stages]]
type = "filter"
where = "kind != 'view'"

[[stages]]
type = "enrich"
key = "user_id"
csv = "{users}"
columns = {{ country = "str", tier = "int" }}

[sink]
type = "postgres"
dsn = "{dsn}"
table = "{table}"
"""


class _Cluster:
    """N nodes, and the broker and PostgreSQL listening on their host address."""

    def __init__(self, ctx: BenchContext, nodes: int) -> None:
        from confluent_kafka.admin import AdminClient

        from tenfold.core.nodes import SUBNET_BASE, NodeSet
        from tenfold.core.services import KafkaBroker, Postgres

        self.nodes = ctx.enter(NodeSet(nodes, cpu=NODE_CPU, memory_mb=NODE_MEMORY_MB))
        host = self.nodes.host_address
        self.broker = ctx.enter(KafkaBroker(host=host))
        self.pg = ctx.enter(
            Postgres(
                host=host,
                trusted_networks=[f"{SUBNET_BASE}.{self.nodes.subnet}.0/24"],
                settings={"max_connections": "100"},
            )
        )
        self.admin = AdminClient({"bootstrap.servers": self.broker.bootstrap, "log_level": 3})
        self.users = ctx.workdir / "users.csv"
        from tenfold.pipeline_engine.bench import user_table

        with self.users.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["user_id", "country", "tier"])
            for uid, (country, tier) in user_table().items():
                out.writerow([uid, country, tier])

    def topic(self, prefix: str) -> str:
        from confluent_kafka.admin import NewTopic

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
        return name

    def table(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE {name} (id int8 NOT NULL, user_id int8 NOT NULL, kind text NOT NULL,"
                " amount float8 NOT NULL, ts float8 NOT NULL, country text, tier int8)"
            )

    def produce(self, topic: str, messages: list[bytes]) -> None:
        from confluent_kafka import Producer

        producer = Producer(
            {"bootstrap.servers": self.broker.bootstrap, "linger.ms": 5, "log_level": 3}
        )
        for i, m in enumerate(messages):
            while True:
                try:
                    producer.produce(topic, m, partition=i % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.02)
        if producer.flush(60):
            raise BenchError(f"could not produce to {topic}")

    def count(self, table: str, lo: int, hi: int) -> int:
        import psycopg

        with psycopg.connect(self.pg.dsn) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM {table} WHERE id >= %s AND id < %s", (lo, hi)
            ).fetchone()
        return int(row[0]) if row else 0

    def digest(self, table: str, lo: int, hi: int) -> str:
        """Rows, distinct ids and an md5 over every enriched row of ids [lo, hi)."""
        import psycopg

        with psycopg.connect(self.pg.dsn) as conn:
            row = conn.execute(
                f"SELECT count(*), count(DISTINCT id), md5(string_agg(concat_ws('|', {_COLUMNS}),"
                f" ',' ORDER BY id)) FROM {table} WHERE id >= %s AND id < %s",
                (lo, hi),
            ).fetchone()
        assert row is not None
        return f"{row[0]} rows, {row[1]} distinct, md5 {row[2]}"

    def cpu_s(self, count: int) -> float:
        return sum(node.cpu_seconds() for node in self.nodes.nodes[:count])


def _events(start: int, n: int, seed: int) -> list[bytes]:
    """``n`` benchmark orders with ids from ``start`` (the same events on both sides)."""
    from tenfold.pipeline_engine.bench import make_messages

    return make_messages(n, seed, start=start)


def _warm_events() -> list[bytes]:
    import msgspec

    from tenfold.pipeline_engine.bench import Order

    return [
        msgspec.json.encode(Order(_WARM_BASE + p, p, "buy", 1.0, 0.0)) for p in range(PARTITIONS)
    ]


def _wait_rows(
    cluster: _Cluster, table: str, lo: int, hi: int, want: int, alive: Callable[[], str | None]
) -> None:
    deadline = time.monotonic() + 300
    while cluster.count(table, lo, hi) < want:
        problem = alive()
        if problem:
            raise BenchError(problem)
        if time.monotonic() > deadline:
            raise BenchError(f"{table}: {cluster.count(table, lo, hi)} of {want} rows after 300 s")
        time.sleep(0.02)


def _subject(nodes: int, kind: str) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from tenfold.pipeline_engine.bench import expected_count

        cluster = ctx.once("nodes", lambda: _Cluster(ctx, nodes))
        n = ctx.size(4_000, 40_000, 200_000)
        topic = cluster.topic(kind)
        table = topic
        cluster.table(table)
        places = cluster.nodes.nodes[:nodes]
        if kind == "ours":
            alive = _start_ours(ctx, cluster, topic, table, places)
        else:
            alive = _start_quix(ctx, cluster, topic, table, places)
        warm = _warm_events()
        cluster.produce(topic, warm)
        _wait_rows(cluster, table, _WARM_BASE, _WARM_BASE + len(warm), len(warm), alive)
        calls = [0]

        def op() -> Outcome:
            start = calls[0] * n
            calls[0] += 1
            messages = _events(start, n, ctx.seed)
            want = expected_count(messages)
            cpu0 = cluster.cpu_s(nodes)
            t0 = time.perf_counter()
            cluster.produce(topic, messages)  # in the timer, on both sides alike
            produce_s = time.perf_counter() - t0
            _wait_rows(cluster, table, start, start + n, want, alive)
            cpu = cluster.cpu_s(nodes) - cpu0
            digest = cluster.digest(table, start, start + n)
            if not digest.startswith(f"{want} rows, {want} distinct"):
                raise BenchError(f"{kind}: {digest}, expected {want} rows once each")
            return Outcome(
                n,
                {
                    "nodes": nodes,
                    "rows": want,
                    "produce_s": round(produce_s, 3),
                    "nodes_cpu_us_per_event": round(cpu / n * 1e6, 2),
                    "node": f"netns + cgroup, {NODE_CPU:g} core, {NODE_MEMORY_MB} MiB",
                },
                result=digest,
            )

        return op

    return prepare


def _start_ours(
    ctx: BenchContext, cluster: _Cluster, topic: str, table: str, places: list[Any]
) -> Callable[[], str | None]:
    from tenfold.pipeline_engine._supervisor import Supervisor, split_partitions

    path = ctx.workdir / f"{topic}.toml"
    path.write_text(
        _TOML.format(
            name=topic,
            bootstrap=cluster.broker.bootstrap,
            topic=topic,
            users=cluster.users,
            dsn=cluster.pg.dsn,
            table=table,
        )
    )
    sup = Supervisor(
        path,
        split_partitions(range(PARTITIONS), len(places)),
        places=places,
        max_restarts=0,
        on_event=lambda line: None,
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            sup.run()
        except BaseException as exc:  # reported by alive()
            failure.append(exc)

    runner = threading.Thread(target=run, name="bench-supervisor", daemon=True)
    runner.start()

    def stop() -> None:
        sup.stop()
        runner.join(60)

    ctx.callback(stop)

    def alive() -> str | None:
        if failure:
            return f"supervisor: {failure[0]}"
        return None if runner.is_alive() else "the supervisor stopped"

    return alive


def _start_quix(
    ctx: BenchContext, cluster: _Cluster, topic: str, table: str, places: list[Any]
) -> Callable[[], str | None]:
    config = {
        "bootstrap": cluster.broker.bootstrap,
        "topic": topic,
        "group": topic,
        "dsn": cluster.pg.dsn,
        "table": table,
        "state_dir": str(ctx.workdir / "quix-state"),
    }
    procs: list[subprocess.Popen[bytes]] = []
    for i, place in enumerate(places):
        procs.append(
            place.spawn(
                [sys.executable, "-m", "tenfold.pipeline_engine._bench_nodes", json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(ctx.workdir / f"quix-{topic}-{i}.log", "wb"),  # noqa: SIM115
                start_new_session=True,
            )
        )

    def stop() -> None:
        stop_processes(procs, 20)
        for proc in procs:
            if proc.stderr is not None:
                proc.stderr.close()

    ctx.callback(stop)

    def alive() -> str | None:
        for i, proc in enumerate(procs):
            if proc.poll() is not None:
                log = (ctx.workdir / f"quix-{topic}-{i}.log").read_text(errors="replace")
                return f"quix consumer {i} exited with {proc.returncode}: {log[-500:]}"
        return None

    return alive


def _quix_consumer(config: dict[str, Any]) -> None:
    """One Quix Streams consumer of the peer side (runs in a node until SIGTERM)."""
    import psycopg
    from quixstreams import Application
    from quixstreams.sinks import BatchingSink, SinkBatch

    from tenfold.pipeline_engine.bench import _GROUP_CONFIG, user_table

    users = user_table()
    types = ["int8", "int8", "text", "float8", "float8", "text", "int8"]

    class CopySink(BatchingSink):
        """COPY BINARY per batch, as ours does."""

        def setup(self) -> None:
            self.conn = psycopg.connect(config["dsn"])

        def write(self, batch: SinkBatch) -> None:
            with (
                self.conn.cursor() as cur,
                cur.copy(f"COPY {config['table']} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                cp.set_types(types)
                for item in batch:
                    v = item.value
                    row = (v["id"], v["user_id"], v["kind"], v["amount"], v["ts"])
                    cp.write_row((*row, v["country"], v["tier"]))
            self.conn.commit()

    def enrich(v: dict[str, Any]) -> dict[str, Any]:
        row = users.get(v["user_id"])
        v["country"], v["tier"] = row if row else (None, None)
        return v

    app = Application(
        broker_address=config["bootstrap"],
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        commit_every=5_000,
        commit_interval=0.1,
        loglevel="WARNING",
        use_changelog_topics=False,
        state_dir=config["state_dir"] + f"-{os.getpid()}",
        consumer_extra_config={**_GROUP_CONFIG, "log_level": 3},
    )
    sdf = app.dataframe(app.topic(config["topic"], value_deserializer="json"))
    sdf = sdf.filter(lambda v: v["kind"] != "view").apply(enrich)
    sdf.sink(CopySink())
    app.run()


def node_scenarios() -> list[Scenario]:
    """``kafka_pg_<N>_nodes`` for N = 1, 2 (quick) and 4, 8 (--full)."""
    from tenfold.core.declare import dist_version

    rows = []
    for n in (1, 2, 4, 8):
        rows.append(
            Scenario(
                name=f"kafka_pg_{n}_nodes",
                unit="events",
                table="Horizontal Scaling",
                row=f"Pipeline Engine, {n} {'node' if n == 1 else 'nodes'}",
                counts=f"events from one Tansu topic ({PARTITIONS} partitions) into PostgreSQL by"
                f" {n} consumer process(es), one per node (netns + cgroup of {NODE_CPU:g} core,"
                f" {NODE_MEMORY_MB} MiB); broker and database on the host",
                ours=Subject(f"tenfold --workers {n} (one engine per node)", _subject(n, "ours")),
                peer=Subject(
                    f"quixstreams {dist_version('quixstreams')} ({n} consumers in one group)",
                    _subject(n, "peer"),
                ),
                seed=scaling_seed("Horizontal Scaling", "Pipeline Engine", n),
                modes=("quick", "full") if n <= 2 else ("full",),
                needs_root=True,
                rounds=2,
                full_rounds=2,
                warmup=0,
                fairness="the same nodes, broker, database and events; both sides decode, keep "
                "non-view orders, join the same user table and COPY into their own table; "
                "processes start and take a warm-up event per partition before the timer, which "
                "runs from producing the slice (one producer on the host) to its last row; ours "
                "splits the partitions statically and stores offsets with the rows (effectively "
                "once), Quix joins a consumer group and commits to Kafka (at least once); both "
                "sides' consumers stay up between their runs",
                checks="each op's slice is read back on each side: every kept event once, and "
                "an md5 over the enriched rows, which the harness compares",
            )
        )
    return rows


if __name__ == "__main__":  # a Quix Streams consumer of the peer side
    _quix_consumer(json.loads(sys.argv[1]))
