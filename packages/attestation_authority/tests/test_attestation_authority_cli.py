"""``tenfold attest``: verify-quote exit codes, and the daemons serving a real swtpm.

The commands run through ``python -m tenfold.attestation_authority`` (the same group and
the same error mapping as ``tenfold attest``, without loading every other system).
"""

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
from tenfold.attestation_authority.__main__ import main
from tenfold.attestation_authority._plugin import plugin

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


def test_attest_is_a_lazy_tenfold_command() -> None:
    (ref,) = plugin.commands
    assert (ref.name, ref.target) == ("attest", "tenfold.attestation_authority.cli:attest")


def test_plugin_registers_the_attest_group() -> None:
    (group,) = plugin.load_commands()
    assert group.name == "attest"
    assert {"agent", "registrar", "verifier", "verify-quote", "enroll"} <= set(group.commands)


def test_verify_quote_accepts(recorded, capsys) -> None:
    folder, nonce = recorded
    code, out, _ = run(
        ["verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", nonce.hex(), "--policy", str(folder / "policy"), "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and len(doc["pcrs"]["11"]) == 8


def test_verify_quote_refusal_exits_1_naming_the_reason(recorded, capsys) -> None:
    folder, _ = recorded
    code, _, err = run(
        ["verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", "00" * 20],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert err.strip().startswith("tenfold: error: quote refused (nonce-mismatch)")
    assert "Traceback" not in err


def test_verify_quote_bad_input_exits_2(recorded, capsys) -> None:
    folder, _ = recorded
    code, _, err = run(
        ["verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", "xyz"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "not hex" in err
    (folder / "policy").write_text("sha256:0 = nothex\n")
    code, _, err = run(
        ["verify-quote", str(folder / "q"), "--ak", str(folder / "ak.pub"),
         "--nonce", "00", "--policy", str(folder / "policy")],
        capsys,
    )  # fmt: skip
    assert code == 2 and "policy:1:" in err and "Traceback" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agent_command_serves_quotes_over_mtls(swtpm, tmp_path, capsys) -> None:
    code, _, _ = run(["tls-bundle", str(tmp_path / "tls")], capsys)
    assert code == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenfold.attestation_authority", "agent", "--tcti", swtpm.tcti,
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


def start(argv, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "tenfold.attestation_authority", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_up(url, ctx, proc):
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, verify=ctx, timeout=2)
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.1)


@pytest.mark.slow
def test_cli_from_agent_to_ear(swtpm, tmp_path, capsys) -> None:
    import base64
    import hashlib
    import ssl

    from tpm2_pytss import ESYS_TR

    tls = tmp_path / "tls"
    assert run(["tls-bundle", str(tls)], capsys)[0] == 0
    ctx = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    ctx.load_cert_chain(str(tls / "admin.pem"), str(tls / "admin.key"))
    (tmp_path / "policy").write_text(
        "sha256:0-7 = " + "0" * 64 + "\nsha256:16 = " + "0" * 64 + "\n"
    )
    with Agent(swtpm.tcti) as reset:
        reset.esapi.pcr_reset(ESYS_TR.PCR16)
    ports = [free_port() for _ in range(3)]
    agent_url, registrar_url, verifier_url = (f"https://127.0.0.1:{p}" for p in ports)
    procs = []
    try:
        procs.append(start(["agent", "--tcti", swtpm.tcti, "--listen", f"127.0.0.1:{ports[0]}",
                            "--tls-dir", str(tls)]))  # fmt: skip
        keys = wait_up(f"{agent_url}/keys", ctx, procs[0]).json()
        code, out, err = run(["ek-hash", "--agent", agent_url, "--tls-dir", str(tls)], capsys)
        ek_hash = out.strip()
        assert code == 0, err
        assert ek_hash == hashlib.sha256(base64.b64decode(keys["ek_public"])).hexdigest()
        procs.append(start(["registrar", "--listen", f"127.0.0.1:{ports[1]}", "--allow-ek",
                            ek_hash, "--tls-dir", str(tls)]))  # fmt: skip
        wait_up(f"{registrar_url}/agents/none", ctx, procs[1])
        procs.append(start(["verifier", "--listen", f"127.0.0.1:{ports[2]}", "--registrar",
                            registrar_url, "--policy", str(tmp_path / "policy"), "--tls-dir",
                            str(tls)], env={"TENFOLD_ATTESTATION_AUTHORITY__POLL_PERIOD_S": "0.5"}))  # fmt: skip
        wait_up(f"{verifier_url}/agents/none", ctx, procs[2])
        code, out, err = run(
            ["enroll", "--agent", agent_url, "--registrar", registrar_url, "--id",
             "node-1", "--verifier", verifier_url, "--tls-dir", str(tls), "--json"],
            capsys,
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["ek_hash"] == ek_hash
        deadline = time.monotonic() + 30
        while (status := httpx.get(f"{verifier_url}/agents/node-1", verify=ctx)).status_code != 200:
            assert time.monotonic() < deadline, "no verdict"
            time.sleep(0.2)
        doc = status.json()
        assert doc["ok"] is True, doc
        assert doc["ear"].count(".") == 2
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=20) == 0
