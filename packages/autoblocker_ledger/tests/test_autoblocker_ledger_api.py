from tenfold.autoblocker_ledger import errors
from tenfold.core.errors import CheckFailed, TenfoldError


def test_error_tree() -> None:
    assert issubclass(errors.AutoblockerLedgerError, TenfoldError)
    for cls in (errors.ProofError, errors.ChainError, errors.SignatureError):
        assert issubclass(cls, errors.VerificationFailed) and issubclass(cls, CheckFailed)
        assert cls.exit_code == 1
    assert errors.MalformedEvent.exit_code == 2
    assert issubclass(errors.StoreFull, errors.StoreError)
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.AutoblockerLedgerError):
            assert cls.__doc__ and cls.__doc__.strip()
