import tenfold.autoblocker_ledger as api
from tenfold.autoblocker_ledger import errors
from tenfold.core.errors import CheckFailed, TenfoldError


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None
    private = [n for n in vars(api) if not n.startswith("_") and n not in api.__all__]
    assert all(
        n in {"errors", "annotations"} or isinstance(getattr(api, n), type(api)) for n in private
    )


def test_no_private_module_leaks_through_the_api() -> None:
    for name in api.__all__:
        obj = getattr(api, name)
        module = getattr(obj, "__module__", "tenfold.autoblocker_ledger")
        assert module.startswith("tenfold.autoblocker_ledger"), (name, module)


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
