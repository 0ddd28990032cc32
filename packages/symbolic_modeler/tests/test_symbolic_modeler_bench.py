"""The benchmark scenarios run in smoke mode and check themselves against the peers."""

from pathlib import Path

import pytest

from tenfold.core.bench import BenchContext, Outcome
from tenfold.symbolic_modeler.bench import scenarios


@pytest.mark.parametrize("name", ["reduce_5_ops", "reduce_20_ops", "match_10_patterns_ac"])
def test_smoke_scenarios_run_and_agree_with_the_peer(name: str, tmp_path: Path) -> None:
    (scenario,) = [s for s in scenarios() if s.name == name]
    assert scenario.peer is not None
    ctx = BenchContext(mode="smoke", workdir=tmp_path)
    with ctx.stack:
        ours = scenario.ours.prepare(ctx)()
        peer = scenario.peer.prepare(ctx)()
    assert isinstance(ours, Outcome)
    assert ours.ops >= 1 and (peer if isinstance(peer, int) else 1) >= 1
    if name.startswith("reduce"):
        assert ours.metrics["equivalence_pass_rate"] == 1.0
    else:
        assert ours.metrics["equal_to_peer"] == 1


def test_exactly_one_headline() -> None:
    assert sum(s.headline for s in scenarios()) == 1
