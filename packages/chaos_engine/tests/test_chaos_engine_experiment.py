from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.chaos_engine import ChaosEngine, FaultPoints, PerformanceConfig
from tenfold.chaos_engine._experiment import (
    FaultStep,
    experiment_from_dict,
    load_experiment,
    run_experiment,
    select_targets,
)
from tenfold.chaos_engine.errors import ExperimentError, ProbeFailed

DOC = Path(__file__).resolve().parents[3] / "docs" / "chaos_engine.md"


def doc_experiment() -> str:
    """The guide's experiment file, as its first command session writes it."""
    (text,) = re.findall(r"\$ cat > experiment\.toml <<'EOF'\n(.*?)\nEOF\n", DOC.read_text(), re.S)
    return str(text) + "\n"


def tenfold(*args: str, cwd: Path, core: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process: ``tenfold chaos`` through the core (``core``), else
    ``python -m tenfold.chaos_engine``, the same commands without the scan of every system."""
    import contextlib
    import io
    import os

    from tenfold.chaos_engine.__main__ import main as chaos_main
    from tenfold.core.cli import main as core_main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = chaos_main(list(args[1:])) if not core else 0
                if core:
                    core_main(list(args))
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_doc_example_validates_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "experiment.toml"
    path.write_text(doc_experiment())
    checked = tenfold("chaos", "validate", str(path), "--json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["fault_steps"] == 1
    ran = tenfold("chaos", "run", str(path), "--json", "--events", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["status"] == "completed" and report["faults_injected"] == 1
    assert report["rollbacks_run"] == 1
    events = [json.loads(line) for line in ran.stderr.splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("inject") == 1 and kinds.count("revert") == 1
    assert "probe" in kinds and all(e["value"] == 1.0 for e in events if e["kind"] == "probe")


BASE = 'title = "t"\n[[method]]\nid = "a"\nfault = "point"\nparams = { point = "p" }\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("title = \n", "malformed TOML"),
        (BASE + "colour = 1\n", "unknown key 'method.0.colour'"),
        ('title = "t"\n', "missing key 'method'"),
        (BASE.replace('point = "p"', 'point = "p", duration_s = -1'), "duration_s must be > 0"),
        (BASE.replace('point = "p"', 'point = "p", probability = nan'), "must be finite"),
        (BASE.replace('point = "p"', 'point = "p", probability = 2'), "probability must be within"),
        (BASE + 'mode = "percent"\nvalue = 150\n', "percent must be <= 100"),
        (BASE + '[[method]]\nid = "a"\npause_s = 1\n', "duplicate step id 'a'"),
        (
            BASE.replace('"point"\n', '"process_pause"\n').replace('{ point = "p" }', "{}"),
            "missing target parameter 'pid'",
        ),
        (
            BASE.replace('"point"\n', '"disk_error"\n').replace(
                '{ point = "p" }', '{ mount = "/m", source = "/s", path_glob = "a/../../etc" }'
            ),
            "path traversal",
        ),
        (BASE + "[safety]\nmax_faults = 0\n", "max_faults"),
        (BASE + 'duration_s = "soon"\n', "duration_s"),
    ],
)
def test_bad_experiments_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ExperimentError, match=re.escape(message)) as info:
        load_experiment(path)
    assert "\n" not in str(info.value)


def test_cli_prints_one_line_and_exits_two(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + "colour = 1\n")
    proc = tenfold("chaos", "validate", str(path), cwd=tmp_path, core=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tenfold: error: ")
    assert "unknown key 'method.0.colour'" in proc.stderr


# -- runs in process, against probes in a registered module --------------------------------

probes = types.ModuleType("chaos_test_probes")
sys.modules["chaos_test_probes"] = probes
state: dict[str, object] = {}


def _healthy() -> int:
    errors = state.get("errors", 0)
    assert isinstance(errors, int)
    return errors


async def _hang() -> int:
    await asyncio.sleep(10)
    return 0


def _boom() -> int:
    raise RuntimeError("probe exploded")


def _rollback() -> None:
    state["rolled_back"] = int(state.get("rolled_back", 0)) + 1  # type: ignore[call-overload]


def _break() -> None:
    state["errors"] = 5


def _noop(i: int = 0) -> int:
    return i


probes.healthy = _healthy  # type: ignore[attr-defined]
probes.hang = _hang  # type: ignore[attr-defined]
probes.boom = _boom  # type: ignore[attr-defined]
probes.rollback = _rollback  # type: ignore[attr-defined]
probes.breaks = _break  # type: ignore[attr-defined]
probes.noop = _noop  # type: ignore[attr-defined]


def py(func: str, **arguments: object) -> dict[str, object]:
    return {"type": "python", "module": "chaos_test_probes", "func": func, "arguments": arguments}


def experiment(probe_func: str = "healthy", pause_s: float = 0.5) -> dict[str, object]:
    return {
        "title": "violation",
        "steady_state": {
            "interval_s": 0.02,
            "probes": [
                {
                    "name": "errors",
                    "provider": py(probe_func),
                    "tolerance": {"max": 0},
                    "timeout_s": 0.2,
                }
            ],
        },
        "method": [
            {"id": "flaky", "fault": "point", "params": {"point": "svc", "probability": 0.5}},
            {"id": "break", "action": py("breaks")},
            {"id": "wait", "pause_s": pause_s},
        ],
        "rollbacks": [{"id": "rb", "action": py("rollback")}],
    }


async def _run(exp: dict[str, object], tmp: Path) -> tuple[object, FaultPoints]:
    points = FaultPoints(seed=1)
    perf = PerformanceConfig.model_validate({})
    async with await ChaosEngine.create(perf, journal_dir=tmp, points=points) as engine:
        report = await run_experiment(experiment_from_dict(exp), engine)
        assert points.active() == {}
    return report, points


def test_violation_aborts_reverts_and_rolls_back(tmp_path: Path) -> None:
    state.clear()
    report, _ = asyncio.run(_run(experiment(), tmp_path))
    assert report.status == "deviated"  # type: ignore[attr-defined]
    assert "returned 5" in report.reason  # type: ignore[attr-defined]
    assert report.violation_to_reverted_s is not None  # type: ignore[attr-defined]
    assert report.duration_s < 0.5  # type: ignore[attr-defined]  # the 0.5 s pause was cut short
    assert state["rolled_back"] == 1


@pytest.mark.parametrize(("func", "message"), [("hang", "timed out"), ("boom", "probe exploded")])
def test_probe_that_hangs_or_raises(tmp_path: Path, func: str, message: str) -> None:
    state.clear()
    with pytest.raises(ProbeFailed, match=message):
        asyncio.run(_run(experiment(func), tmp_path))
    assert "errors" not in state  # the method never ran: the hypothesis failed first
    assert state["rolled_back"] == 1  # rollbacks always run


def test_chaostoolkit_experiment_imports_and_runs(tmp_path: Path) -> None:
    state.clear()
    ctk = {
        "title": "ctk",
        "steady-state-hypothesis": {
            "title": "ok",
            "probes": [{"type": "probe", "name": "n", "tolerance": 0, "provider": py("noop")}],
        },
        "method": [
            {"type": "action", "name": f"s{i}", "provider": py("noop", i=i)} for i in range(50)
        ],
        "rollbacks": [{"type": "action", "name": "rb", "provider": py("rollback")}],
    }
    path = tmp_path / "ctk.json"
    path.write_text(json.dumps(ctk))
    exp = load_experiment(path)
    assert len(exp.method) == 50
    report, _ = asyncio.run(_run(exp.model_dump(), tmp_path))
    assert report.status == "completed" and len(report.steps) == 50  # type: ignore[attr-defined]
    assert state["rolled_back"] == 1
    bad = dict(
        ctk, method=[{"type": "action", "name": "h", "provider": {"type": "http", "url": "x"}}]
    )
    with pytest.raises(ExperimentError, match="provider type 'http' is not supported"):
        experiment_from_dict(bad)


@given(
    n=st.integers(1, 30),
    mode=st.sampled_from(["one", "all", "count", "percent"]),
    value=st.integers(0, 100),
    seed=st.integers(0, 1000),
)
@settings(max_examples=100, deadline=None)
def test_target_selection_sizes(n: int, mode: str, value: int, seed: int) -> None:
    import random

    step = FaultStep.model_validate(
        {
            "id": "s",
            "fault": "process_pause",
            "targets": [{"pid": 100 + i} for i in range(n)],
            "mode": mode,
            "value": value,
        }
    )
    chosen = select_targets(step, random.Random(seed))
    expected = {
        "one": 1,
        "all": n,
        "count": min(value, n),
        "percent": min(n, -(-n * value // 100)),
    }[mode]
    assert len(chosen) == expected
    assert len({c["pid"] for c in chosen}) == len(chosen)


def test_sigterm_during_run_reverts_and_exits_one(tmp_path: Path) -> None:
    path = tmp_path / "long.toml"
    path.write_text(BASE + '[[method]]\nid = "wait"\npause_s = 30\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenfold.chaos_engine", "run", str(path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = tmp_path / ".tenfold" / "chaos" / "long.journal"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and "open" not in (
        journal.read_text() if journal.exists() else ""
    ):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    assert "interrupted" in err


def test_violation_cuts_a_method_of_synchronous_steps(tmp_path: Path) -> None:
    state.clear()
    exp = experiment()
    steps = [{"id": f"n{i}", "action": py("noop", i=i)} for i in range(50_000)]
    exp["method"] = [exp["method"][1], *steps]  # type: ignore[index]
    report, _ = asyncio.run(_run(exp, tmp_path))
    assert report.status == "deviated"  # type: ignore[attr-defined]
    assert len(report.steps) < 50_001  # type: ignore[attr-defined]  # cut short mid-method


def _flap() -> int:
    calls = int(state.get("calls", 0)) + 1  # type: ignore[call-overload]
    state["calls"] = calls
    return 5 if calls % 2 == 0 else 0  # every other answer is out of tolerance


probes.flap = _flap  # type: ignore[attr-defined]


@pytest.mark.parametrize(("tolerated", "status"), [(0, "deviated"), (1, "completed")])
def test_flapping_probe_and_tolerated_failures(tmp_path: Path, tolerated: int, status: str) -> None:
    state.clear()
    exp: dict[str, object] = {
        "title": "flap",
        "steady_state": {
            "interval_s": 0.01,
            "tolerated_failures": tolerated,
            "probes": [{"name": "flap", "provider": py("flap"), "tolerance": {"max": 0}}],
        },
        "method": [{"id": "wait", "pause_s": 0.1}],
    }
    report, _ = asyncio.run(_run(exp, tmp_path))
    assert report.status == status  # type: ignore[attr-defined]


def test_module_entry_point_says_what_the_tenfold_command_says(tmp_path: Path) -> None:
    path = tmp_path / "quiet.toml"
    path.write_text('title = "quiet"\n[[method]]\nid = "wait"\npause_s = 0\n')

    def chaos_run(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tenfold.chaos_engine", "run", str(path), *extra]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)

    plain = chaos_run("--journal-dir", str(tmp_path / "j"))
    assert (plain.returncode, plain.stderr) == (0, "")
    assert plain.stdout == "quiet: completed (1 steps)\n"
    through_core = tenfold("chaos", "run", str(path), cwd=tmp_path, core=True)
    assert (through_core.returncode, through_core.stdout) == (0, plain.stdout)
    as_json = chaos_run("--json", "--seed=3")
    assert json.loads(as_json.stdout)["status"] == "completed"
    typo = chaos_run("--sede", "3")
    assert typo.returncode == 2 and "Did you mean '--seed'?" in typo.stderr
    assert "Traceback" not in typo.stderr


def test_a_rollback_that_cannot_run_fails_the_run_by_name(tmp_path: Path) -> None:
    path = tmp_path / "rb.toml"
    path.write_text(
        'title = "rb"\n[[method]]\nid = "wait"\npause_s = 0\n'
        '[[rollbacks]]\nid = "restore-db"\n'
        'action = { type = "process", path = "/no/such/restore-command" }\n'
    )
    result = tenfold("chaos", "run", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)  # one document; the failure goes to stderr
    assert report["status"] == "failed" and report["rollbacks_run"] == 0
    assert "rollback 'restore-db' failed" in report["reason"]
    assert "restore-db" in result.stderr
    plain = tenfold("chaos", "run", str(path), cwd=tmp_path)
    assert plain.returncode == 1 and "rollback 'restore-db' failed" in plain.stderr
    assert "Traceback" not in plain.stderr


@pytest.mark.parametrize("content", [b"", b"not a journal\n", b"\xff\xfe\x00garbage", b"[1, 2]\n"])
def test_recover_refuses_a_file_that_is_not_a_journal(tmp_path: Path, content: bytes) -> None:
    bogus = tmp_path / "x.journal"
    bogus.write_bytes(content)
    result = tenfold("chaos", "recover", str(bogus), cwd=tmp_path)
    assert result.returncode == 2
    assert "is not a chaos journal" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.journal"]  # no lock file left


def test_reading_commands_create_no_folders(tmp_path: Path) -> None:
    path = tmp_path / "quiet.toml"
    path.write_text('title = "quiet"\n[[method]]\nid = "wait"\npause_s = 0\n')
    run = tenfold("chaos", "run", str(path), "--journal-dir", "/no/such/x/y", cwd=tmp_path)
    assert run.returncode == 2 and "does not exist" in run.stderr
    assert not Path("/no/such").exists()
    recover = tenfold("chaos", "recover", "--journal-dir", "missing", cwd=tmp_path)
    assert recover.returncode == 2 and "no journal directory missing" in recover.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quiet.toml"]


def test_configured_performance_defaults_match_the_section_model() -> None:
    """The start-up fast path's defaults are the configuration model's, field for field."""
    from tenfold.chaos_engine._config import PerformanceConfig
    from tenfold.chaos_engine._engine import _DefaultPerformance

    fast = _DefaultPerformance().to_dict()
    assert fast == PerformanceConfig.model_validate({}).model_dump()


def test_an_action_only_run_loads_neither_pydantic_nor_the_fault_models(tmp_path: Path) -> None:
    """`chaos run` of probes and actions starts without the configuration models, the
    governor or the fault classes; with a variable set, the configuration is read."""
    import os
    import subprocess
    import sys

    (tmp_path / "steps_mod.py").write_text("def step(i=0):\n    return 1\n")
    exp = {
        "title": "actions",
        "steady_state": {
            "probes": [
                {
                    "name": "p",
                    "provider": {"module": "steps_mod", "func": "step"},
                    "tolerance": {"equals": 1},
                }
            ]
        },
        "method": [
            {
                "id": f"s{i}",
                "action": {"module": "steps_mod", "func": "step", "arguments": {"i": i}},
            }
            for i in range(3)
        ],
    }
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(exp))
    code = (
        "import sys; from pathlib import Path; from tenfold.chaos_engine._runner import run_file;"
        f"_, r = run_file(Path({str(path)!r}), Path({str(tmp_path / 'j')!r}));"
        "print(r['status'], r['steps'], 'pydantic' in sys.modules,"
        " 'tenfold.chaos_engine._faults' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENFOLD_")}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["completed", "3", "False", "False"], out.stderr
    env["TENFOLD_CHAOS_ENGINE__PERFORMANCE__FAULT_QUEUE_SIZE"] = "0"
    bad = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "fault_queue_size" in bad.stderr


# -- python -m tenfold.chaos_engine: a plain `run --json` skips click and ends as click would --

_STEP = {
    "type": "action",
    "name": "s",
    "provider": {
        "type": "python",
        "module": "os.path",
        "func": "exists",
        "arguments": {"path": "/"},
    },
}
_FILES = {
    "ok.json": json.dumps({"title": "ok", "method": [_STEP, {**_STEP, "name": "t"}]}),
    "noprov.json": json.dumps({"title": "x", "method": [{"type": "action", "name": "a"}]}),
    "notjson.json": "not json",
    "held.toml": 'title = "held"\n[[method]]\nid = "w"\npause_s = 0\n',
    "broken.toml": 'title = "v"\n[[steady_state.probes]]\nname = "p"\n'
    'provider = { type = "python", module = "os.path", func = "exists", '
    'arguments = { path = "/no/such/path" } }\ntolerance = { equals = true }\n'
    '[[method]]\nid = "w"\npause_s = 0\n',
    "rb.toml": 'title = "rb"\n[[method]]\nid = "wait"\npause_s = 0\n[[rollbacks]]\n'
    'id = "restore-db"\naction = { type = "process", path = "/no/such/restore-command" }\n',
    "afile": "",
}
_ARGVS = [
    "run ok.json --json --journal-dir j",
    "run ok.json --json",
    "run --json ok.json --seed 3 --journal-dir j --seed -4",
    "run held.toml --json --journal-dir j",
    "run noprov.json --json --journal-dir j",
    "run notjson.json --json --journal-dir j",
    "run missing.json --json --journal-dir j",
    "run broken.toml --json --journal-dir j",
    "run rb.toml --json --journal-dir j",
    "run adir --json --journal-dir j",
    "run ok.json --json --journal-dir afile",
    "run ok.json --json --journal-dir nope/j",
    "run ok.json --json --seed x --journal-dir j",
    "run ok.json --json --seed 1e3 --journal-dir j",
    "run ok.json --json --journal-dir",
    "run ok.json ok.json --json",
    "run ok.json --json --seed=4 --journal-dir=j",
    "run ok.json --json --sede 3",
    "run ok.json --json -- --journal-dir j",
    "run ok.json",
    "validate ok.json --json",
]
_TIMES = re.compile(r'"(duration_s|violation_to_reverted_s)": [-0-9.e]+')


def _call(entry: str, args: list[str], cwd: Path) -> tuple[int, str, str]:
    """``python -m tenfold.chaos_engine ARGS`` (``module``) or ``tenfold chaos ARGS``, in process."""
    done = tenfold("chaos", *args, cwd=cwd, core=entry != "module")
    return done.returncode, _TIMES.sub(r'"\1": T', done.stdout), done.stderr


@pytest.fixture
def entry_dir(tmp_path: Path) -> Path:
    for name, text in _FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "adir").mkdir()
    return tmp_path


@pytest.mark.parametrize("argv", _ARGVS)
def test_the_module_entry_says_what_the_click_command_says(entry_dir: Path, argv: str) -> None:
    args = argv.split()
    click_side = _call("click", args, entry_dir)
    assert _call("module", args, entry_dir) == click_side
    assert "Traceback" not in click_side[2]


def test_the_plain_runs_cover_every_ending(entry_dir: Path) -> None:
    """The differential above covers a completed run, each error kind and a failed run."""
    codes = {a: _call("module", a.split(), entry_dir)[0] for a in _ARGVS}
    assert codes["run ok.json --json --journal-dir j"] == 0
    assert codes["run broken.toml --json --journal-dir j"] == 1
    assert codes["run noprov.json --json --journal-dir j"] == 2
    assert codes["run adir --json --journal-dir j"] == 2


def test_a_plain_json_run_does_not_import_click(entry_dir: Path) -> None:
    """In a process of its own, without click; what loading made is frozen, and the cycle
    collector is on again for the run (a probe sees it on)."""
    (entry_dir / "gc_probe.py").write_text("import gc\n\ndef on():\n    return gc.isenabled()\n")
    (entry_dir / "gc.json").write_text(
        json.dumps(
            {
                "title": "gc",
                "steady_state": {
                    "probes": [
                        {
                            "name": "collector",
                            "provider": {"module": "gc_probe", "func": "on"},
                            "tolerance": {"equals": True},
                        }
                    ]
                },
                "method": [{"id": "a", "action": {"module": "gc_probe", "func": "on"}}],
            }
        )
    )
    script = (
        "import gc, runpy, sys\n"
        "sys.argv = ['x', 'run', sys.argv[1], '--json', '--journal-dir', 'j']\n"
        "try:\n"
        "    runpy.run_module('tenfold.chaos_engine', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('click' in sys.modules, 'tenfold.core.cli' in sys.modules)\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 1000)\n"
    )
    for name in ("ok.json", "gc.json"):
        proc = subprocess.run(
            [sys.executable, "-c", script, name],
            cwd=entry_dir,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(entry_dir)},
        )
        report, imported, collector = proc.stdout.splitlines()
        assert json.loads(report)["status"] == "completed"
        assert imported == "False False"
        assert collector == "True True"
