"""The benchmark scenarios are well formed, and the smallest ones run for ours and Vyper."""

from __future__ import annotations

from pathlib import Path

from tenfold.contract_compiler._generate import generate_contract
from tenfold.contract_compiler.bench import scenarios
from tenfold.core.bench import BenchContext, Outcome
from tenfold.core.testing import run_both_sides


def test_scenarios_are_well_formed() -> None:
    items = scenarios()
    names = [s.name for s in items]
    assert len(names) == len(set(names))
    assert sum(s.headline for s in items) == 1
    compile_rows = [
        s for s in items if s.table == "Compilation Performance" and not s.name.endswith("_pool")
    ]
    assert [s.name for s in compile_rows] == [
        "compile_100_loc",
        "compile_500_loc",
        "compile_2000_loc",
        "compile_10000_loc",
    ]
    assert all(s.peer is not None and s.peer.name.startswith("vyper") for s in compile_rows)
    # Like for like: the plain rows run ours in one process, as Vyper runs.
    assert all(s.ours.name == "tenfold (-O1, 1 process)" for s in compile_rows)
    pool_rows = [s for s in items if s.name.endswith("_loc_pool")]
    assert all("worker processes" in s.ours.name for s in pool_rows)
    # Ours against ours is never a speedup over a peer.
    for name in ("cache_hit_500_loc", "cache_miss_500_loc", "jit_calls", "interpreter_calls"):
        assert next(s for s in items if s.name == name).peer is None


def test_generated_sizes_are_close_to_the_target() -> None:
    for loc in (100, 500, 2000):
        pair = generate_contract(loc, seed=1)
        assert loc * 0.9 <= pair.ours_loc <= loc
        assert pair.vyper_loc > 0.7 * pair.ours_loc


def test_smallest_compile_row_runs_for_both_sides(tmp_path: Path) -> None:
    scenario = next(s for s in scenarios() if s.name == "compile_100_loc")
    ours, peer = run_both_sides(scenario, tmp_path)
    assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
    assert ours.metrics["guards_proved"] > 0
    assert int(ours.metrics["object_calls_checked"]) >= 3 * int(ours.metrics["functions"])
    assert ours.metrics["worker_processes"] == 1
    assert float(peer.metrics["bytecode_bytes"]) > 0


def test_the_object_check_catches_a_wrong_object(tmp_path: Path) -> None:
    import pytest

    from tenfold.contract_compiler import compile_source
    from tenfold.contract_compiler.bench import check_object
    from tenfold.core.errors import BenchError

    good = compile_source("contract A { fn f(x: u32) -> u32 { return x % 7; } }", "a.ct")
    assert check_object(good, 1) == 3
    wrong = compile_source("contract A { fn f(x: u32) -> u32 { return x % 5; } }", "a.ct")
    good.objects = wrong.objects  # the object file of other code
    with pytest.raises(BenchError, match="disagree"):
        check_object(good, 1)


def test_jit_row_checks_results(tmp_path: Path) -> None:
    scenario = next(s for s in scenarios() if s.name == "jit_calls")
    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    with ctx.stack:
        out = scenario.ours.prepare(ctx)()
    assert isinstance(out, Outcome) and out.metrics["result_matches"] == "yes"


def test_vertical_rows_compile_the_same_contracts_at_1_and_2_workers(tmp_path: Path) -> None:
    rows = {s.name: s for s in scenarios() if s.table == "Vertical Scaling"}
    assert sorted(rows) == ["compile_1_workers", "compile_2_workers"]
    assert rows["compile_1_workers"].seed is None  # the document has no 1-core column
    assert rows["compile_2_workers"].seed is not None
    ours, peer = run_both_sides(rows["compile_2_workers"], tmp_path)
    assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
    assert ours.ops == peer.ops == 2 and ours.metrics["workers"] == 2
