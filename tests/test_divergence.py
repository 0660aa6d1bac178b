"""A fit that diverges stops with a clear warning and keeps its best finite state."""

import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback

from helpers import random_cohort, tiny_estimator


@pytest.fixture(scope="module")
def cohort():
    return random_cohort(n=160, seed=3)


@pytest.mark.parametrize("early_stopping", [None, "cindex"])
def test_huge_learning_rate_warns_and_keeps_the_start(cohort, early_stopping):
    X, y = cohort
    split = dict(early_stopping=early_stopping,
                 validation_fraction=0.25 if early_stopping else 0.0)
    with pytest.warns(ConvergenceWarning, match=r"diverged at lr=100000 .*non-finite .* at (the "
                                                r"end of )?epoch 1\b.*keeps the starting weights"):
        est = tiny_estimator(lr=1e5, max_epochs=3, **split).fit(X, y)
    start = tiny_estimator(lr=1e5, max_epochs=0, **split).fit(X, y)
    risk = est.predict(X)
    assert np.isfinite(risk).all()
    np.testing.assert_array_equal(risk, start.predict(X))  # nothing better than the start
    assert np.isfinite(est.predict_survival_function(X, return_array=True)).all()


class _PoisonAfterEpoch(Callback):
    """Fill a weight with NaN after the first batch of the given epoch, and remember the
    weights the epoch before it ended with."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if net.history[-1, "epoch"] == self.epoch - 1:
            self.finite_weights_ = copy.deepcopy(net.module_.state_dict())

    def on_batch_end(self, net, training=None, **kwargs):
        if training and net.history[-1, "epoch"] == self.epoch:
            with torch.no_grad():
                next(p for p in net.module_.parameters() if p.requires_grad).fill_(float("nan"))


def test_divergence_later_keeps_the_last_finite_epoch(cohort):
    X, y = cohort
    poison = _PoisonAfterEpoch(epoch=3)
    with pytest.warns(ConvergenceWarning, match=r"non-finite training loss at epoch 3, batch 2\. .*"
                                                r"keeps the weights of epoch 2"):
        est = tiny_estimator(max_epochs=4, callbacks=[poison]).fit(X, y)
    kept = est.net_.module_.state_dict()
    assert kept.keys() == poison.finite_weights_.keys()
    for name, value in poison.finite_weights_.items():
        torch.testing.assert_close(kept[name], value, rtol=0, atol=0, msg=name)


def test_grid_search_over_a_diverging_rate_scores_every_candidate(cohort):
    X, y = cohort
    search = GridSearchCV(tiny_estimator(max_epochs=2), {"lr": [1e-3, 1e3]}, cv=2,
                          error_score="raise")
    with pytest.warns(ConvergenceWarning, match="diverged at lr=1000"):
        search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
