"""``BEHRTEnsemble``: members with their own seeds, the mixture survival and geometric-mean risk
against their definitions, a null ensemble at Kaplan-Meier, and the scikit-learn protocol."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from survbehrt import BEHRTCompetingRisksEstimator, BEHRTEnsemble
from survbehrt.competing_hazards import IncidenceCurve
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.survival import MixtureCurve, SurvivalCurve

from helpers import tiny_estimator

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = make_synthetic_ehr(n_patients=200, random_state=0)
    member = tiny_estimator(early_stopping="loss", validation_fraction=0.2, max_epochs=3)
    return BEHRTEnsemble(member, n_members=3, random_state=0).fit(X, y), X, y


def test_members_have_their_own_seeds_and_differ(fitted):
    ens, X, _ = fitted
    assert len(set(ens.seeds_)) == 3
    assert [m.random_state for m in ens.estimators_] == list(ens.seeds_)
    risks = [m.predict(X) for m in ens.estimators_]
    assert not np.allclose(risks[0], risks[1])


def test_risk_is_the_geometric_mean_and_survival_the_mixture(fitted):
    ens, X, _ = fitted
    X = X.iloc[:7]
    members = ens.estimators_
    risk = ens.predict(X)
    for i in range(len(X)):
        product = 1.0
        for m in members:
            product *= m.predict(X.iloc[[i]])[0]
        assert risk[i] == pytest.approx(product ** (1 / len(members)), rel=1e-6)
    curves = ens.predict_survival_function(X)
    cumhaz = ens.predict_cumulative_hazard_function(X)
    upper = min(m.time_grid_.max_time_ for m in members)
    assert curves[0].domain == (0.0, upper)
    for t in (0.0, 0.37, 1.9, upper / 2, upper):
        for i in range(len(X)):
            mean = sum(m.predict_survival_function(X.iloc[[i]])[0](t) for m in members) / 3
            assert curves[i](t) == pytest.approx(mean, rel=1e-6)
            assert cumhaz[i](t) == pytest.approx(-np.log(mean), rel=1e-6, abs=1e-9)
    # the array form reads the same curves at unique_times_
    array = ens.predict_survival_function(X, return_array=True)
    assert array.shape == (len(X), len(ens.unique_times_))
    expected = np.array([curve(ens.unique_times_) for curve in curves])
    np.testing.assert_allclose(array, expected, rtol=1e-9)
    assert ens.unique_times_.max() <= upper
    with pytest.raises(ValueError, match="within"):
        curves[0](upper + 1.0)


def test_an_ensemble_that_learns_nothing_is_kaplan_meier():
    rng = np.random.default_rng(3)
    X, _, _ = make_synthetic_ehr(n_patients=2000, random_state=3)
    time = rng.weibull(1.3, len(X)) * 4.0
    censor = rng.uniform(0, 8, len(X))
    y = Surv.from_arrays(time <= censor, np.minimum(time, censor))
    member = tiny_estimator(max_epochs=0, wide=None, time_bins=20, recalibrate=False)
    ens = BEHRTEnsemble(member, n_members=2, random_state=0).fit(X, y)
    km_t, km_s = kaplan_meier_estimator(y["event"], y["time"])
    upper = ens.unique_times_.max()
    curve = ens.predict_survival_function(X.iloc[:1])[0]
    for t in np.linspace(0.1, min(upper, 6.0), 12):
        assert curve(t) == pytest.approx(km_s[np.searchsorted(km_t, t, side="right") - 1], abs=0.02)


def test_search_clone_pickle_and_errors(fitted):
    ens, X, y = fitted
    assert np.allclose(pickle.loads(pickle.dumps(ens)).predict(X), ens.predict(X))
    again = clone(ens).fit(X, y)
    assert np.allclose(again.predict(X), ens.predict(X))  # the seeds come from random_state
    search = GridSearchCV(BEHRTEnsemble(tiny_estimator(), n_members=2, random_state=0),
                          {"estimator__lr": [1e-3, 3e-3]}, cv=KFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert np.isfinite(search.best_score_)
    assert isinstance(search.best_estimator_.predict_survival_function(X.iloc[:2])[0], MixtureCurve)
    with pytest.raises(TypeError, match="boolean event field"):  # the recipe decides what y means
        BEHRTEnsemble(BEHRTCompetingRisksEstimator(), n_members=1).fit(X, y)
    with pytest.raises(ValueError, match="n_members"):
        BEHRTEnsemble(tiny_estimator(), n_members=0).fit(X, y)


def test_mixture_curve_checks_its_members():
    with pytest.raises(ValueError, match="kind='survival'"):
        MixtureCurve([])
    cuts = np.array([0.0, 1.0, 2.0])
    survival = SurvivalCurve(np.array([0.1, 0.2]), cuts, 2.0)
    incidence = IncidenceCurve(np.zeros((2, 2)), 1, cuts, 2.0)
    with pytest.raises(ValueError, match="kind='incidence'"):  # a survival curve is not one
        MixtureCurve([survival], kind="incidence")
    with pytest.raises(ValueError, match="kind='survival'"):
        MixtureCurve([incidence])
    # an incidence mixture is the mean of its members' incidences
    other = IncidenceCurve(np.ones((2, 2)), 1, cuts, 2.0)
    assert MixtureCurve([incidence, other], kind="incidence")(1.5) == pytest.approx(
        (incidence(1.5) + other(1.5)) / 2)


def test_members_share_a_fitted_pretrainer(fitted):
    from helpers import tiny_pretrainer

    _, X, y = fitted
    pre = tiny_pretrainer().fit(X)
    ens = BEHRTEnsemble(tiny_estimator(pretrained=pre, strategy="lora"), n_members=2,
                        random_state=0).fit(X, y)
    assert all(m.pretrained is pre for m in ens.estimators_)
    assert clone(ens).estimator.pretrained is pre


def test_members_fitted_in_parallel_equal_those_fitted_in_turn(fitted):
    _, X, y = fitted
    parallel = BEHRTEnsemble(tiny_estimator(), n_members=2, random_state=0, n_jobs=2).fit(X, y)
    in_turn = BEHRTEnsemble(tiny_estimator(), n_members=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(parallel.predict(X), in_turn.predict(X), rtol=1e-6)
