"""Long event tables (MEDS style) to the patient frame ``X``.

A long table has one row per recorded code: ``subject_id``, ``time``, ``code``
(the MEDS core columns), with the birth either as a row with the code
``"MEDS_BIRTH"`` or given separately. :func:`from_events` groups the events of a
subject into visits (same timestamp, or same calendar day), computes the age at
each visit, cuts the history at the prediction time and returns one row per
subject in the package's patient-frame format.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["from_events"]

_MAX_LISTED = 10


def _is_polars(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "polars"


def _list_ids(ids) -> str:
    ids = list(ids)
    shown = ", ".join(repr(i) for i in ids[:_MAX_LISTED])
    more = f", ... ({len(ids) - _MAX_LISTED} more)" if len(ids) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _events_frame(events, columns) -> pd.DataFrame:
    """The needed columns of a pandas or polars (lazy) frame, as pandas."""
    if _is_polars(events) and hasattr(events, "collect"):  # a LazyFrame
        available = list(events.collect_schema().names())
    elif _is_polars(events) and hasattr(events, "to_pandas") and hasattr(events, "columns"):
        available = list(events.columns)
    elif isinstance(events, pd.DataFrame):
        available = list(events.columns)
    else:
        raise TypeError(
            f"events must be a pandas or polars DataFrame; got {type(events).__name__}."
        )
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(
            f"events is missing the column(s) {missing}; it has {available}. Name the "
            f"columns with subject_col=, time_col= and code_col=."
        )
    if _is_polars(events):
        selected = events.select(columns)
        if hasattr(selected, "collect"):
            selected = selected.collect()
        return selected.to_pandas()
    return events[columns]


def _as_series(mapping, name, subject_col) -> pd.Series:
    """A subject -> value Series from a dict, Series or two-column (pandas/polars) frame."""
    if _is_polars(mapping):
        mapping = mapping.to_pandas()
    if isinstance(mapping, pd.DataFrame):
        if subject_col in mapping.columns:
            others = [c for c in mapping.columns if c != subject_col]
            if len(others) != 1:
                raise ValueError(
                    f"{name} as a DataFrame must have the column {subject_col!r} and one value "
                    f"column; got columns {list(mapping.columns)}."
                )
            mapping = mapping.set_index(subject_col)[others[0]]
        elif mapping.shape[1] == 1:
            mapping = mapping.iloc[:, 0]
        else:
            raise ValueError(
                f"{name} as a DataFrame must have the column {subject_col!r} and one value "
                f"column; got columns {list(mapping.columns)}."
            )
    if isinstance(mapping, pd.Series):
        series = mapping
    elif hasattr(mapping, "keys"):
        series = pd.Series(dict(mapping), dtype=object if len(mapping) == 0 else None)
    else:
        raise TypeError(
            f"{name} must be a mapping, a pandas Series indexed by subject or a DataFrame with "
            f"the column {subject_col!r}; got {type(mapping).__name__}."
        )
    dup = series.index.duplicated()
    if dup.any():
        raise ValueError(
            f"{name} has several values for the subject(s) "
            f"{_list_ids(series.index[dup].unique())}; one row per subject is allowed "
            f"(make one frame per prediction time)."
        )
    return series


def _time_kind(series: pd.Series, what: str) -> str:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return "numeric"
    raise TypeError(
        f"{what} must hold datetimes (datetime64) or numbers of days; got dtype "
        f"{series.dtype}. Convert it first, e.g. with pandas.to_datetime."
    )


def _coerce_times(series: pd.Series, kind: str, what: str) -> pd.Series:
    """Values of a birth / prediction-time mapping in the kind of the event times."""
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            return series
        try:
            return pd.to_datetime(series)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{what} must hold datetimes like the event times: {err}") from None
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.astype(np.float64)
    raise TypeError(
        f"{what} must hold numbers of days like the event times; got dtype {series.dtype}."
    )


def _check_same_tz(series: pd.Series, times: pd.Series, what: str, time_col: str) -> None:
    """Raise when ``series`` and the event times do not agree on being time-zone aware."""
    if not pd.api.types.is_datetime64_any_dtype(times.dtype):
        return
    aware = getattr(series.dt, "tz", None) is not None
    if aware != (times.dt.tz is not None):
        raise TypeError(
            f"{what} is time-zone {'aware' if aware else 'naive'} but column {time_col!r} "
            f"is time-zone {'naive' if aware else 'aware'}; the event times, the birth and "
            f"the prediction times must be all time-zone aware or all naive."
        )


def _days(delta) -> np.ndarray:
    """Float days of a time difference (timedelta Series or numeric)."""
    if pd.api.types.is_timedelta64_dtype(getattr(delta, "dtype", None)):
        return (delta / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
    return np.asarray(delta, dtype=np.float64)


def _subtract(a, b, time_col):
    try:
        return a - b
    except TypeError as err:
        raise TypeError(
            f"cannot subtract the birth times from column {time_col!r} ({err}); the event "
            f"times, the birth and the prediction times must be all time-zone aware or all naive."
        ) from None


def from_events(
    events,
    birth=None,
    prediction_times=None,
    *,
    subject_col="subject_id",
    time_col="time",
    code_col="code",
    birth_code="MEDS_BIRTH",
    visit_resolution="exact",
    age_unit_days=365.25,
    deduplicate=True,
    return_dropped=False,
):
    """Convert a long (MEDS-style) event table into the patient frame ``X``.

    Every row of ``events`` is one code recorded for one subject at one time. Rows of
    a subject at the same timestamp (``visit_resolution="exact"``) or on the same
    calendar day (``"day"``) form one visit. Within a visit the codes are ordered by
    time, ties kept in their input order; with ``deduplicate=True`` (the default) a
    code repeated within a visit is kept once, at its first place, since repeats
    within one encounter (e.g. a diagnosis recorded by two departments) carry no
    order information. A visit's age is the age at its earliest event:
    ``(time - birth)`` in days divided by ``age_unit_days``.

    **Prediction times.** With ``prediction_times``, the output holds exactly the
    subjects it names (other subjects of ``events`` are ignored), every event strictly
    after a subject's prediction time is dropped, and ``index_age`` is the age at the
    prediction time. An event recorded *at* the prediction time is kept: it is known
    when the prediction is made (the MEDS label convention). Without it, all events are
    used and ``index_age`` is the last visit's age.

    **Dropped subjects.** A subject without a birth time, or without any event (up to
    its prediction time), cannot form a row. Such subjects are never lost silently: a
    ``UserWarning`` names them, and ``return_dropped=True`` also returns them with
    the reason.

    Parameters
    ----------
    events : pandas.DataFrame or polars.DataFrame
        The long table, with at least ``subject_col``, ``time_col`` and ``code_col``.
        Times are datetimes (naive or time-zone aware) or numbers of days (any origin
        shared with ``birth``). Codes are converted to ``str``.
    birth : mapping, pandas.Series or DataFrame, optional
        Birth time per subject (a dict or Series indexed by subject, or a frame with
        ``subject_col`` and one time column; pandas or polars). Where given it takes
        precedence; subjects it misses take the time of their ``birth_code`` row.
    prediction_times : mapping, pandas.Series or DataFrame, optional
        Prediction time per subject (same forms as ``birth``), one per subject.
    subject_col, time_col, code_col : str, default="subject_id", "time", "code"
        Column names in ``events``.
    birth_code : str or None, default="MEDS_BIRTH"
        Code of the birth rows. These rows give the birth time and are not part of
        any visit. ``None``: no birth rows (``birth`` must then be given).
    visit_resolution : {"exact", "day"}, default="exact"
        Events at the same timestamp, or on the same calendar day, form a visit.
        For numeric times, ``"day"`` groups by ``floor(time)``.
    age_unit_days : float, default=365.25
        Days per unit of age (365.25: ages in years).
    deduplicate : bool, default=True
        Keep a code once per visit.
    return_dropped : bool, default=False
        Also return the subjects that could not form a row.

    Returns
    -------
    X : pandas.DataFrame
        One row per subject, indexed by subject id (sorted; the index is named
        ``subject_col``), with columns ``codes`` (list of visits, each a list of
        ``str``), ``ages`` (list of float) and ``index_age`` (float).
    dropped : pandas.DataFrame
        Only with ``return_dropped=True``: columns ``subject_col`` and ``reason``
        (``"no birth time"`` or ``"no events"``, the latter meaning none at or
        before the prediction time when one is given).

    Raises
    ------
    ValueError
        For a missing column, null subjects, times or codes (naming the column), an
        event before its subject's birth, several birth times of one subject, several
        prediction times of one subject, or a missing prediction time.
    TypeError
        For times that are neither datetimes nor numbers, or mixed time zones.

    Warns
    -----
    UserWarning
        When subjects are dropped (listed in the message).

    Examples
    --------
    >>> import pandas as pd
    >>> from survbehrt.data.events import from_events
    >>> events = pd.DataFrame({
    ...     "subject_id": [1, 1, 1, 1, 1],
    ...     "time": pd.to_datetime(["1950-01-01", "2000-01-01", "2000-01-01",
    ...                             "2001-01-01", "2003-01-01"]),
    ...     "code": ["MEDS_BIRTH", "I10", "E11", "I21", "N18"],
    ... })
    >>> X = from_events(events, prediction_times={1: pd.Timestamp("2002-01-01")})
    >>> X.loc[1, "codes"]
    [['I10', 'E11'], ['I21']]
    >>> [round(a, 2) for a in X.loc[1, "ages"]], round(float(X.loc[1, "index_age"]), 2)
    ([50.0, 51.0], 52.0)
    """
    if visit_resolution not in ("exact", "day"):
        raise ValueError(f"visit_resolution must be 'exact' or 'day'; got {visit_resolution!r}.")
    if not (np.isfinite(age_unit_days) and age_unit_days > 0):
        raise ValueError(f"age_unit_days must be a positive number; got {age_unit_days!r}.")
    if birth is None and birth_code is None:
        raise ValueError(
            "give the birth times: a birth= mapping or the birth_code of the birth rows."
        )

    df = _events_frame(events, [subject_col, time_col, code_col])
    for col in (subject_col, time_col, code_col):
        null = df[col].isna().to_numpy()
        if null.any():
            rows = np.flatnonzero(null)
            raise ValueError(
                f"column {col!r} of events has {len(rows)} null value(s) (row positions "
                f"{_list_ids(rows.tolist())}); drop or fill them first."
            )
    kind = _time_kind(df[time_col], f"column {time_col!r} of events")
    subjects = df[subject_col].to_numpy()
    times = df[time_col]
    codes = df[code_col].astype(str).to_numpy(dtype=object)

    # --- birth times: the mapping first, then the birth rows ---------------------------
    is_birth = (codes == birth_code) if birth_code is not None else np.zeros(len(df), bool)
    birth_rows = pd.DataFrame(
        {"s": subjects[is_birth], "t": times[is_birth].reset_index(drop=True)}
    )
    by_subject = birth_rows.groupby("s", sort=False)["t"]
    lo, hi = by_subject.min(), by_subject.max()
    conflict = lo.index[(lo != hi).to_numpy()]
    if len(conflict):
        raise ValueError(
            f"subject(s) {_list_ids(conflict)} have several different {birth_code!r} times in "
            f"column {time_col!r}; keep one birth row per subject."
        )
    birth_series = lo
    if birth is not None:
        given = _coerce_times(_as_series(birth, "birth", subject_col), kind, "birth")
        if kind == "datetime":
            _check_same_tz(given, times, "birth", time_col)
        birth_series = (
            given.dropna().combine_first(birth_series) if len(birth_series) else given.dropna()
        )
    birth_series = birth_series[~birth_series.index.duplicated()]

    # --- the events proper ------------------------------------------------------------------
    keep = ~is_birth
    ev_subject = subjects[keep]
    ev_time = times[keep].reset_index(drop=True)
    ev_code = codes[keep]
    ev_birth = birth_series.reindex(ev_subject).reset_index(drop=True)
    has_birth = ev_birth.notna().to_numpy()

    if prediction_times is not None:
        pt = _coerce_times(
            _as_series(prediction_times, "prediction_times", subject_col), kind, "prediction_times"
        )
        if kind == "datetime":
            _check_same_tz(pt, times, "prediction_times", time_col)
        if pt.isna().any():
            raise ValueError(
                f"prediction_times is missing for the subject(s) {_list_ids(pt.index[pt.isna()])}."
            )
        wanted = pt.index
        ev_pt = pt.reindex(ev_subject).reset_index(drop=True)
        sel = ev_pt.notna().to_numpy() & has_birth
    else:
        pt = None
        wanted = pd.Index(pd.unique(subjects))
        sel = has_birth

    ev_subject, ev_code = ev_subject[sel], ev_code[sel]
    ev_time = ev_time[sel].reset_index(drop=True)
    if sel.any():
        ev_days = _days(_subtract(ev_time, ev_birth[sel].reset_index(drop=True), time_col))
    else:
        ev_days = np.zeros(0, dtype=np.float64)
    if (ev_days < 0).any():
        bad = pd.unique(ev_subject[ev_days < 0])
        raise ValueError(
            f"column {time_col!r}: subject(s) {_list_ids(bad)} have events before their birth "
            f"time; fix the birth times or the event times."
        )
    if pt is not None:
        # Never look into the future: keep the events at or before the prediction time.
        known = (ev_time <= ev_pt[sel].reset_index(drop=True)).to_numpy()
        ev_subject, ev_code, ev_days = ev_subject[known], ev_code[known], ev_days[known]
        ev_time = ev_time[known].reset_index(drop=True)

    # --- visits ----------------------------------------------------------------------------
    if kind == "datetime":
        key_time = ev_time.dt.normalize() if visit_resolution == "day" else ev_time
        key = key_time.dt.tz_localize(None) if key_time.dt.tz is not None else key_time
        key = key.to_numpy(dtype="datetime64[ns]").view(np.int64)
    else:
        t = ev_time.to_numpy(dtype=np.float64)
        key = np.floor(t) if visit_resolution == "day" else t
    # Stable: events at the same time keep their input order.
    order = np.lexsort((ev_days, _subject_rank(ev_subject)))
    s_sorted = ev_subject[order]
    key_sorted = key[order]
    code_sorted = ev_code[order]
    days_sorted = ev_days[order]
    n_ev = len(order)
    new_subject = np.ones(n_ev, bool)
    new_visit = np.ones(n_ev, bool)
    if n_ev:
        new_subject[1:] = s_sorted[1:] != s_sorted[:-1]
        new_visit[1:] = new_subject[1:] | (key_sorted[1:] != key_sorted[:-1])
    visit_id = np.cumsum(new_visit) - 1
    if deduplicate and n_ev:
        code_id, uniques = pd.factorize(code_sorted)
        dup = pd.Series(visit_id * max(len(uniques), 1) + code_id).duplicated().to_numpy()
        code_sorted, visit_id = code_sorted[~dup], visit_id[~dup]
    first_of_visit = np.flatnonzero(new_visit)
    codes_per_visit = np.bincount(visit_id, minlength=len(first_of_visit))
    # A visit's age is the age at its earliest event.
    visit_age = days_sorted[first_of_visit] / float(age_unit_days)
    subj_start = np.flatnonzero(new_subject[first_of_visit])
    visits_per_subject = np.diff(np.append(subj_start, len(first_of_visit)))
    out_subjects = s_sorted[first_of_visit][subj_start]

    flat = code_sorted.tolist()
    ends = np.cumsum(codes_per_visit).tolist()
    visits = [flat[s:e] for s, e in zip([0, *ends[:-1]], ends)]
    ages_flat = visit_age.tolist()
    v_ends = np.cumsum(visits_per_subject).tolist()
    v_starts = [0, *v_ends[:-1]]
    codes_col = [visits[s:e] for s, e in zip(v_starts, v_ends)]
    ages_col = [ages_flat[s:e] for s, e in zip(v_starts, v_ends)]

    index = pd.Index(out_subjects, name=subject_col)
    if pt is not None:
        delta = _subtract(
            pt.reindex(index).reset_index(drop=True),
            birth_series.reindex(index).reset_index(drop=True),
            time_col,
        )
        index_age = _days(delta) / float(age_unit_days)
    else:
        index_age = visit_age[np.asarray(v_ends, dtype=np.int64) - 1]
    X = pd.DataFrame(
        {
            "codes": pd.Series(codes_col, index=index, dtype=object),
            "ages": pd.Series(ages_col, index=index, dtype=object),
            "index_age": pd.Series(np.asarray(index_age, dtype=np.float64), index=index),
        },
        index=index,
    )

    # --- report the subjects that could not form a row --------------------------------------
    lost = wanted.difference(X.index, sort=False)
    no_birth = ~pd.Index(lost).isin(birth_series.index)
    dropped = pd.DataFrame(
        {subject_col: np.asarray(lost), "reason": np.where(no_birth, "no birth time", "no events")}
    )
    if len(dropped):
        try:
            dropped = dropped.sort_values(subject_col, ignore_index=True)
        except TypeError:  # unorderable mixed ids
            pass
        parts = []
        for reason in ("no birth time", "no events"):
            ids = dropped.loc[dropped["reason"] == reason, subject_col].tolist()
            if ids:
                parts.append(f"{len(ids)} with {reason}: {_list_ids(ids)}")
        when = " at or before the prediction time" if pt is not None else ""
        warnings.warn(
            f"from_events dropped {len(dropped)} subject(s) that cannot form a row "
            f"(no birth time, or no events{when}): " + "; ".join(parts) + ". Use "
            "return_dropped=True to get them.",
            UserWarning,
            stacklevel=2,
        )
    if return_dropped:
        return X, dropped
    return X


def _subject_rank(subjects: np.ndarray) -> np.ndarray:
    """Integer codes that sort like the subject ids (for a numeric lexsort)."""
    codes, _ = pd.factorize(subjects, sort=True)
    return codes
