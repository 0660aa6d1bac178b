"""The time-to-event pre-training tasks of a cohort: which codes, on which grid, from which start.

Also the zero-shot start of a survival head from one task's head (:func:`start_head_from_task`).

Read on a sample of the fit rows (at most ``sample_rows`` patients, drawn with the fit's
seed), batch by batch, so a memory-mapped cohort of millions is never read whole:

- the tasks: the ``n_tasks`` codes (or code groups: the first ``prefix`` characters of
  the code) found in the most (patient, visit) pairs;
- the grid: quantiles of the tasks' observed times to next occurrence;
- each task's marginal hazard on that grid, which the head's bias starts from (so the
  head starts at the population answer, and the encoder learns what differs from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.batching import collate_tokens
from ..data.code_groups import code_groups
from ..model.config import N_SPECIAL
from ..model.tte import quantile_cuts, tte_rows, tte_targets
from ..survival import locate, marginal_logits

__all__ = ["TTETasks", "fit_tte_tasks", "start_head_from_task", "task_index"]


@dataclass
class TTETasks:
    """The fitted pre-training tasks.

    Attributes
    ----------
    names : list of str
        Task ``k``'s code (or code prefix).
    task_of_code : ndarray of int64, shape (vocab_size,)
        Task of each token id, -1 for none.
    cuts : ndarray of float
        Grid edges (years).
    bias : ndarray of float32, shape (K, n_bins)
        Marginal hazard logits of each task on the grid.
    """

    names: list
    task_of_code: np.ndarray
    cuts: np.ndarray
    bias: np.ndarray


def _batches(tokens, rows, batch_size=256):
    for start in range(0, len(rows), batch_size):
        yield collate_tokens(tokens, rows[start:start + batch_size])


def fit_tte_tasks(tokens, rows, codes_, n_tasks, prefix, n_bins, seed, sample_rows=2000):
    """Choose the tasks, the grid and the bias start on (a sample of) the fit rows.

    Parameters
    ----------
    tokens : TokenizedEHR
    rows : ndarray of int
        The fit rows of ``tokens``.
    codes_ : ndarray of object
        The tokenizer's token id -> code.
    n_tasks : int
        ``K`` (fewer when fewer codes or groups occur).
    prefix : int or None
        Group codes by their first ``prefix`` characters.
    n_bins : int
        Intervals of the grid (fewer when quantiles tie).
    seed : int
    sample_rows : int, default=2000

    Returns
    -------
    TTETasks

    Raises
    ------
    ValueError
        If no code occurs in a visit of the sample.
    """
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > sample_rows:
        rows = np.sort(rng.choice(rows, sample_rows, replace=False))
    group_of_code, group_names = code_groups(codes_, N_SPECIAL, prefix)
    # visits (patient, visit) holding each group, counted once per visit
    counts = np.zeros(len(group_names), dtype=np.int64)
    for batch in _batches(tokens, rows):
        codes = batch["codes"].numpy()
        keep = (codes >= N_SPECIAL) & (batch["age_bins"].numpy() > 0) & batch["attention_mask"].numpy()
        g = group_of_code[codes[keep]]
        patient = np.nonzero(keep)[0]
        visit = batch["visits"].numpy()[keep]
        pairs = np.unique(np.stack([patient, visit, g]), axis=1)
        counts += np.bincount(pairs[2], minlength=len(group_names))
    if not counts.any():
        raise ValueError("the 'tte' objective found no code in any visit of the fit rows.")
    order = np.argsort(-counts, kind="stable")[: int(n_tasks)]
    order = order[counts[order] > 0]
    task_of_group = np.full(len(group_names), -1, dtype=np.int64)
    task_of_group[order] = np.arange(len(order))
    task_of_code = np.where(group_of_code >= 0, task_of_group[np.maximum(group_of_code, 0)], -1)
    # grid and marginal hazards from the sample's (visit, task) rows
    task_map = torch.from_numpy(task_of_code)
    times, events = [], []
    for batch in _batches(tokens, rows):
        time, event = tte_targets(batch["codes"], batch["visits"], batch["age_bins"],
                                  batch["visit_times"], batch["visit_mask"], task_map, len(order),
                                  batch["attention_mask"])
        keep = tte_rows(batch["visit_mask"], batch["visit_complete"])
        times.append(time[keep].numpy())
        events.append(event[keep].numpy())
    time, event = np.concatenate(times), np.concatenate(events)
    cuts = quantile_cuts(time[event], n_bins)
    bias = np.stack([marginal_logits(time[:, k], event[:, k], cuts) for k in range(len(order))])
    return TTETasks([group_names[i] for i in order], task_of_code, cuts, bias.astype(np.float32))


def task_index(pretrainer, task) -> int:
    """Position of ``task`` (a code or prefix) among a fitted pretrainer's TTE tasks."""
    names = getattr(pretrainer, "tte_tasks_", None)
    if names is None:
        raise ValueError("init_head_from_task needs a pretrained encoder fitted with the 'tte' "
                         "objective (BEHRTPretrainer(objective='tte' or '...+tte')).")
    if task not in names:
        shown = ", ".join(map(repr, names[:10]))
        raise ValueError(f"init_head_from_task={task!r} is not one of the pretrainer's "
                         f"{len(names)} tasks (most frequent first: {shown}, ...).")
    return names.index(task)


@torch.no_grad()
def start_head_from_task(head, tte_head, task, tte_cuts, cuts) -> None:
    """Set a survival :class:`~survbehrt.model.HazardHead` to one pre-training task's hazard.

    The task's logits are affine in the visit representation ``h``
    (:meth:`~survbehrt.model.tte.TimeToEventHead.task_affine`): ``a_b(h) = U_b h + c_b``.
    The MLP ``output(gelu(hidden(h)))`` reproduces them exactly with two hidden units per
    task bin, ``z = U_b h + c_b`` and ``-z``, since ``gelu(z) - gelu(-z) = z``. Survival bin
    ``j`` takes the task bin ``b`` holding its midpoint, with the logit shifted by
    ``log(width_j / width_b)``: the same rate over another width, exact where the hazard
    per bin is small (``softplus(a) ~ exp(a)``). Other hidden units keep their start and
    get zero output weights, free to learn in fine-tuning.

    Parameters
    ----------
    head : HazardHead
        The survival head (modified in place); its hidden width must be at least twice
        the task grid's bins.
    tte_head : TimeToEventHead
    task : int
    tte_cuts, cuts : array-like of float
        The task grid's and the survival grid's edges.

    Raises
    ------
    ValueError
        If the head's hidden layer is too narrow.
    """
    weight, bias = tte_head.task_affine(task)
    n_task_bins = weight.shape[0]
    if head.hidden.out_features < 2 * n_task_bins:
        raise ValueError(f"init_head_from_task needs a hazard head at least {2 * n_task_bins} wide "
                         f"(twice the pretrainer's {n_task_bins} bins); it is "
                         f"{head.hidden.out_features}: raise embedding_dim or lower tte_bins.")
    tte_cuts, cuts = np.asarray(tte_cuts, dtype=float), np.asarray(cuts, dtype=float)
    b, _ = locate((cuts[:-1] + cuts[1:]) / 2, tte_cuts)
    shift = np.log(np.diff(cuts) / np.diff(tte_cuts)[b])
    hidden, output = head.hidden, head.output
    dtype = hidden.weight.dtype
    hidden.weight[0:2 * n_task_bins:2] = weight.to(dtype)
    hidden.weight[1:2 * n_task_bins:2] = -weight.to(dtype)
    hidden.bias[0:2 * n_task_bins:2] = bias.to(dtype)
    hidden.bias[1:2 * n_task_bins:2] = -bias.to(dtype)
    output.weight.zero_()
    rows = torch.arange(len(b))
    output.weight[rows, torch.as_tensor(2 * b)] = 1.0
    output.weight[rows, torch.as_tensor(2 * b + 1)] = -1.0
    output.bias.copy_(torch.as_tensor(shift, dtype=dtype))
