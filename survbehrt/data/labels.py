"""Survival labels ``(event, time)`` from a long (MEDS) event table.

:func:`survival_labels` turns outcome codes plus end-of-record censoring into the
structured ``y`` of scikit-survival, one label per (subject, prediction time) row, in
the row order of :func:`survbehrt.data.from_events`: both select their rows with the same
function, so the same arguments give the same rows. :func:`events_to_survival` returns
both at once.
"""

from __future__ import annotations

import datetime as _dt
import warnings

import numpy as np
import pandas as pd
import polars as pl

from ._build import _build_frame
from ._meds import list_ids, subjects_like
from ._rows import _as_series, _Cohort, _cohort, _warn_dropped

__all__ = ["survival_labels", "events_to_survival"]

PREVALENT = "outcome at or before the prediction time"
NO_FOLLOW_UP = "no follow-up"


def _outcome_list(outcome_codes) -> list[str]:
    codes = [outcome_codes] if isinstance(outcome_codes, str) else list(outcome_codes)
    if not codes or not all(isinstance(c, str) and c for c in codes):
        raise ValueError(
            f"outcome_codes must be a code or a non-empty list of codes (str); got "
            f"{outcome_codes!r}."
        )
    return codes


def _horizon_ticks(horizon, cohort: _Cohort) -> float | None:
    """The horizon in ticks: a number of years (age units) or a timedelta."""
    if horizon is None:
        return None
    if isinstance(horizon, (pd.Timedelta, _dt.timedelta, np.timedelta64)):
        days = pd.Timedelta(horizon) / pd.Timedelta(days=1)
    elif isinstance(horizon, (int, float, np.integer, np.floating)) and not isinstance(
        horizon, (bool, np.bool_)
    ):
        days = float(horizon) * cohort.age_unit_days
    else:
        raise TypeError(
            f"horizon must be a number of years or a timedelta; got {type(horizon).__name__}."
        )
    if not (np.isfinite(days) and days > 0):
        raise ValueError(f"horizon must be positive; got {horizon!r}.")
    return days * cohort.table.ticks_per_day


def _end_frame(end, cohort: _Cohort, rows: pl.DataFrame) -> pl.DataFrame:
    """``s, end`` ticks per subject from a mapping, or one date for every subject."""
    table = cohort.table
    if isinstance(end, (dict, pd.Series, pd.DataFrame)) or type(end).__module__.startswith(
        "polars"
    ):
        given = _as_series(end, "end", table.subject_col)
        given = given[given.notna()]
        return pl.DataFrame(
            {
                "s": subjects_like(given.index.to_list(), table, "end"),
                "end": table.mapping_ticks(given.reset_index(drop=True), "end"),
            }
        ).with_columns(pl.col("end").cast(rows.schema["pt"]))
    ticks = table.mapping_ticks(pd.Series([end]), "end")
    subjects = rows["s"].unique()
    return pl.DataFrame(
        {"s": subjects, "end": pl.Series(np.repeat(ticks, len(subjects))).cast(rows.schema["pt"])}
    )


def _labels(cohort: _Cohort, outcome_codes, *, end, horizon):
    """``event``, ``time`` (years) and the drop reason (None = kept) of every cohort row."""
    codes = _outcome_list(outcome_codes)
    table = cohort.table
    rows = cohort.rows
    horizon_ticks = _horizon_ticks(horizon, cohort)
    ticks = table.ticks(pl.col("t")).alias("_ticks")
    events = cohort.events(rows["s"].unique())
    if not table.lazy().select(pl.col("c").is_in(codes).any()).collect().item():
        warnings.warn(
            f"none of the outcome codes {list_ids(codes)} occurs in events: every row is "
            f"censored. Check the spelling against the codes of events.",
            UserWarning,
            stacklevel=4,
        )
    outcome = (
        events.filter(pl.col("c").is_in(codes)).select("s", ticks).sort("s", "_ticks")
    )
    last = events.group_by("s").agg(ticks.max().alias("last"))
    first_outcome = outcome.group_by("s").agg(pl.col("_ticks").min().alias("first_outcome"))

    frame = (
        rows.select("s", "pt")
        .with_row_index("_row")
        .join(last, on="s", how="left", maintain_order="left")
        .join(first_outcome, on="s", how="left", maintain_order="left")
    )
    if end is not None:
        frame = frame.join(_end_frame(end, cohort, rows), on="s", how="left",
                           maintain_order="left")
        follow = pl.coalesce("end", "last")
    else:
        follow = pl.col("last")
    if horizon_ticks is not None:
        cap = pl.col("pt") + (
            pl.lit(round(horizon_ticks), dtype=pl.Int64)
            if table.kind == "datetime"
            else pl.lit(horizon_ticks)
        )
        follow = pl.min_horizontal(follow, cap)
    frame = frame.with_columns(follow.alias("follow"))
    # The event is the first outcome strictly after the prediction time.
    after = frame.join_asof(
        outcome.rename({"_ticks": "next"}), left_on="pt", right_on="next", by="s",
        strategy="forward", allow_exact_matches=False, check_sortedness=False,
    ).select("_row", "next")
    frame = frame.join(after, on="_row", how="left", maintain_order="left")
    event = pl.col("next").is_not_null() & (pl.col("next") <= pl.col("follow"))
    frame = frame.with_columns(
        event.alias("event"),
        (pl.when(event).then(pl.col("next")).otherwise(pl.col("follow")) - pl.col("pt"))
        .cast(pl.Float64)
        .alias("dt"),
    )
    frame = frame.with_columns(
        reason=pl.when(pl.col("first_outcome") <= pl.col("pt"))
        .then(pl.lit(PREVALENT))
        .when(pl.col("dt") <= 0)
        .then(pl.lit(NO_FOLLOW_UP))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    event = frame["event"].to_numpy().astype(bool)
    time = frame["dt"].to_numpy() / table.ticks_per_day / cohort.age_unit_days
    reason = frame["reason"].to_numpy()
    return event, time, reason


def _labelled(
    events, prediction_times, outcome_codes, *, end, horizon, func, visit_resolution,
    deduplicate, **options,
):
    if prediction_times is None:
        raise ValueError(f"{func} needs prediction_times: the labels count from them.")
    if visit_resolution not in ("exact", "day"):
        raise ValueError(f"visit_resolution must be 'exact' or 'day'; got {visit_resolution!r}.")
    cohort = _cohort(events, prediction_times, **options)
    event, time, reason = _labels(cohort, outcome_codes, end=end, horizon=horizon)
    kept = pd.isna(reason)
    lost = cohort.rows.filter(pl.Series(~kept))
    dropped = pd.concat(
        [cohort.dropped, cohort.dropped_frame(lost, reason[~kept].tolist())],
        ignore_index=True,
    )
    _warn_dropped(func, cohort, dropped, len(cohort.rows) + len(cohort.dropped), stacklevel=4)
    from sksurv.util import Surv

    y = Surv.from_arrays(event=event[kept], time=time[kept], name_event="event",
                         name_time="time")
    return cohort, cohort.rows.filter(pl.Series(kept)), y, dropped


def survival_labels(
    events,
    prediction_times,
    outcome_codes,
    *,
    end=None,
    horizon=None,
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
    return_index=False,
    return_dropped=False,
):
    """Survival labels ``(event, time)`` per prediction time from a long event table.

    ``y`` lines up with :func:`~survbehrt.data.from_events` on the same arguments: same
    rows (the rows both can build, sorted by subject then prediction time), same order.
    When labels drop rows (below), pass the returned index (``return_index=True``) to
    ``from_events`` as its ``prediction_times``, or use
    :func:`~survbehrt.data.events_to_survival`, which returns both.

    **The rules**, for each (subject, prediction time) row that
    :func:`~survbehrt.data.from_events` can build from the same arguments:

    - the **event** is the first outcome code strictly after the prediction time, at
      or before the end of follow-up; ``time`` is its distance from the prediction
      time, in years (``age_unit_days``);
    - otherwise the row is **censored** at the end of follow-up: the subject's last
      recorded event (any code with a time), or ``end`` where given, capped at
      ``prediction_time + horizon`` where given;
    - a row whose subject had the outcome at or before the prediction time (a
      prevalent case), or with no follow-up (censored at time 0 or earlier), is
      **dropped**, counted and named in a ``UserWarning``.

    Death is censoring for a non-death outcome: a subject who dies before the outcome
    is censored at its last record (the death, usually), so a model of these labels
    estimates the cause-specific hazard, not the probability of having the outcome
    before dying (competing risks are not modelled).

    Parameters
    ----------
    events : pandas.DataFrame, polars.DataFrame, polars.LazyFrame, str or path-like
        The long table, a parquet file or a MEDS folder, as in
        :func:`~survbehrt.data.from_events`. It must hold what happened *after* the
        prediction times: the outcomes and the rest of the record.
    prediction_times : mapping, pandas.Series, DataFrame or MultiIndex
        The rows, as in :func:`~survbehrt.data.from_events`: one time per subject, or
        a MEDS / ACES label table (``subject_col``, ``"prediction_time"``) with any
        number of rows per subject.
    outcome_codes : str or list of str
        The code(s) of the outcome, compared exactly (e.g. ``"MEDS_DEATH"``, or every
        code of a diagnosis group).
    end : mapping, pandas.Series, DataFrame or datetime-like, optional
        End of follow-up: one time per subject (same forms as ``birth``), or one time
        for everyone (an extract's end date). Where given it replaces the subject's
        last recorded event; an outcome after it is censored at it.
    horizon : float or timedelta, optional
        Follow-up cap after each prediction time, in years (``age_unit_days`` days) or
        as a timedelta: an outcome after ``prediction_time + horizon`` is censored
        there.
    birth, subject_col, time_col, code_col, value_col, birth_code, age_unit_days, strict
        As in :func:`~survbehrt.data.from_events`; they decide which rows can be built.
    visit_resolution, deduplicate
        As in :func:`~survbehrt.data.from_events` (checked, and used for ``X``; they
        do not change the labels), so that both functions take the same arguments.
    return_index : bool, default=False
        Also return the index of the labelled rows (a ``MultiIndex`` of subject and
        prediction time, as X's).
    return_dropped : bool, default=False
        Also return the rows without a label: subject, ``prediction_time`` and
        ``reason`` (those of ``from_events``, ``"outcome at or before the prediction
        time"`` or ``"no follow-up"``).

    Returns
    -------
    y : structured ndarray
        Fields ``event`` (bool) and ``time`` (float, years after the prediction time),
        as ``sksurv.util.Surv.from_arrays`` makes them; one per kept row.
    index : pandas.MultiIndex
        Only with ``return_index=True``.
    dropped : pandas.DataFrame
        Only with ``return_dropped=True``.

    Raises
    ------
    ValueError
        As :func:`~survbehrt.data.from_events`, and for empty ``outcome_codes`` or a
        non-positive ``horizon``.
    TypeError
        As :func:`~survbehrt.data.from_events`, and for a ``horizon`` that is neither
        a number nor a timedelta.

    Warns
    -----
    UserWarning
        When rows are dropped, and when no outcome code occurs in ``events`` (a typo
        would otherwise censor every row).

    See Also
    --------
    survbehrt.data.events_to_survival : X and y at once.

    Examples
    --------
    >>> import pandas as pd
    >>> from survbehrt.data import from_events, survival_labels
    >>> events = pd.DataFrame({
    ...     "subject_id": [1, 1, 1, 1, 2, 2, 2],
    ...     "time": pd.to_datetime(["1950-01-01", "2000-01-01", "2001-01-01", "2002-01-01",
    ...                             "1960-01-01", "2000-01-01", "2004-01-01"]),
    ...     "code": ["MEDS_BIRTH", "I10", "I21", "MEDS_DEATH",
    ...              "MEDS_BIRTH", "J45", "J45"],
    ... })
    >>> times = {1: pd.Timestamp("2000-07-01"), 2: pd.Timestamp("2001-01-01")}
    >>> y = survival_labels(events, times, "MEDS_DEATH")
    >>> y["event"].tolist(), y["time"].round(3).tolist()
    ([True, False], [1.503, 2.998])
    >>> from_events(events, times).index.get_level_values("subject_id").tolist()
    [1, 2]
    """
    cohort, rows, y, dropped = _labelled(
        events, prediction_times, outcome_codes, end=end, horizon=horizon,
        func="survival_labels", visit_resolution=visit_resolution, deduplicate=deduplicate,
        birth=birth, subject_col=subject_col, time_col=time_col, code_col=code_col,
        value_col=value_col, birth_code=birth_code, age_unit_days=age_unit_days, strict=strict,
    )
    out = [y]
    if return_index:
        out.append(cohort.index(rows))
    if return_dropped:
        out.append(dropped)
    return out[0] if len(out) == 1 else tuple(out)


def events_to_survival(
    events,
    prediction_times,
    outcome_codes,
    *,
    end=None,
    horizon=None,
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
    """The patient frame ``X`` and the survival labels ``y`` of a long event table.

    :func:`~survbehrt.data.from_events` and :func:`~survbehrt.data.survival_labels` in
    one call: the rows are those with both a history and a label, in the same order in
    ``X`` and ``y``.

    **The rules**, for each (subject, prediction time) row that
    :func:`~survbehrt.data.from_events` can build from the same arguments:

    - the **event** is the first outcome code strictly after the prediction time, at
      or before the end of follow-up; ``time`` is its distance from the prediction
      time, in years (``age_unit_days``);
    - otherwise the row is **censored** at the end of follow-up: the subject's last
      recorded event (any code with a time), or ``end`` where given, capped at
      ``prediction_time + horizon`` where given;
    - a row whose subject had the outcome at or before the prediction time (a
      prevalent case), or with no follow-up (censored at time 0 or earlier), is
      **dropped**, counted and named in a ``UserWarning``.

    Death is censoring for a non-death outcome: a subject who dies before the outcome
    is censored at its last record (the death, usually), so a model of these labels
    estimates the cause-specific hazard, not the probability of having the outcome
    before dying (competing risks are not modelled).

    Parameters
    ----------
    events : pandas.DataFrame, polars.DataFrame, polars.LazyFrame, str or path-like
        The long table, a parquet file or a MEDS folder, as in
        :func:`~survbehrt.data.from_events`. It must hold what happened *after* the
        prediction times: the outcomes and the rest of the record.
    prediction_times : mapping, pandas.Series, DataFrame or MultiIndex
        The rows, as in :func:`~survbehrt.data.from_events`: one time per subject, or
        a MEDS / ACES label table (``subject_col``, ``"prediction_time"``) with any
        number of rows per subject.
    outcome_codes : str or list of str
        The code(s) of the outcome, compared exactly (e.g. ``"MEDS_DEATH"``, or every
        code of a diagnosis group).
    end : mapping, pandas.Series, DataFrame or datetime-like, optional
        End of follow-up: one time per subject (same forms as ``birth``), or one time
        for everyone (an extract's end date). Where given it replaces the subject's
        last recorded event; an outcome after it is censored at it.
    horizon : float or timedelta, optional
        Follow-up cap after each prediction time, in years (``age_unit_days`` days) or
        as a timedelta: an outcome after ``prediction_time + horizon`` is censored
        there.
    birth, subject_col, time_col, code_col, value_col, birth_code, age_unit_days, strict
        As in :func:`~survbehrt.data.from_events`; they decide which rows can be built.
    visit_resolution, deduplicate
        As in :func:`~survbehrt.data.from_events` (checked, and used for ``X``; they
        do not change the labels), so that both functions take the same arguments.
    return_dropped : bool, default=False
        Also return the rows left out, with the reason.

    Returns
    -------
    X : pandas.DataFrame
        As :func:`~survbehrt.data.from_events` returns it, for the labelled rows.
    y : structured ndarray
        As :func:`~survbehrt.data.survival_labels` returns it.
    dropped : pandas.DataFrame
        Only with ``return_dropped=True``: subject, ``prediction_time`` and ``reason``.

    Raises
    ------
    ValueError, TypeError
        As :func:`~survbehrt.data.survival_labels`.

    Warns
    -----
    UserWarning
        When rows are dropped, and when no outcome code occurs in ``events``.

    Examples
    --------
    >>> import pandas as pd
    >>> from survbehrt.data import events_to_survival
    >>> events = pd.DataFrame({
    ...     "subject_id": [1, 1, 1, 1],
    ...     "time": pd.to_datetime(["1950-01-01", "2000-01-01", "2001-01-01", "2003-01-01"]),
    ...     "code": ["MEDS_BIRTH", "I10", "I21", "MEDS_DEATH"],
    ... })
    >>> labels = pd.DataFrame({"subject_id": [1, 1],
    ...                        "prediction_time": pd.to_datetime(["2000-06-01", "2002-01-01"])})
    >>> X, y = events_to_survival(events, labels, "MEDS_DEATH", horizon=2.0)
    >>> X["codes"].tolist()
    [[['I10']], [['I10'], ['I21']]]
    >>> y["event"].tolist(), y["time"].round(2).tolist()
    ([False, True], [2.0, 1.0])
    """
    cohort, rows, y, dropped = _labelled(
        events, prediction_times, outcome_codes, end=end, horizon=horizon,
        func="events_to_survival", visit_resolution=visit_resolution, deduplicate=deduplicate,
        birth=birth, subject_col=subject_col, time_col=time_col, code_col=code_col,
        value_col=value_col, birth_code=birth_code, age_unit_days=age_unit_days, strict=strict,
    )
    X = _build_frame(cohort, rows, visit_resolution=visit_resolution, deduplicate=deduplicate)
    if return_dropped:
        return X, y, dropped
    return X, y
