"""Several rows per patient: the internal validation split keeps each patient on one side."""

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from survbehrt.estimators._common import resolve_groups, validation_split

from helpers import random_cohort, tiny_estimator


def _two_rows_per_patient(n_patients=60, index_names=("subject_id", "prediction_time")):
    X, y = random_cohort(n=2 * n_patients, seed=3)
    subjects = np.repeat(np.arange(n_patients), 2)
    X.index = pd.MultiIndex.from_arrays([subjects, np.tile([0, 1], n_patients)],
                                        names=list(index_names))
    # both rows of a patient share a distinctive time, so we can see which side they went
    time = np.repeat(np.linspace(0.5, 5.0, n_patients), 2) + np.tile([0.0, 1e-3], n_patients)
    event = np.random.default_rng(0).random(n_patients) < 0.5
    y = Surv.from_arrays(np.repeat(event, 2), time)
    return X, y, subjects


@pytest.mark.parametrize("names", [("subject_id", "prediction_time"), ("pid", "prediction_time")])
def test_groups_come_from_the_index(names):
    X, _, subjects = _two_rows_per_patient(index_names=names)
    np.testing.assert_array_equal(resolve_groups(X, None, len(X)), subjects)
    assert resolve_groups(X.reset_index(drop=True), None, len(X)) is None
    other = np.arange(len(X)) // 3
    np.testing.assert_array_equal(resolve_groups(X, other, len(X)), other)
    with pytest.raises(ValueError, match="one entry per row"):
        resolve_groups(X, other[:-1], len(X))


def test_validation_split_never_splits_a_patient():
    groups = np.repeat(np.arange(100), 3)
    event = np.tile([True, False, False], 100)
    for seed in range(5):
        train, valid = validation_split(len(groups), 0.2, seed, stratify=event, groups=groups)
        assert not set(groups[train]) & set(groups[valid])
        assert set(train) | set(valid) == set(range(len(groups)))
        assert 0.1 < len(valid) / len(groups) < 0.3


def test_estimator_splits_by_patient():
    X, y, subjects = _two_rows_per_patient()
    est = tiny_estimator(max_epochs=1, validation_fraction=0.3).fit(X, y)
    seen = np.isin(y["time"], est.unique_times_)  # training rows only
    both = seen.reshape(-1, 2)
    assert (both[:, 0] == both[:, 1]).all()  # a patient's two rows are on one side
    assert 0 < (~seen).sum() < len(X)


def test_optuna_objective_passes_groups_to_the_splitter_and_fit():
    optuna = pytest.importorskip("optuna")
    from sklearn.model_selection import GroupKFold

    from survbehrt.tuning import optuna_objective

    X, y, subjects = _two_rows_per_patient(n_patients=30)

    class Recording(GroupKFold):
        seen = []

        def split(self, X, y=None, groups=None):
            for train, test in super().split(X, y, groups):
                Recording.seen.append(not set(groups[train]) & set(groups[test]))
                yield train, test

    objective = optuna_objective(tiny_estimator(max_epochs=1, validation_fraction=0.2), X, y,
                                 lambda trial: {"lr": trial.suggest_float("lr", 1e-3, 1e-2)},
                                 cv=Recording(n_splits=2), groups=subjects)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    assert Recording.seen == [True, True]
    assert np.isfinite(study.best_value)
    with pytest.raises(ValueError, match="groups"):
        optuna_objective(tiny_estimator(), X, y, lambda t: {}, cv=GroupKFold(2))(
            optuna.trial.FixedTrial({}))
