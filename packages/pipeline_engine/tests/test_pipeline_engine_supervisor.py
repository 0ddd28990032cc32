"""``tenfold pipeline run --workers N``: a supervisor of engine processes, with real Tansu and PostgreSQL."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import given
from hypothesis import strategies as st

from tenfold.core.placement import LocalPlace
from tenfold.pipeline_engine import Supervisor, SupervisorError, split_partitions
from tenfold.pipeline_engine._testing import ORDERS_KAFKA_TO_POSTGRES, order


@given(
    st.lists(st.integers(0, 1_000), min_size=1, max_size=64, unique=True),
    st.integers(1, 64),
)
def test_split_gives_every_partition_to_exactly_one_worker(parts: list[int], workers: int) -> None:
    if workers > len(parts):
        with pytest.raises(SupervisorError, match="at least one"):
            split_partitions(parts, workers)
        return
    shares = split_partitions(parts, workers)
    assert len(shares) == workers
    assert sorted(p for share in shares for p in share) == sorted(parts)
    sizes = [len(s) for s in shares]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_split_refuses_no_workers() -> None:
    with pytest.raises(SupervisorError, match="positive"):
        split_partitions([0, 1], 0)


NDJSON_TOML = """
[source]
type = "ndjson"
path = "{path}"

[sink]
type = "null"
"""


def test_workers_and_partitions_need_a_kafka_source(tmp_path: Path, capsys) -> None:
    from tenfold.pipeline_engine.__main__ import main

    (tmp_path / "in.ndjson").write_text('{"a": 1}\n')
    path = tmp_path / "p.toml"
    path.write_text(NDJSON_TOML.format(path=tmp_path / "in.ndjson"))
    for extra in (["--workers", "2"], ["--partitions", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["run", str(path), "--no-progress", *extra])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"tenfold: error: {extra[0]} needs a kafka source, this pipeline reads ndjson"
        ]


# -- with the real broker and database ----------------------------------------------


def _kept(n: int) -> list[int]:
    return [i for i in range(n) if i % 3 != 0]


PARTITIONS = 4


def _topic(broker) -> str:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[
        name
    ].result(timeout=30)
    return name


def _produce(broker, topic: str, start: int, stop: int, rate: float | None = None) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "log_level": 3})
    t0 = time.monotonic()
    for i in range(start, stop):
        while True:
            try:
                producer.produce(topic, order(i), partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 500 == 0:
            producer.poll(0)
            if rate is not None and (lag := (i - start) / rate - (time.monotonic() - t0)) > 0:
                time.sleep(lag)
    assert producer.flush(60) == 0


def _count(dsn: str, table: str) -> tuple[int, int]:
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{table}"').fetchone()
    except psycopg.errors.UndefinedTable:
        return 0, 0
    assert row is not None
    return int(row[0]), int(row[1])


def _ids(dsn: str, table: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f'SELECT id FROM "{table}" ORDER BY id').fetchall()]


def _offsets(dsn: str, pipeline: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(
            conn.execute(
                "SELECT stream, next_offset FROM tenfold_pipeline_offsets WHERE pipeline = %s",
                (pipeline,),
            ).fetchall()
        )


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Supervised:
    """``python -m tenfold.pipeline_engine run --workers N`` in its own session, its stderr watched."""

    def __init__(
        self,
        tmp_path: Path,
        broker,
        topic: str,
        dsn: str,
        workers: int,
        idle,
        args: tuple[str, ...] = (),
    ) -> None:
        path = tmp_path / f"{topic}.toml"
        path.write_text(
            ORDERS_KAFKA_TO_POSTGRES.format(
                name=topic,
                bootstrap=broker.bootstrap,
                topic=topic,
                dsn=dsn,
                idle="" if idle is None else f"stop_when_idle_s = {idle}",
            )
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenfold.pipeline_engine",
                "run",
                str(path),
                *(args or ("--workers", str(workers))),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.pids: dict[int, list[int]] = {}
        self.places: dict[int, str] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(
                r"worker (\d+) started: pid (\d+), partitions \[[\d, ]*\]( in (\S+))?", line
            )
            if m:
                self.pids.setdefault(int(m.group(1)), []).append(int(m.group(2)))
                if m.group(4):
                    self.places[int(m.group(1))] = m.group(4)

    def all_pids(self) -> list[int]:
        return [p for pids in list(self.pids.values()) for p in pids]

    def wait_for(self, what, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not what():
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.05)

    def finish(self, timeout_s: float = 120.0) -> dict:
        out, _ = self.proc.communicate(timeout=timeout_s)
        self._reader.join(10)
        assert self.proc.returncode == 0, "".join(self.lines)
        return json.loads(out)

    def cleanup(self) -> None:
        """Kill whatever is left, by pid (only when a test failed half-way)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.all_pids():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.service
@pytest.mark.slow
def test_a_sigkilled_worker_is_restarted_and_no_row_is_lost_or_written_twice(
    tmp_path, kafka_broker, postgres
) -> None:
    topic = _topic(kafka_broker)
    n = 24_000
    _produce(kafka_broker, topic, 0, 2_000)
    # No idle stop: a stall of the loaded machine must not end a worker early. The
    # test stops the supervisor once every row is in (or times out).
    sup = Supervised(tmp_path, kafka_broker, topic, postgres.dsn, workers=2, idle=None)
    expected = _kept(n)
    trickle = threading.Thread(
        target=_produce, args=(kafka_broker, topic, 2_000, n, 5_000), daemon=True
    )
    try:
        sup.wait_for(lambda: len(sup.pids) == 2 and _count(postgres.dsn, topic)[0] > 0)
        trickle.start()
        sup.wait_for(lambda: _count(postgres.dsn, topic)[0] > 4_000)
        victim = sup.pids[0][0]
        os.kill(victim, signal.SIGKILL)
        sup.wait_for(lambda: len(sup.pids[0]) == 2)  # restarted, same slot
        trickle.join(60)
        sup.wait_for(lambda: _count(postgres.dsn, topic)[0] >= len(expected), timeout_s=90)
        time.sleep(0.5)  # a duplicate, if any, would land now
        sup.proc.send_signal(signal.SIGTERM)
        summary = sup.finish()
    finally:
        sup.cleanup()
    assert summary["restarts"] == 1
    w0 = summary["workers"][0]
    assert w0["restarts"] == 1 and w0["exit_codes"] == [-signal.SIGKILL, 0]
    assert sorted(p for w in summary["workers"] for p in w["partitions"]) == list(range(PARTITIONS))
    log = "".join(sup.lines)
    assert _count(postgres.dsn, topic) == (len(expected), len(expected)), log
    assert _ids(postgres.dsn, topic) == expected
    # Each worker stored its own partitions' offsets, and only those: the end of each.
    assert _offsets(postgres.dsn, topic) == {
        f"{topic}/{p}": n // PARTITIONS for p in range(PARTITIONS)
    }
    assert not [p for p in sup.all_pids() if _alive(p)]


@pytest.mark.service
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_sigterm_or_ctrl_c_stops_every_worker_cleanly(
    tmp_path, kafka_broker, postgres, how: str
) -> None:
    topic = _topic(kafka_broker)
    _produce(kafka_broker, topic, 0, 6_000)
    sup = Supervised(tmp_path, kafka_broker, topic, postgres.dsn, workers=2, idle=None)
    try:
        expected = _kept(6_000)
        sup.wait_for(lambda: _count(postgres.dsn, topic)[0] >= len(expected))
        workers = sup.all_pids()
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        if how == "sigterm":
            sup.proc.send_signal(signal.SIGTERM)
        else:
            # A terminal's Ctrl-C: SIGINT to the foreground process group.
            os.killpg(sup.proc.pid, signal.SIGINT)
        summary = sup.finish(timeout_s=60)
    finally:
        sup.cleanup()
    assert summary["stopped"] and summary["restarts"] == 0
    assert all(w["exit_codes"] == [0] for w in summary["workers"])
    assert not [p for p in workers if _alive(p)]
    assert _count(postgres.dsn, topic) == (len(expected), len(expected))


@pytest.mark.service
def test_workers_exit_when_the_supervisor_is_sigkilled(tmp_path, kafka_broker, postgres) -> None:
    topic = _topic(kafka_broker)
    _produce(kafka_broker, topic, 0, 1_000)
    sup = Supervised(tmp_path, kafka_broker, topic, postgres.dsn, workers=2, idle=None)
    try:
        sup.wait_for(lambda: len(sup.pids) == 2 and _count(postgres.dsn, topic)[0] > 0)
        workers = sup.all_pids()
        sup.proc.send_signal(signal.SIGKILL)
        sup.proc.wait(10)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in workers if _alive(p)]
    finally:
        sup.cleanup()


@pytest.mark.service
def test_a_worker_that_keeps_failing_stops_the_supervisor_after_max_restarts(
    tmp_path, kafka_broker
) -> None:
    topic = _topic(kafka_broker)
    path = tmp_path / "unreachable.toml"
    toml = ORDERS_KAFKA_TO_POSTGRES.format(
        name=topic,
        bootstrap=kafka_broker.bootstrap,
        topic=topic,
        dsn="postgresql://postgres@127.0.0.1:1/postgres",  # nothing listens there
        idle="",
    )
    path.write_text(toml + "retry_timeout_s = 0.2\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tenfold.pipeline_engine",
            "run",
            str(path),
            "--workers",
            "2",
            "--max-restarts",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"tenfold: error: worker \d \(partitions \[\d, \d\]\) failed 2 times, last with"
        r" exit code 2; giving up after --max-restarts 1",
        last,
    ), err
    pids = [int(p) for p in re.findall(r"started: pid (\d+)", err)]
    assert len(pids) >= 3  # two workers, then at least one restart
    assert not [p for p in pids if _alive(p)]


class _LosablePlace(LocalPlace):
    """This host, until ``lost`` is set: then it refuses processes, as a node that is gone."""

    lost = False

    def spawn(self, argv, **popen_kw):
        if self.lost:
            raise OSError(f"{self.name} is unreachable")
        return super().spawn(argv, **popen_kw)


@pytest.mark.service
@pytest.mark.slow
def test_a_killed_engine_whose_place_is_gone_rebalances_and_every_row_lands_once(
    tmp_path, kafka_broker, postgres
) -> None:
    topic = _topic(kafka_broker)
    n = 16_000
    _produce(kafka_broker, topic, 0, 2_000)
    path = tmp_path / f"{topic}.toml"
    path.write_text(
        ORDERS_KAFKA_TO_POSTGRES.format(
            name=topic, bootstrap=kafka_broker.bootstrap, topic=topic, dsn=postgres.dsn, idle=""
        )
    )
    places = [_LosablePlace(f"place{i}") for i in range(3)]
    events: list[str] = []
    sup = Supervisor(
        path,
        split_partitions(range(PARTITIONS), 3),
        places=places,
        rebalance=True,
        on_event=events.append,
        restart_delay_s=0.2,
        stop_timeout_s=20,
    )
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(sup.run()), daemon=True)
    expected = _kept(n)

    def wait_for(what, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not what():
            assert runner.is_alive() and time.monotonic() < deadline, "\n".join(events)
            time.sleep(0.05)

    runner.start()
    try:
        wait_for(lambda: len(sup.pids()) == 3 and _count(postgres.dsn, topic)[0] > 0)
        trickle = threading.Thread(target=_produce, args=(kafka_broker, topic, 2_000, n, 4_000))
        trickle.start()
        wait_for(lambda: _count(postgres.dsn, topic)[0] > 3_000)
        victim = sup.workers[0]
        assert victim.proc is not None
        places[0].lost = True  # its node is gone: it cannot come back
        os.kill(victim.proc.pid, signal.SIGKILL)
        wait_for(lambda: any("rebalance 1: 2 member(s)" in e for e in events))
        wait_for(lambda: "could not start in place0" in "\n".join(events))
        # The lost place is probed before each rejoin: it stays out, the survivors keep all.
        assert sup.rebalances == 1 and not sup.workers[0].member
        survivors = [w for w in sup.workers if w.index != 0]
        assert sorted(p for w in survivors for p in w.partitions) == list(range(PARTITIONS))
        trickle.join(60)
        wait_for(lambda: _count(postgres.dsn, topic)[0] >= len(expected), timeout_s=120)
        time.sleep(0.5)  # a duplicate, if any, would land now
    finally:
        sup.stop()
        runner.join(60)
    log = "\n".join(events)
    assert not runner.is_alive(), log
    assert result["rebalances"] >= 1 and result["workers"][0]["exit_codes"][0] == -signal.SIGKILL
    assert "could not start in place0" in log
    assert _count(postgres.dsn, topic) == (len(expected), len(expected)), log
    assert _ids(postgres.dsn, topic) == expected
    assert _offsets(postgres.dsn, topic) == {
        f"{topic}/{p}": n // PARTITIONS for p in range(PARTITIONS)
    }
    assert not [p for w in sup.workers for p in w.pids if _alive(p)]


def test_nodes_refuse_a_pipeline_whose_services_are_on_loopback(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        ORDERS_KAFKA_TO_POSTGRES.format(
            name="t",
            bootstrap="127.0.0.1:9092",
            topic="t",
            dsn="postgresql://postgres@localhost:5432/postgres",
            idle="",
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "tenfold.pipeline_engine", "run", str(path), "--nodes", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        "tenfold: error: --nodes: kafka bootstrap 127.0.0.1:9092, postgres host localhost is"
        " this host's loopback, which no node reaches (a node's 127.0.0.1 is its own); let the"
        " service listen on another address of this host and name that address in the"
        " pipeline file"
    ]


@pytest.fixture(scope="module")
def host_services():
    """Tansu and PostgreSQL on an address of this host that nodes reach (not loopback)."""
    from tenfold.core.nodes import SUBNET_BASE, host_addresses
    from tenfold.core.services import KafkaBroker, Postgres

    if os.geteuid() != 0:
        pytest.skip("needs root: nodes are network namespaces and cgroups")
    routable = [a for a in host_addresses() if not a.startswith(SUBNET_BASE + ".")]
    if not routable:
        pytest.skip("this host has no address besides loopback for the nodes to reach")
    with (
        KafkaBroker(host=routable[0]) as broker,
        Postgres(host=routable[0], trusted_networks=[f"{SUBNET_BASE}.0.0/16"]) as pg,
    ):
        yield broker, pg


@pytest.mark.service
@pytest.mark.slow
def test_engines_in_nodes_rebalance_when_one_node_is_killed_and_every_row_lands_once(
    tmp_path, host_services
) -> None:
    """``run --nodes 2 --rebalance``: an engine per measured node, one consumer group; every
    process of one node is SIGKILLed mid-stream, the group rebalances, no row twice."""
    from tenfold.core.nodes import leftover_nodes

    broker, pg = host_services
    topic = _topic(broker)
    n = 16_000
    _produce(broker, topic, 0, 2_000)
    sup = Supervised(
        tmp_path, broker, topic, pg.dsn, workers=2, idle=None, args=("--nodes", "2", "--rebalance")
    )
    expected = _kept(n)
    trickle = threading.Thread(target=_produce, args=(broker, topic, 2_000, n, 4_000), daemon=True)
    try:
        sup.wait_for(lambda: len(sup.places) == 2 and _count(pg.dsn, topic)[0] > 0, 120)
        netns = sup.places[0]
        assert netns != sup.places[1] and re.fullmatch(r"tfn[0-9a-f]{6}-0", netns)
        trickle.start()
        sup.wait_for(lambda: _count(pg.dsn, topic)[0] > 3_000, 120)
        inside = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True
        ).stdout.split()
        assert str(sup.pids[0][-1]) in inside  # the engine runs inside its node
        for pid in inside:  # the whole node: every process in it
            os.kill(int(pid), signal.SIGKILL)
        # The group changes at once (eager, stop-the-world); the node can start processes
        # again, so its engine rejoins there (a node that stays gone is the
        # _LosablePlace test's case).
        sup.wait_for(lambda: "rebalance 1: " in "".join(sup.lines), 120)
        sup.wait_for(lambda: len(sup.pids[0]) >= 2, 120)
        assert sup.places[0] == netns
        trickle.join(120)
        sup.wait_for(lambda: _count(pg.dsn, topic)[0] >= len(expected), timeout_s=180)
        time.sleep(0.5)  # a duplicate, if any, would land now
        sup.proc.send_signal(signal.SIGTERM)
        summary = sup.finish()
    finally:
        sup.cleanup()
    log = "".join(sup.lines)
    assert summary["rebalances"] >= 1 and summary["workers"][0]["exit_codes"][0] == -signal.SIGKILL
    assert _count(pg.dsn, topic) == (len(expected), len(expected)), log
    assert _ids(pg.dsn, topic) == expected
    assert _offsets(pg.dsn, topic) == {f"{topic}/{p}": n // PARTITIONS for p in range(PARTITIONS)}
    assert not [p for p in sup.all_pids() if _alive(p)]
    assert leftover_nodes(netns.rsplit("-", 1)[0]) == []  # the nodes went with the supervisor
