"""Exceptions raised by tenfold.semantic_lattice."""

from __future__ import annotations

from tenfold.core.errors import CheckFailed, TenfoldError


class SemanticLatticeError(TenfoldError):
    """Root of every error raised by the Dynamic Semantic Lattice Engine."""


class RDFSyntaxError(SemanticLatticeError):
    """Raised when an N-Triples or Turtle document is malformed (the message names line:column)."""


class DatalogSyntaxError(SemanticLatticeError):
    """Raised when a Datalog program or query does not parse (the message names line:column)."""


class UnsafeRuleError(SemanticLatticeError):
    """Raised when a rule has a variable that no positive body atom binds."""


class StratificationError(SemanticLatticeError):
    """Raised when negation or aggregation runs through a recursive cycle (the message names it)."""


class SchemaError(SemanticLatticeError):
    """Raised when a rule or query uses a relation with the wrong arity or an unknown lattice."""


class QueryError(SemanticLatticeError):
    """Raised when a SPARQL query is malformed or uses a feature outside the supported subset."""


class UnknownPredicateError(QueryError):
    """Not raised any more: SPARQL answers a pattern over an unknown predicate with no rows.

    Kept so code that catches it keeps importing; Datalog reports unknown relations as
    :class:`SchemaError`.
    """


class BudgetExceededError(SemanticLatticeError):
    """Raised when reasoning runs past its time, round or row budget (the message names which)."""


class StoreError(SemanticLatticeError):
    """Raised when the DuckDB store cannot be opened, read or written."""


class InconsistencyError(CheckFailed, SemanticLatticeError):
    """Raised by a consistency check when the data contradicts its ontology."""
