"""Optuna integration: OptunaSearchCV, and survbehrt.tuning's objective and pruning callback.

Real (tiny, single-threaded) fits; pruning is made deterministic with
``ThresholdPruner`` bounds that every score crosses.
"""

import copy
import pickle

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from optuna_integration import OptunaSearchCV
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_score
from skorch import NeuralNetRegressor

from survbehrt.tuning import PruningCallback, optuna_objective

from helpers import random_cohort, tiny_estimator, tiny_pretrainer

CV = KFold(n_splits=2, shuffle=True, random_state=0)

optuna.logging.set_verbosity(optuna.logging.WARNING)


make_estimator = tiny_estimator
make_pretrainer = tiny_pretrainer


def lr_and_loss(trial):
    """A search space for ``optuna_objective``."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "loss": trial.suggest_categorical("loss", ["nll", "hybrid"]),
    }


def make_study(direction="maximize", pruner=None):
    return optuna.create_study(
        direction=direction, sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=pruner or optuna.pruners.NopPruner(),
    )


def small_regression_net(callback, max_epochs=3, **kwargs):
    """A plain skorch net (no survbehrt inside) to exercise the callback on its own."""
    torch.manual_seed(0)
    return NeuralNetRegressor(
        torch.nn.Linear(2, 1), max_epochs=max_epochs, lr=0.05, verbose=0, callbacks=[callback],
        **kwargs,
    )


def regression_data():
    X = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    return X, X[:, :1] - X[:, 1:]


@pytest.fixture(scope="module")
def data():
    return random_cohort(n=80, seed=1)


# ---------------------------------------------------------------------- OptunaSearchCV


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:.*optuna.terminator.*:FutureWarning")
def test_optuna_search_cv_fits_and_predicts(data):
    X, y = data
    pretrainer = make_pretrainer().fit(X)
    search = OptunaSearchCV(
        make_estimator(strategy="lora", pretrained=pretrainer, max_epochs=1),
        {
            "lr": FloatDistribution(1e-4, 1e-2, log=True),
            "loss": CategoricalDistribution(["nll", "hybrid"]),
        },
        n_trials=2, cv=CV, random_state=0, error_score="raise",
    ).fit(X, y)
    trials = search.study_.trials
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(np.isfinite(t.value) and 0 <= t.value <= 1 for t in trials)
    assert set(search.best_params_) == {"lr", "loss"}
    best = search.best_estimator_
    assert best.loss == search.best_params_["loss"] and best.lr == search.best_params_["lr"]
    assert best.pretrained is pretrainer  # every trial and the refit started from it
    assert search.predict(X).shape == (len(X),)
    assert 0 <= search.score(X, y) <= 1


# ---------------------------------------------------------------------- optuna_objective


def test_optuna_objective_value_is_the_cross_validated_mean(data):
    X, y = data
    study = make_study()
    study.optimize(optuna_objective(make_estimator(), X, y, lr_and_loss, cv=CV), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        scores = trial.user_attrs["cv_scores"]
        assert len(scores) == 2
        assert trial.value == pytest.approx(np.mean(scores))
        # the running mean is reported after each fold
        assert trial.intermediate_values == pytest.approx({0: scores[0], 1: np.mean(scores)})
    # the objective is plain cross-validation of the clone with the trial's parameters
    best = study.best_trial
    expected = cross_val_score(make_estimator(**best.params), X, y, cv=CV)
    np.testing.assert_array_equal(best.user_attrs["cv_scores"], expected)


def test_optuna_objective_prunes_between_folds(data):
    X, y = data
    # maximize: a running mean below 1.01 (every C-index) is pruned at the first report
    study = make_study(pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    study.optimize(optuna_objective(make_estimator(), X, y, lr_and_loss, cv=CV), n_trials=2)
    for trial in study.trials:
        assert trial.state == TrialState.PRUNED
        assert list(trial.intermediate_values) == [0]  # the second fold never ran
        assert len(trial.user_attrs["cv_scores"]) == 1


def test_optuna_objective_parallel_folds(data):
    X, y = data
    study = make_study()
    objective = optuna_objective(make_estimator(), X, y, lambda t: {}, cv=CV, n_jobs=2)
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {}
    np.testing.assert_array_equal(
        trial.user_attrs["cv_scores"], cross_val_score(make_estimator(), X, y, cv=CV)
    )


def test_optuna_objective_checks_its_inputs(data):
    X, y = data
    with pytest.raises(TypeError, match="callable"):
        optuna_objective(make_estimator(), X, y, {"lr": [1e-3]})
    objective = optuna_objective(make_estimator(), X, y, lambda trial: [("lr", 1e-3)])
    study = make_study()
    with pytest.raises(TypeError, match="dict"):
        study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.FAIL


# ---------------------------------------------------------------------- PruningCallback


def test_pruning_callback_reports_every_epoch_and_prunes():
    X, y = regression_data()
    # no pruning: every epoch's validation loss is reported, and fit completes
    study = make_study("minimize")

    def objective(trial):
        net = small_regression_net(PruningCallback(trial, monitor="valid_loss")).fit(X, y)
        return net.history[-1, "valid_loss"]

    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert list(trial.intermediate_values) == [0, 1, 2]
    assert trial.intermediate_values[2] == pytest.approx(trial.value)

    # any loss above 0 is pruned at the first epoch
    study = make_study("minimize", pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]


def test_pruning_callback_shares_its_trial_through_clone_and_deepcopy_and_pickles():
    study = make_study()
    trial = study.ask()
    callback = PruningCallback(trial, monitor="valid_loss")
    for copied in (clone(callback), copy.deepcopy(callback)):
        assert copied is not callback and copied.trial is trial and copied.monitor == "valid_loss"
    assert callback.get_params() == {"trial": trial, "monitor": "valid_loss"}
    # a fitted net holding the callback still pickles; the trial is left behind
    X, y = regression_data()
    net = small_regression_net(callback, max_epochs=1).fit(X, y)
    restored = pickle.loads(pickle.dumps(net))
    assert restored.callbacks[0].trial is None and restored.callbacks[0].monitor == "valid_loss"
    np.testing.assert_array_equal(restored.predict(X), net.predict(X))
    with pytest.raises(RuntimeError, match="no trial"):
        restored.partial_fit(X, y)


def test_pruning_callback_names_a_missing_history_column():
    X, y = regression_data()
    trial = make_study().ask()
    net = small_regression_net(PruningCallback(trial, monitor="valid_cindex"), train_split=None)
    with pytest.raises(KeyError, match="validation_fraction > 0"):
        net.fit(X, y)


def test_pruning_callback_with_the_survival_estimator(data):
    X, y = data
    fitted = {}

    def objective(trial):
        est = make_estimator(
            max_epochs=3, validation_fraction=0.25,
            callbacks=[PruningCallback(trial, monitor="valid_cindex")],
        )
        fitted["est"] = clone(est).fit(X, y)  # the clone reports to the same trial
        return fitted["est"].score(X, y)

    # not pruned: each epoch's validation C-index is reported
    study = make_study()
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    history = fitted["est"].history_[:, "valid_cindex"]
    assert trial.intermediate_values == dict(enumerate(history))
    # the fitted estimator holding the callback pickles (without the trial)
    restored = pickle.loads(pickle.dumps(fitted["est"]))
    np.testing.assert_array_equal(restored.predict(X), fitted["est"].predict(X))

    # pruned at the first epoch: every C-index is below 1.01
    study = make_study(pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]
