"""Chaos Engine: Fault injection and resilience testing that always cleans up."""

from tenfold.chaos_engine.errors import ChaosEngineError as ChaosEngineError

__all__ = ["ChaosEngineError"]
