import tenfold.symbolic_modeler as api


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None
    private = [n for n in vars(api) if not n.startswith("_") and n not in api.__all__]
    assert all(
        n in {"errors", "annotations"} or isinstance(getattr(api, n), type(api)) for n in private
    )
