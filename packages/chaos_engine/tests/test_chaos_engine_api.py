import tenfold.chaos_engine as api


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
