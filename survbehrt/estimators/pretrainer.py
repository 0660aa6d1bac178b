"""``BEHRTPretrainer``: self-supervised BEHRT pre-training as a scikit-learn transformer."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from skorch.history import History

from ..data.cooccurrence import cooccurrence_neighbours, visit_cooccurrence
from ..data.tokenizer import N_SPECIAL, EHRTokenizer
from ..data.validation import check_predict_columns, flatten_ehr
from ..model import IGNORE_INDEX, PATIENT_POOLING, BEHRTConfig, BEHRTPretrainingModule
from ..model.tte import objective_parts
from ._checkpoint import checkpointed_epochs
from ._cohort import split_and_tokenize, validate_cohort
from ._common import (
    check_choice,
    check_fraction,
    check_positive,
    check_store_tokenizer,
    draw_seed,
    fitting,
    history_tags,
    model_config,
    seeded_torch,
    token_store,
    torch_threads,
)
from ._nets import pretraining_net, train
from ._persistence import read_estimator, write_estimator
from ._training import (
    MaskedEHRDataset,
    PretrainingCriterion,
    batched_inference,
    net_device,
    to_device,
)
from ._tte import fit_tte_tasks

__all__ = ["BEHRTPretrainer"]


class _PatientEmbedding:
    """``batched_inference`` function: the encoder's patient embedding with a pooling."""

    def __init__(self, pooling):
        self.pooling = pooling

    def __call__(self, module, batch):
        return module.encoder.patient_embedding(**batch, pooling=self.pooling)


class BEHRTPretrainer(TransformerMixin, BaseEstimator):
    """Self-supervised pre-training of a BEHRT encoder on patient histories.

    Objectives: masked-code modelling (MLM; ``mask_prob`` of the real code tokens
    chosen, 80% ``[MASK]`` / 10% random code / 10% kept, bidirectional encoder),
    next-visit prediction (multi-hot BCE of the next visit's codes from the
    history up to the current visit, visit-causal encoder) and time to event
    (``"tte"``: at every complete visit, from the history up to it, the time to the
    next occurrence of each of ``tte_tasks`` frequent codes, censored at the end of the
    record; the piecewise-constant hazard likelihood of
    :func:`survbehrt.losses.survival_nll` on a grid of ``tte_bins`` intervals, through a
    low-rank task x time-bin head, see :mod:`survbehrt.model.tte`). No labels are needed.
    With ``pooling="cls"`` a third objective trains the ``[CLS]`` token: its hidden
    state in the bidirectional pass predicts the set of codes in the patient's history
    (nothing else trains that token's output).

    A fitted pretrainer feeds :class:`~survbehrt.BEHRTSurvivalEstimator` through its
    ``pretrained`` parameter, or a scikit-survival model through ``transform``
    (patient embeddings) in a :class:`~sklearn.pipeline.Pipeline`.

    Parameters
    ----------
    objective : str, default="mlm+next_visit+tte"
        ``"mlm"``, ``"next_visit"``, ``"tte"``, or several joined by ``"+"``
        (``"mlm+tte"``, ``"mlm+next_visit+tte"``); ``"both"`` is ``"mlm+next_visit"``.
        Next-visit and time-to-event prediction share one visit-causal encoder pass;
        MLM adds a bidirectional one. The default, all three, measured best across the
        simulated cohorts and the Synthea sample over three seeds (level with
        ``"both"`` or better in every dataset's mean, first on the sequence cohort;
        docs/pretraining.md, "All three objectives together").
    mask_prob : float, default=0.15
    pooling : {"mean", "max", "cls"}, default="mean"
        How ``transform`` makes one vector of a patient's history (a bidirectional
        pass): the mean or element-wise maximum of its visit representations, or the
        hidden state of the ``[CLS]`` token. ``"cls"`` also adds the ``[CLS]``
        objective to ``fit`` (logged as ``train_cls``), so it must be set before
        fitting; ``"mean"`` and ``"max"`` can be switched on a fitted pretrainer.
    embedding_dim : int, default=64
        Width of the hidden states and of the embeddings ``transform`` returns.
    num_layers : int, default=2
        Transformer layers.
    num_heads : int, default=4
        Attention heads; must divide ``embedding_dim``.
    ff_dim : int, default=256
        Inner width of the feed-forward blocks.
    dropout : float, default=0.1
    max_length : int, default=256
        Tokens per patient; longer histories keep their most recent whole visits.
    min_frequency : int, default=1
        Codes seen fewer times in ``fit`` map to ``[UNK]``.
    n_value_bins : int, default=10
        Quantile bins per code for numeric values (a ``values`` column); 0 ignores them.
    continuous_time : bool, default=True
        Embed each token's exact age and log time-before-prediction beside the bins.
    code_prefix : int, optional
        Codes that share their first ``code_prefix`` characters form a group (a
        hierarchy written in the code: ICD-10 ``"I21"`` for ``"I21.4"``; the whole code
        as written, so ``"ICD10CM//I21"`` is 12 characters), and each code's input
        embedding is its own plus its group's: the rare codes of one concept share what
        is learned of any of them. None: no groups. An estimator fine-tuned from this
        pretrainer keeps its groups. Off by default: set it where the codes hold a
        hierarchy. On the simulated cohort whose risk concepts are spread over rare
        synonym codes it raised the pre-trained LoRA recipe's C at 4,000 labels by
        0.037-0.059 (three seeds); arbitrary groups cost up to 0.010 in the mean
        (docs/pretraining.md, "Code groups").
    code_neighbours : int, optional
        Share parameters through co-occurrence, where no hierarchy names the concepts:
        each code's input embedding adds the weighted sum of a second table's rows for
        the ``code_neighbours`` codes it shares most visits with in the fit rows (by
        positive pointwise mutual information, among pairs sharing
        ``min_cooccurrence`` visits or more; weights proportional to it), so that
        codes recorded alike (the rare synonyms of a concept) learn together (the
        neighbours: ``module_.encoder.embeddings.neighbour_ids`` and
        ``neighbour_weights``; a code without one adds nothing). An estimator
        fine-tuned from this pretrainer keeps the neighbours and the table.
        The shared table starts at zero. None: no second table, the default: with
        ``code_neighbours=16`` and pools of 40,000 histories C rose by 0.012 in the
        mean on the simulated cohort whose risk codes come in co-occurring clusters,
        and moved by -0.001 to +0.002 on the three others and the Synthea sample;
        docs/pretraining.md, "Shared parameters over the co-occurrence".
    min_cooccurrence : int, default=5
        Visits a pair of codes must share to be neighbours (``code_neighbours``): the
        mutual information of a pair seen together at one visit rests on that visit
        (on the Synthea sample, a third of the pairs).
    lr : float, default=1e-3
        Peak AdamW learning rate (linear warm-up, cosine decay). A fit that
        diverges stops at the first non-finite loss or weight, warns
        (``ConvergenceWarning``, naming ``lr`` and the epoch) and keeps the last
        finite weights (see :class:`BEHRTSurvivalEstimator`, Notes).
    weight_decay : float, default=0.01
    max_epochs : int, default=10
    batch_size : int, default=64
    validation_fraction : float, default=0.1
        Rows held out to report ``valid_loss`` (and for early stopping).
    early_stopping : bool, default=False
        Stop on the validation loss after ``patience`` epochs without improvement.
    patience : int, default=3
    gradient_clip : float, default=1.0
    random_state : int, RandomState or None, default=None
    device : str, default="cpu"
        A torch device, or ``"auto"``.
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
        torch threads during ``fit`` / ``transform``.
    verbose : int, default=0
    tte_tasks : int, default=1000
        ``K``, the number of time-to-event tasks: the codes (or code groups) held by
        the most visits of (a sample of 2,000 of) the fit rows.
    tte_prefix : int, optional
        Group codes by their first ``tte_prefix`` characters (a code hierarchy written
        in the code, e.g. ICD-10 ``"I21"`` for ``"I21.4"``): a task is then the next
        occurrence of any code of the group. None: one task per code.
    tte_bins : int, default=8
        Intervals of the tasks' shared time grid, at quantiles of their times to
        next occurrence (fewer when quantiles tie).
    tte_rank : int, default=32
        Rank of the task x time-bin head: its size grows as
        ``embedding_dim * tte_bins * tte_rank + tte_tasks * (tte_rank + tte_bins)``.
    tte_visits : int or None, default=4
        Each training batch's TTE loss reads at most this many of a patient's visits,
        drawn afresh every batch (None: every visit). The cost of the loss grows with
        the terms read (visits x tasks x bins), not with the encoder. The cap also
        weights patients more evenly than the mean over all visits (a long history
        counts at most ``tte_visits`` visits per batch). Validation uses every term.
    tte_sampled_tasks : int or None, default=256
        Each training batch's TTE loss reads this many tasks, drawn afresh (None: all
        ``tte_tasks``). With both samples the time-to-event step of the small model
        costs about what a survival fine-tuning step costs (benchmarks/pretrain_throughput.py).
    checkpoint_dir : str or path-like, optional
        Save the weights, the optimizer and the history there after every epoch, and
        resume from them: a ``fit`` that finds a checkpoint (of an interrupted fit of
        the same pretrainer on the same data) loads it and runs only the remaining
        epochs, the learning-rate schedule continuing where it stopped. Needs a fixed
        ``random_state`` (the resumed fit must rebuild the same vocabulary, split and
        tasks). The folder belongs to that one fit. ``verbose=2`` adds a progress bar.

    Attributes
    ----------
    tokenizer_ : EHRTokenizer
    vocabulary_ : dict of str to int
    module_ : BEHRTPretrainingModule
        The trained torch module (``module_.encoder`` is the encoder).
    net_ : PretrainingNet
        The skorch net.
    history_ : skorch.History
        Per-epoch ``train_loss`` and the parts ``train_mlm`` / ``train_next_visit``
        (and ``valid_*``).
    n_features_out_ : int
        ``embedding_dim``.
    tte_tasks_ : list of str
        With ``"tte"``: the code (or prefix) of each task, most frequent first.
    tte_cuts_ : ndarray of float
        With ``"tte"``: the grid's edges in years.

    Examples
    --------
    >>> from survbehrt import BEHRTPretrainer
    >>> from survbehrt.datasets import make_synthetic_ehr
    >>> X, _, _ = make_synthetic_ehr(n_patients=100, random_state=0)
    >>> pre = BEHRTPretrainer(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32,
    ...                       max_epochs=1, random_state=0).fit(X)
    >>> pre.transform(X).shape
    (100, 16)
    """

    def __init__(
        self,
        objective="mlm+next_visit+tte",
        mask_prob=0.15,
        pooling="mean",
        embedding_dim=64,
        num_layers=2,
        num_heads=4,
        ff_dim=256,
        dropout=0.1,
        max_length=256,
        min_frequency=1,
        n_value_bins=10,
        code_prefix=None,
        code_neighbours=None,
        min_cooccurrence=5,
        continuous_time=True,
        lr=1e-3,
        weight_decay=0.01,
        max_epochs=10,
        batch_size=64,
        validation_fraction=0.1,
        early_stopping=False,
        patience=3,
        gradient_clip=1.0,
        random_state=None,
        device="cpu",
        accelerator=None,
        n_threads=None,
        verbose=0,
        tte_tasks=1000,
        tte_prefix=None,
        tte_bins=8,
        tte_rank=32,
        tte_visits=4,
        tte_sampled_tasks=256,
        checkpoint_dir=None,
    ):
        self.objective = objective
        self.mask_prob = mask_prob
        self.pooling = pooling
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.max_length = max_length
        self.min_frequency = min_frequency
        self.n_value_bins = n_value_bins
        self.code_prefix = code_prefix
        self.code_neighbours = code_neighbours
        self.min_cooccurrence = min_cooccurrence
        self.continuous_time = continuous_time
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.gradient_clip = gradient_clip
        self.random_state = random_state
        self.device = device
        self.accelerator = accelerator
        self.n_threads = n_threads
        self.verbose = verbose
        self.tte_tasks = tte_tasks
        self.tte_prefix = tte_prefix
        self.tte_bins = tte_bins
        self.tte_rank = tte_rank
        self.tte_visits = tte_visits
        self.tte_sampled_tasks = tte_sampled_tasks
        self.checkpoint_dir = checkpoint_dir

    def __sklearn_tags__(self):
        return history_tags(super().__sklearn_tags__(), self.random_state, supervised=False)

    def _check_params(self):
        objective_parts(self.objective)
        check_choice("pooling", self.pooling, PATIENT_POOLING)
        check_positive("max_epochs", self.max_epochs, allow_zero=True)
        for name in ("code_prefix", "code_neighbours", "tte_prefix", "tte_visits",
                     "tte_sampled_tasks"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        for name in ("batch_size", "patience", "max_length", "tte_tasks", "tte_bins", "tte_rank",
                     "min_cooccurrence"):
            check_positive(name, getattr(self, name))
        for name in ("lr", "gradient_clip"):
            check_positive(name, getattr(self, name), integer=False)
        check_positive("weight_decay", self.weight_decay, integer=False, allow_zero=True)
        check_fraction("validation_fraction", self.validation_fraction)
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1); got {self.mask_prob!r}.")
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("early_stopping needs validation_fraction > 0.")

    def fit(self, X, y=None, groups=None):
        """Pre-train the encoder on the histories of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame, or TokenStore or path-like
            One row per patient (``codes``, ``ages``, optional ``index_age``). Or a
            tokenized cohort on disk (a :class:`~survbehrt.data.TokenStore`, a view of
            one, or its folder), read batch by batch: its tokenizer is used, not
            refitted (see docs/scaling.md).
        y : ignored
            Present for Pipeline compatibility.
        groups : array-like of shape (n_samples,), optional
            Patient of each row; the validation split keeps a patient on one side.
            Default: the X index level ``subject_id`` when present.

        Returns
        -------
        self : BEHRTPretrainer
        """
        # validate
        self._check_params()
        cohort = validate_cohort(X, groups=groups)
        if self.checkpoint_dir is not None and self.random_state is None:
            raise ValueError("checkpoint_dir needs a fixed random_state: a resumed fit must "
                             "rebuild the same vocabulary, validation split and tasks.")
        seed = draw_seed(self.random_state)
        # tokenize and split
        data = split_and_tokenize(
            cohort, seed, self.validation_fraction,
            tokenizer_params=dict(max_length=self.max_length, min_frequency=self.min_frequency,
                                  n_value_bins=self.n_value_bins),
        )
        self.feature_names_in_ = data.feature_names
        self.n_features_in_ = len(self.feature_names_in_)
        tokenizer, parts = data.tokenizer, objective_parts(self.objective)
        mlm = "mlm" in parts
        tasks = None
        if "tte" in parts:
            tasks = fit_tte_tasks(data.tokens, data.rows[data.train_idx], tokenizer.codes_,
                                  self.tte_tasks, self.tte_prefix, self.tte_bins, seed)
        neighbours = None
        if self.code_neighbours is not None:
            counts = visit_cooccurrence(data.tokens, tokenizer.vocab_size_, N_SPECIAL,
                                        data.rows[data.train_idx])
            neighbours = cooccurrence_neighbours(counts, self.code_neighbours,
                                                 self.min_cooccurrence)

        def dataset(idx, offset, reseed):
            return MaskedEHRDataset(data.tokens, tokenizer.vocab_size_, self.mask_prob,
                                    seed=seed + offset, mlm=mlm, reseed_each_pass=reseed,
                                    rows=data.rows[idx])

        valid = dataset(data.valid_idx, 1, True) if len(data.valid_idx) else None
        with fitting(self, seed):
            module = BEHRTPretrainingModule(model_config(self, tokenizer), self.objective,
                                            cls_head=self.pooling == "cls", **self._tte_args(tasks))
            if tasks is not None:  # each task starts at its marginal hazard
                module.tte_head.bias.data.copy_(torch.from_numpy(tasks.bias))
            if neighbours is not None:
                module.encoder.embeddings.set_code_neighbours(*neighbours)
            # train (a resumed fit runs the epochs its checkpoint has left)
            done = 0 if self.checkpoint_dir is None else checkpointed_epochs(self.checkpoint_dir)
            net = pretraining_net(self, module, seed, valid, len(data.train_idx), done_epochs=done)
            net.max_epochs = max(self.max_epochs - done, 0)
            train(net, dataset(data.train_idx, 0, False), self.accelerator)
        # finish
        self._set_fitted(tokenizer, net)
        if tasks is not None:
            self.tte_tasks_, self.tte_cuts_ = tasks.names, tasks.cuts
        return self

    def _tte_args(self, tasks):
        if tasks is None:
            return {}
        return {"task_of_code": tasks.task_of_code, "tte_cuts": tasks.cuts, "tte_rank": self.tte_rank,
                "tte_visits": self.tte_visits, "tte_sampled_tasks": self.tte_sampled_tasks}

    def _set_fitted(self, tokenizer, net):
        self.tokenizer_ = tokenizer
        self.vocabulary_ = tokenizer.vocabulary_
        self.net_ = net
        self.module_ = net.module_
        self.history_ = net.history
        self.n_features_out_ = self.module_.config.embedding_dim

    def encoder_state_dict(self) -> dict:
        """A copy of the encoder's weights (for a survival module to start from).

        Returns
        -------
        dict of str to torch.Tensor
        """
        check_is_fitted(self, "module_")
        return {k: v.detach().clone().cpu() for k, v in self.module_.encoder.state_dict().items()}

    def transform(self, X):
        """Patient embeddings, pooled as ``pooling`` says, from a bidirectional pass.

        Parameters
        ----------
        X : pandas.DataFrame or TokenStore, shape (n_samples,)
            Patient frame, or a tokenized cohort on disk written with this
            pretrainer's tokenizer (see ``fit``).

        Returns
        -------
        ndarray of float32, shape (n_samples, embedding_dim)
        """
        check_is_fitted(self, "module_")
        check_choice("pooling", self.pooling, PATIENT_POOLING)
        if self.pooling == "cls" and self.module_.cls_head is None:
            raise ValueError(
                "pooling='cls' needs a pretrainer fitted with pooling='cls': only then does "
                "an objective train the [CLS] token. Refit, or use pooling='mean' or 'max'."
            )
        store = token_store(X)
        if store is None:
            flat = flatten_ehr(X)  # extra columns and their order are free
            check_predict_columns(X, getattr(self, "feature_names_in_", ()))
            tokens = self.tokenizer_.transform_flat(flat)
            rows = np.arange(len(tokens))
        else:
            check_store_tokenizer(store, self.tokenizer_, "the pretrainer")
            tokens, rows = store.tokens, store.rows
        with torch_threads(self.n_threads):
            return batched_inference(self.module_, tokens, _PatientEmbedding(self.pooling),
                                     device=net_device(self.net_), rows=rows)

    def get_feature_names_out(self, input_features=None):
        """Names of the embedding columns: ``behrt0`` … ``behrt{d-1}``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str, shape (embedding_dim,)
        """
        check_is_fitted(self, "module_")
        return np.array([f"behrt{i}" for i in range(self.n_features_out_)], dtype=object)

    @torch.inference_mode()
    def score(self, X, y=None):
        """Masked-code accuracy on ``X`` (higher is better).

        A fixed set of masks (seeded by ``random_state``) is drawn; the score is the
        share of chosen code tokens whose original code is the top MLM prediction.
        For ``objective="next_visit"`` (no MLM head) it is minus the next-visit loss.

        Parameters
        ----------
        X : pandas.DataFrame
        y : ignored

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "module_")
        tokens = self.tokenizer_.transform(X)
        mlm = self.module_.mlm_head is not None
        ds = MaskedEHRDataset(tokens, self.tokenizer_.vocab_size_, self.mask_prob,
                              seed=draw_seed(self.random_state) + 2, mlm=mlm)
        device = net_device(self.net_)
        module = self.module_
        was_training = module.training
        module.eval()
        correct = total = 0
        loss_sum = 0.0
        try:
            for start in range(0, len(ds), 256):
                X_b, y_b = ds.__getitems__(list(range(start, min(start + 256, len(ds)))))
                X_b = to_device(X_b, device)
                out = module(**X_b)
                if mlm:
                    labels = y_b["mlm_labels"].to(device)
                    chosen = labels != IGNORE_INDEX
                    pred = out["mlm_logits"].argmax(-1)  # the chosen tokens' rows
                    correct += int((pred == labels[chosen]).sum())
                    total += int(chosen.sum())
                else:
                    loss = PretrainingCriterion(module.tte_cuts)(out, X_b)["loss"]
                    loss_sum += float(loss) * X_b["codes"].shape[0]
                    total += X_b["codes"].shape[0]
        finally:
            module.train(was_training)
        if mlm:
            return correct / total if total else float("nan")
        return -loss_sum / total

    # ------------------------------------------------------------------ persistence

    def save(self, path):
        """Save the fitted pretrainer to one file (weights, parameters, vocabulary).

        The format is shared with :meth:`BEHRTSurvivalEstimator.save
        <survbehrt.BEHRTSurvivalEstimator.save>`: a ``torch.save`` file of plain values
        and tensors, read back with ``torch.load(path, weights_only=True)`` (no pickled
        code), versioned. See ``docs/pretraining.md`` ("Saving models").

        Parameters
        ----------
        path : str or path-like
        """
        check_is_fitted(self, "module_")
        module = self.module_
        write_estimator(
            self, path, module,
            module_args={"config": module.config.to_dict(), "objective": module.objective,
                         "cls_head": module.cls_head is not None, **self._saved_tte_args(module)},
            skip=("net_", "module_", "history_", "vocabulary_"),
        )

    @staticmethod
    def _saved_tte_args(module):
        if module.tte_head is None:
            return {}
        return {"task_of_code": module.task_of_code.tolist(), "tte_cuts": list(module.tte_cuts),
                "tte_rank": module.tte_head.rank}

    @classmethod
    def load(cls, path, device="cpu"):
        """Load a pretrainer saved by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
        device : str, default="cpu"
            Where the loaded model runs (its ``device`` parameter).

        Returns
        -------
        BEHRTPretrainer
            Fitted: ``transform``, ``score`` and ``pretrained=`` work as after ``fit``.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            For any defect of the file, named in the message; a file written by
            another survbehrt version is read with a ``UserWarning`` (the contract
            of :meth:`BEHRTSurvivalEstimator.load`).
        """
        saved = read_estimator(path, cls)
        est = cls(**dict(saved.params, device=device))
        tokenizer = saved.component("tokenizer_", EHRTokenizer)
        args = saved.module
        # building the module must not move the caller's torch RNG
        with saved.rebuilding("the torch module"), seeded_torch(0):
            tte = {k: args[k] for k in ("task_of_code", "tte_cuts", "tte_rank") if k in args}
            module = BEHRTPretrainingModule(BEHRTConfig(**args["config"]), args["objective"],
                                            cls_head=args["cls_head"], **tte)
        saved.load_weights(module)
        net = pretraining_net(est, module, seed=0)
        net.initialize()
        net.history = History(saved.history)
        est._set_fitted(tokenizer, net)
        saved.restore_attributes(est)
        return est
