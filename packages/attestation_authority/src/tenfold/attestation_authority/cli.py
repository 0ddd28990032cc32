"""``tenfold attest``: agent, registrar, verifier and verify-quote commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tenfold.core.cli import emit, json_option


@click.group("attest")
def attest() -> None:
    """TPM remote attestation: agents, registrar, verifier, signed results."""


@attest.command("verify-quote")
@click.argument("quote_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--ak",
    "ak_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The AK's TPM2B_PUBLIC (as the agent reported it).",
)
@click.option("--nonce", "nonce_hex", required=True, help="The expected nonce, hex.")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Reference-value policy file.",
)
@json_option
def verify_quote_cmd(
    quote_dir: Path, ak_path: Path, nonce_hex: str, policy_path: Path | None, as_json: bool
) -> None:
    """Verify a recorded quote (quote.msg, quote.sig, quote.pcrs [, eventlog.bin]).

    Exit 0 when accepted, 1 when refused (the reason is printed), 2 on bad input.
    """
    from tenfold.attestation_authority._evidence import Evidence
    from tenfold.attestation_authority._policy import Policy, parse_policy
    from tenfold.attestation_authority._structs import parse_public
    from tenfold.attestation_authority._verifier import Verifier
    from tenfold.attestation_authority.errors import AttestationAuthorityError

    try:
        nonce = bytes.fromhex(nonce_hex)
    except ValueError:
        raise AttestationAuthorityError(f"--nonce {nonce_hex!r} is not hex") from None
    ak = parse_public(ak_path.read_bytes())
    policy = parse_policy(policy_path.read_text()) if policy_path else Policy({})

    class _One:
        def ak_for(self, agent_id: str) -> object:
            return ak

    verifier = Verifier(_One(), policy)  # type: ignore[arg-type]
    verdict = verifier.verify_quote("cli", Evidence.read_files(quote_dir), expected_nonce=nonce)
    doc = {
        "ok": verdict.ok,
        "reason": verdict.reason.value if verdict.reason else None,
        "detail": verdict.detail,
        "reset_count": verdict.reset_count,
        "clock": verdict.clock,
        "pcrs": {str(b): {str(i): v.hex() for i, v in p.items()} for b, p in verdict.pcrs.items()},
    }
    emit(
        doc,
        as_json,
        lambda: (
            "accepted"
            if verdict.ok
            else f"refused: {verdict.reason.value if verdict.reason else ''}: {verdict.detail}"
        ),
    )
    verdict.raise_for_refusal()
    _ = json
