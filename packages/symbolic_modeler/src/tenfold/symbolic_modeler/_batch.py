"""reduce_many: batches of independent reductions, optionally in a process pool (``parallel_jobs``).

Terms cross process boundaries in their postfix encoding (see ``Term.__reduce__``)
and are re-interned on arrival, so results are ordinary hash-consed terms here.
Rule sets are rebuilt in each worker from their rule texts (compiled matchers
hold generated code, which does not pickle).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tenfold.symbolic_modeler._reduce import reduce
from tenfold.symbolic_modeler._rules import Rule, RuleSet
from tenfold.symbolic_modeler._terms import Term

__all__ = ["reduce_many"]


def _work(
    terms: list[Term],
    rules: list[tuple[Term, Term, tuple[str, ...]]] | None,
    orient: bool,
    kw: dict[str, Any],
) -> list[Term]:
    rs = (
        RuleSet([Rule(lhs, rhs, conds) for lhs, rhs, conds in rules], orient=orient)
        if rules
        else None
    )
    return [reduce(t, rs, **kw) for t in terms]


def reduce_many(
    terms: Sequence[Term],
    rules: RuleSet | None = None,
    *,
    parallel_jobs: int | None = 1,
    chunk_size: int = 64,
    **kw: Any,
) -> list[Term]:
    """Reduce every term (same options as :func:`reduce`), in input order.

    ``parallel_jobs``: worker processes (``None``: one per CPU; 1: in this
    process). The pool lives for this call only.
    """
    jobs = os.cpu_count() or 1 if parallel_jobs is None else max(1, parallel_jobs)
    if jobs == 1 or len(terms) <= chunk_size:
        return [reduce(t, rules, **kw) for t in terms]
    spec = [(r.lhs, r.rhs, r.conditions) for r in rules.rules] if rules else None
    # the rules are already oriented; keep them as they are in the workers
    chunks = [list(terms[i : i + chunk_size]) for i in range(0, len(terms), chunk_size)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        parts = pool.map(
            _work, chunks, [spec] * len(chunks), [False] * len(chunks), [kw] * len(chunks)
        )
        return [t for part in parts for t in part]
