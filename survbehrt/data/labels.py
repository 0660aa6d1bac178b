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
from collections.abc import Mapping

import numpy as np
import pandas as pd
import polars as pl

from ._build import _build_frame
from ._meds import list_ids, subjects_like
from ._rows import _as_series, _Cohort, _cohort, _warn_dropped
from .competing import competing_y

__all__ = ["survival_labels", "events_to_survival"]

PREVALENT = "outcome at or before the prediction time"
DEAD = "death at or before the prediction time"
NO_FOLLOW_UP = "no follow-up"


def _outcome_list(outcome_codes, what="outcome_codes") -> list[str]:
    codes = [outcome_codes] if isinstance(outcome_codes, str) else list(outcome_codes)
    if not codes or not all(isinstance(c, str) and c for c in codes):
        raise ValueError(
            f"{what} must be a code or a non-empty list of codes (str); got "
            f"{outcome_codes!r}."
        )
    return codes


def _causes(outcome_codes) -> tuple[tuple[str, ...] | None, list[list[str]]]:
    """The cause names (None: the single-outcome form) and each cause's codes.

    A mapping ``{name: code(s)}`` gives causes 1..K in its order; a code or a list of
    codes gives one outcome.
    """
    if not isinstance(outcome_codes, Mapping):
        return None, [_outcome_list(outcome_codes)]
    if not outcome_codes:
        raise ValueError("outcome_codes is an empty mapping; give at least one cause.")
    names = tuple(outcome_codes)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"the causes of outcome_codes must be named by strings; got {names!r}.")
    groups = [_outcome_list(codes, f"outcome_codes[{name!r}]")
              for name, codes in outcome_codes.items()]
    owner = {}
    for name, codes in zip(names, groups):
        for code in codes:
            if owner.setdefault(code, name) != name:
                raise ValueError(
                    f"code {code!r} is listed under the causes {owner[code]!r} and {name!r}; "
                    f"each code may belong to one cause only."
                )
    return names, groups


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


def _warn_absent(table, names, groups) -> None:
    """Warn for each cause none of whose codes occurs (a typo would censor every row)."""
    codes = [c for g in groups for c in g]
    present = set(
        table.lazy().filter(pl.col("c").is_in(codes)).select(pl.col("c").cast(pl.String).unique())
        .collect().to_series().to_list()
    )
    for k, group in enumerate(groups):
        if present.intersection(group):
            continue
        what = (f"none of the outcome codes {list_ids(group)} occurs in events: every row is "
                f"censored" if names is None else
                f"none of the codes {list_ids(group)} of the cause {names[k]!r} occurs in "
                f"events: no row has that cause")
        warnings.warn(f"{what}. Check the spelling against the codes of events.",
                      UserWarning, stacklevel=5)


def _labels(cohort: _Cohort, outcome_codes, *, end, horizon, death_code):
    """``event`` (cause 1..K, 0 = censored), ``time`` (years) and the drop reason."""
    names, groups = _causes(outcome_codes)
    cause_of = {code: k for k, group in enumerate(groups, start=1) for code in group}
    table = cohort.table
    rows = cohort.rows
    horizon_ticks = _horizon_ticks(horizon, cohort)
    ticks = table.ticks(pl.col("t")).alias("_ticks")
    events = cohort.events(rows["s"].unique())
    _warn_absent(table, names, groups)
    # One outcome per (subject, time): where causes tie, the first-numbered one.
    outcome = (
        events.filter(pl.col("c").is_in(list(cause_of)))
        .select("s", ticks, cause=pl.col("c").cast(pl.String).replace_strict(
            cause_of, return_dtype=pl.Int64))
        .sort("s", "_ticks", "cause")
        .unique(["s", "_ticks"], keep="first", maintain_order=True)
    )
    last = events.group_by("s").agg(ticks.max().alias("last"))
    first_outcome = outcome.group_by("s").agg(pl.col("_ticks").min().alias("first_outcome"))

    frame = (
        rows.select("s", "pt")
        .with_row_index("_row")
        .join(last, on="s", how="left", maintain_order="left")
        .join(first_outcome, on="s", how="left", maintain_order="left")
    )
    follow = pl.col("last")
    if end is not None:
        frame = frame.join(_end_frame(end, cohort, rows), on="s", how="left",
                           maintain_order="left")
        follow = pl.coalesce("end", "last")
    if death_code is not None:
        # Follow-up ends at the first death, whatever ``end`` or the record say after it.
        death = (events.filter(pl.col("c") == death_code).select("s", ticks)
                 .group_by("s").agg(pl.col("_ticks").min().alias("death")))
        frame = frame.join(death, on="s", how="left", maintain_order="left")
        follow = pl.min_horizontal(follow, "death")
    else:
        frame = frame.with_columns(death=pl.lit(None, dtype=frame.schema["pt"]))
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
    ).select("_row", "next", "cause")
    frame = frame.join(after, on="_row", how="left", maintain_order="left")
    event = pl.col("next").is_not_null() & (pl.col("next") <= pl.col("follow"))
    frame = frame.with_columns(
        pl.when(event).then(pl.col("cause")).otherwise(0).alias("event"),
        (pl.when(event).then(pl.col("next")).otherwise(pl.col("follow")) - pl.col("pt"))
        .cast(pl.Float64)
        .alias("dt"),
    )
    frame = frame.with_columns(
        reason=pl.when(pl.col("first_outcome") <= pl.col("pt"))
        .then(pl.lit(PREVALENT))
        .when(pl.col("death") <= pl.col("pt"))
        .then(pl.lit(DEAD))
        .when(pl.col("dt") <= 0)
        .then(pl.lit(NO_FOLLOW_UP))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    event = frame["event"].to_numpy().astype(np.int64)
    time = frame["dt"].to_numpy() / table.ticks_per_day / cohort.age_unit_days
    reason = frame["reason"].to_numpy()
    return names, event, time, reason


def _labelled(
    events, prediction_times, outcome_codes, *, end, horizon, death_code, func,
    visit_resolution, deduplicate, **options,
):
    if prediction_times is None:
        raise ValueError(f"{func} needs prediction_times: the labels count from them.")
    if visit_resolution not in ("exact", "day"):
        raise ValueError(f"visit_resolution must be 'exact' or 'day'; got {visit_resolution!r}.")
    cohort = _cohort(events, prediction_times, **options)
    names, event, time, reason = _labels(cohort, outcome_codes, end=end, horizon=horizon,
                                         death_code=death_code)
    kept = pd.isna(reason)
    lost = cohort.rows.filter(pl.Series(~kept))
    dropped = pd.concat(
        [cohort.dropped, cohort.dropped_frame(lost, reason[~kept].tolist())],
        ignore_index=True,
    )
    _warn_dropped(func, cohort, dropped, len(cohort.rows) + len(cohort.dropped), stacklevel=4)
    if names is None:
        from sksurv.util import Surv

        y = Surv.from_arrays(event=event[kept] > 0, time=time[kept], name_event="event",
                             name_time="time")
    else:
        y = competing_y(event[kept], time[kept], causes=names)
    return cohort, cohort.rows.filter(pl.Series(kept)), y, dropped


def survival_labels(
    events,
    prediction_times,
    outcome_codes,
    *,
    end=None,
    horizon=None,
    death_code="MEDS_DEATH",
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
      recorded event (any code with a time), or ``end`` where given, but never after
      the subject's first ``death_code`` row, and capped at
      ``prediction_time + horizon`` where given;
    - a row whose subject had the outcome (any cause) at or before the prediction time
      (a prevalent case), who died at or before it, or with no follow-up (censored at
      time 0 or earlier), is **dropped**, counted and named in a ``UserWarning``.

    **Several outcomes** (competing risks): with a mapping ``outcome_codes={"mi": [...],
    "stroke": [...], "death": ["MEDS_DEATH"]}``, the event *type* is the cause (1..K, in
    the mapping's order; 0 = censored) of the first outcome code strictly after the
    prediction time, and ``y["event"]`` is an integer (scikit-survival's competing-risks
    layout; the names are in ``survbehrt.data.cause_names(y)``). Where codes of several
    causes share the first time (a fatal infarction recorded with the death), the
    cause listed first wins: order the mapping accordingly. Death is a cause when its
    code is listed under one.

    A death that is not an outcome ends follow-up: a subject who dies first is
    censored at the death, so a model of these labels estimates the cause-specific
    hazard, not the probability of having the outcome before dying; name death as a
    cause to model it as a competing risk.

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
    outcome_codes : str, list of str, or mapping of str to str or list of str
        The code(s) of the outcome, compared exactly (e.g. ``"MEDS_DEATH"``, or every
        code of a diagnosis group); or a mapping from cause names to their codes, for
        competing causes (above). A code may belong to one cause only.
    end : mapping, pandas.Series, DataFrame or datetime-like, optional
        End of follow-up: one time per subject (same forms as ``birth``), or one time
        for everyone (an extract's end date). Where given it replaces the subject's
        last recorded event; an outcome after it is censored at it.
    horizon : float or timedelta, optional
        Follow-up cap after each prediction time, in years (``age_unit_days`` days) or
        as a timedelta: an outcome after ``prediction_time + horizon`` is censored
        there.
    death_code : str or None, default="MEDS_DEATH"
        The code of death: follow-up never runs past a subject's first such row. None:
        no code ends follow-up.
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
        time"``, ``"death at or before the prediction time"`` or ``"no follow-up"``).

    Returns
    -------
    y : structured ndarray
        Fields ``event`` (bool) and ``time`` (float, years after the prediction time),
        as ``sksurv.util.Surv.from_arrays`` makes them; one per kept row. With a
        mapping of outcomes, ``event`` is the cause (int64, 0 = censored), as
        :func:`~survbehrt.data.competing_y` makes it.
    index : pandas.MultiIndex
        Only with ``return_index=True``.
    dropped : pandas.DataFrame
        Only with ``return_dropped=True``.

    Raises
    ------
    ValueError
        As :func:`~survbehrt.data.from_events`, and for empty ``outcome_codes``, a code
        under two causes, or a non-positive ``horizon``.
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
        events, prediction_times, outcome_codes, end=end, horizon=horizon, death_code=death_code,
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
    death_code="MEDS_DEATH",
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

    **The rules** are those of :func:`~survbehrt.data.survival_labels`: the first
    outcome strictly after the prediction time, censoring at the end of follow-up
    (never after a death), drops with a warning, and the integer event type of
    competing causes when ``outcome_codes`` is a mapping.

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
    outcome_codes : str, list of str, or mapping of str to str or list of str
        The code(s) of the outcome, compared exactly (e.g. ``"MEDS_DEATH"``, or every
        code of a diagnosis group); or a mapping from cause names to their codes, for
        competing causes (above). A code may belong to one cause only.
    end : mapping, pandas.Series, DataFrame or datetime-like, optional
        End of follow-up: one time per subject (same forms as ``birth``), or one time
        for everyone (an extract's end date). Where given it replaces the subject's
        last recorded event; an outcome after it is censored at it.
    horizon : float or timedelta, optional
        Follow-up cap after each prediction time, in years (``age_unit_days`` days) or
        as a timedelta: an outcome after ``prediction_time + horizon`` is censored
        there.
    death_code : str or None, default="MEDS_DEATH"
        The code of death: follow-up never runs past a subject's first such row. None:
        no code ends follow-up.
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
        events, prediction_times, outcome_codes, end=end, horizon=horizon, death_code=death_code,
        func="events_to_survival", visit_resolution=visit_resolution, deduplicate=deduplicate,
        birth=birth, subject_col=subject_col, time_col=time_col, code_col=code_col,
        value_col=value_col, birth_code=birth_code, age_unit_days=age_unit_days, strict=strict,
    )
    X = _build_frame(cohort, rows, visit_resolution=visit_resolution, deduplicate=deduplicate)
    if return_dropped:
        return X, y, dropped
    return X, y
