"""Rules and rule sets: parsing, validation, orientation by a reduction ordering, compilation.

A rule ``lhs -> rhs [if cond, ...]`` rewrites a subject matching ``lhs``. When
a rule set is compiled:

* a right-hand side variable unbound on the left is rejected (:class:`RuleError`);
* with ``orient=True`` (the default) each rule is oriented by a Knuth-Bendix
  ordering (weight = node count, ties broken by operator precedence then
  arguments left to right, with the variable condition: no variable occurs more
  often on the right than on the left). A rule that only holds the other way is
  flipped; one that cannot be oriented either way is rejected. Oriented rule
  sets terminate; unoriented ones (``orient=False``) rely on the step budget and
  cycle detection of :func:`reduce`;
* the left-hand sides are reduced to canonical form (so they meet canonical
  subjects) and compiled into one :class:`ManyToOneMatcher`.

Conditions are guards on bound variables: ``nonzero(v)``, ``number(v)``,
``integer(v)``, ``positive(v)``, ``negative(v)``, ``symbol(v)``,
``free(v, name)`` (``v`` does not contain symbol ``name``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tenfold.symbolic_modeler._match import (
    Binding,
    ManyToOneMatcher,
    MatchBudget,
    Subst,
    pattern_variables,
)
from tenfold.symbolic_modeler._parser import parse_pattern
from tenfold.symbolic_modeler._terms import (
    AC_OPS,
    OP_NUM,
    OP_SEQ,
    OP_SEQ0,
    OP_SYM,
    WILD_OPS,
    Term,
    ac,
    make,
)
from tenfold.symbolic_modeler.errors import ParseError, RuleError

__all__ = ["EXP_RULES", "TRIG_RULES", "Rule", "RuleSet", "kbo_greater", "parse_rules"]

MAX_RULES = 100_000

Condition = Callable[[Subst], bool]


def _value(b: Binding | None) -> Term | None:
    return b if isinstance(b, Term) else None


def _num_test(test: Callable[[object], bool]) -> Callable[[Binding | None], bool]:
    def check(b: Binding | None) -> bool:
        t = _value(b)
        return t is not None and t.op == OP_NUM and test(t.value)

    return check


_PREDICATES: dict[str, Callable[[Binding | None], bool]] = {
    "nonzero": _num_test(lambda v: v != 0),
    "number": _num_test(lambda v: True),
    "integer": _num_test(lambda v: isinstance(v, int)),
    "positive": _num_test(lambda v: v > 0),  # type: ignore[operator]
    "negative": _num_test(lambda v: v < 0),  # type: ignore[operator]
    "symbol": lambda b: (t := _value(b)) is not None and t.op == OP_SYM,
}

_COND = re.compile(
    r"\s*([a-z]+)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:,\s*([A-Za-z_][A-Za-z0-9_]*)\s*)?\)\s*"
)


def _condition(text: str) -> tuple[str, Condition, str]:
    m = _COND.fullmatch(text)
    if m is None:
        raise RuleError(f"bad condition {text!r}: expected name(variable) such as nonzero(x)")
    name, var, extra = m.group(1), m.group(2).rstrip("_"), m.group(3)
    if name == "free":
        if extra is None:
            raise RuleError(f"free() takes a variable and a symbol name: {text!r}")
        symbol = extra

        def free(s: Subst) -> bool:
            t = _value(s.get(var))
            return t is not None and symbol not in t.free_symbols()

        return var, free, text.strip()
    pred = _PREDICATES.get(name)
    if pred is None or extra is not None:
        raise RuleError(
            f"unknown condition {name!r} (known: {', '.join(sorted(_PREDICATES))}, free)"
        )
    return var, (lambda s: pred(s.get(var))), text.strip()


@dataclass(frozen=True)
class Rule:
    """``lhs -> rhs`` with optional guards; build with :meth:`parse` or directly from terms."""

    lhs: Term
    rhs: Term
    conditions: tuple[str, ...] = ()
    name: str = ""

    @classmethod
    def parse(cls, text: str, name: str = "") -> Rule:
        """``"lhs -> rhs"`` or ``"lhs -> rhs if cond, cond"``."""
        body, _, conds = text.partition(" if ")
        lhs_text, arrow, rhs_text = body.partition("->")
        if not arrow:
            raise RuleError(f"rule {text.strip()!r}: expected 'lhs -> rhs'")
        try:
            lhs = parse_pattern(lhs_text)
            rhs = parse_pattern(rhs_text)
        except ParseError as exc:
            raise RuleError(f"rule {text.strip()!r}: {exc}") from exc
        conditions = tuple(c.strip() for c in conds.split(",") if c.strip())
        return cls(lhs, rhs, conditions, name or text.strip())

    def __str__(self) -> str:
        guard = f" if {', '.join(self.conditions)}" if self.conditions else ""
        return f"{self.lhs} -> {self.rhs}{guard}"


def _var_counts(t: Term) -> Counter[str]:
    counts: Counter[str] = Counter()
    stack = [t]
    while stack:
        u = stack.pop()
        if u.op in WILD_OPS:
            counts[u.value] += 1
        stack.extend(u.args)
    return counts


def _precedence(op: str) -> tuple[int, str]:
    """Sum < product < leaves and functions (by name) < power: powers rewrite away first."""
    return {"+": (0, ""), "*": (1, ""), "^": (3, "")}.get(op, (2, op))


def _weight(t: Term) -> int:
    """KBO weight: every node, numbers included, weighs 1."""
    total = 0
    stack = [t]
    while stack:
        u = stack.pop()
        total += 1
        stack.extend(u.args)
    return total


def kbo_greater(left: Term, right: Term) -> bool:
    """Knuth-Bendix order ``left > right`` (weight = node count, precedence = operator name)."""
    lc, rc = _var_counts(left), _var_counts(right)
    if any(rc[v] > lc[v] for v in rc):
        return False
    wl, wr = _weight(left), _weight(right)
    if wl != wr:
        return wl > wr
    if left.op != right.op:
        if left.op in WILD_OPS or right.op in WILD_OPS:
            return right.op in WILD_OPS and left.op not in WILD_OPS
        return _precedence(left.op) > _precedence(right.op)
    if not left.args:
        return str(left.value) > str(right.value)
    for a, b in zip(left.args, right.args, strict=False):
        if a is not b:
            return kbo_greater(a, b)
    return len(left.args) > len(right.args)


def instantiate(rhs: Term, subst: Subst) -> Term:
    """``rhs`` with variables replaced; sequence bindings splice into argument lists."""
    done: dict[Term, Term] = {}
    spliced: dict[Term, tuple[Term, ...]] = {}
    for t in rhs.walk():
        if t.op in WILD_OPS:
            b = subst[t.value]
            if isinstance(b, tuple):
                spliced[t] = b
                done[t] = ac("+", b) if b else t  # standalone use of an ordered sequence
            else:
                done[t] = b
            continue
        if not t.args:
            done[t] = t
            continue
        args: list[Term] = []
        for a in t.args:
            if a in spliced:
                args.extend(spliced[a])
            else:
                args.append(done[a])
        done[t] = make(t.op, t.value, tuple(args)) if t.op in AC_OPS or args else t
    return done[rhs]


@dataclass
class RuleSet:
    """Compiled rules: oriented, validated, and matched many-to-one.

    ``rewrite(term)`` is what :func:`reduce` calls at each canonical node: the
    first rule (in order) whose pattern matches and whose guards hold.
    """

    rules: list[Rule]
    orient: bool = True
    match_budget: int = 10_000
    matcher: ManyToOneMatcher = field(init=False, repr=False)
    _guards: list[list[tuple[str, Condition, str]]] = field(init=False, repr=False)
    _rhs_vars: list[frozenset[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from tenfold.symbolic_modeler._reduce import reduce

        if len(self.rules) > MAX_RULES:
            raise RuleError(f"rule set has {len(self.rules)} rules (limit {MAX_RULES})")
        oriented: list[Rule] = []
        for rule in self.rules:
            lhs_vars = pattern_variables(rule.lhs)
            rhs_vars = pattern_variables(rule.rhs)
            unbound = sorted(set(rhs_vars) - set(lhs_vars))
            lhs, rhs = rule.lhs, rule.rhs
            if self.orient and not kbo_greater(lhs, rhs):
                if kbo_greater(rhs, lhs) and rhs.op not in WILD_OPS:
                    lhs, rhs = rhs, lhs
                    unbound = []
                elif not unbound:
                    raise RuleError(
                        f"rule {rule}: cannot be oriented by the reduction ordering "
                        "(neither side is greater); pass orient=False to keep it as written"
                    )
            if unbound:
                raise RuleError(
                    f"rule {rule}: right-hand side uses {', '.join(unbound)} "
                    "which the left-hand side does not bind"
                )
            if lhs.op in (OP_SEQ, OP_SEQ0):
                raise RuleError(f"rule {rule}: a bare sequence variable cannot be a left-hand side")
            canon_lhs = reduce(lhs)
            oriented.append(Rule(canon_lhs, rhs, rule.conditions, rule.name))
        self.rules = oriented
        self._guards = []
        for rule in oriented:
            guards = [_condition(c) for c in rule.conditions]
            known = pattern_variables(rule.lhs)
            for var, _, text in guards:
                if var not in known:
                    raise RuleError(f"rule {rule}: condition {text!r} names unbound {var!r}")
            self._guards.append(guards)
        self.matcher = ManyToOneMatcher([r.lhs for r in oriented])
        self._rhs_vars = [frozenset(pattern_variables(r.rhs)) for r in oriented]

    @classmethod
    def of(
        cls,
        *groups: str | Rule | Iterable[str | Rule],
        orient: bool = True,
        match_budget: int = 10_000,
    ) -> RuleSet:
        """A rule set from rules, rule texts, or groups of them (``RuleSet.of(TRIG_RULES, EXP_RULES)``)."""
        rules: list[Rule] = []
        for group in groups:
            items = [group] if isinstance(group, str | Rule) else list(group)
            rules.extend(rules_of(items))
        return cls(rules, orient=orient, match_budget=match_budget)

    @classmethod
    def parse(cls, text: str, *, orient: bool = True, source: str = "<rules>") -> RuleSet:
        return cls(parse_rules(text, source), orient=orient)

    @classmethod
    def from_file(cls, path: str | Path, *, orient: bool = True) -> RuleSet:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise RuleError(f"cannot read rules file {p}: {exc.strerror}") from exc
        return cls(parse_rules(text, str(p)), orient=orient)

    def rewrite(self, term: Term, *, keep_domain: bool = False) -> Term | None:
        """The first applicable rule's result at the root of ``term``, or None.

        With ``keep_domain`` a rewrite of a term that can be undefined somewhere
        (``term.partial``) is skipped when it would drop a point where the term is
        undefined: when a variable bound to such a subterm is not used on the
        right (``sin(1/y)**2 + cos(1/y)**2 -> 1``), or when the result is defined
        everywhere (``exp(log(x)) -> x``).
        """
        budget = MatchBudget(self.match_budget)
        for index, subst in self.matcher.match(term, budget):
            guards = self._guards[index]
            if all(check(subst) for _, check, _ in guards):
                out = instantiate(self.rules[index].rhs, subst)
                if keep_domain and term.partial and drops_domain(out, subst, self._rhs_vars[index]):
                    continue
                return out
        return None

    def __len__(self) -> int:
        return len(self.rules)


def drops_domain(out: Term, subst: Subst, rhs_vars: frozenset[str]) -> bool:
    """A rewrite of a partial term to ``out`` loses points where it was undefined."""
    if not out.partial:
        return True
    for name, value in subst.items():
        if name in rhs_vars:
            continue
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, Term) and v.partial for v in values):
            return True
    return False


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """One rule per line (``lhs -> rhs [if cond, ...]``); ``#`` starts a comment."""
    rules: list[Rule] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        try:
            rules.append(Rule.parse(body, name=f"{source}:{lineno}"))
        except RuleError as exc:
            raise RuleError(f"{source}:{lineno}: {exc}") from exc
    return rules


def rules_of(items: Iterable[str | Rule]) -> list[Rule]:
    return [r if isinstance(r, Rule) else Rule.parse(r) for r in items]


# Shipped rule sets: each rule is an identity of complex analysis wherever the
# left side is defined (checked by random evaluation in the test suite).
TRIG_RULES: tuple[str, ...] = (
    "sin(x_)**2 + cos(x_)**2 -> 1",
    "sin(x_)**2 + cos(x_)**2 + r__ -> 1 + r__",
    "2*sin(x_)*cos(x_) -> sin(2*x_)",
    "cos(x_)**2 - sin(x_)**2 -> cos(2*x_)",
    "sin(x_)*cos(x_)**-1 -> tan(x_)",
)
EXP_RULES: tuple[str, ...] = (
    "exp(x_)*exp(y_) -> exp(x_ + y_)",
    "exp(x_)*exp(y_)*r__ -> exp(x_ + y_)*r__",
    "exp(x_)**n_ -> exp(n_*x_) if integer(n)",
)
