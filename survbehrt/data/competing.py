"""Competing-risks outcomes: a ``y`` with an integer event type 0..K and its cause names.

The layout is scikit-survival's for competing risks (``sksurv.datasets.load_bmt``,
``sksurv.util.check_y_survival(..., competing_risks=True)``,
``sksurv.nonparametric.cumulative_incidence_competing_risks``): a structured array whose
first field is the integer event type (0 = censored, k = 1..K = the first cause that
happened) and whose second field is the time. Here the fields are named ``event`` and
``time``, as in the single-cause ``y``.

The cause names ride on the event field's dtype (``y.dtype["event"].metadata["causes"]``:
numpy keeps it through indexing, copies, concatenation and pickling);
:func:`cause_names` reads it. Cause ``k`` is always the ``k``-th name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["cause_names", "cause_number", "cause_specific_y", "check_competing_y", "competing_y"]


def competing_y(event, time, causes: Sequence[str] | None = None) -> np.ndarray:
    """A competing-risks ``y``: fields ``event`` (int64, 0..K) and ``time`` (float64).

    Parameters
    ----------
    event : array-like of int, shape (n_samples,)
        0 for a censored row, ``k`` in 1..K for the cause that happened first.
    time : array-like of float, shape (n_samples,)
        Time of the event or of the censoring.
    causes : sequence of str, optional
        The names of causes 1..K, in order; kept in the dtype (see :func:`cause_names`).
        Without it, K is the largest event type.

    Returns
    -------
    y : structured ndarray, shape (n_samples,)

    Examples
    --------
    >>> y = competing_y([0, 2, 1], [3.0, 1.5, 2.0], causes=["mi", "death"])
    >>> y["event"].tolist(), cause_names(y)
    ([0, 2, 1], ('mi', 'death'))
    """
    event = np.asarray(event)
    time = np.asarray(time, dtype=np.float64)
    if event.shape != time.shape or event.ndim != 1:
        raise ValueError(
            f"event and time must be one-dimensional and of the same length; got shapes "
            f"{event.shape} and {time.shape}."
        )
    if event.size and not np.issubdtype(event.dtype, np.integer):
        if not np.all(np.equal(np.mod(event, 1), 0)):
            raise ValueError(f"event types must be whole numbers 0..K; got dtype {event.dtype}.")
    event = event.astype(np.int64)
    metadata = None
    if causes is not None:
        causes = tuple(causes)
        if not all(isinstance(c, str) and c for c in causes) or len(set(causes)) != len(causes):
            raise ValueError(f"causes must be distinct non-empty names; got {causes!r}.")
        metadata = {"causes": causes}
    top = len(causes) if causes is not None else None
    bad = (event < 0) if top is None else ((event < 0) | (event > top))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"event row {row}: type {event[row]} is not 0 (censored) or a cause 1..{top or 'K'}."
        )
    event_dtype = np.dtype(np.int64) if metadata is None else np.dtype(np.int64, metadata=metadata)
    dtype = np.dtype([("event", event_dtype), ("time", np.float64)])
    y = np.empty(len(event), dtype=dtype)
    y["event"] = event
    y["time"] = time
    return y


def cause_names(y) -> tuple[str, ...]:
    """The names of causes 1..K of a competing-risks ``y``.

    From the event field's dtype where :func:`competing_y` (or
    :func:`survbehrt.data.survival_labels` with a mapping of outcomes) put them;
    otherwise ``("1", ..., "K")`` with K the largest event type.

    Parameters
    ----------
    y : structured ndarray
        A competing-risks ``y`` (integer event type first, time second).

    Returns
    -------
    names : tuple of str
        ``names[k - 1]`` is the name of cause ``k``.
    """
    y = np.asarray(y)
    event_field = y.dtype.names[0]
    metadata = y.dtype[event_field].metadata or {}
    if "causes" in metadata:
        return tuple(metadata["causes"])
    top = int(y[event_field].max()) if len(y) else 0
    return tuple(str(k) for k in range(1, top + 1))


def check_competing_y(y, n_samples: int | None = None):
    """Check a competing-risks ``y``; return ``event`` (int 0..K), ``time``, K.

    A single-cause ``y`` (boolean event) is accepted as K = 1.

    Parameters
    ----------
    y : structured ndarray, shape (n_samples,)
        Integer event type (0 = censored, 1..K) first, time second (any names).
    n_samples : int, optional
        The expected number of rows; a different length raises.

    Returns
    -------
    event : ndarray of int64, shape (n_samples,)
    time : ndarray of float64, shape (n_samples,)
    n_causes : int
        K: the number of cause names, or the largest event type if greater.

    Raises
    ------
    TypeError
        If ``y`` is not a structured array of (event type, time).
    ValueError
        For a length mismatch, a negative event type, NaN/inf or negative times; the
        message names the row and the field.
    """
    y = np.asarray(y)
    names = y.dtype.names
    if names is None or len(names) != 2 or y.ndim != 1:
        raise TypeError(
            "y must be a one-dimensional structured array with two fields (event type, "
            f"time), as survbehrt.data.competing_y makes it; got dtype {y.dtype}."
        )
    event_name, time_name = names
    kind = y.dtype[event_name].kind
    if kind not in "biu":
        raise TypeError(
            f"the first field of y ({event_name!r}) must hold integer event types "
            f"(0 = censored, 1..K = cause); got dtype {y.dtype[event_name]}."
        )
    if n_samples is not None and len(y) != n_samples:
        raise ValueError(f"y has {len(y)} rows but {n_samples} were expected.")
    event = y[event_name].astype(np.int64)
    time = y[time_name].astype(np.float64)
    checks = (
        (event < 0, event_name, "negative event type"),
        (~np.isfinite(time), time_name, "non-finite time"),
        (time < 0, time_name, "negative time"),
    )
    for bad, field, what in checks:
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"y row {row}, field {field!r}: {what} {y[field][row]}.")
    n_causes = 1 if kind == "b" else max(len(cause_names(y)), int(event.max(initial=0)))
    return event, time, n_causes


def _cause_index(y, cause) -> int:
    return cause_number(cause_names(y), cause)


def cause_number(names, cause) -> int:
    """The number 1..K of ``cause`` (a name among ``names`` or a number), checked.

    Parameters
    ----------
    names : sequence of str
        The names of causes 1..K (:func:`cause_names`).
    cause : str or int

    Returns
    -------
    int

    Raises
    ------
    TypeError
        If ``cause`` is neither a name nor an integer.
    ValueError
        If it names no cause.
    """
    names = tuple(names)
    if isinstance(cause, str):
        if cause not in names:
            raise ValueError(f"cause {cause!r} is not one of the causes of y, {list(names)}.")
        return names.index(cause) + 1
    if isinstance(cause, (bool, np.bool_)) or not isinstance(cause, (int, np.integer)):
        raise TypeError(f"cause must be a cause name or a number 1..K; got {cause!r}.")
    if not 1 <= cause <= max(len(names), 1):
        raise ValueError(f"cause must be in 1..{len(names)}; got {cause}.")
    return int(cause)


def cause_specific_y(y, cause) -> np.ndarray:
    """The single-cause ``y`` of one cause: its events, every other row censored.

    A model fitted to it estimates the cause-specific hazard of ``cause`` (the other
    causes end follow-up as censoring would); ``1 - S(t)`` of such a model is *not*
    the cumulative incidence of the cause when other causes compete.

    Parameters
    ----------
    y : structured ndarray
        A competing-risks ``y`` (see :func:`competing_y`).
    cause : str or int
        A cause name, or its number 1..K.

    Returns
    -------
    y_cause : structured ndarray
        Fields ``event`` (bool) and ``time``, as ``sksurv.util.Surv.from_arrays``.

    Examples
    --------
    >>> y = competing_y([0, 2, 1], [3.0, 1.5, 2.0], causes=["mi", "death"])
    >>> cause_specific_y(y, "mi")["event"].tolist()
    [False, False, True]
    """
    event, time, _ = check_competing_y(y)
    k = _cause_index(y, cause)
    out = np.empty(len(event), dtype=[("event", bool), ("time", np.float64)])
    out["event"] = event == k
    out["time"] = time
    return out
