"""The benchmark declarations: one headline, the document's rows, and a smoke run of the pure ones."""

import pathlib

import pytest

from tenfold.attestation_authority._plugin import plugin
from tenfold.core.bench import Outcome
from tenfold.core.testing import run_both_sides


def test_scenarios_cover_the_documents_rows() -> None:
    scenarios = plugin.scenarios()
    assert [s.name for s in scenarios if s.headline] == ["verify_quote"]
    rows = {s.row for s in scenarios}
    for row in (
        "Generate Nonce",
        "TPM Quote",
        "Verify Quote",
        "Sign Certificate",
        "Verify Certificate",
        "Ed25519 Sign",
        "BLAKE3 Hash (1KB)",
        "AES-GCM Decrypt (1KB)",
    ):
        assert row in rows
    assert len({s.name for s in scenarios}) == len(scenarios)


@pytest.mark.service
def test_verify_quote_smoke_accepts_every_recorded_quote_and_rejects_the_tampered_one(
    tmp_path: pathlib.Path,
) -> None:
    scenario = next(s for s in plugin.scenarios() if s.name == "verify_quote")
    ours, peer = run_both_sides(scenario, tmp_path)
    assert isinstance(ours, Outcome) and isinstance(peer, Outcome)
    # Ten recorded quotes accepted and one tampered quote rejected, on both sides.
    assert ours.ops == peer.ops == 11
    assert ours.metrics["accepted"] == peer.metrics["accepted"] == 10
    assert ours.metrics["tampered_rejected"] == peer.metrics["tampered_rejected"] == 1


def test_kernel_runs() -> None:
    assert plugin.kernel is not None
    plugin.kernel()
