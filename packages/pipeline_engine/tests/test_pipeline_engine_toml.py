import json
from pathlib import Path

import msgspec
import pytest

from tenfold.pipeline_engine import (
    PipelineDefinitionError,
    SchemaError,
    load_pipeline,
    parse_schema,
)

GOOD = """
[pipeline]
name = "orders"
batch_size = 500
linger_ms = 5

[schemas.Order]
id = "int"
user_id = "int"
kind = "str"
amount = "float"
ts = "float"

[source]
type = "ndjson"
path = "orders.ndjson"

[[stages]]
type = "decode"
schema = "Order"

[[stages]]
type = "filter"
where = ["kind == 'buy'", "amount >= 10"]

[[stages]]
type = "enrich"
key = "user_id"
columns = { country = "str" }
csv = "users.csv"

[sink]
type = "ndjson"
path = "out.ndjson"
fsync = false

[dead_letters]
type = "ndjson"
path = "dead.ndjson"
"""


def _write_inputs(d: Path, n: int = 300) -> None:
    lines = []
    for i in range(n):
        lines.append(
            json.dumps(
                {
                    "id": i,
                    "user_id": i % 4,
                    "kind": ("buy", "view")[i % 2],
                    "amount": float(i),
                    "ts": float(i),
                }
            )
        )
    lines[3] = '{"id": "x"}'
    lines[5] = "not json at all"
    (d / "orders.ndjson").write_text("\n".join(lines) + "\n")
    (d / "users.csv").write_text("user_id,country\n0,FR\n1,DE\n2,IT\n")


def test_a_toml_pipeline_runs_end_to_end(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    (tmp_path / "p.toml").write_text(GOOD)
    pipeline = load_pipeline(tmp_path / "p.toml")
    report = pipeline.run()
    out = [json.loads(x) for x in (tmp_path / "out.ndjson").read_text().splitlines()]
    expected_ids = [i for i in range(300) if i % 2 == 0 and i >= 10]
    assert [o["id"] for o in out] == expected_ids
    assert {o["user_id"]: o["country"] for o in out} == {0: "FR", 2: "IT"}
    dead = [json.loads(x) for x in (tmp_path / "dead.ndjson").read_text().splitlines()]
    assert [d["source"].rsplit(":", 1)[1] for d in dead] == ["4", "6"]
    assert dead[0]["reason"].startswith("wrong type")
    assert dead[1]["reason"].startswith("malformed JSON")
    assert report.events_read == 300


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (('type = "filter"', 'type = "fliter"'), "unknown stage type 'fliter'"),
        (('amount = "float"', 'amount = "decimal"'), "unknown type 'decimal'"),
        (("amount >= 10", "price >= 10"), "has no field 'price'"),
        (('schema = "Order"', 'schema = "Ordr"'), "unknown schema 'Ordr'"),
        (
            ('type = "ndjson"\npath = "orders', 'type = "ndjson"\nbogus = 1\npath = "orders'),
            "unknown key 'bogus'",
        ),
        (('type = "ndjson"\npath = "out', 'type = "s3"\npath = "out'), "unknown sink type 's3'"),
        (("batch_size = 500", "batch_size = 0"), "batch_size must be positive"),
        (("amount >= 10", "amount >=="), "is not a literal"),
        (("amount >= 10", "amount"), "cannot parse condition"),
        (
            ('columns = { country = "str" }', 'columns = { country = "text" }'),
            "unknown type 'text'",
        ),
    ],
)
def test_bad_pipelines_are_rejected_before_running(tmp_path: Path, patch, message) -> None:
    _write_inputs(tmp_path)
    old, new = patch
    assert old in GOOD
    (tmp_path / "p.toml").write_text(GOOD.replace(old, new, 1))
    with pytest.raises(PipelineDefinitionError, match=message):
        load_pipeline(tmp_path / "p.toml")
    assert not (tmp_path / "out.ndjson").exists()


def test_parse_schema_types_and_optionals() -> None:
    s = parse_schema("S", {"a": "int", "b": "str?"})
    assert msgspec.json.decode(b'{"a": 1}', type=s).b is None
    with pytest.raises(SchemaError, match="after an optional"):
        parse_schema("S", {"a": "int?", "b": "str"})
    with pytest.raises(SchemaError, match="no fields"):
        parse_schema("S", {})


def _tenfold(*args: str, cwd: Path, capsys) -> tuple[int, str, str]:
    """``python -m tenfold.pipeline_engine ARGS`` run in process: (exit code, stdout, stderr)."""
    import os

    from tenfold.pipeline_engine.__main__ import main

    assert args[0] == "pipeline"
    old = Path.cwd()
    os.chdir(cwd)
    try:
        main(list(args[1:]))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_runs_and_checks_a_pipeline_file(tmp_path: Path, capsys) -> None:
    gen = """
[pipeline]
name = "synthetic"
[schemas.Click]
id = "int"
user = "int"
page = "str"
ts = "float"
[source]
type = "generator"
schema = "Click"
count = 5000
[[stages]]
type = "decode"
schema = "Click"
[[stages]]
type = "window"
key = "page"
time = "ts"
size_s = 1.0
aggregates = { clicks = "count()", users = "max(user)" }
[sink]
type = "ndjson"
path = "windows.ndjson"
"""
    (tmp_path / "gen.toml").write_text(gen)
    code, out, err = _tenfold(
        "pipeline", "check", "gen.toml", "--json", cwd=tmp_path, capsys=capsys
    )
    assert code == 0, err
    assert json.loads(out)["stages"] == ["generator", "decode", "window", "ndjson"]
    code, out, err = _tenfold(
        "pipeline", "run", "gen.toml", "--json", "--no-progress", cwd=tmp_path, capsys=capsys
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["events_read"] == 5000
    rows = [json.loads(x) for x in (tmp_path / "windows.ndjson").read_text().splitlines()]
    assert sum(r["clicks"] for r in rows) == 5000


def test_cli_reports_a_bad_file_in_one_line_with_exit_2(tmp_path: Path, capsys) -> None:
    from tenfold.core import cli as core_cli
    from tenfold.pipeline_engine.cli import pipeline_group

    # Through the core CLI's own error handling, in process; registering our group
    # up front keeps the core from importing every other system's plugin.
    core_cli.cli.add_command(pipeline_group)
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\ntype = "carrier-pigeon"\n[sink]\ntype = "null"\n')
    with pytest.raises(SystemExit) as exit_info:
        core_cli.main(["pipeline", "run", str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert err.startswith("tenfold: error: ")
    assert "unknown source type 'carrier-pigeon'" in err
    assert "Traceback" not in err
    code, _, err = _tenfold("pipeline", "check", "nope.toml", cwd=tmp_path, capsys=capsys)
    assert code == 2 and "cannot read pipeline file" in err
    assert err.startswith("tenfold: error: ") and err.count("\n") == 1


def test_cli_serves_prometheus_metrics_while_running(tmp_path: Path, capsys) -> None:
    import socket
    import threading
    import time
    import urllib.request

    (tmp_path / "live.toml").write_text(
        '[pipeline]\nname = "live"\nlinger_ms = 5\n'
        '[schemas.Tick]\nid = "int"\nts = "float"\n'
        '[source]\ntype = "generator"\nschema = "Tick"\nrate = 5000\n'
        '[[stages]]\ntype = "decode"\nschema = "Tick"\n'
        '[sink]\ntype = "null"\n'
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(
            out=_tenfold(
                "pipeline",
                "run",
                "live.toml",
                "--duration-s",
                "2.5",
                "--json",
                "--no-progress",
                "--metrics-port",
                str(port),
                cwd=tmp_path,
                capsys=capsys,
            )
        ),
        daemon=True,
    )
    runner.start()
    body = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "decode" not in body:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                assert resp.headers["Content-Type"].startswith("text/plain")
                body = resp.read().decode()
        except OSError:
            time.sleep(0.1)
    runner.join(30)
    assert 'tenfold_pipeline_stage_events_total{pipeline="live",stage="decode"}' in body
    assert "tenfold_pipeline_backpressure_episodes_total" in body
    code, out, err = result["out"]
    assert code == 0, err
    assert json.loads(out)["events_read"] > 0
