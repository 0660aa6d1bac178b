"""A fitted pretrainer as the survival estimator's starting point.

``pretrained`` is a fitted :class:`~survbehrt.estimators.pretrainer.BEHRTPretrainer`
(possibly wrapped in ``sklearn.frozen.FrozenEstimator``) or a file it saved. It is read,
never refitted: the survival estimator shares it between clones
(:func:`is_fitted_pretrainer`) and :func:`resolve_pretrained` hands ``fit`` the fitted
object.
"""

from __future__ import annotations

import os

from .pretrainer import BEHRTPretrainer

__all__ = ["is_fitted_pretrainer", "resolve_pretrained", "unwrap_frozen"]


def unwrap_frozen(obj):
    """Accept ``sklearn.frozen.FrozenEstimator(pretrainer)`` as well as the pretrainer."""
    inner = getattr(obj, "estimator", None)
    if type(obj).__name__ == "FrozenEstimator" and inner is not None:
        return inner
    return obj


def is_fitted_pretrainer(obj) -> bool:
    """Whether ``obj`` (unwrapped) is a fitted pretrainer."""
    obj = unwrap_frozen(obj)
    return hasattr(obj, "module_") and hasattr(obj, "tokenizer_")


def resolve_pretrained(pretrained):
    """The fitted pretrainer ``pretrained`` names (None for None).

    Parameters
    ----------
    pretrained : BEHRTPretrainer, FrozenEstimator, str, path-like or None

    Returns
    -------
    BEHRTPretrainer or None

    Raises
    ------
    ValueError
        If it is an unfitted pretrainer.
    """
    pre = unwrap_frozen(pretrained)
    if pre is None:
        return None
    if isinstance(pre, (str, os.PathLike)):
        return BEHRTPretrainer.load(pre)
    if not is_fitted_pretrainer(pre):
        raise ValueError(
            "pretrained must be a *fitted* BEHRTPretrainer (or a path it saved); "
            f"got an unfitted {type(pre).__name__}. Fit it first, e.g. "
            "BEHRTPretrainer(...).fit(X_unlabelled)."
        )
    return pre
