"""``X``'s columns from the events of a cohort's rows, columnar and batched.

:func:`_build_frame` groups each row's events into visits (same timestamp, or same
calendar day), computes the age at each visit, cuts the history at the prediction
time and writes the Arrow-backed list columns, subject batch by subject batch. Split
from ``events.py`` (which keeps the public :func:`~survbehrt.data.from_events`);
:func:`~survbehrt.data.survival_labels` builds on the same rows with it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import chain

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from ._arrow import list_series
from ._flat import group_arange
from ._meds import EventTable
from ._rows import _Cohort

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
    piece_visit = np.repeat(first_visit, n_pieces) + group_arange(n_pieces)
    piece_start = visit_start[piece_visit]
    piece_len = np.minimum(visit_end[piece_visit], np.repeat(hi, n_pieces)) - piece_start
    if len(piece_start) and not (
        piece_start[0] == 0 and np.array_equal(piece_start[1:], np.cumsum(piece_len)[:-1])
    ):
        # Rows share events (several prediction times of a subject): gather them.
        src = np.repeat(piece_start, piece_len) + group_arange(piece_len)
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
