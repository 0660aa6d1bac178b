"""The Synthea sample: real-format EHR tables and a landmark survival task (death).

The package vendors a public sample of Synthea's CSV export (1,171 synthetic patients;
see ``data/synthea_sample/NOTICE.md``). :func:`load_synthea_sample` turns it into

- a MEDS-style long event table (``subject_id``, ``time``, ``code``), built by
  :func:`_read_events` from the raw tables, and
- a landmark survival task on it: :func:`_landmark_labels` chooses the rows (one per
  patient and landmark date) and their outcome, :func:`_in_history` the events a history
  may hold (those recorded for every patient, see :data:`SYNTHEA_HISTORY_START`), and
  :func:`_cut_histories` builds each row's history with
  :func:`survbehrt.data.events.from_events` (events strictly before the landmark).
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd
from sksurv.util import Surv

__all__ = ["SYNTHEA_HISTORY_START", "SYNTHEA_LANDMARKS", "load_synthea_sample"]

DAYS_PER_YEAR = 365.25

SYNTHEA_HISTORY_START = "2011-01-01"
"""Start of the history window: every record of the export is complete from this day on.

Synthea exported only the last 10 years before each record's end (the death, or the
export's last day 2020-04-28) plus conditions still active then, so earlier records exist
mainly for the patients who die; before this day a history holds only the conditions,
care plans and allergies still active on it (see :func:`load_synthea_sample`).
"""

SYNTHEA_LANDMARKS = ("2012-01-01", "2014-01-01", "2016-01-01", "2018-01-01")
"""Default landmark dates of :func:`load_synthea_sample`: 1 January of 2012, 2014, 2016, 2018."""

# Event tables: file stem -> (date column, code prefix). The order is the order of
# same-day events within a visit.
_TABLES = {
    "conditions": ("START", "CONDITION"),
    "immunizations": ("DATE", "IMMUNIZATION"),
    "careplans": ("START", "CAREPLAN"),
    "allergies": ("START", "ALLERGY"),
}
# patients.csv columns that become static codes ("GENDER//F", ...), in this order.
_STATIC = ("GENDER", "RACE", "ETHNICITY")
BIRTH, DEATH = "MEDS_BIRTH", "MEDS_DEATH"


def _data_file(name: str):
    return files("survbehrt.datasets").joinpath("data", "synthea_sample", name)


def _read_csv(stem: str) -> pd.DataFrame:
    with _data_file(f"{stem}.csv.gz").open("rb") as fh:
        return pd.read_csv(fh, compression="gzip", dtype=str, keep_default_na=False)


def _day(values: pd.Series) -> pd.Series:
    """Dates (``"2010-07-27"`` or ``"2010-07-27T12:58:08Z"``) as midnight timestamps."""
    return pd.to_datetime(values.str.slice(0, 10), format="%Y-%m-%d").astype("datetime64[ns]")


def _read_events() -> pd.DataFrame:
    """The vendored tables as one MEDS-style long table (see load_synthea_sample)."""
    patients = _read_csv("patients")
    subject = patients["Id"]
    parts = [
        # Static codes: no time (MEDS convention).
        pd.DataFrame({"subject_id": subject, "time": pd.NaT, "code": f"{col}//" + patients[col],
                      "_rank": 0})
        for col in _STATIC
    ]
    parts.append(pd.DataFrame({"subject_id": subject, "time": _day(patients["BIRTHDATE"]),
                               "code": BIRTH, "_rank": 1}))
    for stem, (date_col, prefix) in _TABLES.items():
        table = _read_csv(stem)
        day = _day(table[date_col])
        # An immunization is over on its day; the others last until STOP (empty: ongoing).
        stop = day if "STOP" not in table else _day(table["STOP"].where(table["STOP"] != ""))
        parts.append(pd.DataFrame({"subject_id": table["PATIENT"], "time": day,
                                   "code": f"{prefix}//" + table["CODE"], "stop": stop,
                                   "_rank": 2}))
    dead = patients["DEATHDATE"] != ""
    # The death last on its day: it ends the day (events of that day come before it).
    parts.append(pd.DataFrame({"subject_id": subject[dead],
                               "time": _day(patients.loc[dead, "DEATHDATE"]),
                               "code": DEATH, "_rank": 3}))
    events = pd.concat(parts, ignore_index=True)
    # Per subject: static rows, the birth, the events by day (same day: table order, then
    # file order), the death. A stable sort keeps the file order of ties.
    events["_static"] = events["time"].isna()
    events = events.sort_values(["subject_id", "_static", "time", "_rank"],
                                ascending=[True, False, True, True], kind="stable")
    events = events.drop(columns=["_rank", "_static"]).reset_index(drop=True)
    events = events[["subject_id", "time", "code", "stop"]]
    events["subject_id"] = events["subject_id"].astype(object)
    events["code"] = events["code"].astype(object)
    return events


def _export_end(events: pd.DataFrame) -> pd.Timestamp:
    """The last day of the export: the latest date in any table."""
    return events["time"].max()


def _in_history(events: pd.DataFrame) -> pd.Series:
    """Which rows are clinical events (no static, birth or death rows) that a history may
    hold: those recorded for every patient whatever their outcome.

    That is every event from SYNTHEA_HISTORY_START on, and the conditions, care plans and
    allergies still active then (no ``stop``, or a ``stop`` after it), at their start.
    Synthea's exporter (``Exporter.filterForExport``) kept an entry when it fell in the
    record's last 10 years, was still active at the record's end, or (conditions,
    allergies) stopped within those 10 years. For everyone alive at the history start,
    whose 10 years began before it, that keeps exactly these entries, and sometimes others
    (resolved earlier, or of a type active at the record's end) which depend on when the
    record ends, the death: those are left out.
    """
    start = pd.Timestamp(SYNTHEA_HISTORY_START)
    clinical = events["time"].notna() & ~events["code"].isin([BIRTH, DEATH])
    recorded = (events["time"] >= start) | events["stop"].isna() | (events["stop"] > start)
    return clinical & recorded


def _births(events: pd.DataFrame) -> pd.Series:
    return events.loc[events["code"] == BIRTH].set_index("subject_id")["time"]


def _check_design(landmarks, horizon, min_age, export_end):
    if isinstance(landmarks, str):
        landmarks = [landmarks]
    try:
        lms = pd.DatetimeIndex(pd.to_datetime(list(landmarks))).astype("datetime64[ns]")
    except (TypeError, ValueError) as err:
        raise ValueError(f"landmarks must be dates; got {landmarks!r} ({err}).") from err
    if len(lms) == 0 or lms.hasnans:
        raise ValueError(f"landmarks must be one or more dates, none missing; got {landmarks!r}.")
    if lms.has_duplicates:
        raise ValueError(f"landmarks must be distinct; got {list(lms.strftime('%Y-%m-%d'))}.")
    if (lms != lms.normalize()).any():
        raise ValueError("landmarks must be whole days (midnight): the sample holds dates only.")
    early = lms[lms <= pd.Timestamp(SYNTHEA_HISTORY_START)]
    if len(early):
        raise ValueError(
            f"landmark(s) {list(early.strftime('%Y-%m-%d'))} fall on or before "
            f"{SYNTHEA_HISTORY_START}, the first day of complete records (SYNTHEA_HISTORY_START): "
            f"earlier records mostly exist for the patients who die, which leaks the outcome."
        )
    late = lms[lms >= export_end]
    if len(late):
        raise ValueError(
            f"landmark(s) {list(late.strftime('%Y-%m-%d'))} fall on or after the export's last "
            f"day {export_end:%Y-%m-%d}: no follow-up is left."
        )
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a whole number of years >= 1; got {horizon!r}.")
    if not (np.isfinite(min_age) and min_age >= 0):
        raise ValueError(f"min_age must be a number of years >= 0; got {min_age!r}.")
    return lms.sort_values()


def _landmark_labels(events, landmarks, horizon, min_age, export_end) -> pd.DataFrame:
    """The rows of the task (patient x landmark) and their outcome.

    A patient enters at a landmark ``L`` when at least ``min_age`` years old at ``L``,
    alive at ``L`` (no death on or before it) and with at least one event in the history
    window (from SYNTHEA_HISTORY_START to strictly before ``L``). Follow-up ends at the
    death, on the day ``L + horizon`` calendar years or on the export's last day, whichever
    comes first; the event is a death within it (on the last day too).
    """
    birth = _births(events)
    death = events.loc[events["code"] == DEATH].set_index("subject_id")["time"]
    death = death.reindex(birth.index)
    first = events.loc[_in_history(events)].groupby("subject_id")["time"].min()
    first = first.reindex(birth.index)

    n_subjects, n_landmarks = len(birth), len(landmarks)
    cand = pd.DataFrame({
        "subject_id": np.repeat(birth.index.to_numpy(), n_landmarks),
        "prediction_time": np.tile(landmarks.to_numpy(), n_subjects),
    })
    b = np.repeat(birth.to_numpy(), n_landmarks)
    d = pd.Series(np.repeat(death.to_numpy(), n_landmarks))
    f = pd.Series(np.repeat(first.to_numpy(), n_landmarks))
    lm = cand["prediction_time"]
    age = (lm - b).dt.days / DAYS_PER_YEAR
    eligible = (
        (age >= min_age)
        & ~(d <= lm).fillna(False)  # alive at the landmark
        & (f < lm).fillna(False)  # something recorded strictly before it
    )
    rows = cand.loc[eligible.to_numpy()].reset_index(drop=True)
    d = d[eligible.to_numpy()].reset_index(drop=True)
    last_day = (rows["prediction_time"] + pd.DateOffset(years=int(horizon))).clip(upper=export_end)
    died = (d <= last_day).fillna(False)
    # Dates only: a death is placed at the start of its day, a survivor is censored at the
    # end of the last day of follow-up. An event thus precedes a censoring on the same
    # day (the usual convention), and the longest follow-up is always a censoring, which
    # the censoring weights of Uno's C, the AUC and the Brier score need.
    stop = (last_day + pd.Timedelta(days=1)).where(~died, d)
    rows["event"] = died.to_numpy(bool)
    rows["time"] = (stop - rows["prediction_time"]).dt.days.to_numpy(np.float64) / DAYS_PER_YEAR
    return rows


def _cut_histories(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """One patient-frame row per label row, from the history window before its landmark.

    :func:`~survbehrt.data.events.from_events` on the static rows, the births and the
    history events (:func:`_in_history`), with visits by day and ``strict=True``: events
    dated on the landmark day are left out. Within a visit the codes keep the event
    table's order. Every label row has an event in its window (``_landmark_labels``
    checks it), so no row is dropped.
    """
    from ..data.events import from_events

    keep = events["time"].isna() | (events["code"] == BIRTH) | _in_history(events)
    X = from_events(events.loc[keep, ["subject_id", "time", "code"]],
                    prediction_times=labels[["subject_id", "prediction_time"]],
                    visit_resolution="day", strict=True)
    expected = pd.MultiIndex.from_frame(labels[["subject_id", "prediction_time"]])
    if not X.index.equals(expected):  # an internal invariant, not a user error
        raise RuntimeError("from_events did not build one row per label row, in order.")
    X = X[["codes", "ages", "index_age", "static"]]
    X.attrs = {}  # from_events' event counts describe its filtered input, not the sample
    return X


def load_synthea_sample(
    *,
    landmarks=SYNTHEA_LANDMARKS,
    horizon=2,
    min_age=18.0,
    as_events=False,
    return_groups=False,
):
    """Load the vendored Synthea sample as a landmark survival task: death within 2 years.

    The data are a public sample of `Synthea <https://synthetichealth.github.io/synthea/>`_'s
    CSV export (1,171 synthetic patients, 171 deaths; the notice in
    ``survbehrt/datasets/data/synthea_sample/NOTICE.md`` says where it comes from). The
    codes are the ``CODE`` of the conditions, immunizations, care plans and allergies
    tables (their ``START`` / ``DATE``, as a day), prefixed by the table:
    ``"CONDITION//44054006"``, ``"IMMUNIZATION//140"``, ``"CAREPLAN//53950000"``,
    ``"ALLERGY//300916003"``. Sex, race and ethnicity are static codes
    (``"GENDER//F"``, ``"RACE//white"``, ``"ETHNICITY//nonhispanic"``).

    **The task.** Each row is one patient at one *landmark* date, by default 1 January of
    2012, 2014, 2016 and 2018. A patient enters at a landmark when

    - at least ``min_age`` (18) years old on that day (adults only),
    - alive on it (no death on or before it), and
    - with at least one event in the history window (below).

    Follow-up starts at the landmark and ends at the death, ``horizon`` (2) calendar years
    later, or the export's last day (2020-04-28, the latest date in any table: Synthea
    follows every living patient to the end of the simulation), whichever comes first;
    the event is a death within it, the last day included. ``time`` is in years (days /
    365.25): days from the landmark to the death, or to the end of the last day of
    follow-up for a survivor (one more day), so that a death comes before a censoring on
    the same day and the longest time is always a censoring. With the
    defaults: 2,933 rows of 799 patients, 49 events (49 different deaths); 18 adults
    alive on 2012-01-01 have nothing in their history window and no row then.

    **The history window.** Synthea exported each record's last 10 years only (before the
    death, or before the end of the export), plus the conditions and care plans still
    active at its end or within those years. Before 2010-04-28 the records of the living
    patients are thus almost empty while those of the patients who die are full: with
    all the records, a history's mere length gives the outcome away (over landmarks
    1970-2010 with a ten-year horizon, the number of visits alone had a C-index of 0.91,
    the age 0.78). A history therefore holds what was recorded for every patient
    whatever their outcome: the events from 2011-01-01 (:data:`SYNTHEA_HISTORY_START`)
    to strictly before the landmark, and the conditions, care plans and allergies still
    active on 2011-01-01, at their start date (chronic diseases keep their onset). On the
    default task the number of visits then has a C-index of 0.72 (older patients carry
    more chronic conditions), the age 0.78. Landmarks must fall after 2011-01-01.

    **Why this design.** Only the deaths after 2011 can be predicted without the leak:
    about 50. One landmark per patient (e.g. 2013-01-01 with follow-up to the end) would
    find most of them but give each history less than two years. Landmarks two years
    apart with a two-year horizon give each patient up to four rows whose follow-up
    windows do not overlap, with one to seven years of history: every death is the event
    of exactly one row, and the task gathers every death from 2012 to 2019. That is still
    only 49 events: a C-index moves by several hundredths between folds and seeds, so
    compare models on the same folds (paired). Rows of one patient are correlated: split
    by patient (the groups), never by row.

    **Only the past.** The tables hold dates, not times: an event dated on the landmark
    day may have happened after the prediction, or be part of the outcome itself
    (Synthea records a myocardial infarction or a cardiac arrest on the day of death), so
    the landmark day is excluded. ``X`` is what :func:`survbehrt.data.events.from_events`
    builds from the history window's events with ``visit_resolution="day"`` and
    ``strict=True``.

    Parameters
    ----------
    landmarks : sequence of date-like, default=SYNTHEA_LANDMARKS
        Landmark dates: whole days after 2011-01-01 and before the export's last day.
        With landmarks closer together than ``horizon`` the follow-up windows of a
        patient overlap and one death is the event of several rows.
    horizon : int, default=2
        Follow-up in calendar years after each landmark (administrative censoring).
    min_age : float, default=18.0
        Youngest age (years) at the landmark.
    as_events : bool, default=False
        Return the long event table and the labels instead of ``X`` and ``y``.
    return_groups : bool, default=False
        Also return the patient of each row (for grouped cross-validation).

    Returns
    -------
    X : pandas.DataFrame
        One row per (patient, landmark), indexed by a MultiIndex (``subject_id``,
        ``prediction_time``) sorted by patient then landmark. Columns ``codes`` (list of
        visits, each a non-empty list of ``str``, oldest first; a visit is the events of
        one day; no code occurs twice in a visit), ``ages`` (age in years at each visit),
        ``index_age`` (age at the landmark) and ``static`` (list of ``str``: sex, race,
        ethnicity).
    y : structured ndarray
        ``Surv.from_arrays(event, time)``: fields ``event`` (bool, death within the
        follow-up) and ``time`` (years after the landmark).
    groups : ndarray of object
        Only with ``return_groups=True``: the ``subject_id`` of each row.
    events : pandas.DataFrame
        Only with ``as_events=True`` (instead of ``X`` and ``y``): columns
        ``subject_id`` (str), ``time`` (datetime64[ns], midnight of the day; null for
        the static rows), ``code`` (str) and ``stop`` (datetime64[ns]: the ``STOP`` day
        of a condition, care plan or allergy, null while it is active; an
        immunization's own day; null for the other rows), every row of the sample
        (before 2011 too), sorted by subject:
        static rows, ``"MEDS_BIRTH"``, the events by day (same day: conditions,
        immunizations, care plans, allergies, each in file order), ``"MEDS_DEATH"``.
        Events after a landmark and after the death are included (the raw record).
    labels : pandas.DataFrame
        Only with ``as_events=True``: the task's rows, columns ``subject_id``,
        ``prediction_time`` (the landmark), ``event`` and ``time``, in the row order of ``X``.

    Raises
    ------
    ValueError
        For landmarks that are not distinct whole days after 2011-01-01 and before the
        export's last day, a
        ``horizon`` that is not a whole number of years >= 1, or a negative ``min_age``.

    See Also
    --------
    make_synthetic_ehr : A synthetic cohort with a known risk.

    Examples
    --------
    >>> from survbehrt.datasets import load_synthea_sample
    >>> X, y, groups = load_synthea_sample(return_groups=True)
    >>> X.shape, int(y["event"].sum()), len(set(groups))
    ((2933, 4), 49, 799)
    >>> list(X.columns), list(X.index.names)
    (['codes', 'ages', 'index_age', 'static'], ['subject_id', 'prediction_time'])
    >>> row = X.iloc[0]
    >>> row["codes"][:2]
    [['IMMUNIZATION//121', 'IMMUNIZATION//140', 'IMMUNIZATION//113'], ['CONDITION//10509002', 'CAREPLAN//53950000']]
    >>> [round(a, 2) for a in row["ages"]], round(float(row["index_age"]), 2)
    ([51.02, 51.62, 51.65, 51.67], 51.95)
    >>> row["static"]
    ['GENDER//M', 'RACE//black', 'ETHNICITY//nonhispanic']

    The raw long table, for one's own task:

    >>> events, labels = load_synthea_sample(as_events=True)
    >>> list(events.columns), len(labels) == len(X)
    (['subject_id', 'time', 'code', 'stop'], True)
    """
    if as_events and return_groups:
        raise ValueError("return_groups applies to X and y; with as_events=True the labels "
                         "hold the subject_id of each row.")
    events = _read_events()
    export_end = _export_end(events)
    lms = _check_design(landmarks, horizon, min_age, export_end)
    labels = _landmark_labels(events, lms, horizon, float(min_age), export_end)
    if as_events:
        return events, labels
    X = _cut_histories(events, labels)
    y = Surv.from_arrays(labels["event"].to_numpy(bool), labels["time"].to_numpy(np.float64))
    if return_groups:
        return X, y, labels["subject_id"].to_numpy(dtype=object)
    return X, y
