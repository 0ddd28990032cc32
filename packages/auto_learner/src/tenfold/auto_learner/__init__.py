"""Cross-Domain Auto Learner: AutoML across domains with honest validation under shift."""

from tenfold.auto_learner.errors import AutoLearnerError as AutoLearnerError

__all__ = ["AutoLearnerError"]
