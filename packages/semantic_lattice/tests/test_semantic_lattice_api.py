import tenfold.semantic_lattice as api
from tenfold.core.errors import TenfoldError


def test_the_api_covers_the_store_the_language_and_the_errors() -> None:
    assert {"LatticeStore", "Engine", "Budget", "parse_program", "rule_pack"} <= set(api.__all__)
    errors = [getattr(api, n) for n in api.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, api.SemanticLatticeError) for e in errors)
    assert issubclass(api.SemanticLatticeError, TenfoldError)
    # No implementation module leaks through the package namespace.
    assert not any(n.startswith("_") and not n.startswith("__") for n in api.__all__)
