"""Shared Core benchmarks: the document's Resource Governor, Plugin System and Cryptography tables.

Micro-operations are timed in batches (one op call does ``n`` checks and
reports ``n`` units), so the per-unit latency is the batch time over ``n``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import threading
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario, Seed, Subject
from tenfold.core.crypto import AesGcm, Ed25519Key, blake3, verify_ed25519
from tenfold.core.errors import BenchError, SandboxViolation
from tenfold.core.governor import Governor, GovernorConfig, SandboxPolicy
from tenfold.core.plugins import PluginManager, PluginRecord, PluginState

GOV = "Resource Governor"
PLUG = "Plugin System"
CRYPTO = "Cryptography"


def _ver(dist: str) -> str:
    try:
        return f"{dist} {version(dist)}"
    except Exception:
        return dist


def _batch(n: int, fn: Callable[[], object]) -> Op:
    def op() -> int:
        for _ in range(n):
            fn()
        return n

    return op


def _governor(ctx: BenchContext) -> Governor:
    def make() -> Governor:
        gov = Governor(
            GovernorConfig(io_rate_bytes_per_s=10**12, io_burst_bytes=10**12),
            sandbox=SandboxPolicy({"read": ("/srv/data", "/tmp/tenfold")}),
        )
        ctx.callback(gov.close)
        return gov

    return ctx.once("governor", make)


def _micro_n(ctx: BenchContext) -> int:
    return ctx.size(2_000, 50_000, 200_000)


# -- governor -------------------------------------------------------------------------


def _ours_throttle(ctx: BenchContext) -> Op:
    gov = _governor(ctx)
    return _batch(_micro_n(ctx), gov.throttle_cpu)


def _peer_throttle(ctx: BenchContext) -> Op:
    import psutil

    proc = psutil.Process()
    proc.cpu_percent(None)
    return _batch(_micro_n(ctx) // 20, lambda: proc.cpu_percent(None) > 100.0)


def _ours_memory(ctx: BenchContext) -> Op:
    gov = _governor(ctx)
    return _batch(_micro_n(ctx), lambda: gov.check_memory(4096))


def _peer_memory(ctx: BenchContext) -> Op:
    import psutil

    proc = psutil.Process()
    limit = 2 * 1024**3
    return _batch(_micro_n(ctx) // 20, lambda: proc.memory_info().rss + 4096 <= limit)


def _ours_io(ctx: BenchContext) -> Op:
    gov = _governor(ctx)
    return _batch(_micro_n(ctx), lambda: gov.acquire_io(4096))


def _limits_io(ctx: BenchContext) -> Callable[[], bool]:
    from limits import RateLimitItemPerSecond
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    limiter = FixedWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(10**12)
    return lambda: bool(limiter.hit(item, "io", cost=4096))


def _peer_io(ctx: BenchContext) -> Op:
    return _batch(_micro_n(ctx) // 5, _limits_io(ctx))


def _contended(n: int, fn: Callable[[], object]) -> Op:
    """Two threads each make ``n // 2`` acquisitions at once."""

    def op() -> int:
        half = n // 2
        barrier = threading.Barrier(2)

        def work() -> None:
            barrier.wait()
            for _ in range(half):
                fn()

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return 2 * half

    return op


def _ours_io_contended(ctx: BenchContext) -> Op:
    gov = _governor(ctx)
    return _contended(_micro_n(ctx), lambda: gov.acquire_io(4096))


def _peer_io_contended(ctx: BenchContext) -> Op:
    return _contended(_micro_n(ctx) // 5, _limits_io(ctx))


_SANDBOX_PATHS = ("/srv/data/a/b.txt", "/srv/data/../etc/passwd", "/tmp/tenfold/x", "/etc/shadow")


def _ours_sandbox(ctx: BenchContext) -> Op:
    gov = _governor(ctx)
    n = _micro_n(ctx)
    paths = [_SANDBOX_PATHS[i % 4] for i in range(n)]

    def op() -> int:
        check = gov.check_sandbox
        for path in paths:
            try:  # noqa: SIM105 - contextlib.suppress would dominate the timed check
                check(path, "read")
            except SandboxViolation:
                pass
        return n

    return op


def _peer_sandbox(ctx: BenchContext) -> Op:
    roots = (Path("/srv/data"), Path("/tmp/tenfold"))
    n = _micro_n(ctx) // 10
    paths = [Path(_SANDBOX_PATHS[i % 4]) for i in range(n)]

    def op() -> int:
        for path in paths:
            resolved = Path(os.path.normpath(path))
            _ = any(resolved.is_relative_to(root) for root in roots)
        return n

    return op


def _ours_cgroup_quota(ctx: BenchContext) -> Op:
    import subprocess
    import time

    from tenfold.core.governor import Cgroup

    quota = 50.0
    window_s = ctx.size(0.5, 2.0, 5.0)

    def op() -> Outcome:
        with Cgroup(f"bench-quota-{os.getpid()}", cpu_quota_pct=quota) as cg:
            child = cg.spawn([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)
            time.sleep(0.3)
            s0, t0 = cg.stats()["cpu_usage_ns"], time.monotonic()
            time.sleep(window_s)
            s1, t1 = cg.stats()["cpu_usage_ns"], time.monotonic()
        child.wait(5)
        share = 100 * (s1 - s0) / 1e9 / (t1 - t0)
        return Outcome(
            1,
            {"quota_pct": quota, "share_pct": round(share, 2), "error_pp": round(share - quota, 2)},
        )

    return op


def _peer_stress_ng_load(ctx: BenchContext) -> Op:
    """stress-ng holding one worker at 50% by its own duty cycle (no kernel quota)."""
    import shutil
    import subprocess
    import time

    import psutil

    tool = shutil.which("stress-ng")
    if tool is None:
        raise BenchError("stress-ng is not installed")
    window_s = ctx.size(0.5, 2.0, 5.0)

    def op() -> Outcome:
        proc = subprocess.Popen(
            [tool, "--cpu", "1", "--cpu-load", "50", "--timeout", str(int(window_s + 5))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            workers = psutil.Process(proc.pid).children(recursive=True)
            c0 = sum(w.cpu_times().user + w.cpu_times().system for w in workers)
            t0 = time.monotonic()
            time.sleep(window_s)
            c1 = sum(w.cpu_times().user + w.cpu_times().system for w in workers)
            share = 100 * (c1 - c0) / (time.monotonic() - t0)
        finally:
            proc.terminate()
            proc.wait(10)
        return Outcome(
            1,
            {"target_pct": 50.0, "share_pct": round(share, 2), "error_pp": round(share - 50.0, 2)},
        )

    return op


# -- plugins ------------------------------------------------------------------------------------

_PLUGIN_SOURCE = '''
"""A benchmark plugin: a real module with a hook implementation."""
import json, collections, dataclasses

class Plugin:
    def initialize(self, context):
        self.context = context
        self.table = {i: str(i) for i in range(64)}
    def execute(self, x):
        return x
    def stop(self):
        pass

plugin = Plugin()

try:
    import pluggy
    hookimpl = pluggy.HookimplMarker("tenfoldbench")
    @hookimpl
    def tf_execute(x):
        return x
    @hookimpl
    def tf_initialize(context):
        plugin.initialize(context)
except ImportError:
    pass
'''


def _plugin_dir(ctx: BenchContext) -> Path:
    def make() -> Path:
        folder = ctx.workdir.parent / "plugins"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tenfold_bench_plugin.py").write_text(_PLUGIN_SOURCE)
        sys.path.insert(0, str(folder))
        ctx.callback(lambda: sys.path.remove(str(folder)))
        return folder

    return ctx.once("plugin_dir", make)


def _fresh_import() -> object:
    sys.modules.pop("tenfold_bench_plugin", None)
    importlib.invalidate_caches()
    return importlib.import_module("tenfold_bench_plugin").plugin


def _ours_load(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    n = ctx.size(3, 20, 50)

    def op() -> int:
        manager = PluginManager(timeout_s=10)
        for i in range(n):
            manager.add(f"p{i}", _fresh_import)
            if manager.load(f"p{i}").state is not PluginState.LOADED:
                raise RuntimeError(manager.get(f"p{i}").reason)
        return n

    return op


def _pluggy_manager() -> object:
    import pluggy

    spec = pluggy.HookspecMarker("tenfoldbench")

    class Spec:
        @spec
        def tf_execute(self, x: int) -> None: ...

        @spec
        def tf_initialize(self, context: object) -> None: ...

    pm = pluggy.PluginManager("tenfoldbench")
    pm.add_hookspecs(Spec)
    return pm


def _peer_load(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    n = ctx.size(3, 20, 50)

    def op() -> int:
        pm = _pluggy_manager()
        for i in range(n):
            _fresh_import()
            pm.register(sys.modules["tenfold_bench_plugin"], name=f"p{i}")  # type: ignore[attr-defined]
        return n

    return op


def _ours_init(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    n = ctx.size(3, 50, 200)
    module = importlib.import_module("tenfold_bench_plugin")

    def op() -> int:
        manager = PluginManager(timeout_s=10)
        for i in range(n):
            manager.add(f"p{i}", module.Plugin)
            if manager.initialize(f"p{i}", {"i": i}).state is not PluginState.INITIALIZED:
                raise RuntimeError(manager.get(f"p{i}").reason)
        return n

    return op


def _peer_init(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    n = ctx.size(3, 50, 200)
    module = importlib.import_module("tenfold_bench_plugin")

    def op() -> int:
        pm = _pluggy_manager()
        pm.register(module, name="p")  # type: ignore[attr-defined]
        for i in range(n):
            pm.hook.tf_initialize(context={"i": i})  # type: ignore[attr-defined]
        return n

    return op


def _ours_execute(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    module = importlib.import_module("tenfold_bench_plugin")
    manager = PluginManager(timeout_s=10)
    manager.add("p", module.Plugin)
    manager.initialize("p")
    n = ctx.size(200, 2_000, 10_000)
    return _batch(n, lambda: manager.execute("p", 1))


def _ours_execute_fast(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    module = importlib.import_module("tenfold_bench_plugin")
    manager = PluginManager(timeout_s=10)
    manager.add("p", module.Plugin)
    manager.initialize("p")
    return _batch(_micro_n(ctx), lambda: manager.execute_fast("p", 1))


def _peer_execute(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    module = importlib.import_module("tenfold_bench_plugin")
    pm = _pluggy_manager()
    pm.register(module, name="p")  # type: ignore[attr-defined]
    hook = pm.hook.tf_execute  # type: ignore[attr-defined]
    return _batch(_micro_n(ctx), lambda: hook(x=1))


def _ours_transition(ctx: BenchContext) -> Op:
    record = PluginRecord(name="p", source="bench", loader=object)
    record.transition(PluginState.LOADED)
    record.transition(PluginState.INITIALIZED)
    n = _micro_n(ctx)

    def op() -> int:
        for _ in range(n // 2):
            record.transition(PluginState.RUNNING)
            record.transition(PluginState.INITIALIZED)
        record.history.clear()
        return 2 * (n // 2)

    return op


def _peer_transition(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    module = importlib.import_module("tenfold_bench_plugin")
    pm = _pluggy_manager()
    n = _micro_n(ctx) // 10

    def op() -> int:
        for _ in range(n // 2):
            pm.register(module, name="p")  # type: ignore[attr-defined]
            pm.unregister(name="p")  # type: ignore[attr-defined]
        return 2 * (n // 2)

    return op


# -- crypto ------------------------------------------------------------------------------------

_MSG = bytes(range(256)) * 4  # 1 KB message for signatures


def _ours_sign(ctx: BenchContext) -> Op:
    key = Ed25519Key.from_seed(b"\x07" * 32)
    return _batch(ctx.size(100, 3_000, 20_000), lambda: key.sign(_MSG))


def _peer_sign(ctx: BenchContext) -> Op:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    return _batch(ctx.size(100, 3_000, 20_000), lambda: key.sign(_MSG))


def _ours_verify(ctx: BenchContext) -> Op:
    key = Ed25519Key.from_seed(b"\x07" * 32)
    sig, pub = key.sign(_MSG), key.public_bytes
    return _batch(ctx.size(100, 2_000, 10_000), lambda: verify_ed25519(pub, _MSG, sig))


def _peer_verify(ctx: BenchContext) -> Op:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    sig, pub = key.sign(_MSG), key.public_key()
    return _batch(ctx.size(100, 2_000, 10_000), lambda: pub.verify(sig, _MSG))


def _data(size: int) -> bytes:
    return bytes((i * 31 + 7) % 256 for i in range(size))


def _ours_blake3(size: int, n: tuple[int, int, int]) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        data = _data(size)
        return _batch(ctx.size(*n), lambda: blake3(data))

    return prepare


def _peer_sha256(size: int, n: tuple[int, int, int]) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        data = _data(size)
        return _batch(ctx.size(*n), lambda: hashlib.sha256(data).digest())

    return prepare


def _ours_aes(decrypt: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        aes = AesGcm(b"\x01" * 32)
        data = _data(4096)
        n = ctx.size(200, 20_000, 100_000)
        if decrypt:
            blob = aes.encrypt(data)
            return _batch(n, lambda: aes.decrypt(blob))
        return _batch(n, lambda: aes.encrypt(data))

    return prepare


def _peer_aes(decrypt: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead = AESGCM(b"\x01" * 32)
        data = _data(4096)
        n = ctx.size(200, 20_000, 100_000)
        if decrypt:
            nonce = os.urandom(12)
            ct = aead.encrypt(nonce, data, None)
            return _batch(n, lambda: aead.decrypt(nonce, ct, None))
        return _batch(n, lambda: aead.encrypt(os.urandom(12), data, None))

    return prepare


def scenarios() -> list[Scenario]:
    limits = _ver("limits")
    psutil = _ver("psutil")
    pluggy = _ver("pluggy")
    crypt = _ver("cryptography")
    return [
        Scenario("governor_cpu_throttle_check", "checks", Subject("tenfold", _ours_throttle),
                 Subject(f"{psutil} cpu_percent", _peer_throttle), Seed(2_000_000, p50_ms=0.0005),
                 GOV, "CPU Throttle Check", "one throttle decision from the sampled CPU share",
                 headline=True, rounds=7),
        Scenario("governor_memory_check", "checks", Subject("tenfold", _ours_memory),
                 Subject(f"{psutil} memory_info", _peer_memory), Seed(3_300_000, p50_ms=0.0003),
                 GOV, "Memory Check", "one would-this-fit decision against the memory limit", rounds=7),
        Scenario("governor_io_gate_acquire", "acquires", Subject("tenfold", _ours_io),
                 Subject(f"{limits} FixedWindow hit", _peer_io), Seed(500_000, p50_ms=0.002),
                 GOV, "I/O Gate Acquire", "one token-bucket acquisition of 4 KiB, uncontended", rounds=7),
        Scenario("governor_io_gate_contended", "acquires", Subject("tenfold", _ours_io_contended),
                 Subject(f"{limits} FixedWindow hit", _peer_io_contended), Seed(500_000, p50_ms=0.002),
                 GOV, "I/O Gate Acquire (2 threads)", "acquisitions by two threads at once", rounds=7),
        Scenario("governor_sandbox_check", "checks", Subject("tenfold", _ours_sandbox),
                 Subject("pathlib normpath + is_relative_to", _peer_sandbox), Seed(1_250_000, p50_ms=0.0008),
                 GOV, "Sandbox Check", "one path/action policy decision (half allowed, half refused)",
                 rounds=7),
        Scenario("governor_cgroup_cpu_quota", "runs", Subject("tenfold (cgroup v1 cpu quota)", _ours_cgroup_quota),
                 Subject("stress-ng --cpu-load 50", _peer_stress_ng_load), None, GOV, "CPU quota on a busy child (50%)",
                 "one busy child held to a 50% quota; share_pct is what it got (error_pp: percentage points off)",
                 needs_root=True, rounds=3),
        Scenario("plugin_load", "plugins", Subject("tenfold", _ours_load),
                 Subject(f"{pluggy} register", _peer_load), Seed(20, p50_ms=50),
                 PLUG, "Plugin Load", "a fresh import of a real plugin module plus registration"),
        Scenario("plugin_initialize", "plugins", Subject("tenfold", _ours_init),
                 Subject(f"{pluggy} hook call", _peer_init), Seed(40, p50_ms=25),
                 PLUG, "Plugin Initialize", "initialize() under a timeout, in an isolated thread"),
        Scenario("plugin_execute", "calls", Subject("tenfold", _ours_execute),
                 Subject(f"{pluggy} hook call", _peer_execute), Seed(666, p50_ms=1.5),
                 PLUG, "Plugin Execute (isolated, with timeout)",
                 "a no-op execute() run in a watchdog thread with a timeout"),
        Scenario("plugin_execute_fast", "calls", Subject("tenfold", _ours_execute_fast),
                 Subject(f"{pluggy} hook call", _peer_execute), Seed(666, p50_ms=1.5),
                 PLUG, "Plugin Execute (hot path)", "dispatch around a no-op execute()", rounds=7),
        Scenario("plugin_state_transition", "transitions", Subject("tenfold", _ours_transition),
                 Subject(f"{pluggy} register/unregister", _peer_transition), Seed(100_000, p50_ms=0.01),
                 PLUG, "State Transition", "one checked lifecycle transition (pluggy has no state "
                 "machine: its register/unregister is the nearest state change)", rounds=7),
        Scenario("crypto_ed25519_sign", "signatures", Subject("tenfold (libsodium)", _ours_sign),
                 Subject(f"{crypt} Ed25519", _peer_sign), Seed(22_222, p50_ms=0.045),
                 CRYPTO, "Ed25519 Sign", "a detached signature of a 1 KiB message"),
        Scenario("crypto_ed25519_verify", "verifications", Subject("tenfold (libsodium)", _ours_verify),
                 Subject(f"{crypt} Ed25519", _peer_verify), Seed(8_000, p50_ms=0.125),
                 CRYPTO, "Ed25519 Verify", "a verification of a 1 KiB message"),
        Scenario("crypto_blake3_4k", "hashes", Subject("tenfold (blake3)", _ours_blake3(4096, (200, 50_000, 200_000))),
                 Subject("hashlib sha256", _peer_sha256(4096, (200, 50_000, 200_000))), Seed(200_000, p50_ms=0.005),
                 CRYPTO, "BLAKE3 Hash (4KB)", "a digest of 4 KiB"),
        Scenario("crypto_blake3_1m", "hashes", Subject("tenfold (blake3)", _ours_blake3(1 << 20, (3, 200, 1_000))),
                 Subject("hashlib sha256", _peer_sha256(1 << 20, (3, 200, 1_000))), Seed(1_250, p50_ms=0.8),
                 CRYPTO, "BLAKE3 Hash (1MB)", "a digest of 1 MiB"),
        Scenario("crypto_aes_gcm_encrypt_4k", "messages", Subject("tenfold", _ours_aes(False)),
                 Subject(f"{crypt} AESGCM (raw)", _peer_aes(False)), Seed(125_000, p50_ms=0.008),
                 CRYPTO, "AES-GCM Encrypt (4KB)", "4 KiB sealed with a fresh random nonce"),
        Scenario("crypto_aes_gcm_decrypt_4k", "messages", Subject("tenfold", _ours_aes(True)),
                 Subject(f"{crypt} AESGCM (raw)", _peer_aes(True)), Seed(125_000, p50_ms=0.008),
                 CRYPTO, "AES-GCM Decrypt (4KB)", "4 KiB opened and authenticated"),
    ]  # fmt: skip


def kernel() -> None:
    """A deterministic mix of the core's hot paths, for callgrind instruction counts."""
    gov = Governor(start_sampler=False, sandbox=SandboxPolicy({"read": ("/srv",)}))
    record = PluginRecord(name="k", source="kernel", loader=object)
    record.transition(PluginState.LOADED)
    record.transition(PluginState.INITIALIZED)
    key = Ed25519Key.from_seed(b"\x05" * 32)
    data = b"k" * 4096
    for _ in range(2_000):
        gov.throttle_cpu()
        gov.check_memory(4096)
        gov.check_sandbox("/srv/x", "read")
        record.transition(PluginState.RUNNING)
        record.transition(PluginState.INITIALIZED)
    record.history.clear()
    for _ in range(50):
        blake3(data)
        key.sign(data)
