"""The public estimators: :class:`BEHRTSurvivalEstimator` and :class:`BEHRTPretrainer`."""

from .pretrainer import BEHRTPretrainer
from .survival import LOSSES, STRATEGIES, BEHRTSurvivalEstimator

__all__ = ["BEHRTPretrainer", "BEHRTSurvivalEstimator", "LOSSES", "STRATEGIES"]
