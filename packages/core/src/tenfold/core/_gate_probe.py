"""A tiny system for proving the regression gate: three pure-Python kernels of fixed cost.

Not registered as a system (it never shows in ``tenfold bench``); the gate's
tests reach it as ``tenfold bench --compare A..B -p tenfold.core._gate_probe:plugin``.
Each kernel's cost is linear in its loop count with a constant cost per
iteration, so a test that plants a slowdown by editing one loop bound in a
temporary commit (``range(n)`` -> ``range(n * 115 // 100)``) knows the true
change of time per unit: +15%.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tenfold.core.bench import BenchContext, Op, Scenario, Subject
from tenfold.core.plugins import SystemPlugin

__all__ = ["lcg_kernel", "plugin", "table_kernel", "xorshift_kernel"]


def lcg_kernel(n: int) -> int:
    """n steps of a 31-bit linear congruential generator (constant cost per step)."""
    x = 12345
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def xorshift_kernel(n: int) -> int:
    """n steps of a 32-bit xorshift generator."""
    x = 2463534242
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
    return x


def table_kernel(n: int) -> int:
    """n lookups and stores in a 256-entry list."""
    table = list(range(256))
    acc = 0
    for i in range(n):
        acc = (acc + table[i & 255]) & 0xFFFF
        table[i & 255] = acc
    return acc


def _prepare(kernel: str) -> Callable[[BenchContext], Op]:
    return lambda ctx: _op(kernel, ctx)


def _op(kernel: str, ctx: BenchContext) -> Op:
    n = ctx.size(5_000, 40_000, 400_000)
    fn = {"lcg": lcg_kernel, "xorshift": xorshift_kernel, "table": table_kernel}[kernel]

    def op() -> int:
        fn(n)
        return n

    return op


def scenarios() -> Sequence[Scenario]:
    return [
        Scenario(
            f"probe_{kernel}",
            "steps",
            Subject(f"{kernel} kernel", _prepare(kernel)),
            counts=f"one step of the {kernel} kernel",
            rounds=3,
        )
        for kernel in ("lcg", "xorshift", "table")
    ]


plugin = SystemPlugin(
    name="gate_probe",
    title="Regression gate probe",
    summary="Fixed-cost kernels for testing tenfold bench --compare",
    scenarios="tenfold.core._gate_probe:scenarios",
)
