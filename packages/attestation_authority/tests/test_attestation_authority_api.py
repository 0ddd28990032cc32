import inspect
import types

import tenfold.attestation_authority as api
from tenfold.attestation_authority import errors
from tenfold.core.errors import CheckFailed, TenfoldError


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    assert api.__all__ == sorted(api.__all__)
    for name in api.__all__:
        assert getattr(api, name) is not None


def test_nothing_private_leaks() -> None:
    # Submodules (cli, bench) appear as attributes once something imports them.
    public = {
        n
        for n, v in vars(api).items()
        if not n.startswith("_")
        and not (isinstance(v, types.ModuleType) and v.__name__.startswith(api.__name__ + "."))
    }
    assert public - set(api.__all__) <= {"annotations"}
    for name in api.__all__:
        obj = getattr(api, name)
        module = getattr(obj, "__module__", None) or obj.__name__
        assert module.startswith("tenfold.attestation_authority"), name


def test_error_tree_roots_in_tenfold_and_refusals_are_check_failures() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert classes
    for cls in classes:
        assert issubclass(cls, api.AttestationAuthorityError)
        assert issubclass(cls, TenfoldError)
        assert cls.__doc__ and "\n" not in cls.__doc__.strip()
    assert issubclass(errors.QuoteRefused, CheckFailed)
    assert errors.QuoteRefused("nonce-replayed", "x").exit_code == 1
    assert errors.MalformedStructure("x").exit_code == 2
