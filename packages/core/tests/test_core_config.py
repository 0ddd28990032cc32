from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from tenfold.core.config import Section, load_section
from tenfold.core.errors import ConfigError
from tenfold.core.governor import Governor


class Perf(Section):
    max_concurrent_faults: int = Field(5000, gt=0)
    fault_queue_size: int = Field(1000, gt=0)


class Chaos(Section):
    performance: Perf = Perf()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tenfold.toml"
    path.write_text(text)
    return path


def test_defaults_without_file(tmp_path: Path) -> None:
    cfg = load_section("chaos_engine", Chaos, path=write(tmp_path, ""))
    assert cfg.performance.max_concurrent_faults == 5000


def test_values_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[chaos_engine.performance]\nmax_concurrent_faults = 1000\n")
    assert load_section("chaos_engine", Chaos, path=path).performance.max_concurrent_faults == 1000
    monkeypatch.setenv("TENFOLD_CHAOS_ENGINE__PERFORMANCE__FAULT_QUEUE_SIZE", "500")
    cfg = load_section("chaos_engine", Chaos, path=path)
    assert (cfg.performance.max_concurrent_faults, cfg.performance.fault_queue_size) == (1000, 500)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[chaos_engine.performance]\nmax_concurent_faults = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'performance.max_concurent_faults'"):
        load_section("chaos_engine", Chaos, path=path)


def test_other_sections_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "[compiler.performance]\nnonsense = 1\n")
    assert load_section("chaos_engine", Chaos, path=path).performance.fault_queue_size == 1000


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[chaos_engine.performance]\nmax_concurrent_faults = 'many'\n", "max_concurrent_faults"),
        ("[chaos_engine.performance]\nmax_concurrent_faults = 0\n", "greater than 0"),
        ("[chaos_engine.performance]\nmax_concurrent_faults = -5\n", "greater than 0"),
        ("[chaos_engine.performance\nmax_concurrent_faults = 1\n", "malformed TOML"),
        ("chaos_engine = 3\n", "must be a table"),
    ],
)
def test_bad_files_give_one_line(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load_section("chaos_engine", Chaos, path=write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[x]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_section("chaos_engine", Chaos, path=path)


def test_governor_limits_must_be_positive(tmp_path: Path) -> None:
    path = write(tmp_path, "[core.governor]\nmemory_limit_bytes = 0\n")
    with pytest.raises(ConfigError, match="memory_limit_bytes must be positive"):
        Governor.from_config(path)


def test_repo_default_config_is_valid() -> None:
    repo = Path(__file__).resolve().parents[3]
    gov = Governor.from_config(repo / "tenfold.toml", start_sampler=False)
    assert gov.config.memory_limit_bytes > 0


def test_cli_missing_config_exits_2(cli, tmp_path: Path) -> None:
    result = cli("--config", str(tmp_path / "nope.toml"), "config")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"tenfold: error: config file not found: {tmp_path / 'nope.toml'}"
    )


def test_cli_malformed_config_exits_2_without_traceback(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "[core\n")
    result = cli("--config", str(path), "config")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_section_no_system_owns_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[contract_compiler.performance]\ncache_size_mb = 5\n")
    with pytest.raises(ConfigError, match=r"unknown section \[contract_compiler\].*'compiler'"):
        load_section("chaos_engine", Chaos, path=path)


def test_an_environment_override_for_no_system_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENFOLD_CHAOS_ENGIN__PERFORMANCE__FAULT_QUEUE_SIZE", "5")
    with pytest.raises(ConfigError, match="TENFOLD_CHAOS_ENGIN__.*'chaos_engine'"):
        load_section("chaos_engine", Chaos, path=write(tmp_path, ""))


def test_config_shows_effective_values_and_their_sources(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "[compiler.performance]\noptimization_level = 3\n")
    env = {"TENFOLD_CONFIG": str(path), "TENFOLD_COMPILER__PERFORMANCE__CACHE_SIZE_MB": "7"}
    result = cli("config", "compiler", "--json", env=env)
    assert result.returncode == 0, result.stderr
    import json

    rows = {r["key"]: r for r in json.loads(result.stdout)["sections"]["compiler"]}
    assert rows["performance.optimization_level"] == {
        "key": "performance.optimization_level",
        "value": 3,
        "source": str(path),
    }
    assert rows["performance.cache_size_mb"]["value"] == 7
    assert (
        rows["performance.cache_size_mb"]["source"]
        == "TENFOLD_COMPILER__PERFORMANCE__CACHE_SIZE_MB"
    )
    assert rows["performance.smt_timeout_ms"]["source"] == "default"


@pytest.mark.parametrize(
    ("args", "text", "match"),
    [
        (["config", "nosuch"], None, "unknown section 'nosuch'"),
        (["config"], "[chaos_engin]\n", "did you mean 'chaos_engine'"),
        (["config"], "\xff\xfe garbage", "not UTF-8"),
        (["config"], "[core\n", "malformed TOML"),
    ],
)
def test_config_errors_are_one_line_exit_2(cli, tmp_path: Path, args, text, match) -> None:
    env = {}
    if text is not None:
        path = tmp_path / "t.toml"
        path.write_bytes(text.encode("latin-1"))
        env["TENFOLD_CONFIG"] = str(path)
    result = cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert match in result.stderr and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
