"""The benchmark scenarios are well formed, and the smallest ones run for ours and Vyper."""

from __future__ import annotations

from pathlib import Path

from tenfold.contract_compiler._generate import generate_contract
from tenfold.contract_compiler.bench import scenarios
from tenfold.core.bench import BenchContext, Outcome


def test_scenarios_are_well_formed() -> None:
    items = scenarios()
    names = [s.name for s in items]
    assert len(names) == len(set(names))
    assert sum(s.headline for s in items) == 1
    compile_rows = [s for s in items if s.table == "Compilation Performance"]
    assert [s.name for s in compile_rows] == [
        "compile_100_loc",
        "compile_500_loc",
        "compile_2000_loc",
        "compile_10000_loc",
    ]
    assert all(s.peer is not None and s.peer.name.startswith("vyper") for s in compile_rows)


def test_generated_sizes_are_close_to_the_target() -> None:
    for loc in (100, 500, 2000):
        pair = generate_contract(loc, seed=1)
        assert loc * 0.9 <= pair.ours_loc <= loc
        assert pair.vyper_loc > 0.7 * pair.ours_loc


def test_smallest_compile_row_runs_for_both_sides(tmp_path: Path) -> None:
    scenario = next(s for s in scenarios() if s.name == "compile_100_loc")
    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    with ctx.stack:
        ours = scenario.ours.prepare(ctx)()
        assert scenario.peer is not None
        peer = scenario.peer.prepare(ctx)()
    assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
    assert ours.metrics["guards_proved"] > 0
    assert float(peer.metrics["bytecode_bytes"]) > 0


def test_jit_row_checks_results(tmp_path: Path) -> None:
    scenario = next(s for s in scenarios() if s.name == "jit_vs_interpreter")
    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    with ctx.stack:
        out = scenario.ours.prepare(ctx)()
    assert isinstance(out, Outcome) and out.metrics["result_matches"] == "yes"
