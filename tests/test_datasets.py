"""Tests of the synthetic cohort generators."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored

from survbehrt.data import validation
from survbehrt.data.features import CodeCountTransformer
from survbehrt.datasets import make_synthetic_ehr, make_synthetic_events


@pytest.fixture(scope="module")
def sequence_cohort():
    return make_synthetic_ehr(
        n_patients=3000, scenario="sequence", random_state=0, return_info=True
    )


@pytest.fixture(scope="module")
def counts_cohort():
    return make_synthetic_ehr(n_patients=3000, scenario="counts", random_state=0, return_info=True)


def test_deterministic_under_random_state():
    a = make_synthetic_ehr(n_patients=200, random_state=7)
    b = make_synthetic_ehr(n_patients=200, random_state=7)
    pd.testing.assert_frame_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    c = make_synthetic_ehr(n_patients=200, random_state=8)
    assert a[0]["codes"].tolist() != c[0]["codes"].tolist()
    assert not np.array_equal(a[1]["time"], c[1]["time"])
    rng_a = make_synthetic_ehr(n_patients=50, random_state=np.random.default_rng(1))
    rng_b = make_synthetic_ehr(n_patients=50, random_state=np.random.default_rng(1))
    pd.testing.assert_frame_equal(rng_a[0], rng_b[0])


def test_passes_the_package_checks(sequence_cohort):
    X, y, _, _ = sequence_cohort
    validation.check_ehr_frame(X, require_index_age=True)
    event, time = validation.check_survival_y(y, n_samples=len(X))
    assert event.any() and (time > 0).all()


@pytest.mark.parametrize("scenario", ["sequence", "counts"])
def test_shape_of_the_cohort(scenario, sequence_cohort, counts_cohort):
    X, y, risk, info = sequence_cohort if scenario == "sequence" else counts_cohort
    n = len(X)
    assert list(X.columns) == ["codes", "ages", "index_age"]
    assert isinstance(X.index, pd.RangeIndex) and X.index.equals(pd.RangeIndex(n))
    n_visits = X["codes"].map(len).to_numpy()
    assert n_visits.min() >= 3 and n_visits.max() <= 30
    assert len(np.unique(n_visits)) > 10  # a spread, not a constant
    for visits, ages, index_age in zip(X["codes"], X["ages"], X["index_age"]):
        assert type(visits) is list and all(type(v) is list and v for v in visits)
        assert all(type(c) is str for v in visits for c in v)
        assert all(len(set(v)) == len(v) for v in visits)  # no repeat within a visit
        assert type(ages) is list and len(ages) == len(visits)
        assert all(type(a) is float for a in ages)
        assert np.all(np.diff(ages) > 0)  # visits on distinct days, oldest first
        assert 18.0 <= ages[0] and ages[-1] < index_age <= 90.0
        assert index_age - ages[-1] < 1.0  # the index follows the last visit shortly
    codes_per_visit = np.array([len(v) for visits in X["codes"] for v in visits])
    assert codes_per_visit.min() == 1 and codes_per_visit.max() > 3
    # Zipf-like: a few codes are common, most are rare.
    freq = pd.Series([c for visits in X["codes"] for v in visits for c in v]).value_counts()
    assert freq.iloc[0] > 10 * freq.iloc[len(freq) // 2]
    # Outcome: continuous times after the index, within the follow-up, some censoring.
    event, time = y["event"], y["time"]
    assert y.dtype.names == ("event", "time")
    assert (time > 0).all() and (time <= 8.0).all()
    assert len(np.unique(time)) == n  # no ties
    assert 0.3 <= event.mean() <= 0.65
    assert risk.shape == (n,) and risk.dtype == np.float64 and np.isfinite(risk).all()
    np.testing.assert_allclose(info["components"].sum(axis=1).to_numpy(), risk)


def _first_visit(visits, group):
    return next((i for i, v in enumerate(visits) if group.intersection(v)), None)


def test_sequence_risk_follows_the_documented_rules(sequence_cohort):
    """Recompute every term of true_risk from X with a plain loop, as the docstring says."""
    X, _, risk, info = sequence_cohort
    groups = {g: set(codes) for g, codes in info["signal_codes"].items()}
    assert [len(groups[g]) for g in "ABCD"] == [2, 2, 3, 3]
    effects = info["effects"]
    expected = np.zeros(len(X))
    n_order = n_recent = n_tempo = 0
    for i, (visits, ages, index_age) in enumerate(zip(X["codes"], X["ages"], X["index_age"])):
        before = [index_age - a for a in ages]
        a, b = _first_visit(visits, groups["A"]), _first_visit(visits, groups["B"])
        order = a is not None and b is not None and a < b
        recent = any(groups["C"].intersection(v) and t <= 2.0 for v, t in zip(visits, before))
        tempo = sum(t <= 1.0 for t in before) >= 3
        d_present = any(groups["D"].intersection(v) for v in visits)
        expected[i] = (
            effects["age"] * (index_age - 60.0) / 10.0
            + effects["D_present"] * d_present
            + effects["A_before_B"] * order
            + effects["C_recent"] * recent
            + effects["tempo"] * tempo
        )
        n_order += order
        n_recent += recent
        n_tempo += tempo
        # A and B: both or neither, each an episode of 1-3 consecutive visits, disjoint.
        where = {g: [j for j, v in enumerate(visits) if groups[g].intersection(v)] for g in "ABCD"}
        assert bool(where["A"]) == bool(where["B"])
        for g in "AB":
            if where[g]:
                assert where[g] == list(range(where[g][0], where[g][0] + len(where[g])))
                assert len(where[g]) <= 3
        assert not set(where["A"]) & set(where["B"])
        # C and D: one visit at most; no C code 1 to 3 years before the index.
        assert len(where["C"]) <= 1 and len(where["D"]) <= 1
        assert not any(1.0 < before[j] <= 3.0 for j in where["C"])
    np.testing.assert_allclose(risk, expected, atol=1e-12)
    # Every sequence effect concerns a sizeable share of the cohort.
    for count in (n_order, n_recent, n_tempo):
        assert 0.1 * len(X) < count < 0.6 * len(X)


def test_counts_risk_follows_the_documented_rules(counts_cohort):
    X, _, risk, info = counts_cohort
    betas = {code: b for code, b in info["effects"].items() if code != "age"}
    assert len(betas) == 6
    expected = info["effects"]["age"] * (X["index_age"].to_numpy() - 60.0) / 10.0
    for code, beta in betas.items():
        counts = X["codes"].map(lambda visits, c=code: sum(v.count(c) for v in visits))
        assert (counts > 1).any()
        expected = expected + beta * np.log1p(counts.to_numpy())
    np.testing.assert_allclose(risk, expected, atol=1e-12)


def _c_index(y, score):
    return concordance_index_censored(y["event"], y["time"], score)[0]


def _oracle_and_cox(cohort):
    X, y, risk, _ = cohort
    n_train = 2000
    model = make_pipeline(CodeCountTransformer(min_frequency=10), CoxPHSurvivalAnalysis(alpha=1.0))
    model.fit(X.iloc[:n_train], y[:n_train])
    y_test = y[n_train:]
    return _c_index(y_test, risk[n_train:]), _c_index(y_test, model.predict(X.iloc[n_train:]))


def test_sequence_scenario_hides_risk_from_count_features(sequence_cohort):
    oracle, cox = _oracle_and_cox(sequence_cohort)
    assert oracle - cox >= 0.03, (oracle, cox)
    assert cox > 0.55  # the counts still carry some of the risk (age, plain presence)


def test_counts_scenario_is_solved_by_cox_on_counts(counts_cohort):
    oracle, cox = _oracle_and_cox(counts_cohort)
    assert oracle - cox <= 0.03, (oracle, cox)


def test_effect_scale_zero_leaves_age_only():
    X, _, risk = make_synthetic_ehr(n_patients=100, random_state=1, effect_scale=0.0)
    _, _, _, info = make_synthetic_ehr(n_patients=100, random_state=1, return_info=True)
    np.testing.assert_allclose(risk, info["components"]["age"].to_numpy())


def test_bad_arguments():
    with pytest.raises(ValueError, match="scenario"):
        make_synthetic_ehr(n_patients=10, scenario="order")
    with pytest.raises(ValueError, match="n_codes"):
        make_synthetic_ehr(n_patients=10, n_codes=50)
    with pytest.raises(ValueError, match="n_patients"):
        make_synthetic_ehr(n_patients=0)
    with pytest.raises(ValueError, match="followup"):
        make_synthetic_ehr(n_patients=10, followup=(3.0, 1.0))


def test_synthetic_events_match_the_frame():
    events, labels = make_synthetic_events(n_patients=100, random_state=2)
    X, y, risk = make_synthetic_ehr(n_patients=100, random_state=2)
    assert list(events.columns) == ["subject_id", "time", "code"]
    assert pd.api.types.is_datetime64_any_dtype(events["time"])
    assert pd.api.types.is_datetime64_any_dtype(labels["prediction_time"])
    births = events[events["code"] == "MEDS_BIRTH"]
    assert births["subject_id"].tolist() == list(range(100))
    np.testing.assert_array_equal(labels["event"], y["event"])
    np.testing.assert_array_equal(labels["time"], y["time"])
    np.testing.assert_array_equal(labels["true_risk"], risk)
    # Index age = prediction time - birth, in years of 365.25 days.
    birth = births.set_index("subject_id")["time"]
    age = (labels["prediction_time"].to_numpy() - birth.to_numpy()) / pd.Timedelta(days=1) / 365.25
    np.testing.assert_allclose(age, X["index_age"], atol=1e-9)
    # The outcome rows sit after the prediction time, one per patient with the event.
    pt = labels.set_index("subject_id")["prediction_time"]
    outcome = events[events["code"] == "OUTCOME"]
    assert sorted(outcome["subject_id"]) == np.flatnonzero(y["event"]).tolist()
    assert (outcome["time"].to_numpy() > pt.loc[outcome["subject_id"]].to_numpy()).all()
    history = events[events["code"] != "MEDS_BIRTH"]
    n_before = (history["time"].to_numpy() <= pt.loc[history["subject_id"]].to_numpy()).sum()
    assert n_before == sum(len(v) for visits in X["codes"] for v in visits)
    without = make_synthetic_events(n_patients=100, random_state=2, include_future=False)[0]
    assert len(without) == n_before + 100
