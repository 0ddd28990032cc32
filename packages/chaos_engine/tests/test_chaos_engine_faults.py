"""Plugins that misbehave, proxy slicing as a property, the watchdog's TTL for a hung engine."""

from __future__ import annotations

import asyncio
import random
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.chaos_engine import ChaosEngine, PerformanceConfig, PluginFault
from tenfold.chaos_engine._faults import ProxySlicer
from tenfold.chaos_engine._pluginfaults import PluginActuator
from tenfold.chaos_engine._proxy import _slice, _truncate
from tenfold.chaos_engine.errors import InjectionFailed
from tenfold.core.plugins import PluginManager


class GoodPlugin:
    def __init__(self) -> None:
        self.live: set[int] = set()
        self.next = 0

    def execute(self, action: str, arg: object) -> object:
        if action == "inject":
            self.next += 1
            self.live.add(self.next)
            return self.next
        self.live.discard(arg)  # type: ignore[arg-type]
        return None


class RaisingPlugin:
    def execute(self, action: str, arg: object) -> object:
        raise RuntimeError("plugin exploded")


class HangingPlugin:
    def execute(self, action: str, arg: object) -> object:
        time.sleep(3)
        return None


def test_plugin_faults_good_raising_and_hanging(tmp_path: Path) -> None:
    actuator = PluginActuator(PluginManager(timeout_s=0.2))
    good = GoodPlugin()
    actuator.register("good", good)
    actuator.register("raises", RaisingPlugin())
    actuator.register("hangs", HangingPlugin())

    async def main() -> None:
        perf = PerformanceConfig.model_validate({})
        async with await ChaosEngine.create(perf, journal_dir=tmp_path) as engine:
            engine.plugins = actuator
            handle = await engine.inject_fault(PluginFault(plugin="good", params={"x": 1}))
            assert good.live == {1}
            await handle.revert()
            assert good.live == set()
            with pytest.raises(InjectionFailed, match="plugin exploded"):
                await engine.inject_fault(PluginFault(plugin="raises"))
            with pytest.raises(InjectionFailed, match="did not return within 0.2 s"):
                await engine.inject_fault(PluginFault(plugin="hangs"))
            with pytest.raises(InjectionFailed, match="unknown plugin 'nope'"):
                await engine.inject_fault(PluginFault(plugin="nope"))
            # the good plugin still works after the others failed
            await (await engine.inject_fault(PluginFault(plugin="good"))).revert()
            assert engine.active_faults == 0

    asyncio.run(main())


@given(
    data=st.binary(min_size=0, max_size=2000),
    average=st.integers(1, 300),
    variation_frac=st.floats(0, 0.99),
    room=st.integers(0, 3000),
    seed=st.integers(0, 100),
)
@settings(max_examples=200, deadline=None)
def test_slicer_and_limit_keep_bytes_in_order(
    data: bytes, average: int, variation_frac: float, room: int, seed: int
) -> None:
    fault = ProxySlicer(
        proxy="p",
        average_size=average,
        size_variation=int((average - 1) * variation_frac),
        delay_us=5,
    )
    pieces = _slice([(1.0, data)], fault, random.Random(seed))
    assert b"".join(b for _, b in pieces) == data
    assert all(b for _, b in pieces)
    times = [t for t, _ in pieces]
    assert times == sorted(times)
    cut = _truncate(pieces, room)
    assert b"".join(b for _, b in cut) == data[:room]


@pytest.mark.root
@pytest.mark.usefixtures("root_only")
def test_watchdog_reverts_past_ttl_when_the_engine_hangs(tmp_path: Path) -> None:
    import os

    from tenfold.chaos_engine import PacketLoss

    run_id = os.getpid() % 100000
    ns, name = f"tfchaos_tW{run_id}", f"twx{run_id}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:

        async def main() -> None:
            perf = PerformanceConfig.model_validate({})
            async with await ChaosEngine.create(
                perf, journal_dir=tmp_path, experiment=name
            ) as engine:
                await engine.inject_fault(PacketLoss(netns=ns, percent=10, duration_s=0.2))
                listed = subprocess.run(
                    ["ip", "netns", "exec", ns, "nft", "list", "tables"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                assert f"tfchaos_{name}_" in listed.stdout
                time.sleep(2.0)  # the event loop is blocked: only the watchdog can act
                listed = subprocess.run(
                    ["ip", "netns", "exec", ns, "nft", "list", "tables"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                assert listed.stdout.strip() == ""
                journal = (tmp_path / f"{name}.journal").read_text()
                assert '"why":"watchdog: ttl"' in journal

        asyncio.run(main())
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


# -- the packet delayer's netlink parser ----------------------------------------------------------


def _packet_message(queue: int, packet_id: int, extra: list[tuple[int, bytes]]) -> bytes:
    """An NFQNL_MSG_PACKET as the kernel sends it: other attributes around the packet header."""
    from tenfold.chaos_engine import _delayer as d

    header = d.attr(d.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 4))
    attrs = b"".join(d.attr(kind, payload) for kind, payload in extra) + header
    return d.message(d.NFQNL_MSG_PACKET, 0, 0, queue, attrs, family=2)


def _ack(seq: int, errno: int) -> bytes:
    body = struct.pack("=i", -errno) + struct.pack("=IHHII", 16, 0, 0, seq, 0)
    return struct.pack("=IHHII", 16 + len(body), 2, 0, seq, 0) + body


@given(
    packets=st.lists(
        st.tuples(
            st.integers(0, 65535),
            st.integers(0, 2**32 - 1),
            st.lists(st.tuples(st.integers(3, 20), st.binary(max_size=13)), max_size=3),
        ),
        max_size=8,
    ),
    acks=st.dictionaries(st.integers(1, 2**32 - 1), st.sampled_from([0, 1, 16, 22]), max_size=3),
)
@settings(max_examples=200, deadline=None)
def test_delayer_parses_every_packet_and_ack_of_a_datagram(
    packets: list[tuple[int, int, list[tuple[int, bytes]]]], acks: dict[int, int]
) -> None:
    from tenfold.chaos_engine._delayer import parse

    data = b"".join(_packet_message(q, i, extra) for q, i, extra in packets)
    data += b"".join(_ack(seq, err) for seq, err in acks.items())
    found, seen = parse(data)
    assert found == [(q, i) for q, i, _ in packets]
    assert seen == acks


def test_delayer_verdict_is_one_accept_for_the_packet() -> None:
    from tenfold.chaos_engine import _delayer as d

    message = d.verdict(321, 0xDEADBEEF)
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", message)
    assert (length, kind, flags) == (len(message), d.NFQNL_MSG_VERDICT, d.NLM_F_REQUEST)
    assert struct.unpack_from("!BBH", message, 16) == (0, 0, 321)  # res_id: the queue
    assert message[-8:] == struct.pack("!II", d.NF_ACCEPT, 0xDEADBEEF)
