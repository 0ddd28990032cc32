from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.cloud_kernel import BadAddress, BpfError, NoSuchInterface, XdpBlockList, parse_prefix
from tenfold.cloud_kernel._testing import root_only, run_cli
from tenfold.cloud_kernel._xdp import XDP_DROP, XDP_PASS

ETH_IP, ETH_IP6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8


def frame_head(proto: int, vlans: tuple[int, ...] = ()) -> bytes:
    # dst, src, then for each tag: TPID + TCI; then the final ethertype.
    out = b"\x02" * 6 + b"\x04" * 6
    for tpid in vlans:
        out += struct.pack("!HH", tpid, 7)
    return out + struct.pack("!H", proto)


def ipv4(src: str, *, ihl: int = 5, frag: int = 0, options: bytes = b"") -> bytes:
    head = (
        bytes([0x40 | ihl, 0])
        + struct.pack("!HHH", 20 + len(options) + 8, 1, frag)
        + bytes([64, 17, 0, 0])
    )
    return head + socket.inet_aton(src) + socket.inet_aton("198.18.0.2") + options + b"\x00" * 8


def ipv6(src: str) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, 8, 17, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address("2001:db8::2").packed
        + b"\x00" * 8
    )


@pytest.fixture(scope="module")
def blocklist():
    if __import__("os").geteuid() != 0:
        pytest.skip("loading BPF programs needs root")
    with XdpBlockList() as bl:
        bl.block("198.19.200.0/24")
        bl.block("203.0.113.9")
        bl.block("2001:db8:bad::/48")
        yield bl


@root_only
@pytest.mark.root
@pytest.mark.parametrize(
    ("frame", "verdict"),
    [
        (frame_head(ETH_IP, ()) + ipv4("198.19.200.7"), XDP_DROP),
        (frame_head(ETH_IP, ()) + ipv4("198.19.201.7"), XDP_PASS),
        (frame_head(ETH_IP, ()) + ipv4("203.0.113.9"), XDP_DROP),
        (frame_head(ETH_IP, ()) + ipv4("203.0.113.8"), XDP_PASS),
        (frame_head(ETH_IP, (ETH_VLAN,)) + ipv4("198.19.200.7"), XDP_DROP),
        (frame_head(ETH_IP, (ETH_QINQ, ETH_VLAN)) + ipv4("198.19.200.7"), XDP_DROP),
        (frame_head(ETH_IP, ()) + ipv4("198.19.200.7", ihl=7, options=b"\x01" * 8), XDP_DROP),
        (frame_head(ETH_IP, ()) + ipv4("198.19.200.7", frag=0x2000), XDP_DROP),  # first fragment
        (frame_head(ETH_IP, ()) + ipv4("198.19.200.7", frag=100), XDP_DROP),  # later fragment
        (frame_head(ETH_IP6, ()) + ipv6("2001:db8:bad:1::5"), XDP_DROP),
        (frame_head(ETH_IP6, (ETH_VLAN,)) + ipv6("2001:db8:bad:1::5"), XDP_DROP),
        (frame_head(ETH_IP6, ()) + ipv6("2001:db8:900d::5"), XDP_PASS),
    ],
)
def test_verdicts(blocklist: XdpBlockList, frame: bytes, verdict: int) -> None:
    assert blocklist.test_run(frame)[0] == verdict


@root_only
@pytest.mark.root
def test_malformed_frames_pass_and_are_counted(blocklist: XdpBlockList) -> None:
    before = blocklist.stats()
    runt = frame_head(ETH_IP)  # an Ethernet header announcing IPv4, and nothing after it
    bad_ihl = frame_head(ETH_IP, ()) + ipv4("198.19.200.7", ihl=3)
    truncated_ip = frame_head(ETH_IP, ()) + ipv4("198.19.200.7")[:12]
    ihl_past_end = frame_head(ETH_IP, ()) + ipv4("198.19.200.7", ihl=15)[:30]
    truncated_vlan = frame_head(ETH_IP, (ETH_VLAN,))[:15]
    arp = frame_head(0x0806, ()) + b"\x00" * 28
    for frame in (runt, bad_ihl, truncated_ip, ihl_past_end, truncated_vlan, arp):
        assert blocklist.test_run(frame)[0] == XDP_PASS
    for tiny in (b"", b"\x02" * 10):  # shorter than an Ethernet header: the kernel refuses the run
        with pytest.raises(BpfError, match="Invalid argument"):
            blocklist.test_run(tiny)
    after = blocklist.stats()
    assert after.runt - before.runt == 3
    assert after.bad_header - before.bad_header == 2
    assert after.not_ip - before.not_ip == 1


@root_only
@pytest.mark.root
def test_rule_counters_and_replace(blocklist: XdpBlockList) -> None:
    frame = frame_head(ETH_IP, ()) + ipv4("203.0.113.9")
    before = blocklist.rule("203.0.113.9").packets
    blocklist.test_run(frame, repeat=5)
    assert blocklist.rule("203.0.113.9").packets == before + 5
    added, removed = blocklist.replace(["198.19.200.0/24", "192.0.2.0/24", "2001:db8:bad::/48"])
    assert (added, removed) == (1, 1)
    assert blocklist.test_run(frame)[0] == XDP_PASS
    assert {str(p) for p in blocklist.prefixes()} == {
        "198.19.200.0/24",
        "192.0.2.0/24",
        "2001:db8:bad::/48",
    }
    blocklist.replace(["198.19.200.0/24", "203.0.113.9", "2001:db8:bad::/48"])


@st.composite
def v4_rules(draw):
    nets = draw(
        st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), min_size=1, max_size=20)
    )
    return [ipaddress.ip_network((addr, plen), strict=False) for addr, plen in nets]


@root_only
@pytest.mark.root
@settings(max_examples=25, deadline=None)
@given(
    rules=v4_rules(),
    probes=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=10),
    drop_some=st.lists(st.booleans(), max_size=20),
)
def test_drops_exactly_what_the_rules_cover(rules, probes, drop_some) -> None:
    with XdpBlockList() as bl:
        bl.block_many(rules)
        for rule in rules:  # addresses inside every rule must drop
            probes.append(int(rule.network_address))
            probes.append(int(rule.broadcast_address))
        # Unblocking leaves the /24 markers behind: the verdicts must not change for that.
        removed = {r for r, gone in zip(rules, drop_some, strict=False) if gone}
        for rule in removed:
            bl.unblock(rule)
        kept = [r for r in rules if r not in removed]
        for value in probes:
            addr = ipaddress.IPv4Address(value)
            expected = XDP_DROP if any(addr in r for r in kept) else XDP_PASS
            assert bl.test_run(frame_head(ETH_IP, ()) + ipv4(str(addr)))[0] == expected


@root_only
@pytest.mark.root
def test_hosts_and_prefixes_sharing_a_slash24() -> None:
    # The /24 markers say which probes to make: a host-only /24 must still see a prefix
    # added later, and a prefix must not hide the hosts beside it.
    def verdict(bl: XdpBlockList, src: str) -> int:
        return bl.test_run(frame_head(ETH_IP, ()) + ipv4(src))[0]

    with XdpBlockList() as bl:
        bl.block("192.0.2.5")
        assert [verdict(bl, a) for a in ("192.0.2.5", "192.0.2.6", "192.0.2.200")] == [
            XDP_DROP,
            XDP_PASS,
            XDP_PASS,
        ]
        bl.block("192.0.2.128/25")
        assert [verdict(bl, a) for a in ("192.0.2.5", "192.0.2.6", "192.0.2.200")] == [
            XDP_DROP,
            XDP_PASS,
            XDP_DROP,
        ]
        bl.block("192.0.0.0/22")  # covers the /24 and three more
        assert verdict(bl, "192.0.2.6") == XDP_DROP
        assert verdict(bl, "192.0.3.255") == XDP_DROP
        bl.unblock("192.0.0.0/22")
        bl.unblock("192.0.2.5")
        assert [verdict(bl, a) for a in ("192.0.2.5", "192.0.3.1", "192.0.2.200")] == [
            XDP_PASS,
            XDP_PASS,
            XDP_DROP,
        ]


@pytest.mark.parametrize(
    "text", ["10.0.0.1/33", "10.0.0.1/8", "not-an-ip", "", "1.2.3.4.5", "2001:db8::/129"]
)
def test_malformed_prefixes_are_refused(text: str) -> None:
    with pytest.raises(BadAddress, match="bad address or prefix"):
        parse_prefix(text)


@root_only
@pytest.mark.root
def test_unknown_interface(blocklist: XdpBlockList) -> None:
    with pytest.raises(NoSuchInterface, match="no network interface named 'tfk-nope0'"):
        blocklist.attach("tfk-nope0")


@root_only
@pytest.mark.root
def test_block_list_at_maximum_entries_refuses_cleanly() -> None:
    with XdpBlockList() as bl:
        m = bl._maps["hosts_v4"]
        cap = m.max_entries
        base = int(ipaddress.IPv4Address("100.64.0.0"))
        # Fill the host table directly (fast path: its /24 markers first, as block() does);
        # then one more must be refused, not lost.
        bl._mark(ipaddress.ip_network(f"100.64.0.0/{32 - (cap - 1).bit_length()}"), host=True)
        for i in range(cap):
            m.update(struct.pack("!I", base + i), struct.pack("<QQII", 0, 0, i + 1, 0))
        with pytest.raises(BpfError, match=r"block list is full \(262144 entries\)"):
            bl.block(str(ipaddress.IPv4Address(base + cap)))
        assert (
            bl.test_run(frame_head(ETH_IP, ()) + ipv4(str(ipaddress.IPv4Address(base + 5))))[0]
            == XDP_DROP
        )


@root_only
@pytest.mark.root
def test_rules_added_through_the_pins_reach_the_program() -> None:
    # Another process (the CLI) opens the pinned maps, marks the /24 and adds the host.
    import subprocess

    subprocess.run(
        ["ip", "link", "add", "tfk-mk0", "type", "veth", "peer", "name", "tfk-mk1"], check=True
    )
    try:
        with XdpBlockList() as bl:
            bl.attach("tfk-mk0")
            bl.pin_to("tfk-mk0")
            try:
                blocked = frame_head(ETH_IP, ()) + ipv4("192.0.2.77")
                assert bl.test_run(blocked)[0] == XDP_PASS
                r = run_cli("kernel", "xdp", "block", "tfk-mk0", "192.0.2.77", "10.9.0.0/16")
                assert r.returncode == 0, r.stderr
                assert bl.test_run(blocked)[0] == XDP_DROP
                assert bl.test_run(frame_head(ETH_IP, ()) + ipv4("10.9.255.1"))[0] == XDP_DROP
                for allowed in ("192.0.2.78", "192.0.3.77", "10.10.0.1"):
                    assert bl.test_run(frame_head(ETH_IP, ()) + ipv4(allowed))[0] == XDP_PASS
            finally:
                XdpBlockList.unpin("tfk-mk0")
    finally:
        subprocess.run(["ip", "link", "del", "tfk-mk0"], check=False)


@root_only
@pytest.mark.root
def test_cli_attach_block_stats_detach_on_a_real_interface() -> None:
    # The CLI runs in our namespace; a dummy interface there is ours alone.
    import subprocess

    subprocess.run(
        ["ip", "link", "add", "tfk-dum0", "type", "veth", "peer", "name", "tfk-dum1"], check=True
    )
    try:
        subprocess.run(["ip", "link", "set", "tfk-dum0", "up"], check=True)
        r = run_cli("kernel", "xdp", "attach", "tfk-dum0", "--block", "198.19.200.0/24")
        assert r.returncode == 0, r.stderr
        assert "attached to tfk-dum0" in r.stdout
        again = run_cli("kernel", "xdp", "attach", "tfk-dum0")
        assert again.returncode == 2 and "already has a tenfold block list" in again.stderr
        assert run_cli("kernel", "xdp", "block", "tfk-dum0", "203.0.113.0/24").returncode == 0
        bad = run_cli("kernel", "xdp", "block", "tfk-dum0", "203.0.113.0/33")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "bad address" in bad.stderr
        far = __import__("time").time() + 3600
        decisions = (
            f'{{"action":"ban","scope":"ip","value":"192.0.2.1","until":{far},"index":1}}\n'
            '{"action":"unban","scope":"range","value":"203.0.113.0/24","until":0,"index":2}\n'
        )
        follow = run_cli("kernel", "xdp", "follow", "tfk-dum0", "--exit-at-eof", input=decisions)
        assert follow.returncode == 0, follow.stderr
        stats = __import__("json").loads(
            run_cli("kernel", "xdp", "stats", "tfk-dum0", "--json").stdout
        )
        assert {r["prefix"] for r in stats["rules"]} == {"198.19.200.0/24", "192.0.2.1/32"}
        status = __import__("json").loads(run_cli("kernel", "status", "--json").stdout)
        assert any("xdp-tfk-dum0" in p for p in status["pinned"])
        assert run_cli("kernel", "xdp", "detach", "tfk-dum0").returncode == 0
        missing = run_cli("kernel", "xdp", "stats", "tfk-dum0")
        assert missing.returncode == 2 and "no tenfold XDP block list is pinned" in missing.stderr
        nope = run_cli("kernel", "xdp", "attach", "tfk-nope9")
        assert nope.returncode == 2 and "no network interface named 'tfk-nope9'" in nope.stderr
    finally:
        subprocess.run(["ip", "link", "del", "tfk-dum0"], check=False)
