"""Time-to-event (TTE) pre-training: targets, the low-rank task × time head, objective names.

At every complete visit ``t`` of a patient (the representation from the visit-causal
pass, which sees visits ``<= t`` only), the model predicts, for each of ``K``
pre-training tasks (frequent codes or code groups), the time from visit ``t`` to the
first *later* visit that holds the task, right-censored at the patient's last visit.
A visit with no later visit contributes nothing (its follow-up is zero).

The likelihood is the package's one piecewise-constant hazard likelihood
(:func:`survbehrt.losses.survival_nll`) over every (visit, task) row, on a grid of
``n_bins`` intervals shared by all tasks.

Why the head is factorised (MOTOR, Steinberg et al., ICLR 2024): a dense head
``d -> K x n_bins`` has ``d K n_bins`` weights (64 x 1,000 x 8 = 512k for a small model,
more than its encoder) and as many multiply-adds per visit. Here a *time-dependent*
projection ``P_b(h)`` of the visit representation into ``rank`` dimensions is shared by
every task, and each task keeps one ``rank``-vector ``w_k`` and a bias per bin::

    logit[t, k, b] = <P_b(h_t), w_k> + bias[k, b]

so the weights are ``d n_bins rank + K (rank + n_bins)``: tasks share what they have in
common (a patient who is about to come back soon) through ``P``, and one more task costs
``rank + n_bins`` numbers. The logits follow the package convention:
``softplus(logit)`` is the hazard integrated over the bin (see :mod:`survbehrt.survival`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .pooling import code_token_mask

__all__ = [
    "OBJECTIVE_PARTS",
    "TimeToEventHead",
    "objective_parts",
    "quantile_cuts",
    "sample_rows",
    "sample_tasks",
    "tte_outputs",
    "tte_rows",
    "tte_targets",
]

#: The pre-training objectives that ``objective`` combines (``"mlm+tte"``, ...).
OBJECTIVE_PARTS = ("mlm", "next_visit", "tte")
_ALIASES = {"both": ("mlm", "next_visit")}


def objective_parts(objective) -> tuple[str, ...]:
    """The objectives an ``objective`` value names, in canonical order.

    Parameters
    ----------
    objective : str or sequence of str
        One of ``"mlm"``, ``"next_visit"``, ``"tte"``, ``"both"`` (``mlm`` and
        ``next_visit``), or several joined by ``"+"`` (``"mlm+tte"``), or a list of them.

    Returns
    -------
    tuple of str
        Distinct parts, ordered as :data:`OBJECTIVE_PARTS`.

    Raises
    ------
    ValueError
        For an empty value or an unknown name.

    Examples
    --------
    >>> objective_parts("tte+mlm")
    ('mlm', 'tte')
    >>> objective_parts("both")
    ('mlm', 'next_visit')
    """
    names = objective.split("+") if isinstance(objective, str) else list(objective)
    parts = set()
    for name in names:
        name = name.strip() if isinstance(name, str) else name
        if name in _ALIASES:
            parts.update(_ALIASES[name])
        elif name in OBJECTIVE_PARTS:
            parts.add(name)
        else:
            raise ValueError(
                f"objective={objective!r} is not valid: name objectives among "
                f"{list(OBJECTIVE_PARTS)} (or 'both'), joined by '+' (unknown: {name!r})."
            )
    if not parts:
        raise ValueError(f"objective names no objective: {objective!r}")
    return tuple(p for p in OBJECTIVE_PARTS if p in parts)


def tte_rows(visit_mask: Tensor, visit_complete: Tensor | None = None) -> Tensor:
    """The visits that carry time-to-event targets: complete, real, and not the last.

    Parameters
    ----------
    visit_mask : torch.Tensor of shape (B, V)
        Bool, True for real visits (contiguous from visit 0, as batches are built).
    visit_complete : torch.Tensor of shape (B, V), optional
        Bool, True where the visit sees its whole history (default: all).

    Returns
    -------
    torch.Tensor of shape (B, V), bool
    """
    later = torch.zeros_like(visit_mask, dtype=torch.bool)
    later[:, :-1] = visit_mask[:, 1:].bool()
    rows = visit_mask.bool() & later
    if visit_complete is not None:
        rows = rows & visit_complete.bool()
    return rows


def sample_rows(rows: Tensor, per_patient: int | None) -> Tensor:
    """At most ``per_patient`` of each patient's ``rows``, drawn uniformly (torch's RNG).

    Parameters
    ----------
    rows : torch.Tensor of shape (B, V), bool
    per_patient : int or None
        None keeps every row.

    Returns
    -------
    torch.Tensor of shape (B, V), bool
        A subset of ``rows``.
    """
    counts = rows.sum(1)
    if per_patient is None or counts.numel() == 0 or int(counts.max()) <= per_patient:
        return rows
    score = torch.rand(rows.shape, device=rows.device).masked_fill(~rows, 2.0)
    rank = score.argsort(dim=1).argsort(dim=1)  # 0 for each patient's smallest draw
    return rows & (rank < per_patient)


def sample_tasks(task_of_code: Tensor, num_tasks: int, size: int | None):
    """``size`` tasks drawn without replacement, and the token map onto them.

    Parameters
    ----------
    task_of_code : torch.Tensor of shape (vocab_size,)
    num_tasks : int
    size : int or None
        None (or ``size >= num_tasks``): every task, ``(None, task_of_code)``.

    Returns
    -------
    tasks : torch.Tensor of shape (size,) or None
        The drawn tasks (long).
    task_of_code : torch.Tensor of shape (vocab_size,)
        Position of each token's task among ``tasks``, -1 when not drawn.
    """
    if size is None or size >= num_tasks:
        return None, task_of_code
    tasks = torch.randperm(num_tasks, device=task_of_code.device)[:size]
    position = torch.full((num_tasks + 1,), -1, dtype=torch.long, device=task_of_code.device)
    position[tasks] = torch.arange(size, device=task_of_code.device)
    return tasks, position[task_of_code]  # index -1 reads the last slot: -1


def tte_targets(
    codes: Tensor,
    visits: Tensor,
    age_bins: Tensor,
    visit_times: Tensor,
    visit_mask: Tensor,
    task_of_code: Tensor,
    num_tasks: int,
    attention_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Time from every visit to the next later visit holding each task, or to the record's end.

    Parameters
    ----------
    codes, visits, age_bins : torch.Tensor of shape (B, L)
        Batch tensors; static codes (age bin 0) are not occurrences.
    visit_times : torch.Tensor of shape (B, V)
        Years from each visit to the prediction time (so visit ``u`` is
        ``visit_times[t] - visit_times[u]`` years after visit ``t``).
    visit_mask : torch.Tensor of shape (B, V)
        Bool, True for real visits (contiguous from 0).
    task_of_code : torch.Tensor of shape (vocab_size,)
        Long: the task of each token id, ``-1`` for none.
    num_tasks : int
        ``K``.
    attention_mask : torch.Tensor of shape (B, L), optional

    Returns
    -------
    time : torch.Tensor of shape (B, V, K)
        Float, non-negative. For visit ``t`` and task ``k``: years to the first visit
        ``u > t`` holding ``k``, else years to the last real visit (censoring).
    event : torch.Tensor of shape (B, V, K)
        Bool, True when such a visit exists. Values at padding visits are meaningless;
        select rows with :func:`tte_rows`.
    """
    b, num_visits = visit_mask.shape
    is_code = code_token_mask(codes, attention_mask, age_bins=age_bins)
    task = task_of_code.to(codes.device)[codes.clamp(min=0)]
    keep = is_code & (task >= 0) & (visits < num_visits)
    n_rows = b * num_visits
    # scatter each occurrence to its (patient, visit) row; the rest to a dummy row
    base = torch.arange(b, device=codes.device).unsqueeze(1) * num_visits
    rows = torch.where(keep, base + visits, n_rows).reshape(-1)
    cols = torch.where(keep, task, 0).reshape(-1)
    occurs = torch.zeros(n_rows + 1, num_tasks, dtype=torch.bool, device=codes.device)
    occurs[rows, cols] = True
    occurs = occurs[:n_rows].view(b, num_visits, num_tasks)
    times = visit_times.to(torch.float32)
    last = (visit_mask.long().sum(1) - 1).clamp(min=0)
    end = times.gather(1, last[:, None])  # (B, 1): the last visit, where every wait is censored
    # visits backwards, carrying the time of the next later occurrence of each task:
    # V steps over (B, K) rather than a scan over (B, V, K) (torch's cummin is slow on CPU)
    stop = torch.empty(b, num_visits, num_tasks, device=codes.device)
    event = torch.empty(b, num_visits, num_tasks, dtype=torch.bool, device=codes.device)
    next_time = end.expand(b, num_tasks).clone()
    seen = torch.zeros(b, num_tasks, dtype=torch.bool, device=codes.device)
    for v in range(num_visits - 1, -1, -1):
        stop[:, v], event[:, v] = next_time, seen
        next_time = torch.where(occurs[:, v], times[:, v:v + 1], next_time)
        seen = seen | occurs[:, v]
    time = (times.unsqueeze(-1) - stop).clamp(min=0.0)
    return time, event


def tte_outputs(module, reps: Tensor, batch: dict) -> dict:
    """The ``tte`` part of a pre-training module's forward: logits of the rows, and targets.

    Only rows with a target (:func:`tte_rows`) are computed; in training, a random
    subset of them and of the tasks (``module.tte_visits``, ``module.tte_sampled_tasks``).

    Parameters
    ----------
    module : BEHRTPretrainingModule
        Reads ``tte_head``, ``task_of_code``, ``training`` and the sampling sizes.
    reps : torch.Tensor of shape (B, V, d)
        Visit-causal visit representations.
    batch : dict
        ``codes``, ``visits``, ``age_bins``, ``attention_mask``, ``visit_mask``,
        ``visit_times`` and optionally ``visit_complete``.

    Returns
    -------
    dict
        ``tte_logits`` (N, S, bins), ``tte_time`` and ``tte_event`` (N, S).
    """
    visit_mask = batch.get("visit_mask")
    if visit_mask is None or batch.get("visit_times") is None:
        raise ValueError("the 'tte' objective needs the batch keys visit_mask and visit_times")
    rows = tte_rows(visit_mask, batch.get("visit_complete"))
    head, task_of_code, tasks = module.tte_head, module.task_of_code, None
    # sampled terms, cheaper steps: drawn tasks estimate the mean over tasks without bias;
    # the cap on visits also weights patients more evenly (a long history counts <= cap)
    if module.training:
        rows = sample_rows(rows, module.tte_visits)
        tasks, task_of_code = sample_tasks(task_of_code, head.num_tasks, module.tte_sampled_tasks)
    with torch.no_grad():
        time, event = tte_targets(batch["codes"], batch["visits"], batch["age_bins"],
                                  batch["visit_times"], visit_mask, task_of_code,
                                  head.num_tasks if tasks is None else len(tasks),
                                  batch.get("attention_mask"))
    return {"tte_logits": head(reps[rows], tasks), "tte_time": time[rows], "tte_event": event[rows]}


class TimeToEventHead(nn.Module):
    """Low-rank task × time-bin hazard head: ``logit[n, k, b] = <P_b(h_n), w_k> + bias[k, b]``.

    Parameters
    ----------
    embedding_dim : int
        Width ``d`` of the visit representations.
    num_tasks : int
        ``K``.
    num_bins : int
        Intervals of the time grid.
    rank : int, default=32
        Width of the shared projection per bin and of each task embedding.

    Attributes
    ----------
    project : torch.nn.Linear
        ``d -> num_bins * rank``: the time-dependent projection ``P``.
    task_embedding : torch.nn.Parameter of shape (K, rank)
    bias : torch.nn.Parameter of shape (K, num_bins)
        Started by the pretrainer at each task's marginal hazard.
    """

    def __init__(self, embedding_dim: int, num_tasks: int, num_bins: int, rank: int = 32):
        super().__init__()
        for name, value in (("num_tasks", num_tasks), ("num_bins", num_bins), ("rank", rank)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_bins, self.rank = int(num_bins), int(rank)
        self.project = nn.Linear(embedding_dim, self.num_bins * self.rank)
        self.task_embedding = nn.Parameter(torch.empty(int(num_tasks), self.rank))
        self.bias = nn.Parameter(torch.zeros(int(num_tasks), self.num_bins))
        nn.init.normal_(self.task_embedding, std=0.02)

    @property
    def num_tasks(self) -> int:
        """``K``."""
        return self.task_embedding.shape[0]

    def forward(self, hidden: Tensor, tasks: Tensor | None = None) -> Tensor:
        """Hazard logits of every task (or of ``tasks``) in every bin.

        Parameters
        ----------
        hidden : torch.Tensor of shape (N, d)
        tasks : torch.Tensor of shape (S,), optional
            Long: the tasks to compute, in this order (default all ``K``).

        Returns
        -------
        torch.Tensor of shape (N, K, num_bins), or (N, S, num_bins)
        """
        embedding, bias = self.task_embedding, self.bias
        if tasks is not None:
            embedding, bias = embedding[tasks], bias[tasks]
        p = self.project(hidden).view(-1, self.num_bins, self.rank)
        # (N * bins, rank) @ (rank, K): one matmul, then bins last
        logits = (p.reshape(-1, self.rank) @ embedding.t()).view(-1, self.num_bins,
                                                                 embedding.shape[0])
        return logits.transpose(1, 2) + bias

    def task_affine(self, task: int) -> tuple[Tensor, Tensor]:
        """One task's logits as an affine map of ``h``: ``logit[b] = weight[b] @ h + bias[b]``.

        Parameters
        ----------
        task : int

        Returns
        -------
        weight : torch.Tensor of shape (num_bins, d)
        bias : torch.Tensor of shape (num_bins,)
        """
        w = self.task_embedding[task]  # (rank,)
        proj = self.project.weight.view(self.num_bins, self.rank, -1)
        weight = torch.einsum("r,brd->bd", w, proj)
        bias = self.project.bias.view(self.num_bins, self.rank) @ w + self.bias[task]
        return weight.detach().clone(), bias.detach().clone()


def quantile_cuts(times: np.ndarray, n_bins: int) -> np.ndarray:
    """Grid edges at quantiles of positive event times: ``0 < q_1 < ... < q_B = max``.

    Parameters
    ----------
    times : ndarray
        Event times (years).
    n_bins : int

    Returns
    -------
    ndarray of shape (n_edges,)
        Strictly increasing from 0; fewer than ``n_bins + 1`` edges when quantiles tie.
    """
    times = np.asarray(times, dtype=float)
    times = times[times > 0]
    if times.size == 0:
        raise ValueError("no positive time-to-event among the pre-training tasks: "
                         "every task recurs only within the same age, or never.")
    inner = np.quantile(times, np.arange(1, n_bins + 1) / n_bins)
    return np.unique(np.concatenate(([0.0], inner)))
