"""The Kafka -> PostgreSQL pipeline file shown in docs/pipeline_engine.md runs as printed."""

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

DOC = Path(__file__).resolve().parents[3] / "docs" / "pipeline_engine.md"


def _doc_toml() -> str:
    text = DOC.read_text()
    block = re.search(r"\$ cat > orders\.toml <<'EOF'\n(.*?\n)EOF\n", text, re.S)
    assert block is not None
    return block.group(1)


def _tenfold(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenfold.pipeline_engine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.service
def test_the_documented_kafka_to_postgres_pipeline_runs(tmp_path, kafka_broker, postgres) -> None:
    toml = _doc_toml()
    toml = toml.replace("127.0.0.1:9092", kafka_broker.bootstrap)
    toml = toml.replace("postgresql://postgres@127.0.0.1:5432/postgres", postgres.dsn)
    toml = toml.replace('topic = "orders"', 'topic = "docs-orders"')
    toml = toml.replace('table = "orders"', 'table = "docs_orders"')
    (tmp_path / "orders.toml").write_text(toml)
    (tmp_path / "users.csv").write_text("user_id,country,tier\n1,FR,2\n2,DE,1\n")
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap, "log_level": 3})
    admin.create_topics([NewTopic("docs-orders", 2, 1)])["docs-orders"].result(30)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "log_level": 3})
    for i in range(1_000):
        kind = "view" if i % 4 == 0 else "buy"
        producer.produce(
            "docs-orders",
            f'{{"id": {i}, "user_id": {i % 3}, "kind": "{kind}", "amount": {i + 1}.5}}'.encode(),
            partition=i % 2,
        )
    producer.produce("docs-orders", b"not json", partition=0)
    assert producer.flush(30) == 0
    checked = _tenfold("check", "orders.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "kafka -> decode -> filter -> enrich -> postgres" in checked.stdout
    ran = _tenfold("run", "orders.toml", "--max-events", "1001", "--no-progress", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT id), count(country) FROM docs_orders"
        ).fetchone()
        dead = conn.execute(
            "SELECT count(*) FROM tenfold_dead_letters WHERE pipeline = 'orders'"
        ).fetchone()
    kept = [i for i in range(1_000) if i % 4 != 0]
    assert rows == (len(kept), len(kept), sum(1 for i in kept if i % 3 in (1, 2)))
    assert dead == (1,)


def test_the_documented_error_line_is_what_the_cli_prints(tmp_path, capsys, monkeypatch) -> None:
    from tenfold.pipeline_engine.__main__ import main

    text = DOC.read_text()
    shown = re.search(r"tenfold: error: bad.toml: (.*)", text)
    assert shown is not None
    toml = _doc_toml().replace("amount > 0", "price > 0")
    (tmp_path / "bad.toml").write_text(toml)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "bad.toml"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"tenfold: error: bad.toml: {shown.group(1)}"
