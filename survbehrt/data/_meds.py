"""Reading long (MEDS-style) event tables into one normalized polars frame.

Every input form of :func:`survbehrt.data.from_events` and
:func:`survbehrt.data.survival_labels` -- a pandas or polars (lazy) frame, a parquet
file, a MEDS folder of parquet shards -- becomes an :class:`EventTable`: a polars frame
with the columns ``s`` (subject, its own dtype), ``t`` (time: polars ``Datetime`` or
``Float64`` days; null for static rows), ``c`` (code, ``Categorical``) and optionally ``v``
(numeric value, ``Float64``, null where missing), in the input's row order.

Times are compared as integer ticks of the events' own unit (``ns``/``us``/``ms`` since
the Unix epoch, UTC for time-zone aware data) or as float days, so that an event *at* a
prediction time compares equal to it exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

_MAX_LISTED = 10
_TICKS_PER_DAY = {"ns": 86_400 * 10**9, "us": 86_400 * 10**6, "ms": 86_400 * 10**3}
#: Spellings of the numeric-value column, in order of preference (MEDS says numeric_value).
VALUE_COLUMNS = ("numeric_value", "value")


def _plain(value):
    """Python scalars for messages: ``2``, not ``np.int64(2)``."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


def list_ids(ids) -> str:
    """``[a, b, ... (n more)]`` for an error or warning message."""
    ids = [_plain(i) for i in ids]
    shown = ", ".join(repr(i) for i in ids[:_MAX_LISTED])
    more = f", ... ({len(ids) - _MAX_LISTED} more)" if len(ids) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def is_polars(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "polars"


@dataclass
class EventTable:
    """A normalized event table and how to read its times.

    Attributes
    ----------
    frame : polars.DataFrame or None
        Columns ``s``, ``t``, ``c`` (a ``Categorical`` with its own categories: see
        :meth:`code_names`) and, when ``has_values``, ``v``; input row order. None for
        files (and lazy frames) until :meth:`collect`: they are read in pieces.
    subject_dtype : polars.DataType
        The dtype of the subject ids.
    kind : {"datetime", "numeric"}
        Datetimes, or numbers of days.
    unit : str or None
        Time unit of a datetime ``t`` (``"ns"``, ``"us"`` or ``"ms"``).
    tz : str or None
        Time zone of a datetime ``t``.
    ticks_per_day : float
        Ticks of :meth:`ticks` per day (1.0 for numeric times).
    has_values : bool
        Whether the input had a numeric-value column.
    subject_col, time_col, code_col, value_col : str
        The input's column names (for messages and the output's index name).
    source : polars.LazyFrame or None
        The normalized table as a lazy query (same columns as ``frame``).
    source_text : polars.LazyFrame or None
        ``s``, ``t`` and ``c`` of ``source``, the codes as ``String``.
    """

    frame: pl.DataFrame | None
    subject_dtype: pl.DataType
    kind: str
    unit: str | None
    tz: str | None
    ticks_per_day: float
    has_values: bool
    subject_col: str
    time_col: str
    code_col: str
    value_col: str | None
    source: pl.LazyFrame | None = None
    source_text: pl.LazyFrame | None = None

    def lazy(self, text: bool = False) -> pl.LazyFrame:
        """The normalized table as a lazy frame (a scan of the files when not collected).

        ``text=True``: only ``s``, ``t`` and ``c``, the codes as strings when read from
        files (a pass that only compares codes need not encode them).
        """
        if self.frame is not None:
            return self.frame.lazy()
        return self.source_text if text else self.source

    def collect(self) -> pl.DataFrame:
        """The normalized table in memory (read once; null subjects or codes raise)."""
        if self.frame is None:
            # The streaming engine reads files in pieces: the code strings of a whole
            # file are never held at once.
            self.frame = self.source.collect(engine="streaming")
            for short in ("s", "c"):
                if self.frame[short].null_count():
                    raise _null_error(self.frame, short, self._names[short])
        return self.frame

    def rows(self, offset: int, length: int) -> pl.DataFrame:
        """Rows ``offset:offset + length`` of the normalized table (files: only those read)."""
        if self.frame is not None:
            return self.frame.slice(offset, length)
        return self.source.slice(offset, length).collect()

    def check_nulls(self, null_subjects: int, null_codes: int) -> None:
        """Raise for null subjects or codes (counted by the caller), naming the rows."""
        for short, count in (("s", null_subjects), ("c", null_codes)):
            if count:
                column = self.lazy().select(short).collect()
                raise _null_error(column, short, self._names[short])

    @property
    def _names(self) -> dict:
        return {"s": self.subject_col, "c": self.code_col}

    def code_names(self) -> pl.Series:
        """The code strings by the physical id of column ``c``."""
        categories = self.lazy().collect_schema()["c"].categories
        if hasattr(categories, "to_series"):
            return categories.to_series()
        # older polars (1.42 has no Categories.to_series): one lookup per distinct code, until
        # the first id without a string
        lookup = categories._categories
        names = []
        while (name := lookup.cat_to_str(len(names))) is not None:
            names.append(name)
        return pl.Series("c", names, dtype=pl.String)

    def ticks(self, expr: pl.Expr) -> pl.Expr:
        """The times of ``expr`` (a ``t``-typed column) as comparable ticks."""
        if self.kind == "datetime":
            return expr.to_physical()
        return expr.cast(pl.Float64)

    def day_key(self, expr: pl.Expr) -> pl.Expr:
        """A calendar-day key of ``expr`` (local dates for time-zone aware times)."""
        if self.kind == "datetime":
            return expr.dt.date().to_physical().cast(pl.Int64)
        return expr.cast(pl.Float64).floor()

    def mapping_ticks(self, values: pd.Series, what: str) -> np.ndarray:
        """Ticks of a per-subject time mapping (birth, end, prediction times).

        Missing values become NaN (numeric) or the int64 minimum (datetimes); callers
        check ``pd.isna`` on ``values`` themselves.
        """
        if self.kind == "numeric":
            if not (
                pd.api.types.is_numeric_dtype(values.dtype)
                and not pd.api.types.is_bool_dtype(values.dtype)
            ):
                raise TypeError(
                    f"{what} must hold numbers of days like column {self.time_col!r} of "
                    f"events; got dtype {values.dtype}."
                )
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        values = as_datetimes(values, what)
        aware = values.dt.tz is not None
        if aware != (self.tz is not None):
            raise TypeError(
                f"{what} is time-zone {'aware' if aware else 'naive'} but column "
                f"{self.time_col!r} is time-zone {'naive' if aware else 'aware'}; the event "
                f"times, the birth and the prediction times must be all time-zone aware or "
                f"all naive."
            )
        if aware:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        series = pl.Series(values.to_numpy()).cast(pl.Datetime(self.unit))
        return series.to_physical().fill_null(np.iinfo(np.int64).min).to_numpy()


def as_datetimes(values: pd.Series, what: str) -> pd.Series:
    """``values`` as a pandas datetime Series, or a TypeError naming ``what``."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    try:
        return pd.to_datetime(values)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must hold datetimes like the event times: {err}") from None


def _parquet_files(path: Path) -> list[Path]:
    """The parquet shards of a MEDS folder: ``data/**/*.parquet``, else ``**/*.parquet``."""
    root = path / "data" if (path / "data").is_dir() else path
    files = sorted(root.glob("**/*.parquet"))
    if not files:
        raise ValueError(f"no parquet file under {str(root)!r} (looked for **/*.parquet).")
    return files


def _as_polars(events):
    """A polars DataFrame or LazyFrame for any accepted input form."""
    if isinstance(events, (str, os.PathLike)):
        path = Path(events)
        if path.is_dir():
            return pl.scan_parquet(_parquet_files(path))
        if path.is_file():
            return pl.scan_parquet(path)
        raise FileNotFoundError(f"events: no such file or folder: {str(path)!r}.")
    if is_polars(events) and isinstance(events, (pl.DataFrame, pl.LazyFrame)):
        return events
    if isinstance(events, pd.DataFrame):
        return events
    raise TypeError(
        "events must be a pandas or polars DataFrame, a polars LazyFrame, a parquet file "
        f"or a MEDS folder; got {type(events).__name__}."
    )


def _columns(frame) -> list[str]:
    if isinstance(frame, pl.LazyFrame):
        return list(frame.collect_schema().names())
    return [str(c) for c in frame.columns]


def _null_error(frame: pl.DataFrame, col: str, name: str) -> ValueError:
    rows = frame.with_row_index("_row").filter(pl.col(col).is_null())["_row"]
    return ValueError(
        f"column {name!r} of events has {len(rows)} null value(s) (row positions "
        f"{list_ids(rows.head(_MAX_LISTED + 1).to_list())}); drop or fill them first."
    )


def _from_pandas(df: pd.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The needed pandas columns as polars; codes of mixed Python types become ``str``."""
    out = {}
    for short, name in names.items():
        column = df[name]
        try:
            out[short] = pl.from_pandas(column.reset_index(drop=True))
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            if short != "c":
                raise
            # e.g. an object column mixing int and str codes: null stays null.
            out[short] = pl.Series(
                [None if pd.isna(x) else str(x) for x in column.tolist()], dtype=pl.String
            )
    return pl.DataFrame(out)


def read_events(
    events,
    *,
    subject_col: str = "subject_id",
    time_col: str = "time",
    code_col: str = "code",
    value_col=None,
) -> EventTable:
    """Read and check ``events`` into an :class:`EventTable`.

    Parameters
    ----------
    events : pandas.DataFrame, polars.DataFrame, polars.LazyFrame, str or path
        The long table, a parquet file, or a MEDS folder (its ``data/**/*.parquet``
        shards, or ``**/*.parquet`` without a ``data`` subfolder).
    subject_col, time_col, code_col : str
        Column names.
    value_col : str, False or None
        The numeric-value column; ``None`` takes ``numeric_value`` or ``value`` when
        present; ``False`` ignores any.

    Returns
    -------
    EventTable

    Raises
    ------
    ValueError
        For a missing column, or a null subject or code (naming the column and rows).
    TypeError
        For an unsupported input, times that are neither datetimes nor numbers, or a
        non-numeric value column.
    """
    frame = _as_polars(events)
    available = _columns(frame)
    missing = [c for c in (subject_col, time_col, code_col) if c not in available]
    if missing:
        raise ValueError(
            f"events is missing the column(s) {missing}; it has {available}. Name the "
            f"columns with subject_col=, time_col= and code_col=."
        )
    if value_col is None:
        value_col = next((c for c in VALUE_COLUMNS if c in available), None)
    elif value_col is False:
        value_col = None
    elif value_col not in available:
        raise ValueError(f"events has no value column {value_col!r}; it has {available}.")
    names = {"s": subject_col, "t": time_col, "c": code_col}
    if value_col is not None:
        names["v"] = value_col
    # Codes become a categorical of their own (a fresh category set, so that its
    # strings are this table's only): 4 bytes per event instead of a string each.
    categorical = pl.Categorical(pl.Categories.random())
    if isinstance(frame, pd.DataFrame):
        frame = _from_pandas(frame, names)
        names = {short: short for short in names}
    lazy = frame.lazy()
    schema = lazy.collect_schema()

    t_dtype = schema[names["t"]]
    t = pl.col(names["t"])
    if t_dtype == pl.Date:
        t, t_dtype = t.cast(pl.Datetime("us")), pl.Datetime("us")
    if isinstance(t_dtype, pl.Datetime):
        kind, unit, tz = "datetime", t_dtype.time_unit, t_dtype.time_zone
        ticks_per_day = float(_TICKS_PER_DAY[unit])
    elif t_dtype.is_numeric() or t_dtype == pl.Null:
        kind, unit, tz, ticks_per_day = "numeric", None, None, 1.0
        t = t.cast(pl.Float64).fill_nan(None)  # NaN days are missing times (static rows)
    else:
        raise TypeError(
            f"column {time_col!r} of events must hold datetimes or numbers of days; got "
            f"dtype {t_dtype}. Convert it first, e.g. with pandas.to_datetime or "
            f"polars' str.to_datetime."
        )
    columns = [pl.col(names["s"]).alias("s"), t.alias("t")]
    code = pl.col(names["c"]).cast(pl.String)
    if value_col is not None:
        v_dtype = schema[names["v"]]
        if not (v_dtype.is_numeric() or v_dtype == pl.Null) or v_dtype == pl.Boolean:
            raise TypeError(
                f"column {value_col!r} of events must hold numbers (the numeric value of "
                f"each code); got dtype {v_dtype}."
            )
        columns.append(pl.col(names["v"]).cast(pl.Float64).fill_nan(None).alias("v"))
    text = lazy.select(columns[:2] + [code.alias("c")])
    lazy = lazy.select(columns[:2] + [code.cast(categorical).alias("c")] + columns[2:])
    table = EventTable(
        frame=None,
        subject_dtype=schema[names["s"]],
        kind=kind,
        unit=unit,
        tz=tz,
        ticks_per_day=ticks_per_day,
        has_values=value_col is not None,
        subject_col=subject_col,
        time_col=time_col,
        code_col=code_col,
        value_col=value_col,
        source=lazy,
        source_text=text,
    )
    if isinstance(frame, pl.DataFrame):  # in memory already: normalize it at once
        table.collect()
    return table


def subjects_like(values, table: EventTable, what: str) -> pl.Series:
    """Subject ids of a mapping as a polars Series of the events' subject dtype."""
    target = table.subject_dtype
    series = pl.Series("s", list(values)) if not isinstance(values, pl.Series) else values
    if series.dtype == target:
        return series.alias("s")
    try:
        return series.cast(target, strict=True).alias("s")
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        raise TypeError(
            f"the subject ids of {what} ({series.dtype}) do not match column "
            f"{table.subject_col!r} of events ({target})."
        ) from None
