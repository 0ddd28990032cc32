"""The policy: the lattice over the asset inventory refuses and escalates bans."""

from __future__ import annotations

from pathlib import Path

from tenfold.autoblocker_ledger import Autoblocker, Decision, EmbeddedLedger, load_rules
from tenfold.pipeline_engine import Batch
from tenfold.platform._policy import LatticePolicy, inventory_triples
from tenfold.platform._transport import Asset, LedgerSink

ASSETS = [
    Asset("10.0.0.5", "db-1", "dba", "critical", "10.0.0.0/24"),
    Asset("10.0.0.6", "web-1", "web", "normal", "10.0.0.0/24"),
    Asset("198.51.100.9", "vpn", "net", "high", "198.51.100.0/24"),
]


def _ban(value: str, t: int = 1_700_000_000_000, cause: str = "") -> Decision:
    return Decision("ban", "ip", value, 600.0, "auth", "5 x fail", "sshd", t, cause or f"c-{value}")


def test_inventory_is_rdf() -> None:
    nt = inventory_triples(ASSETS[:1])
    assert '<urn:tenfold:asset:10.0.0.5> <urn:tenfold:criticality> "critical" .' in nt


def test_critical_assets_are_never_banned_and_three_hosts_escalate() -> None:
    policy = LatticePolicy(ASSETS)
    assert policy.protected == {"10.0.0.5"}
    kept, refused = policy([_ban("10.0.0.5")])
    assert kept == [] and [(e.kind, e.subject) for e in refused] == [("policy.refused", "10.0.0.5")]
    assert "critical" in str(refused[0].evidence["why"])
    # An unban for the refused ban (the autoblocker's expiry) is dropped too.
    unban = Decision("unban", "ip", "10.0.0.5", 0.0, "auth", "ban expired", "sshd", 1, "c")
    assert policy([unban]) == ([], [])

    kept, refused = policy([_ban("203.0.113.1"), _ban("203.0.113.2")])
    assert [d.value for d in kept] == ["203.0.113.1", "203.0.113.2"] and not refused
    kept, _ = policy([_ban("203.0.113.3")])
    assert [(d.scope, d.value, d.rule) for d in kept] == [
        ("ip", "203.0.113.3", "sshd"),
        ("range", "203.0.113.0/24", "escalation"),
    ]
    kept, _ = policy([_ban("203.0.113.4")])  # already escalated: not again
    assert [d.value for d in kept] == ["203.0.113.4"]
    kept, _ = policy([_ban("198.51.100.1")])  # "high" is not "critical"
    assert [d.value for d in kept] == ["198.51.100.1"]

    # Three hosts banned in the critical asset's network: no range ban over it.
    policy([_ban("10.0.0.6"), _ban("10.0.0.7")])
    kept, refused = policy([_ban("10.0.0.8")])
    assert [d.value for d in kept] == ["10.0.0.8"]
    assert [(e.subject, e.evidence["rule"]) for e in refused] == [("10.0.0.0/24", "escalation")]
    policy.close()


def test_one_call_or_one_ban_per_call_derive_the_same_decisions() -> None:
    bans = [
        _ban(v, t=1_700_000_000_000 + i)
        for i, v in enumerate(
            ["192.0.2.1", "203.0.113.1", "192.0.2.2", "10.0.0.5", "192.0.2.3", "192.0.2.4",
             "10.0.0.6", "10.0.0.7", "10.0.0.8", "203.0.113.2"]
        )
    ]  # fmt: skip
    one = LatticePolicy(ASSETS)
    kept, refused = one(bans)
    each = LatticePolicy(ASSETS)
    kept_each, refused_each = [], []
    for b in bans:
        k, r = each([b])
        kept_each += k
        refused_each += r
    assert kept == kept_each and refused == refused_each
    # The escalation follows the ban that made its network due, mid-call.
    values = [d.value for d in kept]
    assert values.index("192.0.2.0/24") == values.index("192.0.2.3") + 1
    (range_ban,) = [d for d in kept if d.scope == "range"]
    assert range_ban.cause == "c-192.0.2.3"
    assert [(e.subject, e.kind) for e in refused] == [
        ("10.0.0.5", "policy.refused"),
        ("10.0.0.0/24", "policy.refused"),  # three hosts, but it holds the critical asset
    ]
    one.close()
    each.close()


def test_through_the_sink_the_same_after_a_restart(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "scan"\ndomain = "network"\nkind = "port_scan"\n'
        "max_retry = 2\nfind_time_s = 60\nban_time_s = 600\n"
    )
    from tenfold.autoblocker_ledger import SecurityEvent

    events = [
        SecurityEvent(f"e{i}-{h}", "network", "port_scan", h, 1_700_000_000_000 + i, {})
        for h in ("203.0.113.7", "203.0.113.8", "10.0.0.5", "203.0.113.9")
        for i in range(2)
    ]
    store = tmp_path / "ledger"
    kinds = []
    for _ in range(2):  # the second run reads everything again
        with EmbeddedLedger(store) as led:
            sink = LedgerSink(
                led, Autoblocker(load_rules(rules)), tmp_path / "p.json",
                policy=LatticePolicy(ASSETS),
            )  # fmt: skip
            sink.open("p")
            sink.write(Batch(events, 0, {}))
            kinds.append(
                [(led.get(i).event.kind, led.get(i).event.subject) for i in range(led.size)]
            )
    assert kinds[0] == kinds[1]
    made = [k for k in kinds[0] if k[0] != "port_scan"]
    assert made == [
        ("decision.ban", "203.0.113.7"),
        ("decision.ban", "203.0.113.8"),
        ("decision.ban", "203.0.113.9"),
        ("decision.ban", "203.0.113.0/24"),
        ("policy.refused", "10.0.0.5"),  # a batch's refusals follow its decisions
    ]


def test_the_ban_policy_contract_is_proved_and_bounds_every_ban() -> None:
    from tenfold.platform._contract import MAX_ESCALATIONS, ContractPolicy, chained

    policy = ContractPolicy(["192.0.2.0/24"])
    assert policy.proved and all(p.endswith("proved") for p in policy.proved)
    short = Decision("ban", "ip", "203.0.113.1", 5.0, "auth", "r", "sshd", 1, "c1")
    long = Decision("ban", "ip", "203.0.113.2", 10**7, "auth", "r", "sshd", 1, "c2")
    allowed = Decision("ban", "ip", "192.0.2.9", 600.0, "auth", "r", "sshd", 1, "c3")
    kept, refused = policy([short, long, allowed])
    assert [(d.value, d.duration_s) for d in kept] == [
        ("203.0.113.1", 60.0),
        ("203.0.113.2", 86400.0),
    ]
    assert [(e.subject, e.evidence["why"]) for e in refused] == [
        ("192.0.2.9", "allowlisted: never banned")
    ]
    nets = [
        Decision("ban", "range", f"10.{i}.0.0/24", 600.0, "policy", "r", "escalation", 1, f"n{i}")
        for i in range(MAX_ESCALATIONS + 2)
    ]
    kept, refused = policy(nets)
    assert len(kept) == MAX_ESCALATIONS and len(refused) == 2
    assert "escalation cap" in str(refused[0].evidence["why"])

    # Chained after the lattice: the lattice's escalation goes through the contract too.
    both = chained(LatticePolicy(ASSETS), ContractPolicy())
    kept, _ = both([_ban(f"198.18.7.{i}") for i in range(3)])
    assert [d.value for d in kept][-1] == "198.18.7.0/24"
