"""Exceptions raised by tenfold.chaos_engine.

Every error is a :class:`ChaosEngineError`; the CLI prints its message as one
line. Failures of third-party tools (nft, tc, ip, the kernel's cgroup files) are
translated here at the boundary and never leak.
"""

from __future__ import annotations

from tenfold.core.errors import CheckFailed, ResourceLimitExceeded, TenfoldError


class ChaosEngineError(TenfoldError):
    """Root of every error raised by the Chaos Engine."""


class InvalidFault(ChaosEngineError, ValueError):
    """A fault's parameters are out of range (duration, probability, percent, target, glob)."""


class ExperimentError(ChaosEngineError):
    """An experiment file is malformed, has unknown keys, wrong types or duplicate fault ids."""


class FaultRefused(ChaosEngineError, ResourceLimitExceeded):
    """The engine refused a fault before injecting it (a safety limit would be exceeded)."""


class FaultQueueFull(FaultRefused):
    """``fault_queue_size`` injections are already pending: refused at once, never queued."""


class ConcurrencyLimit(FaultRefused):
    """``max_concurrent_faults`` faults are already active."""


class InjectionFailed(ChaosEngineError):
    """A fault could not be put in place (a tool failed, the target vanished); nothing was left."""


class TargetGone(InjectionFailed):
    """The fault's target (process, namespace, interface, path) does not exist."""


class OsPlaneUnavailable(ChaosEngineError):
    """An OS-plane fault was asked for without root or without the kernel feature it needs."""


class JournalError(ChaosEngineError):
    """The fault journal cannot be opened, is locked by another engine, or is corrupt."""


class JournalLocked(JournalError):
    """Another live engine holds the journal; two engines never share one."""


class ProbeFailed(ChaosEngineError):
    """A steady-state probe raised, timed out, or returned something that is not a number."""


class SteadyStateViolated(CheckFailed, ChaosEngineError):
    """A steady-state probe left its tolerance: the experiment aborted, every fault reverted."""


class EngineClosed(ChaosEngineError):
    """The engine was closed (or is closing) and accepts no more faults."""


class InjectedFault(ChaosEngineError):
    """Raised into the caller's code by a fault point with a ``raise`` fault active."""


class AgentError(ChaosEngineError):
    """A chaos agent could not start, or refused or failed a controller's request."""


class AgentLost(AgentError):
    """A chaos agent stopped answering its controller (its node died or was cut off)."""
