"""Chaos Engine: fault injection and resilience testing that always cleans up.

async with await ChaosEngine.create() as engine:
    handle = await engine.inject_fault(PointFault(point="db.query", probability=0.1))
    ...
    await handle.revert()
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from tenfold.chaos_engine._config import ChaosConfig as ChaosConfig
    from tenfold.chaos_engine._config import PerformanceConfig as PerformanceConfig
    from tenfold.chaos_engine._engine import ChaosEngine as ChaosEngine
    from tenfold.chaos_engine._engine import FaultHandle as FaultHandle
    from tenfold.chaos_engine._faults import Bandwidth as Bandwidth
    from tenfold.chaos_engine._faults import ConnectionReset as ConnectionReset
    from tenfold.chaos_engine._faults import CpuHog as CpuHog
    from tenfold.chaos_engine._faults import DiskError as DiskError
    from tenfold.chaos_engine._faults import DiskLatency as DiskLatency
    from tenfold.chaos_engine._faults import DiskThrottle as DiskThrottle
    from tenfold.chaos_engine._faults import Fault as Fault
    from tenfold.chaos_engine._faults import MemoryHog as MemoryHog
    from tenfold.chaos_engine._faults import NetworkLatency as NetworkLatency
    from tenfold.chaos_engine._faults import PacketLoss as PacketLoss
    from tenfold.chaos_engine._faults import Partition as Partition
    from tenfold.chaos_engine._faults import PluginFault as PluginFault
    from tenfold.chaos_engine._faults import PointFault as PointFault
    from tenfold.chaos_engine._faults import ProcessKill as ProcessKill
    from tenfold.chaos_engine._faults import ProcessPause as ProcessPause
    from tenfold.chaos_engine._faults import ProxyBandwidth as ProxyBandwidth
    from tenfold.chaos_engine._faults import ProxyLatency as ProxyLatency
    from tenfold.chaos_engine._faults import ProxyLimitData as ProxyLimitData
    from tenfold.chaos_engine._faults import ProxyLoss as ProxyLoss
    from tenfold.chaos_engine._faults import ProxyReset as ProxyReset
    from tenfold.chaos_engine._faults import ProxySlicer as ProxySlicer
    from tenfold.chaos_engine._faults import ProxySlowClose as ProxySlowClose
    from tenfold.chaos_engine._faults import ProxyTimeout as ProxyTimeout
    from tenfold.chaos_engine._faults import fault_from_dict as fault_from_dict
    from tenfold.chaos_engine._monitor import MetricsSnapshot as MetricsSnapshot
    from tenfold.chaos_engine._points import FaultPoints as FaultPoints
    from tenfold.chaos_engine._points import chaos as chaos
    from tenfold.chaos_engine._watchdog import RecoveryReport as RecoveryReport
    from tenfold.chaos_engine._watchdog import recover as recover
    from tenfold.chaos_engine.errors import ChaosEngineError as ChaosEngineError

# Names load on first use (PEP 562): ``python -m tenfold.chaos_engine run`` and a
# program that only marks fault points do not pay for the engine, pydantic or
# the OS plane at import.
_WHERE = {
    "ChaosConfig": "tenfold.chaos_engine._config",
    "PerformanceConfig": "tenfold.chaos_engine._config",
    "ChaosEngine": "tenfold.chaos_engine._engine",
    "FaultHandle": "tenfold.chaos_engine._engine",
    "Bandwidth": "tenfold.chaos_engine._faults",
    "ConnectionReset": "tenfold.chaos_engine._faults",
    "CpuHog": "tenfold.chaos_engine._faults",
    "DiskError": "tenfold.chaos_engine._faults",
    "DiskLatency": "tenfold.chaos_engine._faults",
    "DiskThrottle": "tenfold.chaos_engine._faults",
    "Fault": "tenfold.chaos_engine._faults",
    "MemoryHog": "tenfold.chaos_engine._faults",
    "NetworkLatency": "tenfold.chaos_engine._faults",
    "PacketLoss": "tenfold.chaos_engine._faults",
    "Partition": "tenfold.chaos_engine._faults",
    "PluginFault": "tenfold.chaos_engine._faults",
    "PointFault": "tenfold.chaos_engine._faults",
    "ProcessKill": "tenfold.chaos_engine._faults",
    "ProcessPause": "tenfold.chaos_engine._faults",
    "ProxyBandwidth": "tenfold.chaos_engine._faults",
    "ProxyLatency": "tenfold.chaos_engine._faults",
    "ProxyLimitData": "tenfold.chaos_engine._faults",
    "ProxyLoss": "tenfold.chaos_engine._faults",
    "ProxyReset": "tenfold.chaos_engine._faults",
    "ProxySlicer": "tenfold.chaos_engine._faults",
    "ProxySlowClose": "tenfold.chaos_engine._faults",
    "ProxyTimeout": "tenfold.chaos_engine._faults",
    "fault_from_dict": "tenfold.chaos_engine._faults",
    "MetricsSnapshot": "tenfold.chaos_engine._monitor",
    "FaultPoints": "tenfold.chaos_engine._points",
    "chaos": "tenfold.chaos_engine._points",
    "RecoveryReport": "tenfold.chaos_engine._watchdog",
    "recover": "tenfold.chaos_engine._watchdog",
    "ChaosEngineError": "tenfold.chaos_engine.errors",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = [
    "Bandwidth",
    "ChaosConfig",
    "ChaosEngine",
    "ChaosEngineError",
    "ConnectionReset",
    "CpuHog",
    "DiskError",
    "DiskLatency",
    "DiskThrottle",
    "Fault",
    "FaultHandle",
    "FaultPoints",
    "MemoryHog",
    "MetricsSnapshot",
    "NetworkLatency",
    "PacketLoss",
    "Partition",
    "PerformanceConfig",
    "PluginFault",
    "PointFault",
    "ProcessKill",
    "ProcessPause",
    "ProxyBandwidth",
    "ProxyLatency",
    "ProxyLimitData",
    "ProxyLoss",
    "ProxyReset",
    "ProxySlicer",
    "ProxySlowClose",
    "ProxyTimeout",
    "RecoveryReport",
    "chaos",
    "fault_from_dict",
    "recover",
]
