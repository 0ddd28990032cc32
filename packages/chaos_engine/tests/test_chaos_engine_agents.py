"""Chaos agents on measured nodes, a controller over mutual TLS, and what happens when one dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.chaos_engine._experiment import experiment_from_dict
from tenfold.chaos_engine._os_net import KERNEL_TTL_GRACE_S
from tenfold.chaos_engine.errors import AgentError, AgentLost, ExperimentError
from tenfold.core.testing import needs_root

PY = sys.executable
LEASE_S = 2.0


def _tables(netns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line.split()[-1] for line in out.splitlines() if "tfchaos_" in line]


def _wait(pred: object, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not pred():  # type: ignore[operator]
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what} not within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


def _experiment(an: object, path: Path, pause_s: float) -> Path:
    refs, nodes = an.refs, an.nodes  # type: ignore[attr-defined]
    agents = "\n".join(f'{r.name} = "{r.url}"' for r in refs)
    targets = ", ".join(f'{{agent = "n{i}", netns = "{n.netns}"}}' for i, n in enumerate(nodes))
    path.write_text(
        f'title = "across nodes"\n[agents]\n{agents}\n'
        '[[method]]\nid = "loss"\nfault = "packet_loss"\n'
        f"params = {{percent = 20, duration_s = 60}}\ntargets = [{targets}]\n"
        f'[[method]]\nid = "hold"\npause_s = {pause_s}\n'
    )
    return path


def _cli_run(an: object, exp: Path, journal: Path) -> subprocess.Popen[str]:
    tls = an.tls["controller"]  # type: ignore[attr-defined]
    argv = [PY, "-m", "tenfold.chaos_engine", "run", str(exp), "--json"]
    argv += ["--journal-dir", str(journal), "--tls-cert", str(tls.cert)]
    argv += ["--tls-key", str(tls.key), "--tls-ca", str(tls.ca)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- without root: what an experiment and the commands accept ------------------------------


def test_an_experiment_names_declared_agents_with_https_urls() -> None:
    step = {"id": "s", "fault": "point", "params": {"point": "p"}, "agent": "n0"}
    with pytest.raises(ExperimentError, match="agent 'n0' is not declared"):
        experiment_from_dict({"title": "t", "method": [step]})
    for url in ("http://10.0.0.1:7421", "https://10.0.0.1", "not a url", 7):
        with pytest.raises(ExperimentError, match="agent n0: "):
            experiment_from_dict({"title": "t", "method": [step], "agents": {"n0": url}})
    with pytest.raises(ExperimentError, match="agent name"):
        experiment_from_dict({"title": "t", "method": [], "agents": {"bad name": "https://a:1"}})
    exp = experiment_from_dict(
        {
            "title": "t",
            "agents": {"n0": "https://10.0.0.1:7421", "n1": "https://host.example:7421"},
            "method": [
                {**step, "targets": [{"point": "a"}, {"point": "b", "agent": "n1"}]},
            ],
        }
    )
    assert exp.agents["n1"] == "https://host.example:7421"


def _tls_args(pem: str) -> list[str]:
    return ["--tls-cert", pem, "--tls-key", pem, "--tls-ca", pem]


def test_agent_and_controller_commands_refuse_bad_tls_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_bytes(b"")
    pem = str(tmp_path / "empty.pem")
    agent = subprocess.run(
        [PY, "-m", "tenfold.chaos_engine", "agent", "--name", "n0", *_tls_args(pem), "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert agent.returncode == 2, agent.stderr
    assert len(agent.stderr.strip().splitlines()) == 1 and "Traceback" not in agent.stderr
    assert not (tmp_path / ".tenfold").exists()  # nothing made before the check
    exp = tmp_path / "exp.toml"
    exp.write_text('title = "t"\nmethod = []\n[agents]\nn0 = "https://127.0.0.1:9"\n')
    run = subprocess.run(
        [PY, "-m", "tenfold.chaos_engine", "run", str(exp)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "--tls-cert" in run.stderr, run.stderr
    with pytest.raises(ExperimentError, match="NAME=https"):
        from tenfold.chaos_engine._controller import parse_agent

        parse_agent("n0")


# -- with root: agents on nodes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def agent_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tenfold.chaos_engine._agentnodes import AgentNodes
    from tenfold.core.nodes import leftover_nodes

    if os.geteuid() != 0:
        pytest.skip("needs root: nodes are network namespaces and cgroups")
    workdir = tmp_path_factory.mktemp("agents")
    with AgentNodes(3, workdir, cpu=0.5, lease_s=LEASE_S) as an:
        yield an
    assert leftover_nodes(an.nodes.prefix) == []


@needs_root("network namespaces, cgroups and nftables")
def test_the_controller_puts_faults_on_every_node_and_takes_them_out(agent_nodes: object) -> None:
    from tenfold.chaos_engine._faults import PacketLoss

    an = agent_nodes
    with an.controller() as controller:  # type: ignore[attr-defined]
        placed = [
            (f"n{i}", PacketLoss(netns=node.netns, percent=20, duration_s=60))
            for i, node in enumerate(an.nodes)  # type: ignore[attr-defined]
        ]
        faults = controller.inject_placed(placed)
        assert sorted(f.agent for f in faults) == ["n0", "n1", "n2"]
        for node in an.nodes:  # type: ignore[attr-defined]
            assert len(_tables(node.netns)) == 1  # in that node's namespace, by its agent
        assert controller.revert(faults) == 3
        assert all(_tables(n.netns) == [] for n in an.nodes)  # type: ignore[attr-defined]
        # One agent refusing a fault: the others' faults of that batch are taken out again.
        bad = [*placed[:2], ("n2", PacketLoss(netns="no_such_ns", percent=20, duration_s=60))]
        with pytest.raises(AgentError, match="n2"):
            controller.inject_placed(bad)
        assert all(_tables(n.netns) == [] for n in an.nodes)  # type: ignore[attr-defined]
        assert controller.lost() == {}


@needs_root("network namespaces, cgroups and nftables")
def test_a_client_without_the_controllers_certificate_is_refused(agent_nodes: object) -> None:
    from tenfold.chaos_engine._controller import Controller

    an = agent_nodes
    # An agent's own certificate comes from the same CA, but is not the controller's.
    other = Controller(an.refs[:1], an.tls["n1"], timeout_s=5)  # type: ignore[attr-defined]
    with pytest.raises(AgentError, match="refused"):
        other.connect()
    other.close()


CONTROLLER = """
import sys, time
from pathlib import Path
from tenfold.chaos_engine._controller import AgentRef, Controller
from tenfold.chaos_engine._faults import PacketLoss
from tenfold.core.tls import TlsFiles
name, url, netns, tls = sys.argv[1:5]
c = Controller([AgentRef(name, url)], TlsFiles(Path(tls + ".pem"), Path(tls + ".key"), Path(Path(tls).parent / "ca.pem"))).connect()
c.inject(name, [PacketLoss(netns=netns, percent=20, duration_s=600)])
print("injected", flush=True)
time.sleep(600)
"""


@needs_root("network namespaces, cgroups and nftables")
def test_an_agent_that_loses_its_controller_reverts_within_its_lease(agent_nodes: object) -> None:
    an = agent_nodes
    ref, node = an.refs[0], an.nodes[0]  # type: ignore[attr-defined]
    tls = str(an.tls["controller"].cert)[: -len(".pem")]  # type: ignore[attr-defined]
    controller = subprocess.Popen(
        [PY, "-c", CONTROLLER, ref.name, ref.url, node.netns, tls],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert controller.stdout is not None
    assert controller.stdout.readline().strip() == "injected"
    assert len(_tables(node.netns)) == 1
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    took = _wait(lambda: not _tables(node.netns), LEASE_S + 3, "the agent reverting by itself")
    assert took <= LEASE_S + 1.0  # the fault's own TTL is 600 s: the lease did it


@needs_root("network namespaces, cgroups and nftables")
def test_killing_an_agent_mid_experiment_loses_its_node_and_aborts(
    tmp_path: Path, agent_nodes: object
) -> None:
    an = agent_nodes
    run = _cli_run(an, _experiment(an, tmp_path / "exp.toml", 60), tmp_path / "journal")
    nodes = an.nodes  # type: ignore[attr-defined]
    _wait(lambda: all(_tables(n.netns) for n in nodes), 60, "faults on every node")
    victim = an.procs[1]  # type: ignore[attr-defined]
    killed = time.monotonic()
    victim.send_signal(signal.SIGKILL)  # the agent process; its watchdog lives on
    out, err = run.communicate(timeout=60)
    ended = time.monotonic() - killed
    report = json.loads(out)
    assert run.returncode == 1, err
    assert report["status"] == "failed" and "agent 'n1' lost" in report["reason"]
    assert list(report["agents_lost"]) == ["n1"]
    assert ended <= LEASE_S + 5  # lost within half a lease, aborted at once
    # The killed agent's faults were reverted by its watchdog, the others' by the abort.
    assert all(_tables(n.netns) == [] for n in nodes)
    _restart_agent(an, 1)


def _restart_agent(an: object, index: int) -> None:
    """Bring a killed agent back so the module's later tests have all three."""
    name, node = f"n{index}", an.nodes[index]  # type: ignore[attr-defined]
    an.procs[index].wait()  # type: ignore[attr-defined]
    proc = an._spawn(name, node)  # type: ignore[attr-defined]
    an.procs[index] = proc  # type: ignore[attr-defined]
    an._wait_ready(name, proc)  # type: ignore[attr-defined]


@needs_root("network namespaces, cgroups and nftables")
def test_a_whole_node_killed_is_cleaned_by_chaos_recover_on_it(
    tmp_path: Path, agent_nodes: object
) -> None:
    from tenfold.chaos_engine._faults import PacketLoss

    an = agent_nodes
    node = an.nodes[2]  # type: ignore[attr-defined]
    with an.controller() as controller:  # type: ignore[attr-defined]
        controller.inject_placed(
            [
                (f"n{i}", PacketLoss(netns=n.netns, percent=20, duration_s=600))
                for i, n in enumerate(an.nodes)  # type: ignore[attr-defined]
            ]
        )
        node.kill()  # every process in the node: the agent and its watchdog
        assert controller.wait_lost(LEASE_S + 5) is not None
        assert "n2" in controller.lost()
        assert len(_tables(node.netns)) == 1  # nobody left on that node to revert it
    assert _tables(an.nodes[0].netns) == [] and _tables(an.nodes[1].netns) == []
    journal = str(an.journal_dir(2))  # type: ignore[attr-defined]
    recover = node.spawn(
        [PY, "-m", "tenfold.chaos_engine", "recover", "--json", "--journal-dir", journal],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = recover.communicate(timeout=120)
    assert recover.returncode == 0
    reverted = json.loads(out)["journals"][0]["faults_reverted"]
    assert len(reverted) == 1 and _tables(node.netns) == []
    _restart_agent(an, 2)


NODE_TTL_S = 30.0
_LOOPBACK_PROBE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(1.0)
try:
    s.sendto(b"x", s.getsockname())
    s.recv(1)
    print("pass")
except OSError:
    print("blocked")
"""


def _loopback(netns: str) -> str:
    """'pass' when a datagram to the namespace's own loopback arrives, else 'blocked'."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, PY, "-S", "-c", _LOOPBACK_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def _ttl_elements(netns: str, table: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "set", "inet", table, "ttl"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "".join(line for line in out.splitlines() if "elements" in line)


@needs_root("network namespaces, cgroups and nftables")
def test_a_whole_node_killed_mid_experiment_loses_its_faults_at_their_ttl(
    tmp_path: Path, agent_nodes: object
) -> None:
    """Every process of a node dies (agent, watchdog, delayer): nobody is left there to
    revert, yet its fault stops acting at its TTL, because the TTL is also in the kernel.
    The controller reports the node lost and the abort reverts the other nodes' faults."""
    an = agent_nodes
    nodes = an.nodes  # type: ignore[attr-defined]
    refs = an.refs  # type: ignore[attr-defined]
    agents = "\n".join(f'{r.name} = "{r.url}"' for r in refs)
    targets = ", ".join(f'{{agent = "n{i}", netns = "{n.netns}"}}' for i, n in enumerate(nodes))
    exp = tmp_path / "exp.toml"
    exp.write_text(  # every datagram on each node's loopback dropped, for NODE_TTL_S
        f'title = "node dies"\n[agents]\n{agents}\n'
        '[[method]]\nid = "loss"\nfault = "packet_loss"\n'
        f'params = {{percent = 100, interface = "lo", duration_s = {NODE_TTL_S}}}\n'
        f'targets = [{targets}]\n[[method]]\nid = "hold"\npause_s = 120\n'
    )
    started = time.monotonic()  # the kernel's timers start later than this
    run = _cli_run(an, exp, tmp_path / "journal")
    _wait(lambda: all(_tables(n.netns) for n in nodes), 60, "faults on every node")
    victim = nodes[1]
    victim.kill()  # the whole node: agent, watchdog and every helper process
    _wait(lambda: not victim.pids(), 30, "every process of the node gone")
    out, err = run.communicate(timeout=120)
    report = json.loads(out)
    assert run.returncode == 1, err
    assert report["status"] == "failed" and "agent 'n1' lost" in report["reason"]
    assert list(report["agents_lost"]) == ["n1"]
    assert _tables(nodes[0].netns) == [] and _tables(nodes[2].netns) == []  # the abort
    (table,) = _tables(victim.netns)  # nobody on the node reverted it ...
    if time.monotonic() - started < NODE_TTL_S - 5:  # surely before its TTL
        assert _loopback(victim.netns) == "blocked"  # ... and it still acts
        assert "ipv4" in _ttl_elements(victim.netns, table)
    assert _loopback(nodes[0].netns) == "pass"
    # The kernel's timer ends it (its TTL plus a second's grace; ample slack for a
    # loaded machine), with no process on the node.
    _wait(
        lambda: _loopback(victim.netns) == "pass",
        NODE_TTL_S + KERNEL_TTL_GRACE_S + 30,
        "the fault ending at its kernel TTL",
    )
    assert time.monotonic() - started >= NODE_TTL_S  # not before its TTL
    assert victim.pids() == [] and _ttl_elements(victim.netns, table) == ""
    # The inert table is still there; chaos recover on the node removes it from the journal.
    assert _tables(victim.netns) == [table]
    recover = victim.spawn(
        [
            PY,
            "-m",
            "tenfold.chaos_engine",
            "recover",
            "--json",
            "--journal-dir",
            str(an.journal_dir(1)),
        ],  # type: ignore[attr-defined]
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = recover.communicate(timeout=120)
    assert recover.returncode == 0 and _tables(victim.netns) == []
    _restart_agent(an, 1)


@needs_root("network namespaces, cgroups and nftables")
def test_an_experiment_runs_across_nodes_and_reverts_everything(
    tmp_path: Path, agent_nodes: object
) -> None:
    an = agent_nodes
    nodes = an.nodes  # type: ignore[attr-defined]
    seen: list[bool] = []

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            if all(len(_tables(n.netns)) == 1 for n in nodes):
                seen.append(True)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    run = _cli_run(an, _experiment(an, tmp_path / "exp.toml", 1.5), tmp_path / "journal")
    out, err = run.communicate(timeout=120)
    watcher.join()
    report = json.loads(out)
    assert run.returncode == 0, err
    assert report["status"] == "completed" and report["faults_injected"] == 3
    assert seen == [True]
    assert all(_tables(n.netns) == [] for n in nodes)


def test_agent_lost_is_an_agent_error() -> None:
    assert issubclass(AgentLost, AgentError)
