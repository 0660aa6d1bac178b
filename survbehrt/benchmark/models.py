"""The models compared: the tuned baselines, the BEHRT variants and their pretrainer; fitting and scoring one."""

from __future__ import annotations

import sys
import time
import warnings
from collections import Counter

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from .settings import BenchmarkSettings


def _index_age(X) -> np.ndarray:
    """The age at the prediction time as a one-column matrix (the ``Cox-age`` feature)."""
    from ..data.validation import flatten_ehr

    return flatten_ehr(X).index_age[:, None]


def _index_age_name(transformer, input_features):
    return np.asarray(["index_age"], dtype=object)


def make_models(settings: BenchmarkSettings) -> dict:
    """Unfitted models by name (the BEHRT variants get their pretrainer per fold).

    Parameters
    ----------
    settings : BenchmarkSettings
        Resolved settings.

    Returns
    -------
    dict of str to estimator
    """
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from ..data.features import CodeCountTransformer
    from ..estimators import BEHRTSurvivalEstimator

    s = settings
    trees = 50 if s.quick else 200
    counts = dict(min_frequency=5)
    # Baselines are tuned as a careful user would: the Cox ridge penalty by inner 3-fold CV.
    cox = GridSearchCV(
        make_pipeline(CodeCountTransformer(**counts), StandardScaler(), CoxPHSurvivalAnalysis()),
        {"coxphsurvivalanalysis__alpha": [1.0, 10.0, 100.0, 1000.0, 10000.0]},
        cv=KFold(3, shuffle=True, random_state=s.random_state),
    )
    models = {
        "CoxPH": cox,
        # How much of the ranking age alone explains: the floor every model must clear.
        "Cox-age": make_pipeline(
            FunctionTransformer(_index_age, feature_names_out=_index_age_name),
            StandardScaler(), CoxPHSurvivalAnalysis()),
        "RSF": make_pipeline(CodeCountTransformer(**counts), RandomSurvivalForest(
            n_estimators=trees, min_samples_leaf=10, max_features="sqrt",
            n_jobs=s.n_jobs, random_state=s.random_state)),
        "GBS": make_pipeline(CodeCountTransformer(**counts), GradientBoostingSurvivalAnalysis(
            n_estimators=trees, learning_rate=0.05, max_depth=3, subsample=0.8,
            random_state=s.random_state)),
    }
    epochs = s.epochs
    # X["static"] (the Synthea sample's sex, race, ethnicity) reaches the BEHRT models as
    # timeless tokens; their validation split follows the subject_id index level.
    behrt = dict(loss=s.loss, random_state=s.random_state, validation_fraction=0.1,
                 early_stopping="loss", patience=8, device=s.device, n_threads=s.n_threads)
    if s.quick:
        # a few hundred patients leave ~30 for validation: their C-index is noise, and early
        # stopping on it would restore an almost untrained epoch
        behrt.update(validation_fraction=0.0, early_stopping=None)
    # Recipes from held-out experiments on the synthetic cohort (docs/pretraining.md):
    # full fine-tuning wants a small learning rate; LoRA and the frozen head a larger one.
    models["BEHRT-full"] = BEHRTSurvivalEstimator(strategy="full", lr=5e-4, max_epochs=epochs, **behrt)
    models["BEHRT-lora"] = BEHRTSurvivalEstimator(
        strategy="lora", lr=3e-3, lora_rank=16, lora_feedforward=True,
        max_epochs=int(epochs * 4 / 3), **behrt)
    models["BEHRT-frozen"] = BEHRTSurvivalEstimator(strategy="frozen", lr=3e-3, max_epochs=epochs, **behrt)
    return {name: model for name, model in models.items() if name in s.models}


def make_pretrainer(settings: BenchmarkSettings):
    """The pretrainer fitted on each training fold for the BEHRT variants: the default
    objective (masked codes, next visit and time to event; docs/pretraining.md)."""
    from ..estimators import BEHRTPretrainer

    return BEHRTPretrainer(max_epochs=settings.pretrain_epochs,
                           random_state=settings.random_state, validation_fraction=0.0,
                           device=settings.device, n_threads=settings.n_threads)


def _fit(model, X, y, groups, random_state):
    """Fit; a tuned baseline's inner cross-validation is grouped by subject too."""
    if groups is not None and isinstance(model, GridSearchCV):
        model.set_params(cv=GroupKFold(model.cv.get_n_splits(), shuffle=True,
                                       random_state=random_state))
        return model.fit(X, y, groups=groups)
    return model.fit(X, y)


def fit_noting_warnings(model, X, y, groups, random_state, label):
    """Fit as :func:`_fit` does, catching the fit's warnings into one line.

    A raw warning in the log says nothing about the row (a Cox model's
    ``ConvergenceWarning`` does not say whether the model scored is the one that
    stopped short), and it repeats for every fit of a search. This counts them instead.

    Parameters
    ----------
    model, X, y, groups, random_state
        As :func:`_fit`.
    label : str
        What the line is about (``"fold 0 CoxPH"``).

    Returns
    -------
    model : estimator
        The fitted model.
    note : str or None
        One line saying what the fit warned about; None when it did not warn.
    """
    caught = []

    def record(message, category, filename, lineno, file=None, line=None):
        caught.append((category, str(message).splitlines()[0], _in_inner_fit()))

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # count every fit's warnings, not the first only
        warnings.showwarning = record  # restored by catch_warnings
        fitted = _fit(model, X, y, groups, random_state)
    return fitted, _warning_note(label, model, caught)


def _in_inner_fit() -> bool:
    """Whether the warning comes from a cross-validation fit of a search (not its refit)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_fit_and_score":  # sklearn's per-split fit
            return True
        frame = frame.f_back
    return False


def _warning_note(label, model, caught):
    if not caught:
        return None
    capped = [inner for cat, msg, inner in caught
              if issubclass(cat, ConvergenceWarning) and "iterations" in msg]
    overflow = sum(issubclass(cat, RuntimeWarning) and "overflow" in msg for cat, msg, _ in caught)
    other = Counter(msg for cat, msg, _ in caught
                    if not (issubclass(cat, ConvergenceWarning) and "iterations" in msg)
                    and not (issubclass(cat, RuntimeWarning) and "overflow" in msg))
    parts = []
    if capped or overflow:
        search = isinstance(model, GridSearchCV)
        n_fits = len(model.cv_results_["params"]) * model.n_splits_ + 1 if search else 1
        what = "the penalty search's and the refit" if search else "the model's"
        parts.append(
            f"{len(capped)} of {n_fits} fits ({what}) stopped at the iteration cap before the "
            f"tolerance, {overflow} trial step(s) overflowed in exp (rejected, step halved); "
            + ("the scored model stopped at the cap: its coefficients are the last step"
               if not all(capped) else "the scored model converged: the row is unaffected")
        )
    parts += [f"{msg} (x{k})" if k > 1 else msg for msg, k in other.items()]
    return f"  {label}: " + "; ".join(parts)


def _evaluate(model, X_test, y_test, y_train):
    from ..metrics import evaluate

    t0 = time.perf_counter()
    risk = np.asarray(model.predict(X_test), dtype=float)
    predict_time = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(model, X_test, y_test, y_train, return_curves=True)
    return result, predict_time, risk


def _oracle_row(true_risk, y_test, y_train):
    from ..metrics import harrell_c, uno_c

    return {
        "harrell_c": harrell_c(y_test, true_risk),
        "uno_c": uno_c(y_train, y_test, true_risk),
        "integrated_brier": np.nan,
        "mean_auc": np.nan,
        "d_calibration_p": np.nan,
        "fit_time": 0.0,
        "predict_time": 0.0,
    }
