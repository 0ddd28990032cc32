"""The ban policy as a contract: compiled, its guarantees proved, run natively per decision.

The contract below is the policy's text. The contract compiler proves its
``ensures`` and ``invariant`` clauses with z3 before generating native code (a
clause that may fail is a compile error, and :class:`ContractPolicy` refuses to
start unless every obligation is proved), so these hold for every decision:

* an allowlisted address is never banned (``allowed ==> result == 0``);
* a ban lasts between 60 s and one day, whatever a rule or the model asked;
* at most 16 range escalations are made in one engine run (the invariant).

For each decision the platform calls ``ban_duration`` (and ``escalate`` for an
escalation) through the compiled code; a refused decision is recorded as a
``platform``/``policy.refused`` event instead.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tenfold.platform.errors import PlatformError

if TYPE_CHECKING:
    from tenfold.autoblocker_ledger import Decision

__all__ = ["BAN_POLICY", "ContractPolicy", "chained"]

MIN_BAN_S, MAX_BAN_S, MAX_ESCALATIONS = 60, 86_400, 16
BAN_POLICY = f"""
contract BanPolicy {{
  state escalations: u32 = 0;
  invariant escalations <= {MAX_ESCALATIONS};

  fn ban_duration(requested: u64, allowed: bool) -> u64
    requires requested <= 31536000
    ensures allowed ==> result == 0
    ensures !allowed ==> result >= {MIN_BAN_S} && result <= {MAX_BAN_S}
  {{
    if allowed {{ return 0; }}
    if requested < {MIN_BAN_S} {{ return {MIN_BAN_S}; }}
    if requested > {MAX_BAN_S} {{ return {MAX_BAN_S}; }}
    return requested;
  }}

  fn escalate() -> bool
    ensures escalations <= {MAX_ESCALATIONS}
  {{
    if escalations >= {MAX_ESCALATIONS} {{ return false; }}
    escalations = escalations + 1;
    return true;
  }}
}}
"""


class ContractPolicy:
    """``policy(decisions)`` -> (decisions to record, refusal events), through the contract."""

    def __init__(self, allowlist: Iterable[str] = ()) -> None:
        from tenfold.contract_compiler import CompileOptions, compile_source

        try:
            self.allow = [ipaddress.ip_network(a, strict=False) for a in allowlist]
        except ValueError as exc:
            raise PlatformError(f"allowlist: {exc}") from None
        compiled = compile_source(BAN_POLICY, "ban_policy.ct", CompileOptions(opt_level=2))
        open_ = [v for v in compiled.verdicts if v.status != "proved"]
        if open_:
            raise PlatformError(f"the ban policy's {open_[0].kind} is not proved: {open_[0]}")
        self.proved = [f"{v.kind}: {v.status}" for v in compiled.verdicts]
        self.contract = compiled.jit()
        self.refused = 0

    def _allowed(self, value: str) -> bool:
        net = ipaddress.ip_network(value, strict=False)
        return any(net.overlaps(a) for a in self.allow if a.version == net.version)

    def __call__(self, decisions: list[Decision]) -> tuple[list[Decision], list[Any]]:
        from tenfold.platform._policy import refusal_event

        kept: list[Decision] = []
        refusals: list[Any] = []
        for d in decisions:
            if d.action != "ban" or d.scope == "subject":
                kept.append(d)
                continue
            allowed = self._allowed(d.value)
            if d.rule == "escalation" and not allowed and not self.contract.call("escalate", []):
                self.refused += 1
                refusals.append(refusal_event(d, f"escalation cap ({MAX_ESCALATIONS}) reached"))
                continue
            requested = min(max(int(d.duration_s), 0), 31_536_000)
            duration = self.contract.call("ban_duration", [requested, allowed]) or 0
            if duration == 0:
                self.refused += 1
                refusals.append(refusal_event(d, "allowlisted: never banned"))
                continue
            kept.append(
                d
                if duration == d.duration_s
                else dataclasses.replace(d, duration_s=float(duration))
            )
        return kept, refusals


def chained(*policies: Any) -> Any:
    """One policy that runs ``policies`` in order, each on what the previous one kept."""

    def run(decisions: list[Decision]) -> tuple[list[Decision], list[Any]]:
        refusals: list[Any] = []
        for policy in policies:
            decisions, more = policy(decisions)
            refusals += more
        return decisions, refusals

    return run
