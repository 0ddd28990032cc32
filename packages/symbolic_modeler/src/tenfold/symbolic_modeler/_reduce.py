"""reduce: bottom-up normalization to a fixpoint, memoized per node; and a guarded expand.

The driver walks the DAG with an explicit stack (no recursion, so 100,000-deep
terms are fine). A node is processed once its children have normal forms;
``memo`` maps every processed node to its normal form, so a shared subterm is
reduced once per call. There is no cache across calls: each call starts cold,
which is what the benchmarks measure.

With a rule set, a node whose canonical form is rewritten by a rule at its root
*waits* for the normal form of the rewritten term (pushed above it). A term that
needs its own normal form while waiting for it is a cycle (``a -> f(a)``,
``x + y -> y + x`` after flattening, ...): :class:`RewriteCycle`. Every rule
application counts against ``step_budget``: :class:`StepBudgetExceeded`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tenfold.symbolic_modeler._canon import Flags, canon_mul, canon_node, canon_pow
from tenfold.symbolic_modeler._terms import OP_ADD, OP_MUL, OP_NUM, OP_POW, Term
from tenfold.symbolic_modeler.errors import (
    ExpansionRefused,
    RewriteCycle,
    StepBudgetExceeded,
)

if TYPE_CHECKING:
    from tenfold.symbolic_modeler._rules import RuleSet

__all__ = ["expand", "reduce"]

DEFAULT_STEP_BUDGET = 100_000


def reduce(
    term: Term,
    rules: RuleSet | None = None,
    *,
    assume_nonzero: bool = False,
    step_budget: int = DEFAULT_STEP_BUDGET,
    max_power_bits: int = 1 << 16,
) -> Term:
    """The normal form of ``term`` under the built-in canonicalization and ``rules``.

    ``assume_nonzero=True`` allows the rewrites valid only where subterms are
    non-zero and defined (``x/x -> 1``); by default they are refused and the
    term keeps its singular part. Raises :class:`RewriteCycle`,
    :class:`StepBudgetExceeded` for looping rule sets and :class:`ReductionError`
    for constant divisions by zero.
    """
    flags = Flags(nonzero=assume_nonzero, max_power_bits=max_power_bits)
    memo: dict[Term, Term] = {}
    waiting: dict[Term, Term] = {}
    rewrite = rules.rewrite if rules is not None else None
    keep_domain = not assume_nonzero
    steps = 0
    stack = [term]
    pop = stack.pop
    push = stack.append
    while stack:
        t = stack[-1]
        if t in memo:
            pop()
            continue
        w = waiting.pop(t, None)
        if w is not None:
            memo[t] = memo[w]  # w sat above t on the stack, so it is done
            pop()
            continue
        args = t.args
        if args:
            pending = False
            for c in args:
                if c not in memo:
                    if c in waiting:
                        raise RewriteCycle(f"rewriting needs the normal form of {c} inside itself")
                    push(c)
                    pending = True
            if pending:
                continue
            r = canon_node(t.op, t.value, [memo[c] for c in args], flags)
        else:
            r = t
        if r is not t:
            m = memo.get(r)
            if m is not None:
                memo[t] = m
                pop()
            elif rewrite is None:
                memo[t] = memo[r] = r
                pop()
            elif r in waiting:
                raise RewriteCycle(f"rewriting {t} leads back to {r}")
            else:
                waiting[t] = r
                push(r)
            continue
        if rewrite is not None:
            r2 = rewrite(t, keep_domain=keep_domain)
            if r2 is not None and r2 is not t:
                steps += 1
                if steps > step_budget:
                    raise StepBudgetExceeded(
                        f"rule set applied more than {step_budget} rewrite steps "
                        f"(last: {t} -> {r2}); it may not terminate"
                    )
                m = memo.get(r2)
                if m is not None:
                    memo[t] = m
                    pop()
                elif r2 in waiting:
                    raise RewriteCycle(f"rewriting {t} leads back to {r2}")
                else:
                    waiting[t] = r2
                    push(r2)
                continue
        memo[t] = t
        pop()
    return memo[term]


def _count_terms(t: Term) -> int:
    return len(t.args) if t.op == OP_ADD else 1


def _distribute(factors: list[Term], flags: Flags) -> Term:
    """The canonical sum of all products picking one term from each factor."""
    sums: list[list[Term]] = [[]]
    for a in factors:
        parts = list(a.args) if a.op == OP_ADD else [a]
        sums = [[*s, p] for s in sums for p in parts]
    return canon_node(OP_ADD, None, [canon_mul(s, flags) for s in sums], flags)


def expand(term: Term, *, max_terms: int = 10_000, assume_nonzero: bool = False) -> Term:
    """Distribute products over sums and expand integer powers of sums, then reduce.

    Refuses (``ExpansionRefused``, with the estimated term count) when the result
    would have more than ``max_terms`` terms, before doing any work: so
    ``(x + 1)**(10**9)`` fails at once.
    """
    flags = Flags(nonzero=assume_nonzero)
    base = reduce(term, assume_nonzero=assume_nonzero)
    memo: dict[Term, Term] = {}
    for t in base.walk():
        if not t.args:
            memo[t] = t
            continue
        args = [memo[c] for c in t.args]
        if t.op == OP_MUL:
            count = math.prod(_count_terms(a) for a in args)
            if count > max_terms:
                raise ExpansionRefused(
                    f"expanding {t} would create {count} terms (limit {max_terms})"
                )
            memo[t] = _distribute(args, flags)
        elif t.op == OP_POW and args[0].op == OP_ADD and args[1].op == OP_NUM:
            n = args[1].value
            k = len(args[0].args)
            if isinstance(n, int) and n > 1:
                # terms of a multinomial expansion: C(n + k - 1, k - 1)
                if n >= max_terms or math.comb(n + k - 1, k - 1) > max_terms:
                    raise ExpansionRefused(
                        f"expanding a sum of {k} terms to the power {n} would create "
                        f"more than {max_terms} terms"
                    )
                acc = args[0]
                for _ in range(n - 1):
                    acc = _distribute([acc, args[0]], flags)
                memo[t] = acc
            else:
                memo[t] = canon_pow(args[0], args[1], flags)
        else:
            memo[t] = canon_node(t.op, t.value, args, flags)
    return reduce(memo[base], assume_nonzero=assume_nonzero)
