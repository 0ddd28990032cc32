import inspect

import tenfold.attestation_authority as api
from tenfold.attestation_authority import errors
from tenfold.core.errors import CheckFailed, TenfoldError


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
