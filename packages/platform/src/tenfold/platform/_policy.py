"""Policy: the semantic lattice reasons over the asset inventory (RDF) and the bans made.

The inventory (:class:`tenfold.platform._transport.Asset` rows) becomes RDF
triples (``tf:address``, ``tf:criticality``, ``tf:owner``, ``tf:network``), and
each ban recorded adds ``<host> tf:bannedIn <its /24>``. Datalog rules over them:

* ``protected(A)``: the address of an asset marked ``critical``; a ban of it is
  refused, and so is an escalation to a network holding one;
* ``escalate(N)``: a /24 in which ``escalate_after`` (3) hosts are banned; the
  policy then bans the whole range.

A refusal is recorded too, as a ``platform``/``policy.refused`` ledger event, so
the record shows what was not done and why. The policy's decisions carry ids
derived from the decision that caused them, so a replay derives the same ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenfold.autoblocker_ledger import Decision
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent
    from tenfold.platform._transport import Asset

__all__ = ["RULES", "LatticePolicy", "inventory_triples", "refusal_event"]

TF = "urn:tenfold:"
RULES = f"""
.prefix tf <{TF}>
protected(A) :- triple(X, tf:address, A), triple(X, tf:criticality, "critical").
banned_hosts(N, count(H)) :- triple(H, tf:bannedIn, N).
escalate(N) :- banned_hosts(N, C), C >= {{after}}.
"""


def _lit(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def inventory_triples(assets: Iterable[Asset]) -> str:
    """The inventory as N-Triples."""
    out = []
    for a in assets:
        s = f"<{TF}asset:{a.address}>"
        out.append(f"{s} <{TF}address> {_lit(a.address)} .")
        out.append(f"{s} <{TF}host> {_lit(a.host)} .")
        out.append(f"{s} <{TF}criticality> {_lit(a.criticality)} .")
        if a.owner:
            out.append(f"{s} <{TF}owner> {_lit(a.owner)} .")
        if a.network:
            out.append(f"{s} <{TF}network> {_lit(a.network)} .")
    return "\n".join(out) + "\n"


def _unquote(term: str) -> str:
    return term[1:-1] if term.startswith('"') else term.removeprefix(f"<{TF}net:").rstrip(">")


class LatticePolicy:
    """``policy(decisions)`` -> (decisions to record, refusal events); see the module doc."""

    def __init__(self, assets: Iterable[Asset], *, escalate_after: int = 3, prefix: int = 24):
        from tenfold.semantic_lattice import LatticeStore

        self.prefix = prefix
        self.escalate_after = escalate_after
        self.store = LatticeStore(None)
        self.store.load_text(inventory_triples(assets), fmt="nt")
        self.store.add_rules(RULES.format(after=escalate_after))
        self.store.reason()
        self.protected = {_unquote(r[0]) for r in self.store.datalog("protected(A)").rows}
        self.escalated: dict[str, int] = {}  # network -> until (ms)
        self.refused = 0
        self._refused_bans: set[str] = set()  # their unbans (at expiry) are dropped too
        # The hosts banned per network, as the store holds them: which ban of a call
        # brings its network to the threshold the rules name.
        self._banned: dict[str, set[str]] = {}

    def _net(self, value: str) -> str:
        return str(ipaddress.ip_network(f"{value}/{self.prefix}", strict=False))

    def _refusal(self, d: Decision, why: str) -> LedgerEvent:
        self.refused += 1
        return refusal_event(d, why)

    def __call__(self, decisions: list[Decision]) -> tuple[list[Decision], list[Any]]:
        """Refuse protected bans, add escalations after the ban that makes a /24 due.

        A call's bans go into the store together and are reasoned over once (not
        once per ban: that was most of the engine's time on a burst). The rules
        say which networks are due; a network becomes due at the ban that brings
        its banned hosts to the threshold, so the escalation follows that ban, as
        when the bans come one call each (a replay that batches differently
        derives the same escalations, with the same ids).
        """
        from tenfold.autoblocker_ledger import Decision

        planned: list[tuple[Decision, str | None]] = []
        refusals: list[Any] = []
        for d in decisions:
            if d.action == "unban" and d.value in self._refused_bans:
                self._refused_bans.discard(d.value)
                continue
            if d.action != "ban" or d.scope != "ip":
                planned.append((d, None))
                continue
            if d.value in self.protected:
                self._refused_bans.add(d.value)
                refusals.append(self._refusal(d, "critical asset: never blocked"))
                continue
            v4 = ipaddress.ip_address(d.value).version == 4
            planned.append((d, self._net(d.value) if v4 else None))
        staged = [(d.value, net) for d, net in planned if net is not None]
        due: set[str] = set()
        if staged:
            self.store.load_text(
                "".join(
                    f"<{TF}host:{value}> <{TF}bannedIn> <{TF}net:{net}> .\n"
                    for value, net in staged
                ),
                fmt="nt",
            )
            self.store.reason()
            due = {_unquote(r[0]) for r in self.store.datalog("escalate(N)").rows}
        kept: list[Decision] = []
        for d, net in planned:
            kept.append(d)
            if net is None:
                continue
            hosts = self._banned.setdefault(net, set())
            hosts.add(d.value)
            if net not in due or len(hosts) < self.escalate_after:
                continue  # not due, or due only from a later ban of this call
            if self.escalated.get(net, 0) > d.time_ms:
                continue
            escalation = Decision(
                action="ban",
                scope="range",
                value=net,
                duration_s=d.duration_s,
                origin="policy",
                reason=f"hosts banned in {net} reached the escalation threshold",
                rule="escalation",
                time_ms=d.time_ms,
                cause=d.cause,
            )
            self.escalated[net] = escalation.until_ms
            inside = [a for a in self.protected if _within(a, net)]
            if inside:
                refusals.append(self._refusal(escalation, f"holds critical asset {inside[0]}"))
                continue
            kept.append(escalation)
        return kept, refusals

    def close(self) -> None:
        self.store.close()


def refusal_event(d: Decision, why: str) -> LedgerEvent:
    """A ``platform``/``policy.refused`` event for a decision not recorded (id from the decision)."""
    from tenfold.autoblocker_ledger import SecurityEvent as LedgerEvent

    key = "\x00".join((d.rule, d.scope, d.value, d.cause, str(d.time_ms)))
    return LedgerEvent(
        f"policy:refused:{blake2b(key.encode(), digest_size=16).hexdigest()}",
        "platform",
        "policy.refused",
        d.value,
        d.time_ms,
        {"rule": d.rule, "scope": d.scope, "why": why, "reason": d.reason[:1000]},
    )


def _within(address: str, net: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(net)
    except ValueError:
        return False
