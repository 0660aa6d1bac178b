"""``FlatEHR``: a patient frame flattened into visit-level arrays, cell by cell.

The per-cell path of :func:`~survbehrt.data.validation.flatten_ehr` (cells of Python
lists or arrays) and the column names of the patient frame. The Arrow path
(``_arrow.py``) builds the same ``FlatEHR`` column by column and words its errors through
:func:`_flatten_objects`; ``validation.py`` picks the path. Split from ``validation.py``
so that the two paths sit below the function that chooses between them (no import
circle).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import pandas as pd

__all__ = ["FlatEHR"]

CODES = "codes"
AGES = "ages"
INDEX_AGE = "index_age"
STATIC = "static"
VALUES = "values"
#: The columns of X the package reads, required first; any other column is ignored.
EHR_COLUMNS = (CODES, AGES, INDEX_AGE, STATIC, VALUES)
OPTIONAL_COLUMNS = (INDEX_AGE, STATIC, VALUES)


@dataclass(frozen=True)
class FlatEHR:
    """A validated cohort flattened into visit-level arrays.

    Codes are stored once: ``code_names`` holds each distinct code string and
    ``code_index`` / ``static_index`` point into it, so that a cohort of millions of
    events holds integers, not one Python object per event.

    Attributes
    ----------
    code_index : ndarray of int32, shape (n_codes,)
        Every code of every visit, patients and visits in order, as a position in
        ``code_names``.
    code_names : ndarray of object, shape (n_names,)
        The distinct code strings (visit and static codes together), no repeats.
    visit_lengths : ndarray of int64, shape (n_visits_total,)
        Number of codes in each visit.
    visit_ages : ndarray of float64, shape (n_visits_total,)
        Age in years at each visit.
    n_visits : ndarray of int64, shape (n_patients,)
        Number of visits of each patient.
    index_age : ndarray of float64, shape (n_patients,)
        Age at the prediction time (the last visit's age when the column is absent).
    values : ndarray of float64, shape (n_codes,), or None
        The numeric value of each code (NaN: none); None without a ``values`` column.
    static_index : ndarray of int32, shape (n_static_codes,)
        Every static code (no time), patients in order, as a position in ``code_names``.
    n_static : ndarray of int64, shape (n_patients,), or None
        Number of static codes of each patient; None means none for anybody.
    """

    code_index: np.ndarray
    code_names: np.ndarray
    visit_lengths: np.ndarray
    visit_ages: np.ndarray
    n_visits: np.ndarray
    index_age: np.ndarray
    values: np.ndarray | None = None
    static_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    n_static: np.ndarray | None = None

    @property
    def codes(self) -> list:
        """Every code of every visit as a list of ``str`` (built on demand)."""
        return self.code_names[self.code_index].tolist()

    @property
    def static_codes(self) -> list:
        """Every static code as a list of ``str`` (built on demand)."""
        return self.code_names[self.static_index].tolist()

    @property
    def n_patients(self) -> int:
        """Number of patients."""
        return len(self.n_visits)

    @property
    def static_counts(self) -> np.ndarray:
        """Number of static codes of each patient, shape (n_patients,) (zeros without any)."""
        if self.n_static is None:
            return np.zeros(self.n_patients, dtype=np.int64)
        return self.n_static

    def cut(self, rows, n_keep) -> FlatEHR:
        """The histories of ``rows``, each cut after its first ``n_keep`` visits.

        The prediction time (``index_age``) and the static codes stay those of the
        full row: a cut history is what was known at that visit about the same
        prediction (used for landmark predictions under truncation).

        Parameters
        ----------
        rows : array-like of int, shape (n,)
            Patient positions (repeats allowed).
        n_keep : array-like of int, shape (n,)
            Visits to keep of each, ``1 <= n_keep <= n_visits[row]``.

        Returns
        -------
        FlatEHR
        """
        rows = np.asarray(rows, dtype=np.int64)
        n_keep = np.asarray(n_keep, dtype=np.int64)
        if len(rows) and ((n_keep < 1) | (n_keep > self.n_visits[rows])).any():
            raise ValueError("n_keep must be between 1 and the row's number of visits.")
        visit_start = np.cumsum(self.n_visits) - self.n_visits
        code_start = np.cumsum(self.visit_lengths) - self.visit_lengths
        vis = np.repeat(visit_start[rows], n_keep) + group_arange(n_keep)
        lengths = self.visit_lengths[vis]
        code_idx = np.repeat(code_start[vis], lengths) + group_arange(lengths)
        n_static = None
        static_index = np.zeros(0, dtype=np.int32)
        if self.n_static is not None:
            static_start = np.cumsum(self.n_static) - self.n_static
            n_static = self.n_static[rows]
            static_idx = np.repeat(static_start[rows], n_static) + group_arange(n_static)
            static_index = self.static_index[static_idx]
        return FlatEHR(
            code_index=self.code_index[code_idx],
            code_names=self.code_names,
            visit_lengths=lengths,
            visit_ages=self.visit_ages[vis],
            n_visits=n_keep,
            index_age=self.index_age[rows],
            values=None if self.values is None else self.values[code_idx],
            static_index=static_index,
            n_static=n_static,
        )


def _factorize(codes) -> tuple[np.ndarray, np.ndarray]:
    """Positions (int32) into the distinct strings (object array, first-seen order)."""
    index, names = pd.factorize(np.asarray(codes, dtype=object), use_na_sentinel=False)
    return index.astype(np.int32, copy=False), np.asarray(names, dtype=object)


def group_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` without the Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def _plain(label):
    # numpy scalars print as np.int64(1) under numpy 2; show the value the user typed
    if isinstance(label, tuple):
        return tuple(_plain(v) for v in label)
    return label.item() if isinstance(label, np.generic) else label


def _where(X: pd.DataFrame, row: int, column: str) -> str:
    return f"X row {row} (index {_plain(X.index[row])!r}), column {column!r}"


def _is_sequence(value) -> bool:
    # Lists from Python, arrays from parquet / pyarrow round trips; strings are not sequences here.
    return isinstance(value, (list, tuple, np.ndarray, pd.Series))


def _is_missing(value) -> bool:
    """A cell that stands for "nothing here": None, NaN or pandas' NA."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def _first_bad_code(X, column, codes, lengths, owner, what):
    """Raise the error for the first non-string or empty code of a flat code list."""
    bad = next((i for i, c in enumerate(codes) if type(c) is not str or c == ""), None)
    if bad is None:
        return
    v = int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
    row, where = owner(v)
    if isinstance(codes[bad], str):
        raise ValueError(f"{_where(X, row, column)}: {where}holds an empty code.")
    raise TypeError(
        f"{_where(X, row, column)}: {where}holds {codes[bad]!r} of type "
        f"{type(codes[bad]).__name__}; {what} must be strings."
    )


def _flatten_static(X) -> tuple[list, np.ndarray | None]:
    """The ``static`` column as one flat code list and a count per row (None if absent)."""
    if STATIC not in X.columns:
        return [], None
    cells = X[STATIC].tolist()
    n_static = np.zeros(len(cells), dtype=np.int64)
    for row, cell in enumerate(cells):
        if _is_sequence(cell):
            n_static[row] = len(cell)
        elif not _is_missing(cell):
            raise TypeError(
                f"{_where(X, row, STATIC)}: expected a list of static codes (or None), got "
                f"{type(cell).__name__} {cell!r}."
            )
    codes = list(chain.from_iterable(c for c in cells if _is_sequence(c)))
    if not all(type(c) is str and c for c in codes):
        _first_bad_code(X, STATIC, codes, np.ones(len(codes), dtype=np.int64),
                        lambda i: (int(np.searchsorted(np.cumsum(n_static), i, side="right")), ""),
                        "static codes")
    return codes, n_static


def _flatten_values(X, n_visits, visit_lengths, visit_patient, visit_start) -> np.ndarray | None:
    """The ``values`` column as one float per code (NaN: none), or None if absent.

    A missing cell (None / NaN) means no values for that row; a missing visit, none for
    that visit. Otherwise each cell mirrors ``codes``: one list per visit, one number
    (or None / NaN) per code.
    """
    if VALUES not in X.columns:
        return None
    cells = X[VALUES].tolist()
    visits = []
    for row, cell in enumerate(cells):
        if _is_missing(cell):
            start = int(visit_start[row])
            visits.extend([np.nan] * int(n) for n in visit_lengths[start : start + n_visits[row]])
            continue
        if not _is_sequence(cell):
            raise TypeError(
                f"{_where(X, row, VALUES)}: expected a list of visits of numbers (parallel to "
                f"{CODES!r}) or None, got {type(cell).__name__}."
            )
        if len(cell) != n_visits[row]:
            raise ValueError(
                f"{_where(X, row, VALUES)}: {len(cell)} visits of values for {n_visits[row]} "
                f"visits in {CODES!r}; values must mirror codes visit by visit."
            )
        visits.extend(cell)
    try:  # fast path: every visit a sequence of the right length
        ok = np.array_equal(np.fromiter(map(len, visits), dtype=np.int64, count=len(visits)),
                            visit_lengths)
    except TypeError:  # a visit without a length (None, a number)
        ok = False
    if not ok:
        _check_value_visits(X, visits, visit_lengths, visit_patient, visit_start)
    flat = list(chain.from_iterable(visits))
    # The common case (plain floats, NaN for none) converts in C; anything else takes
    # the slow path, which also finds the offending cell.
    try:
        values = np.asarray(flat)
    except (TypeError, ValueError):
        values = np.asarray(flat, dtype=object)
    if values.ndim != 1 or values.dtype.kind not in "fiu":
        values = np.fromiter(
            (_as_value(X, x, i, visit_lengths, visit_patient, visit_start) for i, x in enumerate(flat)),
            dtype=np.float64, count=len(flat),
        )
    values = values.astype(np.float64, copy=False)
    infinite = np.isinf(values)
    if infinite.any():
        _raise_at_code(X, int(np.argmax(infinite)), visit_lengths, visit_patient, visit_start,
                       ValueError, f"value {values[np.argmax(infinite)]} is infinite; values "
                       f"must be finite numbers (NaN for none).")
    return values


def _check_value_visits(X, visits, visit_lengths, visit_patient, visit_start) -> None:
    """Replace missing visits by NaN lists in place; raise at the first malformed visit."""
    for v, visit in enumerate(visits):
        if _is_missing(visit):
            visits[v] = [np.nan] * int(visit_lengths[v])
        elif not _is_sequence(visit) or len(visit) != visit_lengths[v]:
            row = int(visit_patient[v])
            got = f"{len(visit)} values" if _is_sequence(visit) else f"a {type(visit).__name__}"
            raise (ValueError if _is_sequence(visit) else TypeError)(
                f"{_where(X, row, VALUES)}: visit {v - visit_start[row]} has {got} for "
                f"{visit_lengths[v]} codes; each visit needs one number (or NaN) per code."
            )


def _raise_at_code(X, i, visit_lengths, visit_patient, visit_start, exc, message):
    v = int(np.searchsorted(np.cumsum(visit_lengths), i, side="right"))
    row = int(visit_patient[v])
    raise exc(f"{_where(X, row, VALUES)}: visit {v - visit_start[row]}: {message}")


def _as_value(X, x, i, visit_lengths, visit_patient, visit_start) -> float:
    if _is_missing(x):
        return np.nan
    if isinstance(x, (numbers.Real, np.bool_)):
        return float(x)
    _raise_at_code(X, i, visit_lengths, visit_patient, visit_start, TypeError,
                   f"value {x!r} of type {type(x).__name__} is not a number (use NaN for none).")


def _flatten_objects(X: pd.DataFrame) -> FlatEHR:
    """:func:`flatten_ehr` for cells of Python lists (or arrays): one check per cell."""
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
    if not all(type(c) is str and c for c in codes):
        # Slow path only on error: locate the first offending code.
        def owner(v):
            row = int(visit_patient[v])
            return row, f"visit {v - visit_start[row]} "

        _first_bad_code(X, CODES, codes, visit_lengths, owner, "codes")

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

    index_age = _index_age(X, visit_ages[visit_start + n_visits - 1])
    static_codes, n_static = _flatten_static(X)
    values = _flatten_values(X, n_visits, visit_lengths, visit_patient, visit_start)
    index, names = _factorize(codes + static_codes)
    return FlatEHR(
        code_index=index[: len(codes)],
        code_names=names,
        visit_lengths=visit_lengths,
        visit_ages=visit_ages,
        n_visits=n_visits,
        index_age=index_age,
        values=values,
        static_index=index[len(codes) :],
        n_static=n_static,
    )


def _index_age(X: pd.DataFrame, last_age: np.ndarray) -> np.ndarray:
    """The checked ``index_age`` column (the last visit's age when absent)."""
    if INDEX_AGE not in X.columns:
        return last_age.copy()
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
    return index_age
