"""Chaos Engine: fault injection and resilience testing that always cleans up.

async with await ChaosEngine.create() as engine:
    handle = await engine.inject_fault(PointFault(point="db.query", probability=0.1))
    ...
    await handle.revert()
"""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.chaos_engine._config import ChaosConfig as ChaosConfig
    from tenfold.chaos_engine._config import PerformanceConfig as PerformanceConfig
    from tenfold.chaos_engine._controller import AgentRef as AgentRef
    from tenfold.chaos_engine._controller import Controller as Controller
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

__all__ = [
    "AgentRef",
    "Bandwidth",
    "ChaosConfig",
    "ChaosEngine",
    "ChaosEngineError",
    "ConnectionReset",
    "Controller",
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._config": ["ChaosConfig", "PerformanceConfig"],
        "._controller": ["AgentRef", "Controller"],
        "._engine": ["ChaosEngine", "FaultHandle"],
        "._faults": [
            "Bandwidth",
            "ConnectionReset",
            "CpuHog",
            "DiskError",
            "DiskLatency",
            "DiskThrottle",
            "Fault",
            "MemoryHog",
            "NetworkLatency",
            "PacketLoss",
            "Partition",
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
            "fault_from_dict",
        ],
        "._monitor": ["MetricsSnapshot"],
        "._points": ["FaultPoints", "chaos"],
        "._watchdog": ["RecoveryReport", "recover"],
        ".errors": ["ChaosEngineError"],
    },
    __all__,
)
