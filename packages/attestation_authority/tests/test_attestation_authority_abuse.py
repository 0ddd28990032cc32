"""The core abuse suite against the verifier's mutual-TLS API (no TPM needed for these routes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from tenfold.attestation_authority._http import Poller, make_tls_bundle, verifier_app
from tenfold.attestation_authority._registrar import Registrar
from tenfold.attestation_authority._verifier import Verifier
from tenfold.core.server import Server
from tenfold.core.server_abuse import ATTACKS, AbuseTarget, abuse_options, run_attack


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AbuseTarget]:
    tls = make_tls_bundle(tmp_path_factory.mktemp("attest-abuse"), ["verifier", "operator"])
    verifier = Verifier(Registrar())
    poller = Poller(verifier, period_s=3600)
    server = Server(verifier_app(verifier, poller), abuse_options(tls=tls["verifier"]))
    with server:
        yield AbuseTarget(
            server=server,
            normal=("POST", "/nonce/agent-1", None),
            body_path="/agents/agent-1",
            stable=False,  # every nonce is fresh
            client_tls=tls["operator"],
        )
    poller.close()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_verifier_api_survives_abuse(attack: str, target: AbuseTarget) -> None:
    run_attack(attack, target)


def test_verifier_api_refuses_plain_http_beyond_loopback(target: AbuseTarget) -> None:
    from tenfold.core.errors import ServerError

    opts = replace(target.server.options, host="0.0.0.0", tls=None)
    with pytest.raises(ServerError, match="without credentials"):
        Server(target.server.app, opts)
