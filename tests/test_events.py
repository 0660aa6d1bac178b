"""Tests of the long-event-table converter ``from_events``."""

import warnings

import numpy as np
import pandas as pd
import pytest

from survbehrt.data import validation
from survbehrt.data.events import from_events

T = pd.Timestamp


def _age(when, birth):
    return (T(when) - T(birth)) / pd.Timedelta(days=1) / 365.25


# A hand-made table. Subject 10 has a birth row; subject 20 gets its birth from a
# mapping; subject 30's only events come after its prediction time; subject 40 has no
# birth at all. Rows are deliberately not sorted by subject or time.
BIRTH_10, BIRTH_20, BIRTH_30 = "1950-03-01", "1980-05-20", "1990-01-01"
ROWS = [
    (20, "2012-07-07 09:00", "J45"),
    (10, BIRTH_10, "MEDS_BIRTH"),
    (10, "2000-01-01 08:00", "I10"),
    (10, "2000-01-01 08:00", "E11"),
    (10, "2000-01-01 14:30", "I10"),  # same day, later: own visit with "exact"
    (10, "2000-01-01 14:30", "N18"),
    (10, "2001-06-15 00:00", "I21"),
    (10, "2001-06-15 00:00", "I21"),  # repeated within the visit
    (10, "2003-01-01 00:00", "Z99"),  # exactly at the prediction time: kept
    (10, "2005-01-01 00:00", "OUTCOME"),  # after the prediction time: dropped
    (20, "2010-03-01 10:00", "J45"),
    (20, "2012-07-07 09:00", "R05"),
    (30, BIRTH_30, "MEDS_BIRTH"),
    (30, "2020-01-01 00:00", "C50"),
    (40, "2015-01-01 00:00", "K21"),
]
PREDICTION = {10: T("2003-01-01"), 20: T("2013-01-01"), 30: T("2019-01-01"), 40: T("2016-01-01")}
BIRTH_MAP = {20: T(BIRTH_20)}


def _events():
    s, t, c = zip(*ROWS)
    return pd.DataFrame(
        {"subject_id": list(s), "time": pd.to_datetime(list(t), format="ISO8601"), "code": list(c)}
    )


def _by_subject(X):
    """X with one prediction time per subject, indexed by subject only."""
    if isinstance(X.index, pd.MultiIndex):
        assert not X.index.get_level_values("subject_id").duplicated().any()
        X = X.droplevel("prediction_time")
    return X


def _convert(events=None, **kwargs):
    kwargs.setdefault("birth", BIRTH_MAP)
    kwargs.setdefault("prediction_times", PREDICTION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _by_subject(from_events(_events() if events is None else events, **kwargs))


def test_exact_visits_ages_and_prediction_cut():
    X = _convert()
    assert list(X.index) == [10, 20]
    assert X.index.name == "subject_id"
    assert list(X.columns) == ["codes", "ages", "index_age"]
    assert X.loc[10, "codes"] == [["I10", "E11"], ["I10", "N18"], ["I21"], ["Z99"]]
    assert X.loc[20, "codes"] == [["J45"], ["J45", "R05"]]
    expected_10 = [
        _age("2000-01-01 08:00", BIRTH_10),
        _age("2000-01-01 14:30", BIRTH_10),
        _age("2001-06-15", BIRTH_10),
        _age("2003-01-01", BIRTH_10),
    ]
    np.testing.assert_allclose(X.loc[10, "ages"], expected_10, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        X.loc[20, "ages"],
        [_age("2010-03-01 10:00", BIRTH_20), _age("2012-07-07 09:00", BIRTH_20)],
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        X["index_age"], [_age("2003-01-01", BIRTH_10), _age("2013-01-01", BIRTH_20)], atol=1e-12
    )
    # Plain Python types inside the cells.
    assert all(type(c) is str for visits in X["codes"] for v in visits for c in v)
    assert all(type(a) is float for ages in X["ages"] for a in ages)


def test_day_resolution_merges_same_day_and_dedups():
    X = _convert(visit_resolution="day")
    # Same calendar day -> one visit; the second I10 is a repeat within the visit.
    assert X.loc[10, "codes"] == [["I10", "E11", "N18"], ["I21"], ["Z99"]]
    # The visit's age is the age at its earliest event.
    assert X.loc[10, "ages"][0] == pytest.approx(_age("2000-01-01 08:00", BIRTH_10), abs=1e-12)


def test_no_deduplication_keeps_repeats_in_input_order():
    X = _convert(deduplicate=False, visit_resolution="day")
    assert X.loc[10, "codes"][:2] == [["I10", "E11", "I10", "N18"], ["I21", "I21"]]


def test_subjects_without_history_or_birth_are_reported():
    with pytest.warns(UserWarning, match=r"dropped 2 of 4 \(subject, prediction time\)") as rec:
        X, dropped = from_events(
            _events(), birth=BIRTH_MAP, prediction_times=PREDICTION, return_dropped=True
        )
    message = str(rec[0].message)
    assert "1 with no events: [(30, " in message and "1 with no birth time: [(40, " in message
    assert list(_by_subject(X).index) == [10, 20]
    assert dropped.to_dict("list") == {
        "subject_id": [30, 40],
        "prediction_time": [PREDICTION[30], PREDICTION[40]],
        "reason": ["no events", "no birth time"],
    }


def test_without_prediction_times_uses_everything():
    with pytest.warns(UserWarning, match="no birth time"):
        X = from_events(_events(), birth=BIRTH_MAP)
    assert list(X.index) == [10, 20, 30]
    assert X.loc[10, "codes"][-1] == ["OUTCOME"]
    assert X.loc[30, "codes"] == [["C50"]]
    last_ages = [ages[-1] for ages in X["ages"]]
    np.testing.assert_array_equal(X["index_age"].to_numpy(), last_ages)


def test_birth_mapping_overrides_birth_rows():
    X = _convert(birth={10: T("1960-03-01"), 20: T(BIRTH_20)})
    assert X.loc[10, "ages"][-1] == pytest.approx(_age("2003-01-01", "1960-03-01"), abs=1e-12)


def test_birth_and_prediction_times_as_series_or_frame():
    pt = pd.Series(PREDICTION)
    births = pd.DataFrame({"subject_id": [20], "birth": [T(BIRTH_20)]})
    a = _convert()
    b = _convert(birth=births, prediction_times=pt)
    pd.testing.assert_frame_equal(a, b)


def test_input_row_order_of_subjects_does_not_matter():
    events = _events()
    shuffled = events.sort_values("subject_id", ascending=False, kind="stable")
    pd.testing.assert_frame_equal(_convert(), _convert(shuffled))


def test_numeric_days():
    events = pd.DataFrame(
        {
            "pid": [1, 1, 1, 1, 2, 2],
            "day": [0.0, 7305.0, 7305.5, 8000.0, 100.0, 200.0],
            "dx": ["MEDS_BIRTH", "A", "B", "C", "MEDS_BIRTH", "D"],
        }
    )
    X = from_events(
        events, subject_col="pid", time_col="day", code_col="dx", visit_resolution="day"
    )
    assert X.loc[1, "codes"] == [["A", "B"], ["C"]]
    np.testing.assert_allclose(X.loc[1, "ages"], [7305 / 365.25, 8000 / 365.25])
    np.testing.assert_allclose(X.loc[2, "ages"], [100 / 365.25])
    months = from_events(
        events, subject_col="pid", time_col="day", code_col="dx", age_unit_days=30.0
    )
    np.testing.assert_allclose(months.loc[1, "ages"], [7305 / 30, 7305.5 / 30, 8000 / 30])


def test_codes_are_converted_to_str():
    events = pd.DataFrame(
        {
            "subject_id": [1, 1],
            "time": pd.to_datetime(["2000-01-01", "2001-01-01"]),
            "code": [401, 250],
        }
    )
    X = from_events(events, birth={1: T("1950-01-01")}, birth_code=None)
    assert X.loc[1, "codes"] == [["401"], ["250"]]


def test_timezone_aware_times():
    events = _events()
    events["time"] = events["time"].dt.tz_localize("Europe/Paris")
    X = _convert(
        events,
        birth={20: T(BIRTH_20, tz="Europe/Paris")},
        prediction_times={k: v.tz_localize("Europe/Paris") for k, v in PREDICTION.items()},
    )
    assert X.loc[10, "codes"] == _convert().loc[10, "codes"]
    with pytest.raises(TypeError, match="time-zone"):
        _convert(events)  # naive mappings against aware times


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda e: e.drop(columns="code"), "'code'"),
        (lambda e: e.assign(code=e["code"].where(e.index != 3, None)), "'code'"),
        (
            lambda e: e.assign(subject_id=e["subject_id"].astype(float).where(e.index != 4)),
            "'subject_id'",
        ),
    ],
)
def test_missing_columns_and_nulls_name_the_column(change, match):
    with pytest.raises(ValueError, match=match):
        from_events(change(_events()), birth=BIRTH_MAP)


def test_events_before_birth_raise():
    events = pd.concat(
        [_events(), pd.DataFrame({"subject_id": [10], "time": [T("1949-01-01")], "code": ["X"]})]
    )
    with pytest.raises(ValueError, match="before their birth"):
        from_events(events, birth=BIRTH_MAP)


def test_conflicting_birth_rows_raise():
    events = pd.concat(
        [
            _events(),
            pd.DataFrame({"subject_id": [10], "time": [T("1951-01-01")], "code": ["MEDS_BIRTH"]}),
        ]
    )
    with pytest.raises(ValueError, match="several different 'MEDS_BIRTH'"):
        from_events(events, birth=BIRTH_MAP)


def test_bad_arguments():
    with pytest.raises(ValueError, match="visit_resolution"):
        from_events(_events(), visit_resolution="week")
    with pytest.raises(TypeError, match="datetime"):
        from_events(_events().assign(time="2000-01-01"))
    with pytest.raises(ValueError, match="several values"):
        from_events(_events(), prediction_times=pd.Series([T("2000-01-01")] * 2, index=[10, 10]))
    with pytest.raises(TypeError, match="DataFrame"):
        from_events([("a", 1, "b")])


def test_output_passes_check_ehr_frame():
    validation.check_ehr_frame(_convert(), require_index_age=True)


def test_polars_input_gives_the_same_frame():
    import polars as pl

    events = pl.from_pandas(_events())
    pd.testing.assert_frame_equal(_convert(events), _convert(), check_index_type=False)
    pt = pl.DataFrame(
        {"subject_id": list(PREDICTION), "prediction_time": list(PREDICTION.values())}
    )
    pd.testing.assert_frame_equal(
        _convert(events, prediction_times=pt), _convert(), check_index_type=False
    )


def test_round_trip_of_the_synthetic_events():
    from survbehrt.datasets import make_synthetic_ehr, make_synthetic_events

    events, labels = make_synthetic_events(n_patients=300, random_state=5)
    assert (events["code"] == "OUTCOME").any()  # the table holds the future too
    X = from_events(events, prediction_times=labels.set_index("subject_id")["prediction_time"])
    X_ref, y_ref, risk = make_synthetic_ehr(n_patients=300, random_state=5)
    assert X.index.tolist() == list(zip(labels["subject_id"], labels["prediction_time"]))
    assert X["codes"].tolist() == X_ref["codes"].tolist()
    for got, ref in zip(X["ages"], X_ref["ages"]):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(X["index_age"], X_ref["index_age"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(labels["event"], y_ref["event"])
    np.testing.assert_array_equal(labels["time"], y_ref["time"])
    np.testing.assert_array_equal(labels["true_risk"], risk)


def test_many_events_are_converted():
    """A larger table (200k rows, 5k subjects): shapes and order survive."""
    rng = np.random.default_rng(0)
    n_sub, n_ev = 5000, 200_000
    subject = rng.integers(0, n_sub, n_ev)
    days = rng.integers(0, 3000, n_ev)
    events = pd.DataFrame(
        {
            "subject_id": subject,
            "time": T("2010-01-01") + pd.to_timedelta(days, unit="D"),
            "code": rng.choice([f"K{i}" for i in range(300)], n_ev),
        }
    )
    births = pd.Series(T("1960-01-01"), index=np.arange(n_sub))
    X = from_events(events, birth=births, birth_code=None, deduplicate=False)
    assert X.index.is_monotonic_increasing
    assert sum(len(v) for visits in X["codes"] for v in visits) == n_ev
    n_visits = events.drop_duplicates(["subject_id", "time"]).groupby("subject_id").size()
    np.testing.assert_array_equal(X["codes"].map(len).to_numpy(), n_visits.to_numpy())
    assert all(np.all(np.diff(a) > 0) for a in X["ages"])


def test_all_subjects_dropped_gives_an_empty_frame():
    events = _events()
    with pytest.warns(UserWarning, match="no birth time"):
        X = from_events(events[events["code"] != "MEDS_BIRTH"])
    assert X.empty and list(X.columns) == ["codes", "ages", "index_age"]


def test_x_is_arrow_backed_and_works_with_pandas_and_sklearn():
    """X's list columns are Arrow-backed; indexing, concat, pickling and sklearn splits
    give frames that flatten to the rows they hold, as the same lists would."""
    import io
    import pickle

    import joblib
    from sklearn.model_selection import KFold, train_test_split

    from survbehrt.data import EHRTokenizer, flatten_ehr
    from survbehrt.datasets import make_synthetic_events

    events, labels = make_synthetic_events(n_patients=60, random_state=1)
    events["numeric_value"] = np.where(np.arange(len(events)) % 3 == 0, 1.5, np.nan)
    X = from_events(events, prediction_times=labels.set_index("subject_id")["prediction_time"])
    for name in ("codes", "ages", "values"):
        assert isinstance(X[name].dtype, pd.ArrowDtype), name
    # the same content as plain Python lists (the per-cell path)
    lists = X.copy()
    for name in ("codes", "ages", "values"):
        lists[name] = pd.Series(X[name].tolist(), index=X.index, dtype=object)
    assert isinstance(lists["codes"].iloc[0][0][0], str)

    def same(a, b):
        fa, fb = flatten_ehr(a), flatten_ehr(b)
        assert fa.codes == fb.codes
        for name in ("visit_lengths", "visit_ages", "n_visits", "index_age", "values"):
            np.testing.assert_array_equal(getattr(fa, name), getattr(fb, name))

    same(X, lists)
    order = np.random.default_rng(0).permutation(len(X))
    same(X.iloc[order[:25]], lists.iloc[order[:25]])
    same(pd.concat([X.iloc[30:], X.iloc[:30]]), pd.concat([lists.iloc[30:], lists.iloc[:30]]))
    same(pickle.loads(pickle.dumps(X)), lists)
    buffer = io.BytesIO()
    joblib.dump(X, buffer)
    buffer.seek(0)
    same(joblib.load(buffer), lists)
    train, test = train_test_split(X, test_size=0.3, random_state=0)
    train_l, test_l = train_test_split(lists, test_size=0.3, random_state=0)
    same(train, train_l)
    same(test, test_l)
    for fit_rows, _ in KFold(3).split(X):
        a = EHRTokenizer(n_value_bins=3).fit_transform(X.iloc[fit_rows])
        b = EHRTokenizer(n_value_bins=3).fit_transform(lists.iloc[fit_rows])
        for name in ("codes", "age_bins", "visits", "positions", "time_bins", "value_bins"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
