"""survbehrt: BEHRT transformer survival models for EHR sequences, as scikit-learn estimators."""

from .estimators import BEHRTPretrainer, BEHRTSurvivalEstimator

__version__ = "0.1.0"

__all__ = ["BEHRTPretrainer", "BEHRTSurvivalEstimator", "__version__"]
