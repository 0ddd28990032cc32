from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tenfold.cloud_kernel import CloudKernelError, SocketFilter, SyscallTracer, VerifierRejected
from tenfold.cloud_kernel._e2e import run_e2e
from tenfold.cloud_kernel._libbpf import BpfObject
from tenfold.cloud_kernel._status import program_ids_of, tenfold_programs
from tenfold.cloud_kernel._testing import root_only, run_cli

pytestmark = [root_only, pytest.mark.root]


def test_xdp_over_veth_drops_every_blocked_and_delivers_every_allowed() -> None:
    result = run_e2e("xdp", entries=1_000, count=20_000, blocked_every=2, rate_pps=50_000)
    assert result.dropped == result.blocked_sent == 10_000
    assert result.delivered_blocked == 0
    assert result.delivered_allowed == result.allowed_sent == 10_000


def test_nftables_peer_gives_the_same_verdicts() -> None:
    result = run_e2e("nftables", entries=1_000, count=10_000, blocked_every=2, rate_pps=50_000)
    assert result.dropped == result.blocked_sent
    assert result.delivered_allowed == result.allowed_sent


@pytest.mark.parametrize("kind", ["xdp", "nftables"])
def test_frames_made_as_pages_get_the_same_verdicts(kind: str) -> None:
    # The in-kernel source sends pktgen.c's sequence: half the frames from the blocked /24.
    result = run_e2e(kind, entries=1_000, count=20_000, blocked_every=2, source="pages")
    assert result.sent == 20_000
    assert result.dropped == result.blocked_sent == 10_000
    assert result.delivered_blocked == 0
    assert result.delivered_allowed == result.allowed_sent == 10_000
    assert len(result.cpu_busy_s) == os.cpu_count()
    assert result.sender_cpu_s > 0


def test_tracer_counts_this_process_syscalls_with_latency() -> None:
    with SyscallTracer(pid=os.getpid()) as tracer:
        for _ in range(5_000):
            os.getppid()
        for _ in range(100):
            with contextlib.suppress(FileNotFoundError):
                os.stat("/nonexistent/tenfold")
        stats = {s.name: s for s in tracer.snapshot()}
    assert stats["getppid"].count >= 5_000
    assert sum(stats["getppid"].histogram) == stats["getppid"].count
    assert stats["getppid"].mean_ns > 0
    assert stats["newfstatat"].errors >= 100


def test_tracer_filters_by_command_and_pid() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        with SyscallTracer(pid=child.pid) as tracer:
            for _ in range(1_000):
                os.getppid()
            names = {s.name for s in tracer.snapshot()}
        assert "getppid" not in names  # our calls are not the child's
        with SyscallTracer(comm="tfk-nobody-xyz") as tracer:
            os.getppid()
            assert tracer.snapshot() == []
    finally:
        child.kill()
        child.wait()
    with pytest.raises(CloudKernelError, match="no process with pid"):
        SyscallTracer(pid=2**22 + 7)
    with pytest.raises(CloudKernelError, match="1 to 15 bytes"):
        SyscallTracer(comm="x" * 40)


def test_socket_filter_drops_only_the_matching_port() -> None:
    with (
        SocketFilter("udp", 0, drop=False) as counting,
        SocketFilter("udp", 0, drop=True) as dropping,
    ):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.settimeout(0.5)
        b.settimeout(0.2)
        counting.attach(a)
        dropping.attach(b)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            sender.sendto(b"x", a.getsockname())
            sender.sendto(b"y", b.getsockname())
        assert sum(1 for _ in range(20) if a.recv(8) == b"x") == 20
        with pytest.raises(TimeoutError):
            b.recv(8)
        assert counting.stats().seen == 20 and counting.stats().dropped == 0
        assert dropping.stats().dropped == 20
        SocketFilter.detach(b)
        sender.sendto(b"z", b.getsockname())
        assert b.recv(8) == b"z"
        for s in (a, b, sender):
            s.close()
    with pytest.raises(CloudKernelError, match="unknown protocol"):
        SocketFilter("sctp")


def test_verifier_rejection_shows_the_log(tmp_path) -> None:
    from tenfold.cloud_kernel._build import cache_dir, vmlinux_header

    src = tmp_path / "bad.bpf.c"
    src.write_text(
        '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'
        'SEC("xdp") int bad(struct xdp_md *ctx) {\n'
        "  unsigned char *p = (void *)(long)ctx->data;\n"
        "  return p[100];  /* no bounds check: the verifier must refuse */\n}\n"
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    obj = tmp_path / "bad.o"
    subprocess.run(
        [
            "clang",
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-I",
            str(vmlinux_header().parent),
            "-c",
            str(src),
            "-o",
            str(obj),
        ],
        check=True,
    )
    with pytest.raises(VerifierRejected, match="invalid access to packet"):
        BpfObject(obj).load(["bad"])
    assert cache_dir().is_dir()


def test_programs_go_away_when_the_owner_is_killed() -> None:
    code = (
        "import os, time\n"
        "from tenfold.cloud_kernel import SyscallTracer, XdpBlockList\n"
        "t = SyscallTracer(pid=os.getpid()); b = XdpBlockList()\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    ids = program_ids_of(proc.pid)
    owned = [p for p in tenfold_programs() if p["id"] in ids]
    assert {p["name"] for p in owned} >= {"trace_enter", "trace_exit", "xdp_blocklist"}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ids & {p["id"] for p in tenfold_programs()}:
        time.sleep(0.1)
    assert not ids & {p["id"] for p in tenfold_programs()}


def test_cli_trace_and_sockfilter_json() -> None:
    r = run_cli("kernel", "trace", "syscalls", "--duration", "0.5", "--json", "--top", "5")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows and {"syscall", "count", "mean_ns", "p95_ns", "histogram_log2_ns"} <= set(rows[0])
    bad = run_cli("kernel", "trace", "syscalls", "--duration", "-1")
    assert bad.returncode == 2 and "must be positive" in bad.stderr
    r = run_cli("kernel", "bench", "--count", "2000", "--json")
    assert r.returncode == 0, r.stderr
    assert [row["name"] for row in json.loads(r.stdout)] == [
        "read",
        "write",
        "open",
        "close",
        "stat",
    ]
