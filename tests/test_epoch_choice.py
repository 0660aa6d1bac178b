"""``validation_folds``: the training length chosen by cross-fitting, the final model trained on
every row for it, the recalibration's slope from the out-of-fold predictions."""

import numpy as np
import pytest
from sklearn.base import clone
from skorch.callbacks import Callback
from sksurv.util import Surv

from survbehrt import BEHRTCompetingRisksEstimator
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.datasets.competing import make_synthetic_competing
from survbehrt.estimators._common import validation_folds
from survbehrt.metrics import harrell_c

from helpers import tiny_estimator

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def sequence():
    X, y = make_synthetic_ehr(n_patients=900, random_state=0)[:2]
    return X.iloc[:600], y[:600], X.iloc[600:], y[600:]


def _folded(**params):
    base = dict(early_stopping="loss", validation_folds=4, patience=3, max_epochs=8)
    return tiny_estimator(**{**base, **params})


def test_folds_cover_each_row_once_keep_patients_whole_and_stratify():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 3)  # 60 patients, three rows each
    event = np.repeat(rng.random(60) < 0.3, 3)
    folds = validation_folds(len(groups), 5, 0, stratify=event, groups=groups)
    assert len(folds) == 5
    seen = np.zeros(len(groups), dtype=int)
    for train, valid in folds:
        seen[valid] += 1
        assert not set(groups[train]) & set(groups[valid])
        assert set(train) | set(valid) == set(range(len(groups)))
        # each fold's event share near the cohort's (three rows a patient: +-0.15)
        assert abs(event[valid].mean() - event.mean()) < 0.15
    assert (seen == 1).all()
    single = validation_folds(50, 5, 0, stratify=np.arange(50) < 10)
    assert [int((va < 10).sum()) for _, va in single] == [2, 2, 2, 2, 2]


def test_the_epochs_are_the_folds_mean_best_and_the_final_model_runs_exactly_them(sequence):
    X, y, _, _ = sequence
    est = _folded(wide=None).fit(X, y)
    choice = est.epoch_choice_
    curves, stops = choice["fold_curves"], choice["fold_stops"]
    assert curves.shape == (4, est.max_epochs + 1)
    # a fold that stopped carries its last score
    for curve, stop in zip(curves, stops):
        assert (curve[stop:] == curve[stop]).all()
    # the rows of each fold weigh its loss: 600 rows in 4 stratified folds of 150
    mean = [sum(curves[f, e] for f in range(4)) / 4 for e in range(est.max_epochs + 1)]
    best = min(range(len(mean)), key=lambda e: (mean[e], e))
    np.testing.assert_allclose(choice["curve"], mean, rtol=1e-12)
    assert choice["epochs"] == best
    assert best > 0  # the sequence cohort has signal to learn beyond the population hazards
    assert len(est.history_) == best
    assert "valid_loss" not in est.history_[-1]  # the final fit holds nothing out


def test_training_that_only_overfits_is_not_kept(sequence):
    X, y, _, _ = sequence
    # the outcome shuffled against the histories: nothing to learn, a high rate to overfit
    noise = y[np.random.default_rng(1).permutation(len(y))]
    params = dict(wide=None, lr=3e-2, embedding_dim=32, ff_dim=64, recalibrate=False)
    est = _folded(**params).fit(X, noise)
    assert est.epoch_choice_["epochs"] == 0
    # the final fit draws its start as a fit without folds does: that start, unchanged
    start = tiny_estimator(max_epochs=0, **params).fit(X, noise)
    np.testing.assert_allclose(est.predict(X), start.predict(X), rtol=1e-6)


def test_every_row_trains_and_the_slope_comes_from_every_row(sequence):
    X, y, X_test, y_test = sequence
    held_out = tiny_estimator(early_stopping="loss", validation_fraction=0.1, patience=3,
                              max_epochs=8).fit(X, y)
    # a tenth of 600 rows holds fewer than the 50 events the slope needs
    assert held_out.calibration_ is None
    est = _folded().fit(X, y)
    assert est.calibration_ is not None
    assert est.calibration_["n_events"] == int(y["event"].sum())
    assert len(est.unique_times_) == len(np.unique(y["time"]))
    assert harrell_c(y_test, est.predict(X_test)) > 0.6


def test_user_callbacks_see_the_final_fit_only(sequence):
    X, y, _, _ = sequence

    class Count(Callback):
        def initialize(self):
            self.fits = getattr(self, "fits", 0)
            return self

        def on_train_begin(self, net, **kwargs):
            self.fits += 1

    counter = Count()
    _folded(callbacks=[counter], max_epochs=2).fit(X.iloc[:300], y[:300])
    assert counter.fits == 1


def test_parameters_are_checked_and_clone_save_load_keep_the_choice(sequence, tmp_path):
    X, y, X_test, _ = sequence
    with pytest.raises(ValueError, match="validation_folds must be None or at least 2"):
        _folded(validation_folds=1).fit(X, y)
    with pytest.raises(ValueError, match="validation_folds chooses the epochs"):
        _folded(early_stopping=None).fit(X, y)
    est = _folded(max_epochs=2)
    assert clone(est).get_params()["validation_folds"] == 4
    est.fit(X.iloc[:300], y[:300])
    est.save(tmp_path / "m.pt")
    loaded = type(est).load(tmp_path / "m.pt")
    assert loaded.epoch_choice_["epochs"] == est.epoch_choice_["epochs"]
    np.testing.assert_allclose(loaded.predict(X_test), est.predict(X_test), rtol=1e-6)


def test_the_competing_estimator_chooses_by_folds_too():
    X, y = make_synthetic_competing(n_patients=300, random_state=0)[:2]
    base = dict(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, batch_size=32,
                time_bins=5, random_state=0, n_threads=1, max_epochs=3, patience=2)
    est = BEHRTCompetingRisksEstimator(validation_folds=3, **base).fit(X, y)
    assert est.epoch_choice_["fold_curves"].shape == (3, 4)
    assert len(est.history_) == est.epoch_choice_["epochs"]
    assert est.predict_cumulative_incidence(X.iloc[:5], return_array=True).shape[0] == 5


def test_groups_keep_a_patients_rows_in_one_fold(sequence):
    X, y, _, _ = sequence
    X2 = X.iloc[:200]
    groups = np.repeat(np.arange(100), 2)
    est = _folded(max_epochs=1).fit(X2, Surv.from_arrays(y["event"][:200], y["time"][:200]),
                                     groups=groups)
    assert est.epoch_choice_["fold_curves"].shape[0] == 4


def test_choose_epochs_by_hand():
    from survbehrt.estimators._epoch_choice import FoldScores, choose_epochs

    def fold(scores, n, tag):
        logits = [np.full((n, 2), 10 * tag + e, dtype=float) for e in range(len(scores))]
        return FoldScores(scores, n, logits, np.arange(n, dtype=float), np.ones(n, dtype=int))

    # fold a: best at 2; fold b: stopped after epoch 1, NaN start (the worst)
    a = fold([1.0, 0.8, 0.5, 0.9], 3, 1)
    b = fold([float("nan"), 0.6], 1, 2)
    choice = choose_epochs([a, b], lower_is_better=True, max_epochs=4)
    # by hand: b carried at 0.6; rows weigh 3:1; epoch 0 infinite
    expected = [np.inf, (3 * 0.8 + 0.6) / 4, (3 * 0.5 + 0.6) / 4, (3 * 0.9 + 0.6) / 4,
                (3 * 0.9 + 0.6) / 4]
    np.testing.assert_allclose(choice.curve, expected)
    assert choice.epochs == 2 and list(choice.fold_stops) == [3, 1]
    logits, time, event = choice.held_out
    # each fold's logits at the chosen epoch, b's at its last (epoch 1)
    np.testing.assert_array_equal(logits[:, 0], [12, 12, 12, 21])
    assert event.dtype == bool and event.all()
    # ties go to the fewest epochs; a C-index is higher-better and unweighted
    flat = choose_epochs([fold([0.7, 0.7, 0.6], 2, 1)], lower_is_better=False, max_epochs=2)
    assert flat.epochs == 0
    cindex = choose_epochs([fold([0.5, 0.6], 100, 1), fold([0.5, 0.4, 0.9], 1, 2)],
                           lower_is_better=False, max_epochs=2, weigh_rows=False)
    np.testing.assert_allclose(cindex.curve, [0.5, 0.5, 0.75])
    assert cindex.epochs == 2
