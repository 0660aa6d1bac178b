"""survival_labels and events_to_survival: every labelling rule, by hand and by reference."""

import warnings

import numpy as np
import pandas as pd
import pytest

from survbehrt.data import events_to_survival, from_events, survival_labels

from meds_reference import (
    random_events,
    random_prediction_times,
    reference_label,
    reference_rows,
    to_frame,
    years,
)

T = pd.Timestamp

ROWS = [
    # subject 1: the outcome twice, then death
    (1, "1950-01-01", "MEDS_BIRTH"), (1, "2000-01-01", "I10"), (1, "2001-01-01", "STROKE"),
    (1, "2002-01-01", "STROKE"), (1, "2004-01-01", "A"), (1, "2005-01-01", "MEDS_DEATH"),
    # subject 2: dies without the outcome
    (2, "1960-01-01", "MEDS_BIRTH"), (2, "2000-01-01", "J45"), (2, "2003-01-01", "MEDS_DEATH"),
    # subject 3: nothing recorded after its prediction time
    (3, "1970-01-01", "MEDS_BIRTH"), (3, "2000-01-01", "A"), (3, "2002-01-01", "B"),
    # subject 4: the outcome late, under another code first
    (4, "1980-01-01", "MEDS_BIRTH"), (4, "2000-01-01", "A"), (4, "2009-01-01", "I63"),
    (4, "2010-01-01", "STROKE"),
    # subject 6: no birth
    (6, "2000-01-01", "A"), (6, "2001-01-01", "STROKE"),
]
EVENTS = pd.DataFrame(
    {
        "subject_id": [r[0] for r in ROWS],
        "time": pd.to_datetime([r[1] for r in ROWS]),
        "code": [r[2] for r in ROWS],
    }
)
LABELS = pd.DataFrame(
    {
        "subject_id": [1, 1, 1, 2, 3, 4, 6],
        "prediction_time": pd.to_datetime(
            ["2000-06-01", "2001-01-01", "2003-01-01", "2001-01-01", "2002-01-01",
             "2001-01-01", "2000-06-01"]
        ),
    }
)


def _labels(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return survival_labels(*args, **kwargs)


def test_every_rule_on_a_hand_written_table():
    with pytest.warns(UserWarning, match="survival_labels dropped 4 of 7") as rec:
        y, index, dropped = survival_labels(
            EVENTS, LABELS, "STROKE", return_index=True, return_dropped=True
        )
    assert y.dtype.names == ("event", "time")
    assert index.tolist() == [(1, T("2000-06-01")), (2, T("2001-01-01")), (4, T("2001-01-01"))]
    # 1: the first STROKE strictly after the prediction time
    # 2: death is censoring for a non-death outcome: censored at the last record
    # 4: the STROKE nine years later
    assert y["event"].tolist() == [True, False, True]
    np.testing.assert_allclose(
        y["time"],
        [years(T("2001-01-01"), T("2000-06-01")), years(T("2003-01-01"), T("2001-01-01")),
         years(T("2010-01-01"), T("2001-01-01"))],
        rtol=0, atol=1e-12,
    )
    assert {(s, t): r for s, t, r in dropped.itertuples(index=False, name=None)} == {
        (1, T("2001-01-01")): "outcome at or before the prediction time",  # at
        (1, T("2003-01-01")): "outcome at or before the prediction time",  # before
        (3, T("2002-01-01")): "no follow-up",  # its last record is the prediction time
        (6, T("2000-06-01")): "no birth time",
    }
    message = str(rec[0].message)
    assert "2 with outcome at or before the prediction time" in message
    assert "1 with no follow-up: [(3, Timestamp('2002-01-01" in message


def test_several_outcome_codes_take_the_first():
    y, index = _labels(EVENTS, LABELS, ["STROKE", "I63"], return_index=True)
    row = index.get_loc((4, T("2001-01-01")))
    assert y["event"][row]
    assert y["time"][row] == pytest.approx(years(T("2009-01-01"), T("2001-01-01")), abs=1e-12)


def test_end_of_follow_up_and_horizon():
    # a per-subject end: before the outcome -> censored at it; after the last record ->
    # follow-up runs to it; subjects it misses keep their last record
    y, index = _labels(EVENTS, LABELS, "STROKE", end={4: T("2005-01-01"), 2: T("2006-01-01")},
                       return_index=True)
    got = dict(zip(index.tolist(), zip(y["event"].tolist(), y["time"].tolist())))
    assert got[(4, T("2001-01-01"))] == (False, pytest.approx(years(T("2005"), T("2001"))))
    assert got[(2, T("2001-01-01"))] == (False, pytest.approx(years(T("2006"), T("2001"))))
    assert got[(1, T("2000-06-01"))] == (True, pytest.approx(years(T("2001"), T("2000-06-01"))))
    # one end date for everyone (the extract's end): subject 3 now has follow-up too
    y_all = _labels(EVENTS, LABELS, "STROKE", end=T("2008-01-01"))
    np.testing.assert_allclose(
        y_all["time"],
        [years(T("2001"), T("2000-06-01")), years(T("2008"), T("2001")),
         years(T("2008"), T("2002")), years(T("2008"), T("2001"))],
        atol=1e-12,
    )
    assert y_all["event"].tolist() == [True, False, False, False]
    # an end before the prediction time leaves no follow-up
    _, dropped = _labels(EVENTS, LABELS, "STROKE", end={2: T("2000-12-31")},
                         return_dropped=True)
    assert dropped.set_index(["subject_id", "prediction_time"]).loc[
        (2, T("2001-01-01")), "reason"] == "no follow-up"
    # a horizon caps the follow-up: the outcome nine years later is censored at 5 years;
    # a shorter follow-up (subject 2: 2 years) is unchanged
    y_h = _labels(EVENTS, LABELS, "STROKE", horizon=5.0)
    assert y_h["event"].tolist() == [True, False, False]
    np.testing.assert_allclose(
        y_h["time"], [years(T("2001"), T("2000-06-01")), years(T("2003"), T("2001")), 5.0],
        atol=1e-12,
    )
    y_td = _labels(EVENTS, LABELS, "STROKE", horizon=pd.Timedelta(days=5 * 365.25))
    np.testing.assert_array_equal(y_td, y_h)
    # an outcome exactly at the horizon is an event
    y_edge = _labels(EVENTS, LABELS, "STROKE", horizon=pd.Timedelta(days=3287))  # 2001 -> 2010
    assert y_edge["event"].tolist() == [True, False, True]


def test_labels_line_up_with_from_events():
    X, y, dropped = _labels_xy(EVENTS, LABELS, "STROKE")
    y_only, index = _labels(EVENTS, LABELS, "STROKE", return_index=True)
    np.testing.assert_array_equal(y, y_only)
    assert X.index.equals(index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pd.testing.assert_frame_equal(from_events(EVENTS, index), X)
    # without label drops, the same arguments give the same rows directly
    kept = LABELS[LABELS["subject_id"].isin([2, 4])]
    y_kept, index_kept = survival_labels(EVENTS, kept, "STROKE", return_index=True)
    assert from_events(EVENTS, kept).index.equals(index_kept)
    assert len(dropped) == 4


def _labels_xy(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return events_to_survival(*args, return_dropped=True, **kwargs)


def test_strict_removes_the_same_rows_from_X_and_y():
    events = pd.DataFrame(
        {
            "subject_id": [1, 1, 1, 1],
            "time": pd.to_datetime(["1950-01-01", "2000-01-01", "2000-01-01", "2003-01-01"]),
            "code": ["MEDS_BIRTH", "ADMIT", "LAB", "MEDS_DEATH"],
        }
    )
    times = {1: T("2000-01-01")}  # a date-only prediction time: the admission day
    X, y, _ = _labels_xy(events, times, "MEDS_DEATH")
    assert X["codes"].tolist() == [[["ADMIT", "LAB"]]]
    assert y["time"].tolist() == [pytest.approx(years(T("2003"), T("2000")))]
    X, y, dropped = _labels_xy(events, times, "MEDS_DEATH", strict=True)
    assert len(X) == len(y) == 0
    assert dropped["reason"].tolist() == ["no events"]


def test_numeric_days():
    events = pd.DataFrame(
        {"subject_id": [1, 1, 1, 1], "time": [0.0, 100.0, 465.25, 500.0],
         "code": ["MEDS_BIRTH", "A", "OUT", "B"]}
    )
    y = survival_labels(events, {1: 100.0}, "OUT")
    assert y["event"].tolist() == [True]
    assert y["time"][0] == pytest.approx(365.25 / 365.25)
    y = survival_labels(events, {1: 100.0}, "OUT", horizon=0.5)
    assert y.tolist() == [(False, 0.5)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="outcome_codes"):
        survival_labels(EVENTS, LABELS, [])
    with pytest.raises(ValueError, match="needs prediction_times"):
        survival_labels(EVENTS, None, "STROKE")
    with pytest.raises(ValueError, match="horizon must be positive"):
        survival_labels(EVENTS, LABELS, "STROKE", horizon=0)
    with pytest.raises(TypeError, match="horizon must be a number"):
        survival_labels(EVENTS, LABELS, "STROKE", horizon="5y")
    with pytest.raises(ValueError, match="visit_resolution"):
        survival_labels(EVENTS, LABELS, "STROKE", visit_resolution="week")
    with pytest.warns(UserWarning, match=r"none of the outcome codes \['STORKE'\]"):
        y = survival_labels(EVENTS, LABELS[LABELS.subject_id == 2], "STORKE")
    assert not y["event"].any()


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("strict", [False, True])
def test_random_tables_match_the_reference(seed, strict):
    events = random_events(seed)
    pts = random_prediction_times(events, seed)
    rng = np.random.default_rng(seed)
    horizon = None if seed % 2 else float(rng.uniform(0.001, 0.03))  # days 0.4 to 11
    rows, dropped_rows = reference_rows(events, pts, strict=strict)
    expected, expected_dropped = {}, dict(dropped_rows)
    for key in sorted(rows):
        label = reference_label(events, key[0], key[1], {"OUT"}, horizon_years=horizon)
        if isinstance(label, str):
            expected_dropped[key] = label
        else:
            expected[key] = label
    labels = pd.DataFrame({"subject_id": [s for s, _ in pts],
                           "prediction_time": [t for _, t in pts]})
    X, y, dropped = _labels_xy(to_frame(events), labels, "OUT", horizon=horizon, strict=strict)
    assert X.index.tolist() == sorted(expected)
    assert y["event"].tolist() == [expected[k][0] for k in sorted(expected)]
    np.testing.assert_allclose(y["time"], [expected[k][1] for k in sorted(expected)],
                               rtol=0, atol=1e-12)
    assert {(s, t): r for s, t, r in dropped.itertuples(index=False, name=None)} == (
        expected_dropped
    )
    for key, codes in zip(sorted(expected), X["codes"].tolist()):
        assert codes == rows[key]["codes"]
