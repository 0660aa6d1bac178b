"""``BEHRTEnsemble`` of competing-risks members: each cause's incidence the members' mean, the
risk of the recipe's cause (read at predict time), a null ensemble at Aalen-Johansen, and the
scikit-learn protocol."""

import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sksurv.nonparametric import cumulative_incidence_competing_risks

from survbehrt import BEHRTCompetingRisksEstimator, BEHRTEnsemble
from survbehrt.competing_metrics import cause_specific_c
from survbehrt.datasets.competing import make_synthetic_competing
from survbehrt.survival import MixtureCurve

from helpers import no_signal_competing, tiny_estimator

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=3, batch_size=32,
            time_bins=5, early_stopping="loss", validation_fraction=0.2, random_state=0,
            n_threads=1, wide=None)


def tiny(**params):
    return BEHRTCompetingRisksEstimator(**{**TINY, **params})


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = make_synthetic_competing(n_patients=200, random_state=4)
    return BEHRTEnsemble(tiny(cause="outcome"), n_members=3, random_state=0).fit(X, y), X, y


def _member_risks(members, X, cause, horizon=None):
    # each member asked as a user would: a copy of it set to the cause and horizon
    return [copy.deepcopy(m).set_params(cause=cause, horizon=horizon).predict(X) for m in members]


def test_risk_is_the_members_mean_for_the_recipes_cause(fitted):
    ens, X, _ = fitted
    X = X.iloc[:9]
    members = ens.estimators_
    assert ens.cause_names_ == members[0].cause_names_ and ens.n_causes_ == 2
    np.testing.assert_allclose(ens.predict(X), np.mean(_member_risks(members, X, "outcome"), axis=0),
                               rtol=1e-9)
    # another cause, and a horizon, without refitting: the recipe is read when predicting
    other = clone(ens.estimator).set_params(cause=2, horizon=1.5)
    ens.set_params(estimator=other)
    try:
        risk = ens.predict(X)
        expected = np.mean(_member_risks(members, X, 2, horizon=1.5), axis=0)
        np.testing.assert_allclose(risk, expected, rtol=1e-9)
        # at a horizon the risk is the mixture's incidence there
        curves = ens.predict_cumulative_incidence(X, cause=2)
        np.testing.assert_allclose(risk, [f(1.5) for f in curves], rtol=1e-9)
    finally:
        ens.set_params(estimator=tiny(cause="outcome"))
    assert not np.allclose(*_member_risks(members[:2], X, 1))  # the members differ


def test_incidence_is_the_mixture_and_sums_to_one_minus_survival(fitted):
    ens, X, _ = fitted
    X = X.iloc[:5]
    members = ens.estimators_
    cif = ens.predict_cumulative_incidence(X)
    surv = ens.predict_survival_function(X)
    assert cif.shape == (5, 2) and isinstance(cif[0, 0], MixtureCurve)
    upper = min(m.time_grid_.max_time_ for m in members)
    assert cif[0, 0].domain == (0.0, upper) == surv[0].domain
    for t in (0.0, 0.4, 2.3, upper / 2, upper):
        for i in range(len(X)):
            for c in range(2):
                mean = sum(m.predict_cumulative_incidence(X.iloc[[i]])[0, c](t)
                           for m in members) / len(members)
                assert cif[i, c](t) == pytest.approx(mean, rel=1e-6, abs=1e-12)
            assert cif[i, 0](t) + cif[i, 1](t) == pytest.approx(1 - surv[i](t), abs=1e-9)
    # the array forms read the same curves at unique_times_; one cause by name
    array = ens.predict_cumulative_incidence(X, return_array=True)
    assert array.shape == (5, 2, len(ens.unique_times_))
    expected = np.array([[f(ens.unique_times_) for f in row] for row in cif])
    np.testing.assert_allclose(array, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ens.predict_cumulative_incidence(X, cause="death", return_array=True),
                               array[:, 1])
    np.testing.assert_allclose(ens.predict_survival_function(X, return_array=True),
                               1 - array.sum(axis=1), atol=1e-9)


def test_score_is_the_cause_specific_c_of_predict(fitted):
    ens, X, y = fitted
    assert ens.score(X, y) == pytest.approx(cause_specific_c(y, ens.predict(X), 1))


def test_a_null_ensemble_answers_aalen_johansen():
    X, y = no_signal_competing(2000, seed=5)
    member = tiny(max_epochs=0, time_bins=10, early_stopping=None, validation_fraction=0)
    ens = BEHRTEnsemble(member, n_members=2, random_state=0).fit(X, y)
    times, aj = cumulative_incidence_competing_risks(y["event"], y["time"])
    at = np.linspace(0.2, min(9.5, ens.unique_times_.max()), 30)
    reference = aj[1:, np.searchsorted(times, at, side="right") - 1]
    curves = ens.predict_cumulative_incidence(X.iloc[:1])[0]
    predicted = np.array([[f(t) for t in at] for f in curves])
    assert np.abs(predicted - reference).max() < 0.03


def test_protocol_and_errors(fitted):
    ens, X, y = fitted
    assert np.allclose(pickle.loads(pickle.dumps(ens)).predict(X), ens.predict(X))
    search = GridSearchCV(BEHRTEnsemble(tiny(cause="death", max_epochs=1), n_members=2,
                                        random_state=0),
                          {"estimator__lr": [1e-3, 3e-3]}, cv=KFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert np.isfinite(search.best_score_)
    # a survival recipe has no incidence to give
    assert not hasattr(BEHRTEnsemble(tiny_estimator()), "predict_cumulative_incidence")
    assert hasattr(BEHRTEnsemble(tiny()), "predict_cumulative_incidence")
    with pytest.raises(TypeError, match="BEHRTCompetingRisksEstimator members; got KFold"):
        BEHRTEnsemble(KFold()).fit(X, y)
    with pytest.raises(ValueError, match="cause"):
        BEHRTEnsemble(tiny(cause="stroke"), n_members=1).fit(X, y)
