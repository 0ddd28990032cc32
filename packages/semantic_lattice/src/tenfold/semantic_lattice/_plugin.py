"""Registration of the Semantic Lattice Engine with the tenfold core (CLI and benchmarks)."""

from __future__ import annotations

from tenfold.core.plugins import SystemPlugin


def kernel() -> None:
    """A deterministic slice of the hot path: parse the OWL 2 RL pack and stratify it."""
    from tenfold.semantic_lattice._datalog import parse_program, stratify
    from tenfold.semantic_lattice._packs import OWL_RL

    stratify(parse_program(OWL_RL, "owl-rl"))


plugin = SystemPlugin(
    name="semantic_lattice",
    title="Dynamic Semantic Lattice Engine",
    summary="Datalog with lattices, RDFS and OWL 2 RL reasoning over DuckDB",
    commands={
        "lattice": (
            "tenfold.semantic_lattice.cli:lattice",
            "Reason over RDF with Datalog, RDFS and OWL 2 RL; query with SPARQL",
        ),
    },
    scenarios="tenfold.semantic_lattice.bench:scenarios",
    kernel="tenfold.semantic_lattice._plugin:kernel",
)
