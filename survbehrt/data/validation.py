"""Validation of the public inputs: the patient frame ``X`` and the survival outcome ``y``.

One ``check_*`` function per input kind, called at the public boundary; everything
inside the package trusts what these return. Every error names the patient row
(position and index label) and the column, so a user can find the bad cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd

__all__ = ["FlatEHR", "flatten_ehr", "check_ehr_frame", "check_survival_y"]

CODES = "codes"
AGES = "ages"
INDEX_AGE = "index_age"


@dataclass(frozen=True)
class FlatEHR:
    """A validated cohort flattened into visit-level arrays.

    Attributes
    ----------
    codes : list of str
        Every code of every visit, patients and visits in order.
    visit_lengths : ndarray of int64, shape (n_visits_total,)
        Number of codes in each visit.
    visit_ages : ndarray of float64, shape (n_visits_total,)
        Age in years at each visit.
    n_visits : ndarray of int64, shape (n_patients,)
        Number of visits of each patient.
    index_age : ndarray of float64, shape (n_patients,)
        Age at the prediction time (the last visit's age when the column is absent).
    """

    codes: list
    visit_lengths: np.ndarray
    visit_ages: np.ndarray
    n_visits: np.ndarray
    index_age: np.ndarray

    @property
    def n_patients(self) -> int:
        """Number of patients."""
        return len(self.n_visits)


def _where(X: pd.DataFrame, row: int, column: str) -> str:
    return f"X row {row} (index {X.index[row]!r}), column {column!r}"


def _is_sequence(value) -> bool:
    # Lists from Python, arrays from parquet / pyarrow round trips; strings are not sequences here.
    return isinstance(value, (list, tuple, np.ndarray, pd.Series))


def flatten_ehr(X) -> FlatEHR:
    """Validate a patient frame and flatten it into visit-level arrays.

    Parameters
    ----------
    X : pandas.DataFrame
        One row per patient with columns ``codes`` (list of visits, each a non-empty
        list of ``str`` codes, oldest first), ``ages`` (list of float, one per visit,
        non-decreasing) and optionally ``index_age`` (float, at least the last visit's age).

    Returns
    -------
    FlatEHR
        The validated cohort as flat arrays.

    Raises
    ------
    TypeError
        If ``X`` is not a DataFrame, a cell has the wrong type, or a code is not a string.
    ValueError
        For a missing column, an empty history or visit, ragged ``codes``/``ages``,
        decreasing or non-finite ages, or an ``index_age`` before the last visit. The
        message names the row and the column.
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

    codes_col = X[CODES].tolist()
    ages_col = X[AGES].tolist()

    n_visits = np.empty(len(X), dtype=np.int64)
    for row, (visits, ages) in enumerate(zip(codes_col, ages_col)):
        if not _is_sequence(visits):
            raise TypeError(
                f"{_where(X, row, CODES)}: expected a list of visits, got {type(visits).__name__}."
            )
        if len(visits) == 0:
            raise ValueError(f"{_where(X, row, CODES)}: empty history (no visits).")
        if not _is_sequence(ages):
            raise TypeError(
                f"{_where(X, row, AGES)}: expected a list of ages, got {type(ages).__name__}."
            )
        if len(ages) != len(visits):
            raise ValueError(
                f"{_where(X, row, AGES)}: {len(ages)} ages for {len(visits)} visits in "
                f"{CODES!r}; there must be one age per visit."
            )
        n_visits[row] = len(visits)

    all_visits = list(chain.from_iterable(codes_col))
    visit_patient = np.repeat(np.arange(len(X)), n_visits)
    visit_start = np.concatenate([[0], np.cumsum(n_visits)[:-1]])
    for v, visit in enumerate(all_visits):
        if not _is_sequence(visit) or len(visit) == 0:
            row = int(visit_patient[v])
            what = "an empty visit" if _is_sequence(visit) else f"a {type(visit).__name__}"
            raise (ValueError if _is_sequence(visit) else TypeError)(
                f"{_where(X, row, CODES)}: visit {v - visit_start[row]} is {what}; "
                f"each visit must be a non-empty list of code strings."
            )
    visit_lengths = np.fromiter(map(len, all_visits), dtype=np.int64, count=len(all_visits))
    codes = list(chain.from_iterable(all_visits))
    if not all(type(c) is str for c in codes):
        # Slow path only on error: locate the first offending code.
        bad = next(i for i, c in enumerate(codes) if not isinstance(c, str))
        v = int(np.searchsorted(np.cumsum(visit_lengths), bad, side="right"))
        row = int(visit_patient[v])
        raise TypeError(
            f"{_where(X, row, CODES)}: visit {v - visit_start[row]} holds {codes[bad]!r} "
            f"of type {type(codes[bad]).__name__}; codes must be strings."
        )
    if any(c == "" for c in codes):
        bad = codes.index("")
        v = int(np.searchsorted(np.cumsum(visit_lengths), bad, side="right"))
        row = int(visit_patient[v])
        raise ValueError(f"{_where(X, row, CODES)}: visit {v - visit_start[row]} holds an empty code.")

    try:
        visit_ages = np.fromiter(chain.from_iterable(ages_col), dtype=np.float64)
    except (TypeError, ValueError):
        for row, ages in enumerate(ages_col):
            try:
                np.asarray(ages, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"{_where(X, row, AGES)}: ages must be numbers.") from None
        raise
    bad = ~np.isfinite(visit_ages)
    if bad.any():
        v = int(np.argmax(bad))
        row = int(visit_patient[v])
        raise ValueError(
            f"{_where(X, row, AGES)}: age of visit {v - visit_start[row]} is {visit_ages[v]}; "
            f"ages must be finite (no NaN or inf)."
        )
    if (visit_ages < 0).any():
        v = int(np.argmax(visit_ages < 0))
        row = int(visit_patient[v])
        raise ValueError(f"{_where(X, row, AGES)}: negative age {visit_ages[v]}.")
    same_patient = visit_patient[1:] == visit_patient[:-1]
    decreasing = same_patient & (np.diff(visit_ages) < 0)
    if decreasing.any():
        v = int(np.argmax(decreasing)) + 1
        row = int(visit_patient[v])
        raise ValueError(
            f"{_where(X, row, AGES)}: ages decrease at visit {v - visit_start[row]} "
            f"({visit_ages[v - 1]} -> {visit_ages[v]}); visits must be oldest first."
        )

    last_age = visit_ages[visit_start + n_visits - 1]
    if INDEX_AGE in X.columns:
        try:
            index_age = X[INDEX_AGE].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise TypeError(f"column {INDEX_AGE!r} of X must be numeric.") from None
        bad = ~np.isfinite(index_age)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"{_where(X, row, INDEX_AGE)}: {index_age[row]} is not a finite age.")
        before = index_age < last_age
        if before.any():
            row = int(np.argmax(before))
            raise ValueError(
                f"{_where(X, row, INDEX_AGE)}: index_age {index_age[row]} is before the last "
                f"visit's age {last_age[row]}; the prediction time must follow the history."
            )
    else:
        index_age = last_age.copy()

    return FlatEHR(
        codes=codes,
        visit_lengths=visit_lengths,
        visit_ages=visit_ages,
        n_visits=n_visits,
        index_age=index_age,
    )


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
