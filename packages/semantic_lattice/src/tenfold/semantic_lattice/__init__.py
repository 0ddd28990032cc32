"""Dynamic Semantic Lattice Engine: Datalog with lattices, RDFS and OWL 2 RL over DuckDB."""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.semantic_lattice._datalog import parse_program as parse_program
    from tenfold.semantic_lattice._engine import Budget as Budget
    from tenfold.semantic_lattice._engine import Engine as Engine
    from tenfold.semantic_lattice._engine import ReasonStats as ReasonStats
    from tenfold.semantic_lattice._lubm import generate_lubm as generate_lubm
    from tenfold.semantic_lattice._lubm import lubm_tbox as lubm_tbox
    from tenfold.semantic_lattice._packs import rule_pack as rule_pack
    from tenfold.semantic_lattice._rdf import graphs_isomorphic as graphs_isomorphic
    from tenfold.semantic_lattice._rdf import parse_ntriples as parse_ntriples
    from tenfold.semantic_lattice._rdf import parse_turtle as parse_turtle
    from tenfold.semantic_lattice._store import Inconsistency as Inconsistency
    from tenfold.semantic_lattice._store import LatticeStore as LatticeStore
    from tenfold.semantic_lattice._store import QueryResult as QueryResult
    from tenfold.semantic_lattice.errors import BudgetExceededError as BudgetExceededError
    from tenfold.semantic_lattice.errors import DatalogSyntaxError as DatalogSyntaxError
    from tenfold.semantic_lattice.errors import InconsistencyError as InconsistencyError
    from tenfold.semantic_lattice.errors import QueryError as QueryError
    from tenfold.semantic_lattice.errors import RDFSyntaxError as RDFSyntaxError
    from tenfold.semantic_lattice.errors import SchemaError as SchemaError
    from tenfold.semantic_lattice.errors import SemanticLatticeError as SemanticLatticeError
    from tenfold.semantic_lattice.errors import StoreError as StoreError
    from tenfold.semantic_lattice.errors import StratificationError as StratificationError
    from tenfold.semantic_lattice.errors import UnknownPredicateError as UnknownPredicateError
    from tenfold.semantic_lattice.errors import UnsafeRuleError as UnsafeRuleError

__all__ = [
    "Budget",
    "BudgetExceededError",
    "DatalogSyntaxError",
    "Engine",
    "Inconsistency",
    "InconsistencyError",
    "LatticeStore",
    "QueryError",
    "QueryResult",
    "RDFSyntaxError",
    "ReasonStats",
    "SchemaError",
    "SemanticLatticeError",
    "StoreError",
    "StratificationError",
    "UnknownPredicateError",
    "UnsafeRuleError",
    "generate_lubm",
    "graphs_isomorphic",
    "lubm_tbox",
    "parse_ntriples",
    "parse_program",
    "parse_turtle",
    "rule_pack",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._datalog": ["parse_program"],
        "._engine": ["Budget", "Engine", "ReasonStats"],
        "._lubm": ["generate_lubm", "lubm_tbox"],
        "._packs": ["rule_pack"],
        "._rdf": ["graphs_isomorphic", "parse_ntriples", "parse_turtle"],
        "._store": ["Inconsistency", "LatticeStore", "QueryResult"],
        ".errors": [
            "BudgetExceededError",
            "DatalogSyntaxError",
            "InconsistencyError",
            "QueryError",
            "RDFSyntaxError",
            "SchemaError",
            "SemanticLatticeError",
            "StoreError",
            "StratificationError",
            "UnknownPredicateError",
            "UnsafeRuleError",
        ],
    },
    __all__,
)
