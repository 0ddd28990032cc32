"""Statistics of the A/B regression gate: a paired, distribution-free interval and the verdict.

The gate runs the base revision (A) and the working tree (B) in rounds of
A B B A (or B A A B); each round gives one paired difference, the log of B's
time per unit over A's. Within a round, A B B A cancels a linear drift of the
machine (both sides' times sum over the same mean instant); across rounds
the differences are independent draws around the true log-ratio.

The interval is the Hodges-Lehmann estimate with its exact Wilcoxon
signed-rank confidence interval (Tukey's Walsh averages; Hollander & Wolfe,
*Nonparametric Statistical Methods*, ch. 3). It assumes only that the
differences are symmetric around their centre, which holds exactly when both
sides run the same code (A and B are exchangeable) and approximately under a
pure shift. One slow round (a burst of load from another process) moves the
estimate and the interval far less than it would move a mean.

The verdict works in log space so that "10% slower" and "10% faster" are
mirror images: a regression is a time ratio above ``1 + t`` for the whole
interval; an improvement is a ratio below ``1 / (1 + t)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Interval",
    "Verdict",
    "decide",
    "hodges_lehmann",
    "paired_log_ratios",
    "signed_rank_counts",
    "signed_rank_interval",
    "walsh_averages",
]

Verdict = Literal["regression", "improvement", "within", "inconclusive"]


@dataclass(frozen=True)
class Interval:
    """A change in log space: estimate and interval of log(B / A), with the confidence reached.

    ``confidence`` is the exact coverage of the interval, which can exceed the
    level asked for (the signed-rank distribution is discrete) or fall short
    of it when there are too few rounds to reach it (then the interval is the
    widest one, from the smallest to the largest Walsh average).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int

    @property
    def change(self) -> float:
        """The estimated change of time per unit as a fraction (0.15 is 15% slower)."""
        return math.expm1(self.estimate)

    @property
    def change_low(self) -> float:
        return math.expm1(self.low)

    @property
    def change_high(self) -> float:
        return math.expm1(self.high)


def walsh_averages(diffs: Sequence[float]) -> list[float]:
    """All pairwise means (d_i + d_j) / 2 for i <= j, sorted."""
    n = len(diffs)
    return sorted((diffs[i] + diffs[j]) / 2 for i in range(n) for j in range(i, n))


def hodges_lehmann(diffs: Sequence[float]) -> float:
    """The one-sample Hodges-Lehmann estimate: the median of the Walsh averages."""
    if not diffs:
        raise ValueError("no differences to estimate from")
    walsh = walsh_averages(diffs)
    m = len(walsh)
    mid = m // 2
    return walsh[mid] if m % 2 else (walsh[mid - 1] + walsh[mid]) / 2


def signed_rank_counts(n: int) -> list[int]:
    """How many of the 2**n sign patterns give each signed-rank sum T+ = 0 .. n(n+1)/2.

    Built one rank at a time: a pattern over ranks 1..k either leaves rank k
    out of T+ or adds k to it.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    top = n * (n + 1) // 2
    counts = [0] * (top + 1)
    counts[0] = 1
    reach = 0
    for k in range(1, n + 1):
        reach += k
        for t in range(reach, k - 1, -1):
            counts[t] += counts[t - k]
    return counts


def signed_rank_interval(diffs: Sequence[float], confidence: float = 0.95) -> Interval:
    """Hodges-Lehmann estimate of the centre of ``diffs`` with its exact signed-rank interval.

    With M Walsh averages sorted, the interval is [W_(k), W_(M+1-k)] for the
    largest k with P(T+ <= k - 1) <= (1 - confidence) / 2 under the null; its
    coverage is exactly 1 - 2 P(T+ <= k - 1) for continuous symmetric data.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = len(diffs)
    if n == 0:
        raise ValueError("no differences to build an interval from")
    if any(not math.isfinite(d) for d in diffs):
        raise ValueError("differences must be finite")
    walsh = walsh_averages(diffs)
    m = len(walsh)
    counts = signed_rank_counts(n)
    total = 2**n
    tail = (1 - confidence) / 2
    # k = number of Walsh averages cut from each end; cumulative[k] = P(T+ <= k - 1).
    k, below = 0, 0
    while k < m // 2 and (below + counts[k]) / total <= tail:
        below += counts[k]
        k += 1
    if k == 0:
        # Too few rounds to reach the level: the widest interval, with its true coverage.
        low, high, reached = walsh[0], walsh[-1], 1 - 2 * counts[0] / total
    else:
        low, high, reached = walsh[k - 1], walsh[m - k], 1 - 2 * below / total
    return Interval(hodges_lehmann(diffs), low, high, reached, n)


def paired_log_ratios(rounds: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[float]:
    """One difference per round: log of B's summed time per unit over A's.

    Each round is ``(a_times, b_times)``, the per-unit times of that round's
    A and B samples (two each in A B B A). Summing before the log keeps the
    drift cancellation of the A B B A order.
    """
    out = []
    for a_times, b_times in rounds:
        a, b = sum(a_times), sum(b_times)
        if not (a > 0 and b > 0) or len(a_times) != len(b_times):
            raise ValueError("each round needs as many positive A as B times")
        out.append(math.log(b / a))
    return out


def decide(interval: Interval, threshold: float) -> Verdict:
    """The gate's rule: only an interval wholly beyond the threshold is a regression.

    ``threshold`` is a fraction of time per unit (0.10 = 10% slower).
    ``within`` means the whole interval lies inside +-threshold (in log space);
    ``inconclusive`` means it straddles a threshold: neither flagged nor cleared.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    bound = math.log1p(threshold)
    if interval.low > bound:
        return "regression"
    if interval.high < -bound:
        return "improvement"
    if -bound <= interval.low and interval.high <= bound:
        return "within"
    return "inconclusive"
