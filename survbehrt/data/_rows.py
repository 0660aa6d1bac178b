"""The rows of a cohort from a long event table: which (subject, prediction time) pairs.

Shared by :func:`~survbehrt.data.from_events` (which builds ``X`` on these rows) and
:func:`~survbehrt.data.survival_labels` (which labels them), so that the two line up:
the prediction times given per subject, each subject's first and last event and birth
(:func:`_subject_summary`), and the rows kept, with the reasons the others were dropped
(:func:`_cohort`, :func:`_warn_dropped`). Split from ``events.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import polars as pl

from ._meds import EventTable, as_datetimes, is_polars, list_ids, read_events, subjects_like

PREDICTION_TIME = "prediction_time"
NO_BIRTH = "no birth time"
NO_EVENTS = "no events"


# ----------------------------------------------------------------- per-subject mappings


def _polars_to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """A small polars frame as pandas without pyarrow (time zones kept)."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pl.Datetime) and col.dtype.time_zone is not None:
            naive = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None).to_numpy()
            out[name] = pd.Series(naive).dt.tz_localize("UTC").dt.tz_convert(col.dtype.time_zone)
        else:
            out[name] = pd.Series(col.to_numpy(), dtype=object if col.dtype == pl.String else None)
    return pd.DataFrame(out)


def _as_pandas(obj):
    if is_polars(obj):
        if isinstance(obj, pl.LazyFrame):
            obj = obj.collect()
        if isinstance(obj, pl.Series):
            return _polars_to_pandas(obj.to_frame())[obj.name]
        return _polars_to_pandas(obj)
    return obj


def _as_series(mapping, name, subject_col) -> pd.Series:
    """A subject -> value Series (one per subject) from a dict, Series or two-column frame."""
    mapping = _as_pandas(mapping)
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
            f"{list_ids(series.index[dup].unique())}; one per subject is allowed."
        )
    return series


def _prediction_table(prediction_times, subject_col) -> pd.DataFrame:
    """Columns ``s`` and ``pt`` (one row per requested X row) from any accepted form."""
    obj = _as_pandas(prediction_times)
    if isinstance(obj, pd.MultiIndex):
        if obj.nlevels != 2:
            raise ValueError(
                f"prediction_times as a MultiIndex must have 2 levels (subject, prediction "
                f"time); got {obj.nlevels}."
            )
        return pd.DataFrame(
            {"s": obj.get_level_values(0).to_numpy(), "pt": obj.get_level_values(1)}
        )
    if isinstance(obj, pd.DataFrame) and subject_col in obj.columns:
        # A MEDS / ACES label table: any number of rows per subject; label columns ignored.
        if PREDICTION_TIME in obj.columns:
            column = PREDICTION_TIME
        else:
            others = [c for c in obj.columns if c != subject_col]
            if len(others) != 1:
                raise ValueError(
                    f"prediction_times as a DataFrame needs the columns {subject_col!r} and "
                    f"{PREDICTION_TIME!r} (other columns are ignored); got {list(obj.columns)}."
                )
            column = others[0]
        return pd.DataFrame(
            {"s": obj[subject_col].to_numpy(), "pt": obj[column].reset_index(drop=True)}
        )
    try:
        series = _as_series(obj, "prediction_times", subject_col)
    except ValueError as err:
        raise ValueError(
            f"{err} For several prediction times per subject pass a table with the columns "
            f"{subject_col!r} and {PREDICTION_TIME!r} (one row each)."
        ) from None
    return pd.DataFrame({"s": series.index.to_numpy(), "pt": series.reset_index(drop=True)})


# ----------------------------------------------------------------- the row set


@dataclass
class _Cohort:
    """The rows that can be built from an event table, shared by X and the labels.

    ``rows`` holds one row per kept (subject, prediction time), sorted by subject then
    prediction time: ``s``, ``pt`` (ticks; null without prediction times), ``birth``
    (ticks) and ``src`` (position in ``pt_values``, -1 without prediction times).
    """

    table: EventTable
    rows: pl.DataFrame
    pt_values: pd.Series | None
    dropped: pd.DataFrame
    strict: bool
    birth_code: str | None
    age_unit_days: float
    n_events: int
    n_static: int
    n_birth: int
    static: dict = field(default_factory=dict)
    layout: pl.DataFrame | None = None

    @property
    def with_prediction_times(self) -> bool:
        return self.pt_values is not None

    def events(self, subjects: pl.Series | None = None) -> pl.DataFrame:
        """The events proper (timed, not birth rows), of ``subjects`` only if given.

        One fused pass over the input (input order kept), not a copy per condition.
        """
        keep = pl.col("t").is_not_null()
        if self.birth_code is not None:
            keep = keep & (pl.col("c") != self.birth_code)
        if subjects is not None:
            keep = keep & pl.col("s").is_in(subjects.implode())
        return self.table.lazy().filter(keep).collect()

    def index(self, rows: pl.DataFrame) -> pd.Index:
        """The pandas index of ``rows`` (a subset of ``self.rows``, same order)."""
        name = self.table.subject_col
        subjects = rows["s"].to_numpy()
        if not self.with_prediction_times:
            return pd.Index(subjects, name=name)
        pts = self.pt_values.iloc[rows["src"].to_numpy()].reset_index(drop=True)
        return pd.MultiIndex.from_arrays([subjects, pts], names=[name, PREDICTION_TIME])

    def describe(self, rows: pl.DataFrame | pd.DataFrame) -> list:
        """Row ids for messages: subjects, or (subject, prediction time) pairs."""
        if isinstance(rows, pd.DataFrame):
            subjects = rows[self.table.subject_col].tolist()
            if not self.with_prediction_times:
                return subjects
            return list(zip(subjects, rows[PREDICTION_TIME].tolist()))
        return self.index(rows).tolist()

    def dropped_frame(self, rows: pl.DataFrame, reasons) -> pd.DataFrame:
        """A ``dropped`` table (subject, [prediction_time], reason) for ``rows``."""
        out = {self.table.subject_col: rows["s"].to_numpy()}
        if self.with_prediction_times:
            out[PREDICTION_TIME] = self.pt_values.iloc[rows["src"].to_numpy()].reset_index(
                drop=True
            )
        out["reason"] = np.asarray(reasons, dtype=object)
        return pd.DataFrame(out)


def _subject_summary(table: EventTable, birth_code: str | None) -> pl.DataFrame:
    """One pass over the events: what the row set needs, per subject.

    Columns ``s``, ``n`` (input rows), ``lo``/``hi`` (first and last row position),
    ``n_static``, ``n_birth``, ``birth``/``birth_hi`` (least and greatest birth-row
    time), ``first`` (earliest event proper) and ``null_codes``. Expressions first,
    then plain aggregations: polars streams this over files in pieces.
    """
    t, c = pl.col("t"), pl.col("c")
    ticks = table.ticks(t)
    timed = t.is_not_null()
    is_birth = timed & (c == birth_code) if birth_code is not None else pl.lit(False)
    return (
        table.lazy(text=True)
        .with_row_index("_row")
        .select(
            "s",
            "_row",
            "t",
            "c",
            _birth=pl.when(is_birth).then(ticks),
            _first=pl.when(timed & ~is_birth).then(ticks),
        )
        .group_by("s")
        .agg(
            n=pl.len(),
            lo=pl.col("_row").min(),
            hi=pl.col("_row").max(),
            n_static=pl.col("t").null_count(),
            n_birth=pl.col("_birth").count(),
            birth=pl.col("_birth").min(),
            birth_hi=pl.col("_birth").max(),
            first=pl.col("_first").min(),
            null_codes=pl.col("c").null_count(),
        )
        .collect(engine="streaming")
    )


def _cohort(
    events,
    prediction_times,
    *,
    birth,
    subject_col,
    time_col,
    code_col,
    value_col,
    birth_code,
    age_unit_days,
    strict,
) -> _Cohort:
    """Read ``events`` and decide which (subject, prediction time) rows can be built."""
    if not (np.isfinite(age_unit_days) and age_unit_days > 0):
        raise ValueError(f"age_unit_days must be a positive number; got {age_unit_days!r}.")
    if birth is None and birth_code is None:
        raise ValueError(
            "give the birth times: a birth= mapping or the birth_code of the birth rows."
        )
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict must be True or False; got {strict!r}.")
    table = read_events(
        events, subject_col=subject_col, time_col=time_col, code_col=code_col,
        value_col=value_col,
    )
    timed = pl.col("t").is_not_null()
    summary = _subject_summary(table, birth_code)
    table.check_nulls(summary["s"].null_count(), int(summary["null_codes"].sum()))

    # --- static rows (no time) ----------------------------------------------------------
    n_static = int(summary["n_static"].sum())
    static = {}
    if n_static:
        static_rows = table.lazy(text=True).filter(~timed).select("s", "c").collect()
        if birth_code is not None and static_rows.select(
            (pl.col("c") == birth_code).any()
        ).item():
            bad = static_rows.filter(pl.col("c") == birth_code)["s"].unique().to_list()
            raise ValueError(
                f"subject(s) {list_ids(bad)} have a {birth_code!r} row without a time in "
                f"column {time_col!r}; the birth row needs its time."
            )
        grouped = static_rows.group_by("s", maintain_order=True).agg(
            pl.col("c").unique(maintain_order=True)
        )
        static = dict(zip(grouped["s"].to_list(), grouped["c"].to_list()))

    # --- birth times: the mapping first, then the birth rows --------------------------
    n_birth = int(summary["n_birth"].sum())
    births = summary.filter(pl.col("n_birth") > 0).select("s", "birth", hi="birth_hi")
    conflict = births.filter(pl.col("birth") != pl.col("hi"))
    if conflict.height:
        raise ValueError(
            f"subject(s) {list_ids(conflict['s'].sort().to_list())} have several different "
            f"{birth_code!r} times in column {time_col!r}; keep one birth row per subject."
        )
    births = births.select("s", "birth")
    if birth is not None:
        given = _as_series(birth, "birth", subject_col)
        given = given[given.notna()]
        given_ticks = table.mapping_ticks(given.reset_index(drop=True), "birth")
        mapped = pl.DataFrame(
            {"s": subjects_like(given.index.to_list(), table, "birth"), "birth": given_ticks}
        ).with_columns(pl.col("birth").cast(births.schema["birth"]))
        # The mapping takes precedence; subjects it misses keep their birth row.
        births = pl.concat([mapped, births.join(mapped, on="s", how="anti")])

    # --- the requested rows -------------------------------------------------------------
    pt_dtype = pl.Int64 if table.kind == "datetime" else pl.Float64
    if prediction_times is not None:
        requested = _prediction_table(prediction_times, subject_col)
        missing = requested["pt"].isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"prediction_times is missing for the subject(s) "
                f"{list_ids(pd.unique(requested['s'][missing]))}."
            )
        pt_values = requested["pt"]
        if table.kind == "datetime":
            pt_values = as_datetimes(pt_values, "prediction_times")
        else:
            table.mapping_ticks(pt_values, "prediction_times")  # type check
            pt_values = pt_values.astype(np.float64)
        rows = pl.DataFrame(
            {
                "s": subjects_like(requested["s"].tolist(), table, "prediction_times"),
                "pt": pl.Series(table.mapping_ticks(pt_values, "prediction_times"), dtype=pt_dtype),
                "src": np.arange(len(requested), dtype=np.int64),
            }
        )
        dup = rows.filter(pl.struct("s", "pt").is_duplicated())
        if dup.height:
            pairs = (
                requested.iloc[dup["src"].to_numpy()]
                .drop_duplicates()
                .itertuples(index=False, name=None)
            )
            raise ValueError(
                f"prediction_times has the (subject, prediction time) pair(s) "
                f"{list_ids(pairs)} more than once; each X row needs its own pair."
            )
    else:
        pt_values = None
        rows = summary.select("s").with_columns(
            pt=pl.lit(None, dtype=pt_dtype), src=pl.lit(-1, dtype=pl.Int64)
        )
    rows = rows.sort("s", "pt").join(births, on="s", how="left", maintain_order="left")

    # --- which rows have a history -----------------------------------------------------------
    rows = rows.join(summary.select("s", "first"), on="s", how="left", maintain_order="left")
    before_birth = rows.filter(pl.col("first") < pl.col("birth"))
    if before_birth.height:
        raise ValueError(
            f"column {time_col!r}: subject(s) "
            f"{list_ids(before_birth['s'].unique(maintain_order=True).to_list())} have events "
            f"before their birth time; fix the birth times or the event times."
        )
    has_birth = pl.col("birth").is_not_null()
    has_history = pl.col("first").is_not_null() & (
        pl.col("pt").is_null() | table_cut(strict, pl.col("first"), pl.col("pt"))
    )
    rows = rows.with_columns(
        reason=pl.when(~has_birth)
        .then(pl.lit(NO_BIRTH))
        .when(~has_history)
        .then(pl.lit(NO_EVENTS))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    cohort = _Cohort(
        table=table,
        rows=rows.filter(pl.col("reason").is_null()).select("s", "pt", "birth", "src"),
        pt_values=pt_values,
        dropped=pd.DataFrame(),
        strict=bool(strict),
        birth_code=birth_code,
        age_unit_days=float(age_unit_days),
        n_events=int(summary["n"].sum()),
        n_static=n_static,
        n_birth=n_birth,
        static=static,
        layout=summary.select("s", "n", "lo", "hi"),
    )
    lost = rows.filter(pl.col("reason").is_not_null())
    cohort.dropped = cohort.dropped_frame(lost, lost["reason"].to_list())
    return cohort


def table_cut(strict: bool, ticks: pl.Expr, pt: pl.Expr) -> pl.Expr:
    """Whether an event at ``ticks`` is known at the prediction time ``pt``."""
    return ticks < pt if strict else ticks <= pt


def _warn_dropped(
    func: str, cohort: _Cohort, dropped: pd.DataFrame, n_rows: int, stacklevel: int = 3
) -> None:
    """One UserWarning counting and naming the rows dropped, by reason."""
    if not len(dropped):
        return
    parts = []
    for reason, group in dropped.groupby("reason", sort=False):
        parts.append(f"{len(group)} with {reason}: {list_ids(cohort.describe(group))}")
    what = "(subject, prediction time) row(s)" if cohort.with_prediction_times else "subject(s)"
    warnings.warn(
        f"{func} dropped {len(dropped)} of {n_rows} {what}: " + "; ".join(parts)
        + ". Use return_dropped=True to get them.",
        UserWarning,
        stacklevel=stacklevel,  # the user's call of the public function
    )
