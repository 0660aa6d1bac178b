"""Tuning a BEHRTSurvivalEstimator with Optuna.

Two ways, on a small synthetic cohort:

1. ``OptunaSearchCV`` (from ``optuna_integration``): a scikit-learn estimator like
   ``GridSearchCV``, whose candidates are drawn by Optuna's TPE sampler from
   distributions. Here it tunes a fine-tuning run that starts from a pretrained
   encoder (``strategy``, ``lr`` and ``loss``); the pretrainer is fitted once and
   shared by every trial and fold.
2. Plain ``study.optimize``, which keeps the study in your hands:

   * :func:`survbehrt.tuning.optuna_objective` cross-validates each trial and prunes
     it *between folds* when its running mean C-index falls behind;
   * :class:`survbehrt.tuning.PruningCallback` prunes *between epochs* of one fit on
     the estimator's validation C-index.

The settings are tiny so that the script runs in well under a minute on a CPU;
scale up ``n_patients``, the architecture, ``max_epochs`` and ``n_trials`` for real use.

Run with ``python examples/optuna_search.py``.
"""

import warnings

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna_integration import OptunaSearchCV
from sklearn.model_selection import KFold, train_test_split

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.tuning import PruningCallback, optuna_objective

# n_threads=1: a model this small runs faster on one torch thread
TINY = dict(embedding_dim=32, num_layers=1, num_heads=2, ff_dim=64, n_threads=1)


def space(trial):
    """The search space of the plain-Optuna objective: ``{parameter: value}``."""
    return {
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "loss": trial.suggest_categorical("loss", ["nll", "hybrid"]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def main():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # OptunaSearchCV is "experimental", and reports CV scores through optuna.terminator,
    # deprecated since Optuna 4.9: neither is ours to act on here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*optuna.terminator", category=FutureWarning)
    X, y, _ = make_synthetic_ehr(n_patients=400, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y["event"], random_state=0
    )
    cv = KFold(n_splits=3, shuffle=True, random_state=0)  # the same folds for every trial

    # ------------------------------------------------------------------ 1. OptunaSearchCV
    pretrainer = BEHRTPretrainer(**TINY, max_epochs=2, random_state=0).fit(X_train)
    search = OptunaSearchCV(
        BEHRTSurvivalEstimator(
            **TINY, pretrained=pretrainer, max_epochs=8, time_bins=5,
            early_stopping=None, validation_fraction=0, random_state=0,
        ),
        {
            "strategy": CategoricalDistribution(["lora", "full"]),
            "lr": FloatDistribution(3e-4, 1e-2, log=True),
            "loss": CategoricalDistribution(["nll", "hybrid"]),
        },
        n_trials=4, cv=cv, random_state=0,
    )
    search.fit(X_train, y_train)
    print("OptunaSearchCV")
    print(f"  best parameters: {search.best_params_}")
    print(f"  best CV C-index: {search.best_score_:.3f}")
    print(f"  test C-index of the refitted best model: {search.score(X_test, y_test):.3f}")

    # ------------------------------------------------------------------ 2a. pruning between folds
    estimator = BEHRTSurvivalEstimator(
        **TINY, max_epochs=6, time_bins=5, early_stopping=None, validation_fraction=0,
        random_state=0,
    )
    study = optuna.create_study(
        direction="maximize",  # scikit-learn scores: greater is better
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )
    study.optimize(optuna_objective(estimator, X_train, y_train, space, cv=cv), n_trials=5)
    print("study.optimize with optuna_objective (pruned between folds)")
    for trial in study.trials:
        folds = ", ".join(f"{s:.3f}" for s in trial.user_attrs.get("cv_scores", []))
        print(f"  trial {trial.number}: {trial.state.name:8s} fold C-indices [{folds}]")
    print(f"  best: {study.best_params} (mean CV C-index {study.best_value:.3f})")

    # ------------------------------------------------------------------ 2b. pruning between epochs
    def objective(trial):
        est = BEHRTSurvivalEstimator(
            **TINY, **space(trial), max_epochs=8, time_bins=5,
            validation_fraction=0.25, early_stopping="cindex", patience=2, random_state=0,
            callbacks=[PruningCallback(trial, monitor="valid_cindex")],
        )
        est.fit(X_train, y_train)
        # early stopping restored the epoch with the best validation C-index
        return max(est.history_[:, "valid_cindex"])

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    study.optimize(objective, n_trials=5)
    print("study.optimize with PruningCallback (pruned between epochs)")
    for trial in study.trials:
        reported = ", ".join(f"{v:.3f}" for v in trial.intermediate_values.values())
        print(f"  trial {trial.number}: {trial.state.name:8s} valid C-index by epoch [{reported}]")
    best = BEHRTSurvivalEstimator(
        **TINY, **study.best_params, max_epochs=8, time_bins=5, validation_fraction=0.25,
        early_stopping="cindex", patience=2, random_state=0,
    ).fit(X_train, y_train)
    print(f"  best: {study.best_params}; test C-index {best.score(X_test, y_test):.3f}")


if __name__ == "__main__":
    main()
