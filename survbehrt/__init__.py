"""survbehrt: BEHRT transformer survival models for EHR sequences, as scikit-learn estimators."""

from ._version import __version__
from .estimators import (
    BEHRTCompetingRisksEstimator,
    BEHRTEnsemble,
    BEHRTPretrainer,
    BEHRTSurvivalEstimator,
)

__all__ = ["BEHRTCompetingRisksEstimator", "BEHRTEnsemble", "BEHRTPretrainer", "BEHRTSurvivalEstimator", "__version__"]
