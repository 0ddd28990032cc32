"""An engine that puts one fault of every OS type in place, says ``ready``, then waits to be killed.

``python -m tenfold.chaos_engine._crashchild JOURNAL_DIR NETNS INTERFACE VICTIM_PID EXPERIMENT``

The crash-recovery benchmark SIGKILLs it and times ``recover``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tenfold.chaos_engine._config import PerformanceConfig
from tenfold.chaos_engine._engine import ChaosEngine
from tenfold.chaos_engine._faults import (
    Bandwidth,
    ConnectionReset,
    CpuHog,
    DiskError,
    DiskLatency,
    DiskThrottle,
    Fault,
    MemoryHog,
    NetworkLatency,
    PacketLoss,
    Partition,
    ProcessPause,
)


def every_os_fault(netns: str, interface: str, victim: int, path: str) -> list[Fault]:
    src, mnt = Path(path, "src"), Path(path, "mnt")
    src.mkdir(parents=True, exist_ok=True)
    mnt.mkdir(parents=True, exist_ok=True)
    disk = {"source": str(src), "mount": str(mnt), "duration_s": 600.0}
    return [
        CpuHog(duration_s=600),
        MemoryHog(size_bytes=8 << 20, duration_s=600),
        PacketLoss(netns=netns, percent=30, duration_s=600),
        Partition(netns=netns, peer="10.9.9.9", duration_s=600),
        ConnectionReset(netns=netns, port=80, duration_s=600),
        Bandwidth(netns=netns, interface=interface, duration_s=600),
        NetworkLatency(netns=netns, interface=interface, latency_ms=5, duration_s=600),
        ProcessPause(pid=victim, duration_s=600),
        DiskThrottle(pid=victim, path=path, duration_s=600),
        DiskError(path_glob="*.db", **disk),  # type: ignore[arg-type]
        DiskLatency(latency_ms=5, **disk),  # type: ignore[arg-type]
    ]


async def main(journal_dir: Path, netns: str, interface: str, victim: int, name: str) -> None:
    engine = await ChaosEngine.create(
        PerformanceConfig.model_validate({}),
        journal_dir=journal_dir,
        experiment=name,
        watchdog=False,  # recovery alone must clean up
    )
    for fault in every_os_fault(netns, interface, victim, str(journal_dir)):
        await engine.inject_fault(fault)
    print("ready", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
