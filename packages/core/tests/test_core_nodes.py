"""Measured nodes: namespace + veth + cgroup each, their limits honoured, nothing left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.core import NodeError, NodeSet, leftover_nodes, recover_nodes
from tenfold.core.governor import leftover_cgroups
from tenfold.core.nodes import SUBNET_BASE, host_addresses
from tenfold.core.testing import needs_root

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


def _gone(prefix: str) -> None:
    assert leftover_nodes(prefix) == []
    assert not [n for n in os.listdir("/var/run/netns") if n.startswith(prefix)]
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith(prefix)]
    assert not [g for g in leftover_cgroups() if g.startswith(f"node-{prefix}")]


@pytest.fixture
def prefix() -> Iterator[str]:
    name = "tnt" + os.urandom(3).hex()
    yield name
    if os.geteuid() == 0:
        recover_nodes(name)


def test_bad_settings_are_one_typed_error() -> None:
    with pytest.raises(NodeError, match="count must be 1..250"):
        NodeSet(count=0)
    with pytest.raises(NodeError, match="cpu must be"):
        NodeSet(count=1, cpu=0)
    with pytest.raises(NodeError, match="at least 16 MiB"):
        NodeSet(count=1, memory_mb=1)
    with pytest.raises(NodeError, match="bad node prefix"):
        NodeSet(count=1, prefix="Bad-Prefix")
    with pytest.raises(NodeError, match="bad node prefix"):
        recover_nodes("../etc")


@needs_root("network namespaces and cgroups")
def test_nodes_reach_each_other_and_the_host(prefix: str) -> None:
    with NodeSet(count=3, cpu=0.25, memory_mb=128, prefix=prefix) as nodes:
        assert len({n.address for n in nodes}) == 3
        assert nodes.host_address not in {n.address for n in nodes}
        # A service for the nodes listens on the host's bridge address.
        with socket.socket() as server:
            server.bind((nodes.host_address, 0))
            server.listen()
            port = server.getsockname()[1]
            code = (
                "import socket;"
                f"socket.create_connection(({nodes.host_address!r}, {port}), timeout=5)"
            )
            client = nodes[0].spawn([PY, "-c", code])
            conn, (peer, _) = server.accept()
            conn.close()
            assert client.wait(10) == 0
            assert peer == nodes[0].address  # seen from the host with the node's own address
        # Node to node: node 2 listens on its own address, node 1 connects.
        listen = (
            "import socket,sys;s=socket.socket();s.bind(('0.0.0.0',7000));s.listen();"
            "print('up',flush=True);c,a=s.accept();print(a[0])"
        )
        server_proc = nodes[2].spawn([PY, "-c", listen], stdout=subprocess.PIPE, text=True)
        assert server_proc.stdout is not None
        assert server_proc.stdout.readline().strip() == "up"
        connect = f"import socket;socket.create_connection(({nodes[2].address!r}, 7000), timeout=5)"
        assert nodes[1].spawn([PY, "-c", connect]).wait(10) == 0
        assert server_proc.communicate(timeout=10)[0].strip() == nodes[1].address
        # The host reaches a node's address, and a node's loopback is its own.
        probe = nodes[0].spawn(
            [PY, "-c", listen.replace("0.0.0.0", nodes[0].address)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert probe.stdout is not None and probe.stdout.readline().strip() == "up"
        socket.create_connection((nodes[0].address, 7000), timeout=5).close()
        assert probe.communicate(timeout=10)[0].strip() == nodes.host_address
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 7000), timeout=1).close()
        # By its default route, a node reaches the host's other addresses too.
        for address in host_addresses():
            if address.startswith(SUBNET_BASE + "."):
                continue
            with socket.socket() as server:
                server.bind((address, 0))
                server.listen()
                code = (
                    f"import socket;socket.create_connection(({address!r}, "
                    f"{server.getsockname()[1]}), timeout=5)"
                )
                client = nodes[1].spawn([PY, "-c", code])
                conn, (peer, _) = server.accept()
                conn.close()
                assert client.wait(10) == 0 and peer == nodes[1].address


@needs_root("network namespaces and cgroups")
def test_a_spawned_process_is_inside_its_node_from_the_start(prefix: str) -> None:
    with NodeSet(count=2, prefix=prefix) as nodes:
        node = nodes[1]
        code = (
            "import os;print(open('/proc/self/cgroup').read());"
            "print('NS', os.readlink('/proc/self/ns/net'))"
        )
        out = node.spawn([PY, "-S", "-c", code], stdout=subprocess.PIPE, text=True)
        text = out.communicate(timeout=10)[0]
        for controller in ("cpu", "memory", "pids"):
            assert f":{controller}:/tenfold/node-{prefix}-1\n" in text or (
                f"{controller}:/tenfold/node-{prefix}-1" in text
            )
        ns_inode = os.stat(f"/var/run/netns/{node.netns}").st_ino
        assert f"NS net:[{ns_inode}]" in text


@needs_root("cgroup CPU quota")
def test_a_busy_loop_gets_its_eighth_of_a_core(prefix: str) -> None:
    with NodeSet(count=1, cpu=0.125, memory_mb=64, prefix=prefix) as nodes:
        node = nodes[0]
        busy = node.spawn([PY, "-S", "-c", "while True: pass"])
        time.sleep(0.3)  # past the interpreter's start-up
        used0, wall0 = node.cpu_seconds(), time.monotonic()
        # Gate on the loop's observed CPU (a quarter of a second: two seconds at
        # its quota), not on a fixed window: a loaded machine gives the loop
        # less than its quota, and only the cap is the property under test.
        deadline = wall0 + 120
        while node.cpu_seconds() - used0 < 0.25 and time.monotonic() < deadline:
            time.sleep(0.25)
        used, wall = node.cpu_seconds() - used0, time.monotonic() - wall0
        stats = node.stats()
        busy.kill()
        busy.wait()
        share = used / wall
        # The quota caps the share at 1/8 of a core (12.5 %, one period of slack);
        # the loop really ran.
        assert used >= 0.25, used
        assert share <= 0.125 * 1.15, share
        assert stats["cpu_nr_throttled"] > 0


@needs_root("cgroup memory limit")
def test_the_memory_limit_kills_inside_the_node_only(prefix: str) -> None:
    with NodeSet(count=2, cpu=0.5, memory_mb=64, prefix=prefix) as nodes:
        sleeper = nodes[1].spawn(["sleep", "30"])
        hog = nodes[0].spawn(
            [
                PY,
                "-S",
                "-c",
                "b = bytearray(256 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1",
            ]
        )
        assert hog.wait(30) == -signal.SIGKILL
        assert nodes[0].stats()["oom_kills"] >= 1
        assert sleeper.poll() is None  # the other node is untouched
        assert nodes[1].stats()["oom_kills"] == 0


@needs_root("network namespaces and cgroups")
def test_nothing_is_left_after_exit(prefix: str) -> None:
    with NodeSet(count=2, prefix=prefix) as nodes:
        sleepers = [node.spawn(["sleep", "60"]) for node in nodes]
        assert leftover_nodes(prefix)  # the objects exist while the set is open
        assert all(node.pids() for node in nodes)
    for proc in sleepers:
        assert proc.wait(5) == -signal.SIGKILL
    _gone(prefix)


OWNER = """
import sys, time
from tenfold.core import NodeSet
nodes = NodeSet(count=2, prefix=sys.argv[1]).create()
pids = [node.spawn(["sleep", "60"]).pid for node in nodes]
print(*pids, flush=True)
time.sleep(60)
"""


@needs_root("network namespaces and cgroups")
def test_an_owner_killed_by_sigkill_is_cleaned_by_recover(prefix: str) -> None:
    owner = subprocess.Popen([PY, "-c", OWNER, prefix], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    assert len(pids) == 2
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    left = leftover_nodes(prefix)
    assert any(x.startswith("netns:") for x in left) and all(_alive(p) for p in pids)
    # The owner is gone: a sweep of dead owners' sets (what every new set runs first) removes it.
    assert prefix in recover_nodes()
    _gone(prefix)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(p) for p in pids)


@needs_root("network namespaces and cgroups")
def test_recover_by_prefix_removes_a_live_owners_nodes(prefix: str) -> None:
    nodes = NodeSet(count=1, prefix=prefix).create()
    sleeper = nodes[0].spawn(["sleep", "60"])
    assert prefix not in recover_nodes()  # its owner (us) is alive
    assert leftover_nodes(prefix)
    assert recover_nodes(prefix) == [prefix]
    assert sleeper.wait(5) == -signal.SIGKILL
    _gone(prefix)
    with pytest.raises(NodeError, match="already exist"):
        with NodeSet(count=1, prefix=prefix):
            with NodeSet(count=1, prefix=prefix):
                pass
    _gone(prefix)


@needs_root("network namespaces and cgroups")
def test_an_etcd_member_runs_inside_its_node_and_answers_on_the_node_address(
    prefix: str, tmp_path: Path
) -> None:
    from tenfold.core.services import Etcd

    with (
        NodeSet(count=1, cpu=0.25, memory_mb=256, prefix=prefix) as nodes,
        Etcd(members=1, workdir=tmp_path / "etcd", place=nodes[0]) as etcd,
    ):
        assert etcd.endpoints[0].startswith(nodes[0].address + ":")
        pid = etcd.pid(0)
        assert pid is not None and pid in nodes[0].pids()  # in the node's cgroup and namespace
        port = int(etcd.endpoints[0].rsplit(":", 1)[1])
        # Its gRPC gateway answers at the node's address (a leader: itself).
        status = etcd.status(0)
        assert status["leader"] == status["header"]["member_id"]
        assert etcd.leader_index() == 0
        # From the host's loopback the member is not there: it listens in the node only.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    _gone(prefix)
