"""Metrics for competing risks: Aalen–Johansen incidence, cause-specific C, AUC, Brier, calibration.

Outcomes ``y`` are competing-risks structured arrays (integer event type first, 0 =
censored, 1..K = the cause; time second), as :func:`survbehrt.data.competing_y` and
:func:`survbehrt.data.survival_labels` with a mapping of outcomes make them; a boolean
single-cause ``y`` is read as K = 1. The argument order is scikit-survival's: outcome(s)
first, then the estimate, then the cause. Estimates are samples x times.

Each metric reduces to its single-cause counterpart in :mod:`survbehrt.metrics` when
there is one cause (tested): the censoring distribution ``G`` of the inverse-probability
weights is scikit-survival's ``CensoringDistributionEstimator`` fitted on the training
outcome (any cause counts as an event), and test follow-up beyond the largest training
time is censored there first, as :mod:`survbehrt.metrics` does.

References: Wolbers et al. (2009, 2014) for the concordance with competing risks,
Blanche, Dartigues and Jacqmin-Gadda (2013) for the time-dependent AUC, Graf et al.
(1999) and Gerds & Schumacher (2006) for the inverse-probability-weighted Brier score.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from sksurv.nonparametric import (
    CensoringDistributionEstimator,
    cumulative_incidence_competing_risks,
    kaplan_meier_estimator,
)

from .data.competing import _cause_index, check_competing_y

__all__ = [
    "CalibrationTestResult",
    "aalen_johansen",
    "cause_specific_auc",
    "cause_specific_brier",
    "cause_specific_c",
    "cif_calibration_table",
    "cif_calibration_test",
]

TIED_TOL = 1e-8  # risks this close count as tied (scikit-survival's tolerance)
_CHUNK = 2**21  # pairs per block in the pairwise sums (memory bound, not a result)


# ------------------------------------------------------------------- helpers


def _outcome(y, cause=None):
    """``event`` (int), ``time``, K and the cause's number (from a name or a number)."""
    event, time, n_causes = check_competing_y(y)
    return event, time, n_causes, None if cause is None else _cause_index(y, cause)


def _step_at(grid, values, times):
    """A right-continuous step function (0 before ``grid[0]``) at ``times``."""
    idx = np.searchsorted(grid, times, side="right") - 1
    return np.where(idx >= 0, values[..., np.maximum(idx, 0)], 0.0)


def _weights(y_train, event, time, times=()):
    """Inverse-probability-of-censoring weights, and the test outcome truncated.

    ``G`` (scikit-survival's censoring Kaplan-Meier) is fitted on ``y_train``, any cause
    counting as an event. Test rows beyond the largest training time are censored there
    (``G`` is unknown past it); no metric value below that time changes. Returns
    ``event``, ``time``, ``1/G(time_i)`` for events (0 for censored rows) and
    ``1/G(t)`` at ``times``.
    """
    train_event, train_time, _ = check_competing_y(y_train)
    any_event = np.empty(len(train_event), dtype=[("event", bool), ("time", float)])
    any_event["event"] = train_event > 0
    any_event["time"] = train_time
    cens = CensoringDistributionEstimator().fit(any_event)
    t_max = train_time.max()
    event = np.where(time > t_max, 0, event)
    time = np.minimum(time, t_max)
    w_own = np.where(event > 0, _inverse(cens.predict_proba(time)), 0.0)
    times = np.asarray(times, dtype=float)
    w_t = _inverse(cens.predict_proba(times)) if times.size else times
    return event, time, w_own, w_t


def _inverse(prob):
    """``1 / prob`` with 0 where ``prob`` is 0 (a weight that cannot be estimated)."""
    with np.errstate(divide="ignore"):
        return np.where(prob > 0, 1.0 / np.where(prob > 0, prob, 1.0), 0.0)


def _as_estimate(estimate, n_samples, times):
    estimate = np.asarray(estimate, dtype=float)
    if estimate.ndim == 1:
        estimate = np.broadcast_to(estimate[:, None], (n_samples, len(times)))
    if estimate.shape != (n_samples, len(times)):
        raise ValueError(
            f"estimate must have shape (n_samples,) or (n_samples, n_times) = "
            f"({n_samples}, {len(times)}); got {estimate.shape}."
        )
    if not np.isfinite(estimate).all():
        row = int(np.argmax(~np.isfinite(estimate).all(axis=1)))
        raise ValueError(f"estimate row {row} is not finite.")
    return estimate


def _times(times):
    times = np.unique(np.asarray(times, dtype=float))
    if times.size == 0:
        raise ValueError("times is empty.")
    return times


# ------------------------------------------------------------ cumulative incidence


def aalen_johansen(y, n_causes=None, conf_type=None):
    """Aalen–Johansen cumulative incidence of each cause.

    ``sksurv.nonparametric.cumulative_incidence_competing_risks``, for any ``y`` of this
    package: causes that do not occur in ``y`` (a small group, a fold) get an incidence
    of 0 instead of scikit-survival's error.

    Parameters
    ----------
    y : structured ndarray, shape (n_samples,)
        Competing-risks outcome.
    n_causes : int, optional
        K; default the number of causes of ``y``.
    conf_type : {None, "log-log"}, default=None
        Pointwise 95% intervals, as scikit-survival computes them.

    Returns
    -------
    times : ndarray, shape (n_times,)
        The distinct times of ``y``.
    cif : ndarray, shape (n_causes + 1, n_times)
        ``cif[0]``: incidence of any cause (``1 -`` Kaplan–Meier); ``cif[k]``: of
        cause ``k`` (right-continuous steps at ``times``).
    conf_int : ndarray, shape (n_causes + 1, 2, n_times)
        Only with ``conf_type``; NaN for a cause that does not occur.

    Examples
    --------
    >>> from survbehrt.data import competing_y
    >>> y = competing_y([1, 2, 0, 1], [1.0, 2.0, 3.0, 4.0])
    >>> times, cif = aalen_johansen(y)
    >>> cif[1].tolist(), cif[2].tolist()
    ([0.25, 0.25, 0.25, 0.75], [0.0, 0.25, 0.25, 0.25])
    """
    event, time, k = check_competing_y(y)
    n_causes = k if n_causes is None else int(n_causes)
    if event.max(initial=0) > n_causes:
        raise ValueError(f"y has event types up to {event.max()} but n_causes is {n_causes}.")
    present = np.unique(event[event > 0])
    if len(present) < 2:
        # scikit-survival 0.28 fails on a single cause; its incidence is 1 - Kaplan-Meier
        km = kaplan_meier_estimator(event > 0, time, conf_type=conf_type)
        times, rows = km[0], np.tile(1.0 - km[1], (len(present) + 1, 1))
        if conf_type is not None:
            ci_rows = np.tile(1.0 - km[2][None, ::-1], (len(present) + 1, 1, 1))
    else:
        renumber = np.zeros(n_causes + 1, dtype=np.int64)
        renumber[present] = np.arange(1, len(present) + 1)
        out = cumulative_incidence_competing_risks(renumber[event], time, conf_type=conf_type)
        times, rows = out[0], out[1]
        if conf_type is not None:
            ci_rows = out[2]
    cif = np.zeros((n_causes + 1, len(times)))
    cif[0], cif[present] = rows[0], rows[1:]
    if conf_type is None:
        return times, cif
    conf_int = np.full((n_causes + 1, 2, len(times)), np.nan)
    conf_int[0], conf_int[present] = ci_rows[0], ci_rows[1:]
    return times, cif, conf_int


# ------------------------------------------------------------------ concordance


def _pairwise_c(event, time, risk, cause, w, tau):
    """Weighted concordance over Wolbers' comparable pairs (see :func:`cause_specific_c`)."""
    cases = np.flatnonzero((event == cause) & (time < tau))
    if cases.size == 0:
        raise ValueError(f"no sample has cause {cause} before tau: no comparable pair.")
    competing = (event != 0) & (event != cause)
    numerator = denominator = 0.0
    for block in np.array_split(cases, max(1, cases.size * len(time) // _CHUNK)):
        t_i, t_j = time[block, None], time[None, :]
        # j was event-free at t_i (later, or censored / another cause at the same time),
        # or had another cause before t_i: either way i's cause-k time is the shorter
        free = (t_j > t_i) | ((t_j == t_i) & (event[None, :] != cause))
        earlier_other = (t_j < t_i) & competing[None, :]
        weight = np.where(free, w[block, None] ** 2, 0.0) + np.where(
            earlier_other, w[block, None] * w[None, :], 0.0
        )
        diff = risk[block, None] - risk[None, :]
        score = np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(float))
        numerator += float((weight * score).sum())
        denominator += float(weight.sum())
    if denominator == 0:
        raise ValueError(f"no comparable pair for cause {cause}.")
    return numerator / denominator


def cause_specific_c(y, risk, cause, y_train=None, tau=None):
    """Concordance for one cause with competing risks (Wolbers et al.).

    A pair (i, j) is comparable when i had cause ``k`` at ``t_i`` and j was still
    event-free then (``t_j > t_i``, or censored or with another cause at ``t_i``), or j
    had another cause before ``t_i`` (j will never have cause ``k``). It is concordant
    when ``risk_i > risk_j``; tied risks count one half. Without ``y_train`` every
    comparable pair weighs 1 (Harrell-type; with one cause, Harrell's C). With
    ``y_train``, pairs are weighted by inverse probabilities of censoring, ``1/G(t_i)^2``
    for a j event-free at ``t_i`` and ``1/(G(t_i) G(t_j))`` for a j with another cause at
    ``t_j``, which removes the dependence on the censoring distribution (with one cause,
    Uno's C).

    Parameters
    ----------
    y : structured ndarray, shape (n_samples,)
        Competing-risks outcome.
    risk : array-like, shape (n_samples,)
        Risk of cause ``k``, higher = earlier (e.g. the predicted cumulative incidence
        of ``k`` at a horizon).
    cause : int or str
        ``k``, in 1..K, or its name (:func:`survbehrt.data.cause_names`).
    y_train : structured ndarray, optional
        Training outcome; estimates ``G``. Without it, the Harrell-type estimate.
    tau : float, optional
        Only cases (i) before ``tau`` count.

    Returns
    -------
    cindex : float

    Examples
    --------
    >>> from survbehrt.data import competing_y
    >>> y = competing_y([1, 2, 1, 0], [1.0, 2.0, 3.0, 4.0])
    >>> cause_specific_c(y, [0.9, 0.1, 0.5, 0.6], cause=1)  # pairs (0,1) (0,2) (0,3) (2,1) (2,3)
    0.8
    """
    event, time, _, cause = _outcome(y, cause)
    risk = _as_estimate(risk, len(event), [0.0])[:, 0]
    tau = np.inf if tau is None else float(tau)
    if y_train is None:
        w = np.ones(len(event))
    else:
        event, time, w, _ = _weights(y_train, event, time)
    return _pairwise_c(event, time, risk, cause, w, tau)


# ------------------------------------------------------- time-dependent AUC / Brier


def _weighted_auc(case_risk, case_w, control_risk, control_w):
    """``P(case risk > control risk)`` with weights, ties one half (Mann–Whitney)."""
    order = np.argsort(control_risk, kind="stable")
    r, cw = control_risk[order], np.r_[0.0, np.cumsum(control_w[order])]
    below = cw[np.searchsorted(r, case_risk - TIED_TOL, side="left")]
    not_above = cw[np.searchsorted(r, case_risk + TIED_TOL, side="right")]
    wins = below + 0.5 * (not_above - below)
    return float((case_w * wins).sum() / (case_w.sum() * cw[-1]))


def cause_specific_auc(y_train, y_test, risk, times, cause, controls="event-free"):
    """Cumulative/dynamic AUC for one cause with competing risks (Blanche et al. 2013).

    At time ``t`` the **cases** had cause ``k`` by ``t``; the **controls** were
    event-free at ``t`` (``controls="event-free"``, Blanche's first definition) or had
    not had cause ``k`` by ``t`` (``"not-cause"``: also those with another cause by
    ``t``). Cases and controls with another cause weigh ``1/G(t_i)``, event-free
    controls ``1/G(t)``; the AUC is the weighted probability that a case has the higher
    risk (ties one half). With one cause and event-free controls, scikit-survival's
    ``cumulative_dynamic_auc``.

    Parameters
    ----------
    y_train : structured ndarray, shape (n_train,)
        Training outcome; estimates the censoring distribution ``G``.
    y_test : structured ndarray, shape (n_samples,)
        Test outcome.
    risk : array-like, shape (n_samples,) or (n_samples, n_times)
        Risk of cause ``k`` (higher = earlier), one value or one column per time (e.g.
        the predicted cumulative incidence of ``k`` at each time).
    times : array-like, shape (n_times,)
        Evaluation times, increasing.
    cause : int or str
        ``k``, in 1..K, or its name (:func:`survbehrt.data.cause_names`).
    controls : {"event-free", "not-cause"}, default="event-free"
        Which rows are controls (above).

    Returns
    -------
    times : ndarray, shape (n_times,)
    auc : ndarray, shape (n_times,)
        NaN at a time without cases or controls.
    mean_auc : float
        The AUC averaged over ``times``, weighted by the increments of the test
        Aalen–Johansen incidence of cause ``k`` (with one cause, scikit-survival's
        weighting by the Kaplan–Meier event mass).
    """
    if controls not in ("event-free", "not-cause"):
        raise ValueError(f"controls must be 'event-free' or 'not-cause'; got {controls!r}.")
    event, time, n_causes, cause = _outcome(y_test, cause)
    times = _times(times)
    estimate = _as_estimate(risk, len(event), times)
    event, time, w_own, w_t = _weights(y_train, event, time, times)
    auc = np.full(len(times), np.nan)
    for m, t in enumerate(times):
        is_case = (time <= t) & (event == cause)
        is_control = time > t
        control_w = np.where(is_control, w_t[m], 0.0)
        if controls == "not-cause":
            other = (time <= t) & (event > 0) & (event != cause)
            is_control = is_control | other
            control_w = np.where(other, w_own, control_w)
        if is_case.any() and is_control.any():
            auc[m] = _weighted_auc(estimate[is_case, m], w_own[is_case],
                                   estimate[is_control, m], control_w[is_control])
    if len(times) == 1:
        return times, auc, float(auc[0])
    grid, cif = aalen_johansen(y_test, n_causes=n_causes)
    incidence = _step_at(grid, cif[cause], times)
    mass = np.diff(np.r_[0.0, incidence])
    return times, auc, float(np.nansum(auc * mass) / incidence[-1])


def cause_specific_brier(y_train, y_test, cif, times, cause):
    """Brier score of the predicted cumulative incidence of one cause (IPCW).

    ``BS_k(t) = mean_i W_i(t) (1{t_i <= t, cause_i = k} - F_k(t | x_i))^2`` with
    ``W_i(t) = 1/G(t_i)`` for an event of any cause by ``t``, ``1/G(t)`` for a row still
    event-free at ``t``, and 0 for a row censored by ``t``. A row with another cause by
    ``t`` counts as a non-case. With one cause and ``cif = 1 - S``, scikit-survival's
    ``brier_score``.

    Parameters
    ----------
    y_train, y_test : structured ndarray
        Training outcome (estimates ``G``) and test outcome, as in
        :func:`cause_specific_auc`.
    cif : array-like, shape (n_samples, n_times)
        Predicted cumulative incidence of cause ``k`` at ``times``.
    times : array-like, shape (n_times,)
        Evaluation times, increasing.
    cause : int or str
        ``k``, in 1..K, or its name (:func:`survbehrt.data.cause_names`).

    Returns
    -------
    times : ndarray, shape (n_times,)
    scores : ndarray, shape (n_times,)
    """
    event, time, _, cause = _outcome(y_test, cause)
    times = np.asarray(times, dtype=float)
    estimate = _as_estimate(cif, len(event), times)
    event, time, w_own, w_t = _weights(y_train, event, time, times)
    ended = (time[:, None] <= times[None, :]) & (event[:, None] > 0)
    weight = np.where(ended, w_own[:, None], 0.0) + np.where(
        time[:, None] > times[None, :], w_t[None, :], 0.0
    )
    case = ended & (event[:, None] == cause)
    return times, np.mean(weight * (case - estimate) ** 2, axis=0)


# ----------------------------------------------------------------- calibration


def cif_calibration_table(y, cif_at_horizon, horizon, cause, n_groups=10):
    """Predicted vs Aalen–Johansen cumulative incidence of one cause, by risk group.

    Rows are sorted by predicted incidence ``F_k(horizon | x)`` and split into
    ``n_groups`` groups of (almost) equal size; in each, the mean prediction is set
    against the group's Aalen–Johansen incidence of cause ``k`` at ``horizon`` (the
    other causes competing), with its log-log 95% interval. Past a group's last time
    the estimate holds its last value. With one cause, ``1 -`` the ``observed`` of
    :func:`survbehrt.metrics.calibration_table`.

    Parameters
    ----------
    y : structured ndarray, shape (n_samples,)
        Competing-risks outcome.
    cif_at_horizon : array-like, shape (n_samples,)
        Predicted ``F_k(horizon | x_i)``.
    horizon : float
        Time at which calibration is assessed.
    cause : int or str
        ``k``, in 1..K, or its name (:func:`survbehrt.data.cause_names`).
    n_groups : int, default=10
        Number of risk groups.

    Returns
    -------
    table : pandas.DataFrame
        One row per group, lowest predicted incidence first: ``group``, ``n``,
        ``n_events`` (cause ``k`` by ``horizon``), ``predicted``, ``observed``,
        ``lower``, ``upper`` and ``se`` (the standard error of ``observed``; NaN where
        the group has no cause-``k`` event).
    """
    event, time, n_causes, cause = _outcome(y, cause)
    predicted = _as_estimate(cif_at_horizon, len(event), [horizon])[:, 0]
    n_groups = int(n_groups)
    if not 1 <= n_groups <= len(event):
        raise ValueError(f"n_groups must be in [1, {len(event)}]; got {n_groups}.")
    order = np.argsort(predicted, kind="stable")
    rows = []
    for g, idx in enumerate(np.array_split(order, n_groups)):
        grid, cif, ci = aalen_johansen(y[idx], n_causes=n_causes, conf_type="log-log")
        rows.append({
            "group": g,
            "n": len(idx),
            "n_events": int(((event[idx] == cause) & (time[idx] <= horizon)).sum()),
            "predicted": float(predicted[idx].mean()),
            "observed": float(_step_at(grid, cif[cause], horizon)),
            "lower": float(_step_at(grid, ci[cause, 0], horizon)),
            "upper": float(_step_at(grid, ci[cause, 1], horizon)),
        })
    table = pd.DataFrame(rows)
    table["se"] = _se_from_log_log(table["observed"].to_numpy(), table["upper"].to_numpy())
    table.attrs.update(horizon=float(horizon), cause=cause)
    return table


def _se_from_log_log(estimate, upper):
    """The standard error behind a log-log 95% interval (scikit-survival's, Aalen variance).

    The upper bound is ``F^exp(z s / (F log F))`` with ``s`` the standard error of ``F``:
    solved for ``s``. NaN where ``F`` is 0 or 1 (no interval to invert).
    """
    z = stats.norm.isf(0.025)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_f = np.log(estimate)
        se = estimate * log_f * np.log(np.log(upper) / log_f) / z
    return np.where((estimate > 0) & (estimate < 1) & np.isfinite(se), se, np.nan)


class CalibrationTestResult(NamedTuple):
    """Result of :func:`cif_calibration_test`.

    Attributes
    ----------
    statistic : float
        ``sum_g ((observed_g - predicted_g) / se_g)^2`` over the groups with a standard
        error.
    p_value : float
        Chi-square with ``dof`` degrees of freedom; small = mis-calibrated.
    dof : int
        The number of groups used.
    """

    statistic: float
    p_value: float
    dof: int


def cif_calibration_test(table):
    """Chi-square test of a :func:`cif_calibration_table`: predicted vs observed incidence.

    The groups are disjoint, so their Aalen–Johansen estimates are independent; under
    a calibrated model each ``(observed - predicted) / se`` is approximately standard
    normal (``se``: the Aalen variance, the table's ``se`` column), and the sum of
    their squares is chi-square with one degree of freedom per group. Groups without
    a standard error (no event of the cause) are left out. The test is approximate:
    for a calibrated model (200 simulated cohorts of 2,000 rows, 5 groups) it rejected
    at the 5% level 8% of the time.

    Parameters
    ----------
    table : pandas.DataFrame
        As :func:`cif_calibration_table` returns it.

    Returns
    -------
    result : CalibrationTestResult
    """
    usable = table[np.isfinite(table["se"]) & (table["se"] > 0)]
    z = (usable["observed"] - usable["predicted"]) / usable["se"]
    statistic = float((z**2).sum())
    dof = len(usable)
    p_value = float(stats.chi2.sf(statistic, dof)) if dof else float("nan")
    return CalibrationTestResult(statistic, p_value, dof)
