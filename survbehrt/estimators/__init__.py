"""The public estimators: :class:`BEHRTSurvivalEstimator`, :class:`BEHRTCompetingRisksEstimator`
and :class:`BEHRTPretrainer`."""

from .competing import BEHRTCompetingRisksEstimator
from .pretrainer import BEHRTPretrainer
from .survival import LOSSES, STRATEGIES, BEHRTSurvivalEstimator

__all__ = ["BEHRTCompetingRisksEstimator", "BEHRTPretrainer", "BEHRTSurvivalEstimator", "LOSSES",
           "STRATEGIES"]
