import tenfold.cloud_kernel as api


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    assert dir(api) == sorted(api.__all__)  # nothing private is advertised
    for name in api.__all__:
        assert getattr(api, name).__module__.startswith("tenfold.cloud_kernel")
    assert issubclass(api.NotPermitted, api.CloudKernelError)
    assert issubclass(api.VerifierRejected, api.BpfError)
