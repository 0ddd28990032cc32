"""Dynamic Semantic Lattice Engine: Datalog with lattices, RDFS and OWL 2 RL over DuckDB."""

from tenfold.semantic_lattice.errors import SemanticLatticeError as SemanticLatticeError

__all__ = ["SemanticLatticeError"]
