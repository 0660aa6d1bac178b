"""The vendored Synthea sample and its landmark task, checked against plain loops over the raw CSVs."""

import csv
import gzip
import io
import tomllib
import warnings
from datetime import date, timedelta
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survbehrt.data.events import from_events
from survbehrt.data.validation import flatten_ehr
from survbehrt.datasets import SYNTHEA_HISTORY_START, SYNTHEA_LANDMARKS, load_synthea_sample

DATA = files("survbehrt.datasets").joinpath("data", "synthea_sample")
TABLES = [("conditions", "START", "CONDITION"), ("immunizations", "DATE", "IMMUNIZATION"),
          ("careplans", "START", "CAREPLAN"), ("allergies", "START", "ALLERGY")]


def _rows(stem):
    with DATA.joinpath(f"{stem}.csv.gz").open("rb") as fh:
        return list(csv.DictReader(io.TextIOWrapper(gzip.open(fh), encoding="utf-8")))


def _day(text):
    return date.fromisoformat(text[:10])


START = date.fromisoformat(SYNTHEA_HISTORY_START)


def _in_history(day, code, stop, landmark):
    """Whether an event belongs to the history at a landmark: strictly before it, and on or
    after the history start, or else a condition, care plan or allergy still active then."""
    if day >= landmark:
        return False
    if day >= START:
        return True
    return not code.startswith("IMMUNIZATION//") and (stop is None or stop > START)


@pytest.fixture(scope="module")
def raw():
    """The raw tables, read with the csv module: patients and each subject's events in file order."""
    patients = {r["Id"]: r for r in _rows("patients")}
    events = {pid: [] for pid in patients}
    for stem, date_col, prefix in TABLES:
        for r in _rows(stem):
            stop = _day(r["STOP"]) if r.get("STOP") else None
            events[r["PATIENT"]].append((_day(r[date_col]), f"{prefix}//{r['CODE']}", stop))
    last = max(d for evs in events.values() for d, _, _ in evs)
    deaths = [_day(p["DEATHDATE"]) for p in patients.values() if p["DEATHDATE"]]
    return {"patients": patients, "events": events, "end": max([last, *deaths])}


def _reference_labels(raw, landmarks, horizon, min_age):
    """The task's rows and outcomes by the definition, one (patient, landmark) at a time."""
    out = {}
    for pid, p in raw["patients"].items():
        birth = _day(p["BIRTHDATE"])
        death = _day(p["DEATHDATE"]) if p["DEATHDATE"] else None
        for text in landmarks:
            lm = date.fromisoformat(text)
            if (lm - birth).days / 365.25 < min_age:
                continue
            if death is not None and death <= lm:
                continue
            if not any(_in_history(*ev, lm) for ev in raw["events"][pid]):
                continue
            last_day = min(lm.replace(year=lm.year + horizon), raw["end"])
            event = death is not None and death <= last_day
            # a death at the start of its day; a survivor to the end of the last day
            days = (death - lm).days if event else (last_day - lm).days + 1
            out[(pid, lm)] = (event, days / 365.25)
    return out


def _reference_history(raw, pid, lm):
    """Visits (one per day, codes in table then file order, each once) in the history window."""
    birth = _day(raw["patients"][pid]["BIRTHDATE"])
    visits = {}
    for d, code, stop in raw["events"][pid]:  # tables in order, each in file order
        if _in_history(d, code, stop, lm):
            visit = visits.setdefault(d, [])
            if code not in visit:
                visit.append(code)
    days = sorted(visits)
    return [visits[d] for d in days], [(d - birth).days / 365.25 for d in days]


@pytest.fixture(scope="module")
def task():
    return load_synthea_sample(return_groups=True)


def _keys(X):
    return [(s, t.date()) for s, t in X.index]


def test_patient_frame_contract(task):
    X, y, groups = task
    assert list(X.columns) == ["codes", "ages", "index_age", "static"]
    assert list(X.index.names) == ["subject_id", "prediction_time"]
    assert X.index.is_unique and X.index.is_monotonic_increasing
    flat = flatten_ehr(X)  # the package's own validator accepts it
    assert flat.n_patients == len(X) == len(y) == len(groups)
    for visits, ages, index_age, static in X[["codes", "ages", "index_age", "static"]].itertuples(
        index=False
    ):
        assert len(visits) == len(ages) > 0
        assert all(len(v) > 0 and all(isinstance(c, str) for c in v) for v in visits)
        # one visit per day: ages strictly increase, and all precede the landmark
        assert all(a < b for a, b in zip(ages, ages[1:]))
        assert ages[-1] < index_age
        assert [c.split("//")[0] for c in static] == ["GENDER", "RACE", "ETHNICITY"]
    assert y.dtype.names == ("event", "time")
    assert (y["time"] > 0).all()


def test_histories_match_a_loop_over_the_raw_tables(task, raw):
    X, _, _ = task
    for (pid, lm), visits, ages, index_age, static in zip(
        _keys(X), X["codes"], X["ages"], X["index_age"], X["static"]
    ):
        ref_visits, ref_ages = _reference_history(raw, pid, lm)
        assert visits == ref_visits, (pid, lm)
        np.testing.assert_allclose(ages, ref_ages, rtol=0, atol=1e-12)
        birth = _day(raw["patients"][pid]["BIRTHDATE"])
        assert index_age == pytest.approx((lm - birth).days / 365.25, abs=1e-12)
        p = raw["patients"][pid]
        assert static == [f"GENDER//{p['GENDER']}", f"RACE//{p['RACE']}",
                          f"ETHNICITY//{p['ETHNICITY']}"]


def test_no_event_on_or_after_the_landmark(task, raw):
    X, _, _ = task
    for (pid, lm), visits, ages in zip(_keys(X), X["codes"], X["ages"]):
        birth = _day(raw["patients"][pid]["BIRTHDATE"])
        later = {c for d, c, _ in raw["events"][pid] if d >= lm}
        earlier = {c for d, c, _ in raw["events"][pid] if d < lm}
        seen = {c for v in visits for c in v}
        # a code seen only on or after the landmark never reaches the row
        assert not (seen & (later - earlier)), (pid, lm)
        assert max(ages) < (lm - birth).days / 365.25


def test_labels_match_a_loop_over_patients_csv(task, raw):
    X, y, _ = task
    ref = _reference_labels(raw, SYNTHEA_LANDMARKS, horizon=2, min_age=18.0)
    assert _keys(X) == sorted(ref)
    for key, event, time in zip(_keys(X), y["event"], y["time"]):
        assert event == ref[key][0], key
        assert time == pytest.approx(ref[key][1], abs=1e-12), key
    # disjoint two-year windows: every death is the event of at most one row
    dead = [pid for (pid, _), e in zip(_keys(X), y["event"]) if e]
    assert len(dead) == len(set(dead))


def test_overlapping_windows_and_other_designs(raw):
    landmarks, horizon, min_age = ("2012-06-01", "2014-07-01", "2019-03-01"), 3, 40.0
    X, y = load_synthea_sample(landmarks=landmarks, horizon=horizon, min_age=min_age)
    ref = _reference_labels(raw, landmarks, horizon=horizon, min_age=min_age)
    assert _keys(X) == sorted(ref)
    np.testing.assert_array_equal(y["event"], [ref[k][0] for k in _keys(X)])
    np.testing.assert_allclose(y["time"], [ref[k][1] for k in _keys(X)], rtol=0, atol=1e-12)
    # the 2019 windows are cut at the export's end
    last = np.array([t.year == 2019 for _, t in X.index])
    end = raw["end"]
    assert np.allclose(y["time"][last & ~y["event"]], ((end - date(2019, 3, 1)).days + 1) / 365.25)
    # windows overlap: some deaths are the event of two rows
    dead = pd.Series([pid for (pid, _), e in zip(_keys(X), y["event"]) if e])
    assert dead.duplicated().any()


def test_a_death_on_the_last_day_of_follow_up_is_an_event(raw):
    """Follow-up windows are closed: a death exactly ``horizon`` years after the landmark counts."""
    deaths = sorted((_day(p["DEATHDATE"]), pid) for pid, p in raw["patients"].items()
                    if p["DEATHDATE"] and _day(p["DEATHDATE"]).year > 2015)
    death, pid = next((d, pid) for d, pid in deaths if (d.month, d.day) != (2, 29))
    lm = death.replace(year=death.year - 3)
    X, y = load_synthea_sample(landmarks=[lm.isoformat()], horizon=3, min_age=0)
    row = _keys(X).index((pid, lm))
    assert y["event"][row]
    assert y["time"][row] == pytest.approx((death - lm).days / 365.25)


def test_the_history_window_starts_where_every_record_is_complete(raw, task):
    """The design rests on Synthea's export window: the last 10 years of each record.

    Immunizations are never kept from before the window, so they show it: each lies within
    10 years before its record's end (the death, or the export's last day). The history
    window must start after that window opens for everyone; before it a row holds only
    conditions, care plans and allergies still active at its start, and some rows do.
    """
    ten_years = 3653  # days, with leap days
    for pid, p in raw["patients"].items():
        end = _day(p["DEATHDATE"]) if p["DEATHDATE"] else raw["end"]
        for d, code, _ in raw["events"][pid]:
            if code.startswith("IMMUNIZATION//"):
                assert (end - d).days <= ten_years, (pid, d)
    assert (raw["end"] - START).days < ten_years
    X, _, _ = task
    n_before = 0
    for (pid, _), visits, ages in zip(_keys(X), X["codes"], X["ages"]):
        birth = _day(raw["patients"][pid]["BIRTHDATE"])
        active = {c for d, c, stop in raw["events"][pid]
                  if d < START and (stop is None or stop > START)}
        for visit, age in zip(visits, ages):
            if age < (START - birth).days / 365.25:
                n_before += 1
                assert not any(c.startswith("IMMUNIZATION//") for c in visit)
                assert set(visit) <= active, (pid, visit)
    assert n_before > 0


def test_groups_are_the_subjects(task):
    X, y, groups = task
    np.testing.assert_array_equal(groups, X.index.get_level_values("subject_id").to_numpy())
    X2, y2 = load_synthea_sample()
    pd.testing.assert_frame_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_event_table(raw, task):
    events, labels = load_synthea_sample(as_events=True)
    assert list(events.columns) == ["subject_id", "time", "code", "stop"]
    codes = events["code"]
    n_patients = len(raw["patients"])
    n_deaths = sum(bool(p["DEATHDATE"]) for p in raw["patients"].values())
    assert (codes == "MEDS_BIRTH").sum() == n_patients
    assert (codes == "MEDS_DEATH").sum() == n_deaths
    static = events["time"].isna()
    assert static.sum() == 3 * n_patients
    assert codes[static].str.match(r"^(GENDER|RACE|ETHNICITY)//").all()
    n_events = sum(len(v) for v in raw["events"].values())
    assert len(events) == 4 * n_patients + n_deaths + n_events
    # per subject: the static rows first, then times in order
    for _, g in events.groupby("subject_id", sort=False):
        n_static = int(g["time"].isna().sum())
        assert g["time"].iloc[:n_static].isna().all()
        assert g["time"].iloc[n_static:].is_monotonic_increasing
    X, y, _ = task
    assert list(labels.columns) == ["subject_id", "prediction_time", "event", "time"]
    assert list(zip(labels["subject_id"], labels["prediction_time"])) == list(X.index)
    np.testing.assert_array_equal(labels["event"], y["event"])


def test_from_events_rebuilds_the_rows(task):
    """The package's converter, on the history window with strict cuts, gives the same X."""
    X, _, _ = task
    events, labels = load_synthea_sample(as_events=True)
    start = pd.Timestamp(SYNTHEA_HISTORY_START)
    # the history window: from the start on, or still active at the start; no death rows
    timed = events["time"].notna()
    window = (events["time"] >= start) | events["stop"].isna() | (events["stop"] > start)
    keep = ~timed | (events["code"] == "MEDS_BIRTH") | window & (events["code"] != "MEDS_DEATH")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no row may be dropped
        ref = from_events(events.loc[keep, ["subject_id", "time", "code"]],
                          prediction_times=labels[["subject_id", "prediction_time"]],
                          visit_resolution="day", strict=True)
    assert list(ref.index) == list(X.index)
    assert ref["codes"].tolist() == X["codes"].tolist()
    assert ref["static"].tolist() == X["static"].tolist()
    np.testing.assert_allclose(np.concatenate(ref["ages"].tolist()),
                               np.concatenate(X["ages"].tolist()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref["index_age"], X["index_age"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"landmarks": ["2021-01-01"]}, "after the export's last day"),
        ({"landmarks": ["2005-01-01"]}, "first day of complete records"),
        ({"landmarks": [SYNTHEA_HISTORY_START]}, "first day of complete records"),
        ({"landmarks": ["2014-01-01", "2014-01-01"]}, "distinct"),
        ({"landmarks": []}, "one or more dates"),
        ({"landmarks": ["not a date"]}, "must be dates"),
        ({"landmarks": ["2014-01-01 12:00"]}, "whole days"),
        ({"horizon": 2.5}, "whole number of years"),
        ({"horizon": 0}, "whole number of years"),
        ({"min_age": -1}, "min_age"),
        ({"as_events": True, "return_groups": True}, "return_groups"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_synthea_sample(**kwargs)


def test_notice_and_package_data_travel_with_the_csvs():
    notice = DATA.joinpath("NOTICE.md").read_text()
    assert notice.startswith("# Synthea sample")
    assert "ds4biomed" in notice and "Changes in this copy" in notice
    # every vendored file is declared as package data, so that wheels carry it
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"][
        "survbehrt.datasets"
    ]
    folder = Path(str(DATA))
    vendored = {p.relative_to(folder.parent.parent).as_posix() for p in folder.iterdir()}
    declared = {p.relative_to(folder.parent.parent).as_posix()
                for pattern in patterns for p in folder.parent.parent.glob(pattern)}
    assert vendored <= declared
    assert {f"data/synthea_sample/{s}.csv.gz" for s in
            ("patients", "conditions", "immunizations", "careplans", "allergies")} <= vendored


def test_events_on_the_landmark_day_are_left_out(raw):
    """2018-01-05 is the busiest day of the sample: its events belong to no history."""
    lm = date(2018, 1, 5)
    X, _ = load_synthea_sample(landmarks=[lm.isoformat()], horizon=1)
    caught = 0
    for (pid, _), visits in zip(_keys(X), X["codes"]):
        assert visits == _reference_history(raw, pid, lm)[0]
        # what a history kept up to and including the landmark day would hold
        inclusive = _reference_history(raw, pid, lm + timedelta(days=1))[0]
        caught += inclusive != visits
    assert caught > 0  # the check above had something to catch


# --------------------------------------------------------------- the benchmark on the sample


def test_benchmark_folds_keep_each_patient_on_one_side(task):
    from survbehrt.benchmark import make_folds, subject_groups

    X, y, groups = task
    np.testing.assert_array_equal(subject_groups(X), groups)
    folds = make_folds(X, y["event"], 5, random_state=0)
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(X)))  # each row tested once
    for train, test in folds:
        assert set(groups[train]).isdisjoint(groups[test])
        assert len(train) + len(test) == len(X)


def test_a_split_with_a_patient_on_both_sides_is_refused(task):
    from survbehrt.benchmark import check_group_split

    _, _, groups = task
    first = groups[0]
    rows = np.flatnonzero(groups == first)
    assert len(rows) >= 2
    subjects = pd.unique(groups[groups != first])
    train = np.flatnonzero(np.isin(groups, subjects[:100]))
    test = np.flatnonzero(np.isin(groups, subjects[100:]))
    with pytest.raises(ValueError, match=f"fold 3 puts 1 subject.*{first}"):
        check_group_split(groups, np.append(train, rows[0]), np.append(test, rows[1:]), fold=3)
    check_group_split(groups, train, np.append(test, rows))  # fine


def test_one_row_per_subject_keeps_plain_stratified_folds():
    from sklearn.model_selection import StratifiedKFold

    from survbehrt.benchmark import make_folds, subject_groups

    X = pd.DataFrame({"codes": [[["a"]]] * 10, "ages": [[1.0]] * 10},
                     index=pd.Index(list("abcdefghij"), name="subject_id"))
    event = np.arange(10) % 2 == 0
    assert subject_groups(X) is None
    ref = StratifiedKFold(2, shuffle=True, random_state=0).split(np.zeros(10), event)
    for (tr, te), (rtr, rte) in zip(make_folds(X, event, 2, 0), ref):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(te, rte)


def test_benchmark_runs_on_the_sample_with_the_age_baseline(tmp_path, task):
    from sksurv.metrics import concordance_index_censored

    from survbehrt.benchmark import BenchmarkSettings, make_folds, run_benchmark

    settings = BenchmarkSettings(dataset="synthea-sample", folds=2, models=["Cox-age"], quick=True)
    summary = run_benchmark(settings, out=tmp_path, quiet=True, plots=False, log=lambda *a: None)
    assert list(summary.index) == ["Cox-age"]
    rows = pd.read_csv(tmp_path / "results.csv")
    # Cox on age alone ranks by age: its C-index is that of the age at the landmark
    X, y, _ = task
    for fold, (_, test) in enumerate(make_folds(X, y["event"], 2, 0)):
        ref = concordance_index_censored(y["event"][test], y["time"][test],
                                         X["index_age"].to_numpy()[test])[0]
        got = rows.loc[(rows["model"] == "Cox-age") & (rows["fold"] == fold), "harrell_c"]
        assert got.item() == pytest.approx(ref)


def test_a_tuned_baseline_searches_on_patient_grouped_inner_folds(task):
    from sklearn.model_selection import GridSearchCV, KFold

    from survbehrt.benchmark import BenchmarkSettings, _fit, make_models

    X, y, groups = task
    recipe = make_models(BenchmarkSettings(models=["Cox-age"]).resolved())["Cox-age"]
    search = GridSearchCV(recipe, {"coxphsurvivalanalysis__alpha": [0.1, 1.0]}, cv=KFold(3))
    _fit(search, X, y, groups, random_state=0)
    splits = list(search.cv.split(X, y, groups))
    assert len(splits) == 3 == search.n_splits_
    for train, test in splits:
        assert set(groups[train]).isdisjoint(groups[test])
