"""from_events on MEDS data: static rows, numeric values, label tables, strict, files.

The expected values come from the plain loops of ``meds_reference`` or are written by
hand; tests/test_events.py holds the original converter tests.
"""

import math
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

from survbehrt.data import _build as build_module
from survbehrt.data import from_events
from survbehrt.data._meds import EventTable

from meds_reference import (
    random_events,
    random_prediction_times,
    reference_rows,
    to_frame,
    years,
)

T = pd.Timestamp


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return func(*args, **kwargs)


def _assert_matches_reference(X, expected):
    assert len(X) == len(expected)
    # Column by column: a whole row (iterrows, X.iloc[i]) of Arrow-backed list columns
    # holds numpy arrays, while a column's cells are Python lists.
    columns = {name: X[name].tolist() for name in X.columns}
    rows = [{name: columns[name][i] for name in columns} for i in range(len(X))]
    for key, row in zip(sorted(expected), rows):
        ref = expected[key]
        assert row["codes"] == ref["codes"], key
        np.testing.assert_allclose(row["ages"], ref["ages"], rtol=0, atol=1e-12)
        assert row["index_age"] == pytest.approx(ref["index_age"], abs=1e-12)
        if "values" in X.columns:
            np.testing.assert_array_equal(  # NaN == NaN here
                np.concatenate([np.asarray(v, float) for v in row["values"]]),
                np.concatenate([np.asarray(v, float) for v in ref["values"]]),
            )
            assert [len(v) for v in row["values"]] == [len(v) for v in row["codes"]]
        if "static" in X.columns:
            assert row["static"] == ref["static"]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("resolution", ["exact", "day"])
@pytest.mark.parametrize("batches", ["one", "many", "file", "unsorted file"])
def test_random_tables_match_the_reference(
    seed, strict, resolution, batches, monkeypatch, tmp_path
):
    if batches != "one":  # subjects in batches of a few events; cuts by as-of join
        monkeypatch.setattr(build_module, "_BATCH_EVENTS", 5)
        monkeypatch.setattr(build_module, "_BATCHES", 10**6)
        monkeypatch.setattr(build_module, "_SEARCH_ROWS", 0)
    events = random_events(seed)
    pts = random_prediction_times(events, seed)
    expected, expected_dropped = reference_rows(
        events, pts, strict=strict, resolution=resolution
    )
    labels = pd.DataFrame(
        {"subject_id": [s for s, _ in pts], "prediction_time": [t for _, t in pts],
         "boolean_value": True}  # a label column: ignored
    )
    frame = source = to_frame(events)
    if batches.endswith("file"):
        # A file sorted by subject is read batch by batch (row ranges); an unsorted
        # one is read whole and sorted.
        if batches == "file":
            frame = frame.sort_values("subject_id", kind="stable")

            def read_whole(self):
                raise AssertionError("a file sorted by subject is read whole")

            monkeypatch.setattr(EventTable, "collect", read_whole)
        frame.to_parquet(tmp_path / "events.parquet", index=False)
        source = tmp_path / "events.parquet"
    X, dropped = _quiet(from_events, source, labels, strict=strict,
                        visit_resolution=resolution, return_dropped=True)
    monkeypatch.undo()
    assert X.index.names == ["subject_id", "prediction_time"]
    assert X.index.tolist() == sorted(expected)
    _assert_matches_reference(X, expected)
    got_dropped = {(s, t): r for s, t, r in dropped.itertuples(index=False, name=None)}
    assert got_dropped == expected_dropped
    # The same table sorted as MEDS shards are (subject, time) takes the no-sort path.
    ordered = frame.sort_values(["subject_id", "time"], kind="stable")
    pd.testing.assert_frame_equal(
        _quiet(from_events, ordered, labels, strict=strict, visit_resolution=resolution), X
    )


@pytest.mark.parametrize("seed", range(4))
def test_without_prediction_times_matches_the_reference(seed):
    events = random_events(seed)
    expected, expected_dropped = reference_rows(events, None, deduplicate=False)
    X, dropped = _quiet(from_events, to_frame(events), deduplicate=False, return_dropped=True)
    assert X.index.name == "subject_id"
    assert [(s, None) for s in X.index] == sorted(expected)
    _assert_matches_reference(X, expected)
    assert {(s, None): r for s, r in dropped.itertuples(index=False, name=None)} == (
        expected_dropped
    )


@pytest.mark.parametrize("seed", range(6))
def test_event_counts_add_up(seed):
    events = random_events(seed)
    pts = random_prediction_times(events, seed)
    labels = pd.DataFrame({"subject_id": [s for s, _ in pts],
                           "prediction_time": [t for _, t in pts]})
    X = _quiet(from_events, to_frame(events), labels, strict=True)
    counts = X.attrs["event_counts"]
    # by hand: a subject's last prediction time bounds what any of its rows sees
    last_pt = {}
    for s, t in pts:
        last_pt[s] = max(last_pt.get(s, t), t)
    kept_subjects = set(X.index.get_level_values("subject_id"))
    expected = dict.fromkeys(
        ["static", "birth", "other_subjects", "after_prediction_time", "duplicates", "used"], 0
    )
    seen = set()
    for s, t, c, _ in sorted(events, key=lambda e: (e[0], e[1] or T(0))):
        if t is None:
            expected["static"] += 1
        elif c == "MEDS_BIRTH":
            expected["birth"] += 1
        elif s not in kept_subjects:
            expected["other_subjects"] += 1
        elif not t < last_pt[s]:
            expected["after_prediction_time"] += 1
        elif (s, t, c) in seen:
            expected["duplicates"] += 1
        else:
            seen.add((s, t, c))
            expected["used"] += 1
    assert counts == {"events": len(events), **expected}
    assert sum(v for k, v in counts.items() if k != "events") == len(events)


# ----------------------------------------------------------------- hand-written cases

EVENTS = pd.DataFrame(
    {
        "subject_id": [1, 1, 1, 1, 1, 1, 1, 2, 2, 2],
        "time": pd.to_datetime(
            [None, "1950-01-01", "2000-01-01", "2000-01-01", "2000-01-01", "2001-01-01",
             "2003-01-01", "1960-01-01", None, "2000-05-05"]
        ),
        "code": ["GENDER//F", "MEDS_BIRTH", "I10", "LAB", "LAB", "I21", "MEDS_DEATH",
                 "MEDS_BIRTH", "GENDER//M", "J45"],
        "numeric_value": [None, None, None, 5.5, 6.5, None, None, None, None, None],
    }
)


def test_static_rows_and_values_travel_into_X():
    X = from_events(EVENTS)
    assert list(X.columns) == ["codes", "ages", "index_age", "static", "values"]
    assert X.loc[1, "codes"] == [["I10", "LAB"], ["I21"], ["MEDS_DEATH"]]
    assert X.loc[1, "static"] == ["GENDER//F"]
    assert X.loc[2, "static"] == ["GENDER//M"]
    # the repeated LAB of the first visit is dropped with its value: the first one stays
    got = X.loc[1, "values"]
    assert math.isnan(got[0][0]) and got[0][1] == 5.5 and math.isnan(got[1][0])
    no_dedup = from_events(EVENTS, deduplicate=False)
    assert no_dedup.loc[1, "codes"][0] == ["I10", "LAB", "LAB"]
    assert no_dedup.loc[1, "values"][0][1:] == [5.5, 6.5]


def test_optional_columns_only_when_the_input_has_them():
    plain = EVENTS.dropna(subset=["time"]).drop(columns="numeric_value")
    assert list(from_events(plain).columns) == ["codes", "ages", "index_age"]
    assert "values" not in from_events(EVENTS, value_col=False).columns
    renamed = from_events(EVENTS.rename(columns={"numeric_value": "value"}))
    pd.testing.assert_frame_equal(renamed, from_events(EVENTS))
    custom = from_events(EVENTS.rename(columns={"numeric_value": "result"}), value_col="result")
    pd.testing.assert_frame_equal(custom, from_events(EVENTS))
    with pytest.raises(ValueError, match="no value column 'result'"):
        from_events(EVENTS, value_col="result")
    with pytest.raises(TypeError, match="'numeric_value'.*numbers"):
        from_events(EVENTS.assign(numeric_value="high"))


def test_several_prediction_times_per_subject():
    labels = pd.DataFrame(
        {
            "subject_id": [1, 2, 1, 1],
            "prediction_time": pd.to_datetime(
                ["2001-01-01", "2001-01-01", "2000-06-01", "2003-06-01"]
            ),
        }
    )
    X = from_events(EVENTS, labels)
    assert X.index.tolist() == [
        (1, T("2000-06-01")), (1, T("2001-01-01")), (1, T("2003-06-01")), (2, T("2001-01-01")),
    ]
    assert X["codes"].tolist() == [
        [["I10", "LAB"]],
        [["I10", "LAB"], ["I21"]],  # the event at the prediction time is kept
        [["I10", "LAB"], ["I21"], ["MEDS_DEATH"]],
        [["J45"]],
    ]
    np.testing.assert_allclose(
        X["index_age"],
        [years(T("2000-06-01"), T("1950-01-01")), years(T("2001-01-01"), T("1950-01-01")),
         years(T("2003-06-01"), T("1950-01-01")), years(T("2001-01-01"), T("1960-01-01"))],
        atol=1e-12,
    )
    # the MultiIndex of X is itself an accepted prediction_times
    pd.testing.assert_frame_equal(from_events(EVENTS, X.index), X)
    # a cell is a fresh list: editing it leaves X (and the subject's other rows) alone
    X["codes"].iloc[1][0].append("EDITED")
    assert X["codes"].iloc[0] == [["I10", "LAB"]] and X["codes"].iloc[1][0] == ["I10", "LAB"]
    # and a polars label table
    some = labels.iloc[[2, 3]]
    pd.testing.assert_frame_equal(
        from_events(EVENTS, pl.from_pandas(some)), from_events(EVENTS, some)
    )


def test_strict_leaves_out_the_events_at_the_prediction_time():
    labels = pd.DataFrame(
        {"subject_id": [1, 1], "prediction_time": pd.to_datetime(["2000-01-01", "2001-01-01"])}
    )
    loose = from_events(EVENTS, labels)
    assert loose["codes"].tolist() == [[["I10", "LAB"]], [["I10", "LAB"], ["I21"]]]
    with pytest.warns(UserWarning, match=r"1 with no events: \[\(1, Timestamp\('2000-01-01"):
        strict, dropped = from_events(EVENTS, labels, strict=True, return_dropped=True)
    assert strict["codes"].tolist() == [[["I10", "LAB"]]]
    assert strict.index.tolist() == [(1, T("2001-01-01"))]
    assert dropped["reason"].tolist() == ["no events"]
    assert strict.attrs["event_counts"]["after_prediction_time"] == 2  # I21, MEDS_DEATH


def test_day_resolution_cuts_a_visit_at_the_prediction_time():
    events = pd.DataFrame(
        {
            "subject_id": [1, 1, 1, 1],
            "time": pd.to_datetime(
                ["1950-01-01", "2000-01-01 08:00", "2000-01-01 12:00", "2000-01-01 18:00"],
                format="ISO8601",
            ),
            "code": ["MEDS_BIRTH", "A", "B", "C"],
        }
    )
    times = {1: T("2000-01-01 12:00")}
    X = from_events(events, times, visit_resolution="day")
    assert X["codes"].tolist() == [[["A", "B"]]]
    assert X["ages"].iloc[0] == [years(T("2000-01-01 08:00"), T("1950-01-01"))]
    assert from_events(events, times, visit_resolution="day", strict=True)["codes"].tolist() == [
        [["A"]]
    ]


def test_prediction_time_pairs_must_be_unique_and_complete():
    labels = pd.DataFrame(
        {"subject_id": [1, 2, 1], "prediction_time": pd.to_datetime(["2001-01-01"] * 3)}
    )
    with pytest.raises(ValueError, match=r"\(1, Timestamp\('2001-01-01.*more than once"):
        from_events(EVENTS, labels)
    with pytest.raises(ValueError, match=r"missing for the subject\(s\) \[2\]"):
        from_events(EVENTS, labels.assign(prediction_time=[T("2001-01-01"), pd.NaT, T("2002")]))
    with pytest.raises(ValueError, match="table with the columns 'subject_id' and"):
        from_events(EVENTS, pd.Series([T("2001-01-01")] * 2, index=[1, 1]))
    with pytest.raises(ValueError, match="'prediction_time'"):
        from_events(EVENTS, labels.assign(a=1, b=2).drop(columns="prediction_time"))
    with pytest.raises(ValueError, match="2 levels"):
        from_events(EVENTS, pd.MultiIndex.from_tuples([(1, T("2001"), 0)]))
    with pytest.raises(TypeError, match="subject ids of prediction_times"):
        from_events(EVENTS, {"one": T("2001-01-01")})


def test_bad_static_and_birth_rows():
    bad = EVENTS.copy()
    bad.loc[1, "time"] = pd.NaT  # subject 1's birth row without a time
    with pytest.raises(ValueError, match=r"\[1\] have a 'MEDS_BIRTH' row without a time"):
        from_events(bad)
    bad = EVENTS.copy()
    bad.loc[[3, 6], "code"] = None
    with pytest.raises(ValueError, match=r"column 'code' of events has 2 null value\(s\) "
                                         r"\(row positions \[3, 6\]\)"):
        from_events(bad)


# ----------------------------------------------------------------- input forms


def test_parquet_file_meds_folder_and_lazy_frame(tmp_path):
    expected = from_events(EVENTS)
    EVENTS.to_parquet(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(from_events(tmp_path / "events.parquet"), expected)
    pd.testing.assert_frame_equal(from_events(str(tmp_path / "events.parquet")), expected)
    # a MEDS folder: shards split by subject under data/, in subfolders
    meds = tmp_path / "meds"
    (meds / "data" / "train").mkdir(parents=True)
    (meds / "data" / "held_out").mkdir(parents=True)
    (meds / "metadata").mkdir()
    EVENTS[EVENTS.subject_id == 2].to_parquet(meds / "data" / "held_out" / "0.parquet")
    EVENTS[EVENTS.subject_id == 1].to_parquet(meds / "data" / "train" / "0.parquet")
    pd.DataFrame({"code": ["I10"], "description": ["x"]}).to_parquet(
        meds / "metadata" / "codes.parquet"  # not events: ignored
    )
    pd.testing.assert_frame_equal(from_events(meds), expected)
    # a folder without data/: every parquet file below it
    flat = tmp_path / "flat"
    flat.mkdir()
    EVENTS.iloc[:5].to_parquet(flat / "a.parquet")
    EVENTS.iloc[5:].to_parquet(flat / "b.parquet")
    pd.testing.assert_frame_equal(from_events(flat), expected)
    lazy = pl.scan_parquet(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(from_events(lazy), expected)
    with pytest.raises(FileNotFoundError, match="no such file"):
        from_events(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no parquet file"):
        from_events(tmp_path / "empty")


def test_numeric_days_with_static_rows_and_values():
    events = pd.DataFrame(
        {
            "pid": [7, 7, 7, 7],
            "day": [np.nan, 0.0, 7305.0, 7305.5],
            "dx": ["SEX//F", "MEDS_BIRTH", "A", "B"],
            "value": [np.nan, np.nan, 1.0, np.nan],
        }
    )
    X = from_events(events, {7: 7305.25}, subject_col="pid", time_col="day", code_col="dx")
    assert X.index.tolist() == [(7, 7305.25)]
    assert X["codes"].iloc[0] == [["A"]]
    assert X["values"].iloc[0] == [[1.0]]
    assert X["static"].iloc[0] == ["SEX//F"]
    assert X["index_age"].iloc[0] == pytest.approx(7305.25 / 365.25, abs=1e-12)
