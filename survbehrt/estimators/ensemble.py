"""``BEHRTEnsemble``: several BEHRT survival models fitted with different seeds, their predictions pooled.

A fine-tuned transformer on a few hundred labelled patients varies from seed to seed far
more than a Cox model does: the seed sets the initialisation, the batch order and which
tenth of the rows chooses the epoch, and on the ``sequence`` cohort with 250 labels five
seeds of the same recipe ranged from 0.668 to 0.730 in C (docs/pretraining.md). The mean
of several members is steadier than any one of them, and ranks better than their average
(a deep ensemble, Lakshminarayanan et al., 2017). The members share a fitted
``pretrained`` encoder (cloning the estimator shares it), so the pre-training is paid
once.

With a :class:`~survbehrt.BEHRTCompetingRisksEstimator` recipe the members are
competing-risks models and the ensemble pools their cumulative incidences the same way
(each cause's mean incidence; the means still sum to one minus the mean all-cause
survival).
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..competing_hazards import cumulative_incidence_at
from ..data.competing import check_competing_y
from ..data.validation import check_survival_y
from ..survival import MixtureCurve, evaluate_on_times
from ._common import cause_specific_score, check_positive, harrell_score, history_tags, token_store
from .competing import BEHRTCompetingRisksEstimator
from .survival import BEHRTSurvivalEstimator

__all__ = ["BEHRTEnsemble"]


def _fit_member(estimator, X, y, groups):
    return estimator.fit(X, y, groups=groups)


def _competing(ensemble) -> bool:
    # whether the recipe is a competing-risks model (gates predict_cumulative_incidence)
    return isinstance(ensemble.estimator, BEHRTCompetingRisksEstimator)


class BEHRTEnsemble(BaseEstimator):
    """Several :class:`~survbehrt.BEHRTSurvivalEstimator` fits with different seeds, pooled.

    Each member is a clone of ``estimator`` with its own ``random_state`` (its own
    initialisation, batch order and early-stopping rows), fitted on every row. The
    ensemble's survival function is the members' mean, ``S(t) = mean_m S_m(t)`` (a
    mixture: a survival function, exact between knots as the members' are), and its
    risk score the geometric mean of the members' (their log risks averaged: the
    members' scores are positive and their scales may differ).

    With a :class:`~survbehrt.BEHRTCompetingRisksEstimator` recipe, each cause's
    cumulative incidence is the members' mean, ``F_c(t) = mean_m F_c,m(t)``
    (:meth:`predict_cumulative_incidence`), the survival function the mean of the
    members' all-cause survival, and the risk of the recipe's ``cause`` the arithmetic
    mean of the members' (incidences, on one scale: with ``horizon`` set, the mixture's
    incidence at it); ``score`` is Wolbers' cause-specific concordance. The recipe's
    ``cause`` and ``horizon`` are read when predicting, so
    ``set_params(estimator__cause=...)`` asks about another cause without refitting.

    Parameters
    ----------
    estimator : BEHRTSurvivalEstimator or BEHRTCompetingRisksEstimator, optional
        The recipe every member follows (default: ``BEHRTSurvivalEstimator()``); its
        ``random_state`` is replaced. A fitted ``pretrained`` encoder is shared by the
        members, not refitted.
    n_members : int, default=5
        Members fitted. The cost is ``n_members`` fits and predictions.
    random_state : int, RandomState or None, default=None
        Draws the members' seeds.
    n_jobs : int, optional
        Members fitted at once (joblib); None: one at a time. Each member trains with
        the estimator's ``n_threads``.

    Attributes
    ----------
    estimators_ : list of BEHRTSurvivalEstimator or BEHRTCompetingRisksEstimator
        The fitted members.
    seeds_ : ndarray of int
        Their ``random_state``.
    unique_times_ : ndarray
        Sorted unique observed times of the fitted rows, up to the members' common
        domain: the columns of ``predict_survival_function(X, return_array=True)`` (and
        of ``predict_cumulative_incidence``'s).
    n_features_in_, feature_names_in_
        As the members'.
    n_causes_, cause_names_
        As the members' (competing-risks recipe only).

    See Also
    --------
    survbehrt.survival.MixtureCurve : the ensemble's survival curves.

    Notes
    -----
    Attributions (``explain``) and the package's single-file ``save`` are a single
    model's; an ensemble is saved with :mod:`joblib` or :mod:`pickle` (the members
    pickle with their weights).

    Examples
    --------
    >>> from survbehrt import BEHRTEnsemble, BEHRTSurvivalEstimator
    >>> from survbehrt.datasets import make_synthetic_ehr
    >>> X, y, _ = make_synthetic_ehr(n_patients=120, random_state=0)
    >>> member = BEHRTSurvivalEstimator(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32,
    ...                                 max_epochs=1, early_stopping=None, validation_fraction=0)
    >>> ens = BEHRTEnsemble(member, n_members=2, random_state=0).fit(X, y)
    >>> ens.predict(X).shape
    (120,)
    """

    def __init__(self, estimator=None, n_members=5, random_state=None, n_jobs=None):
        self.estimator = estimator
        self.n_members = n_members
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        return history_tags(super().__sklearn_tags__(), self.random_state, supervised=True)

    def _recipe(self):
        estimator = BEHRTSurvivalEstimator() if self.estimator is None else self.estimator
        if not isinstance(estimator, BEHRTSurvivalEstimator):
            raise TypeError(
                f"BEHRTEnsemble pools BEHRTSurvivalEstimator or BEHRTCompetingRisksEstimator "
                f"members; got {type(estimator).__name__}.")
        return estimator

    def fit(self, X, y, groups=None):
        """Fit ``n_members`` clones of ``estimator``, each with its own seed.

        Parameters
        ----------
        X, y, groups
            As the recipe's ``fit`` (:meth:`BEHRTSurvivalEstimator.fit`; a
            competing-risks ``y`` for a :class:`BEHRTCompetingRisksEstimator` recipe).

        Returns
        -------
        self : BEHRTEnsemble
        """
        recipe = self._recipe()
        check_positive("n_members", self.n_members)
        store = token_store(X)
        n_samples = len(X if store is None else store)
        if _competing(self):
            _, time, _ = check_competing_y(y, n_samples=n_samples)
        else:
            _, time = check_survival_y(y, n_samples=n_samples, require_events=True)
        rng = check_random_state(self.random_state)
        self.seeds_ = rng.randint(np.iinfo(np.int32).max, size=self.n_members)
        members = [clone(recipe).set_params(random_state=int(seed)) for seed in self.seeds_]
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_member)(member, X, y, groups) for member in members)
        first = self.estimators_[0]
        self.n_features_in_ = first.n_features_in_
        self.feature_names_in_ = first.feature_names_in_
        if _competing(self):
            self.n_causes_ = first.n_causes_
            self.cause_names_ = first.cause_names_
        upper = min(float(m.time_grid_.max_time_) for m in self.estimators_)
        times = np.unique(time)
        self.unique_times_ = times[times <= upper]
        return self

    def predict(self, X):
        """Risk scores: the geometric mean of the members' (higher means an earlier event).

        With a competing-risks recipe, the arithmetic mean of the members' risks of the
        recipe's ``cause`` (at its ``horizon`` where set).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)

        Returns
        -------
        risk : ndarray of float, shape (n_samples,)
        """
        check_is_fitted(self, "estimators_")
        if _competing(self):
            recipe = self._recipe()
            return np.mean([m._cause_risk(X, recipe.cause, recipe.horizon)
                            for m in self.estimators_], axis=0)
        logs = [np.log(m.predict(X)) for m in self.estimators_]
        return np.exp(np.mean(logs, axis=0))

    def _curves(self, X, kind, return_array):
        check_is_fitted(self, "estimators_")
        if return_array:
            survival = np.mean([evaluate_on_times(self._event_logits(m, X), m.time_grid_.cuts_,
                                                  self.unique_times_)
                                for m in self.estimators_], axis=0)
            return survival if kind == "survival" else -np.log(survival)
        per_member = [m.predict_survival_function(X) for m in self.estimators_]
        return np.array([MixtureCurve(curves, kind=kind) for curves in zip(*per_member)],
                        dtype=object)

    def _event_logits(self, member, X):
        # a member's hazard logits of any event (all causes' together for a competing one)
        if _competing(self):
            return member._last_visit_logits_all_cause(X)
        return member._last_visit_logits(X)

    @available_if(_competing)
    def predict_cumulative_incidence(self, X, cause=None, return_array=False):
        """Each cause's cumulative incidence: the mean of the members' (competing recipe only).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        cause : int or str, optional
            One cause (number or name of ``cause_names_``); default every cause.
        return_array : bool, default=False
            The values at ``unique_times_`` instead of curves.

        Returns
        -------
        ndarray of MixtureCurve, shape (n_samples, C) or (n_samples,) for one cause; or ndarray of float
            Incidence curves (``kind="incidence"``), exact between the members' knots on
            their common domain; with ``return_array`` an array of shape
            ``(n_samples, C, n_unique_times)`` (one cause: ``(n_samples, n_unique_times)``).
        """
        check_is_fitted(self, "estimators_")
        members = self.estimators_
        if return_array:
            out = np.mean([cumulative_incidence_at(m._last_visit_logits(X), m.time_grid_.cuts_,
                                                   self.unique_times_) for m in members], axis=0)
            return out if cause is None else out[:, members[0]._cause_number(cause) - 1]
        # (members, n_samples[, C]): one cause's curves only where one is asked for
        per_member = np.stack([m.predict_cumulative_incidence(X, cause=cause) for m in members])
        out = np.empty(per_member.shape[1:], dtype=object)
        for index in np.ndindex(out.shape):
            out[index] = MixtureCurve(per_member[(slice(None), *index)], kind="incidence")
        return out

    def predict_survival_function(self, X, return_array=False):
        """Survival functions: the mean of the members' (a mixture).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        return_array : bool, default=False
            A ``(n_samples, n_unique_times)`` array at ``unique_times_`` instead.

        Returns
        -------
        ndarray of MixtureCurve, shape (n_samples,), or ndarray of float
        """
        return self._curves(X, "survival", return_array)

    def predict_cumulative_hazard_function(self, X, return_array=False):
        """Cumulative hazards ``-log S(t)`` of the mixture survival.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        return_array : bool, default=False

        Returns
        -------
        ndarray of MixtureCurve, shape (n_samples,), or ndarray of float
        """
        return self._curves(X, "cumhaz", return_array)

    def score(self, X, y):
        """Harrell's concordance index of ``predict(X)`` (NaN when undefined).

        With a competing-risks recipe, Wolbers' cause-specific concordance of the
        recipe's ``cause`` (unweighted; NaN without a case or a comparable pair).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        y : structured ndarray, shape (n_samples,)

        Returns
        -------
        cindex : float
        """
        check_is_fitted(self, "estimators_")
        if _competing(self):
            cause = self.estimators_[0]._cause_number(self._recipe().cause)
            return cause_specific_score(self.predict, X, y, cause)
        return harrell_score(self.predict, X, y)
