import tenfold.pipeline_engine as api
from tenfold.core.errors import TenfoldError


def test_core_api_names_are_public() -> None:
    for name in ("Flow", "Pipeline", "Stage", "Source", "Sink", "KafkaSource", "PostgresSink"):
        assert name in api.__all__


def test_errors_form_one_tree_under_tenfold_error() -> None:
    for cls in (
        api.PipelineDefinitionError,
        api.SchemaError,
        api.ConnectorError,
        api.CheckpointError,
        api.PipelineFailed,
        api.SupervisorError,
        api.FencedWrite,
    ):
        assert issubclass(cls, api.PipelineEngineError)
        assert issubclass(cls, TenfoldError)
        assert cls.__doc__
