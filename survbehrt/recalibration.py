"""Calibration slope and intercept of piecewise-constant hazards, and the recalibration they define.

A model's hazards are *calibrated* when, for every patient ``i``, the true hazard is the
predicted one. The check used here (Crowson et al., 2016, for Cox models) fits the
two-parameter family

    ``H'_i(t) = exp(a + b x_i) H_i(t)``,  ``x_i = log R_i - c``,

where ``H_i`` is the predicted cumulative hazard, ``R_i`` the patient's risk score (a
monotone summary of its hazards, fixed before follow-up, e.g. :func:`survbehrt.survival.risk_score`)
and ``c`` a centring constant, by maximum likelihood on observed outcomes. Since the
predicted hazard rate ``h_i(t)`` does not involve ``(a, b)``, the right-censored likelihood
``prod_i (exp(a + b x_i) h_i(t_i)) ** d_i exp(-exp(a + b x_i) H_i(t_i))`` is, up to a
constant, a Poisson likelihood of the event indicators ``d_i`` with offset
``log H_i(t_i)`` and covariate ``x_i``: a two-parameter concave problem (Newton's method).

* ``a`` is the calibration *in the large* (``exp(a)``: observed over expected events at
  the mean log risk), ``1 + b`` the calibration **slope** on the log risk: below 1 the
  predictions are too extreme (over-fitted), above 1 too timid. A calibrated model has
  ``a = 0`` and slope 1; the regression is unbiased under calibration because ``x_i`` is
  fixed at the prediction time (regressing on ``log H_i(t_i)`` itself would not be: it
  depends on the outcome).
* The same fit is a **recalibration**: the hazards of patient ``i`` multiplied by
  ``exp(a + b x_i)``. Each patient's curve keeps its shape, and the new risk score
  ``exp(a - b c) R_i ** (1 + b)`` is a strictly increasing function of the old one
  while the slope is positive: the ranking, hence every concordance index, is unchanged.
  On the logits of :mod:`survbehrt.survival` (``eta_k = softplus(a_k)``) the map is
  ``a'_k = softplus^{-1}(exp(a + b x_i) eta_k)`` (:func:`recalibrate_logits`).

References
----------
C. S. Crowson, E. J. Atkinson, T. M. Therneau, "Assessing calibration of prognostic
risk scores", Statistical Methods in Medical Research 25(4), 2016.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .survival import cumulative_hazard_at, risk_score

__all__ = ["CalibrationFit", "fit_calibration", "calibration_of_logits", "level_of_logits",
           "recalibrate_logits", "MIN_EVENTS", "MIN_SLOPE", "PENALTY"]

#: Smallest slope a recalibration applies: the new risk score stays strictly increasing
#: in the old one (a fitted slope at or below 0 means the rows rank no better than chance).
MIN_SLOPE = 0.05

#: Fewest held-out events a slope is fitted from (the estimators' validation rows after
#: training, the Cox start's pooled folds); with fewer nothing is refitted. The
#: slope's standard error is about ``1 / sqrt(events * var(log risk))``: on the Synthea
#: sample's first two folds (about 5 validation events) the fitted slopes were 1.12 and 1.47
#: and the level they imply moved the test rows' by factors of e^1.1 and e^4
#: (``benchmarks/calibration_diagnosis.py --dataset synthea-sample --cv 5``).
MIN_EVENTS = 50

#: Ridge penalty of the slope's fit towards the identity (intercept 0, slope 1): a prior of
#: standard deviation 1 on the intercept and on the slope's distance from 1, which
#: matters only when the held-out rows hold few events.
PENALTY = 1.0


class CalibrationFit(NamedTuple):
    """A fitted calibration intercept and slope (see the module docstring).

    Attributes
    ----------
    intercept : float
        ``a``: log of observed over expected events at the mean log risk.
    slope : float
        ``1 + b``: the slope on the centred log risk.
    center : float
        ``c``, the mean log risk of the rows fitted on.
    n_events : int
        Events the fit saw.
    """

    intercept: float
    slope: float
    center: float
    n_events: int


def fit_calibration(event, cumhaz_at_time, log_risk, penalty=0.0, min_slope=None,
                    max_iter=100, tol=1e-10):
    """Maximum-likelihood calibration intercept and slope of predicted cumulative hazards.

    Maximises ``sum_i d_i (a + b x_i) - exp(a + b x_i) H_i(t_i) - penalty (a^2 + b^2) / 2``
    with ``x_i = log_risk_i - mean(log_risk)`` (the Poisson form of the right-censored
    likelihood of ``H'_i = exp(a + b x_i) H_i``; see the module docstring), over
    ``1 + b >= min_slope`` when given.

    Parameters
    ----------
    event : array-like of bool, shape (n,)
        Event indicators ``d_i``.
    cumhaz_at_time : array-like of float, shape (n,)
        Predicted cumulative hazard at each row's own observed time, ``H_i(t_i) >= 0``.
    log_risk : array-like of float, shape (n,)
        The covariate: the log of a risk score fixed at the prediction time.
    penalty : float, default=0.0
        Ridge penalty pulling ``(a, b)`` to ``(0, 0)``, the identity: a prior of standard
        deviation ``1 / sqrt(penalty)`` on each, which matters only when few events
        inform the fit (the information on ``a`` is about the number of events).
    min_slope : float, optional
        Smallest slope allowed. The objective is concave, so when the free maximum lies
        below it the constrained one lies on the boundary: the slope is fixed there and
        the intercept refitted.
    max_iter : int, default=100
    tol : float, default=1e-10
        Stop when the Newton step is smaller than this (in every coordinate).

    Returns
    -------
    CalibrationFit

    Raises
    ------
    ValueError
        When the inputs differ in length, hold non-finite values or negative cumulative
        hazards, or hold no event while ``penalty`` is 0 (the intercept is then -inf).
    """
    d = np.asarray(event, dtype=bool)
    H = np.asarray(cumhaz_at_time, dtype=float)
    lr = np.asarray(log_risk, dtype=float)
    if not d.shape == H.shape == lr.shape or d.ndim != 1:
        raise ValueError(f"event, cumhaz_at_time and log_risk must be 1-D of one length, got "
                         f"shapes {d.shape}, {H.shape}, {lr.shape}")
    for name, values in (("cumhaz_at_time", H), ("log_risk", lr)):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise ValueError(f"{name} is not finite at row {bad[0]} ({len(bad)} rows)")
    if (H < 0).any():
        raise ValueError(f"cumhaz_at_time is negative at row {np.flatnonzero(H < 0)[0]}")
    if not d.any() and penalty == 0:
        raise ValueError("no events: the calibration intercept is not defined without a penalty")
    center = float(lr.mean())
    design = np.column_stack([np.ones_like(lr), lr - center])
    theta = _newton(design, H, d, penalty, np.zeros(2), [0, 1], max_iter, tol)
    if min_slope is not None and 1.0 + theta[1] < min_slope:
        theta = _newton(design, H, d, penalty, np.array([theta[0], min_slope - 1.0]), [0],
                        max_iter, tol)
    return CalibrationFit(float(theta[0]), float(1.0 + theta[1]), center, int(d.sum()))


def _newton(design, H, d, penalty, theta, free, max_iter, tol):
    """Newton's method with step halving on the penalised Poisson objective, over ``theta[free]``."""
    target = design.T @ d

    def objective(th):
        return target @ th - (np.exp(design @ th) * H).sum() - penalty * (th @ th) / 2

    current = objective(theta)
    for _ in range(max_iter):
        mu = np.exp(design @ theta) * H
        grad = (target - design.T @ mu - penalty * theta)[free]
        hess = ((design * mu[:, None]).T @ design + penalty * np.eye(2))[np.ix_(free, free)]
        step = np.zeros_like(theta)
        step[free] = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        while True:  # halve until the (concave) objective does not drop
            new = objective(theta + t * step)
            if new >= current - 1e-12 * abs(current) or t < 1e-8:
                break
            t /= 2
        theta, current = theta + t * step, new
        if np.abs(t * step).max() < tol:
            break
    return theta


def _row_log_risk(logits):
    """Log of each row's risk score (:func:`~survbehrt.survival.risk_score`), in float64 numpy."""
    return np.log(np.asarray(risk_score(np.asarray(logits, dtype=float)), dtype=float))


def _at_own_times(logits, cuts, time, event, max_time):
    """``(logits, event, H_i(t_i))`` in float64 numpy, follow-up censored at ``max_time``."""
    logits = np.asarray(logits, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if max_time is not None:
        event = event & (time <= max_time)
        time = np.minimum(time, max_time)
    cumhaz = cumulative_hazard_at(torch.from_numpy(logits), cuts, torch.from_numpy(time)).numpy()
    return logits, event, cumhaz


def calibration_of_logits(logits, cuts, time, event, max_time=None, penalty=0.0, min_slope=None):
    """Calibration intercept and slope of hazard logits on observed outcomes.

    ``H_i(t_i)`` from the logits' piecewise-constant hazards
    (:func:`~survbehrt.survival.cumulative_hazard_at`), the covariate the log of
    :func:`~survbehrt.survival.risk_score`.

    Parameters
    ----------
    logits : array-like of shape (n, K)
        Hazard logits of one prediction per row.
    cuts : array-like of shape (K + 1,)
        Grid edges.
    time, event : array-like of shape (n,)
        Observed follow-up (years after the prediction time) and event indicator.
    max_time : float, optional
        Follow-up is censored here (as the estimator's curves end at its largest
        training time); default: not censored.
    penalty : float, default=0.0
    min_slope : float, optional
        See :func:`fit_calibration`.

    Returns
    -------
    CalibrationFit
    """
    logits, event, cumhaz = _at_own_times(logits, cuts, time, event, max_time)
    return fit_calibration(event, cumhaz, _row_log_risk(logits), penalty=penalty,
                           min_slope=min_slope)


def level_of_logits(logits, cuts, time, event, slope, center, max_time=None):
    """The intercept that makes the expected events equal the observed ones at a given slope.

    The maximum-likelihood intercept with the slope fixed, in closed form:
    ``exp(a) = sum_i d_i / sum_i exp((slope - 1) x_i) H_i(t_i)``, ``x_i = log R_i - center``.
    It needs no held-out rows to be unbiased as the slope does: a network fitted by
    likelihood matches its training rows' event count by construction, and a mismatch
    there is the level its last updates left (the slope, the spread of the hazards, is
    what over-fitting hides on the training rows and shows on held-out ones).

    Parameters
    ----------
    logits : array-like of shape (n, K)
    cuts : array-like of shape (K + 1,)
    time, event : array-like of shape (n,)
    slope, center : float
        As :class:`CalibrationFit`.
    max_time : float, optional
        Follow-up is censored here.

    Returns
    -------
    float
    """
    logits, event, cumhaz = _at_own_times(logits, cuts, time, event, max_time)
    if not event.any():
        raise ValueError("no events: the calibration intercept is not defined")
    expected = (np.exp((slope - 1.0) * (_row_log_risk(logits) - center)) * cumhaz).sum()
    return float(np.log(event.sum() / expected))


def recalibrate_logits(logits, intercept, slope, center):
    """Logits whose bin hazards are each row's times ``exp(intercept + (slope - 1) (log R - center))``.

    ``R`` is the row's :func:`~survbehrt.survival.risk_score`; works on the last axis of
    ``(..., K)`` tensors (every visit of a ``(B, V, K)`` output is its own row). The
    identity for ``intercept=0, slope=1``; the new risk score is
    ``exp(intercept - (slope - 1) center) R ** slope``, increasing in ``R`` for a
    positive slope.

    Parameters
    ----------
    logits : torch.Tensor of shape (..., K)
    intercept, slope, center : float or 0-d Tensor
        As :class:`CalibrationFit`.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``logits``.
    """
    dtype = logits.dtype
    work = logits.to(torch.promote_types(dtype, torch.float32))
    eta = torch.nn.functional.softplus(work)
    log_r = torch.log(risk_score(work).clamp_min(torch.finfo(work.dtype).tiny))
    log_scale = intercept + (slope - 1.0) * (log_r - center)
    scaled = (eta * torch.exp(log_scale).unsqueeze(-1)).clamp_min(torch.finfo(work.dtype).tiny)
    # softplus^{-1}(y) = y + log(1 - exp(-y)), stable for small and large y
    return (scaled + torch.log(-torch.expm1(-scaled))).to(dtype)
