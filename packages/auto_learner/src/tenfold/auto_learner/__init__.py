"""Cross-Domain Auto Learner: AutoML that carries what it learned across domains,
validates honestly under shift, adapts online and serves in microseconds."""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._config": ["AutoLearnerConfig"],
        "._data": ["flights", "synthetic"],
        "._model": ["Model", "Predictor"],
        "._online": ["Adwin", "OnlineLearner"],
        "._search": ["AutoLearner", "FitResult", "Trial"],
        "._serve": ["ModelServer"],
        ".errors": [
            "AutoLearnerError",
            "BudgetError",
            "DataError",
            "ModelFileError",
            "SchemaMismatch",
        ],
    },
    __all__,
)
