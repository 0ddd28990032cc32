"""Registration of the Semantic Lattice Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin

plugin = SystemPlugin(
    name="semantic_lattice",
    title="Dynamic Semantic Lattice Engine",
    summary="Datalog with lattices, RDFS and OWL 2 RL reasoning over DuckDB",
)
