"""survival_labels and events_to_survival: every labelling rule, by hand and by reference."""

import warnings
from functools import partial

import numpy as np
import pandas as pd
import pytest

from survbehrt.data import events_to_survival, from_events, survival_labels

from meds_reference import (
    random_events,
    random_prediction_times,
    reference_cause_label,
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
    # follow-up runs to it (subject 3); after a death -> the death still ends follow-up
    # (subject 2, dead in 2003 without the outcome, is not at risk until 2006);
    # subjects it misses keep their last record
    y, index = _labels(EVENTS, LABELS, "STROKE", return_index=True,
                       end={4: T("2005-01-01"), 2: T("2006-01-01"), 3: T("2006-01-01")})
    got = dict(zip(index.tolist(), zip(y["event"].tolist(), y["time"].tolist())))
    assert got[(4, T("2001-01-01"))] == (False, pytest.approx(years(T("2005"), T("2001"))))
    assert got[(2, T("2001-01-01"))] == (False, pytest.approx(years(T("2003"), T("2001"))))
    assert got[(3, T("2002-01-01"))] == (False, pytest.approx(years(T("2006"), T("2002"))))
    assert got[(1, T("2000-06-01"))] == (True, pytest.approx(years(T("2001"), T("2000-06-01"))))
    # without death_code, the death is an ordinary record and end runs past it
    y_nd, index = _labels(EVENTS, LABELS, "STROKE", end={2: T("2006-01-01")}, death_code=None,
                          return_index=True)
    assert y_nd["time"][index.get_loc((2, T("2001-01-01")))] == pytest.approx(
        years(T("2006"), T("2001")))
    # one end date for everyone (the extract's end): subject 3 now has follow-up too;
    # subject 2 still ends at its death
    y_all = _labels(EVENTS, LABELS, "STROKE", end=T("2008-01-01"))
    np.testing.assert_allclose(
        y_all["time"],
        [years(T("2001"), T("2000-06-01")), years(T("2003"), T("2001")),
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


def _match_reference(events, pts, label_of, outcome_codes, strict=False, **options):
    """Label random rows both ways; assert they agree; return X, the reference rows and labels."""
    rows, dropped_rows = reference_rows(events, pts, strict=strict)
    expected, expected_dropped = {}, dict(dropped_rows)
    for key in sorted(rows):
        label = label_of(events, key[0], key[1])
        if isinstance(label, str):
            expected_dropped[key] = label
        else:
            expected[key] = label
    labels = pd.DataFrame({"subject_id": [s for s, _ in pts],
                           "prediction_time": [t for _, t in pts]})
    X, y, dropped = _labels_xy(to_frame(events), labels, outcome_codes, strict=strict,
                               **options)
    assert X.index.tolist() == sorted(expected)
    assert y["event"].tolist() == [expected[k][0] for k in sorted(expected)]
    np.testing.assert_allclose(y["time"], [expected[k][1] for k in sorted(expected)],
                               rtol=0, atol=1e-12)
    assert {(s, t): r for s, t, r in dropped.itertuples(index=False, name=None)} == (
        expected_dropped
    )
    return X, rows, expected


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("strict", [False, True])
def test_random_tables_match_the_reference(seed, strict):
    events = random_events(seed)
    pts = random_prediction_times(events, seed)
    rng = np.random.default_rng(seed)
    horizon = None if seed % 2 else float(rng.uniform(0.001, 0.03))  # days 0.4 to 11
    label_of = partial(reference_label, outcome_codes={"OUT"}, horizon_years=horizon)
    X, rows, expected = _match_reference(events, pts, label_of, "OUT", strict=strict,
                                         horizon=horizon)
    for key, codes in zip(sorted(expected), X["codes"].tolist()):
        assert codes == rows[key]["codes"]


# ------------------------------------------------------------- several outcomes (causes)

CR_ROWS = [
    # 1: MI, then a stroke, then death -> MI first
    (1, "1950-01-01", "MEDS_BIRTH"), (1, "2000-01-01", "A"), (1, "2001-01-01", "I21"),
    (1, "2002-01-01", "I63"), (1, "2005-01-01", "MEDS_DEATH"),
    # 2: dies without MI or stroke
    (2, "1960-01-01", "MEDS_BIRTH"), (2, "2000-01-01", "A"), (2, "2003-01-01", "MEDS_DEATH"),
    # 3: a stroke recorded with the death (a tie at the same time), under two stroke codes
    (3, "1960-01-01", "MEDS_BIRTH"), (3, "2000-01-01", "A"), (3, "2004-01-01", "I64"),
    (3, "2004-01-01", "MEDS_DEATH"),
    # 4: records after the death (a data error), among them an MI
    (4, "1960-01-01", "MEDS_BIRTH"), (4, "2000-01-01", "A"), (4, "2002-01-01", "MEDS_DEATH"),
    (4, "2003-01-01", "I21"), (4, "2004-01-01", "B"),
    # 5: an MI before the prediction time (prevalent)
    (5, "1960-01-01", "MEDS_BIRTH"), (5, "1999-01-01", "I21"), (5, "2000-01-01", "A"),
    (5, "2006-01-01", "B"),
    # 6: alive, event-free, last record in 2006
    (6, "1960-01-01", "MEDS_BIRTH"), (6, "2000-01-01", "A"), (6, "2006-01-01", "B"),
]
CR_EVENTS = pd.DataFrame({
    "subject_id": [r[0] for r in CR_ROWS],
    "time": pd.to_datetime([r[1] for r in CR_ROWS]),
    "code": [r[2] for r in CR_ROWS],
})
CR_TIMES = {s: T("2000-06-01") for s in range(1, 7)}
CAUSES = {"mi": ["I21"], "stroke": ["I63", "I64"], "death": ["MEDS_DEATH"]}


def _by_subject(y, index):
    subjects = index.get_level_values("subject_id")
    return {s: (e, pytest.approx(t)) for s, e, t in zip(subjects, y["event"], y["time"])}


@pytest.mark.parametrize("kind", ["pandas", "polars"])
def test_several_causes_on_a_hand_written_table(kind):
    import polars as pl

    from survbehrt.data import cause_names

    events = CR_EVENTS if kind == "pandas" else pl.from_pandas(CR_EVENTS)
    with pytest.warns(UserWarning, match="dropped 1 of 6") as rec:
        y, index, dropped = survival_labels(events, CR_TIMES, CAUSES, return_index=True,
                                            return_dropped=True)
    assert "1 with outcome at or before the prediction time: [(5," in str(rec[0].message)
    assert y.dtype.names == ("event", "time") and y["event"].dtype == np.int64
    assert cause_names(y) == ("mi", "stroke", "death")
    pt = T("2000-06-01")
    assert _by_subject(y, index) == {
        1: (1, years(T("2001"), pt)),  # the MI, first of three causes
        2: (3, years(T("2003"), pt)),  # death is a cause when named
        3: (2, years(T("2004"), pt)),  # stroke and death tie: the cause listed first
        4: (3, years(T("2002"), pt)),  # nothing after the death counts
        6: (0, years(T("2006"), pt)),  # censored at the last record
    }
    assert dropped["subject_id"].tolist() == [5]


def test_ties_go_to_the_cause_listed_first():
    order = {"death": ["MEDS_DEATH"], "stroke": ["I63", "I64"]}
    y, index = _labels(CR_EVENTS, CR_TIMES, order, return_index=True)
    assert _by_subject(y, index)[3][0] == 1  # death now listed first


def test_death_not_named_ends_follow_up_as_censoring():
    pt = T("2000-06-01")
    y, index = _labels(CR_EVENTS, CR_TIMES, {"mi": ["I21"], "stroke": ["I63", "I64"]},
                       return_index=True, end=T("2010-01-01"))
    got = _by_subject(y, index)
    assert got[2] == (0, years(T("2003"), pt))  # at the death, not at end (2010)
    assert got[3] == (2, years(T("2004"), pt))  # the stroke at the death is still seen
    assert got[4] == (0, years(T("2002"), pt))  # the MI after the death is not
    assert got[6] == (0, years(T("2010"), pt))  # alive: follow-up runs to end
    # a death at or before the prediction time leaves no label
    _, dropped = _labels(CR_EVENTS, {2: T("2003-06-01")}, {"mi": ["I21"]},
                         return_dropped=True)
    assert dropped["reason"].tolist() == ["death at or before the prediction time"]


def test_horizon_caps_every_cause():
    y, index = _labels(CR_EVENTS, CR_TIMES, CAUSES, horizon=2.0, return_index=True)
    got = _by_subject(y, index)
    assert got[1] == (1, years(T("2001"), T("2000-06-01")))
    assert got[2] == (0, 2.0) and got[3] == (0, 2.0) and got[6] == (0, 2.0)


def test_a_mapping_is_not_read_as_the_list_of_its_keys():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "none of the outcome codes ['stroke']" warning
        y = survival_labels(CR_EVENTS, {1: T("2000-06-01")}, {"stroke": ["I63"]})
    assert y.tolist() == [(1, pytest.approx(years(T("2002"), T("2000-06-01"))))]
    with pytest.warns(UserWarning, match=r"\['I6X'\] of the cause 'stroke' occurs"):
        survival_labels(CR_EVENTS, {1: T("2000-06-01")}, {"mi": "I21", "stroke": ["I6X"]})


def test_bad_causes():
    with pytest.raises(ValueError, match="listed under the causes 'mi' and 'stroke'"):
        survival_labels(CR_EVENTS, CR_TIMES, {"mi": ["I21"], "stroke": ["I21", "I63"]})
    with pytest.raises(ValueError, match="empty mapping"):
        survival_labels(CR_EVENTS, CR_TIMES, {})
    with pytest.raises(ValueError, match=r"outcome_codes\['mi'\] must be a code"):
        survival_labels(CR_EVENTS, CR_TIMES, {"mi": []})
    with pytest.raises(ValueError, match="named by strings"):
        survival_labels(CR_EVENTS, CR_TIMES, {1: ["I21"]})


def test_events_to_survival_with_causes_lines_up():
    X, y, dropped = _labels_xy(CR_EVENTS, CR_TIMES, CAUSES)
    y_only, index = _labels(CR_EVENTS, CR_TIMES, CAUSES, return_index=True)
    np.testing.assert_array_equal(y, y_only)
    assert X.index.equals(index)


@pytest.mark.parametrize("seed", range(10))
def test_random_tables_with_causes_match_the_reference(seed):
    events = random_events(seed, n_subjects=30)  # 1-7 labelled rows per seed, each kind
    pts = random_prediction_times(events, seed)
    rng = np.random.default_rng(seed)
    horizon = None if seed % 2 else float(rng.uniform(0.001, 0.03))
    end = None if seed % 3 else T("2000-01-10")
    causes = {"x": ["OUT"], "y": ["C"], "death": ["B"]}
    if seed % 4 == 1:  # death ("B") not a cause: it only ends follow-up
        causes.pop("death")
    label_of = partial(reference_cause_label, causes=[set(v) for v in causes.values()],
                       death_code="B", end=end, horizon_years=horizon)
    _match_reference(events, pts, label_of, causes, horizon=horizon, end=end, death_code="B")


def test_several_causes_from_a_meds_folder(tmp_path):
    (tmp_path / "data").mkdir()
    CR_EVENTS.to_parquet(tmp_path / "data" / "0.parquet")
    from_folder = _labels(tmp_path, CR_TIMES, CAUSES)
    np.testing.assert_array_equal(from_folder, _labels(CR_EVENTS, CR_TIMES, CAUSES))
    assert from_folder["event"].tolist() == [1, 3, 2, 3, 0]
