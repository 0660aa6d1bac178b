"""scikit-learn / scikit-survival integration of the estimators, on real (tiny) fits.

clone / get_params / set_params, pickle and joblib round trips, Pipelines (a
preprocessing step before the survival estimator; a pretrainer feeding a Cox model),
cross-validation (also in loky worker processes), GridSearchCV (over strategy x loss,
and with scikit-survival's metric wrappers), a fitted pretrainer surviving clone and
every CV fold, reproducibility, and outcomes without events.

Every model is tiny and single-threaded (``n_threads=1``: several torch threads on
shared cores are slower, not faster).
"""

import inspect
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis
from sksurv.metrics import (
    as_concordance_index_ipcw_scorer,
    as_cumulative_dynamic_auc_scorer,
    as_integrated_brier_score_scorer,
    concordance_index_censored,
)

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator

from helpers import random_cohort, tiny_estimator, tiny_pretrainer

CV = KFold(n_splits=2, shuffle=True, random_state=0)


def add_lab_codes(X):
    """Append a ``LAB_<i>`` code to every visit (noise for a preprocessing step to remove)."""
    X = X.copy()
    X["codes"] = [[[*v, f"LAB_{i % 3}"] for i, v in enumerate(visits)] for visits in X["codes"]]
    return X


def drop_code_prefix(X, prefix="LAB_"):
    """Drop the codes starting with ``prefix`` from every visit; a frame in, a frame out."""
    X = X.copy()
    X["codes"] = [[[c for c in v if not c.startswith(prefix)] for v in visits] for visits in X["codes"]]
    return X


def encoder_equal(module, state):
    """Whether ``module``'s weights equal the tensors of ``state`` exactly (same keys)."""
    own = module.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k].cpu(), state[k]) for k in own)


def follow_up_times(y, cv, n_times=3):
    """Times strictly inside the follow-up of every test fold (and every training fold)."""
    lo, hi = 0.0, np.inf
    for train, test in cv.split(y):
        lo = max(lo, y["time"][test].min())
        hi = min(hi, y["time"][test].max(), y["time"][train].max())
    return np.linspace(lo, hi, n_times + 2)[1:-1]


@pytest.fixture(scope="module")
def data():
    return random_cohort(n=80, seed=1)


@pytest.fixture(scope="module")
def fitted_estimator(data):
    X, y = data
    return tiny_estimator().fit(X, y)


@pytest.fixture(scope="module")
def fitted_pretrainer(data):
    X, _ = data
    return tiny_pretrainer().fit(X)


# ---------------------------------------------------------------------- parameters, clone


@pytest.mark.parametrize("cls", [BEHRTSurvivalEstimator, BEHRTPretrainer])
def test_get_params_set_params_clone(cls):
    est = tiny_estimator() if cls is BEHRTSurvivalEstimator else tiny_pretrainer()
    params = est.get_params(deep=False)
    assert set(params) == set(inspect.signature(cls).parameters)
    assert est.set_params(lr=0.01, max_epochs=3) is est
    assert (est.lr, est.max_epochs) == (0.01, 3)
    copy = clone(est)
    assert copy is not est and type(copy) is cls
    assert copy.get_params(deep=False) == est.get_params(deep=False)
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(no_such_parameter=1)


def test_clone_of_a_fitted_estimator_is_unfitted(fitted_estimator):
    copy = clone(fitted_estimator)
    assert not hasattr(copy, "net_") and hasattr(fitted_estimator, "net_")
    assert copy.get_params(deep=False) == fitted_estimator.get_params(deep=False)


# ---------------------------------------------------------------------- persistence


def _round_trip(obj, how, tmp_path):
    if how == "pickle":
        return pickle.loads(pickle.dumps(obj))
    path = tmp_path / "model.joblib"
    joblib.dump(obj, path)
    return joblib.load(path)


@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_survival_estimator_round_trip_predicts_identically(fitted_estimator, data, how, tmp_path):
    X, y = data
    restored = _round_trip(fitted_estimator, how, tmp_path)
    assert restored is not fitted_estimator
    np.testing.assert_array_equal(restored.predict(X), fitted_estimator.predict(X))
    np.testing.assert_array_equal(
        restored.predict_survival_function(X, return_array=True),
        fitted_estimator.predict_survival_function(X, return_array=True),
    )
    np.testing.assert_array_equal(
        restored.predict_cumulative_hazard_function(X, return_array=True),
        fitted_estimator.predict_cumulative_hazard_function(X, return_array=True),
    )
    assert restored.score(X, y) == fitted_estimator.score(X, y)


@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_pretrainer_round_trip_transforms_identically(fitted_pretrainer, data, how, tmp_path):
    X, _ = data
    restored = _round_trip(fitted_pretrainer, how, tmp_path)
    np.testing.assert_array_equal(restored.transform(X), fitted_pretrainer.transform(X))
    assert restored.vocabulary_ == fitted_pretrainer.vocabulary_


# ---------------------------------------------------------------------- pipelines


def test_pipeline_with_a_preprocessing_step(fitted_estimator, data):
    X, y = data
    noisy = add_lab_codes(X)
    assert any(c.startswith("LAB_") for visits in noisy["codes"] for v in visits for c in v)
    pipe = make_pipeline(
        FunctionTransformer(drop_code_prefix, kw_args={"prefix": "LAB_"}, validate=False),
        tiny_estimator(),
    ).fit(noisy, y)
    est = pipe[-1]
    assert not any(code.startswith("LAB_") for code in est.vocabulary_)
    # the step restores X exactly, so the pipeline equals the estimator fitted on X
    assert est.vocabulary_ == fitted_estimator.vocabulary_
    np.testing.assert_array_equal(pipe.predict(noisy), fitted_estimator.predict(X))
    assert pipe.score(noisy, y) == fitted_estimator.score(X, y)
    surv = pipe.predict_survival_function(noisy.iloc[:3])
    assert len(surv) == 3 and all(fn(0.0) == 1.0 for fn in surv)
    # a pipeline is cloned and pickled like any estimator
    assert clone(pipe)[-1].get_params() == tiny_estimator().get_params()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pipe)).predict(noisy), pipe.predict(noisy))


@pytest.mark.parametrize(
    "cox",
    [CoxPHSurvivalAnalysis(alpha=1.0), CoxnetSurvivalAnalysis(l1_ratio=0.5, fit_baseline_model=True)],
    ids=["coxph", "coxnet"],
)
def test_pipeline_pretrainer_embeddings_into_sksurv_cox(data, cox):
    X, y = data
    pipe = make_pipeline(tiny_pretrainer(), cox).fit(X, y)
    embeddings = pipe[0].transform(X)
    assert embeddings.shape == (len(X), 16)
    np.testing.assert_allclose(pipe.predict(X), pipe[-1].predict(embeddings), rtol=1e-6)
    # the pipeline's score is Harrell's C of its risk, as scikit-survival defines it
    expected = concordance_index_censored(y["event"], y["time"], pipe.predict(X))[0]
    assert pipe.score(X, y) == pytest.approx(expected, rel=1e-12)
    times = np.quantile(y["time"][y["event"]], [0.25, 0.5])
    surv = np.vstack([fn(times) for fn in pipe.predict_survival_function(X.iloc[:4])])
    assert surv.shape == (4, 2) and np.all((surv >= 0) & (surv <= 1))


# ---------------------------------------------------------------------- cross-validation


def test_cross_validate_and_parallel_cross_val_score_agree(data):
    X, y = data
    result = cross_validate(tiny_estimator(), X, y, cv=CV, return_train_score=True, error_score="raise")
    assert result["test_score"].shape == (2,)
    # each fold's score is the estimator fitted on that fold's training rows, scored on the rest
    for k, (train, test) in enumerate(CV.split(X)):
        est = tiny_estimator().fit(X.iloc[train], y[train])
        assert result["test_score"][k] == est.score(X.iloc[test], y[test])
        assert result["train_score"][k] == est.score(X.iloc[train], y[train])
    # two loky worker processes, same folds, same random_state: the same scores
    parallel = cross_val_score(tiny_estimator(), X, y, cv=CV, n_jobs=2, error_score="raise")
    np.testing.assert_array_equal(parallel, result["test_score"])


def test_grid_search_strategy_x_loss_keeps_the_pretrainer_intact(data, fitted_pretrainer):
    X, y = data
    before = {k: v.detach().clone() for k, v in fitted_pretrainer.module_.state_dict().items()}
    grid = {"strategy": ["full", "lora"], "loss": ["nll", "hybrid"]}
    search = GridSearchCV(
        tiny_estimator(pretrained=fitted_pretrainer, max_epochs=1), grid, cv=CV, error_score="raise"
    ).fit(X, y)
    combos = {(p["strategy"], p["loss"]) for p in search.cv_results_["params"]}
    assert combos == {(s, loss) for s in grid["strategy"] for loss in grid["loss"]}
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert best.predict(X).shape == (len(X),)
    assert best.pretrained is fitted_pretrainer
    # "full" fine-tuned the encoder in 9 fits; the shared pretrainer is untouched
    assert encoder_equal(fitted_pretrainer.module_, before)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda est, times: as_concordance_index_ipcw_scorer(est, tau=times[-1]),
        lambda est, times: as_cumulative_dynamic_auc_scorer(est, times=times),
        lambda est, times: as_integrated_brier_score_scorer(est, times=times),
    ],
    ids=["cindex_ipcw", "cumulative_dynamic_auc", "integrated_brier_score"],
)
def test_sksurv_metric_wrappers_in_grid_search(data, wrap):
    X, y = data
    times = follow_up_times(y, CV)
    scorer_est = wrap(tiny_estimator(max_epochs=1), times)
    # the wrappers expose the estimator's parameters as estimator__<name>
    assert scorer_est.get_params()["estimator__loss"] == "hybrid"
    search = GridSearchCV(
        scorer_est, {"estimator__loss": ["nll", "hybrid"]}, cv=CV, refit=False, error_score="raise"
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    # split 0 of candidate "nll", rebuilt by hand: the wrapper fitted on the fold, scored on
    # the rest (minus the integrated Brier score for that wrapper, as scikit-survival does)
    train, test = next(CV.split(X))
    manual = clone(scorer_est).set_params(estimator__loss="nll").fit(X.iloc[train], y[train])
    assert search.cv_results_["params"][0] == {"estimator__loss": "nll"}
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(
        manual.score(X.iloc[test], y[test]), rel=1e-9)


# ---------------------------------------------------------------------- a pretrainer as a parameter


def test_clone_shares_a_fitted_pretrainer_and_clones_an_unfitted_one(fitted_pretrainer):
    est = tiny_estimator(pretrained=fitted_pretrainer)
    assert clone(est).pretrained is fitted_pretrainer
    frozen = FrozenEstimator(fitted_pretrainer)
    assert clone(tiny_estimator(pretrained=frozen)).pretrained is frozen
    unfitted = tiny_pretrainer()
    copy = clone(tiny_estimator(pretrained=unfitted)).pretrained
    assert copy is not unfitted and isinstance(copy, BEHRTPretrainer)
    assert copy.get_params() == unfitted.get_params()


def test_every_cv_fold_starts_from_the_pretrained_encoder(data, fitted_pretrainer):
    X, y = data
    reference = fitted_pretrainer.encoder_state_dict()
    result = cross_validate(
        tiny_estimator(strategy="frozen", pretrained=fitted_pretrainer), X, y, cv=CV,
        return_estimator=True, error_score="raise",
    )
    assert len(result["estimator"]) == 2
    for fold in result["estimator"]:
        assert fold.pretrained is fitted_pretrainer
        assert encoder_equal(fold.net_.module_.encoder, reference)
        assert fold.vocabulary_ == fitted_pretrainer.vocabulary_
    # a fold's estimator (which holds the pretrainer) still round-trips through pickle
    fold = result["estimator"][0]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fold)).predict(X), fold.predict(X))

    # FrozenEstimator(pretrainer) is accepted and starts from the same weights
    frozen = tiny_estimator(strategy="frozen", pretrained=FrozenEstimator(fitted_pretrainer))
    assert encoder_equal(clone(frozen).fit(X, y).net_.module_.encoder, reference)

    # the comparison is not vacuous: without the pretrainer the encoder differs ...
    with pytest.warns(UserWarning, match="pretrained"):
        scratch = tiny_estimator(strategy="frozen").fit(X, y)
    assert not encoder_equal(scratch.net_.module_.encoder, reference)
    # ... and an unfitted pretrainer is refused in every fold, not silently refitted
    with pytest.raises(ValueError, match="fitted"):
        cross_validate(
            tiny_estimator(strategy="frozen", pretrained=tiny_pretrainer()), X, y, cv=CV,
            error_score="raise",
        )


# ---------------------------------------------------------------------- reproducibility


def test_random_state_makes_fits_identical(data):
    X, y = data
    params = dict(validation_fraction=0.25, early_stopping="cindex", patience=1, landmarks="all")
    first = tiny_estimator(**params).fit(X, y)
    second = tiny_estimator(**params).fit(X, y)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    np.testing.assert_array_equal(
        first.predict_survival_function(X, return_array=True),
        second.predict_survival_function(X, return_array=True),
    )
    assert first.history_[:, "valid_cindex"] == second.history_[:, "valid_cindex"]
    other = tiny_estimator(**{**params, "random_state": 1}).fit(X, y)
    assert not np.array_equal(other.predict(X), first.predict(X))


# ---------------------------------------------------------------------- no events


def _censor(y, rows=slice(None)):
    y = y.copy()
    y["event"][rows] = False
    return y


def test_fit_on_an_all_censored_outcome_raises(data):
    X, y = data
    with pytest.raises(ValueError, match="no events"):
        tiny_estimator().fit(X, _censor(y))
    # the same error from a CV training fold without events
    folds = [(np.arange(40), np.arange(40, 80))]
    with pytest.raises(ValueError, match="no events"):
        cross_validate(tiny_estimator(), X, _censor(y, slice(0, 40)), cv=folds, error_score="raise")


def test_score_on_an_all_censored_outcome_is_nan(fitted_estimator, data):
    X, y = data
    assert np.isnan(fitted_estimator.score(X, _censor(y)))


def test_cv_with_an_all_censored_test_fold_gives_nan_not_a_crash(data):
    X, y = data
    folds = [(np.arange(40), np.arange(40, 80))]
    y_fold = _censor(y, slice(40, 80))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Scoring failed" warning: score itself returns NaN
        scores = cross_val_score(tiny_estimator(), X, y_fold, cv=folds)
    assert scores.shape == (1,) and np.isnan(scores[0])


def test_nested_params_of_a_shared_pretrainer_are_refused(data):
    X, _ = data
    pre = tiny_pretrainer().fit(X)
    est = tiny_estimator(pretrained=pre)
    assert not any(k.startswith("pretrained__") for k in est.get_params(deep=True))
    with pytest.raises(ValueError, match="shared by every clone"):
        est.set_params(pretrained__lr=5.0)
    assert pre.lr == tiny_pretrainer().lr  # the shared object is untouched
    # an unfitted pretrainer is an ordinary nested estimator
    est = tiny_estimator(pretrained=tiny_pretrainer())
    est.set_params(pretrained__lr=5.0)
    assert est.pretrained.lr == 5.0
