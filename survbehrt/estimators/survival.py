"""``BEHRTSurvivalEstimator``: BEHRT survival (piecewise-constant hazards) as a scikit-survival estimator.

``fit`` is a sequence of steps, each a function of the module that owns it: validate
(``_cohort.validate_cohort``, ``_pretrained.resolve_pretrained``), tokenize and split
(``_cohort.split_and_tokenize``), the starting point (``survbehrt.cox_start.hazard_start``,
written into the module by ``BEHRTSurvivalModule.start_from``), train (``_nets.survival_net``,
``_nets.train``), recalibrate (``_calibration.recalibrate``) and finish
(``_set_fitted``). Saving is ``_persistence``'s.

Over 600 lines as one unit: this is the public class alone, and most of it is what a
user reads -- the class docstring (about 290 lines, every parameter and attribute)
and the 42-parameter constructor (87 lines) that scikit-learn requires to be spelled
out. What is left are the scikit-learn / scikit-survival methods (each short); the
helpers live in the modules named above.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted
from skorch.history import History
from sksurv.util import Surv

from ..cox_start import hazard_start
from ..data.tokenizer import N_SPECIAL, EHRTokenizer
from ..data.validation import check_predict_columns, flatten_ehr
from ..explain import explain
from ..losses import HybridSurvivalLoss, PairwiseRankingLoss, SurvivalNLL
from ..model import BEHRTConfig, BEHRTSurvivalModule, apply_lora, configure_trainable
from ..model.decayed_history import check_decay_scales, decay_scales_of
from ..model.wide import wide_recency_of, wide_scales_of
from ..survival import (
    TimeGrid,
    evaluate_on_times,
    risk_score,
    survival_curves,
)
from ._calibration import recalibrate
from ._cohort import split_and_tokenize, validate_cohort
from ._common import (
    check_choice,
    check_fraction,
    check_positive,
    check_store_tokenizer,
    draw_seed,
    fitting,
    harrell_score,
    history_tags,
    model_config,
    seeded_torch,
    token_store,
    torch_threads,
)
from ._nets import survival_net, train
from ._persistence import read_estimator, write_estimator
from ._pretrained import is_fitted_pretrainer, resolve_pretrained
from ._training import (
    _last_visit_logits,
    batched_inference,
    last_visit_representation,
    net_device,
)
from ._tte import start_head_from_task, task_index

__all__ = ["BEHRTSurvivalEstimator", "STRATEGIES", "LOSSES"]

STRATEGIES = ("full", "lora", "frozen")
LOSSES = ("nll", "ranking", "hybrid")
LANDMARKS = ("last", "all")
EARLY_STOPPING = ("cindex", "loss", None)
WIDE = ("joint", "offset", None)
# Rows of earlier batches the ranking term compares each batch with: batches hold
# histories of similar length, and without it short and long histories never meet.
RANKING_MEMORY = 1024


class BEHRTSurvivalEstimator(BaseEstimator):
    """BEHRT transformer for survival analysis on patient histories.

    Patients' visit sequences are tokenized (vocabulary from the training rows, or
    from ``pretrained``), encoded by a BEHRT transformer under a visit-causal mask,
    pooled into visit representations, and a hazard head predicts ``K`` discrete
    hazards over a time grid learned from ``y``. The prediction for a patient is
    read at its last visit. Training runs on skorch (AdamW, warm-up + cosine decay,
    gradient clipping, early stopping).

    Parameters
    ----------
    strategy : {"full", "lora", "frozen"}, default="full"
        What trains: everything; low-rank adapters on the attention projections
        (plus the head); or only the hazard head. ``"lora"`` and ``"frozen"`` are
        meant for a ``pretrained`` encoder (a warning is issued without one).
    loss : {"nll", "ranking", "hybrid"}, default="nll"
        Negative log-likelihood of piecewise-constant hazards (calibration; exact
        times inside the grid's intervals), pairwise ranking loss
        (discrimination), or ``nll + rank_weight * ranking``. The default was chosen
        on the synthetic sequence cohort, ``synthetic-counts`` and the Synthea sample
        together: ``nll`` ranked as well as or better than ``hybrid`` on each, and it
        is calibrated (``benchmarks/ablation.py``, docs/evaluation.md).
    rank_weight : float, default=0.2
        Weight of the ranking term in the hybrid loss.
    rank_sigma : float, default=0.1
        Scale ``sigma`` of the ranking penalty ``exp(-(F_i - F_j) / sigma)``.
    time_bins : int or array-like, default=20
        Number of grid intervals (at Kaplan–Meier quantiles of the training event
        times) or explicit increasing edges, in years after the prediction time.
    landmarks : {"last", "all"}, default="last"
        Train on each patient's last visit only, or on every visit (the hazards
        of visit ``t`` predict the outcome after the prediction time from the
        history up to ``t``: more supervision, same target).
    wide : {"joint", "offset"} or None, default="joint"
        The wide path: an additive term over the log counts of the codes seen so
        far (static codes included), the age at the prediction time (linear and
        quadratic), the log number of visits and the visit tempo at ``decay_scales``
        (the decayed visit counts ``asinh(sum_v exp(-r_v / tau))``) and, with
        ``wide_recency``, the codes' recent counts, added to every hazard logit, so
        that the model can always fall back to what a Cox model on code counts does.
        It starts from a penalised proportional-hazards fit on the training rows
        (a ridge on the codes, ``wide_alpha_``, and another on the dense covariates,
        both chosen by the held-out likelihood of a 3-fold CV; the predictor's scale
        and the baseline then refitted by maximum likelihood; see
        ``survbehrt.cox_start.fit_wide_start``), then trains with the transformer (``"joint"``, wide & deep) or stays
        fixed while the transformer learns what it misses (``"offset"``). None: the
        transformer alone.
    wide_recency : float or None, default=None
        The wide path's recent code counts, at this time scale in years (1.0 is a
        choice to try): beside each code's count, its occurrences weighted
        ``exp(-r / wide_recency)``, ``r`` the years from the visit to the prediction
        time (static codes not counted), each with its own weight in the Cox start and
        the term; what a disease that comes and goes is read from now, where the whole
        history's counts mix every stage passed through. The start is fitted with and
        without them and keeps them only where its folds' held-out likelihood is better
        (``wide_recent_``). None: the counts alone. Off by default, measured on every
        cohort at 1.0 (two seeds, 1,000 and 4,000 labels; docs/model.md, "The recent
        code counts, measured"): they raise the recipes that stay near their start
        (without pre-training +0.020 to +0.032 in C on the sequence cohort, +0.001 to
        +0.009 on latent, +0.002 to +0.008 on synonyms, +0.008 in the Synthea sample's
        12-fold mean; ``counts`` unchanged), but a transformer that learns beyond its
        start no longer does from the stronger one: the pre-trained LoRA recipe on the
        sequence cohort at 4,000 labels loses 0.018 and 0.008 (its test C stays at
        0.782-0.784 where without them it climbs from 0.750 to 0.801,
        ``benchmarks/epoch_trace.py``), and the competing cohort's outcome 0.018.
    continuous_time : bool, default=True
        Beside the age and time-before-prediction bins, embed each token's exact age
        and log time-before-prediction (sinusoidal features, learned projection).
        Ignored with ``pretrained`` (the pretrainer's architecture is used).
    pretrained : BEHRTPretrainer, str or path-like, optional
        A fitted :class:`~survbehrt.BEHRTPretrainer` (or a file it saved). Its
        vocabulary, architecture and encoder weights are used; the architecture
        parameters below are then ignored. A fitted pretrainer survives
        :func:`sklearn.base.clone` (it is shared, never refitted or modified), so
        every CV fold and search trial starts from its weights.
    lora_rank : int, default=8
        Rank of the LoRA adapters (``strategy="lora"``).
    lora_alpha : float, default=16
        LoRA scaling numerator: the adapter update is scaled by ``alpha / rank``.
    lora_dropout : float, default=0.0
        Dropout on the adapters' input.
    lora_feedforward : bool, default=False
        Also put adapters on the feed-forward layers.
    train_embeddings : bool, default=False
        With ``"frozen"`` or ``"lora"``, also train the embeddings.
    embedding_dim : int, default=64
        Width of the hidden states (ignored with ``pretrained``, as are the next three).
    num_layers : int, default=2
        Transformer layers.
    num_heads : int, default=4
        Attention heads; must divide ``embedding_dim``.
    ff_dim : int, default=256
        Inner width of the feed-forward blocks.
    dropout : float, default=0.1
        Dropout of the embeddings, the transformer layers and the hazard head, in
        fine-tuning too (also with ``pretrained``).
    max_length : int, default=256
        Tokens per patient; longer histories keep their most recent whole visits (the
        prediction at the last visit sees the most history; landmark predictions stay
        causal, see ``predict_visit_risks``). What is cut is counted in ``truncation_``
        and warned about above 5 % of the rows.
    min_frequency : int, default=1
        Rarer codes map to ``[UNK]`` (ignored with ``pretrained``).
    n_value_bins : int, default=10
        Quantile bins per code for numeric values (a ``values`` column), learned from
        the training rows; 0 ignores values (ignored with ``pretrained``).
    code_prefix : int, optional
        Codes that share their first ``code_prefix`` characters form a group (a
        hierarchy written in the code: ICD-10 ``"I21"`` for ``"I21.4"``; the whole code
        as written, so ``"ICD10CM//I21"`` is 12 characters), and each code's input
        embedding is its own plus its group's: the rare codes of one concept share what
        is learned of any of them. None: no groups. Ignored with ``pretrained`` (the
        pretrainer's ``code_prefix`` then holds). Off by default: set it where the codes hold a
        hierarchy. On the simulated cohort whose risk concepts are spread over rare
        synonym codes it raised the pre-trained LoRA recipe's C at 4,000 labels by
        0.037-0.059 (three seeds); arbitrary groups cost up to 0.010 in the mean
        (docs/pretraining.md, "Code groups").
    decay_scales : sequence of float or None, default=(0.25, 1.0, 4.0)
        Time scales in years of decayed sums of the visits so far, added to each visit's
        representation before the hazard head
        (:class:`~survbehrt.model.decayed_history.DecayedHistory`): for each scale
        ``tau``, ``sum_v exp(-r_v / tau) [u(h_v), 1]`` over the visits up to it, ``r_v``
        the years from visit ``v`` to the prediction time and ``u`` a learned
        projection of its representation, so the head reads how often and how recently
        things happened (visit tempo, recent episodes), which attention and mean
        pooling average away. Part of the head: it trains under every ``strategy``,
        and with ``pretrained`` too. It starts as the identity. None: no sums. Measured
        on every cohort (docs/pretraining.md, "Decayed sums of the visits", three seeds):
        a head on a frozen pre-trained encoder gained 0.059-0.071 in C on the sequence
        cohort and 0.006-0.066 on the synonyms cohort, LoRA 0.006-0.020 on the sequence
        cohort; the counts and latent cohorts moved by 0.005 or less, the Synthea
        sample's pre-trained recipes lost 0.016-0.025 on one fold of three. At 250
        labelled patients (25 validation rows choosing the epoch) they cost the sequence
        cohort's LoRA recipe 0.068 on one seed of two, a single fit against a single
        fit where five seeds of one recipe spread by up to 0.10 (docs/pretraining.md,
        "Small labelled sets"): with so few labels, pool seeds
        (:class:`~survbehrt.BEHRTEnsemble`), or set None. With the wide path, the same
        scales give its Cox start the decayed visit counts as covariates (see ``wide``).
    lr : float, default=1e-3
        Peak learning rate of AdamW (after linear warm-up; cosine decay after).
    weight_decay : float, default=0.01
    max_epochs : int, default=20
    batch_size : int, default=64
    early_stopping : {"loss", "cindex", None}, default="loss"
        Stop when the validation loss (or C-index) has not improved for
        ``patience`` epochs and restore the best weights. The starting weights (the
        population's hazards, or the wide path's Cox fit) are a candidate too:
        training that never beats them on the validation rows is undone. Needs
        ``validation_fraction > 0``. Why the loss by default: the C-index cannot see
        the hazards' scale, and on the synthetic cohorts it keeps creeping up for
        epochs after the validation likelihood has turned, while the hazards spread
        (calibration slope on new patients 0.88 at the likelihood's best epoch, 0.68
        at the C-index's); stopping on the likelihood passes D-calibration on every
        dataset measured, where the C-index failed it on two, at a C-index within
        0.007 for the pre-trained recipes but 0.012 lower for these defaults on the
        sequence cohort (docs/evaluation.md, "Calibration: early stopping on the
        likelihood").
    patience : int, default=5
    validation_fraction : float, default=0.1
        Share of the training rows held out (stratified on the event) for early
        stopping and the per-epoch validation C-index.
    gradient_clip : float, default=1.0
        Maximum gradient norm.
    random_state : int, RandomState or None, default=None
        Seeds the split, the initialisation, dropout and the batch order.
    device : str, default="cpu"
        A torch device, or ``"auto"`` for CUDA when available.
    accelerator : accelerate.Accelerator, optional
        Train under Hugging Face Accelerate (PyTorch DDP underneath): one code path for
        one CPU, one or several GPUs and several machines, with the accelerator's
        mixed precision (``Accelerator(mixed_precision="bf16")``). ``device`` is then
        ignored: the accelerator places the model. Every process draws the same
        shuffled batches and keeps its share; ``batch_size`` is per process unless the
        accelerator was made with
        ``dataloader_config=DataLoaderConfiguration(split_batches=True)``, which slices
        each batch across the processes (the training then matches one process's). Only the
        main process writes files (``save``). None (default): plain skorch on
        ``device``. Needs ``pip install survbehrt[distributed]``; see docs/scaling.md.
    n_threads : int, optional
        torch threads during ``fit`` / ``predict`` (default: torch's setting).
    verbose : int, default=0
        0 silent, 1 an epoch table, 2 also a progress bar per epoch.
    callbacks : list of skorch callbacks or (name, callback) pairs, optional
        Extra skorch callbacks, run after the validation C-index is recorded and
        before early stopping (so they see every epoch's ``valid_cindex``), e.g.
        :class:`survbehrt.tuning.PruningCallback`.
    init_head_from_task : str, optional
        Zero-shot start: where the outcome is one of the tasks of a ``pretrained``
        encoder fitted with the ``"tte"`` objective (a code, or a prefix with
        ``tte_prefix``, as in its ``tte_tasks_``), the hazard head starts as that task's
        head (the pre-trained hazard of the code's next occurrence, moved onto this
        grid), so the model predicts before any fine-tuning (``max_epochs=0``). The wide
        path, if any, then starts at zero rather than at its Cox fit, which would count
        the same signal twice. Needs a head at least ``2 x tte_bins`` wide
        (``embedding_dim // 2`` by default).
    recalibrate : bool, default=True
        After training, refit the calibration slope and level of the hazards
        (:mod:`survbehrt.recalibration`: each patient's hazards times
        ``exp(a + b x)``, ``x`` its centred log risk score; the network's outputs fixed)
        and apply them to every prediction: the slope ``1 + b`` on the validation rows
        (piecewise-exponential likelihood, a ridge pull towards 1), then the level ``a``
        that matches the observed and expected events of all fitted rows. The ranking,
        hence the C-index, is unchanged. With ``early_stopping="cindex"`` the epoch kept
        is the one that ranks best, where the hazards already spread too wide
        (over-fitting leaves the C-index flat), and this step pulls them back to the
        held-out rows' scale; with the default ``"loss"`` the epoch kept already fits
        the scale, and the step corrects what is left, mostly the level
        (docs/evaluation.md, ``benchmarks/calibration_diagnosis.py``). Needs
        ``validation_fraction > 0``: without validation rows, or with fewer than 50
        events among them (the slope would be noise), nothing is refitted. It uses the
        outcomes: a zero-shot fit (``init_head_from_task``, ``max_epochs=0``) that must
        not see them needs ``recalibrate=False``.
    encoder_start : bool, default=True
        With a ``pretrained`` encoder, the hazard head starts with a linear predictor of
        the encoder's representation of the last visit: a penalised Cox fit of those
        features on the training rows, fitted with the wide path's codes and covariates
        (one fit, their own penalty chosen by the same held-out likelihood on the same
        folds; :func:`survbehrt.cox_start.hazard_start`'s ``representations``). What the
        pre-trained encoder already knows then counts from the first epoch, whatever the
        strategy. It is kept only where those folds' held-out likelihood is better with
        it than without, and never with fewer than 50 events among the training rows
        (``encoder_start_``). Ignored without ``pretrained`` or with
        ``init_head_from_task``.

    Attributes
    ----------
    tokenizer_ : EHRTokenizer
    vocabulary_ : dict of str to int
    time_grid_ : TimeGrid
        The fitted grid; ``time_grid_.cuts_`` are its edges.
    unique_times_ : ndarray
        Sorted unique observed times (events and censorings) of the training rows,
        as in scikit-survival's estimators; the columns of
        ``predict_survival_function(X, return_array=True)``.
    wide_alpha_ : float or None
        Ridge penalty on the codes of the wide path's starting fit (see
        ``survbehrt.cox_start.fit_wide_start``; None without the wide path).
    wide_recent_ : bool or None
        Whether the wide path's recent code counts entered its starting fit (their
        held-out likelihood on the fit's folds was better; else their weights start at
        zero); None without them (``wide_recency=None``, no wide path, or
        ``init_head_from_task``).
    encoder_start_ : bool or None
        Whether the encoder's representation entered the starting fit
        (``encoder_start``: its held-out likelihood on the fit's folds was better; else
        the head starts as without it); None when it was not tried (no ``pretrained``,
        ``encoder_start=False``, ``init_head_from_task``, or the competing-risks
        estimator).
    calibration_ : dict or None
        The calibration refitted after training (``recalibrate``): its ``intercept``
        (the level, from all fitted rows), ``slope`` (from the validation rows),
        ``center`` (the validation rows' mean log risk score) and ``n_events`` (of all
        fitted rows); None when nothing was refitted.
    is_event_time_ : ndarray of bool
        Whether each of ``unique_times_`` is the time of at least one event.
    net_ : SurvivalNet
        The fitted skorch net; ``net_.module_`` the torch module.
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss``, ``valid_cindex`` and, for the hybrid
        loss, ``train_nll`` / ``train_ranking`` (and ``valid_*``).
    n_trainable_params_ : int
        Parameters that train under ``strategy``.
    n_params_ : int
        All parameters of the module (LoRA adapters included).
    feature_names_in_ : ndarray of str
        The columns of ``X`` the model reads (among ``codes``, ``ages``,
        ``index_age``, ``static``, ``values``) seen in ``fit``; other columns are
        ignored at fit and predict time, and the column order is free.
    truncation_ : dict
        What truncation to ``max_length`` cut from the training rows:
        ``rows``, ``truncated_rows``, ``tokens``, ``truncated_tokens`` and the shares
        (see :meth:`~survbehrt.data.TokenizedEHR.truncation`).

    Notes
    -----
    **Divergence.** At too high an ``lr`` the weights overflow. ``fit`` then
    stops at the first non-finite training or validation loss, prediction or
    weight, warns with a :class:`sklearn.exceptions.ConvergenceWarning` that names
    ``lr``, the epoch and the batch, and keeps the best finite state: the best
    epoch on the validation C-index under early stopping, else the last epoch that
    ended finite, the starting weights when there is none. It warns rather than
    raises so that the fitted model stays usable and a ``GridSearchCV`` over
    ``lr`` scores that candidate as its start (turn the warning into an error with
    :func:`warnings.simplefilter` to fail instead).

    Examples
    --------
    >>> from survbehrt import BEHRTSurvivalEstimator
    >>> from survbehrt.datasets import make_synthetic_ehr
    >>> X, y, _ = make_synthetic_ehr(n_patients=120, random_state=0)
    >>> est = BEHRTSurvivalEstimator(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32,
    ...                              max_epochs=2, early_stopping=None, validation_fraction=0,
    ...                              random_state=0).fit(X, y)
    >>> est.predict(X).shape
    (120,)
    >>> fns = est.predict_survival_function(X.iloc[:2])
    >>> float(fns[0](0.0))
    1.0
    """

    def __init__(
        self,
        strategy="full",
        loss="nll",
        rank_weight=0.2,
        rank_sigma=0.1,
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
        init_head_from_task=None,
        recalibrate=True,
        encoder_start=True,
    ):
        self.strategy = strategy
        self.loss = loss
        self.rank_weight = rank_weight
        self.rank_sigma = rank_sigma
        self.time_bins = time_bins
        self.landmarks = landmarks
        self.wide = wide
        self.wide_recency = wide_recency
        self.continuous_time = continuous_time
        self.pretrained = pretrained
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_feedforward = lora_feedforward
        self.train_embeddings = train_embeddings
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.max_length = max_length
        self.min_frequency = min_frequency
        self.n_value_bins = n_value_bins
        self.code_prefix = code_prefix
        self.decay_scales = decay_scales
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.gradient_clip = gradient_clip
        self.random_state = random_state
        self.device = device
        self.accelerator = accelerator
        self.n_threads = n_threads
        self.verbose = verbose
        self.callbacks = callbacks
        self.init_head_from_task = init_head_from_task
        self.recalibrate = recalibrate
        self.encoder_start = encoder_start

    # ------------------------------------------------------------------ sklearn protocol

    def __sklearn_clone__(self):
        # A fitted pretrainer is a starting point, not a hyper-parameter to refit:
        # clone() would hand every CV fold an *unfitted* copy. Share it instead (fit
        # only reads its weights). Everything else is cloned as sklearn does.
        params = self.get_params(deep=False)
        pretrained = params.pop("pretrained")
        new_params = {k: clone(v, safe=False) for k, v in params.items()}
        if not is_fitted_pretrainer(pretrained):
            pretrained = clone(pretrained, safe=False)
        return type(self)(pretrained=pretrained, **new_params)

    def get_params(self, deep=True):
        """Get parameters of this estimator.

        A fitted ``pretrained`` is shared between clones (see ``__sklearn_clone__``),
        so its own parameters are not exposed as ``pretrained__*``: setting them
        would change the shared object for every fold and candidate.

        Parameters
        ----------
        deep : bool, default=True
            Include the parameters of nested estimators (an unfitted ``pretrained``).

        Returns
        -------
        params : dict
        """
        params = super().get_params(deep=deep)
        if deep and is_fitted_pretrainer(self.pretrained):
            params = {k: v for k, v in params.items() if not k.startswith("pretrained__")}
        return params

    def set_params(self, **params):
        """Set parameters; ``pretrained__*`` is refused for a fitted, shared pretrainer.

        Parameters
        ----------
        **params : dict

        Returns
        -------
        self : BEHRTSurvivalEstimator
        """
        nested = [k for k in params if k.startswith("pretrained__")]
        if nested and is_fitted_pretrainer(params.get("pretrained", self.pretrained)):
            raise ValueError(
                f"cannot set {nested}: a fitted `pretrained` is shared by every clone and is "
                f"never refitted. Fit another BEHRTPretrainer and pass it as `pretrained`."
            )
        return super().set_params(**params)

    def __sklearn_tags__(self):
        return history_tags(super().__sklearn_tags__(), self.random_state, supervised=True)

    # ------------------------------------------------------------------ fitting

    def _check_params(self):
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("loss", self.loss, LOSSES)
        check_choice("landmarks", self.landmarks, LANDMARKS)
        check_choice("wide", self.wide, WIDE)
        check_choice("early_stopping", self.early_stopping, EARLY_STOPPING)
        check_choice("encoder_start", self.encoder_start, (True, False))
        for name in ("max_epochs",):
            check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("batch_size", "patience", "lora_rank", "max_length"):
            check_positive(name, getattr(self, name))
        for name in ("lr", "rank_sigma", "gradient_clip", "lora_alpha"):
            check_positive(name, getattr(self, name), integer=False)
        check_positive("rank_weight", self.rank_weight, integer=False, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, integer=False, allow_zero=True)
        check_fraction("validation_fraction", self.validation_fraction)
        if self.code_prefix is not None:
            check_positive("code_prefix", self.code_prefix)
        check_decay_scales(self.decay_scales)
        if self.wide_recency is not None:
            check_positive("wide_recency", self.wide_recency, integer=False)
        if self.early_stopping is not None and self.validation_fraction == 0:
            raise ValueError(
                f"early_stopping={self.early_stopping!r} needs a validation set; set "
                f"validation_fraction > 0 or early_stopping=None."
            )

    def _make_criterion(self, cuts):
        if self.loss == "nll":
            return SurvivalNLL(cuts)
        if self.loss == "ranking":
            return PairwiseRankingLoss(cuts, sigma=self.rank_sigma, memory_size=RANKING_MEMORY)
        return HybridSurvivalLoss(cuts, rank_weight=self.rank_weight, sigma=self.rank_sigma,
                                  memory_size=RANKING_MEMORY)

    def _adapt_module(self, module, encoder_state=None):
        """Finish a new survival module for ``strategy``: encoder weights, LoRA, what trains.

        Shared by ``fit`` (after the head and the wide term got their starting values) and
        ``load``, so that a saved state dict fits the module exactly. Returns the
        parameter counts (``configure_trainable``).
        """
        if encoder_state is not None:
            module.encoder.load_state_dict(encoder_state)
        if self.strategy == "lora":
            apply_lora(
                module.encoder, rank=self.lora_rank, alpha=self.lora_alpha,
                dropout=self.lora_dropout, include_feedforward=self.lora_feedforward,
            )
        counts = configure_trainable(module, self.strategy, train_embeddings=self.train_embeddings)
        if self.wide == "offset":  # the fitted wide term stays as it is: an offset
            module.wide.requires_grad_(False)
            counts["trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
        return counts

    def fit(self, X, y, groups=None):
        """Fit the model.

        Parameters
        ----------
        X : pandas.DataFrame, or TokenStore or path-like
            One row per patient (or per patient and prediction time): ``codes``,
            ``ages`` and optionally ``index_age``, ``static``, ``values``; other columns
            are ignored. Or a tokenized cohort on disk (a
            :class:`~survbehrt.data.TokenStore`, a view of one, or its folder), read
            batch by batch without loading it: its tokenizer is used (not refitted;
            ``max_length``, ``min_frequency``, ``n_value_bins`` are then ignored) and
            ``y`` aligns with its rows by position (see docs/scaling.md).
        y : structured ndarray, shape (n_samples,)
            Event indicator and time (years after the prediction time), as
            ``sksurv.util.Surv.from_arrays(event, time)`` makes it.
        groups : array-like of shape (n_samples,), optional
            Patient of each row, when a patient has several rows (prediction
            times). The internal validation split keeps each patient on one
            side, and the ranking term never compares a patient with itself.
            Default: the X index level ``subject_id`` when X has a MultiIndex
            with one (as :func:`survbehrt.data.from_events` makes it), else one
            patient per row.

        Returns
        -------
        self : BEHRTSurvivalEstimator
        """
        # validate
        self._check_params()
        pre = resolve_pretrained(self.pretrained)
        task = None
        if self.init_head_from_task is not None:
            if pre is None:
                raise ValueError("init_head_from_task needs `pretrained` (a BEHRTPretrainer "
                                 "fitted with the 'tte' objective).")
            task = task_index(pre, self.init_head_from_task)
        cohort = self._validate_cohort(X, y, groups)
        seed = draw_seed(self.random_state)
        # tokenize and split
        data = split_and_tokenize(
            cohort, seed, self.validation_fraction, stratify=True,
            tokenizer_params=dict(max_length=self.max_length, min_frequency=self.min_frequency,
                                  n_value_bins=self.n_value_bins),
            pretrained=None if pre is None else pre.tokenizer_,
        )
        self.feature_names_in_ = data.feature_names
        self.n_features_in_ = len(self.feature_names_in_)
        if pre is None and self.strategy != "full":
            warnings.warn(
                f"strategy={self.strategy!r} without `pretrained` adapts a randomly initialised "
                f"encoder; pass a fitted BEHRTPretrainer, or use strategy='full'.",
                UserWarning,
                stacklevel=2,
            )
        train_idx = data.train_idx
        time, event = cohort.time[train_idx], cohort.event[train_idx]
        if not event.any():
            raise ValueError("the training rows (after the validation split) hold no events")
        # the grid of every cause: all-cause events (the event itself with one cause)
        grid = TimeGrid(time_bins=self.time_bins).fit(Surv.from_arrays(event > 0, time))

        with fitting(self, seed):
            if pre is not None:
                # dropout is a fine-tuning setting, not architecture: it applies here too
                config = dataclasses.replace(pre.module_.encoder.config, dropout=self.dropout)
            else:
                config = model_config(self, data.tokenizer)
            module, start = self._start_module(data, grid, config, seed, pre, task)
            counts = self._adapt_module(module, None if pre is None else pre.encoder_state_dict())
            # train
            net = survival_net(self, module, self._make_criterion(grid.cuts_), seed,
                               len(train_idx), data.valid_set)
            train(net, data.train_set, self.accelerator)
            # recalibrate: the hazards' scale refitted on the held-out rows
            calibration = (recalibrate(net, data.train_set, data.valid_set, grid.cuts_,
                                       grid.max_time_)
                           if self.recalibrate else None)
        # finish
        self._set_fitted(data, grid, start, net, counts)
        self.calibration_ = None if calibration is None else calibration._asdict()
        return self

    def _validate_cohort(self, X, y, groups):
        """The ``validate`` step's outcome check (the competing-risks estimator's differs)."""
        return validate_cohort(X, y, groups)

    def _start_module(self, data, grid, config, seed, pre=None, task=None):
        """A new module at its starting point: the population's hazards, or the wide path's
        Cox fit, or (``task``: ``init_head_from_task``'s index) a pre-training task's hazard.

        Returns the module and the :class:`~survbehrt.cox_start.HazardStart`.
        """
        cohort, train_idx = data.cohort, data.train_idx
        # with init_head_from_task, the task's head: the wide path then starts at zero
        reps = None
        if pre is not None and task is None and self.encoder_start:
            # what the head reads at the start: the pre-trained encoder's last visits (run
            # by hazard_start only where its part can enter)
            def reps():
                return batched_inference(pre.module_, data.tokens, last_visit_representation,
                                         device=net_device(pre.net_),
                                         rows=data.rows[train_idx])
        start = hazard_start(
            data.tokens, data.rows[train_idx], cohort.time[train_idx], cohort.event[train_idx],
            grid.cuts_, wide=self.wide is not None and task is None, n_special=N_SPECIAL,
            vocab_size=config.vocab_size,
            groups=None if cohort.groups is None else cohort.groups[train_idx],
            random_state=seed, tempo_scales=self.decay_scales, recency=self.wide_recency,
            representations=reps,
        )
        module = BEHRTSurvivalModule(config, grid.n_bins_, wide=self.wide is not None,
                                     age_mean=start.age_mean, age_scale=start.age_scale,
                                     decay_scales=self.decay_scales, wide_scales=self.decay_scales,
                                     wide_recency=self.wide_recency)
        module.start_from(start.baseline, start.beta, start.gamma, start.representation_weight)
        if task is not None:
            start_head_from_task(module.head, pre.module_.tte_head, task, pre.module_.tte_cuts,
                                 grid.cuts_)
        return module, start

    def _module_args(self, module) -> dict:
        """What ``save`` keeps to rebuild the module (``_rebuild_module`` reads it)."""
        # the wide term's age centring is a buffer: the state dict restores it
        return {"config": module.config.to_dict(), "n_bins": int(module.head.num_bins),
                "wide": module.wide is not None, "decay_scales": decay_scales_of(module),
                "wide_scales": wide_scales_of(module), "wide_recency": wide_recency_of(module)}

    @staticmethod
    def _rebuild_module(args):
        # files saved before the wide path's tempo covariates (recent code counts) have no
        # "wide_scales" ("wide_recency"): none
        return BEHRTSurvivalModule(BEHRTConfig(**args["config"]), args["n_bins"], wide=args["wide"],
                                   decay_scales=args.get("decay_scales"),
                                   wide_scales=args.get("wide_scales"),
                                   wide_recency=args.get("wide_recency"))

    def _set_fitted(self, data, grid, start, net, counts):
        self.tokenizer_ = data.tokenizer
        self.vocabulary_ = data.tokenizer.vocabulary_
        self.truncation_ = data.tokens.truncation(data.rows)
        self.time_grid_ = grid
        self.wide_alpha_ = start.alpha
        self.wide_recent_ = start.recent
        self.encoder_start_ = start.representation_used
        # as scikit-survival's estimators: every observed training time, events flagged
        cohort, train_idx = data.cohort, data.train_idx
        self.unique_times_ = np.unique(cohort.time[train_idx])
        is_event = np.zeros(len(self.unique_times_), dtype=bool)
        pos = np.searchsorted(self.unique_times_, cohort.time[train_idx][cohort.event[train_idx] > 0])
        is_event[pos] = True
        self.is_event_time_ = is_event
        self.net_ = net
        self.history_ = net.history
        self.n_trainable_params_ = counts["trainable"]
        self.n_params_ = counts["total"]

    # ------------------------------------------------------------------ prediction

    def _flat(self, X):
        # Only the known columns matter: extra columns and their order are free, and a
        # missing optional column is allowed (with a warning) -- no sklearn name check.
        check_is_fitted(self, "net_")
        flat = flatten_ehr(X)
        check_predict_columns(X, self.feature_names_in_)
        return flat

    def _tokens(self, X):
        """``(tokens, rows)``: a frame tokenized, or a token store's cohort and rows."""
        store = token_store(X)
        if store is None:
            flat = self._flat(X)  # checks that the estimator is fitted first
            tokens = self.tokenizer_.transform_flat(flat)
            return tokens, np.arange(len(tokens))
        check_is_fitted(self, "net_")
        check_store_tokenizer(store, self.tokenizer_, "the fitted estimator")
        return store.tokens, store.rows

    def _last_visit_logits(self, X) -> np.ndarray:
        tokens, rows = self._tokens(X)
        with torch_threads(self.n_threads):
            return batched_inference(
                self.net_.module_, tokens, _last_visit_logits, device=net_device(self.net_),
                rows=rows,
            )

    def predict(self, X):
        """Risk scores: higher means an earlier event.

        The score is the cumulative hazard summed over the time grid, read at each
        patient's last visit.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
            Patient frame, or a tokenized cohort on disk (see ``fit``).

        Returns
        -------
        risk : ndarray of float, shape (n_samples,)
        """
        return np.asarray(risk_score(self._last_visit_logits(X)), dtype=float)

    def predict_survival_function(self, X, return_array=False):
        """Survival functions of the patients.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
            Patient frame, or a tokenized cohort on disk (see ``fit``).
        return_array : bool, default=False
            Return a ``(n_samples, n_unique_times)`` array of survival probabilities
            at ``unique_times_`` instead of step functions.

        Returns
        -------
        ndarray of sksurv.functions.StepFunction, shape (n_samples,), or ndarray of float
            :class:`~survbehrt.survival.SurvivalCurve` objects (scikit-survival step
            functions that are exact between knots: the survival of piecewise-constant
            hazards, continuous in time) on ``[0, largest training time]``.
        """
        return self._as_functions(self._last_visit_logits(X), "survival", return_array)

    def predict_cumulative_hazard_function(self, X, return_array=False):
        """Cumulative hazard functions ``H(t) = -log S(t)`` of the patients.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
            Patient frame, or a tokenized cohort on disk (see ``fit``).
        return_array : bool, default=False
            Return a ``(n_samples, n_unique_times)`` array at ``unique_times_``.

        Returns
        -------
        ndarray of sksurv.functions.StepFunction, shape (n_samples,), or ndarray of float
            Continuous, piecewise-linear curves (:class:`~survbehrt.survival.SurvivalCurve`).
        """
        return self._as_functions(self._last_visit_logits(X), "cumhaz", return_array)

    def _as_functions(self, logits, kind, return_array):
        grid = self.time_grid_
        if return_array:
            return evaluate_on_times(logits, grid.cuts_, self.unique_times_, kind=kind)
        return survival_curves(logits, grid.cuts_, grid.max_time_, kind=kind)

    def predict_visit_risks(self, X):
        """Risk score at every kept visit (landmark predictions), for risk trajectories.

        The risk at visit ``t`` is the prediction from the history up to ``t`` with the
        same prediction time: it never depends on later visits. Under the visit-causal
        mask that holds for every visit of a row that fits in ``max_length``. For a
        truncated row, the visits whose view in the kept sequence differs from the
        history cut at them (``TokenizedEHR.visit_complete`` False) are predicted from
        that cut history, tokenized on its own, so that ``predict_visit_risks(X)[i][t]``
        equals ``predict`` on row ``i`` cut after visit ``t``. Visits dropped by
        truncation are absent.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
            Patient frame, or a tokenized cohort on disk (see ``fit``).

        Returns
        -------
        list of ndarray
            One array per patient, a risk per kept visit (oldest first); the first kept
            visit of row ``i`` is its visit ``len(X["codes"].iloc[i]) - len(result[i])``.
        """
        store = token_store(X)
        if store is None:
            flat = self._flat(X)
            tokens = self.tokenizer_.transform_flat(flat)
        else:
            tokens, rows = self._tokens(store)
            tokens = tokens.subset(rows)  # one output per visit: the rows fit in memory
            if not tokens.visit_complete.all():
                raise ValueError(
                    f"{int((~tokens.visit_complete).sum())} visits of truncated rows in the "
                    f"token store need the history cut at them, which a store does not keep; "
                    f"pass the patient frame to predict_visit_risks."
                )
        width = int(tokens.n_visits.max())

        def visit_risks(module, batch):
            risk = risk_score(module(**batch))
            return torch.nn.functional.pad(risk, (0, width - risk.shape[1]))

        with torch_threads(self.n_threads):
            risks = batched_inference(self.net_.module_, tokens, visit_risks, device=net_device(self.net_))
            out = [risks[i, :n].copy() for i, n in enumerate(tokens.n_visits)]
            incomplete = np.flatnonzero(~tokens.visit_complete)
            if len(incomplete):
                # history cut at each such visit, same prediction time, read at its last visit
                row = np.repeat(np.arange(len(tokens)), tokens.n_visits)[incomplete]
                kept = incomplete - tokens.visit_offsets[row]
                cut = self.tokenizer_.transform_flat(
                    flat.cut(row, tokens.dropped_visits[row] + kept + 1), warn=False
                )
                logits = batched_inference(
                    self.net_.module_, cut, _last_visit_logits, device=net_device(self.net_)
                )
                for i, j, r in zip(row, kept, np.asarray(risk_score(logits), dtype=risks.dtype)):
                    out[i][j] = r
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path):
        """Save the fitted estimator to one file: weights, parameters, vocabulary, grid.

        A ``torch.save`` file of plain values and tensors, read back by :meth:`load`
        with ``torch.load(path, weights_only=True)``: no pickled code, so it does not
        depend on the skorch or survbehrt classes of the day and loading it cannot run
        anything. It is versioned; the same format serves
        :meth:`BEHRTPretrainer.save <survbehrt.BEHRTPretrainer.save>`.

        ``pretrained`` is not saved (its encoder weights, fine-tuned or not, are part of
        the saved module), nor are ``callbacks`` (code): the loaded estimator has them as
        None. It predicts exactly as this one; refitting it starts from scratch unless
        ``pretrained`` is set again.

        Parameters
        ----------
        path : str or path-like

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from survbehrt import BEHRTSurvivalEstimator
        >>> from survbehrt.datasets import make_synthetic_ehr
        >>> X, y, _ = make_synthetic_ehr(n_patients=80, random_state=0)
        >>> est = BEHRTSurvivalEstimator(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32,
        ...                              max_epochs=1, early_stopping=None,
        ...                              validation_fraction=0, random_state=0).fit(X, y)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
        >>> est.save(path)
        >>> same = BEHRTSurvivalEstimator.load(path)
        >>> bool(np.array_equal(same.predict(X), est.predict(X)))
        True
        """
        check_is_fitted(self, "net_")
        module = self.net_.module_
        write_estimator(
            self, path, module, module_args=self._module_args(module),
            skip=("net_", "module_", "history_", "vocabulary_"),
        )

    @classmethod
    def load(cls, path, device="cpu"):
        """Load an estimator saved by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
        device : str, default="cpu"
            Where the loaded model runs (its ``device`` parameter).

        Returns
        -------
        BEHRTSurvivalEstimator
            Fitted; predicts as the saved estimator did.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            Whatever is wrong with the file, named in the message: not written by
            ``BEHRTSurvivalEstimator.save``, another format version, parameters or module settings
            this version does not have, missing, extra or mis-shaped weights, or an
            attribute that is not a fitted one (only fitted attributes are restored).

        Warns
        -----
        UserWarning
            If another survbehrt version wrote the file (same format): it is read,
            but the model code may have changed in between.
        """
        saved = read_estimator(path, cls)
        est = cls(**dict(saved.params, device=device))
        args = saved.module
        # building the module must not move the caller's torch RNG
        with saved.rebuilding("the torch module"), seeded_torch(0):
            module = cls._rebuild_module(args)
            est._adapt_module(module)
        saved.load_weights(module)
        est.tokenizer_ = saved.component("tokenizer_", EHRTokenizer)
        est.vocabulary_ = est.tokenizer_.vocabulary_
        est.time_grid_ = saved.component("time_grid_", TimeGrid)
        net = survival_net(est, module, est._make_criterion(est.time_grid_.cuts_), seed=0)
        net.initialize()
        net.history = History(saved.history)
        est.net_ = net
        est.history_ = net.history
        est.calibration_ = None  # files written before recalibration existed have none
        saved.restore_attributes(est)
        if est.calibration_ is not None:
            c = est.calibration_
            module.set_calibration(c["intercept"], c["slope"], c["center"])
        return est

    def score(self, X, y):
        """Harrell's concordance index of ``predict(X)``.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
            Patient frame, or a tokenized cohort on disk (see ``fit``).
        y : structured ndarray, shape (n_samples,)

        Returns
        -------
        cindex : float
            NaN when ``y`` has no events or no comparable pair (the C-index is
            undefined), so that a cross-validation fold without events does not
            abort a search.
        """
        return harrell_score(self.predict, X, y)

    def explain(self, X, **kwargs):
        """Attributions of the log risk to each code, value and visit (see :func:`survbehrt.explain.explain`).

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore
            Patients, as for ``predict``.
        **kwargs
            ``n_steps``, ``batch_size``, ``return_rows``.

        Returns
        -------
        pandas.DataFrame
            One row per code token and part (and the completeness check with
            ``return_rows=True``).
        """
        return explain(self, X, **kwargs)
