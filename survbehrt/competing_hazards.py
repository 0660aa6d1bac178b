"""Cause-specific piecewise-constant hazards: the likelihood and the cumulative incidence.

The groundwork of a competing-risks estimator (issue 25), independent of the fit path.
The logits of C causes on the package's time grid have shape ``(..., C, K)``: cause
``c``'s hazard in bin ``k`` integrates to ``eta_ck = softplus(a_ck)``, exactly as the
single-cause head's (:mod:`survbehrt.survival`).

**Likelihood.** With cause-specific hazards the competing-risks likelihood factorises:
``-log L = sum_c [H_c(t) - 1{cause = c} log lambda_c(t)]``, the single-cause negative
log-likelihood of each cause with the other causes censored, summed. So
:func:`competing_nll` *is* :func:`survbehrt.losses.survival_nll` applied per cause, not
a copy of it.

**Cumulative incidence.** In bin ``k`` every cause's rate ``r_ck`` is constant, so with
``R_k = sum_c r_ck`` and ``S`` the all-cause survival,
``F_c(t) = F_c(c_k) + (r_ck / R_k) S(c_k) (1 - exp(-R_k (t - c_k)))``: exact between the
grid's edges; past the last edge the last bin's rates continue (the tail rule of
:func:`survbehrt.survival.cumulative_hazard_at`).
"""

from __future__ import annotations

import numpy as np
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import concordance_index_censored

from .losses import SurvivalNLL, survival_nll
from .survival import SurvivalCurve, _check_cuts, _softplus, locate, marginal_logits

__all__ = [
    "CompetingNLL",
    "IncidenceCurve",
    "all_cause_logits",
    "cause_specific_concordance",
    "competing_nll",
    "cumulative_incidence_at",
    "incidence_curves",
    "incidence_risk",
    "marginal_competing_logits",
]


def competing_nll(logits, time, event, cuts, weight=None, mask=None, reduction="mean"):
    """Negative log-likelihood of competing causes under cause-specific hazards.

    Parameters
    ----------
    logits : Tensor of shape (N, C, K) or (B, V, C, K)
        Hazard logits of each cause on the grid.
    time : Tensor of shape (N,) or (B, V)
        Follow-up in years.
    event : Tensor of shape (N,) or (B, V), integer
        0 = censored, ``c`` in 1..C = the cause that happened.
    cuts : array-like of shape (K + 1,)
        Grid edges; times past the last are censored there.
    weight, mask, reduction
        As in :func:`survbehrt.losses.survival_nll`.

    Returns
    -------
    loss : Tensor
        The sum over causes of each cause's :func:`~survbehrt.losses.survival_nll`
        (scalar, or per row for ``reduction="none"``). With ``"mean"`` the per-cause
        means share their rows and weights, so the sum is the mean of the rows' sums.
    """
    import torch

    if logits.dim() not in (3, 4):
        raise ValueError(f"logits must be (N, C, K) or (B, V, C, K); got {tuple(logits.shape)}")
    event = torch.as_tensor(event, device=logits.device)
    if event.is_floating_point() or event.dtype == torch.bool:
        raise TypeError("event must hold integer causes 0..C (0 = censored)")
    n_causes = logits.shape[-2]
    if event.numel() and (event.min() < 0 or event.max() > n_causes):
        raise ValueError(f"event must be in 0..{n_causes}; got {event.min()}..{event.max()}")
    return sum(
        survival_nll(logits[..., c, :], time, event == c + 1, cuts, weight=weight, mask=mask,
                     reduction=reduction)
        for c in range(n_causes)
    )


def cumulative_incidence_at(logits, cuts, times):
    """Cumulative incidence of each cause at arbitrary times (exact, see the module).

    Parameters
    ----------
    logits : ndarray of shape (n_samples, C, K)
        Hazard logits of each cause.
    cuts : array-like of shape (K + 1,)
        Grid edges, starting at 0.
    times : array-like of shape (n_times,)
        Non-negative times.

    Returns
    -------
    cif : ndarray of shape (n_samples, C, n_times)
        ``cif[i, c - 1, m] = F_c(times[m] | x_i)``; summed over causes, ``1 - S``.

    Examples
    --------
    Two causes with constant rates 0.3 and 0.1 per year: ``F_1(t) = 3/4 (1 - e^(-0.4 t))``.

    >>> import numpy as np
    >>> eta = np.array([0.3, 0.1]) * 2.0  # one bin of width 2
    >>> logits = np.log(np.expm1(eta))[None, :, None]
    >>> cif = cumulative_incidence_at(logits, [0.0, 2.0], [1.0, 5.0])
    >>> bool(np.allclose(cif[0, 0], 0.75 * (1 - np.exp(-0.4 * np.array([1.0, 5.0])))))
    True
    """
    logits = np.asarray(logits, dtype=float)
    if logits.ndim != 3:
        raise ValueError(f"logits must be (n_samples, C, K); got shape {logits.shape}")
    cuts = _check_cuts(cuts, logits.shape[-1])
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or not (np.isfinite(times).all() and (times >= 0).all()):
        raise ValueError("times must be a 1-D array of finite, non-negative numbers")
    eta = _softplus(logits)  # (n, C, K)
    total = eta.sum(axis=1)  # (n, K): all-cause hazard mass of each bin
    share_of = np.divide(eta, total[:, None, :], out=np.zeros_like(eta),
                         where=total[:, None, :] > 0)
    # all-cause survival at each bin's start, and each cause's incidence there
    surv_start = np.exp(-(np.cumsum(total, axis=1) - total))  # (n, K)
    gained = share_of * (surv_start * -np.expm1(-total))[:, None, :]  # whole bins
    before = np.cumsum(gained, axis=2) - gained  # (n, C, K): F_c at each bin's start
    k, share = locate(times, cuts)
    partial = -np.expm1(-total[:, k] * share[None, :])  # (n, n_times)
    return before[:, :, k] + share_of[:, :, k] * (surv_start[:, k] * partial)[:, None, :]


def marginal_competing_logits(time, event, cuts, n_causes=None, prior_events=0.5):
    """The no-covariate maximum-likelihood logits of each cause, shape ``(C, K)``.

    The likelihood factorises over causes, so each cause's row is
    :func:`survbehrt.survival.marginal_logits` of its events (the others censored):
    a head started there answers the Aalen–Johansen incidence before it learns.

    Parameters
    ----------
    time : array-like of shape (n_samples,)
        Follow-up in years.
    event : array-like of shape (n_samples,), int
        0 = censored, 1..C = cause.
    cuts : array-like of shape (K + 1,)
        Grid edges.
    n_causes : int, optional
        C; default the largest cause in ``event``.
    prior_events : float, default=0.5
        As in :func:`~survbehrt.survival.marginal_logits`.

    Returns
    -------
    logits : ndarray of shape (C, K)
    """
    event = np.asarray(event)
    n_causes = int(event.max(initial=0)) if n_causes is None else int(n_causes)
    return np.stack([marginal_logits(time, event == c, cuts, prior_events=prior_events)
                     for c in range(1, n_causes + 1)])


class CompetingNLL(SurvivalNLL):
    """Module form of :func:`competing_nll` (the competing-risks estimator's criterion).

    :class:`~survbehrt.losses.SurvivalNLL` with the causes summed: the same grid and
    reduction; only the forward differs.

    Parameters
    ----------
    cuts : array-like of shape (K + 1,)
        Grid edges.
    reduction : {"mean", "sum", "none"}, default="mean"
    """

    def forward(self, logits, time, event, weight=None, mask=None, groups=None):
        """Compute the loss (``groups`` is accepted and ignored, for a uniform call).

        Parameters
        ----------
        logits : Tensor of shape (N, C, K) or (B, V, C, K)
        time : Tensor of shape (N,) or (B, V)
        event : Tensor of shape (N,) or (B, V)
            The cause 0..C; a float tensor of whole numbers (as batches carry targets)
            is read as integers.
        weight, mask : Tensor, optional
        groups : ignored

        Returns
        -------
        loss : Tensor
        """
        import torch

        event = torch.as_tensor(event)
        if event.is_floating_point():
            event = event.round().long()
        return competing_nll(logits, time, event, self.cuts, weight=weight, mask=mask,
                             reduction=self.reduction)


def all_cause_logits(logits):
    """The all-cause hazard logits ``(n, K)`` of cause-specific logits ``(n, C, K)``.

    The all-cause hazard is the sum of the causes': ``eta_k = sum_c softplus(a_ck)``,
    returned as the logit whose softplus it is, so that every single-cause function of
    :mod:`survbehrt.survival` gives the all-cause survival and cumulative hazard.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, C, K)

    Returns
    -------
    logits : ndarray of shape (n_samples, K)
    """
    eta = _softplus(np.asarray(logits, dtype=float)).sum(axis=-2)
    # softplus^-1(eta) = log(expm1(eta)) = eta + log(1 - exp(-eta)), stable for large eta
    with np.errstate(divide="ignore"):
        return eta + np.log(-np.expm1(-eta))


def incidence_risk(logits, cuts, horizon=None):
    """Each cause's risk score: its incidence summed over the grid's edges, or at ``horizon``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, C, K)
    cuts : array-like of shape (K + 1,)
    horizon : float, optional
        Return ``F_c(horizon)``; default ``sum_k F_c(c_k)`` over the edges ``c_1..c_K``
        (as the single-cause risk score sums the cumulative hazard there, early risk
        weighs more than late risk).

    Returns
    -------
    risk : ndarray of shape (n_samples, C)
    """
    cuts = np.asarray(cuts, dtype=float)
    times = cuts[1:] if horizon is None else [float(horizon)]
    return cumulative_incidence_at(logits, cuts, times).sum(axis=-1)


class IncidenceCurve(SurvivalCurve):
    """One cause's cumulative incidence ``F_c(t)``, exact between the grid's edges.

    A :class:`sksurv.functions.StepFunction` as :class:`~survbehrt.survival.SurvivalCurve`
    is (knots in ``x`` / ``y`` for plotting; the call is exact at any time of the domain).

    Parameters
    ----------
    logits : ndarray of shape (C, K)
        The patient's hazard logits of every cause (the incidence of one depends on all).
    cause : int
        ``c`` in 1..C.
    cuts : ndarray of shape (K + 1,)
        Grid edges.
    upper : float
        End of the domain ``[0, upper]``.
    knots_per_bin : int, default=8
    """

    def __init__(self, logits, cause, cuts, upper, knots_per_bin=8):
        self.logits = np.asarray(logits, dtype=float)
        self.cause = int(cause)
        # the all-cause curve's knots; ``_values`` (below) gives them the incidence
        super().__init__(_softplus(self.logits).sum(axis=0), cuts, upper, kind="cumhaz",
                         knots_per_bin=knots_per_bin)
        self.kind = "incidence"  # what it measures (the knots above are the all-cause curve's)

    def _values(self, t):
        return cumulative_incidence_at(self.logits[None], self.cuts, np.atleast_1d(t))[
            0, self.cause - 1]

    def __repr__(self):
        return f"IncidenceCurve(cause={self.cause}, cuts={self.cuts!r}, logits={self.logits!r})"


def incidence_curves(logits, cuts, max_time, cause=None):
    """Every patient's :class:`IncidenceCurve` of every cause, or of one.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, C, K)
    cuts : array-like of shape (K + 1,)
    max_time : float
        End of the domain (``TimeGrid.max_time_``), as :func:`survbehrt.survival.survival_curves`.
    cause : int, optional
        Only this cause's curves (1..C), built alone.

    Returns
    -------
    functions : ndarray of shape (n_samples, C), or (n_samples,) with ``cause``; dtype=object
    """
    logits = np.asarray(logits, dtype=float)
    if logits.ndim != 3:
        raise ValueError(f"logits must be (n_samples, C, K); got shape {logits.shape}")
    cuts = _check_cuts(cuts, logits.shape[-1])
    causes = range(1, logits.shape[1] + 1) if cause is None else [int(cause)]
    funcs = np.empty((logits.shape[0], len(causes)), dtype=object)
    for i, j in np.ndindex(funcs.shape):
        funcs[i, j] = IncidenceCurve(logits[i], causes[j], cuts, max_time)
    return funcs if cause is None else funcs[:, 0]


def cause_specific_concordance(event, time, risk, cause):
    """Wolbers' concordance of one cause, without censoring weights (Harrell-type).

    What the competing-risks estimator's ``score`` and its early stopping compute
    (:func:`survbehrt.competing_metrics.cause_specific_c` with ``y_train=None``, which
    sits above the estimators): a row with another cause never has ``cause``, so it
    is comparable with every case of ``cause`` -- Harrell's C with those rows censored
    after every other time.

    Parameters
    ----------
    event : ndarray of int, shape (n_samples,)
        0 = censored, 1..C = cause.
    time : ndarray of shape (n_samples,)
    risk : ndarray of shape (n_samples,)
        Risk of ``cause``, higher = earlier.
    cause : int

    Returns
    -------
    cindex : float
        NaN when no pair is comparable (no case of ``cause``).
    """
    event, time = np.asarray(event), np.asarray(time, dtype=float)
    case = event == cause
    if not case.any():
        return float("nan")
    other = (event > 0) & ~case
    later = np.where(other, time.max() + 1.0, time)
    try:
        return float(concordance_index_censored(case, later, np.asarray(risk, dtype=float))[0])
    except NoComparablePairException:
        return float("nan")
