"""skorch plumbing shared by the estimators: loaders, the nets, callbacks, inference.

Only skorch's documented extension points are used: the ``iterator_train`` /
``iterator_valid`` parameters (a length-bucketing loader), ``get_loss`` and
``get_all_learnable_params`` on :class:`skorch.NeuralNet`, and callbacks.
Everything here is defined at module level so nets and estimators pickle.
"""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import (
    Callback,
    EarlyStopping,
    GradientNormClipping,
    LRScheduler,
    PassthroughScoring,
    ProgressBar,
)

from ..data.batching import BucketBatchSampler, EHRDataset, collate_tokens, dataset_lengths
from ..losses import survival_nll
from ._divergence import DivergenceGuard

__all__ = [
    "BucketedLoader",
    "WarmupCosine",
    "SurvivalNet",
    "PretrainingNet",
    "PretrainingCriterion",
    "MaskedEHRDataset",
    "ValidationConcordance",
    "EarlyStoppingFromStart",
    "validation_cindex",
    "batched_inference",
    "progress_callbacks",
    "standard_callbacks",
    "to_device",
    "net_device",
    "net_module",
    "mean_over_processes",
    "global_batch_size",
]


def to_device(batch: dict, device) -> dict:
    """Move a dict of tensors to ``device`` (no copy when already there)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def net_device(net):
    """Where ``net`` computes: its accelerator's device, else its ``device``."""
    accelerator = getattr(net, "accelerator", None)
    return net.device if accelerator is None else accelerator.device


def mean_over_processes(net, value: float) -> float:
    """``value`` averaged over the processes training ``net`` together (itself when alone).

    Every process computes epoch-level scores (the validation C-index) on the same rows
    with the same weights; averaging makes them agree to the last bit, so that early
    stopping stops every process at the same epoch.
    """
    accelerator = getattr(net, "accelerator", None)
    if accelerator is None or accelerator.num_processes == 1:
        return value
    mean = accelerator.reduce(torch.tensor([value], dtype=torch.float64, device=accelerator.device),
                              reduction="mean")
    return float(mean.item())


def net_module(net):
    """``net.module_`` without a data-parallel wrapper (the module itself, for inference)."""
    accelerator = getattr(net, "accelerator", None)
    return net.module_ if accelerator is None else accelerator.unwrap_model(net.module_)


class BucketedLoader:
    """A skorch iterator: length-bucketed batches drawn afresh each epoch.

    skorch builds it once per ``fit`` as ``iterator(dataset, batch_size=..., **kwargs)``
    and iterates it once per epoch; each iteration draws a new order from ``seed``.

    Parameters
    ----------
    dataset : EHRDataset or torch.utils.data.Subset of one
    batch_size : int
    shuffle : bool, default=False
        Bucketed random batches (training). Without shuffling, batches follow the
        dataset order, so outputs line up with the rows (validation).
    bucket_chunks : int, default=50
        See :class:`~survbehrt.data.BucketBatchSampler`.
    seed : int or numpy.random.Generator, optional
    num_processes : int, default=1
        Processes training together (data parallel). Every process draws the same
        batches (same ``seed``) and keeps its share of them, so that all take the same
        number of steps: whole batches in turn (``batch_size`` is per process; the
        first batches are repeated to make the count a multiple of ``num_processes``,
        as accelerate's ``even_batches``), or, with ``split_batches``, one slice of
        every batch (``batch_size`` is the global batch; a batch with fewer rows than
        processes is skipped that epoch).
    process_index : int, default=0
        This process's rank among them.
    split_batches : bool, default=False
        Slice each batch across the processes instead of dealing out whole batches.
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, bucket_chunks: int = 50,
                 seed=None, num_processes: int = 1, process_index: int = 0,
                 split_batches: bool = False):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.sampler = BucketBatchSampler(
            dataset_lengths(dataset), self.batch_size, shuffle=True, bucket_chunks=bucket_chunks, seed=seed
        )
        self.num_processes = int(num_processes)
        self.process_index = int(process_index)
        self.split_batches = split_batches

    def __len__(self) -> int:
        n = self.num_processes
        if n == 1 or not self.shuffle:
            return len(self.sampler)
        if self.split_batches:
            full, rest = divmod(len(self.dataset), self.batch_size)
            return full * (self.batch_size >= n) + (rest >= n)
        return -(-len(self.sampler) // n)

    def _shard(self, batches: list) -> list:
        """This process's share of the epoch's batches (see ``num_processes``)."""
        n, rank = self.num_processes, self.process_index
        if n == 1:
            return batches
        if self.split_batches:
            return [np.array_split(b, n)[rank] for b in batches if len(b) >= n]
        batches = batches + batches[: (-len(batches)) % n]
        return batches[rank::n]

    def __iter__(self):
        if self.shuffle:
            batches = self._shard(self.sampler.batches())
        else:
            if getattr(self.dataset, "reseed_each_pass", False):
                self.dataset.reseed()  # same MLM masks every validation pass
            n = len(self.dataset)
            batches = [np.arange(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]
        for b in batches:
            yield self.dataset.__getitems__(b.tolist())


class WarmupCosine:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``floor``.

    A picklable ``lr_lambda`` for ``torch.optim.lr_scheduler.LambdaLR`` stepped every batch.

    Parameters
    ----------
    total_steps : int
    warmup_fraction : float, default=0.1
    floor : float, default=0.05
        Final multiplier.
    """

    def __init__(self, total_steps: int, warmup_fraction: float = 0.1, floor: float = 0.05):
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(1, int(round(warmup_fraction * self.total_steps)))
        self.floor = floor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


def standard_callbacks(max_epochs: int, n_train: int, batch_size: int, gradient_clip: float,
                       loss_parts=(), has_valid: bool = False) -> list:
    """The callbacks both estimators train with.

    A stop at the first non-finite loss, prediction or weight that keeps the last
    finite weights (:class:`~survbehrt.estimators._divergence.DivergenceGuard`),
    linear warm-up and cosine decay stepped every batch, gradient-norm clipping, and
    epoch means of the loss components (``train_<part>``, ``valid_<part>``) that the
    nets record per batch.

    Parameters
    ----------
    max_epochs, n_train, batch_size : int
        Fix the schedule's length.
    gradient_clip : float
    loss_parts : iterable of str, default=()
        Loss components logged per batch (e.g. ``("nll", "ranking")``).
    has_valid : bool, default=False
        Also average the validation components.

    Returns
    -------
    list of (str, skorch.callbacks.Callback)
    """
    steps = max(1, max_epochs) * -(-n_train // batch_size)
    callbacks = [
        ("divergence", DivergenceGuard()),  # first: its epoch end precedes the validation C
        ("lr_schedule", LRScheduler(policy=torch.optim.lr_scheduler.LambdaLR,
                                    lr_lambda=WarmupCosine(steps), step_every="batch")),
        ("clip", GradientNormClipping(gradient_clip_value=gradient_clip)),
    ]
    for part in loss_parts:
        callbacks.append((f"train_{part}", PassthroughScoring(f"train_{part}", on_train=True)))
        if has_valid:
            callbacks.append((f"valid_{part}", PassthroughScoring(f"valid_{part}")))
    return callbacks


def global_batch_size(estimator) -> int:
    """Rows per optimizer step: ``batch_size``, times the processes when each takes a batch."""
    accelerator = getattr(estimator, "accelerator", None)
    if accelerator is None or accelerator.split_batches:
        return estimator.batch_size
    return estimator.batch_size * accelerator.num_processes


def progress_callbacks(verbose: int) -> list:
    """A progress bar per epoch when ``verbose >= 2`` and stderr is a terminal (no cursor codes in logs).

    Parameters
    ----------
    verbose : int

    Returns
    -------
    list of (str, skorch.callbacks.Callback)
    """
    return [("progress", ProgressBar())] if verbose >= 2 and sys.stderr.isatty() else []


def last_visit_rows(logits: torch.Tensor, visit_mask: torch.Tensor) -> torch.Tensor:
    """The hazard logits of each patient's last real visit, shape (B, K)."""
    last = visit_mask.sum(dim=1) - 1
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


class _LearnableOnly:
    """Give the optimizer only the parameters that train (frozen / LoRA strategies)."""

    def get_all_learnable_params(self):
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param


class SurvivalNet(_LearnableOnly, NeuralNet):
    """skorch net for survival on visit-level hazards (piecewise-constant on a time grid).

    The module returns hazard logits ``(B, V, K)``; the targets ``y`` are a dict with
    each row's follow-up ``time`` (years after the prediction time), ``event`` and
    patient ``group`` (rows of one group are never ranked against each other).

    Parameters
    ----------
    module, criterion
        As :class:`skorch.NeuralNet`; the criterion returns a tensor or a dict with
        ``loss`` and components (``nll``, ``ranking``), which are logged per batch as
        ``train_<name>`` / ``valid_<name>``.
    landmarks : {"last", "all"}, default="last"
        Train on each patient's last visit, or on every visit (each visit's hazards are
        read as the risk after the prediction time given the history up to that visit);
        with ``"all"``, visits of truncated rows whose view depends on later visits
        (``visit_complete`` False in the batch) are left out.
    **kwargs
        Passed to :class:`skorch.NeuralNet`.
    """

    def __init__(self, module, criterion, landmarks: str = "last", **kwargs):
        super().__init__(module, criterion, **kwargs)
        self.landmarks = landmarks

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                               **kwargs)
        memory = getattr(self.criterion_, "memory", None)
        if memory is not None:
            memory.clear()  # the ranking term compares rows of this epoch's weights only

    def get_loss(self, y_pred, y_true, X=None, training=False):
        visit_mask = X["visit_mask"].to(y_pred.device)
        time = y_true["time"].to(y_pred.device)
        event = y_true["event"].to(y_pred.device)
        groups = y_true["group"].to(y_pred.device).long()
        if self.landmarks == "all":
            # every visit's hazards predict the same target (the outcome after the
            # prediction time) from the history up to that visit
            # [tokens: causal truncation] only visits whose view equals the history cut
            # at them (always the last one); the others would see truncation set by
            # later visits.
            if "visit_complete" in X:
                visit_mask = visit_mask & X["visit_complete"].to(y_pred.device)
            rows = y_pred[visit_mask]
            counts = visit_mask.sum(dim=1)
            time = time.repeat_interleave(counts)
            event = event.repeat_interleave(counts)
            groups = groups.repeat_interleave(counts)
        else:
            rows = last_visit_rows(y_pred, visit_mask)
        out = self.criterion_(rows, time, event, groups=groups)
        if isinstance(out, torch.Tensor):
            return out
        if not self.history or not self.history[-1]["batches"]:
            return out.loss  # scored outside an epoch (the start, by early stopping)
        # a hybrid loss: log both parts so that one dominating the other shows in history
        prefix = "train" if training else "valid"
        for name, value in out.as_dict().items():
            if name != "loss":
                self.history.record_batch(f"{prefix}_{name}", value)
        return out.loss


class MaskedEHRDataset(EHRDataset):
    """An :class:`EHRDataset` whose batches carry MLM inputs and labels.

    Each batch gets ``masked_codes`` (15% of real code tokens chosen, 80/10/10
    ``[MASK]``/random/kept) and ``mlm_chosen`` (those tokens) in ``X`` and ``mlm_labels``
    in ``y``, drawn from a torch
    generator: fresh masks every epoch in training; with ``reseed_each_pass`` the
    generator restarts from ``seed`` whenever the first batch is drawn again, so a
    validation or scoring pass always sees the same masks.

    Parameters
    ----------
    tokens : TokenizedEHR
    vocab_size : int
    mask_prob : float, default=0.15
    seed : int, default=0
    mlm : bool, default=True
        Build MLM inputs (False for the next-visit objective alone).
    reseed_each_pass : bool, default=False
    rows : array-like of int, optional
        The patients of ``tokens`` served (see :class:`~survbehrt.data.EHRDataset`).
    """

    def __init__(self, tokens, vocab_size: int, mask_prob: float = 0.15, seed: int = 0,
                 mlm: bool = True, reseed_each_pass: bool = False, rows=None):
        super().__init__(tokens, rows=rows)
        self.vocab_size = vocab_size
        self.mask_prob = mask_prob
        self.seed = seed
        self.mlm = mlm
        self.reseed_each_pass = reseed_each_pass
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self):
        """Restart the mask generator from ``seed``."""
        self.generator.manual_seed(self.seed)

    def __getitems__(self, indices):
        from ..model import IGNORE_INDEX, mask_tokens

        X, _ = super().__getitems__(indices)
        if not self.mlm:
            return X, {}
        masked, labels = mask_tokens(
            X["codes"], X["attention_mask"], self.vocab_size, self.mask_prob, self.generator
        )
        X["masked_codes"] = masked
        X["mlm_chosen"] = labels != IGNORE_INDEX  # the MLM decoder runs on these alone
        return X, {"mlm_labels": labels}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["generator"] = state["generator"].get_state()
        return state

    def __setstate__(self, state):
        gen = torch.Generator()
        gen.set_state(state["generator"])
        state["generator"] = gen
        self.__dict__.update(state)


class PretrainingCriterion(torch.nn.Module):
    """Loss of the pre-training objectives present in the module's outputs.

    MLM cross-entropy on the chosen tokens, multi-hot BCE of the next visit's codes
    and, with a ``[CLS]`` head, of the patient's codes (targets built from the batch's
    unmasked codes) and, with ``tte_cuts``, the time-to-event likelihood; their sum is
    the loss.
    """

    def __init__(self, tte_cuts=None):
        super().__init__()
        self.tte_cuts = tte_cuts

    def forward(self, outputs, X, mlm_labels=None, **ignored):
        from ..model import next_visit_targets, patient_code_targets, pretraining_loss

        targets = mask = cls_targets = None
        if "next_visit_logits" in outputs:
            vocab = outputs["next_visit_logits"].shape[-1]
            targets, mask = next_visit_targets(X["codes"], X["visits"], X["visit_mask"], vocab)
        if "cls_logits" in outputs:
            cls_targets = patient_code_targets(X["codes"], outputs["cls_logits"].shape[-1])
        tte = None
        if "tte_logits" in outputs:  # survival_nll over the (visit, task) rows
            logits = outputs["tte_logits"]
            tte = survival_nll(logits.reshape(-1, logits.shape[-1]), outputs["tte_time"].reshape(-1),
                               outputs["tte_event"].reshape(-1), self.tte_cuts)
        return pretraining_loss(outputs, mlm_labels, targets, mask, cls_targets, tte)


class PretrainingNet(_LearnableOnly, NeuralNet):
    """skorch net for masked-code and next-visit pre-training.

    The module returns a dict of logits; the criterion (:class:`PretrainingCriterion`)
    returns ``loss`` plus the per-objective components, logged per batch as
    ``train_mlm`` / ``valid_next_visit`` and so on.
    """

    def get_loss(self, y_pred, y_true, X=None, training=False):
        device = net_device(self)
        X = to_device(X, device)
        y_true = to_device(y_true, device) if y_true else {}
        out = self.criterion_(y_pred, X, **y_true)
        prefix = "train" if training else "valid"
        for name, value in out.items():
            if name != "loss" and value is not None:
                self.history.record_batch(f"{prefix}_{name}", float(value.detach()))
        return out["loss"]


@torch.inference_mode()
def batched_inference(module, tokens, fn, batch_size: int = 512, device="cpu",
                      rows=None) -> np.ndarray:
    """Apply ``fn(module, batch)`` over a cohort in length-sorted batches, rows in input order.

    Parameters
    ----------
    module : torch.nn.Module
        Put in eval mode for the call and restored afterwards.
    tokens : TokenizedEHR
    fn : callable
        ``fn(module, batch) -> Tensor`` of shape ``(B, ...)``.
    batch_size : int, default=512
    device : str or torch.device, default="cpu"
    rows : array-like of int, optional
        The patients of ``tokens`` to run, in the output's order (default: all).

    Returns
    -------
    ndarray, shape (n_patients or len(rows), ...)
    """
    was_training = module.training
    module.eval()
    try:
        rows = np.arange(len(tokens)) if rows is None else np.asarray(rows, dtype=np.int64)
        order = np.argsort(tokens.lengths_at(rows), kind="stable")  # least padding
        chunks = []
        for start in range(0, len(order), batch_size):
            batch = to_device(collate_tokens(tokens, rows[order[start : start + batch_size]]),
                              device)
            chunks.append(fn(module, batch).float().cpu())
        out = torch.cat(chunks).numpy()
    finally:
        module.train(was_training)
    result = np.empty_like(out)
    result[order] = out
    return result


def _last_visit_logits(module, batch):
    return last_visit_rows(module(**batch), batch["visit_mask"])


def last_visit_representation(module, batch):
    """``batched_inference`` function: the visit-causal representation of each last visit."""
    reps, real = module.encoder.visit_representations(**batch, causal=True)
    return last_visit_rows(reps, real)


def validation_cindex(net, dataset, batch_size: int = 512) -> float:
    """Harrell's C-index of ``net``'s module on a validation :class:`EHRDataset`.

    Risk is the summed cumulative hazard of the last visit (as ``predict``); NaN when
    the dataset holds no event. With competing causes (logits ``(n, C, K)``), the mean
    over the causes of Wolbers' concordance of each cause's summed incidence.
    """
    from sksurv.metrics import concordance_index_censored

    from ..survival import risk_score

    assert isinstance(dataset, EHRDataset), "validation data is an EHRDataset (predefined split)"
    logits = batched_inference(net_module(net), dataset.tokens, _last_visit_logits, batch_size,
                               net_device(net), rows=dataset.rows)
    if logits.ndim == 3:
        return mean_over_processes(net, _competing_cindex(logits, dataset.targets,
                                                          net.criterion_.cuts))
    risk = np.asarray(risk_score(torch.from_numpy(logits)))
    event = np.asarray(dataset.targets["event"], dtype=bool)
    time = np.asarray(dataset.targets["time"], dtype=float)
    if event.sum() == 0:
        return float("nan")
    return mean_over_processes(net, float(concordance_index_censored(event, time, risk)[0]))


def validation_loss(net, dataset) -> float:
    """The net's criterion on a validation :class:`EHRDataset`, as skorch's ``valid_loss``.

    skorch records ``valid_loss`` as the mean of the batches' losses weighted by their
    sizes; this computes the same number through the net's own ``validation_step``
    (criterion in evaluation mode: the ranking memory is neither read nor written), so
    that the untrained module competes with the epochs on equal terms.
    """
    assert isinstance(dataset, EHRDataset), "validation data is an EHRDataset (predefined split)"
    total, rows = 0.0, 0
    for batch in net.get_iterator(dataset, training=False):
        n = len(batch[1]["time"])
        total += float(net.validation_step(batch)["loss"]) * n
        rows += n
    return mean_over_processes(net, total / rows) if rows else float("nan")


def _competing_cindex(logits, targets, cuts) -> float:
    """The mean over causes of each cause's concordance (all causes train together)."""
    from ..competing_hazards import cause_specific_concordance, incidence_risk

    event = np.rint(np.asarray(targets["event"], dtype=float)).astype(np.int64)
    time = np.asarray(targets["time"], dtype=float)
    risk = incidence_risk(logits, cuts)
    scores = [cause_specific_concordance(event, time, risk[:, c], c + 1)
              for c in range(logits.shape[1])]
    scores = [s for s in scores if np.isfinite(s)]
    return float(np.mean(scores)) if scores else float("nan")


class ValidationConcordance(Callback):
    """Record Harrell's C-index on the validation set each epoch as ``valid_cindex``.

    Risk is the summed cumulative hazard of the last visit (as ``predict``). Runs
    before :class:`skorch.callbacks.EarlyStopping` when listed first, so that it can
    monitor ``valid_cindex``.

    Parameters
    ----------
    batch_size : int, default=512
    """

    def __init__(self, batch_size: int = 512):
        self.batch_size = batch_size

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if dataset_valid is None:
            return
        net.history.record("valid_cindex", validation_cindex(net, dataset_valid, self.batch_size))


class EarlyStoppingFromStart(EarlyStopping):
    """skorch's :class:`~skorch.callbacks.EarlyStopping` with the starting weights as a candidate.

    Before the first epoch the monitored score of the untrained module is measured (the
    validation C-index or the validation loss); the weights are restored to the start
    when no epoch beats it. The survival
    estimator starts from the population's hazards or from the wide path's penalised
    Cox fit, so training that does not improve on held-out data is undone instead of
    kept.

    Parameters
    ----------
    valid_dataset : EHRDataset, optional
        The validation rows (the net's predefined split); without it, or with another
        ``monitor`` than ``"valid_cindex"`` or ``"valid_loss"``, this is plain
        ``EarlyStopping`` (that also
        restores the best weights of a module an accelerator wrapped for training).
    **kwargs
        ``EarlyStopping``'s parameters.
    """

    def __init__(self, valid_dataset=None, **kwargs):
        super().__init__(**kwargs)
        self.valid_dataset = valid_dataset

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        scorers = {("valid_cindex", False): validation_cindex, ("valid_loss", True): validation_loss}
        scorer = scorers.get((self.monitor, self.lower_is_better))
        if self.valid_dataset is None or scorer is None:
            return
        score = scorer(net, self.valid_dataset)
        if np.isfinite(score):
            self.dynamic_threshold_ = self._calc_new_threshold(score)
            self.best_epoch_ = 0  # skorch counts epochs from 1: 0 is the start
            self.best_model_weights_ = copy.deepcopy(net.module_.state_dict())
            self.start_score_ = score

    def on_train_end(self, net, **kwargs):
        # Weights copied while an accelerator had the module wrapped for data-parallel
        # training carry the wrapper's "module." prefix; the net unwraps the module at
        # the end of training, before its callbacks run, so restore into the bare module.
        weights = self.best_model_weights_
        if weights and all(k.startswith("module.") for k in weights):
            torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(weights, "module.")
        super().on_train_end(net, **kwargs)
