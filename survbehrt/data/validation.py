"""Validation of the public inputs: the patient frame ``X`` and the survival outcome ``y``.

One ``check_*`` function per input kind, called at the public boundary; everything
inside the package trusts what these return. Every error names the patient row
(position and index label) and the column, so a user can find the bad cell.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._arrow import flatten_arrow, is_arrow_frame
from ._flat import (
    AGES,
    CODES,
    EHR_COLUMNS,
    INDEX_AGE,
    OPTIONAL_COLUMNS,
    STATIC,
    VALUES,
    FlatEHR,
    _flatten_objects,
)

__all__ = [
    "FlatEHR",
    "flatten_ehr",
    "check_ehr_frame",
    "check_survival_y",
    "ehr_columns",
    "check_predict_columns",
]


def flatten_ehr(X) -> FlatEHR:
    """Validate a patient frame and flatten it into visit-level arrays.

    Parameters
    ----------
    X : pandas.DataFrame
        One row per patient (or per patient and prediction time) with columns
        ``codes`` (list of visits, each a non-empty list of ``str`` codes, oldest
        first), ``ages`` (list of float, one per visit, non-decreasing) and optionally
        ``index_age`` (float, at least the last visit's age), ``static`` (list of ``str``
        codes without a time, or None) and ``values`` (parallel to ``codes``: per visit a
        list with one number per code, NaN or None for none; None for the whole row).
        Other columns are ignored; column order is free.

    Returns
    -------
    FlatEHR
        The validated cohort as flat arrays.

    Raises
    ------
    TypeError
        If ``X`` is not a DataFrame, a cell has the wrong type, or a code is not a string.
    ValueError
        For a missing column, an empty history or visit, ragged ``codes``/``ages`` or
        ``codes``/``values``, decreasing or non-finite ages, an ``index_age`` before the
        last visit, an infinite value or an empty code. The message names the row and
        the column.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"X must be a pandas DataFrame with one row per patient and columns "
            f"{CODES!r}, {AGES!r} (optional {INDEX_AGE!r}); got {type(X).__name__}."
        )
    for column in (CODES, AGES):
        if column not in X.columns:
            raise ValueError(
                f"X is missing the required column {column!r}; it has {list(X.columns)}."
            )
    if len(X) == 0:
        raise ValueError("X has no rows: at least one patient is required.")
    if is_arrow_frame(X):
        return flatten_arrow(X)
    return _flatten_objects(X)



def check_ehr_frame(X, require_index_age: bool = False) -> pd.DataFrame:
    """Check that ``X`` follows the patient-frame contract.

    Parameters
    ----------
    X : pandas.DataFrame
        One row per patient; see :func:`flatten_ehr` for the columns.
    require_index_age : bool, default=False
        Also require the ``index_age`` column.

    Returns
    -------
    X : pandas.DataFrame
        The same frame, unchanged.

    Raises
    ------
    TypeError, ValueError
        As :func:`flatten_ehr`; the message names the row and the column.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"codes": [[["I10"], ["E11", "I10"]]], "ages": [[60.0, 61.5]]})
    >>> check_ehr_frame(X).shape
    (1, 2)
    """
    flatten_ehr(X)
    if require_index_age and INDEX_AGE not in X.columns:
        raise ValueError(f"X is missing the required column {INDEX_AGE!r}.")
    return X


def ehr_columns(X) -> np.ndarray:
    """The columns of ``X`` that the package reads, in the frame's order.

    The estimators record these as ``feature_names_in_``: other columns are ignored,
    at fit and at predict time, and the column order is free.

    Parameters
    ----------
    X : pandas.DataFrame

    Returns
    -------
    ndarray of object
        The names among ``codes``, ``ages``, ``index_age``, ``static``, ``values``.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"note": ["x"], "ages": [[50.0]], "codes": [[["A"]]]})
    >>> ehr_columns(X).tolist()
    ['ages', 'codes']
    """
    return np.array([c for c in X.columns if c in EHR_COLUMNS], dtype=object)


def check_predict_columns(X, fitted_columns) -> None:
    """Warn when an optional column seen at fit is absent at predict time.

    A missing optional column is allowed (``index_age`` then defaults to the last
    visit's age, ``static`` and ``values`` to none), but it changes the model's
    inputs, so it is reported rather than silent.

    Parameters
    ----------
    X : pandas.DataFrame
        The prediction frame (validated elsewhere).
    fitted_columns : array-like of str
        ``feature_names_in_`` of the fitted estimator.
    """
    columns = getattr(X, "columns", ())
    missing = [c for c in fitted_columns if c in OPTIONAL_COLUMNS and c not in columns]
    if missing:
        instead = {INDEX_AGE: "the prediction time is the last visit", STATIC: "no static codes",
                   VALUES: "codes without values"}
        warnings.warn(
            f"X lacks the column(s) {missing} that the model was fitted with; predicting "
            f"without them ({'; '.join(instead[c] for c in missing)}).",
            UserWarning,
            stacklevel=3,
        )


def check_survival_y(y, n_samples: int | None = None, require_events: bool = True):
    """Check a survival outcome and return its event indicator and time.

    Parameters
    ----------
    y : structured ndarray, shape (n_samples,)
        As made by ``sksurv.util.Surv.from_arrays(event, time)``: the first field is the
        boolean event indicator, the second the time from the prediction time (any names).
    n_samples : int, optional
        The number of rows of ``X``; a different length raises.
    require_events : bool, default=True
        Raise when no sample has an event (nothing to fit).

    Returns
    -------
    event : ndarray of bool, shape (n_samples,)
    time : ndarray of float64, shape (n_samples,)

    Raises
    ------
    TypeError
        If ``y`` is not a structured array with a boolean first field.
    ValueError
        For a length mismatch, NaN/inf or negative times, or no events; the message
        names the row and the field.

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> event, time = check_survival_y(Surv.from_arrays([True, False], [1.0, 2.5]))
    >>> event.tolist(), time.tolist()
    ([True, False], [1.0, 2.5])
    """
    y = np.asarray(y)
    names = y.dtype.names
    if names is None or len(names) != 2:
        raise TypeError(
            "y must be a structured array with two fields (event indicator, time), "
            "as sksurv.util.Surv.from_arrays(event, time) makes it; "
            f"got dtype {y.dtype}."
        )
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional; got shape {y.shape}.")
    event_name, time_name = names
    if y.dtype[event_name].kind in "iu":
        raise TypeError(
            f"the first field of y ({event_name!r}) holds integer event types: a "
            f"competing-risks y (causes 1..{y[event_name].max(initial=0)}), and this "
            f"estimator models one cause. Pass survbehrt.data.cause_specific_y(y, cause) "
            f"to model one cause's hazard (the other causes censored)."
        )
    if y.dtype[event_name].kind != "b":
        raise TypeError(
            f"the first field of y ({event_name!r}) must be the boolean event indicator; "
            f"got dtype {y.dtype[event_name]}."
        )
    if n_samples is not None and len(y) != n_samples:
        raise ValueError(
            f"y has {len(y)} rows but X has {n_samples}; they must describe the same patients."
        )
    event = y[event_name].astype(bool)
    try:
        time = y[time_name].astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"the time field of y ({time_name!r}) must be numeric.") from None
    bad = ~np.isfinite(time)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"y row {row}, field {time_name!r}: time {time[row]} is not finite.")
    if (time < 0).any():
        row = int(np.argmax(time < 0))
        raise ValueError(
            f"y row {row}, field {time_name!r}: negative time {time[row]}; times count "
            f"from the prediction time and must be >= 0."
        )
    if require_events and not event.any():
        raise ValueError(
            f"y has no events (all {len(y)} samples are censored in field {event_name!r}); "
            f"a survival model cannot be fitted. If this is a CV fold, use stratified folds."
        )
    return event, time
