"""Survival on a time grid with piecewise-constant hazards: the grid, and hazards to answers.

The model predicts, for every patient (or every visit, see
:func:`landmark_targets`), ``K`` logits ``a_k`` on a grid of edges
``0 = c_0 < c_1 < ... < c_K`` (a fitted :class:`TimeGrid`). Bin ``k`` is
``(c_k, c_{k+1}]`` and the hazard is constant inside it (the
piecewise-exponential model of MOTOR and pycox's PC-Hazard):

* ``eta_k = softplus(a_k)`` is the hazard integrated over the whole bin, so the
  hazard rate in bin ``k`` is ``lambda_k = eta_k / (c_{k+1} - c_k)``;
* the cumulative hazard ``H(t) = sum_{j<k} eta_j + lambda_k (t - c_k)`` for ``t``
  in bin ``k`` is continuous and piecewise linear, and ``S(t) = exp(-H(t))``;
* at the edges ``S(c_{k+1}) = prod_{j<=k} (1 - h_j)`` with ``h_j = sigmoid(a_j)``,
  the conditional probability of the event in bin ``j``
  (``1 - exp(-softplus(a)) = sigmoid(a)``);
* **tail rule**: after the last edge the last bin's rate continues.

The likelihood of a subject observed until ``t`` (event indicator ``delta``)
is ``exp(-H(t)) lambda_k(t) ** delta``: a censored subject counts for exactly
the part of a bin it was observed, so the estimate is unbiased for any grid
(see :func:`survbehrt.losses.survival_nll`). Times past ``c_K`` are censored at
``c_K`` in training (the grid is the modelled horizon).

Survival answers are continuous in ``t``: :class:`SurvivalCurve` is a
scikit-survival ``StepFunction`` that evaluates the curve exactly at any time,
and :func:`evaluate_on_times` gives the same values as an array.

Over 600 lines as one unit: the grid and every map from hazard logits to an answer
(hazards, cumulative hazards, survival at any time, risk scores, step functions) share
one definition -- the piecewise-constant hazard and its tail rule -- and must change
together; about half of the lines are their numpydoc.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from sksurv.functions import StepFunction
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import check_y_survival

__all__ = [
    "ExactCurve",
    "MixtureCurve",
    "SurvivalCurve",
    "TimeGrid",
    "bin_cumulative_hazards",
    "cumulative_hazard_at",
    "cumulative_hazard_from_logits",
    "discretize",
    "evaluate_on_times",
    "hazards_from_logits",
    "landmark_targets",
    "locate",
    "marginal_logits",
    "risk_score",
    "survival_at",
    "survival_curves",
    "survival_from_logits",
]


# --------------------------------------------------------------------------- grid


def _km_quantile_cuts(event, time, n_bins):
    """Inner edges at equal steps of the Kaplan-Meier curve (pycox's "quantiles" scheme)."""
    event_times = np.unique(time[event])
    event_times = event_times[event_times > 0]
    if n_bins >= event_times.shape[0]:
        return event_times
    uniq, surv = kaplan_meier_estimator(event, time)
    s_at = surv[np.searchsorted(uniq, event_times)]  # KM at each event time, decreasing
    s_min = s_at[-1]
    levels = 1.0 - (1.0 - s_min) * np.arange(1, n_bins + 1) / n_bins
    levels[-1] = s_min  # exact, so the last edge is the last event time
    # first event time at which the KM curve has fallen to (or below) each level
    idx = np.searchsorted(-s_at, -(levels + 1e-12), side="left")
    return event_times[np.minimum(idx, event_times.shape[0] - 1)]


class TimeGrid(BaseEstimator):
    """Discrete follow-up grid of ``K`` intervals learned from a training outcome.

    With an integer ``time_bins``, the inner edges are placed at equal steps of
    the Kaplan-Meier survival curve of the training data (the "quantiles"
    scheme of pycox): edge ``k`` is the first event time at which the
    Kaplan-Meier estimate has fallen to ``1 - k (1 - S_min) / K``, where
    ``S_min`` is its value at the last event time, so every bin holds about the
    same share of the estimated event mass and the last edge is the last event
    time. Unlike plain quantiles of the event times, this accounts for
    censoring (later bins, with fewer subjects at risk, are not starved).
    Edges that coincide (tied event times) are merged with a ``UserWarning``
    and ``K`` shrinks; asking for more bins than there are distinct positive
    event times warns and uses every distinct event time as an edge.

    See the module docstring for how times map to bins (:func:`discretize`).

    Parameters
    ----------
    time_bins : int or array-like of shape (n_edges,), default=20
        Number of intervals ``K``, or explicit non-decreasing edges. Explicit
        edges must be non-negative; ``0`` is prepended when missing, and
        repeated edges are merged with a warning.

    Attributes
    ----------
    cuts_ : ndarray of shape (n_bins_ + 1,)
        Increasing edges ``c_0 = 0 < c_1 < ... < c_K``.
    n_bins_ : int
        Number of intervals ``K``.
    max_time_ : float
        Largest training time (event or censoring); step functions built on
        this grid are defined on ``[0, max(max_time_, c_K)]``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> y = Surv.from_arrays([True, True, False, True], [1.0, 2.0, 2.5, 4.0])
    >>> grid = TimeGrid(time_bins=[1.0, 3.0, 5.0]).fit(y)
    >>> grid.cuts_
    array([0., 1., 3., 5.])
    >>> grid.transform([0.5, 2.0, 3.0], [True, False, False])
    (array([0, 1, 2]), array([ True, False, False]))
    """

    def __init__(self, time_bins=20):
        self.time_bins = time_bins

    def fit(self, y):
        """Learn the edges from a training outcome.

        Like scikit-learn's target transformers (``LabelEncoder``), the grid is
        fitted on the outcome alone.

        Parameters
        ----------
        y : structured array of shape (n_samples,)
            Survival outcome (first field: boolean event indicator, second:
            time), as made by ``sksurv.util.Surv.from_arrays``.

        Returns
        -------
        self : TimeGrid
            The fitted grid.

        Raises
        ------
        ValueError
            If ``y`` holds no events, or ``time_bins`` is invalid.
        """
        event, time = check_y_survival(y, allow_all_censored=True)
        if not np.all(np.isfinite(time)) or np.any(time < 0):
            raise ValueError("y: times must be finite and non-negative")
        if not event.any():
            raise ValueError("y has no events: cannot place a time grid (all samples censored)")
        time_bins = self.time_bins
        if isinstance(time_bins, numbers.Integral) and not isinstance(time_bins, bool):
            if time_bins < 1:
                raise ValueError(f"time_bins must be >= 1, got {time_bins}")
            n_distinct = np.unique(time[event & (time > 0)]).shape[0]
            if n_distinct == 0:
                raise ValueError("y has no events after time 0: cannot place a time grid")
            if time_bins > n_distinct:
                warnings.warn(
                    f"time_bins={time_bins} exceeds the {n_distinct} distinct event times; "
                    f"using {n_distinct} bins (one edge per event time)",
                    UserWarning,
                    stacklevel=2,
                )
            raw = _km_quantile_cuts(event, time, min(int(time_bins), n_distinct))
            requested = min(int(time_bins), n_distinct)
        elif isinstance(time_bins, bool | str | numbers.Real):
            raise TypeError(f"time_bins must be an int or an array of edges, got {time_bins!r}")
        else:
            raw = np.asarray(time_bins, dtype=float)
            if raw.ndim != 1 or raw.shape[0] == 0:
                raise ValueError("time_bins as edges must be a non-empty 1-D array")
            if not np.all(np.isfinite(raw)) or np.any(raw < 0):
                raise ValueError("time_bins edges must be finite and non-negative")
            if np.any(np.diff(raw) < 0):
                raise ValueError("time_bins edges must be increasing")
            raw = raw[raw > 0]
            requested = raw.shape[0]
            if requested == 0:
                raise ValueError("time_bins edges must contain a positive edge")
        inner = np.unique(raw)
        if inner.shape[0] < requested:
            warnings.warn(
                f"{requested - inner.shape[0]} duplicate time-grid edges merged; "
                f"using {inner.shape[0]} bins instead of {requested}",
                UserWarning,
                stacklevel=2,
            )
        self.cuts_ = np.concatenate([[0.0], inner]).astype(float)
        self.n_bins_ = int(inner.shape[0])
        self.max_time_ = float(time.max())
        return self

    def transform(self, time, event=None):
        """Map follow-up times to bin indices (see :func:`discretize`).

        Parameters
        ----------
        time : array-like of shape (n_samples,) or structured array
            Follow-up times (years after the prediction time), non-negative.
            If ``event`` is None, a survival structured array ``y``.
        event : array-like of shape (n_samples,), optional
            Event indicators.

        Returns
        -------
        bin_idx : ndarray of shape (n_samples,), int64
            Event bin for events, number of fully observed bins for censored
            subjects (``0 .. n_bins_``).
        event_in_grid : ndarray of shape (n_samples,), bool
            Event indicator after censoring at the last edge.
        """
        check_is_fitted(self, "cuts_")
        if event is None:
            event, time = check_y_survival(time, allow_all_censored=True)
        time = np.asarray(time)
        event = np.asarray(event)
        if time.dtype == bool and event.dtype != bool:
            raise TypeError("time is boolean: arguments are (time, event), not (event, time)")
        time = time.astype(float)
        event = event.astype(bool)
        if time.ndim != 1 or time.shape != event.shape:
            raise ValueError(
                f"time and event must be 1-D of equal length, got {time.shape} and {event.shape}"
            )
        if not np.all(np.isfinite(time)) or np.any(time < 0):
            raise ValueError("time must be finite and non-negative")
        return discretize(time, event, self.cuts_)


def discretize(time, event, cuts):
    """Map times and events to grid bins (numpy or torch).

    Events at ``t <= c_K`` go to the bin ``(c_k, c_{k+1}]`` containing them
    (``t = 0`` to bin 0). Censored subjects, and events after ``c_K`` (censored
    at ``c_K``), get the number of bins they were observed all the way
    through: the count of inner edges ``c_1 .. c_K`` that are ``<= t``.

    Parameters
    ----------
    time : ndarray or Tensor of shape (...)
        Non-negative follow-up times.
    event : ndarray or Tensor of shape (...)
        Event indicators (bool, or 0/1 numbers).
    cuts : array-like of shape (K + 1,)
        Increasing edges starting at 0 (``TimeGrid.cuts_``).

    Returns
    -------
    bin_idx : ndarray or Tensor of shape (...), int64
        In ``0 .. K-1`` for events, ``0 .. K`` for censored subjects.
    event_in_grid : ndarray or Tensor of shape (...), bool
        ``event`` and ``time <= c_K``.

    Notes
    -----
    With torch input, ``time`` and ``cuts`` are compared in ``time``'s dtype, at
    least float32 (half-precision times are upcast, never the edges rounded to
    them): float32 times that sit exactly on a float64 edge may round to either side.
    """
    if isinstance(time, torch.Tensor):
        time = time.to(_exact_dtype(time.dtype))
        inner = torch.as_tensor(np.asarray(cuts)[1:], dtype=time.dtype, device=time.device)
        ev = torch.as_tensor(event, device=time.device).bool() & (time <= inner[-1])
        left = torch.searchsorted(inner, time.contiguous(), right=False)
        right = torch.searchsorted(inner, time.contiguous(), right=True)
        return torch.where(ev, left, right).long(), ev
    inner = np.asarray(cuts, dtype=float)[1:]
    time = np.asarray(time, dtype=float)
    ev = np.asarray(event).astype(bool) & (time <= inner[-1])
    left = np.searchsorted(inner, time, side="left")
    right = np.searchsorted(inner, time, side="right")
    return np.where(ev, left, right).astype(np.int64), ev


def landmark_targets(time, event, visit_times, visit_mask):
    """Follow-up and event of every visit used as a landmark (numpy or torch).

    From visit ``t`` the follow-up is ``visit_times[:, t] + time`` (years from
    the visit to the event or censoring), the event indicator unchanged.

    Parameters
    ----------
    time : ndarray or Tensor of shape (n_patients,)
        Years from the prediction time to the event or censoring.
    event : ndarray or Tensor of shape (n_patients,)
        Event indicators (bool or 0/1 floats).
    visit_times : ndarray or Tensor of shape (n_patients, n_visits)
        Years from each visit to the prediction time (``index_age - age``).
    visit_mask : ndarray or Tensor of shape (n_patients, n_visits), bool
        True for real visits.

    Returns
    -------
    follow_up : ndarray or Tensor of shape (n_patients, n_visits)
        Per-visit follow-up; 0 where ``visit_mask`` is False.
    event : ndarray or Tensor of shape (n_patients, n_visits)
        Per-visit event indicator, ``event``'s dtype; False/0 where
        ``visit_mask`` is False.

    Notes
    -----
    Map the result onto the grid with :func:`discretize` (or
    ``TimeGrid.transform`` on the valid entries); follow-ups past the last edge
    are then censored there, like every other time.
    """
    if isinstance(time, torch.Tensor):
        mask = visit_mask.bool()
        follow = torch.where(mask, visit_times + time[:, None], torch.zeros_like(visit_times))
        ev = event[:, None].expand_as(mask)
        return follow, torch.where(mask, ev, torch.zeros_like(ev))
    mask = np.asarray(visit_mask, dtype=bool)
    visit_times = np.asarray(visit_times, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event)
    follow = np.where(mask, visit_times + time[:, None], 0.0)
    ev = np.where(mask, event[:, None], np.zeros((), dtype=event.dtype))
    return follow, ev


# ---------------------------------------------------- hazards -> survival answers


def _is_torch(x):
    return isinstance(x, torch.Tensor)


def _softplus(logits):
    if _is_torch(logits):  # curves of half-precision logits summed in float32
        return torch.nn.functional.softplus(logits.to(_exact_dtype(logits.dtype)))
    return np.logaddexp(0.0, np.asarray(logits, dtype=float))


def bin_cumulative_hazards(logits):
    """Integrated hazard of each whole bin, ``eta_k = softplus(a_k)``.

    Parameters
    ----------
    logits : ndarray or Tensor of shape (..., n_bins)
        Hazard-head outputs.

    Returns
    -------
    eta : ndarray or Tensor of shape (..., n_bins)
        Positive; the hazard rate in bin ``k`` is ``eta_k / (c_{k+1} - c_k)``.
    """
    return _softplus(logits)


def hazards_from_logits(logits):
    """Conditional probability of the event in each bin, ``h_k = 1 - exp(-eta_k)``.

    Equal to ``sigmoid(a_k)``: the probability of an event in bin ``k`` given
    survival to its start.

    Parameters
    ----------
    logits : ndarray or Tensor of shape (n_samples, n_bins)
        Hazard-head outputs.

    Returns
    -------
    hazards : ndarray or Tensor of shape (n_samples, n_bins)
        Values in ``[0, 1]``.
    """
    if _is_torch(logits):
        return torch.sigmoid(logits)
    logits = np.asarray(logits, dtype=float)
    return np.exp(-np.logaddexp(0.0, -logits))


def cumulative_hazard_from_logits(logits):
    """Cumulative hazard at the end of each bin, ``H(c_{k+1}) = sum_{j<=k} eta_j``.

    Parameters
    ----------
    logits : ndarray or Tensor of shape (n_samples, n_bins)
        Hazard-head outputs.

    Returns
    -------
    cumhaz : ndarray or Tensor of shape (n_samples, n_bins)
        Non-decreasing, non-negative.
    """
    eta = _softplus(logits)
    if _is_torch(eta):
        return torch.cumsum(eta, dim=-1)
    return np.cumsum(eta, axis=-1)


def survival_from_logits(logits):
    """Survival at the end of each bin, ``S(c_{k+1}) = exp(-H(c_{k+1}))``.

    Parameters
    ----------
    logits : ndarray or Tensor of shape (n_samples, n_bins)
        Hazard-head outputs.

    Returns
    -------
    survival : ndarray or Tensor of shape (n_samples, n_bins)
        Non-increasing along the last axis, in ``(0, 1]``.
    """
    cumhaz = cumulative_hazard_from_logits(logits)
    return torch.exp(-cumhaz) if _is_torch(cumhaz) else np.exp(-cumhaz)


def risk_score(logits):
    """Risk score for ``predict``: the cumulative hazard summed over the grid's edges.

    ``sum_k H(c_{k+1})``; higher means an earlier event. A large hazard early
    raises the cumulative hazard at every later edge, so early risk weighs
    more than late risk. Monotone: raising any logit raises the score.

    Parameters
    ----------
    logits : ndarray or Tensor of shape (n_samples, n_bins)
        Hazard-head outputs.

    Returns
    -------
    risk : ndarray or Tensor of shape (n_samples,)
        Higher = earlier event.
    """
    cumhaz = cumulative_hazard_from_logits(logits)
    return cumhaz.sum(dim=-1) if _is_torch(cumhaz) else cumhaz.sum(axis=-1)


def _exact_dtype(dtype):
    """The dtype survival math runs in for tensors of ``dtype``: at least float32.

    Under mixed precision the logits may be bfloat16 or float16, whose steps near
    10 years are 0.0625 (23 days) and 0.0078 years: follow-up times, grid edges
    and the likelihood are computed in float32 (float64 stays float64).

    Parameters
    ----------
    dtype : torch.dtype

    Returns
    -------
    torch.dtype
    """
    return torch.promote_types(dtype, torch.float32)


def _check_cuts(cuts, n_bins):
    cuts = np.asarray(cuts, dtype=float)
    if cuts.ndim != 1 or cuts.shape[0] != n_bins + 1:
        raise ValueError(f"cuts must have n_bins + 1 = {n_bins + 1} edges, got shape {cuts.shape}")
    if cuts[0] != 0 or np.any(np.diff(cuts) <= 0):
        raise ValueError("cuts must start at 0 and increase strictly")
    return cuts


def locate(time, cuts):
    """Bin of each time and the share of that bin's width already lived through.

    A time ``t`` in ``(c_k, c_{k+1}]`` (``t = 0`` in bin 0) gets ``k`` and
    ``(t - c_k) / (c_{k+1} - c_k)``. Past the last edge the last bin continues
    at its own rate: ``k = K - 1`` and a share above 1 (see :func:`cumulative_hazard_at`).

    Parameters
    ----------
    time : ndarray or Tensor of shape (...)
        Non-negative times.
    cuts : array-like of shape (K + 1,)
        Increasing edges starting at 0.

    Returns
    -------
    bin_idx : ndarray or Tensor of shape (...), int64
    share : ndarray or Tensor of shape (...), float
    """
    cuts = np.asarray(cuts, dtype=float)
    n_bins = cuts.shape[0] - 1
    if _is_torch(time):
        time = time.to(_exact_dtype(time.dtype))  # bf16 edges 0.0625 apart near 10 years
        c = torch.as_tensor(cuts, dtype=time.dtype, device=time.device)
        k = torch.searchsorted(c[1:].contiguous(), time.contiguous(), right=False).clamp(max=n_bins - 1)
        share = (time - c[k]) / (c[k + 1] - c[k])
        return k, share
    time = np.asarray(time, dtype=float)
    k = np.minimum(np.searchsorted(cuts[1:], time, side="left"), n_bins - 1)
    share = (time - cuts[k]) / (cuts[k + 1] - cuts[k])
    return k.astype(np.int64), share


def marginal_logits(time, event, cuts, prior_events=0.5):
    """Logits of the marginal piecewise-constant hazard (the no-covariate maximum likelihood).

    In each bin the rate is events over exposure, ``D_k / E_k``, where ``E_k`` is
    the time all subjects spent in bin ``k``; times past the last edge are
    censored there. Used to start a hazard head at the population curve, so
    that a model with nothing to learn already answers Kaplan–Meier.

    Parameters
    ----------
    time, event : array-like of shape (n_samples,)
        Follow-up in years and event indicators.
    cuts : array-like of shape (K + 1,)
        Grid edges.
    prior_events : float, default=0.5
        Events added to a bin that holds none, so its rate stays positive.

    Returns
    -------
    logits : ndarray of shape (K,)
        ``softplus^{-1}(eta_k)`` with ``eta_k = D_k / E_k * (c_{k+1} - c_k)``.

    Examples
    --------
    >>> import numpy as np
    >>> logits = marginal_logits([1.0, 2.0, 3.0], [True, False, True], [0.0, 4.0])
    >>> round(float(np.log1p(np.exp(logits[0])) / 4.0), 6)  # 2 events over 6 years at risk
    0.333333
    """
    cuts = np.asarray(cuts, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool) & (time <= cuts[-1])
    time = np.minimum(time, cuts[-1])
    width = np.diff(cuts)
    exposure = np.clip(time[:, None] - cuts[None, :-1], 0.0, width[None, :]).sum(axis=0)
    k, _ = locate(time[event], cuts)
    events = np.bincount(k, minlength=width.shape[0]).astype(float)
    events = np.where(events > 0, events, prior_events)
    eta = events / np.maximum(exposure, 1e-12) * width
    return np.log(np.expm1(np.clip(eta, 1e-8, 50.0)))


def cumulative_hazard_at(logits, cuts, times):
    """Cumulative hazard at arbitrary times under piecewise-constant hazards.

    In bin ``k`` the hazard rate is constant, ``eta_k / (c_{k+1} - c_k)``, so
    ``H(t) = sum_{j<k} eta_j + eta_k (t - c_k) / (c_{k+1} - c_k)`` for ``t`` in
    ``(c_k, c_{k+1}]``: continuous, piecewise linear, equal to
    :func:`cumulative_hazard_from_logits` at the edges. **Tail rule:** after the
    last edge ``c_K`` the last bin's rate continues, ``H(t) = H(c_K) +
    eta_{K-1} (t - c_K) / (c_K - c_{K-1})``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_bins), or Tensor of shape (..., n_bins)
        Hazard-head outputs.
    cuts : array-like of shape (n_bins + 1,)
        Grid edges (``TimeGrid.cuts_``).
    times : ndarray of shape (n_times,), or Tensor of shape (...)
        With numpy: times shared by every row, giving an ``(n_samples, n_times)``
        array. With torch: one time per row (``logits.shape[:-1]``), giving a
        tensor of that shape.

    Returns
    -------
    cumhaz : ndarray of shape (n_samples, n_times), or Tensor of shape (...)
    """
    return _cumhaz_from_eta(_softplus(logits), _check_cuts(cuts, logits.shape[-1]), times)


def _cumhaz_in_bins(eta, k, share):
    """``H = sum_{j<k} eta_j + eta_k * share`` of each row at its own place (torch).

    Parameters
    ----------
    eta : Tensor of shape (..., K)
        Hazard integrated over each bin (``softplus`` of the logits).
    k, share : Tensor of shape (...)
        Each row's bin and the share of it lived through (:func:`locate`).

    Returns
    -------
    Tensor of shape (...)
    """
    before = torch.cumsum(eta, dim=-1) - eta  # sum_{j<k} eta_j
    k = k.unsqueeze(-1)
    return before.gather(-1, k).squeeze(-1) + eta.gather(-1, k).squeeze(-1) * share


def _cumhaz_from_eta(eta, cuts, times):
    k, share = locate(times, cuts)
    if _is_torch(eta):
        return _cumhaz_in_bins(eta, k, share)
    before = np.cumsum(eta, axis=1) - eta
    return before[:, k] + eta[:, k] * share[None, :]


def survival_at(logits, cuts, times):
    """Survival ``S(t) = exp(-H(t))`` at arbitrary times; see :func:`cumulative_hazard_at`.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_bins), or Tensor of shape (..., n_bins)
    cuts : array-like of shape (n_bins + 1,)
    times : ndarray of shape (n_times,), or Tensor of shape (...)

    Returns
    -------
    survival : ndarray of shape (n_samples, n_times), or Tensor of shape (...)
    """
    cumhaz = cumulative_hazard_at(logits, cuts, times)
    return torch.exp(-cumhaz) if _is_torch(cumhaz) else np.exp(-cumhaz)


_KINDS = ("survival", "cumhaz")


def evaluate_on_times(logits, cuts, times, kind="survival"):
    """Survival or cumulative hazard of every row at the given times.

    Backs ``return_array=True``: equal to calling each :class:`SurvivalCurve`
    at ``times``, but it does not raise past the curves' domain (the tail rule
    of :func:`cumulative_hazard_at` applies there).

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_bins)
        Hazard-head outputs.
    cuts : array-like of shape (n_bins + 1,)
        Grid edges, starting at 0.
    times : array-like of shape (n_times,)
        Non-negative times, e.g. an estimator's ``unique_times_``.
    kind : {"survival", "cumhaz"}, default="survival"

    Returns
    -------
    array : ndarray of shape (n_samples, n_times)
        Samples x times.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    logits = np.asarray(logits, dtype=float)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (n_samples, n_bins), got shape {logits.shape}")
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or np.any(times < 0) or not np.all(np.isfinite(times)):
        raise ValueError("times must be a 1-D array of finite, non-negative numbers")
    cumhaz = cumulative_hazard_at(logits, cuts, times)
    return np.exp(-cumhaz) if kind == "survival" else cumhaz


class ExactCurve(StepFunction):
    """A scikit-survival :class:`~sksurv.functions.StepFunction` that is exact between its knots.

    ``x`` / ``y`` hold the curve on a grid of knots (for plotting and inspection); the
    call evaluates the subclass's ``_values(t)`` at any time in the domain: no step
    between knots.

    Parameters
    ----------
    x, y : ndarray
        The knots and the curve's values at them.
    a, b : float, default=1.0, 0.0
        The call returns ``a * value + b`` (as scikit-survival's step functions).
    domain : tuple of float, default=(0, None)
        The interval the curve is defined on.
    """

    def __init__(self, x, y, *, a=1.0, b=0.0, domain=(0, None)):
        super().__init__(x, y, a=a, b=b, domain=domain)

    def _values(self, t):
        raise NotImplementedError

    def __call__(self, x):
        """Evaluate the curve at ``x`` (inside the domain).

        Parameters
        ----------
        x : float or array-like of shape (n_values,)

        Returns
        -------
        float or ndarray of shape (n_values,)

        Raises
        ------
        ValueError
            If ``x`` is not finite or lies outside the domain.
        """
        x = np.atleast_1d(np.asarray(x, dtype=float))
        if not np.isfinite(x).all():
            raise ValueError("x must be finite")
        if np.min(x) < self.domain[0] or np.max(x) > self.domain[1]:
            raise ValueError(f"x must be within [{self.domain[0]:f}; {self.domain[1]:f}]")
        value = self.a * self._values(x) + self.b
        return value[0] if value.shape[0] == 1 else value


class SurvivalCurve(ExactCurve):
    """A patient's survival (or cumulative hazard) curve, exact between the grid's edges.

    A :class:`sksurv.functions.StepFunction` (so scikit-survival and this
    package's metrics accept it) whose ``x`` / ``y`` hold the curve on a fine
    grid of knots (for plotting and inspection), but whose call evaluates the
    piecewise-constant-hazard curve exactly at any time in its domain: no step
    between knots. See :func:`cumulative_hazard_at` for the curve and its tail.

    Parameters
    ----------
    eta : ndarray of shape (n_bins,)
        Integrated hazard of each whole bin (``softplus`` of the logits).
    cuts : ndarray of shape (n_bins + 1,)
        Grid edges.
    upper : float
        End of the domain ``[0, upper]``.
    kind : {"survival", "cumhaz"}, default="survival"
    knots_per_bin : int, default=8
        Knots stored in ``x`` per bin (the call does not use them).
    """

    def __init__(self, eta, cuts, upper, kind="survival", knots_per_bin=8):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.eta = np.asarray(eta, dtype=float)
        self.cuts = np.asarray(cuts, dtype=float)
        self.kind = kind
        upper = max(float(upper), float(self.cuts[-1]))
        x = np.linspace(self.cuts[:-1], self.cuts[1:], knots_per_bin, endpoint=False, axis=1).ravel()
        x = np.append(x, self.cuts[-1])
        if upper > x[-1]:
            x = np.append(x, upper)
        super().__init__(x=x, y=self._values(x), domain=(0.0, upper))

    def _values(self, t):
        cumhaz = _cumhaz_from_eta(self.eta[None, :], self.cuts, np.atleast_1d(t))[0]
        return np.exp(-cumhaz) if self.kind == "survival" else cumhaz

    def __repr__(self):
        return f"SurvivalCurve(kind={self.kind!r}, cuts={self.cuts!r}, eta={self.eta!r})"


class MixtureCurve(ExactCurve):
    """The mean of several survival (or incidence) curves: a mixture, or its cumulative hazard.

    The survival of a patient under an ensemble whose members are equally likely:
    ``S(t) = mean_m S_m(t)``, a survival function (an ``H(t) = -log S(t)`` with
    ``kind="cumhaz"``); with ``kind="incidence"``, one cause's cumulative incidence
    ``F(t) = mean_m F_m(t)`` of incidence curves (``kind="incidence"``, as
    :class:`~survbehrt.competing_hazards.IncidenceCurve`). Exact between knots as the
    members are.

    Parameters
    ----------
    curves : sequence of SurvivalCurve or IncidenceCurve
        The members' curves: survival curves (``kind="survival"``) for ``kind``
        ``"survival"`` or ``"cumhaz"``, incidence curves for ``"incidence"``.
    kind : {"survival", "cumhaz", "incidence"}, default="survival"

    Notes
    -----
    The domain is the members' common one, ``[0, min upper]``; the knots are the
    members' knots in it.
    """

    def __init__(self, curves, kind="survival"):
        if kind not in _MIXTURE_KINDS:
            raise ValueError(f"kind must be one of {_MIXTURE_KINDS}, got {kind!r}")
        self.curves = list(curves)
        member_kind = "incidence" if kind == "incidence" else "survival"
        if not self.curves or any(getattr(c, "kind", None) != member_kind for c in self.curves):
            raise ValueError(f"MixtureCurve(kind={kind!r}) needs one or more curves of "
                             f"kind={member_kind!r}")
        self.kind = kind
        upper = min(float(c.domain[1]) for c in self.curves)
        x = np.unique(np.concatenate([c.x for c in self.curves] + [[upper]]))
        x = x[x <= upper]
        super().__init__(x=x, y=self._values(x), domain=(0.0, upper))

    def _values(self, t):
        t = np.atleast_1d(t)
        mean = np.mean([np.atleast_1d(c._values(t)) for c in self.curves], axis=0)
        return -np.log(mean) if self.kind == "cumhaz" else mean

    def __repr__(self):
        return f"MixtureCurve(kind={self.kind!r}, n_curves={len(self.curves)})"


_MIXTURE_KINDS = _KINDS + ("incidence",)


def survival_curves(logits, cuts, max_time, kind="survival"):
    """Wrap each row's hazards as a :class:`SurvivalCurve` (a scikit-survival StepFunction).

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_bins)
        Hazard-head outputs.
    cuts : array-like of shape (n_bins + 1,)
        Grid edges, starting at 0 (``TimeGrid.cuts_``).
    max_time : float
        End of the domain, normally ``TimeGrid.max_time_``; the domain is
        ``[0, max(max_time, c_K)]``.
    kind : {"survival", "cumhaz"}, default="survival"

    Returns
    -------
    functions : ndarray of shape (n_samples,), dtype=object
    """
    logits = np.asarray(logits, dtype=float)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (n_samples, n_bins), got shape {logits.shape}")
    cuts = _check_cuts(cuts, logits.shape[1])
    eta = _softplus(logits)
    funcs = np.empty(logits.shape[0], dtype=object)
    for i in range(logits.shape[0]):
        funcs[i] = SurvivalCurve(eta[i], cuts, max_time, kind=kind)
    return funcs
