"""The public estimators: :class:`BEHRTSurvivalEstimator`, :class:`BEHRTCompetingRisksEstimator`,
:class:`BEHRTEnsemble` and :class:`BEHRTPretrainer`."""

from .competing import BEHRTCompetingRisksEstimator
from .ensemble import BEHRTEnsemble
from .pretrainer import BEHRTPretrainer
from .survival import LOSSES, STRATEGIES, BEHRTSurvivalEstimator

__all__ = ["BEHRTCompetingRisksEstimator", "BEHRTEnsemble", "BEHRTPretrainer", "BEHRTSurvivalEstimator", "LOSSES",
           "STRATEGIES"]
