"""OS-plane faults against the real kernel (root): cgroups, nftables, tbf, freezer, blkio."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenfold.chaos_engine import (
    Bandwidth,
    ChaosEngine,
    ConnectionReset,
    CpuHog,
    DiskError,
    DiskLatency,
    DiskThrottle,
    MemoryHog,
    NetworkLatency,
    PacketLoss,
    Partition,
    PerformanceConfig,
    ProcessKill,
    ProcessPause,
    recover,
)
from tenfold.chaos_engine._kernel import cgroup_dir, tenfold_cgroups
from tenfold.chaos_engine.errors import JournalLocked, TargetGone

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("root_only")]

RUN = str(os.getpid() % 100000)  # names unique per test process: runs may overlap
A, B = f"tfchaos_tA{RUN}", f"tfchaos_tB{RUN}"


def exp(n: int) -> str:
    """The experiment name of test ``n`` (its kernel objects are ``tfchaos_<name>_...``)."""
    return f"t{n}x{RUN}"


ADDR_A, ADDR_B = "10.213.0.1", "10.213.0.2"


def sh(cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    for ns in (A, B):
        sh(f"ip netns delete {ns}")
    for cmd in (
        f"ip netns add {A}",
        f"ip netns add {B}",
        f"ip link add tfcA netns {A} type veth peer name tfcB netns {B}",
        f"ip -n {A} addr add {ADDR_A}/24 dev tfcA",
        f"ip -n {B} addr add {ADDR_B}/24 dev tfcB",
        f"ip -n {A} link set tfcA up",
        f"ip -n {B} link set tfcB up",
        f"ip -n {A} link set lo up",
        f"ip -n {B} link set lo up",
    ):
        proc = sh(cmd)
        assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
    yield A, B
    for ns in (A, B):
        sh(f"ip netns delete {ns}")


def connect_outcome(port: int = 9, timeout_s: float = 0.5) -> str:
    """From A, TCP-connect to B:port (nothing listens): refused, reset or timeout."""
    code = textwrap.dedent(
        f"""
        import socket
        s = socket.socket(); s.settimeout({timeout_s})
        try:
            s.connect(("{ADDR_B}", {port})); print("open")
        except ConnectionRefusedError: print("refused")
        except ConnectionResetError: print("reset")
        except (TimeoutError, socket.timeout): print("timeout")
        except OSError as e: print("error", e)
        """
    )
    out = subprocess.run(
        ["ip", "netns", "exec", A, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def chaos_mounts() -> list[str]:
    """Mount points of our FUSE filesystems (fsname ``tfchaos``)."""
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [line.split()[1] for line in lines if line.split()[0] == "tfchaos"]


def tables(ns: str) -> str:
    return sh(f"ip netns exec {ns} nft list tables").stdout


def perf() -> PerformanceConfig:
    return PerformanceConfig.model_validate({})


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_network_faults_act_and_revert(netns_pair: tuple[str, str], tmp_path: Path) -> None:
    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), journal_dir=tmp_path, experiment=exp(1)
        ) as engine:
            assert connect_outcome() == "refused"
            part = await engine.inject_fault(Partition(netns=A, peer=f"{ADDR_B}/32"))
            assert f"tfchaos_{exp(1)}_" in tables(A)
            assert connect_outcome() == "timeout"
            await part.revert()
            assert tables(A).strip() == ""
            assert connect_outcome() == "refused"

            loss = await engine.inject_fault(PacketLoss(netns=A, percent=100))
            assert connect_outcome() == "timeout"
            await loss.revert()

            reset = await engine.inject_fault(ConnectionReset(netns=A, port=9))
            assert connect_outcome() in ("refused", "reset")
            await reset.revert()

            bw = await engine.inject_fault(
                Bandwidth(netns=A, interface="tfcA", rate_bytes_per_s=125_000)
            )
            assert "tbf" in sh(f"tc -n {A} qdisc show dev tfcA").stdout
            await bw.revert()
            assert "tbf" not in sh(f"tc -n {A} qdisc show dev tfcA").stdout

            with pytest.raises(TargetGone, match="'nope0' does not exist"):
                await engine.inject_fault(NetworkLatency(netns=A, interface="nope0"))
            with pytest.raises(TargetGone, match="does not exist"):
                await engine.inject_fault(Bandwidth(netns=A, interface="nope0"))
            with pytest.raises(TargetGone, match="namespace 'tfchaos_missing'"):
                await engine.inject_fault(Partition(netns="tfchaos_missing", peer="10.0.0.1"))

            # namespace deleted under a fault: revert still succeeds
            held = await engine.inject_fault(PacketLoss(netns=B, percent=50))
            sh(f"ip netns delete {B}")
            await held.revert()

    run(main())


ECHO = textwrap.dedent(
    """
    import socket, sys
    srv = socket.socket(socket.AF_INET6); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 and IPv6
    srv.bind(("::", int(sys.argv[1]))); srv.listen(); print("up", flush=True)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(4096):
            conn.sendall(data)
        conn.close()
    """
)

ROUND_TRIPS = textwrap.dedent(
    """
    import socket, sys, time
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(int(sys.argv[3])):
        start = time.perf_counter(); sock.sendall(b"x" * 64); sock.recv(64)
        print((time.perf_counter() - start) * 1000)
    """
)


def round_trips_ms(port: int, count: int = 30, address: str = ADDR_B) -> list[float]:
    """TCP echo round trips from namespace A to B's echo server, sorted."""
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            A,
            sys.executable,
            "-c",
            ROUND_TRIPS,
            address,
            str(port),
            str(count),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return sorted(float(x) for x in out.stdout.split())


@pytest.fixture
def echo_in_b(netns_pair: tuple[str, str]) -> Iterator[int]:
    port = 7000 + os.getpid() % 1000
    server = subprocess.Popen(
        ["ip", "netns", "exec", B, sys.executable, "-c", ECHO, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "up"
    yield port
    server.kill()
    server.wait()


def command_lines() -> list[str]:
    """Every process's full command line (``ps`` may cut long ones at 80 columns)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue  # exited meanwhile
    return found


def delayers(owner: Path) -> list[str]:
    """Packet delayer processes of the engine whose journal is under ``owner``."""
    return [a for a in command_lines() if "_delayer.py" in a and str(owner) in a]


ADDR6_A, ADDR6_B = "fd00:213::1", "fd00:213::2"


def test_network_latency_delays_traffic_and_reverts(echo_in_b: int, tmp_path: Path) -> None:
    port = echo_in_b
    for ns, dev, addr in ((A, "tfcA", ADDR6_A), (B, "tfcB", ADDR6_B)):
        assert sh(f"ip -n {ns} addr add {addr}/64 dev {dev} nodad").returncode == 0
    assert round_trips_ms(port, 3, ADDR6_B)  # IPv6 answers before any fault

    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), journal_dir=tmp_path, experiment=exp(6)
        ) as engine:
            assert round_trips_ms(port)[15] < 15  # no fault: well under the delay
            slow = await engine.inject_fault(
                NetworkLatency(netns=A, interface="tfcA", latency_ms=30)
            )
            table = engine.object_name(slow.fault_id)
            listed = sh(f"ip netns exec {A} nft list table inet {table}")
            assert "queue num" in listed.stdout and 'oifname "tfcA"' in listed.stdout
            for address in (ADDR_B, ADDR6_B):  # one inet table: IPv4 and IPv6 alike
                trips = round_trips_ms(port, address=address)
                assert trips[0] >= 30  # every request waited in the queue (one direction)
                assert trips[15] < 30 + 25  # and not for much longer
            await slow.revert()
            assert tables(A).strip() == ""
            assert round_trips_ms(port)[15] < 15

            # scoped to a port: another port's traffic is not delayed
            other = await engine.inject_fault(
                NetworkLatency(netns=A, interface="tfcA", latency_ms=30, port=port + 1)
            )
            assert round_trips_ms(port)[15] < 15
            await other.revert()

            jitter = await engine.inject_fault(
                NetworkLatency(netns=A, interface="tfcA", latency_ms=20, jitter_ms=10)
            )
            trips = round_trips_ms(port, 60)
            assert trips[0] >= 10 and trips[-1] - trips[0] > 5  # spread by the jitter
            assert delayers(tmp_path)
            sh(f"ip netns exec {A} nft flush ruleset")  # its table deleted under the engine
            await jitter.revert()
            assert tables(A).strip() == ""
        assert delayers(tmp_path) == []  # closing the engine stops the namespace's delayer

    run(main())


def test_batched_injection_is_all_or_nothing(netns_pair: tuple[str, str], tmp_path: Path) -> None:
    """A batch shares one fsync and one nft transaction; a bad member undoes the batch."""
    from tenfold.chaos_engine.errors import InjectionFailed, InvalidFault

    def ours() -> int:
        return tables(A).count(f"tfchaos_{exp(7)}_")

    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), journal_dir=tmp_path, experiment=exp(7)
        ) as engine:
            batch = [PacketLoss(netns=A, percent=5 + i) for i in range(20)]
            handles = await engine.inject_faults(batch)
            assert ours() == 20 and engine.active_faults == 20
            journal = (tmp_path / f"{exp(7)}.journal").read_text()
            assert journal.count('"op":"inject"') == 20
            assert await engine.revert_all() == 20
            assert ours() == 0
            assert all(not h.active for h in handles)

            # nft refuses one member: the transaction is retried one by one, the
            # culprit named, and the good members taken out again
            bad = Partition(netns=A, peer="10.0.0.300")
            with pytest.raises(InjectionFailed, match="nft: "):
                await engine.inject_faults([PacketLoss(netns=A), bad, PacketLoss(netns=A)])
            assert ours() == 0 and engine.active_faults == 0
            with pytest.raises(TargetGone):
                await engine.inject_faults([PacketLoss(netns=A), PacketLoss(netns="tfchaos_nope")])
            assert ours() == 0
            with pytest.raises(InvalidFault, match="duplicate fault id 'x'"):
                await engine.inject_faults(
                    [PacketLoss(netns=A, fault_id="x"), PacketLoss(netns=A, fault_id="x")]
                )

    run(main())


def test_hogs_pause_kill_and_throttle(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])

    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), journal_dir=tmp_path, experiment=exp(2)
        ) as engine:
            hog = await engine.inject_fault(CpuHog(duration_s=5))
            usage = cgroup_dir("cpuacct", engine.object_name("pool")) / "cpuacct.usage"
            before = int(usage.read_text())
            for _ in range(100):  # the hog burns inside the pool's cgroup
                await asyncio.sleep(0.02)
                if int(usage.read_text()) - before > 50_000_000:
                    break
            assert int(usage.read_text()) - before > 50_000_000
            await hog.revert()
            mem = await engine.inject_fault(MemoryHog(size_bytes=64 << 20))
            used = int(
                (
                    cgroup_dir("memory", engine.object_name("pool") + "mem")
                    / "memory.usage_in_bytes"
                ).read_text()
            )
            assert used >= 64 << 20
            await mem.revert()

            pause = await engine.inject_fault(ProcessPause(pid=sleeper.pid))
            assert (
                cgroup_dir("freezer", engine.object_name(pause.fault_id)) / "freezer.state"
            ).read_text().strip() == "FROZEN"
            await pause.revert()
            assert "tfchaos" not in Path(f"/proc/{sleeper.pid}/cgroup").read_text()

            throttle = await engine.inject_fault(DiskThrottle(pid=sleeper.pid, path=str(tmp_path)))
            assert (
                str(sleeper.pid)
                in (
                    cgroup_dir("blkio", engine.object_name(throttle.fault_id)) / "cgroup.procs"
                ).read_text()
            )
            await throttle.revert()

            await engine.inject_fault(ProcessKill(pid=sleeper.pid, signal=15))
            assert sleeper.wait(5) == -15
            with pytest.raises(TargetGone):
                await engine.inject_fault(ProcessPause(pid=sleeper.pid))

    try:
        run(main())
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not tenfold_cgroups(f"tfchaos_{exp(2)}")


CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from tenfold.chaos_engine import *
    journal, victim, watchdog = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    name = sys.argv[4]
    (journal / "src").mkdir(parents=True, exist_ok=True)
    (journal / "mnt").mkdir(parents=True, exist_ok=True)
    disk = dict(mount=str(journal / "mnt"), source=str(journal / "src"), duration_s=60)
    async def main():
        engine = await ChaosEngine.create(
            PerformanceConfig.model_validate({}), journal_dir=journal, experiment=name,
            watchdog=watchdog)
        for fault in (
            CpuHog(duration_s=60), MemoryHog(size_bytes=8 << 20, duration_s=60),
            PacketLoss(netns="%(A)s", percent=30, duration_s=60),
            Partition(netns="%(A)s", peer="10.9.9.9", duration_s=60),
            ConnectionReset(netns="%(A)s", port=80, duration_s=60),
            Bandwidth(netns="%(A)s", interface="tfcA", duration_s=60),
            NetworkLatency(netns="%(A)s", interface="tfcA", latency_ms=5, duration_s=60),
            ProcessPause(pid=victim, duration_s=60),
            DiskThrottle(pid=victim, path=str(journal), duration_s=60),
            DiskError(path_glob="*.db", **disk), DiskLatency(latency_ms=5, **disk),
        ):
            await engine.inject_fault(fault)
        print("ready", flush=True)
        time.sleep(60)
    asyncio.run(main())
    """
) % {"A": A}


def _leftovers(victim: int, tmp: Path) -> list[str]:
    found = [str(p) for p in tenfold_cgroups(f"tfchaos_{exp(3)}")]
    if "tfchaos" in tables(A):
        found.append("nft table")
    if "tbf" in sh(f"tc -n {A} qdisc show dev tfcA").stdout:
        found.append("tbf qdisc")
    found += delayers(tmp)  # the latency fault's packet delayer (its nft table is above)
    if "tfchaos" in Path(f"/proc/{victim}/cgroup").read_text():
        found.append("victim still in a chaos cgroup")
    helpers = [a for a in sh("ps -eo args").stdout.splitlines() if str(tmp) in a]
    found += [f"process {a}" for a in helpers]  # hog workers and the FUSE server name tmp
    if any(m.startswith(str(tmp)) for m in chaos_mounts()):
        found.append("FUSE mount")
    return found


def _settled_leftovers(victim: int, tmp: Path, timeout_s: float = 3.0) -> list[str]:
    """Leftovers once a SIGKILLed helper has finished dying (the kernel tears down async)."""
    deadline = time.monotonic() + timeout_s
    found = _leftovers(victim, tmp)
    while found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = _leftovers(victim, tmp)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("how", ["recover", "watchdog", "reopen"])
def test_sigkill_then_recover_leaves_nothing(
    netns_pair: tuple[str, str], tmp_path: Path, how: str
) -> None:
    watchdog = how == "watchdog"
    victim = subprocess.Popen(["sleep", "60"])
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path),
            str(victim.pid),
            "1" if watchdog else "0",
            exp(3),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert _leftovers(victim.pid, tmp_path)  # the faults are really in place
        with pytest.raises(JournalLocked):
            recover(tmp_path / f"{exp(3)}.journal")  # the engine is alive: recover refuses
        child.send_signal(signal.SIGKILL)
        child.wait()
        if watchdog:
            deadline = time.monotonic() + 10
            while _leftovers(victim.pid, tmp_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _leftovers(victim.pid, tmp_path) == []
        if how == "reopen":  # a new engine on the same journal undoes its predecessor's faults

            async def reopen() -> list[str]:
                engine = await ChaosEngine.create(perf(), journal_dir=tmp_path, experiment=exp(3))
                await engine.close()
                return engine.recovered

            # 11 faults, the hog pool, the FUSE mount, the packet delayer
            assert len(run(reopen())) == 14
            assert _settled_leftovers(victim.pid, tmp_path) == []
        report = recover(tmp_path / f"{exp(3)}.journal")
        assert report.errors == []
        if how == "recover":
            assert len(report.faults_reverted) == 11
            assert [r.split(":")[0] for r in report.resources_released] == [
                "delayer",
                "mount",
                "pool",
            ]
        assert _settled_leftovers(victim.pid, tmp_path) == []
        state = Path(f"/proc/{victim.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in ("S", "R")  # thawed
    finally:
        child.kill()
        child.wait()
        victim.kill()
        victim.wait()


def test_disk_faults_through_fuse(tmp_path: Path) -> None:
    import errno

    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    (src / "a.db").write_text("rows")
    (src / "b.log").write_text("lines")

    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), journal_dir=tmp_path / "j", experiment=exp(5)
        ) as engine:
            fail = await engine.inject_fault(
                DiskError(mount=str(mnt), source=str(src), path_glob="*.db", errno_name="EIO")
            )
            assert chaos_mounts() == [str(mnt)]
            with pytest.raises(OSError) as info:
                (mnt / "a.db").read_text()
            assert info.value.errno == errno.EIO
            assert (mnt / "b.log").read_text() == "lines"  # the glob spares other paths
            await fail.revert()
            assert (mnt / "a.db").read_text() == "rows"
            slow = await engine.inject_fault(
                DiskLatency(mount=str(mnt), source=str(src), latency_ms=30, operations=("read",))
            )
            start = time.perf_counter()
            assert (mnt / "b.log").read_text() == "lines"
            assert time.perf_counter() - start >= 0.03
            (mnt / "new.txt").write_text("written through")
            assert (src / "new.txt").read_text() == "written through"
            await slow.revert()
            with pytest.raises(TargetGone, match="must be an empty directory"):
                await engine.inject_fault(DiskError(mount=str(src), source=str(mnt)))

    run(main())
    assert chaos_mounts() == []  # closed: unmounted


def test_target_exiting_mid_fault_still_reverts(tmp_path: Path) -> None:
    throttled = subprocess.Popen(["sleep", "30"])
    paused = subprocess.Popen(["sleep", "30"])

    async def main() -> None:
        async with await ChaosEngine.create(
            perf(), journal_dir=tmp_path, experiment=exp(4)
        ) as engine:
            throttle = await engine.inject_fault(
                DiskThrottle(pid=throttled.pid, path=str(tmp_path))
            )
            throttled.kill()
            throttled.wait()
            await throttle.revert()  # the process is gone: its cgroup still goes
            pause = await engine.inject_fault(ProcessPause(pid=paused.pid))
            paused.kill()  # pending until thawed: the revert lets it die
            await pause.revert()
            assert paused.wait(5) == -9

    try:
        run(main())
    finally:
        for proc in (throttled, paused):
            proc.kill()
            proc.wait()
    assert not tenfold_cgroups(f"tfchaos_{exp(4)}")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["method", "rollback"])
def test_ctrl_c_during_run_or_rollback_reverts(
    netns_pair: tuple[str, str], tmp_path: Path, when: str
) -> None:
    """SIGINT while a fault is in place (during the method, or while rollbacks run)."""
    nap = f"3.{RUN}"  # a duration no other process in the machine sleeps for
    experiment = tmp_path / "ctrlc.toml"
    experiment.write_text(
        textwrap.dedent(
            f"""
            title = "ctrl-c"
            [[method]]
            id = "loss"
            fault = "packet_loss"
            params = {{ netns = "{A}", percent = 20, duration_s = 60 }}
            [[method]]
            id = "wait"
            pause_s = {30 if when == "method" else 0}
            [[rollbacks]]
            id = "slow-rollback"
            action = {{ type = "process", path = "sleep", arguments = ["{nap if when == "rollback" else 0}"] }}
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenfold.chaos_engine", "run", str(experiment)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        if when == "method":
            while "tfchaos_ctrlc_" not in tables(A) and time.monotonic() < deadline:
                time.sleep(0.05)
        else:  # faults are reverted before rollbacks start; interrupt the rollback itself
            while f"sleep {nap}" not in sh("ps -eo args").stdout and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err  # interrupted, after the cleanup finished
        assert "tenfold: interrupted" in err
        assert tables(A).strip() == ""
        assert "Traceback" not in err
    finally:
        proc.kill()
        proc.wait()
    assert f"sleep {nap}" not in sh("ps -eo args").stdout  # the rollback's process is not orphaned
