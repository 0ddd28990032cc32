import tenfold.semantic_lattice as api
from tenfold.core.errors import TenfoldError


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None
    private = [n for n in vars(api) if not n.startswith("_") and n not in api.__all__]
    allowed = {"errors", "annotations"}
    assert all(n in allowed or isinstance(getattr(api, n), type(api)) for n in private)


def test_the_api_covers_the_store_the_language_and_the_errors() -> None:
    assert {"LatticeStore", "Engine", "Budget", "parse_program", "rule_pack"} <= set(api.__all__)
    errors = [getattr(api, n) for n in api.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, api.SemanticLatticeError) for e in errors)
    assert issubclass(api.SemanticLatticeError, TenfoldError)
    # No implementation module leaks through the package namespace.
    assert not any(n.startswith("_") and not n.startswith("__") for n in api.__all__)
