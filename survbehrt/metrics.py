"""Evaluation metrics: thin wrappers over :mod:`sksurv.metrics`, plus calibration.

Outcomes ``y`` are scikit-survival structured arrays (boolean event first,
time second). Argument order follows scikit-survival: outcome(s) first, then
the estimate. Predictions are samples x times.

The inverse-probability-of-censoring weights behind Uno's C, the
time-dependent AUC and the Brier score come from the training censoring
distribution, which is unknown past the largest training time: scikit-survival
raises when a test time lies beyond it. The wrappers therefore censor test
follow-up administratively at the largest training time first. This changes
no metric value at any time point below that time (the cases, controls and
weights there are unchanged), and leaves inputs that scikit-survival accepts
untouched.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import check_array_survival, check_y_survival

__all__ = [
    "DCalibrationResult",
    "brier",
    "calibration_table",
    "d_calibration",
    "default_time_grid",
    "evaluate",
    "harrell_c",
    "integrated_brier",
    "time_dependent_auc",
    "uno_c",
]


# ------------------------------------------------------------------- helpers


def _truncate_at_train_max(y_test, y_train):
    """Censor test follow-up at the largest training time (see module docstring)."""
    _, train_time = check_y_survival(y_train)
    event, time = check_y_survival(y_test, allow_all_censored=True)
    t_max = train_time.max()
    beyond = time > t_max
    if not beyond.any():
        return y_test
    out = y_test.copy()
    event_field, time_field = y_test.dtype.names
    out[event_field] = event & ~beyond
    out[time_field] = np.minimum(time, t_max)
    return out


def _is_function_array(estimate):
    if isinstance(estimate, np.ndarray) and estimate.dtype != object:
        return False
    seq = list(estimate) if not isinstance(estimate, np.ndarray) else estimate.ravel()
    return len(seq) > 0 and callable(seq[0])


def _as_matrix(estimate, times):
    """Samples x times array from a 2-D array or an array of step functions."""
    if _is_function_array(estimate):
        times = np.asarray(times, dtype=float)
        return np.vstack([np.asarray(fn(times), dtype=float).reshape(-1) for fn in estimate])
    return np.asarray(estimate, dtype=float)


def _domain_upper(functions):
    return min(float(fn.domain[1]) for fn in functions if hasattr(fn, "domain"))


# ------------------------------------------------------------------ wrappers


def harrell_c(y, risk):
    """Harrell's concordance index (``sksurv.metrics.concordance_index_censored``).

    Parameters
    ----------
    y : structured array of shape (n_samples,)
        Survival outcome.
    risk : array-like of shape (n_samples,)
        Risk scores, higher = earlier event (``estimator.predict(X)``).

    Returns
    -------
    cindex : float
        Harrell's C.
    """
    risk = np.asarray(risk, dtype=float)
    event, time = check_array_survival(risk, y)
    return float(concordance_index_censored(event, time, risk)[0])


def uno_c(y_train, y_test, risk, tau=None):
    """Uno's IPCW concordance index (``sksurv.metrics.concordance_index_ipcw``).

    Parameters
    ----------
    y_train : structured array of shape (n_train,)
        Training outcome; estimates the censoring distribution.
    y_test : structured array of shape (n_samples,)
        Test outcome.
    risk : array-like of shape (n_samples,)
        Risk scores, higher = earlier event.
    tau : float, optional
        Truncation time: only pairs with an event before ``tau`` count.

    Returns
    -------
    cindex : float
        Uno's C.
    """
    risk = np.asarray(risk, dtype=float)
    check_array_survival(risk, y_test)
    y_test = _truncate_at_train_max(y_test, y_train)
    return float(concordance_index_ipcw(y_train, y_test, risk, tau=tau)[0])


def default_time_grid(y_test, y_train=None, n=20):
    """Evaluation times between the 10th and 90th percentile of the test times.

    Clipped to what scikit-survival's IPCW metrics accept: at or above the
    smallest test time, strictly below the largest test time and strictly
    below the largest training time.

    Parameters
    ----------
    y_test : structured array of shape (n_samples,)
        Test outcome.
    y_train : structured array of shape (n_train,), optional
        Training outcome; its largest time bounds the grid.
    n : int, default=20
        Number of points.

    Returns
    -------
    times : ndarray of shape (n_times,)
        Increasing, unique times (``n_times <= n``).

    Raises
    ------
    ValueError
        If the test follow-up leaves no room for a grid.
    """
    _, test_time = check_y_survival(y_test, allow_all_censored=True)
    lo, hi = np.percentile(test_time, [10.0, 90.0])
    lo = max(lo, test_time.min())
    hi = min(hi, np.nextafter(test_time.max(), -np.inf))
    if y_train is not None:
        _, train_time = check_y_survival(y_train, allow_all_censored=True)
        hi = min(hi, np.nextafter(train_time.max(), -np.inf))
    if not hi >= lo:
        raise ValueError(
            f"no evaluation times fit inside the test follow-up [{test_time.min()}, "
            f"{test_time.max()}) below the largest training time"
        )
    return np.unique(np.linspace(lo, hi, int(n)))


def time_dependent_auc(y_train, y_test, risk, times=None):
    """Cumulative/dynamic AUC (``sksurv.metrics.cumulative_dynamic_auc``).

    Parameters
    ----------
    y_train : structured array of shape (n_train,)
        Training outcome; estimates the censoring distribution.
    y_test : structured array of shape (n_samples,)
        Test outcome.
    risk : array-like of shape (n_samples,) or (n_samples, n_times)
        Risk scores (higher = earlier event), time-independent or one column
        per time; or an array of cumulative-hazard step functions.
    times : array-like of shape (n_times,), optional
        Evaluation times; default :func:`default_time_grid`.

    Returns
    -------
    times : ndarray of shape (n_times,)
        The (sorted, unique) evaluation times.
    auc : ndarray of shape (n_times,)
        AUC at each time.
    mean_auc : float
        AUC averaged over time, weighted by the Kaplan-Meier event mass.
    """
    if times is None:
        times = default_time_grid(y_test, y_train)
    times = np.unique(np.asarray(times, dtype=float))
    estimate = _as_matrix(risk, times) if _is_function_array(risk) else np.asarray(risk, float)
    check_array_survival(estimate, y_test)
    y_test = _truncate_at_train_max(y_test, y_train)
    auc, mean_auc = cumulative_dynamic_auc(y_train, y_test, estimate, times)
    return times, np.asarray(auc), float(mean_auc)


def brier(y_train, y_test, surv, times):
    """Time-dependent Brier score (``sksurv.metrics.brier_score``).

    Parameters
    ----------
    y_train : structured array of shape (n_train,)
        Training outcome; estimates the censoring distribution.
    y_test : structured array of shape (n_samples,)
        Test outcome.
    surv : array-like of shape (n_samples, n_times) or array of StepFunction
        Predicted survival at ``times`` (samples x times), or survival
        functions evaluated there.
    times : array-like of shape (n_times,)
        Evaluation times, increasing.

    Returns
    -------
    times : ndarray of shape (n_times,)
        The evaluation times.
    scores : ndarray of shape (n_times,)
        Brier score at each time.
    """
    times = np.asarray(times, dtype=float)
    estimate = _as_matrix(surv, times)
    check_array_survival(estimate, y_test)
    y_test = _truncate_at_train_max(y_test, y_train)
    times, scores = brier_score(y_train, y_test, estimate, times)
    return times, scores


def integrated_brier(y_train, y_test, surv, times=None):
    """Integrated Brier score (``sksurv.metrics.integrated_brier_score``).

    Parameters
    ----------
    y_train : structured array of shape (n_train,)
        Training outcome; estimates the censoring distribution.
    y_test : structured array of shape (n_samples,)
        Test outcome.
    surv : array-like of shape (n_samples, n_times) or array of StepFunction
        Predicted survival at ``times``, or survival functions.
    times : array-like of shape (n_times,), optional
        Evaluation times (at least two); default :func:`default_time_grid`,
        which needs ``surv`` as step functions.

    Returns
    -------
    ibs : float
        Integrated Brier score over ``[times[0], times[-1]]``.
    """
    if times is None:
        if not _is_function_array(surv):
            raise ValueError("times is required when surv is an array of survival values")
        times = default_time_grid(y_test, y_train)
    times = np.asarray(times, dtype=float)
    estimate = _as_matrix(surv, times)
    check_array_survival(estimate, y_test)
    y_test = _truncate_at_train_max(y_test, y_train)
    return float(integrated_brier_score(y_train, y_test, estimate, times))


# ---------------------------------------------------------------- calibration


def _km_at(event, time, horizon):
    """Kaplan-Meier survival and log-log 95% interval at ``horizon`` (last value beyond)."""
    if event.shape[0] == 0:
        return np.nan, np.nan, np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        t, s, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
    i = np.searchsorted(t, horizon, side="right") - 1
    if i < 0:
        return 1.0, 1.0, 1.0
    return float(s[i]), float(ci[0, i]), float(ci[1, i])


def calibration_table(y, surv_at_horizon, horizon, n_groups=10):
    """Predicted vs Kaplan-Meier observed survival at a horizon, by risk group.

    Subjects are sorted by predicted risk ``1 - S(horizon)`` and split into
    ``n_groups`` groups of (almost) equal size; in each group the mean
    predicted survival is set against the Kaplan-Meier estimate
    (``sksurv.nonparametric.kaplan_meier_estimator``) at ``horizon``. Past a
    group's last observed time the Kaplan-Meier estimate holds its last value.

    Parameters
    ----------
    y : structured array of shape (n_samples,)
        Survival outcome.
    surv_at_horizon : array-like of shape (n_samples,)
        Predicted ``S_i(horizon)``.
    horizon : float
        Time at which calibration is assessed.
    n_groups : int, default=10
        Number of risk groups (deciles by default).

    Returns
    -------
    table : pandas.DataFrame
        One row per group, lowest risk first, with columns ``group``, ``n``,
        ``n_events`` (events by ``horizon``), ``predicted``, ``observed``,
        ``lower`` and ``upper`` (log-log 95% interval of ``observed``).
    """
    surv = np.asarray(surv_at_horizon, dtype=float)
    if surv.ndim != 1:
        raise ValueError(f"surv_at_horizon must be 1-D, got shape {surv.shape}")
    event, time = check_array_survival(surv, y, allow_all_censored=True)
    n_groups = int(n_groups)
    if not 1 <= n_groups <= surv.shape[0]:
        raise ValueError(f"n_groups must be in [1, {surv.shape[0]}], got {n_groups}")
    order = np.argsort(1.0 - surv, kind="stable")
    rows = []
    for g, idx in enumerate(np.array_split(order, n_groups)):
        observed, lower, upper = _km_at(event[idx], time[idx], horizon)
        rows.append(
            {
                "group": g,
                "n": int(idx.shape[0]),
                "n_events": int((event[idx] & (time[idx] <= horizon)).sum()),
                "predicted": float(surv[idx].mean()),
                "observed": observed,
                "lower": lower,
                "upper": upper,
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["horizon"] = float(horizon)
    return table


class DCalibrationResult(NamedTuple):
    """Result of :func:`d_calibration`.

    Attributes
    ----------
    statistic : float
        Pearson chi-square statistic against the uniform distribution.
    p_value : float
        p-value with ``n_bins - 1`` degrees of freedom; small = mis-calibrated.
    counts : ndarray of shape (n_bins,)
        (Fractional) number of subjects per survival-probability bin.
    edges : ndarray of shape (n_bins + 1,)
        Bin edges on ``[0, 1]``.
    """

    statistic: float
    p_value: float
    counts: np.ndarray
    edges: np.ndarray


def _survival_at_own_time(survival, time):
    if _is_function_array(survival):
        fns = list(survival)
        if len(fns) != time.shape[0]:
            raise ValueError(f"expected {time.shape[0]} survival functions, got {len(fns)}")
        # clip into each function's domain: past it the function holds its last value
        return np.array([float(fn(np.clip(t, *fn.domain))) for fn, t in zip(fns, time)])
    surv = np.asarray(survival, dtype=float)
    if surv.shape != time.shape:
        raise ValueError(f"survival must have shape {time.shape}, got {surv.shape}")
    return surv


def d_calibration(y, survival, n_bins=10):
    """Distribution calibration (D-calibration) test of Haider et al. (2020).

    For a calibrated model the predicted survival at the true event time,
    ``S_i(T_i)``, is uniform on ``[0, 1]``. An uncensored subject adds one to
    the bin of ``[0, 1]`` containing ``S_i(t_i)``. A censored subject, known
    only to have ``S_i(T_i) <= S_i(c_i) = s``, spreads its unit mass over the
    bins below ``s`` as the uniform distribution conditional on that: a bin
    ``[a, b]`` entirely below ``s`` gets ``(b - a) / s``, the bin containing
    ``s`` gets ``(s - a) / s``. The bin totals are tested against equal
    expected counts with Pearson's chi-square (``scipy.stats.chisquare``).

    Parameters
    ----------
    y : structured array of shape (n_samples,)
        Survival outcome.
    survival : array-like of shape (n_samples,) or array of StepFunction
        ``S_i(t_i)``, each subject's predicted survival at its own observed
        time; or survival functions, evaluated at ``t_i`` (clipped into the
        function's domain).
    n_bins : int, default=10
        Number of equal-width bins on ``[0, 1]``.

    Returns
    -------
    result : DCalibrationResult
        ``statistic``, ``p_value``, ``counts`` and ``edges``.

    References
    ----------
    .. [1] H. Haider, B. Hoehn, S. Davis, R. Greiner, "Effective ways to build
       and evaluate individual survival distributions", JMLR 21(85), 2020.
    """
    event, time = check_y_survival(y, allow_all_censored=True)
    surv = np.clip(_survival_at_own_time(survival, time), 0.0, 1.0)
    n_bins = int(n_bins)
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.zeros(n_bins)
    # uncensored: one unit in the bin [edges[k], edges[k+1]) holding s (1 in the last)
    bins = np.clip(np.searchsorted(edges, surv[event], side="right") - 1, 0, n_bins - 1)
    counts += np.bincount(bins, minlength=n_bins)
    # censored: uniform mass on [0, s]
    s = surv[~event]
    positive = s > 0
    sp = s[positive][:, None]
    mass = np.clip(np.minimum(sp, edges[1:]) - edges[:-1], 0.0, None) / sp
    counts += mass.sum(axis=0)
    counts[0] += np.count_nonzero(~positive)  # S(c) = 0: all mass at the bottom
    statistic, p_value = stats.chisquare(counts)
    return DCalibrationResult(float(statistic), float(p_value), counts, edges)


# ------------------------------------------------------------------- evaluate


def evaluate(estimator_or_survival, X, y, y_train, times=None, return_curves=False):
    """All metrics for one fitted model on one test set.

    Parameters
    ----------
    estimator_or_survival : estimator or array of StepFunction
        A fitted estimator with ``predict(X)`` (risk, higher = earlier event)
        and ``predict_survival_function(X)`` returning step functions (any
        scikit-survival estimator, or ``BEHRTSurvivalEstimator``); or the
        survival functions themselves, in which case the risk score is
        ``-sum_t S(t)`` over the evaluation times.
    X : array-like or DataFrame
        Test inputs (ignored when survival functions are given).
    y : structured array of shape (n_samples,)
        Test outcome.
    y_train : structured array of shape (n_train,)
        Training outcome (censoring distribution for IPCW).
    times : array-like of shape (n_times,), optional
        Evaluation times; default :func:`default_time_grid`, further kept
        inside the survival functions' domains.
    return_curves : bool, default=False
        Also return the ``times``, ``auc`` and ``brier`` arrays, and the
        D-calibration bin counts ``d_calibration_counts`` (to pool over folds).

    Returns
    -------
    results : dict
        ``harrell_c``, ``uno_c``, ``mean_auc``, ``integrated_brier``,
        ``d_calibration_stat``, ``d_calibration_p`` (floats), ``n_times``;
        plus ``times``, ``auc``, ``brier`` and ``d_calibration_counts`` with
        ``return_curves=True``.

    Notes
    -----
    The time-dependent AUC uses ``1 - S_i(t)`` at each time as the risk, so a
    model whose ranking changes with the horizon is judged at each horizon;
    for proportional-hazards models this equals using ``predict``.
    """
    if hasattr(estimator_or_survival, "predict_survival_function"):
        risk = np.asarray(estimator_or_survival.predict(X), dtype=float)
        functions = np.asarray(estimator_or_survival.predict_survival_function(X), dtype=object)
    else:
        risk = None
        functions = np.asarray(estimator_or_survival, dtype=object)
    if not _is_function_array(functions):
        raise TypeError(
            "estimator_or_survival must be an estimator with predict_survival_function "
            "or an array of StepFunction"
        )
    check_array_survival(functions, y)
    if times is None:
        times = default_time_grid(y, y_train)
        times = times[times <= _domain_upper(functions)]
        if times.shape[0] < 2:
            raise ValueError(
                "fewer than two evaluation times inside the survival functions' domain"
            )
    times = np.unique(np.asarray(times, dtype=float))
    surv = _as_matrix(functions, times)
    if risk is None:
        risk = -surv.sum(axis=1)
    times_auc, auc, mean_auc = time_dependent_auc(y_train, y, 1.0 - surv, times)
    _, brier_t = brier(y_train, y, surv, times)
    dcal = d_calibration(y, functions)
    results = {
        "harrell_c": harrell_c(y, risk),
        "uno_c": uno_c(y_train, y, risk),
        "mean_auc": mean_auc,
        "integrated_brier": integrated_brier(y_train, y, surv, times),
        "d_calibration_stat": dcal.statistic,
        "d_calibration_p": dcal.p_value,
        "n_times": int(times.shape[0]),
    }
    if return_curves:
        results.update({"times": times_auc, "auc": auc, "brier": brier_t,
                        "d_calibration_counts": dcal.counts})
    return results
