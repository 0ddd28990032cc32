"""``tenfold attest``: verify-quote exit codes, and the agent command serving a real swtpm."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tenfold.attestation_authority import Agent, parse_policy
from tenfold.core.cli import main

pytestmark = pytest.mark.service


def run(argv, capsys):
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def recorded(swtpm, tmp_path):
    with Agent(swtpm.tcti) as agent:
        nonce = os.urandom(20)
        selection = parse_policy("sha256:0-7 = *").selection
        agent.quote(nonce, selection).write_files(tmp_path / "q")
        (tmp_path / "ak.pub").write_bytes(agent.ak_public)
    (tmp_path / "policy").write_text("sha256:0-7 = " + "0" * 64 + "\n")
    return tmp_path, nonce


def test_verify_quote_accepts(recorded, capsys) -> None:
    folder, nonce = recorded
    code, out, _ = run(
        ["attest", "verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", nonce.hex(), "--policy", str(folder / "policy"), "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and len(doc["pcrs"]["11"]) == 8


def test_verify_quote_refusal_exits_1_naming_the_reason(recorded, capsys) -> None:
    folder, _ = recorded
    code, _, err = run(
        ["attest", "verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", "00" * 20],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert err.strip().startswith("tenfold: error: quote refused (nonce-mismatch)")
    assert "Traceback" not in err


def test_verify_quote_bad_input_exits_2(recorded, capsys) -> None:
    folder, _ = recorded
    code, _, err = run(
        ["attest", "verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", "xyz"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "not hex" in err
    (folder / "policy").write_text("sha256:0 = nothex\n")
    code, _, err = run(
        ["attest", "verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", "00", "--policy", str(folder / "policy")],
        capsys,
    )  # fmt: skip
    assert code == 2 and "policy:1:" in err and "Traceback" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agent_command_serves_quotes_over_mtls(swtpm, tmp_path, capsys) -> None:
    code, _, _ = run(["attest", "tls-bundle", str(tmp_path / "tls")], capsys)
    assert code == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenfold.core", "attest", "agent", "--tcti", swtpm.tcti,
         "--listen", f"127.0.0.1:{port}", "--tls-dir", str(tmp_path / "tls")],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        import ssl

        ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        ctx.load_cert_chain(
            str(tmp_path / "tls" / "admin.pem"), str(tmp_path / "tls" / "admin.key")
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                keys = httpx.get(f"https://127.0.0.1:{port}/keys", verify=ctx, timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "agent did not start"
                time.sleep(0.1)
        assert keys.status_code == 200 and set(keys.json()) == {"ek_public", "ak_public"}
        quote = httpx.post(
            f"https://127.0.0.1:{port}/quote",
            json={"nonce": "11" * 20, "selection": "sha256:0,7"},
            verify=ctx,
            timeout=10,
        )
        assert quote.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
