import tenfold.chaos_engine as api


def test_public_names_are_exported_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None
    private = [n for n in vars(api) if not n.startswith("_") and n not in api.__all__]
    assert all(
        n in {"errors", "annotations"} or isinstance(getattr(api, n), type(api)) for n in private
    )


def test_the_documented_api_is_there() -> None:
    import inspect

    assert inspect.iscoroutinefunction(api.ChaosEngine.create)
    assert inspect.iscoroutinefunction(api.ChaosEngine.inject_fault)
    assert inspect.iscoroutinefunction(api.FaultHandle.revert)
    assert callable(api.ChaosEngine.collect_metrics)
    assert callable(api.chaos.point)
    faults = [getattr(api, n) for n in api.__all__ if isinstance(getattr(api, n), type)]
    kinds = {f.kind for f in faults if issubclass(f, api.Fault) and f is not api.Fault}
    assert {"cpu_hog", "memory_hog", "packet_loss", "disk_error", "process_pause"} <= kinds
    from tenfold.core.errors import TenfoldError

    assert issubclass(api.ChaosEngineError, TenfoldError)
