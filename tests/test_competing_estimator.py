"""BEHRTCompetingRisksEstimator: one cause is the survival estimator, no signal is Aalen–Johansen,
per-cause curves exact and coherent, the scikit-learn protocol, save / load."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sksurv.nonparametric import cumulative_incidence_competing_risks
from sksurv.util import Surv

from survbehrt import BEHRTCompetingRisksEstimator, BEHRTSurvivalEstimator
from survbehrt.competing_hazards import (
    all_cause_logits,
    cause_specific_concordance,
    cumulative_incidence_at,
    incidence_curves,
)
from survbehrt.competing_metrics import cause_specific_c
from survbehrt.data import competing_y
from survbehrt.datasets.competing import make_synthetic_competing

from helpers import no_signal_competing, random_cohort

TINY = dict(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=2, batch_size=32,
            time_bins=5, early_stopping=None, validation_fraction=0, random_state=0, n_threads=1,
            wide=None)  # the wide path where a test names it (each cause adds a Cox fit)


def tiny(**params):
    return BEHRTCompetingRisksEstimator(**{**TINY, **params})


@pytest.fixture(scope="module")
def data():
    X, y, _ = make_synthetic_competing(n_patients=150, random_state=3)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return tiny(cause="outcome").fit(X, y)


# ------------------------------------------------------------ one cause, no signal


@pytest.mark.parametrize("wide", [None, "joint"])
def test_one_cause_is_the_survival_estimator(data, wide):
    # same parameters drawn in the same order, same start and likelihood: same model
    X, y = data
    event = (y["event"] == 1).astype(int)
    kw = dict(TINY, wide=wide, max_epochs=3, validation_fraction=0.2, early_stopping="loss")
    one = BEHRTCompetingRisksEstimator(**kw).fit(X, competing_y(event, y["time"]))
    single = BEHRTSurvivalEstimator(**kw).fit(X, Surv.from_arrays(event.astype(bool), y["time"]))
    surv = single.predict_survival_function(X, return_array=True)
    np.testing.assert_allclose(one.predict_survival_function(X, return_array=True), surv,
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(one.predict_cumulative_incidence(X, return_array=True)[:, 0],
                               1 - surv, rtol=0, atol=1e-6)
    # predict: 1 - S summed over the grid's edges (the survival one sums -log S there)
    cuts = single.time_grid_.cuts_[1:]
    expected = [np.sum(1 - f(cuts)) for f in single.predict_survival_function(X)]
    np.testing.assert_allclose(one.predict(X), expected, rtol=1e-6)


def _aalen_johansen_gap(n, seed):
    X, y = no_signal_competing(n, seed)
    est = tiny(max_epochs=0, time_bins=10).fit(X, y)
    times, aj = cumulative_incidence_competing_risks(y["event"], y["time"])
    at = np.linspace(0.2, 9.5, 40)
    reference = aj[1:, np.searchsorted(times, at, side="right") - 1]  # (2, n_times)
    predicted = est.predict_cumulative_incidence(X.iloc[:50], return_array=False)
    mean = np.array([[np.mean([f(t) for f in predicted[:, c]]) for t in at] for c in range(2)])
    return np.abs(mean - reference).max()


def test_a_fit_that_learns_nothing_answers_aalen_johansen_fast():
    assert _aalen_johansen_gap(2000, seed=0) < 0.03


@pytest.mark.slow
def test_a_fit_that_learns_nothing_answers_aalen_johansen():
    assert _aalen_johansen_gap(10_000, seed=1) < 0.02


# ------------------------------------------------------------------ the answers


def test_incidence_curves_are_exact_and_sum_to_one_minus_survival(fitted, data):
    X, _ = data
    logits = fitted._last_visit_logits(X.iloc[:4])
    cuts = fitted.time_grid_.cuts_
    curves = fitted.predict_cumulative_incidence(X.iloc[:4])
    assert curves.shape == (4, 2)
    t = np.array([0.0, 0.37 * cuts[1], 0.5 * (cuts[2] + cuts[3]), cuts[-1]])
    surv = fitted.predict_survival_function(X.iloc[:4])
    for i in range(4):
        # from the definition: F_c(t) = int_0^t S(u) lambda_c(u) du, by a fine Riemann sum
        u = np.linspace(0, t[-1], 200_001)
        k = np.minimum(np.searchsorted(cuts, u, side="right") - 1, len(cuts) - 2)
        rate = np.logaddexp(0, logits[i][:, k]) / np.diff(cuts)[k]  # (C, n_u)
        s_u = np.exp(-np.concatenate([[0], np.cumsum(rate.sum(0)[:-1] * np.diff(u))]))
        dens = s_u * rate
        f = np.concatenate([np.zeros((2, 1)), np.cumsum((dens[:, 1:] + dens[:, :-1]) / 2
                                                        * np.diff(u), axis=1)], axis=1)
        for c in range(2):
            np.testing.assert_allclose(curves[i, c](t), np.interp(t, u, f[c]), atol=1e-5)
        np.testing.assert_allclose(curves[i, 0](t) + curves[i, 1](t), 1 - surv[i](t), atol=1e-12)
    one = fitted.predict_cumulative_incidence(X.iloc[:4], cause="death", return_array=True)
    np.testing.assert_allclose(one, cumulative_incidence_at(logits, cuts, fitted.unique_times_)[:, 1])
    # one cause's curves, built alone, are that cause's column of every cause's
    alone = fitted.predict_cumulative_incidence(X.iloc[:4], cause="death")
    assert alone.shape == (4,) and all(f.cause == 2 for f in alone)
    for i in range(4):
        np.testing.assert_array_equal(alone[i](t), curves[i, 1](t))


def test_all_cause_logits_sum_the_hazards():
    logits = np.random.default_rng(0).normal(size=(3, 2, 4)) * 3
    eta = np.logaddexp(0, all_cause_logits(logits))
    np.testing.assert_allclose(eta, np.logaddexp(0, logits).sum(axis=1), rtol=1e-10)
    assert incidence_curves(logits, [0, 1, 2, 3, 4], 4.0).shape == (3, 2)


def _wolbers_loop(event, time, risk, cause):
    num = den = 0.0
    for i in range(len(event)):
        if event[i] != cause:
            continue
        for j in range(len(event)):
            if (time[j] > time[i] or (time[j] == time[i] and event[j] != cause)
                    or (event[j] not in (0, cause))):
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def test_cause_specific_concordance_is_wolbers():
    rng = np.random.default_rng(2)
    event = rng.integers(0, 3, size=80)
    time = rng.integers(1, 15, size=80).astype(float)  # ties on purpose
    risk = rng.integers(0, 10, size=80).astype(float)
    for cause in (1, 2):
        assert cause_specific_concordance(event, time, risk, cause) == pytest.approx(
            _wolbers_loop(event, time, risk, cause))
    assert np.isnan(cause_specific_concordance(np.zeros(5, int), time[:5], risk[:5], 1))


def test_score_is_the_cause_specific_c_of_predict(fitted, data):
    X, y = data
    try:
        for cause in ("outcome", 2):
            fitted.set_params(cause=cause)
            assert fitted.score(X, y) == pytest.approx(cause_specific_c(y, fitted.predict(X), cause))
        fitted.set_params(cause="outcome", horizon=2.0)
        np.testing.assert_allclose(fitted.predict(X), [
            f(2.0) for f in fitted.predict_cumulative_incidence(X, cause="outcome")])
    finally:
        fitted.set_params(cause="outcome", horizon=None)


# ------------------------------------------------------------------ checks


def test_clear_errors(data):
    X, y = data
    with pytest.raises(TypeError, match="boolean event field"):
        tiny().fit(X, Surv.from_arrays(y["event"] > 0, y["time"]))
    with pytest.raises(ValueError, match="cause 'stroke' is not one of"):
        tiny(cause="stroke").fit(X, y)
    with pytest.raises(ValueError, match="loss="):
        tiny(loss="hybrid").fit(X, y)
    with pytest.raises(ValueError, match="wide="):
        tiny(wide="both").fit(X, y)


# ------------------------------------------------------------------ ecosystem


def test_landmarks_all_trains_on_every_visit(data):
    X, y = data
    last = tiny(landmarks="last", max_epochs=1).fit(X, y)
    every = tiny(landmarks="all", max_epochs=1).fit(X, y)
    assert not np.allclose(last.predict(X), every.predict(X))
    assert np.isfinite(every.history_[-1, "train_loss"])


def test_each_cause_starts_at_its_own_cox_fit(data):
    # the wide start of cause c is the survival estimator's start on cause c's y
    X, y = data
    est = tiny(wide="offset", max_epochs=0).fit(X, y)
    wide = est.net_.module_.wide
    assert not any(p.requires_grad for p in wide.parameters())
    for c in (1, 2):
        # on the same grid (the competing one is placed on all-cause events)
        single = BEHRTSurvivalEstimator(**{**TINY, "wide": "offset", "max_epochs": 0,
                                           "time_bins": est.time_grid_.cuts_}).fit(
            X, Surv.from_arrays(y["event"] == c, y["time"]))
        np.testing.assert_array_equal(wide.code_weight.weight[:, c - 1].detach(),
                                      single.net_.module_.wide.code_weight.weight[:, 0].detach())
        assert est.wide_alpha_[c - 1] == single.wide_alpha_
    # two causes' terms, each on its own logits: the incidences are not the one-term model's
    assert wide.code_weight.weight.shape[1] == 2


def test_clone_pickle_save_load(fitted, data, tmp_path):
    X, y = data
    wide = tiny(wide="joint", max_epochs=1).fit(X, y)
    wide.save(tmp_path / "w.pt")
    np.testing.assert_array_equal(BEHRTCompetingRisksEstimator.load(tmp_path / "w.pt").predict(X),
                                  wide.predict(X))
    again = clone(fitted).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    for other in (pickle.loads(pickle.dumps(fitted)), None):
        if other is None:
            fitted.save(tmp_path / "m.pt")
            other = BEHRTCompetingRisksEstimator.load(tmp_path / "m.pt")
        assert other.cause == "outcome" and other.cause_names_ == ("outcome", "death")
        np.testing.assert_array_equal(other.predict(X), fitted.predict(X))
        np.testing.assert_array_equal(other.predict_cumulative_incidence(X, return_array=True),
                                      fitted.predict_cumulative_incidence(X, return_array=True))
    with pytest.raises(ValueError, match="holds a BEHRTCompetingRisksEstimator"):
        BEHRTSurvivalEstimator.load(tmp_path / "m.pt")


def test_grid_search_scores_the_cause(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = GridSearchCV(tiny(max_epochs=1, cause="death"), {"lr": [1e-3, 3e-3]},
                              cv=KFold(2, shuffle=True, random_state=0), error_score="raise")
        search.fit(X, y)
    est = search.best_estimator_
    assert est.cause == "death"
    assert search.score(X, y) == pytest.approx(cause_specific_c(y, est.predict(X), "death"))


def test_unnamed_causes_are_numbered(data):
    X, _ = random_cohort(n=60, seed=4)
    rng = np.random.default_rng(0)
    y = competing_y(rng.integers(0, 3, size=60), rng.uniform(0.1, 5, size=60))
    est = tiny(cause=2).fit(X, y)
    assert est.cause_names_ == ("1", "2")
    cuts = est.time_grid_.cuts_[1:]
    np.testing.assert_allclose(est.predict(X), [
        np.sum(f(cuts)) for f in est.predict_cumulative_incidence(X, cause=2)])


def test_optuna_objective_is_the_cross_validated_cause_specific_c(data):
    import optuna
    from sklearn.model_selection import cross_val_score

    from survbehrt.tuning import optuna_objective

    X, y = data
    cv = KFold(2, shuffle=True, random_state=0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    space = lambda trial: {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        study.optimize(optuna_objective(tiny(max_epochs=1, cause="death"), X, y, space, cv=cv),
                       n_trials=1)
        trial = study.trials[0]
        expected = cross_val_score(tiny(max_epochs=1, cause="death", **trial.params), X, y, cv=cv)
    np.testing.assert_array_equal(trial.user_attrs["cv_scores"], expected)


@pytest.mark.parametrize("strategy", ["frozen", "lora"])
def test_a_pretrained_encoder_is_adapted_as_in_the_survival_estimator(data, strategy):
    from helpers import tiny_pretrainer

    X, y = data
    pre = tiny_pretrainer().fit(X)
    kw = dict(pretrained=pre, strategy=strategy, max_epochs=1, lr=1e-2)
    est = tiny(**kw).fit(X, y)
    single = BEHRTSurvivalEstimator(**{**TINY, **kw}).fit(X, Surv.from_arrays(y["event"] > 0,
                                                                                 y["time"]))
    # the same parameters train, but for the head's second cause
    head_extra = est.net_.module_.head.output.weight[: est.time_grid_.n_bins_].numel() + \
        est.time_grid_.n_bins_
    assert est.n_trainable_params_ == single.n_trainable_params_ + head_extra
    if strategy == "frozen":
        encoder = est.net_.module_.encoder.state_dict()
        for name, value in pre.encoder_state_dict().items():
            np.testing.assert_array_equal(encoder[name], value)
