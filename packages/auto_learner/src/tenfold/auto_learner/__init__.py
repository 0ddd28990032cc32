"""Cross-Domain Auto Learner: AutoML that carries what it learned across domains,
validates honestly under shift, adapts online and serves in microseconds."""

# The public names resolve on first use (PEP 562), so importing the package (for
# its CLI or plugin registration) does not import the heavy libraries behind it.
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenfold.auto_learner._config import AutoLearnerConfig as AutoLearnerConfig
    from tenfold.auto_learner._data import flights as flights
    from tenfold.auto_learner._data import synthetic as synthetic
    from tenfold.auto_learner._model import Model as Model
    from tenfold.auto_learner._model import Predictor as Predictor
    from tenfold.auto_learner._online import Adwin as Adwin
    from tenfold.auto_learner._online import OnlineLearner as OnlineLearner
    from tenfold.auto_learner._search import AutoLearner as AutoLearner
    from tenfold.auto_learner._search import FitResult as FitResult
    from tenfold.auto_learner._search import Trial as Trial
    from tenfold.auto_learner._serve import ModelServer as ModelServer
    from tenfold.auto_learner.errors import AutoLearnerError as AutoLearnerError
    from tenfold.auto_learner.errors import BudgetError as BudgetError
    from tenfold.auto_learner.errors import DataError as DataError
    from tenfold.auto_learner.errors import ModelFileError as ModelFileError
    from tenfold.auto_learner.errors import SchemaMismatch as SchemaMismatch

_LAZY = {
    "AutoLearnerConfig": "tenfold.auto_learner._config",
    "flights": "tenfold.auto_learner._data",
    "synthetic": "tenfold.auto_learner._data",
    "Model": "tenfold.auto_learner._model",
    "Predictor": "tenfold.auto_learner._model",
    "Adwin": "tenfold.auto_learner._online",
    "OnlineLearner": "tenfold.auto_learner._online",
    "AutoLearner": "tenfold.auto_learner._search",
    "FitResult": "tenfold.auto_learner._search",
    "Trial": "tenfold.auto_learner._search",
    "ModelServer": "tenfold.auto_learner._serve",
    "AutoLearnerError": "tenfold.auto_learner.errors",
    "BudgetError": "tenfold.auto_learner.errors",
    "DataError": "tenfold.auto_learner.errors",
    "ModelFileError": "tenfold.auto_learner.errors",
    "SchemaMismatch": "tenfold.auto_learner.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Adwin",
    "AutoLearner",
    "AutoLearnerConfig",
    "AutoLearnerError",
    "BudgetError",
    "DataError",
    "FitResult",
    "Model",
    "ModelFileError",
    "ModelServer",
    "OnlineLearner",
    "Predictor",
    "SchemaMismatch",
    "Trial",
    "flights",
    "synthetic",
]
