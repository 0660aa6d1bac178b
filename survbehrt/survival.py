"""Discrete-time survival: the time grid, and from hazards to survival answers.

The model predicts, for every patient (or every visit, see
:func:`landmark_targets`), ``K`` logits ``a_k``; the discrete hazard of bin
``k`` is ``h_k = sigmoid(a_k)``, the probability of the event in bin ``k``
given survival through bins ``0 .. k-1``.

Grid and censoring convention
-----------------------------
A fitted :class:`TimeGrid` holds edges ``0 = c_0 < c_1 < ... < c_K``. Bin
``k`` is the interval ``(c_k, c_{k+1}]`` (bin 0 also holds ``t = 0``).
:func:`discretize` turns ``(time, event)`` into ``(bin_idx, event_in_grid)``:

* an **event** at ``t <= c_K`` gets the index of the bin containing it,
  ``kappa in {0, ..., K-1}``: bins ``< kappa`` survived, the event in bin ``kappa``;
* a **censored** subject (and an event after ``c_K``, which is censored at
  ``c_K``) gets ``kappa`` = the number of bins it was observed all the way
  through, i.e. the number of inner edges ``c_1 .. c_K`` that are ``<= t``,
  ``kappa in {0, ..., K}``: bins ``< kappa`` survived, and the bin ``kappa`` in
  which the censoring happened (if ``kappa < K``) contributes nothing, because
  the subject was not observed through it. ``kappa = K`` means survived the
  whole grid.

The per-subject likelihood is therefore
``prod_{j<kappa} (1 - h_j) * h_kappa ** delta``; see
:func:`survbehrt.losses.discrete_time_nll`.

Survival answers
----------------
``S(c_k) = prod_{j<k} (1 - h_j)`` for ``k = 1..K`` (the value after bin
``k-1``), with ``S(0) = 1``: survival arrays of shape ``(n, K)`` hold
``S(c_1) .. S(c_K)``, column ``k`` the survival at the *end* of bin ``k``.
The cumulative hazard is ``H = -log S`` (so that ``S = exp(-H)``, as
scikit-survival's step functions assume), which in discrete time is
``sum_{j<=k} -log(1 - h_j)``, not the sum of the hazards ``sum h_j``.
As step functions, the value changes at the edges: ``S(t) = S(c_k)`` for
``c_k <= t < c_{k+1}``, and the last value holds up to the largest training time.
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
    "TimeGrid",
    "cumulative_hazard_from_hazards",
    "cumulative_hazard_from_logits",
    "discretize",
    "evaluate_on_times",
    "hazards_from_logits",
    "landmark_targets",
    "risk_score",
    "step_functions",
    "survival_from_hazards",
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
    With torch input, ``cuts`` is cast to ``time``'s dtype: float32 times
    that sit exactly on a float64 edge may round to either side.
    """
    if isinstance(time, torch.Tensor):
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


def _log_one_minus_sigmoid(logits):
    # log(1 - sigmoid(a)) = logsigmoid(-a) = -softplus(a), exact for large |a|
    if _is_torch(logits):
        return torch.nn.functional.logsigmoid(-logits)
    return -np.logaddexp(0.0, np.asarray(logits, dtype=float))


def hazards_from_logits(logits):
    """Discrete hazards ``h_k = sigmoid(a_k)``.

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


def survival_from_logits(logits):
    """Survival at the end of each bin, ``S(c_{k+1}) = prod_{j<=k} (1 - h_j)``.

    Computed in log space: ``exp(cumsum(logsigmoid(-a)))``.

    Parameters
    ----------
    logits : ndarray or Tensor of shape (n_samples, n_bins)
        Hazard-head outputs.

    Returns
    -------
    survival : ndarray or Tensor of shape (n_samples, n_bins)
        Non-increasing along the last axis, in ``[0, 1]``.
    """
    log_s = _log_one_minus_sigmoid(logits)
    if _is_torch(log_s):
        return torch.exp(torch.cumsum(log_s, dim=-1))
    return np.exp(np.cumsum(log_s, axis=-1))


def survival_from_hazards(hazards):
    """Survival at the end of each bin from hazards, ``prod_{j<=k} (1 - h_j)``.

    Computed in log space with ``log1p(-h)``; prefer :func:`survival_from_logits`
    when the logits are at hand (no rounding of ``h`` near 1).

    Parameters
    ----------
    hazards : ndarray or Tensor of shape (n_samples, n_bins)
        Discrete hazards in ``[0, 1]``.

    Returns
    -------
    survival : ndarray or Tensor of shape (n_samples, n_bins)
        Non-increasing along the last axis, in ``[0, 1]``.
    """
    if _is_torch(hazards):
        return torch.exp(torch.cumsum(torch.log1p(-hazards), dim=-1))
    with np.errstate(divide="ignore"):
        return np.exp(np.cumsum(np.log1p(-np.asarray(hazards, dtype=float)), axis=-1))


def cumulative_hazard_from_logits(logits):
    """Cumulative hazard ``H = -log S = cumsum(softplus(a))`` at the end of each bin.

    This is the discrete-time cumulative hazard ``sum_{j<=k} -log(1 - h_j)``,
    chosen so that ``S = exp(-H)`` holds exactly; it is not ``sum_{j<=k} h_j``.

    Parameters
    ----------
    logits : ndarray or Tensor of shape (n_samples, n_bins)
        Hazard-head outputs.

    Returns
    -------
    cumhaz : ndarray or Tensor of shape (n_samples, n_bins)
        Non-decreasing, non-negative.
    """
    neg = _log_one_minus_sigmoid(logits)
    if _is_torch(neg):
        return torch.cumsum(-neg, dim=-1)
    return np.cumsum(-neg, axis=-1)


def cumulative_hazard_from_hazards(hazards):
    """Cumulative hazard ``H = -log S = -cumsum(log(1 - h))`` at the end of each bin.

    Parameters
    ----------
    hazards : ndarray or Tensor of shape (n_samples, n_bins)
        Discrete hazards in ``[0, 1]``.

    Returns
    -------
    cumhaz : ndarray or Tensor of shape (n_samples, n_bins)
        Non-decreasing, non-negative (``inf`` after a hazard of 1).
    """
    if _is_torch(hazards):
        return -torch.cumsum(torch.log1p(-hazards), dim=-1)
    with np.errstate(divide="ignore"):
        return -np.cumsum(np.log1p(-np.asarray(hazards, dtype=float)), axis=-1)


def risk_score(logits):
    """Risk score for ``predict``: the cumulative hazard summed over the grid.

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


def _check_values_cuts(values, cuts):
    values = np.asarray(values, dtype=float)
    cuts = np.asarray(cuts, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (n_samples, n_bins), got shape {values.shape}")
    if cuts.ndim != 1 or cuts.shape[0] != values.shape[1] + 1:
        raise ValueError(
            f"cuts must have n_bins + 1 = {values.shape[1] + 1} edges, got shape {cuts.shape}"
        )
    return values, cuts


def _start_value(kind):
    if kind == "survival":
        return 1.0
    if kind == "cumhaz":
        return 0.0
    raise ValueError(f"kind must be 'survival' or 'cumhaz', got {kind!r}")


def step_functions(values, cuts, max_time, kind="survival"):
    """Wrap per-bin values as scikit-survival step functions.

    The function of row ``i`` is ``1`` (survival) or ``0`` (cumulative hazard)
    on ``[0, c_1)``, ``values[i, k]`` on ``[c_{k+1}, c_{k+2})``, and holds
    ``values[i, -1]`` from ``c_K`` up to ``max_time``. Its domain is
    ``[0, max(max_time, c_K)]``: evaluating anywhere in it never raises
    (``StepFunction`` clips points before its first ``x`` to it, and the last
    ``x`` is the domain's end, so no point lies past the knots).

    Parameters
    ----------
    values : array-like of shape (n_samples, n_bins)
        Survival (or cumulative hazard) at the end of each bin, e.g.
        :func:`survival_from_logits`.
    cuts : array-like of shape (n_bins + 1,)
        Grid edges, starting at 0 (``TimeGrid.cuts_``).
    max_time : float
        End of the domain, normally ``TimeGrid.max_time_``.
    kind : {"survival", "cumhaz"}, default="survival"
        What ``values`` holds; sets the value before ``c_1``.

    Returns
    -------
    functions : ndarray of shape (n_samples,), dtype=object
        ``sksurv.functions.StepFunction`` instances.
    """
    values, cuts = _check_values_cuts(values, cuts)
    start = _start_value(kind)
    upper = max(float(max_time), float(cuts[-1]))
    x = cuts.copy()
    y = np.concatenate([np.full((values.shape[0], 1), start), values], axis=1)
    if upper > x[-1]:
        # a knot at the domain end: StepFunction cannot look past its last knot
        x = np.append(x, upper)
        y = np.concatenate([y, values[:, -1:]], axis=1)
    funcs = np.empty(values.shape[0], dtype=object)
    for i in range(values.shape[0]):
        funcs[i] = StepFunction(x=x, y=y[i], domain=(0.0, upper))
    return funcs


def evaluate_on_times(values, cuts, times, kind="survival"):
    """Evaluate per-bin values at arbitrary times, as :func:`step_functions` would.

    Backs ``return_array=True``: the result equals calling each step function
    at ``times``. Unlike the step functions, it does not raise past the
    domain's end; the last value simply holds.

    Parameters
    ----------
    values : array-like of shape (n_samples, n_bins)
        Survival (or cumulative hazard) at the end of each bin.
    cuts : array-like of shape (n_bins + 1,)
        Grid edges, starting at 0.
    times : array-like of shape (n_times,)
        Non-negative times, e.g. an estimator's ``unique_times_``.
    kind : {"survival", "cumhaz"}, default="survival"
        What ``values`` holds; sets the value before ``c_1``.

    Returns
    -------
    array : ndarray of shape (n_samples, n_times)
        Samples x times.
    """
    values, cuts = _check_values_cuts(values, cuts)
    times = np.asarray(times, dtype=float)
    start = _start_value(kind)
    padded = np.concatenate([np.full((values.shape[0], 1), start), values], axis=1)
    idx = np.searchsorted(cuts[1:], times, side="right")  # edges c_1..c_K passed
    return padded[:, idx]
