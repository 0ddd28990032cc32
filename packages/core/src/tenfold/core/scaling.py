"""The document's scaling factor (actual speedup / ideal speedup) for rows measured at N nodes.

A system's scenarios run in one process, smallest node count first, so the rate
seen at the smallest count of a series is the base the later counts are divided
by. :func:`scaling_factor` records a series' base and returns, for a larger
count, ``(rate_N / rate_base) / (N / N_base)``: 1.0 is linear scaling, the
document's Horizontal Scaling table gives 0.85-0.90.
"""

from __future__ import annotations

__all__ = ["scaling_factor"]

_BASE: dict[str, tuple[int, float]] = {}


def scaling_factor(series: str, nodes: int, rate: float) -> float | None:
    """Record ``rate`` at ``nodes`` for ``series``; the factor against the series' base
    (its smallest count seen so far), or ``None`` at the base itself or with no base."""
    if rate <= 0 or nodes <= 0:
        return None
    base = _BASE.get(series)
    if base is None or nodes <= base[0]:
        if base is None or nodes < base[0] or rate > base[1]:
            _BASE[series] = (nodes, rate)  # the best call at the base count
        return None
    base_nodes, base_rate = base
    return round((rate / base_rate) / (nodes / base_nodes), 3)
