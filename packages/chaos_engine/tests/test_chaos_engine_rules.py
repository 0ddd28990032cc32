"""The OS plane's rule builders are pure: their nft and tc text is checked without root."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tenfold.chaos_engine._faults import ConnectionReset, NetworkLatency, PacketLoss, Partition
from tenfold.chaos_engine._os_common import _qdisc_handle
from tenfold.chaos_engine._os_net import (
    KERNEL_TTL_GRACE_S,
    TTL_GATE,
    _latency_rules,
    _nft_rules,
    _qdisc_add,
)


def test_packet_loss_draws_per_packet_and_a_full_loss_drops_all() -> None:
    rules = _nft_rules(PacketLoss(netns="ns1", percent=12.5, interface="veth0"), "tfchaos_x")
    assert rules.splitlines()[0] == "add table inet tfchaos_x"
    assert (
        'add rule inet tfchaos_x out meta nfproto @ttl oifname "veth0" numgen random mod 10000'
        " < 1250 drop" in rules
    )
    total = _nft_rules(PacketLoss(netns="ns1", percent=100.0), "t")
    assert total.splitlines()[-1] == "add rule inet t out meta nfproto @ttl drop"


def test_partition_drops_both_directions_in_the_peer_family() -> None:
    v4 = _nft_rules(Partition(netns="ns1", peer="10.0.0.2"), "t").splitlines()
    assert v4[-2:] == [
        "add rule inet t in meta nfproto @ttl ip saddr 10.0.0.2 drop",
        "add rule inet t out meta nfproto @ttl ip daddr 10.0.0.2 drop",
    ]
    v6 = _nft_rules(Partition(netns="ns1", peer="fd00::2"), "t")
    assert "ip6 saddr fd00::2 drop" in v6 and "ip6 daddr fd00::2 drop" in v6


def test_connection_reset_answers_both_directions_with_tcp_resets() -> None:
    rules = _nft_rules(ConnectionReset(netns="ns1", port=5432), "t").splitlines()
    assert rules[-2:] == [
        "add rule inet t in meta nfproto @ttl tcp dport 5432 reject with tcp reset",
        "add rule inet t out meta nfproto @ttl tcp dport 5432 reject with tcp reset",
    ]


def test_latency_queues_everything_or_one_port_each_way() -> None:
    whole = _latency_rules(NetworkLatency(netns="ns1", interface="veth0"), "t")
    assert (
        whole.splitlines()[-1]
        == 'add rule inet t post meta nfproto @ttl oifname "veth0" jump delay'
    )
    port = _latency_rules(NetworkLatency(netns="ns1", interface="veth0", port=80), "t").splitlines()
    assert [line.split(" th ")[1] for line in port[-2:]] == [
        "dport 80 jump delay",
        "sport 80 jump delay",
    ]


@given(
    st.sampled_from(
        [
            lambda d: PacketLoss(netns="ns1", percent=5, duration_s=d),
            lambda d: Partition(netns="ns1", peer="10.0.0.0/8", duration_s=d),
            lambda d: ConnectionReset(netns="ns1", port=80, duration_s=d),
            lambda d: NetworkLatency(netns="ns1", interface="eth0", port=53, duration_s=d),
        ]
    ),
    st.floats(0.001, 7 * 86400),
)
def test_every_nft_fault_rule_is_gated_by_a_kernel_ttl_past_the_faults(make, duration_s) -> None:
    fault = make(duration_s)
    build = _latency_rules if isinstance(fault, NetworkLatency) else _nft_rules
    lines = build(fault, "t").splitlines()
    rules = [line for line in lines if line.startswith("add rule")]
    assert rules and all(f"add rule inet t {r.split()[4]} {TTL_GATE} " in r for r in rules)
    (element,) = [line for line in lines if line.startswith("add element inet t ttl")]
    timeouts = [int(ms) for ms in re.findall(r"timeout (\d+)ms", element)]
    assert len(timeouts) == 2 and "ipv4" in element and "ipv6" in element
    # The kernel's timer never cuts a fault short, and follows the engine's within a second.
    assert all(-1e-9 <= t / 1000 - duration_s - KERNEL_TTL_GRACE_S <= 0.001 for t in timeouts)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=40))
def test_qdisc_handles_are_stable_and_valid(name: str) -> None:
    handle = _qdisc_handle(name)
    assert handle == _qdisc_handle(name)
    major = handle.rstrip(":")
    assert handle.endswith(":") and 1 <= int(major, 16) <= 0xFFFF
    assert _qdisc_add("veth0", name)[-1] == handle
