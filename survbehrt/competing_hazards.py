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

from .losses import survival_nll
from .survival import _check_cuts, _softplus, locate, marginal_logits

__all__ = ["competing_nll", "cumulative_incidence_at", "marginal_competing_logits"]


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
