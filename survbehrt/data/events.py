"""Long event tables (MEDS) to the patient frame ``X``.

A long table has one row per recorded code: ``subject_id``, ``time``, ``code`` (the
MEDS core columns) and optionally ``numeric_value``; rows without a time are static
codes (e.g. ``GENDER//F``); the birth is a row with the code ``"MEDS_BIRTH"`` or given
separately. :func:`from_events` groups the events of a subject into visits (same
timestamp, or same calendar day), computes the age at each visit, cuts the history at
each prediction time and returns one row per (subject, prediction time).

The work is columnar end to end (polars, numpy and pyarrow; no Python object per
event): the subjects are converted in batches, and X's list columns are Arrow-backed.
:func:`survbehrt.data.survival_labels` shares the row selection (``_rows.py``), so
its labels line up with these rows; ``_build.py`` writes ``X``'s columns.
"""

from __future__ import annotations

from ._build import _build_frame
from ._pages import plain_pages
from ._rows import _cohort, _warn_dropped

__all__ = ["from_events"]


@plain_pages
def from_events(
    events,
    prediction_times=None,
    *,
    birth=None,
    subject_col="subject_id",
    time_col="time",
    code_col="code",
    value_col=None,
    birth_code="MEDS_BIRTH",
    visit_resolution="exact",
    age_unit_days=365.25,
    deduplicate=True,
    strict=False,
    return_dropped=False,
):
    """Convert a long (MEDS) event table into the patient frame ``X``.

    Every timed row of ``events`` is one code recorded for one subject at one time. Rows
    of a subject at the same timestamp (``visit_resolution="exact"``) or on the same
    calendar day (``"day"``) form one visit. Within a visit the codes are ordered by
    time, ties kept in their input order; with ``deduplicate=True`` (the default) a
    code repeated within a visit is kept once, at its first place (with its first
    value), since repeats within one encounter carry no order information. A visit's
    age is the age at its earliest event: ``(time - birth)`` in days divided by
    ``age_unit_days``. Rows without a time are static codes (MEDS static data such as
    ``GENDER//F``); the birth is the ``birth_code`` row or comes from ``birth``.

    **Prediction times.** With ``prediction_times``, X has one row per (subject,
    prediction time) pair it names -- any number per subject -- indexed by a
    ``MultiIndex`` (``subject_col``, ``"prediction_time"``) and sorted by subject then
    prediction time; subjects it does not name are ignored. Each row's history holds
    the subject's events up to its prediction time; ``index_age`` is the age at the
    prediction time. An event *at* the prediction time is kept (the MEDS label
    convention: it is known when the prediction is made); ``strict=True`` leaves it
    out, for date-only data, where a same-day outcome is recorded at the midnight that
    is also the prediction time. Without ``prediction_times``, X has one row per
    subject, indexed by subject, with all its events, and ``index_age`` is the last
    visit's age.

    **Nothing is lost silently.** A row whose subject has no birth time, or no event
    up to its prediction time, cannot be built: a ``UserWarning`` counts and names
    such rows, and ``return_dropped=True`` returns them with the reason. Every input
    event is accounted for in ``X.attrs["event_counts"]`` (below).

    Parameters
    ----------
    events : pandas.DataFrame, polars.DataFrame, polars.LazyFrame, str or path-like
        The long table: a frame, a parquet file, or a MEDS folder (its
        ``data/**/*.parquet`` shards; ``**/*.parquet`` when it has no ``data``
        subfolder). Columns ``subject_col``, ``time_col``, ``code_col`` and optionally
        a numeric value (``numeric_value`` or ``value``; see ``value_col``); other
        columns are ignored. Times are datetimes (naive or time-zone aware; null for
        static rows) or numbers of days (any origin shared with ``birth``). Codes are
        converted to ``str``.
    prediction_times : mapping, pandas.Series, DataFrame or MultiIndex, optional
        The rows of X. Either one time per subject (a dict or a Series indexed by
        subject), or a MEDS / ACES label table (pandas or polars) with the columns
        ``subject_col`` and ``"prediction_time"`` and any number of rows per subject
        (other columns, e.g. ``boolean_value``, are ignored), or the ``MultiIndex`` of
        an X or of :func:`~survbehrt.data.survival_labels` (``return_index=True``).
    birth : mapping, pandas.Series or DataFrame, optional
        Birth time per subject (a dict or Series indexed by subject, or a frame with
        ``subject_col`` and one time column; pandas or polars). Where given it takes
        precedence; subjects it misses take the time of their ``birth_code`` row.
    subject_col, time_col, code_col : str, default="subject_id", "time", "code"
        Column names in ``events``.
    value_col : str, False or None, default=None
        The numeric-value column. ``None``: ``numeric_value`` or, failing that,
        ``value`` when ``events`` has one; ``False``: ignore numeric values.
    birth_code : str or None, default="MEDS_BIRTH"
        Code of the birth rows. These rows give the birth time and are not part of
        any visit. ``None``: no birth rows (``birth`` must then be given).
    visit_resolution : {"exact", "day"}, default="exact"
        Events at the same timestamp, or on the same calendar day (local day for
        time-zone aware times), form a visit. For numeric times, ``"day"`` groups by
        ``floor(time)``.
    age_unit_days : float, default=365.25
        Days per unit of age (365.25: ages in years).
    deduplicate : bool, default=True
        Keep a code once per visit.
    strict : bool, default=False
        Leave out the events *at* the prediction time (keep only those strictly
        before it).
    return_dropped : bool, default=False
        Also return the rows that could not be built.

    Returns
    -------
    X : pandas.DataFrame
        Columns ``codes`` (list of visits, each a list of ``str``), ``ages`` (list of
        float, one per visit) and ``index_age`` (float); ``static`` (list of ``str``,
        possibly empty) when ``events`` has rows without a time; ``values`` (list of
        visits parallel to ``codes``, each a list of float, NaN where a code has no
        value) when ``events`` has a value column. The list columns are Arrow-backed
        (``pandas.ArrowDtype``; see Notes). ``X.attrs["event_counts"]`` counts
        the input rows by fate: ``static``, ``birth``, ``other_subjects`` (subjects
        without a row), ``after_prediction_time`` (after the subject's last
        prediction time, or at it with ``strict``: in no row), ``duplicates`` (removed
        by ``deduplicate``) and ``used``; they add up to ``events``.
    dropped : pandas.DataFrame
        Only with ``return_dropped=True``: columns ``subject_col``,
        ``"prediction_time"`` (with prediction times) and ``reason`` (``"no birth
        time"`` or ``"no events"``, the latter meaning none at or before -- with
        ``strict``, before -- the prediction time).

    Raises
    ------
    ValueError
        For a missing column, null subjects or codes (naming the column), an event
        before its subject's birth, several birth times of one subject, a missing or
        repeated (subject, prediction time), or several prediction times of one subject
        in a Series (use a label table).
    TypeError
        For times that are neither datetimes nor numbers, mixed time zones, or a
        non-numeric value column.

    Warns
    -----
    UserWarning
        When rows are dropped (counted and listed in the message).

    See Also
    --------
    survbehrt.data.survival_labels : The labels of the same rows.
    survbehrt.data.events_to_survival : X and the labels at once.

    Notes
    -----
    The work is columnar (polars, numpy, pyarrow), with no Python object per event: the
    codes are read as a categorical, the subjects are converted in batches (slices of
    the table when it is sorted by subject, as MEDS shards are), and X's list columns
    are pyarrow list arrays held by pandas (``pandas.ArrowDtype``): ``codes`` is
    ``list<list<dictionary<int32, string>>>`` (each code string stored once), ``ages``
    ``list<double>``, ``static`` ``list<dictionary<int32, string>>`` and ``values``
    ``list<list<double>>``. A cell reads as Python lists (``X["codes"].iloc[0]``,
    ``X["codes"].tolist()``), row selection, ``pd.concat``, pickling and
    scikit-learn's splitters keep the columns as they are, and
    :func:`~survbehrt.data.flatten_ehr` reads them without a Python object per event. A
    whole row (``X.iloc[0]``, ``X.iterrows()``) is an object Series in which pandas
    gives list cells as numpy arrays.

    Examples
    --------
    >>> import pandas as pd
    >>> from survbehrt.data import from_events
    >>> events = pd.DataFrame({
    ...     "subject_id": [1, 1, 1, 1, 1, 1],
    ...     "time": pd.to_datetime([None, "1950-01-01", "2000-01-01", "2000-01-01",
    ...                             "2001-01-01", "2003-01-01"]),
    ...     "code": ["GENDER//F", "MEDS_BIRTH", "I10", "LAB//HBA1C", "I21", "N18"],
    ...     "numeric_value": [None, None, None, 7.1, None, None],
    ... })
    >>> labels = pd.DataFrame({"subject_id": [1, 1],
    ...                        "prediction_time": pd.to_datetime(["2002-01-01", "2000-06-01"])})
    >>> X = from_events(events, labels)
    >>> list(X.index.names)
    ['subject_id', 'prediction_time']
    >>> X["codes"].tolist()
    [[['I10', 'LAB//HBA1C']], [['I10', 'LAB//HBA1C'], ['I21']]]
    >>> X["values"].tolist()
    [[[nan, 7.1]], [[nan, 7.1], [nan]]]
    >>> X["static"].tolist()
    [['GENDER//F'], ['GENDER//F']]
    >>> [round(a, 2) for a in X["index_age"]]
    [50.41, 52.0]
    """
    if visit_resolution not in ("exact", "day"):
        raise ValueError(f"visit_resolution must be 'exact' or 'day'; got {visit_resolution!r}.")
    cohort = _cohort(
        events, prediction_times, birth=birth, subject_col=subject_col, time_col=time_col,
        code_col=code_col, value_col=value_col, birth_code=birth_code,
        age_unit_days=age_unit_days, strict=strict,
    )
    X = _build_frame(
        cohort, cohort.rows, visit_resolution=visit_resolution, deduplicate=deduplicate
    )
    dropped = cohort.dropped
    _warn_dropped("from_events", cohort, dropped, len(X) + len(dropped))
    if return_dropped:
        return X, dropped
    return X
