"""survbehrt: BEHRT transformer survival models for EHR sequences, as scikit-learn estimators."""

__version__ = "0.1.0"
