from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from tenfold.core.errors import ServiceError
from tenfold.core.services import Etcd, KafkaBroker, Postgres, Redis, Swtpm, running_services

pytestmark = pytest.mark.service


def _gone(pid: int | None) -> bool:
    if pid is None:
        return True
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split()[2] == "Z":
                return True
        time.sleep(0.05)
    return False


def test_postgres_writes_reads_survives_restart_and_cleans_up() -> None:
    import psycopg

    with Postgres() as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("create table t (id int primary key, v text)")
            conn.execute("insert into t values (1, 'one')")
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn, connect_timeout=2)
        pg.start()
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("select v from t where id = 1").fetchone() == ("one",)
        pid, workdir = pg.pid, pg.workdir
    assert _gone(pid)
    assert not workdir.exists()


def test_redis_roundtrip() -> None:
    import redis

    with Redis() as server:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"k": "v"})
        assert client.xlen("s") == 1
        client.close()
        pid = server.pid
        server.kill()  # a crash: SIGKILL, reaped, and no longer listed as running
        assert _gone(pid) and running_services() == []
    assert running_services() == []


def test_etcd_cluster_elects_a_new_leader_after_sigkill() -> None:
    import urllib.request

    with Etcd(members=3) as cluster:
        leader = cluster.leader_index()
        cluster.kill(leader)
        survivor = cluster.leader_index(timeout_s=10)
        assert survivor != leader
        port = cluster.client_ports[survivor]
        body = json.dumps({"key": "a2V5", "value": "dmFs"}).encode()  # base64 key / val
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/kv/put", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        cluster.restart(leader)
        assert cluster.alive(leader)
    assert running_services() == []


def test_etcd_member_count_is_checked() -> None:
    with pytest.raises(ServiceError, match="between 1 and 9"):
        Etcd(members=10)


def test_kafka_broker_produce_consume() -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    with KafkaBroker() as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for future in admin.create_topics([NewTopic("events", 1, 1)]).values():
            future.result(15)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(10):
            producer.produce("events", f"m{i}".encode())
        assert producer.flush(15) == 0
        consumer = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "t", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition("events", 0, 0)])
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 10 and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        consumer.close()
        del producer
        assert got == [f"m{i}".encode() for i in range(10)]


def test_swtpm_answers_tpm_commands() -> None:
    from tpm2_pytss import ESAPI, TCTILdr

    with Swtpm() as tpm:
        with ESAPI(TCTILdr.parse(tpm.tcti)) as esys:
            a, b = bytes(esys.get_random(16)), bytes(esys.get_random(16))
        assert len(a) == 16 and a != b
        pid = tpm.pid
    assert _gone(pid)


def test_port_taken_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} on 127.0.0.1 is already in use"):
            with Redis(port=port):
                pass
    assert running_services() == []


def test_missing_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="redis-server not found on PATH"):
        with Redis():
            pass


def test_cli_services_up_status_down(cli, tmp_path: Path) -> None:
    env = {"TENFOLD_RUN_DIR": str(tmp_path)}
    up = cli("services", "up", "redis", "--json", env=env)
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)["redis"]
    status = json.loads(cli("services", "status", "--json", env=env).stdout)
    assert status["redis"]["running"] is True
    down = cli("services", "down", env=env)
    assert down.returncode == 0
    assert all(_gone(pid) for pid in info["pids"])
    assert not Path(info["workdir"]).exists()
