import tenfold.cloud_kernel as api


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None
    assert issubclass(api.NotPermitted, api.CloudKernelError)
    assert issubclass(api.VerifierRejected, api.BpfError)
    leaked = [
        n for n in vars(api) if not n.startswith("_") and n not in api.__all__ and n != "errors"
    ]
    assert leaked == []
