"""Shared Core benchmarks: the document's Resource Governor, Plugin System and Cryptography tables.

Micro-operations are timed in batches: one op call does ``n`` checks one after
another and reports ``n`` units, so its latency is the mean per unit of each
call (the subjects are declared ``sequential``). Each op also returns what its
checks decided (the share of checks allowed, a digest, a signature), and the
harness compares ours with the peer's call by call. What each row is (name,
unit, document row, what it counts, its fairness sentence) is data, in
``_core_bench.toml`` beside this module.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from importlib.metadata import version
from pathlib import Path

from tenfold.core.bench import BenchContext, Op, Outcome, Scenario
from tenfold.core.crypto import AesGcm, Ed25519Key, blake3, verify_ed25519
from tenfold.core.declare import declared_rows
from tenfold.core.errors import BenchError, SandboxViolation
from tenfold.core.governor import Governor, GovernorConfig, SandboxPolicy
from tenfold.core.plugins import PluginManager, PluginRecord, PluginState


def _ver(dist: str) -> str:
    try:
        return f"{dist} {version(dist)}"
    except Exception:
        return dist


def _batch(n: int, fn: Callable[[], object]) -> Op:
    """``n`` calls of ``fn`` one after another; the result is the share that answered truthy."""

    def op() -> Outcome:
        yes = 0
        for _ in range(n):
            if fn():
                yes += 1
        return Outcome(n, result=Fraction(yes, n))

    return op


def _last(n: int, fn: Callable[[], bytes], check: Callable[[bytes], object]) -> Op:
    """``n`` calls of ``fn``; the result is ``check`` of the last output (a digest, a signature)."""

    def op() -> Outcome:
        out = b""
        for _ in range(n):
            out = fn()
        return Outcome(n, result=check(out))

    return op


# A CPU limit no process reaches (every check must answer "not throttled"), and a
# memory limit that a 4 KiB request fits and a 1 PiB request does not.
_NO_THROTTLE_PCT = 1e9
_MEM_LIMIT = 2 * 1024**3
_MEM_ASKS = (4096, 1 << 50)


def _governor(ctx: BenchContext) -> Governor:
    def make() -> Governor:
        gov = Governor(
            GovernorConfig(
                cpu_quota_pct=_NO_THROTTLE_PCT,
                memory_limit_bytes=_MEM_LIMIT,
                io_rate_bytes_per_s=10**12,
                io_burst_bytes=10**12,
            ),
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
    return _batch(_micro_n(ctx), lambda: not gov.throttle_cpu())


class _PsutilSampler:
    """What an expert would write with psutil: a thread samples the process's CPU share
    and RSS every 100 ms (the governor's interval) and a check reads the last sample."""

    def __init__(self, interval_s: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process()
        self._proc.cpu_percent(None)
        self.cpu_pct = 0.0
        self.rss = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._loop, daemon=True, name="psutil-sampler")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.cpu_pct = self._proc.cpu_percent(None)
            self.rss = self._proc.memory_info().rss

    def close(self) -> None:
        self._stop.set()


def _psutil_sampler(ctx: BenchContext) -> _PsutilSampler:
    def make() -> _PsutilSampler:
        sampler = _PsutilSampler()
        ctx.callback(sampler.close)
        return sampler

    return ctx.once("psutil_sampler", make)


def _peer_throttle(ctx: BenchContext) -> Op:
    sampler = _psutil_sampler(ctx)
    return _batch(_micro_n(ctx), lambda: not sampler.cpu_pct > _NO_THROTTLE_PCT)


def _ours_memory(ctx: BenchContext) -> Op:
    gov = _governor(ctx)
    asks = _MEM_ASKS
    n = _micro_n(ctx)

    def op() -> Outcome:
        yes = 0
        check = gov.check_memory
        for i in range(n):
            if check(asks[i & 1]):
                yes += 1
        return Outcome(n, result=Fraction(yes, n))

    return op


def _peer_memory(ctx: BenchContext) -> Op:
    sampler = _psutil_sampler(ctx)
    asks = _MEM_ASKS
    n = _micro_n(ctx)

    def op() -> Outcome:
        yes = 0
        for i in range(n):
            if sampler.rss + asks[i & 1] <= _MEM_LIMIT:
                yes += 1
        return Outcome(n, result=Fraction(yes, n))

    return op


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
    """Two threads each make ``n // 2`` acquisitions at once; the result is the share granted."""

    def op() -> Outcome:
        half = n // 2
        barrier = threading.Barrier(2)
        granted = [0, 0]

        def work(k: int) -> None:
            barrier.wait()
            got = 0
            for _ in range(half):
                if fn():
                    got += 1
            granted[k] = got

        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return Outcome(2 * half, result=Fraction(sum(granted), 2 * half))

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

    def op() -> Outcome:
        check = gov.check_sandbox
        allowed = 0
        for path in paths:
            try:
                check(path, "read")
                allowed += 1
            except SandboxViolation:
                pass
        return Outcome(n, result=Fraction(allowed, n))

    return op


def _peer_sandbox(ctx: BenchContext) -> Op:
    roots = (Path("/srv/data"), Path("/tmp/tenfold"))
    n = _micro_n(ctx) // 10
    paths = [Path(_SANDBOX_PATHS[i % 4]) for i in range(n)]

    def op() -> Outcome:
        allowed = 0
        for path in paths:
            resolved = Path(os.path.normpath(path))
            if any(resolved.is_relative_to(root) for root in roots):
                allowed += 1
        return Outcome(n, result=Fraction(allowed, n))

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

    def op() -> Outcome:
        manager = PluginManager(timeout_s=10)
        for i in range(n):
            manager.add(f"p{i}", _fresh_import)
            if manager.load(f"p{i}").state is not PluginState.LOADED:
                raise RuntimeError(manager.get(f"p{i}").reason)
        return Outcome(n, result=len(manager.records()) == n)

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

    def op() -> Outcome:
        pm = _pluggy_manager()
        for i in range(n):
            _fresh_import()
            pm.register(sys.modules["tenfold_bench_plugin"], name=f"p{i}")  # type: ignore[attr-defined]
        return Outcome(n, result=len(pm.get_plugins()) == n)  # type: ignore[attr-defined]

    return op


def _ours_init(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    n = ctx.size(3, 50, 200)
    module = importlib.import_module("tenfold_bench_plugin")

    def op() -> Outcome:
        manager = PluginManager(timeout_s=10)
        for i in range(n):
            manager.add(f"p{i}", module.Plugin)
            if manager.initialize(f"p{i}", {"i": i}).state is not PluginState.INITIALIZED:
                raise RuntimeError(manager.get(f"p{i}").reason)
        return Outcome(n, result=manager.get(f"p{n - 1}").obj.context == {"i": n - 1})

    return op


def _peer_init(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    n = ctx.size(3, 50, 200)
    module = importlib.import_module("tenfold_bench_plugin")

    def op() -> Outcome:
        pm = _pluggy_manager()
        pm.register(module, name="p")  # type: ignore[attr-defined]
        for i in range(n):
            pm.hook.tf_initialize(context={"i": i})  # type: ignore[attr-defined]
        return Outcome(n, result=module.plugin.context == {"i": n - 1})

    return op


def _ours_execute(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    module = importlib.import_module("tenfold_bench_plugin")
    manager = PluginManager(timeout_s=10)
    manager.add("p", module.Plugin)
    manager.initialize("p")
    n = ctx.size(200, 2_000, 10_000)
    return _batch(n, lambda: manager.execute("p", 1) == 1)


def _ours_execute_fast(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    module = importlib.import_module("tenfold_bench_plugin")
    manager = PluginManager(timeout_s=10)
    manager.add("p", module.Plugin)
    manager.initialize("p")
    return _batch(_micro_n(ctx), lambda: manager.execute_fast("p", 1) == 1)


def _peer_execute(ctx: BenchContext) -> Op:
    _plugin_dir(ctx)
    module = importlib.import_module("tenfold_bench_plugin")
    pm = _pluggy_manager()
    pm.register(module, name="p")  # type: ignore[attr-defined]
    hook = pm.hook.tf_execute  # type: ignore[attr-defined]
    return _batch(_micro_n(ctx), lambda: hook(x=1) == [1])


def _ours_transition(ctx: BenchContext) -> Op:
    record = PluginRecord(name="p", source="bench", loader=object)
    record.transition(PluginState.LOADED)
    record.transition(PluginState.INITIALIZED)
    n = _micro_n(ctx)

    def op() -> int:
        for _ in range(n // 2):
            record.transition(PluginState.RUNNING)
            record.transition(PluginState.INITIALIZED)
        done = len(record.history)
        record.history.clear()
        if record.state is not PluginState.INITIALIZED or done < 2 * (n // 2):
            raise BenchError(f"state machine ended in {record.state} after {done} transitions")
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
        if pm.get_plugins():  # type: ignore[attr-defined]
            raise BenchError("pluggy still holds a plugin after unregister")
        return 2 * (n // 2)

    return op


# -- crypto ------------------------------------------------------------------------------------

_MSG = bytes(range(256)) * 4  # 1 KB message for signatures


def _ours_sign(ctx: BenchContext) -> Op:
    key = Ed25519Key.from_seed(b"\x07" * 32)
    return _last(ctx.size(100, 3_000, 20_000), lambda: key.sign(_MSG), bytes.hex)


def _peer_sign(ctx: BenchContext) -> Op:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    return _last(ctx.size(100, 3_000, 20_000), lambda: key.sign(_MSG), bytes.hex)


def _ours_verify(ctx: BenchContext) -> Op:
    key = Ed25519Key.from_seed(b"\x07" * 32)
    sig, pub = key.sign(_MSG), key.public_bytes

    def ok() -> bool:
        verify_ed25519(pub, _MSG, sig)  # raises CryptoError when it does not verify
        return True

    return _batch(ctx.size(100, 2_000, 10_000), ok)


def _peer_verify(ctx: BenchContext) -> Op:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    sig, pub = key.sign(_MSG), key.public_key()

    def ok() -> bool:
        pub.verify(sig, _MSG)  # raises InvalidSignature when it does not verify
        return True

    return _batch(ctx.size(100, 2_000, 10_000), ok)


def _data(size: int) -> bytes:
    return bytes((i * 31 + 7) % 256 for i in range(size))


def _ours_blake3(size: int, n: tuple[int, int, int]) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        data = _data(size)
        return _last(ctx.size(*n), lambda: blake3(data), bytes.hex)

    return prepare


def _peer_blake3(size: int, n: tuple[int, int, int]) -> Callable[[BenchContext], Op]:
    """The ``blake3`` package (Rust bindings) called directly: the same algorithm."""

    def prepare(ctx: BenchContext) -> Op:
        import blake3 as peer

        data = _data(size)
        return _last(ctx.size(*n), lambda: peer.blake3(data).digest(), bytes.hex)

    return prepare


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _ours_aes(decrypt: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aes = AesGcm(b"\x01" * 32)
        other = AESGCM(b"\x01" * 32)
        data = _data(4096)
        n = ctx.size(200, 20_000, 100_000)
        if decrypt:
            blob = aes.encrypt(data)
            return _last(n, lambda: aes.decrypt(blob), _digest)
        # The last sealed message is opened by the other implementation: it must give the data back.
        return _last(
            n, lambda: aes.encrypt(data), lambda b: _digest(other.decrypt(b[:12], b[12:], None))
        )

    return prepare


def _peer_aes(decrypt: bool) -> Callable[[BenchContext], Op]:
    def prepare(ctx: BenchContext) -> Op:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead = AESGCM(b"\x01" * 32)
        data = _data(4096)
        n = ctx.size(200, 20_000, 100_000)
        other = AesGcm(b"\x01" * 32)
        if decrypt:
            # The message as it arrives (nonce || ciphertext || tag, as the peer's own
            # seal below frames it): the expert cut is two slices, as bytes, which
            # cryptography reads fastest.
            nonce = os.urandom(12)
            blob = nonce + aead.encrypt(nonce, data, None)
            return _last(n, lambda: aead.decrypt(blob[:12], blob[12:], None), _digest)

        def seal() -> bytes:
            nonce = os.urandom(12)
            return nonce + aead.encrypt(nonce, data, None)

        return _last(n, seal, lambda b: _digest(other.decrypt(b)))

    return prepare


def scenarios() -> list[Scenario]:
    """The core's rows, declared in ``_core_bench.toml`` beside this module."""
    rows = declared_rows(
        __name__,
        limits=_ver("limits"),
        psutil=_ver("psutil"),
        pluggy=_ver("pluggy"),
        cryptography=_ver("cryptography"),
        blake3=_ver("blake3"),
    )
    return [*rows["governor"], *rows["plugins"], *rows["crypto"]]


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
