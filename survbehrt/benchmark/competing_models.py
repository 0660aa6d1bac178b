"""The competing-risks benchmark's models: cause-specific Cox, Aalen–Johansen, the registry.

Every model of the competing task has ``fit(X, y, groups=None)`` on a competing-risks
``y`` (integer event 0..K, :func:`survbehrt.data.competing_y`) and
``predict_cumulative_incidence(X)``, an ``(n_samples, K)`` object array of
``sksurv.functions.StepFunction`` (row ``i``, column ``k - 1``: ``F_k(t | x_i)``).
:data:`COMPETING_MODELS` maps a name of ``--models`` to a factory of such a model: a
competing-risks BEHRT estimator joins the benchmark with one entry there (a name
starting with ``"BEHRT"`` is fitted from the fold's pretrainer, as in the single-outcome
task).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.base import BaseEstimator, clone

from ..competing_metrics import aalen_johansen
from ..data.competing import cause_names, cause_specific_y, check_competing_y

__all__ = [
    "AalenJohansenBaseline",
    "COMPETING_MODELS",
    "CauseSpecificCox",
    "cumulative_incidence_from_hazards",
]

AALEN_JOHANSEN = "Aalen-Johansen"


def cumulative_incidence_from_hazards(cumulative_hazards):
    """Cumulative incidence from cause-specific cumulative hazards (Aalen–Johansen product).

    On a grid ``t_1 < ... < t_M`` where the cause-specific cumulative hazards jump by
    ``dH_k(t_m)``, ``F_k(t_m) = sum_{l <= m} S(t_l-) dH_k(t_l)`` with the all-cause
    survival ``S(t_m) = prod_{l <= m} (1 - sum_k dH_k(t_l))``. With the Nelson–Aalen
    increments of a sample this is its Aalen–Johansen estimate. A step where a large
    predicted hazard makes ``sum_k dH_k > 1`` takes the rest of ``S`` and shares it in
    proportion to ``dH_k`` (so that ``sum_k F_k = 1 - S`` stays a probability).

    :func:`survbehrt.competing_hazards.cumulative_incidence_at` does not fit here: it
    spreads each bin's hazard over the bin (piecewise-exponential), while a Breslow
    cumulative hazard jumps at the event times.

    Parameters
    ----------
    cumulative_hazards : array-like, shape (n_samples, K, M)
        ``H_k(t_m | x_i)``, non-decreasing along the grid, from 0 before ``t_1``.

    Returns
    -------
    cif : ndarray, shape (n_samples, K, M)
        ``F_k(t_m | x_i)``.

    Examples
    --------
    >>> H = [[[0.5, 0.5], [0.0, 0.5]]]  # cause 1 jumps at t_1, cause 2 at t_2
    >>> cumulative_incidence_from_hazards(H)[0].tolist()
    [[0.5, 0.5], [0.0, 0.25]]
    """
    cumhaz = np.asarray(cumulative_hazards, dtype=float)
    if cumhaz.ndim != 3:
        raise ValueError(f"cumulative_hazards must be (n_samples, K, M); got shape {cumhaz.shape}.")
    step = np.diff(cumhaz, axis=2, prepend=0.0)
    if (step < -1e-12).any():
        raise ValueError("cumulative_hazards must be non-decreasing along the grid.")
    step = np.maximum(step, 0.0)
    total = step.sum(axis=1)  # (n, M): all-cause hazard jump
    share = np.minimum(1.0, 1.0 / np.where(total > 0, total, 1.0))  # 1 unless sum dH > 1
    survival = np.cumprod(1.0 - total * share, axis=1)
    before = np.concatenate([np.ones_like(survival[:, :1]), survival[:, :-1]], axis=1)
    return np.cumsum(before[:, None, :] * step * share[:, None, :], axis=2)


def _step_functions(grid, cif):
    """``(n, K)`` StepFunctions of ``F_k`` on ``grid`` (0 from time 0 to the first step)."""
    from sksurv.functions import StepFunction

    x = np.r_[0.0, grid]
    n, k, _ = cif.shape
    out = np.empty((n, k), dtype=object)
    for i in range(n):
        for c in range(k):
            out[i, c] = StepFunction(x, np.r_[0.0, cif[i, c]])
    return out


def _hazard_at(fn, times):
    """A cumulative hazard StepFunction at ``times``: 0 before its first step, flat after."""
    idx = np.searchsorted(fn.x, times, side="right") - 1
    return np.where(idx >= 0, fn.a * fn.y[np.maximum(idx, 0)] + fn.b, 0.0)


class _CompetingModel(BaseEstimator):
    """What the competing task asks of a model: the incidence of each cause as step functions."""

    def predict_cumulative_incidence(self, X):
        """The cumulative incidence of each cause.

        Parameters
        ----------
        X : pandas.DataFrame

        Returns
        -------
        cif : ndarray of StepFunction, shape (n_samples, K)
            Row ``i``, column ``k - 1``: ``F_k(t | x_i)``, from 0 at time 0.
        """
        return _step_functions(*self._incidence(X))


class CauseSpecificCox(_CompetingModel):
    """One survival model per cause (the other causes censored); incidence by the product.

    Parameters
    ----------
    estimator : estimator
        A scikit-survival model with ``predict_cumulative_hazard_function`` (e.g. a
        ``CoxPHSurvivalAnalysis`` pipeline, or a ``GridSearchCV`` of one); a clone is
        fitted on each cause's :func:`~survbehrt.data.cause_specific_y`.
    random_state : int, default=0
        Shuffles the grouped inner folds of a ``GridSearchCV`` (with ``groups``).

    Attributes
    ----------
    causes_ : tuple of str
        The cause names of the training ``y``.
    estimators_ : list
        The fitted model of each cause (a search's refitted best model).
    """

    def __init__(self, estimator=None, random_state=0):
        self.estimator = estimator
        self.random_state = random_state

    def fit(self, X, y, groups=None, fit_one=None):
        """Fit one model per cause.

        Parameters
        ----------
        X : pandas.DataFrame
        y : structured ndarray
            Competing-risks outcome.
        groups : array-like, optional
            Subject of each row (a search's inner folds are grouped by it).
        fit_one : callable, optional
            ``fit_one(model, X, y_cause, groups, name) -> fitted``; default plain
            fitting (the benchmark passes one that notes the fit's warnings).

        Returns
        -------
        self
        """
        from .models import _fit

        _, _, n_causes = check_competing_y(y, len(X))
        names = cause_names(y)
        self.causes_ = tuple(names) + tuple(str(k) for k in range(len(names) + 1, n_causes + 1))
        if fit_one is None:
            def fit_one(model, X, y_cause, groups, name):
                return _fit(model, X, y_cause, groups, self.random_state)
        fitted = [fit_one(clone(self.estimator), X, cause_specific_y(y, k), groups, name)
                  for k, name in enumerate(self.causes_, start=1)]
        self.estimators_ = [getattr(m, "best_estimator_", m) for m in fitted]
        return self

    def _incidence(self, X):
        curves = [m.predict_cumulative_hazard_function(X) for m in self.estimators_]
        grid = np.unique(np.concatenate([fn.x for per_cause in curves for fn in per_cause]))
        cumhaz = np.stack([np.stack([_hazard_at(fn, grid) for fn in per_cause])
                           for per_cause in curves], axis=1)
        return grid, cumulative_incidence_from_hazards(cumhaz)


class AalenJohansenBaseline(_CompetingModel):
    """The training sample's Aalen–Johansen incidence for every row (no covariates).

    Its risk is the same for everyone, so its concordance is 0.5: the floor of the
    ranking metrics, and a calibrated reference for the incidence.

    Attributes
    ----------
    causes_ : tuple of str
    grid_ : ndarray
        The distinct training times.
    cif_ : ndarray, shape (K, n_times)
    """

    def fit(self, X, y, groups=None):
        """Estimate the incidence of each cause.

        Parameters
        ----------
        X : pandas.DataFrame
            Ignored (its length is checked).
        y : structured ndarray
            Competing-risks outcome.
        groups : ignored

        Returns
        -------
        self
        """
        _, _, n_causes = check_competing_y(y, len(X))
        self.grid_, cif = aalen_johansen(y, n_causes=n_causes)
        self.cif_ = cif[1:]
        self.causes_ = cause_names(y)
        return self

    def _incidence(self, X):
        return self.grid_, np.broadcast_to(self.cif_, (len(X), *self.cif_.shape))


def _cause_specific(name):
    """A factory: the single-outcome task's model ``name``, one per cause."""
    def make(settings):
        from .models import make_models

        template = make_models(replace(settings, models=[name]))[name]
        return CauseSpecificCox(template, random_state=settings.random_state)
    return make


def _competing_behrt(name):
    """A factory: the single-outcome task's BEHRT variant ``name`` with one hazard per cause.

    Same strategy, learning rate, epochs and early stopping as the single-outcome row;
    the loss is the cause-specific likelihood (the competing estimator has no ranking
    term), and parameters it does not take are left out.
    """
    def make(settings):
        from ..estimators import BEHRTCompetingRisksEstimator
        from .models import make_models

        template = make_models(replace(settings, models=[name]))[name]
        allowed = BEHRTCompetingRisksEstimator().get_params(deep=False)
        params = {k: v for k, v in template.get_params(deep=False).items() if k in allowed}
        return BEHRTCompetingRisksEstimator(**dict(params, loss="nll"))
    return make


#: ``--models`` name -> factory(settings) of a competing-risks model. A requested
#: model without an entry is skipped (and said so); the Aalen–Johansen row always runs.
COMPETING_MODELS = {
    "CoxPH": _cause_specific("CoxPH"),      # counts + age, ridge tuned per cause
    "Cox-age": _cause_specific("Cox-age"),  # the index age alone
    "BEHRT-full": _competing_behrt("BEHRT-full"),
    "BEHRT-lora": _competing_behrt("BEHRT-lora"),
    "BEHRT-frozen": _competing_behrt("BEHRT-frozen"),
    AALEN_JOHANSEN: lambda settings: AalenJohansenBaseline(),
}
