"""Exceptions raised by tenfold.symbolic_modeler."""

from __future__ import annotations

from tenfold.core.errors import TenfoldError


class SymbolicModelerError(TenfoldError):
    """Root of every error raised by the Symbolic Reduction Modeler."""


class ParseError(SymbolicModelerError):
    """Expression or rule text is malformed; the message names the column and what was expected."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.text = text
        self.position = position
        self.column = position + 1
        super().__init__(f"col {self.column}: {message}")


class UnsupportedExpression(SymbolicModelerError):
    """A SymPy object (or a term) has no counterpart on the other side of a conversion."""


class ReductionError(SymbolicModelerError):
    """A reduction cannot proceed soundly (for example a constant division by zero)."""


class ExpansionRefused(ReductionError):
    """An expansion would create more terms than the configured limit (x**(10**9) and the like)."""


class StepBudgetExceeded(ReductionError):
    """A rule set applied more rewrite steps than the budget allows (likely non-terminating)."""


class RewriteCycle(ReductionError):
    """A rule set rewrote a term back into itself or into a term that contains it."""


class RuleError(SymbolicModelerError):
    """A rule or rule set is invalid: unbound right-hand variables, unorientable, too large."""


class MatchBudgetExceeded(SymbolicModelerError):
    """Associative-commutative matching tried more candidate assignments than the budget allows."""


class CompilationError(SymbolicModelerError):
    """A term cannot be compiled to numeric code (unknown function, free symbol not bound)."""


class SaturationError(SymbolicModelerError):
    """saturate was given invalid limits or costs (non-positive limits, a zero-cost operator)."""


class SaturationLimitExceeded(SaturationError):
    """saturate(strict=True) stopped on a node, iteration, time or match limit before saturating."""
