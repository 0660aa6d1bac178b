"""Hyper-parameter search with plain Optuna: a cross-validated objective and a pruning callback.

For a search that is a drop-in scikit-learn estimator, use
:class:`optuna_integration.OptunaSearchCV` (or :class:`sklearn.model_selection.GridSearchCV`)
directly; the estimators need nothing special. This module covers the other way of
using Optuna, ``study.optimize(objective)``, where you keep the study (its storage,
its sampler and pruner, its dashboards) in your hands:

* :func:`optuna_objective` turns an estimator, data and a search space into an
  objective: each trial's parameters are set on a clone, which is cross-validated;
  the trial's value is the mean test score. Trials are pruned *between folds*
  (the running mean is reported after each fold), which needs nothing from the
  estimator.
* :class:`PruningCallback` prunes *between epochs* of one fit: a skorch callback that
  reports a per-epoch metric from the net's history (by default the validation
  C-index) to the trial.

Scores follow scikit-learn's convention (greater is better), so create the study
with ``direction="maximize"``.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

try:
    import optuna
except ImportError as exc:  # an optional dependency: the `tuning` extra
    raise ImportError(
        "survbehrt.tuning needs optuna: pip install 'survbehrt[tuning]' (or pip install optuna)"
    ) from exc
from sklearn.base import clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv, cross_validate
from skorch.callbacks import Callback

__all__ = ["optuna_objective", "PruningCallback"]


def optuna_objective(estimator, X, y, param_space, cv=3, scoring=None, n_jobs=None, groups=None):
    """Build a cross-validated objective for ``optuna.Study.optimize``.

    Each call ``objective(trial)`` asks ``param_space(trial)`` for a dict of
    parameters, sets them on a fresh :func:`~sklearn.base.clone` of ``estimator``,
    cross-validates it and returns the mean test score. The fold scores are kept on
    the trial as the user attribute ``"cv_scores"``.

    With ``n_jobs`` None or 1 the folds run one after another, and after fold ``k``
    the running mean score is reported to the trial as the intermediate value of
    step ``k``; the trial is pruned (:class:`optuna.TrialPruned`) as soon as the
    study's pruner says so. The steps are comparable across trials because every
    trial sees the same folds: pass an integer ``cv`` or a splitter with a fixed
    ``random_state``. With ``n_jobs > 1`` the folds run in parallel (joblib) and no
    intermediate values are reported.

    Exceptions raised while fitting or scoring are not turned into a NaN score
    (``error_score="raise"``): Optuna records the trial as failed (or pruned, for a
    :class:`optuna.TrialPruned` raised from inside ``fit``, e.g. by
    :class:`PruningCallback`) and ``study.optimize(..., catch=...)`` decides whether the
    study goes on.

    Parameters
    ----------
    estimator : estimator object
        The estimator to tune, e.g. a :class:`~survbehrt.BEHRTSurvivalEstimator` or a
        :class:`~sklearn.pipeline.Pipeline` ending in one (use ``step__param`` names
        in ``param_space``). It is never fitted itself.
    X : pandas.DataFrame
        One row per patient (``codes``, ``ages``, optional ``index_age``).
    y : structured ndarray, shape (n_samples,)
        The survival outcome, as ``sksurv.util.Surv.from_arrays(event, time)`` makes it.
    param_space : callable
        ``param_space(trial) -> dict``: draws the trial's parameters with
        ``trial.suggest_*`` and returns them as ``{name: value}`` for
        ``estimator.set_params``.
    cv : int, cross-validation generator or iterable, default=3
        As in :func:`sklearn.model_selection.cross_validate`; an integer gives
        unshuffled :class:`~sklearn.model_selection.KFold` folds.
    scoring : str, callable or None, default=None
        A single scorer; ``None`` uses ``estimator.score`` (Harrell's C-index for the
        survival estimator). Greater must be better: create the study with
        ``direction="maximize"``.
    n_jobs : int, optional
        Folds fitted in parallel. ``None`` or ``1``: one by one, with pruning
        between folds.
    groups : array-like of shape (n_samples,), optional
        Patient of each row, when a patient has several rows: passed to the splitter
        (use a group splitter such as :class:`~sklearn.model_selection.GroupKFold`) and
        to the estimator's ``fit`` (its internal validation split stays by patient).

    Returns
    -------
    objective : callable
        ``objective(trial) -> float``, the mean cross-validated score, to pass to
        ``study.optimize``.

    See Also
    --------
    PruningCallback : prune between the epochs of a fit instead.
    optuna_integration.OptunaSearchCV : the same search as a scikit-learn estimator.

    Examples
    --------
    >>> import optuna
    >>> from survbehrt import BEHRTSurvivalEstimator
    >>> from survbehrt.datasets import make_synthetic_ehr
    >>> from survbehrt.tuning import optuna_objective
    >>> X, y, _ = make_synthetic_ehr(n_patients=60, random_state=0)
    >>> est = BEHRTSurvivalEstimator(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32,
    ...                              max_epochs=1, time_bins=5, early_stopping=None,
    ...                              validation_fraction=0, random_state=0, n_threads=1)
    >>> def space(trial):
    ...     return {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    ...             "loss": trial.suggest_categorical("loss", ["nll", "hybrid"])}
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(direction="maximize",
    ...                             sampler=optuna.samplers.RandomSampler(seed=0),
    ...                             pruner=optuna.pruners.MedianPruner())
    >>> study.optimize(optuna_objective(est, X, y, space, cv=2), n_trials=2)
    >>> len(study.trials), sorted(study.best_params)
    (2, ['loss', 'lr'])
    """
    if not callable(param_space):
        raise TypeError(
            "param_space must be a callable param_space(trial) -> dict of parameters; "
            f"got {type(param_space).__name__}."
        )
    splitter = check_cv(cv, y, classifier=False)
    scorer = check_scoring(estimator, scoring=scoring)
    sequential = n_jobs is None or (isinstance(n_jobs, Integral) and n_jobs == 1)
    # the estimator's own fit takes the groups too (its validation split is by patient)
    fit_params = {} if groups is None or not _fit_takes_groups(estimator) else {"groups": groups}

    def objective(trial):
        params = param_space(trial)
        if not isinstance(params, dict):
            raise TypeError(
                f"param_space(trial) must return a dict of parameters; got {type(params).__name__}."
            )
        candidate = clone(estimator).set_params(**params)
        if sequential:
            scores = []
            for k, fold in enumerate(splitter.split(X, y, groups)):
                result = cross_validate(
                    candidate, X, y, groups=groups, cv=[fold], scoring=scorer,
                    error_score="raise", params=fit_params,
                )
                scores.append(float(result["test_score"][0]))
                trial.report(float(np.mean(scores)), step=k)
                if trial.should_prune():
                    trial.set_user_attr("cv_scores", scores)
                    raise optuna.TrialPruned(
                        f"pruned after fold {k} (mean score so far {np.mean(scores):.4f})."
                    )
        else:
            result = cross_validate(
                candidate, X, y, groups=groups, cv=splitter, scoring=scorer, n_jobs=n_jobs,
                error_score="raise", params=fit_params,
            )
            scores = [float(s) for s in result["test_score"]]
        trial.set_user_attr("cv_scores", scores)
        return float(np.mean(scores))

    return objective


def _fit_takes_groups(estimator) -> bool:
    import inspect

    return "groups" in inspect.signature(estimator.fit).parameters


class PruningCallback(Callback):
    """skorch callback that reports a per-epoch metric to an Optuna trial and prunes.

    At the end of every epoch, ``net.history[-1][monitor]`` is reported to ``trial``
    as the intermediate value of step ``epoch`` (0-based); when
    ``trial.should_prune()`` is true, :class:`optuna.TrialPruned` is raised, which
    stops ``fit`` and tells ``study.optimize`` to record the trial as pruned. NaN
    values (e.g. a validation C-index on a validation set without events) are not
    reported: a pruner would read them as the worst possible score.

    Unlike :class:`optuna_integration.SkorchPruningCallback`, it survives what
    scikit-learn does to estimator parameters: :func:`sklearn.base.clone` and
    :func:`copy.deepcopy` give a new callback that reports to the *same* trial (a
    trial is a handle on the study, not a hyper-parameter), and pickling drops the
    trial (an in-memory study holds locks), so a fitted estimator still pickles.

    The survival estimator runs it after its own callbacks, so it sees the epoch's
    ``valid_cindex``; when early stopping ends the fit, the epoch that triggered it
    is not reported.

    It reports epochs of a single fit. In a cross-validated objective the folds
    would report the same steps again (Optuna ignores repeated steps, with a
    warning); :func:`optuna_objective` prunes between folds instead.

    Parameters
    ----------
    trial : optuna.trial.Trial
        The trial being evaluated.
    monitor : str, default="valid_cindex"
        The history column to report: ``"valid_cindex"`` (greater is better; the
        study's direction must be ``"maximize"``), or e.g. ``"valid_loss"`` (with
        ``direction="minimize"``). Validation columns need a validation set
        (``validation_fraction > 0``).

    Examples
    --------
    A pruned objective on a hold-out; the survival estimator takes extra skorch
    callbacks through its ``callbacks`` parameter:

    >>> import optuna
    >>> from survbehrt import BEHRTSurvivalEstimator
    >>> from survbehrt.tuning import PruningCallback
    >>> def objective(trial, X_train, y_train, X_test, y_test):
    ...     est = BEHRTSurvivalEstimator(
    ...         lr=trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    ...         validation_fraction=0.2, early_stopping=None,
    ...         callbacks=[PruningCallback(trial, monitor="valid_cindex")],
    ...     )
    ...     return est.fit(X_train, y_train).score(X_test, y_test)

    On any skorch net:

    >>> import numpy as np
    >>> import torch
    >>> from skorch import NeuralNetRegressor
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(direction="minimize",
    ...                             pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    >>> trial = study.ask()
    >>> net = NeuralNetRegressor(torch.nn.Linear(2, 1), max_epochs=5, verbose=0,
    ...                          callbacks=[PruningCallback(trial, monitor="valid_loss")])
    >>> X_r = np.random.default_rng(0).normal(size=(20, 2)).astype("float32")
    >>> try:
    ...     net.fit(X_r, X_r[:, :1])
    ... except optuna.TrialPruned as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    Trial was pruned at epoch 0 (valid_loss=...).
    """

    def __init__(self, trial, monitor="valid_cindex"):
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, net, **kwargs):
        """Report this epoch's value to the trial; prune when the pruner says so.

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being fitted; ``net.history[-1][monitor]`` is reported.
        **kwargs
            Other skorch callback arguments, unused.

        Raises
        ------
        optuna.TrialPruned
            When ``trial.should_prune()``.
        """
        if self.trial is None:
            raise RuntimeError(
                "this PruningCallback has no trial: it was unpickled (the trial is not "
                "pickled with it). Pass a new PruningCallback(trial) to refit."
            )
        history = net.history
        if not history:
            return
        row = history[-1]
        if self.monitor not in row:
            have = sorted(k for k in row if k not in ("batches", "epoch", "dur"))
            hint = (
                " Validation scores need a validation set (validation_fraction > 0)."
                if self.monitor.startswith("valid") else ""
            )
            raise KeyError(
                f"PruningCallback: {self.monitor!r} is not in the net's history; "
                f"this epoch recorded {have}.{hint}"
            )
        epoch = len(history) - 1
        value = float(row[self.monitor])
        if math.isnan(value):
            return
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"Trial was pruned at epoch {epoch} ({self.monitor}={value:.4g})."
            )

    # A trial is shared, never copied: it is a handle on the study's storage.
    def __sklearn_clone__(self):
        return type(self)(self.trial, self.monitor)

    def __deepcopy__(self, memo):
        return type(self)(self.trial, self.monitor)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["trial"] = None
        return state
