"""Long event tables (MEDS) to the patient frame ``X``.

A long table has one row per recorded code: ``subject_id``, ``time``, ``code`` (the
MEDS core columns) and optionally ``numeric_value``; rows without a time are static
codes (e.g. ``GENDER//F``); the birth is a row with the code ``"MEDS_BIRTH"`` or given
separately. :func:`from_events` groups the events of a subject into visits (same
timestamp, or same calendar day), computes the age at each visit, cuts the history at
each prediction time and returns one row per (subject, prediction time).

The work is columnar end to end (polars, numpy and pyarrow; no Python object per
event): the subjects are converted in batches, and X's list columns are Arrow-backed.
:func:`survbehrt.data.survival_labels` shares the row selection (:func:`_cohort`), so
its labels line up with these rows.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from ._arrow import list_series
from ._flat import _group_arange
from ._meds import EventTable, as_datetimes, is_polars, list_ids, read_events, subjects_like
from ._pages import plain_pages

__all__ = ["from_events"]

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


# ----------------------------------------------------------------- building X


#: :func:`_build_frame` handles the subjects in about ``_BATCHES`` batches of at least
#: ``_BATCH_EVENTS`` events (input rows): the per-event temporaries are those of one
#: batch, a small share of the output, and the per-batch overhead stays small.
_BATCH_EVENTS = 1 << 17
_BATCHES = 64
#: Up to this many rows in a batch, each row's cut is found by its own binary search;
#: beyond, by one as-of join.
_SEARCH_ROWS = 256


def _by_subject(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by subject, input order kept within a subject (no copy if it is)."""
    if frame.height and not frame["s"].is_sorted():
        return frame.sort("s", maintain_order=True)
    return frame


def _batches(sizes: np.ndarray, target: int) -> np.ndarray:
    """Boundaries (``[0, ..., len(sizes)]``) of consecutive groups of about ``target``."""
    if not len(sizes):
        return np.zeros(1, dtype=np.int64)
    group = (np.cumsum(sizes) - sizes) // max(target, 1)
    return np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1, [len(sizes)]])


class _Growing:
    """A numpy array filled from the front, grown (copied) only when it overflows."""

    def __init__(self, dtype, capacity: int):
        self.array = np.empty(max(capacity, 1), dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.array):
            grown = np.empty(max(end, 2 * len(self.array)), dtype=self.array.dtype)
            grown[: self.size] = self.array[: self.size]
            self.array = grown
        self.array[self.size : end] = values
        self.size = end

    def values(self) -> np.ndarray:
        """The filled part (a view)."""
        return self.array[: self.size]


def _build_frame(
    cohort: _Cohort, rows: pl.DataFrame, *, visit_resolution: str, deduplicate: bool
) -> pd.DataFrame:
    """The patient frame of ``rows`` (a subset of ``cohort.rows``, in its order).

    The subjects are handled in batches (see ``_BATCHES``) of consecutive rows of the
    table sorted by subject: for files sorted by subject (MEDS shards), only each
    batch's rows are read, one batch at a time; for a frame in memory, a batch is a
    slice (no copy when it is sorted). Each batch yields flat arrays (a code id per
    event, a length per visit, a visit count per row) that are joined into
    Arrow-backed list columns at the end.
    """
    table = cohort.table
    n_timed = cohort.n_events - cohort.n_static - cohort.n_birth
    # rows is sorted by subject: its subjects, in order, are those of the sorted events
    row_subject_start = np.flatnonzero(
        rows.select(pl.col("s") != pl.col("s").shift(1)).to_series().fill_null(True).to_numpy()
    )
    subjects = rows["s"].gather(row_subject_start)
    lo = hi = None
    if table.frame is None:
        # Files: read batch by batch when each kept subject's rows are one run and the
        # runs come in subject order (MEDS shards sorted by subject); else read it all.
        place = subjects.to_frame().join(cohort.layout, on="s", how="left", maintain_order="left")
        lo = place["lo"].to_numpy().astype(np.int64)
        hi = place["hi"].to_numpy().astype(np.int64) + 1
        if not ((hi - lo == place["n"].to_numpy()).all() and (np.diff(lo) > 0).all()):
            lo = hi = None
            table.collect()
    if lo is None:
        frame = _by_subject(table.collect())
        lo = frame["s"].search_sorted(subjects, side="left").to_numpy().astype(np.int64)
        hi = frame["s"].search_sorted(subjects, side="right").to_numpy().astype(np.int64)
        table = replace(table, frame=frame)
    bounds = _batches(hi - lo, max(_BATCH_EVENTS, int((hi - lo).sum()) // _BATCHES))
    row_bounds_subject = np.append(row_subject_start, len(rows))

    # Outputs grow batch by batch into arrays sized for every event of these subjects
    # (pages never written are never resident); rows sharing events may exceed that.
    capacity = int((hi - lo).sum())
    out = {
        "code": _Growing(np.int32, capacity), "value": _Growing(np.float64, capacity),
        "piece_len": _Growing(np.int64, capacity), "piece_age": _Growing(np.float64, capacity),
        "n_pieces": _Growing(np.int64, len(rows)), "last_age": _Growing(np.float64, len(rows)),
    }
    totals = {"selected": 0, "known": 0, "kept": 0}
    spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

    def read(a, b):
        batch = table.rows(int(lo[a]), int(hi[b - 1] - lo[a]))
        # Subjects without a row may lie between the kept ones: filter them out.
        contiguous = bool((lo[a + 1 : b] == hi[a : b - 1]).all())
        return _batch_events(
            cohort, table, batch, None if contiguous else subjects.slice(a, b - a),
            visit_resolution,
        )

    # The next batch is read (polars, without the GIL) in a second thread while this
    # one is converted (numpy): on two cores the reading costs no wall time.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, *spans[0]) if spans else None
        for i, (a, b) in enumerate(spans):
            events = pending.result()
            pending = pool.submit(read, *spans[i + 1]) if i + 1 < len(spans) else None
            batch_rows = rows.slice(
                int(row_bounds_subject[a]), int(row_bounds_subject[b] - row_bounds_subject[a])
            )
            part, counts = _build_batch(cohort, events, batch_rows, deduplicate=deduplicate)
            del events
            for name, values in part.items():
                out[name].extend(values)
            for key in totals:
                totals[key] += counts[key]
    counts = {
        "events": cohort.n_events,
        "static": cohort.n_static,
        "birth": cohort.n_birth,
        "other_subjects": n_timed - totals["selected"],
        "after_prediction_time": totals["selected"] - totals["known"],
        "duplicates": totals["known"] - totals["kept"],
        "used": totals["kept"],
    }

    def joined(name):
        return out[name].values()

    n_pieces = joined("n_pieces")
    piece_len = joined("piece_len")
    row_bounds = np.concatenate([[0], np.cumsum(n_pieces)])
    visit_bounds = np.concatenate([[0], np.cumsum(piece_len)])
    del n_pieces, piece_len
    index = cohort.index(rows)
    # Arrow-backed list columns: offsets and one flat array per column, no Python
    # object per event; the code strings are stored once (a dictionary array).
    names = table.code_names().to_arrow().cast(pa.string())
    code_leaf = pa.DictionaryArray.from_arrays(joined("code"), names)
    data = {
        "codes": list_series([row_bounds, visit_bounds], code_leaf, index),
        "ages": list_series([row_bounds], pa.array(joined("piece_age")), index),
    }
    del code_leaf
    if cohort.with_prediction_times:
        index_age = (
            (rows["pt"].to_numpy() - rows["birth"].to_numpy()).astype(np.float64)
            / table.ticks_per_day
            / cohort.age_unit_days
        )
    else:
        index_age = joined("last_age")
    data["index_age"] = pd.Series(np.asarray(index_age, dtype=np.float64), index=index)
    if cohort.n_static:
        cells = [cohort.static.get(s, ()) for s in rows["s"].to_list()]
        lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
        leaf = pa.array(list(chain.from_iterable(cells)), type=pa.string()).dictionary_encode()
        data["static"] = list_series([np.concatenate([[0], np.cumsum(lengths)])], leaf, index)
    if table.has_values:
        data["values"] = list_series([row_bounds, visit_bounds], pa.array(joined("value")), index)
    X = pd.DataFrame(data, index=index)
    X.attrs["event_counts"] = counts
    return X


def _batch_events(
    cohort: _Cohort,
    table: EventTable,
    batch: pl.DataFrame,
    subjects: pl.Series | None,
    visit_resolution: str,
) -> dict:
    """The events proper of one batch of subjects as numpy arrays, sorted by subject and time.

    ``batch`` holds every input row of these subjects (and, unless ``subjects`` is None,
    rows of other subjects to leave out), sorted by subject. Returns ``code_id``,
    ``new_subject``, ``ticks``, ``key`` (the visit key), ``values`` (or None) and
    ``n_selected``.
    """
    keep_expr = pl.col("t").is_not_null()
    if cohort.birth_code is not None:
        keep_expr = keep_expr & (pl.col("c") != cohort.birth_code)
    if subjects is not None:
        keep_expr = keep_expr & pl.col("s").is_in(subjects.implode())
    columns = [
        pl.col("s"),
        table.ticks(pl.col("t")).alias("_ticks"),
        pl.col("c").to_physical().alias("_code"),
    ]
    if visit_resolution == "day":
        columns.append(table.day_key(pl.col("t")).alias("_day"))
    if table.has_values:
        columns.append(pl.col("v"))
    events = batch.lazy().filter(keep_expr).select(columns).collect()
    # MEDS shards are sorted by subject and time already: check before paying for a sort.
    # The sort is stable, so events at the same time keep their input order.
    new_subject_expr = (pl.col("s") != pl.col("s").shift(1)).fill_null(True)
    if events.height and not events.select(
        (new_subject_expr | (pl.col("_ticks").diff() >= 0)).all()
    ).item():
        events = events.sort("s", "_ticks", maintain_order=True)
    ticks = events["_ticks"].to_numpy()
    return {
        "code_id": events["_code"].to_numpy(),
        "new_subject": events.select(new_subject_expr).to_series().to_numpy(),
        "ticks": ticks,
        "key": events["_day"].to_numpy() if visit_resolution == "day" else ticks,
        "values": events["v"].to_numpy() if table.has_values else None,
        "n_selected": events.height,
    }


def _build_batch(
    cohort: _Cohort,
    events: dict,
    rows: pl.DataFrame,
    *,
    deduplicate: bool,
) -> tuple[dict, dict]:
    """Flat arrays of the rows of one batch of subjects (``rows``, sorted by subject).

    ``events`` are the batch's events (:func:`_batch_events`).
    """
    table = cohort.table
    code_id, new_subject, ticks, key, values, n_selected = (
        events[name] for name in ("code_id", "new_subject", "ticks", "key", "values", "n_selected")
    )
    n_codes = int(code_id.max()) + 1 if len(code_id) else 1

    # Per-subject facts, spread over the subject's events by run length.
    subject_start = np.flatnonzero(new_subject)
    run = np.diff(np.append(subject_start, len(ticks)))
    per_subject = rows.group_by("s", maintain_order=True).agg(
        pl.col("birth").first(), pl.col("pt").max().alias("last_pt")
    )
    if len(subject_start) != per_subject.height:  # the row set guarantees events
        raise AssertionError("from_events: a kept subject has no event")
    known = None
    if cohort.with_prediction_times:
        # Never look into the future: only events known at the subject's last prediction time.
        last_pt = np.repeat(per_subject["last_pt"].to_numpy(), run)
        known = ticks < last_pt if cohort.strict else ticks <= last_pt
        del last_pt
    n_known = len(ticks) if known is None else int(known.sum())

    new_visit = new_subject.copy()
    if len(key):
        new_visit[1:] |= key[1:] != key[:-1]
    keep = known
    if deduplicate and len(key):
        # First occurrence of each (visit, code): a stable sort of a key that is already
        # ordered by visit, so numpy's sort is near-linear here.
        pair = (np.cumsum(new_visit, dtype=np.int64) - 1) * n_codes + code_id
        order = np.argsort(pair, kind="stable")
        pair = pair[order]
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]
        del pair
        unique_pair = np.zeros(len(first), dtype=bool)
        unique_pair[order[first]] = True
        del order, first
        keep = unique_pair if keep is None else keep & unique_pair
    if keep is not None:
        # Dropping events after the prediction times or repeated keeps each subject's and
        # each visit's first event, so the boundaries carry over.
        code_id, ticks, new_subject, new_visit = (
            code_id[keep], ticks[keep], new_subject[keep], new_visit[keep]
        )
        if values is not None:
            values = values[keep]
    n_kept = len(ticks)
    subject_start = np.flatnonzero(new_subject)
    visit_start = np.flatnonzero(new_visit)
    visit = np.cumsum(new_visit, dtype=np.int64) - 1
    del new_visit, new_subject
    visit_end = np.append(visit_start[1:], n_kept)
    subject_of_visit = np.repeat(
        np.arange(len(subject_start)), np.diff(np.append(visit[subject_start], len(visit_start)))
    )
    visit_age = (
        (ticks[visit_start] - per_subject["birth"].to_numpy()[subject_of_visit]).astype(np.float64)
        / table.ticks_per_day
        / cohort.age_unit_days
    )

    # --- each row is a prefix of its subject's events ------------------------------------
    row_new_subject = rows.select(
        (pl.col("s") != pl.col("s").shift(1)).fill_null(True)
    ).to_series().to_numpy()
    row_subject = np.cumsum(row_new_subject, dtype=np.int64) - 1
    lo = subject_start[row_subject]
    subject_end = np.append(subject_start[1:], n_kept)
    hi = subject_end[row_subject]  # exclusive; rows without a prediction time take all
    if cohort.with_prediction_times:
        # The last event at (or, with strict, before) each row's prediction time:
        # a binary search within the row's subject (its events are sorted by time).
        pt = rows["pt"].to_numpy()
        if len(lo) <= _SEARCH_ROWS:
            side = "left" if cohort.strict else "right"
            hi = np.fromiter(
                (a + np.searchsorted(ticks[a:b], p, side=side)
                 for a, b, p in zip(lo.tolist(), hi.tolist(), pt.tolist())),
                dtype=np.int64, count=len(lo),
            )
        else:
            hi = _last_known(ticks, row_subject, subject_start, pt, cohort.strict)
        if (hi <= lo).any():  # the row set guarantees a history
            raise AssertionError("from_events: a kept row has no event")

    # --- pieces: a row's visits, the last one cut at its prediction time -------------------
    first_visit, last_visit = visit[lo], visit[hi - 1]
    n_pieces = last_visit - first_visit + 1
    piece_visit = np.repeat(first_visit, n_pieces) + _group_arange(n_pieces)
    piece_start = visit_start[piece_visit]
    piece_len = np.minimum(visit_end[piece_visit], np.repeat(hi, n_pieces)) - piece_start
    if len(piece_start) and not (
        piece_start[0] == 0 and np.array_equal(piece_start[1:], np.cumsum(piece_len)[:-1])
    ):
        # Rows share events (several prediction times of a subject): gather them.
        src = np.repeat(piece_start, piece_len) + _group_arange(piece_len)
    else:
        src = slice(0, int(piece_len.sum()))  # the rows tile the kept events in order
    part = {
        "code": code_id[src].astype(np.int32, copy=False),
        "piece_len": piece_len,
        "n_pieces": n_pieces,
        "piece_age": visit_age[piece_visit],
        "last_age": visit_age[last_visit],
    }
    if values is not None:
        part["value"] = values[src].astype(np.float64, copy=False)
    return part, {"selected": n_selected, "known": n_known, "kept": n_kept}


def _last_known(ticks, row_subject, subject_start, pt, strict) -> np.ndarray:
    """End (exclusive) of each row's known events, for many rows: one polars as-of join."""
    n = len(ticks)
    sid = np.repeat(np.arange(len(subject_start)), np.diff(np.append(subject_start, n)))
    located = pl.DataFrame(
        {"sid": row_subject, "pt": pt, "_row": np.arange(len(pt))}
    ).join_asof(
        pl.DataFrame({"sid": sid, "_ticks": ticks, "pos": np.arange(n)}),
        left_on="pt", right_on="_ticks", by="sid", strategy="backward",
        allow_exact_matches=not strict, check_sortedness=False,
    ).sort("_row")
    return located["pos"].fill_null(-1).to_numpy() + 1


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
