"""Arrow-backed list columns of the patient frame ``X``: building and reading them.

:func:`~survbehrt.data.from_events` returns ``codes``, ``ages``, ``static`` and
``values`` as pandas columns of dtype :class:`pandas.ArrowDtype` (pyarrow list arrays:
one offsets buffer per nesting level and one flat child array), so that a cohort of
millions of events holds no Python object per event. ``X["codes"].tolist()`` still
gives lists of lists of ``str``.

:func:`flatten_arrow` reads such a frame without leaving Arrow: the offsets become the
visit lengths, the code strings (a dictionary array, or plain strings encoded here)
become integer positions into the distinct strings. The checks of
:func:`~survbehrt.data.flatten_ehr` are done on whole arrays; when one fails, the first
offending row is handed to the per-cell path, which words the error (row, column,
visit) exactly as for a frame of Python lists.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._flat import (
    AGES,
    CODES,
    STATIC,
    VALUES,
    FlatEHR,
    _flatten_objects,
    _index_age,
)

__all__ = ["is_arrow_frame", "flatten_arrow", "list_series"]

#: The list nesting of each column: codes and values are lists of visits of items.
_DEPTH = {CODES: 2, AGES: 1, STATIC: 1, VALUES: 2}


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _leaf_type(t: pa.DataType, depth: int) -> pa.DataType | None:
    for _ in range(depth):
        if not _is_list(t):
            return None
        t = t.value_type
    return t


def is_arrow_frame(X: pd.DataFrame) -> bool:
    """Whether every list column of ``X`` it has is Arrow-backed with the expected shape.

    ``codes`` must be ``list<list<string>>`` (or ``large_list``, ``large_string``, or a
    dictionary of strings), ``ages`` ``list<number>``, ``static`` ``list<string>`` and
    ``values`` ``list<list<number>>``. Anything else takes the per-cell path.
    """
    for column, depth in _DEPTH.items():
        if column not in X.columns:
            if column in (CODES, AGES):
                return False
            continue
        dtype = X[column].dtype
        if not isinstance(dtype, pd.ArrowDtype):
            return False
        leaf = _leaf_type(dtype.pyarrow_dtype, depth)
        if leaf is None:
            return False
        if not (_is_text(leaf) if column in (CODES, STATIC) else _is_number(leaf)):
            return False
    return True


def _array(X: pd.DataFrame, column: str) -> pa.Array:
    """The column as one (unchunked) pyarrow array: the column's own when it has one
    chunk (no copy), else the chunks joined."""
    arr = X[column].array.__arrow_array__()
    if isinstance(arr, pa.ChunkedArray):
        return arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    return arr


def _level(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Lengths (int64, 0 for a null list), null mask and the flattened child of a list
    array.

    Without nulls the lengths are the differences of the offsets, read in place, and the
    child is a slice of the list's values (no copy).
    """
    if not arr.null_count:
        offsets = arr.offsets.to_numpy()  # a view, honouring the array's slicing
        lengths = np.empty(len(arr), dtype=np.int64)
        np.subtract(offsets[1:], offsets[:-1], out=lengths)
        return lengths, np.zeros(len(arr), dtype=bool), arr.flatten()
    lengths = pc.list_value_length(arr)
    null = lengths.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(lengths, 0).to_numpy().astype(np.int64, copy=False)
    return lengths, null, arr.flatten()  # flatten skips null lists and honours slicing


def _strings(leaf: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Positions (int32) into distinct strings, the strings, and a bad-code mask (None
    when no code is bad).

    A dictionary array is read as it is (its dictionary may repeat strings after a
    ``pd.concat``; they are merged here); plain strings are hash-encoded by pyarrow.
    Null and empty codes are bad.
    """
    if not pa.types.is_dictionary(leaf.type):
        leaf = pc.dictionary_encode(leaf)
    indices = leaf.indices
    bad = None
    if indices.null_count:
        bad = indices.is_null().to_numpy(zero_copy_only=False)
        indices = pc.fill_null(indices, 0)
    # int32 indices without nulls are read in place (no copy).
    indices = indices.cast(pa.int32()).to_numpy()
    names = leaf.dictionary.to_numpy(zero_copy_only=False)
    position, distinct = pd.factorize(names, use_na_sentinel=False)
    distinct = np.asarray(distinct, dtype=object)
    if not np.array_equal(position, np.arange(len(names))):
        indices = position.astype(np.int32)[indices]  # repeated strings: merged
    bad_name = np.array([not isinstance(c, str) or c == "" for c in distinct], dtype=bool)
    if bad_name.any():
        bad = bad_name[indices] if bad is None else bad | bad_name[indices]
    return indices, distinct, bad


def _numbers(leaf: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values (NaN for null) and the null mask."""
    leaf = leaf.cast(pa.float64())
    if not leaf.null_count:  # read in place (no copy)
        return leaf.to_numpy(), np.zeros(len(leaf), dtype=bool)
    null = leaf.is_null().to_numpy(zero_copy_only=False)
    return pc.fill_null(leaf, np.nan).to_numpy(), null


def _has_inf(x: np.ndarray) -> bool:
    """Whether ``x`` (float) holds an infinity: its extremes, NaN ignored (no temporary)."""
    return bool(len(x)) and bool(np.isinf(np.fmax.reduce(x)) or np.isinf(np.fmin.reduce(x)))


def _rows_of(positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The owner (row or visit) of each flat position, for owners of ``lengths`` items."""
    return np.searchsorted(np.cumsum(lengths), positions, side="right")


def flatten_arrow(X: pd.DataFrame) -> FlatEHR:
    """:func:`~survbehrt.data.flatten_ehr` for an Arrow-backed frame (see :func:`is_arrow_frame`)."""
    n = len(X)
    bad = np.zeros(n, dtype=bool)

    # codes: rows -> visits -> code strings
    n_visits, null_row, visits = _level(_array(X, CODES))
    bad |= null_row | (n_visits == 0)
    visit_lengths, null_visit, leaf = _level(visits)
    visit_patient = np.repeat(np.arange(n), n_visits)
    bad[visit_patient[null_visit | (visit_lengths == 0)]] = True
    code_index, names, bad_code = _strings(leaf)
    if bad_code is not None:
        bad[visit_patient[_rows_of(np.flatnonzero(bad_code), visit_lengths)]] = True

    # ages: one finite, non-negative, non-decreasing number per visit
    age_lengths, null_row, ages = _level(_array(X, AGES))
    bad |= null_row | (age_lengths != n_visits)
    visit_ages, null_age = _numbers(ages)
    age_patient = np.repeat(np.arange(n), age_lengths)
    wrong = null_age | ~np.isfinite(visit_ages) | (visit_ages < 0)
    wrong[1:] |= (age_patient[1:] == age_patient[:-1]) & (np.diff(visit_ages) < 0)
    bad[age_patient[wrong]] = True

    static_index, n_static = np.zeros(0, dtype=np.int32), None
    static_names = np.zeros(0, dtype=object)
    if STATIC in X.columns:
        n_static, _, leaf = _level(_array(X, STATIC))  # a null row: no static codes
        static_index, static_names, bad_code = _strings(leaf)
        if bad_code is not None:
            bad[_rows_of(np.flatnonzero(bad_code), n_static)] = True

    values = None
    if VALUES in X.columns:
        row_lengths, null_row, visits = _level(_array(X, VALUES))
        bad |= ~null_row & (row_lengths != n_visits)  # a null row: no values
        if not bad.any():
            # Rows agree with codes, so the visits of the present rows line up with
            # theirs: a null visit has no values; else one number (or null) per code.
            present_visit = np.repeat(~null_row, n_visits)
            lengths, null_visit, leaf = _level(visits)
            mismatch = ~null_visit & (lengths != visit_lengths[present_visit])
            bad[visit_patient[present_visit][mismatch]] = True
            if not bad.any():
                flat_values, _ = _numbers(leaf)
                if _has_inf(flat_values):
                    bad[visit_patient[present_visit][~null_visit][
                        _rows_of(np.flatnonzero(np.isinf(flat_values)), lengths[~null_visit])
                    ]] = True
                has = present_visit.copy()
                has[present_visit] = ~null_visit
                if has.all():
                    values = flat_values
                else:
                    values = np.full(len(code_index), np.nan)
                    values[np.repeat(has, visit_lengths)] = flat_values

    if bad.any():
        _raise_for_row(X, int(np.argmax(bad)))
    visit_start = np.cumsum(n_visits) - n_visits
    index_age = _index_age(X, visit_ages[visit_start + n_visits - 1])
    if len(static_names):
        # One table of distinct strings for visit and static codes.
        position, names_all = pd.factorize(
            np.concatenate([names, static_names]), use_na_sentinel=False
        )
        position = position.astype(np.int32)
        # ``names`` has no repeats: it keeps its positions, so code_index stays as it is.
        if not np.array_equal(position[: len(names)], np.arange(len(names))):
            raise AssertionError("flatten_arrow: repeated visit code strings")
        static_index = position[len(names) :][static_index]
        names = names_all
    return FlatEHR(
        code_index=code_index,
        code_names=np.asarray(names, dtype=object),
        visit_lengths=visit_lengths,
        visit_ages=visit_ages,
        n_visits=n_visits,
        index_age=index_age,
        values=values,
        static_index=static_index,
        n_static=n_static,
    )


def _raise_for_row(X: pd.DataFrame, row: int) -> None:
    """Word the error of ``row`` as the per-cell path does, at its place in ``X``."""
    try:
        _flatten_objects(X.iloc[row : row + 1])
    except (TypeError, ValueError) as err:
        message = re.sub(r"^X row 0 ", f"X row {row} ", str(err))
        raise type(err)(message) from None
    raise ValueError(f"X row {row}: invalid list cells in the Arrow-backed columns.")


def list_series(offsets: list, leaf: pa.Array, index: pd.Index) -> pd.Series:
    """A pandas Series of nested lists built from offsets, outermost first, and a leaf.

    Parameters
    ----------
    offsets : list of ndarray of int
        One offsets array per nesting level (``n + 1`` entries, starting at 0), the
        rows' first.
    leaf : pyarrow.Array
        The flat items (e.g. a dictionary array of codes, or float64 values).
    index : pandas.Index
        The Series' index.

    Returns
    -------
    pandas.Series
        Of dtype :class:`pandas.ArrowDtype`; ``int32`` offsets while they fit,
        ``int64`` (``large_list``) beyond.
    """
    arr = leaf
    for off in reversed(offsets):
        off = np.asarray(off)
        if len(off) and off[-1] >= 2**31:
            arr = pa.LargeListArray.from_arrays(pa.array(off.astype(np.int64)), arr)
        else:
            arr = pa.ListArray.from_arrays(pa.array(off.astype(np.int32)), arr)
    return pd.Series(pd.arrays.ArrowExtensionArray(arr), index=index)

