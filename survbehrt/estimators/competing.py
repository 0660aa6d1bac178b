"""``BEHRTCompetingRisksEstimator``: cause-specific hazards of competing causes on one BEHRT.

A sibling of :class:`~survbehrt.estimators.BEHRTSurvivalEstimator`, not a mode of it:
the class decides what ``y`` means, as in scikit-learn and scikit-survival (a boolean
``y`` given by mistake must not silently become a one-cause competing-risks model, nor
an integer one a survival model). It is that estimator with four of its ``fit`` steps
swapped (the outcome check, the module and its start, the criterion; the early-stopping
score follows the logits' shape in ``_training.validation_cindex``) and its predictions
read per cause; tokenizing, splitting, training, saving and the scikit-learn protocol
are the survival estimator's.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..competing_hazards import (
    CompetingNLL,
    all_cause_logits,
    cumulative_incidence_at,
    incidence_curves,
    incidence_risk,
    marginal_competing_logits,
)
from ..cox_start import HazardStart, hazard_start
from ..data.competing import cause_names, cause_number, check_competing_y
from ..data.tokenizer import N_SPECIAL
from ..model import BEHRTCompetingModule, BEHRTConfig
from ..model.decayed_history import decay_scales_of
from ..model.wide import wide_recency_of, wide_scales_of
from ._cohort import Cohort, validate_cohort
from ._common import cause_specific_score, check_choice, check_positive
from .survival import BEHRTSurvivalEstimator

__all__ = ["BEHRTCompetingRisksEstimator"]


class BEHRTCompetingRisksEstimator(BEHRTSurvivalEstimator):
    """BEHRT for competing risks: cause-specific hazards of ``C`` causes on one encoder.

    The encoder, the tokenization, the training and every shared parameter are those of
    :class:`~survbehrt.BEHRTSurvivalEstimator` (see it for ``strategy``, ``pretrained``,
    ``lora_*``, the architecture, ``lr``, ``max_epochs``, ``early_stopping`` and the
    rest). The hazard head has ``C * K`` outputs read as ``(C, K)``: each cause has a
    piecewise-constant hazard on one time grid, placed on the all-cause event times.
    Without the wide path its output bias starts at each cause's marginal hazards
    (:func:`~survbehrt.competing_hazards.marginal_competing_logits`), so that a model
    that learns nothing answers the Aalen–Johansen incidence; with it, at each cause's
    Cox fit. The loss is the
    competing-risks likelihood, which with cause-specific hazards is the sum of each
    cause's survival likelihood with the other causes censored
    (:func:`~survbehrt.competing_hazards.competing_nll`), on the last visit or, with
    ``landmarks="all"``, on every visit.

    The parameters not listed below are those of
    :class:`~survbehrt.BEHRTSurvivalEstimator` (``rank_weight`` and ``rank_sigma`` are not
    parameters: no ranking term; nor is ``init_head_from_task``: a pre-training task's
    hazard is one cause's).

    Parameters
    ----------
    cause : int or str, default=1
        The cause ``predict`` and ``score`` are about: a number 1..C or a name of
        :func:`survbehrt.data.cause_names` of the training ``y``. A parameter (not a
        ``predict`` argument) so that ``GridSearchCV`` scores the cause asked for.
    horizon : float, optional
        ``predict`` returns the cumulative incidence ``F_cause(horizon)``; default
        (None) ``sum_k F_cause(c_k)`` over the grid's edges, the competing-risks
        analogue of the survival estimator's risk score (early risk weighs more than
        late risk).
    loss : {"nll"}, default="nll"
        Only the likelihood for now: the ranking term of the survival estimator
        compares single-cause rows and has no competing-risks form here yet.
    wide : {"joint", "offset"} or None, default="joint"
        The survival estimator's wide path, one term per cause: each cause's logits get
        their own additive term over the log code counts, the age and the visit count,
        started from the survival estimator's penalised Cox fit on that cause's ``y``
        (the other causes censored; :func:`survbehrt.cox_start.hazard_start`), then
        trained with the transformer (``"joint"``) or kept fixed (``"offset"``); None:
        the transformer alone, started at each cause's marginal hazards. The default is
        the survival estimator's: on the synthetic competing cohort it raised Wolbers' C
        of both causes (0.679 -> 0.695 and 0.702 -> 0.738, ``benchmarks/competing_fit.py``).
    wide_recency : float or None, default=None
        The wide path's recent code counts, as the survival estimator's (each cause's
        term has its own weights). Off by default: on the competing cohort (seed 0) they
        cost the outcome's Wolbers C 0.018 (``benchmarks/competing_fit.py``, docs/model.md).

    Attributes
    ----------
    wide_alpha_ : ndarray of shape (C,) or None
        Each cause's Cox start's ridge penalty on the codes (None without the wide
        path).
    wide_recent_ : ndarray of bool, shape (C,), or None
        Whether each cause's Cox start kept the recent code counts (None without them).
    n_causes_ : int
        ``C``.
    cause_names_ : tuple of str
        The names of causes 1..C (:func:`survbehrt.data.cause_names` of ``y``).
    time_grid_, unique_times_, is_event_time_, net_, history_, tokenizer_, vocabulary_
        As the survival estimator's, on all-cause events; ``history_``'s
        ``valid_cindex`` is the mean over causes of each cause's concordance (Wolbers),
        what ``early_stopping="cindex"`` monitors.

    Notes
    -----
    With one cause (``y`` of event types 0/1) the model is the survival estimator's:
    same parameters, same start, same likelihood, so its survival functions equal
    ``BEHRTSurvivalEstimator``'s with the same parameters and seed (tested, with and
    without the wide path); ``predict`` sums ``1 - S`` over the grid's edges where the
    survival estimator sums the cumulative hazard ``-log S`` (the same order for
    curves that do not cross).

    Examples
    --------
    >>> from survbehrt import BEHRTCompetingRisksEstimator
    >>> from survbehrt.datasets.competing import make_synthetic_competing
    >>> X, y, _ = make_synthetic_competing(n_patients=120, random_state=0)
    >>> est = BEHRTCompetingRisksEstimator(
    ...     cause="outcome", embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32,
    ...     max_epochs=1, early_stopping=None, validation_fraction=0, random_state=0).fit(X, y)
    >>> est.cause_names_
    ('outcome', 'death')
    >>> est.predict_cumulative_incidence(X.iloc[:3], return_array=True).shape[:2]
    (3, 2)
    """

    # no ranking term (see ``loss``) and no pre-training task's head (one cause's): the
    # survival estimator's steps read these
    rank_weight = 0.2
    rank_sigma = 0.1
    init_head_from_task = None
    # nor the survival recalibration: its slope and level are one hazard's, not C causes'
    recalibrate = False
    # nor the encoder's start: its linear predictor is one hazard's (the head's every bin)
    encoder_start = False

    def __init__(
        self,
        cause=1,
        horizon=None,
        strategy="full",
        loss="nll",
        time_bins=20,
        landmarks="last",
        wide="joint",
        wide_recency=None,
        continuous_time=True,
        pretrained=None,
        lora_rank=8,
        lora_alpha=16,
        lora_dropout=0.0,
        lora_feedforward=False,
        train_embeddings=False,
        embedding_dim=64,
        num_layers=2,
        num_heads=4,
        ff_dim=256,
        dropout=0.1,
        max_length=256,
        min_frequency=1,
        n_value_bins=10,
        code_prefix=None,
        decay_scales=(0.25, 1.0, 4.0),
        lr=1e-3,
        weight_decay=0.01,
        max_epochs=20,
        batch_size=64,
        early_stopping="loss",
        patience=5,
        validation_fraction=0.1,
        gradient_clip=1.0,
        random_state=None,
        device="cpu",
        accelerator=None,
        n_threads=None,
        verbose=0,
        callbacks=None,
    ):
        params = dict(locals())
        del params["self"], params["cause"], params["horizon"]
        params.pop("__class__", None)
        super().__init__(**params)
        # the class's constants, not parameters
        del (self.rank_weight, self.rank_sigma, self.init_head_from_task, self.recalibrate,
             self.encoder_start)
        self.cause = cause
        self.horizon = horizon

    # ------------------------------------------------------------------ fit steps

    def _check_params(self):
        super()._check_params()
        check_choice("loss", self.loss, ("nll",))
        if self.horizon is not None:
            check_positive("horizon", self.horizon, integer=False)
        if not isinstance(self.cause, (str, int, np.integer)) or isinstance(self.cause, bool):
            raise TypeError(f"cause must be a cause name or a number 1..C; got {self.cause!r}.")

    def _validate_cohort(self, X, y, groups):
        y_checked = np.asarray(y)
        names = y_checked.dtype.names
        if names is not None and len(names) == 2 and y_checked.dtype[names[0]].kind == "b":
            raise TypeError(
                "y has a boolean event field: a single-cause outcome. "
                "BEHRTCompetingRisksEstimator needs integer event types (0 = censored, "
                "1..C = the cause), as survbehrt.data.competing_y makes them; for one "
                "outcome use BEHRTSurvivalEstimator."
            )
        store = validate_cohort(X, None, groups)
        event, time, n_causes = check_competing_y(y, n_samples=len(store))
        if not event.any():
            raise ValueError("y holds no events (every row is censored): nothing to fit.")
        self.n_causes_ = n_causes
        self.cause_names_ = cause_names(y)
        if len(self.cause_names_) < n_causes:  # unnamed causes beyond the names: numbered
            self.cause_names_ += tuple(str(k) for k in range(len(self.cause_names_) + 1,
                                                             n_causes + 1))
        self._cause_number()  # a cause that y does not have fails before training
        return Cohort(store.X, store.store, store.groups, event, time)

    def _start_module(self, data, grid, config, seed, pre=None, task=None):
        cohort, train_idx = data.cohort, data.train_idx
        time, event = cohort.time[train_idx], cohort.event[train_idx]
        if self.wide is None:
            baseline = marginal_competing_logits(time, event, grid.cuts_, n_causes=self.n_causes_)
            module = BEHRTCompetingModule(config, grid.n_bins_, self.n_causes_,
                                          decay_scales=self.decay_scales)
            module.start_from(baseline)
            return module, HazardStart(baseline, 0.0, 1.0)  # alpha: None
        # the survival estimator's Cox start on each cause's y (the others censored): the
        # likelihood factorises over causes, so each cause's fit is its own
        starts = [hazard_start(
            data.tokens, data.rows[train_idx], time, event == c, grid.cuts_, wide=True,
            n_special=N_SPECIAL, vocab_size=config.vocab_size,
            groups=None if cohort.groups is None else cohort.groups[train_idx],
            random_state=seed, tempo_scales=self.decay_scales, recency=self.wide_recency,
        ) for c in range(1, self.n_causes_ + 1)]
        first = starts[0]
        module = BEHRTCompetingModule(config, grid.n_bins_, self.n_causes_, wide=True,
                                      age_mean=first.age_mean, age_scale=first.age_scale,
                                      decay_scales=self.decay_scales,
                                      wide_scales=self.decay_scales,
                                      wide_recency=self.wide_recency)
        start = HazardStart(
            np.stack([s.baseline for s in starts]), first.age_mean, first.age_scale,
            beta=np.stack([s.beta for s in starts], axis=1),
            gamma=np.stack([s.gamma for s in starts]),
            alpha=np.array([s.alpha for s in starts]),
            recent=None if self.wide_recency is None else np.array([s.recent for s in starts]),
        )
        module.start_from(start.baseline, start.beta, start.gamma)
        return module, start

    def _make_criterion(self, cuts):
        return CompetingNLL(cuts)

    def _module_args(self, module) -> dict:
        return {"config": module.config.to_dict(), "n_bins": module.num_bins,
                "n_causes": module.n_causes, "wide": module.wide is not None,
                "decay_scales": decay_scales_of(module), "wide_scales": wide_scales_of(module),
                "wide_recency": wide_recency_of(module)}

    @staticmethod
    def _rebuild_module(args):
        return BEHRTCompetingModule(BEHRTConfig(**args["config"]), args["n_bins"],
                                    args["n_causes"], wide=args["wide"],
                                    decay_scales=args.get("decay_scales"),
                                    wide_scales=args.get("wide_scales"),
                                    wide_recency=args.get("wide_recency"))

    def _cause_number(self, cause=None) -> int:
        return cause_number(self.cause_names_, self.cause if cause is None else cause)

    # ------------------------------------------------------------------ prediction

    def predict(self, X):
        """Risk of ``cause``: its cumulative incidence summed over the grid, or at ``horizon``.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
            Patient frame, or a tokenized cohort on disk.

        Returns
        -------
        risk : ndarray of float, shape (n_samples,)
            Higher = cause ``cause`` more likely and earlier.
        """
        return self._cause_risk(X, self.cause, self.horizon)

    def _cause_risk(self, X, cause, horizon):
        # ``predict`` for a given cause and horizon (an ensemble asks its members with its own)
        logits = self._last_visit_logits(X)
        return incidence_risk(logits, self.time_grid_.cuts_, horizon)[
            :, self._cause_number(cause) - 1]

    def predict_cumulative_incidence(self, X, cause=None, return_array=False):
        """Cumulative incidence functions ``F_c(t)``: the probability of cause ``c`` by ``t``.

        Exact between the grid's edges (the incidence of piecewise-constant hazards,
        continuous in time). Summed over causes, ``1 - predict_survival_function``.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        cause : int or str, optional
            One cause (number or name); default every cause.
        return_array : bool, default=False
            Return the values at ``unique_times_`` instead of step functions.

        Returns
        -------
        ndarray of IncidenceCurve, shape (n_samples, C) or (n_samples,) for one cause; or ndarray of float
            :class:`~survbehrt.competing_hazards.IncidenceCurve` objects (scikit-survival
            step functions on ``[0, largest training time]``), or with ``return_array``
            an array of shape ``(n_samples, C, n_unique_times)`` (one cause:
            ``(n_samples, n_unique_times)``).
        """
        logits = self._last_visit_logits(X)
        number = None if cause is None else self._cause_number(cause)
        if not return_array:  # one cause's curves alone: each curve costs its knots
            return incidence_curves(logits, self.time_grid_.cuts_, self.time_grid_.max_time_,
                                    cause=number)
        out = cumulative_incidence_at(logits, self.time_grid_.cuts_, self.unique_times_)
        return out if cause is None else out[:, number - 1]

    def _last_visit_logits_all_cause(self, X):
        return all_cause_logits(self._last_visit_logits(X))

    def predict_survival_function(self, X, return_array=False):
        """All-cause survival functions: the probability that no cause has happened by ``t``.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        return_array : bool, default=False
            Return a ``(n_samples, n_unique_times)`` array at ``unique_times_``.

        Returns
        -------
        ndarray of sksurv.functions.StepFunction, shape (n_samples,), or ndarray of float
            As :meth:`BEHRTSurvivalEstimator.predict_survival_function`.
        """
        return self._as_functions(self._last_visit_logits_all_cause(X), "survival", return_array)

    def predict_cumulative_hazard_function(self, X, return_array=False):
        """All-cause cumulative hazard functions (the sum of the causes').

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        return_array : bool, default=False

        Returns
        -------
        ndarray of sksurv.functions.StepFunction, shape (n_samples,), or ndarray of float
        """
        return self._as_functions(self._last_visit_logits_all_cause(X), "cumhaz", return_array)

    def predict_visit_risks(self, X):
        """Not available yet for competing causes (the survival estimator's reads one cause).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore

        Returns
        -------
        None
            Nothing: it always raises.

        Raises
        ------
        NotImplementedError
        """
        raise NotImplementedError("predict_visit_risks is not implemented for competing risks.")

    def explain(self, X, **kwargs):
        """Not available yet for competing causes (attributions of one risk score).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore
        **kwargs

        Raises
        ------
        NotImplementedError
        """
        raise NotImplementedError("explain is not implemented for competing risks.")

    def score(self, X, y):
        """Wolbers' cause-specific concordance of ``predict(X)`` for ``cause``.

        A pair is comparable when ``i`` had ``cause`` at ``t_i`` and ``j`` was event-free
        then or had another cause at any time (it never has ``cause``); unweighted
        (Harrell-type; :func:`survbehrt.competing_metrics.cause_specific_c` gives the
        censoring-weighted form).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
        y : structured ndarray, shape (n_samples,)
            Competing-risks outcome (integer event types).

        Returns
        -------
        cindex : float
            NaN without a case of ``cause`` or a comparable pair, so that a CV fold
            without one does not abort a search.
        """
        check_is_fitted(self, "net_")
        return cause_specific_score(self.predict, X, y, self._cause_number())
