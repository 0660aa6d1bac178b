"""Survival losses (torch) on piecewise-constant hazards: likelihood, ranking, hybrid.

The model's logits ``a`` give, on the grid ``0 = c_0 < ... < c_K``, the hazard
integrated over each bin, ``eta_k = softplus(a_k)``, and a constant rate
``lambda_k = eta_k / (c_{k+1} - c_k)`` inside it (see :mod:`survbehrt.survival`).
A subject observed until ``t`` in bin ``k`` with event indicator ``delta`` has
the likelihood ``exp(-H(t)) lambda_k ** delta`` with
``H(t) = sum_{j<k} eta_j + lambda_k (t - c_k)``: every subject, censored or
not, counts for exactly the time it was observed. Times past ``c_K`` are
censored at ``c_K``.

Every loss takes exact follow-up times (years), not bin indices, and either one
row per patient, ``logits (N, K)`` with ``time``, ``event`` of shape ``(N,)``,
or one row per (patient, visit) landmark, ``logits (B, V, K)`` with targets
``(B, V)`` and a ``mask (B, V)`` of real visits (see
:func:`survbehrt.survival.landmark_targets`); masked rows are dropped.

Argument order is ``(logits, time, event, cuts)``.

Over 600 lines as one unit: the three losses are one likelihood and one ranking penalty
on the same inputs (argument checks, landmark rows, the horizon), the ranking memory
serves the ranking term only, and the ``nn.Module`` wrappers are thin; about half of
the lines are numpydoc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .survival import _check_cuts, _cumhaz_in_bins, _exact_dtype, locate

__all__ = [
    "HybridSurvivalLoss",
    "PairwiseRankingLoss",
    "RankingMemory",
    "SurvivalLossOutput",
    "SurvivalNLL",
    "comparable_pairs",
    "hybrid_survival_loss",
    "pairwise_ranking_loss",
    "survival_nll",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(logits, time, event, cuts, mask, weight=None):
    """Validate shapes/dtypes once at the boundary; return the targets as tensors."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point torch.Tensor")
    if logits.dim() not in (2, 3):
        raise ValueError(f"logits must be (N, K) or (B, V, K), got shape {tuple(logits.shape)}")
    cuts = _check_cuts(cuts, logits.shape[-1])
    time = torch.as_tensor(time, device=logits.device)
    if time.dtype == torch.bool:
        raise TypeError("time is boolean: arguments are (logits, time, event, cuts)")
    # follow-up and edges in float32 at least, whatever the autocast dtype of the logits
    dtype = _exact_dtype(logits.dtype)
    time = time.to(dtype)
    event = torch.as_tensor(event, device=logits.device)
    target_shape = tuple(logits.shape[:-1])
    for name, value in (("time", time), ("event", event)):
        if tuple(value.shape) != target_shape:
            raise ValueError(
                f"{name} must have shape {target_shape} to match logits "
                f"{tuple(logits.shape)}, got {tuple(value.shape)}"
            )
    if mask is not None:
        mask = torch.as_tensor(mask, device=logits.device).bool()
        if tuple(mask.shape) != target_shape:
            raise ValueError(f"mask must have shape {target_shape}, got {tuple(mask.shape)}")
        # padded rows may carry any target; neutralise them
        time = torch.where(mask, time, torch.zeros_like(time))
        event = torch.where(mask, event, torch.zeros_like(event))
    if weight is not None:
        weight = torch.as_tensor(weight, device=logits.device, dtype=dtype)
        if tuple(weight.shape) != target_shape:
            raise ValueError(f"weight must have shape {target_shape}, got {tuple(weight.shape)}")
    if time.numel() and not (torch.isfinite(time).all() and (time >= 0).all()):
        raise ValueError("time must be finite and non-negative")
    # the grid is the modelled horizon: censor at its last edge
    horizon = float(cuts[-1])
    event = event.bool() & (time <= horizon)
    time = time.clamp(max=horizon)
    return time, event, cuts, mask, weight


def _rows(logits, time, event, mask, weight=None):
    """Flatten landmark input (B, V, K) to the valid rows (N, K), with patient ids."""
    if logits.dim() == 2:
        groups = None
        if mask is not None:
            logits, time, event = logits[mask], time[mask], event[mask]
            weight = None if weight is None else weight[mask]
        return logits, time, event, weight, groups
    batch, visits, _ = logits.shape
    if mask is None:
        mask = torch.ones(batch, visits, dtype=torch.bool, device=logits.device)
    groups = torch.arange(batch, device=logits.device)[:, None].expand(batch, visits)[mask]
    weight = None if weight is None else weight[mask]
    return logits[mask], time[mask], event[mask], weight, groups


def _log_softplus(x):
    # log(softplus(x)) without log(0): softplus(x) = exp(x) (1 - exp(x)/2 + ...) for x << 0
    return torch.where(x < -20, x, torch.log(F.softplus(x).clamp_min(torch.finfo(x.dtype).tiny)))


def _nll_rows(logits, time, event, cuts):
    """Per-row negative log-likelihood ``H(t) - delta log lambda_k``."""
    k, share = locate(time, cuts)
    cumhaz = _cumhaz_in_bins(F.softplus(logits), k, share)
    width = torch.as_tensor(np.diff(cuts), dtype=logits.dtype, device=logits.device)[k]
    log_rate = _log_softplus(logits.gather(1, k[:, None]).squeeze(1)) - torch.log(width)
    return cumhaz - event.to(logits.dtype) * log_rate


def survival_nll(logits, time, event, cuts, weight=None, mask=None, reduction="mean"):
    """Negative log-likelihood of right-censored times under piecewise-constant hazards.

    Per row ``H(t) - delta log lambda_k(t)``, with
    ``H(t) = sum_{j<k} eta_j + eta_k (t - c_k) / (c_{k+1} - c_k)``,
    ``eta = softplus(a)`` and ``log lambda_k = log eta_k - log(c_{k+1} - c_k)``
    (computed without ``log(0)`` for any finite logit). A censored subject
    contributes its cumulative hazard up to its exact censoring time, so a
    censored-only batch still has a non-zero likelihood, and no bin's hazard is
    biased by where inside the bin subjects were censored.

    Parameters
    ----------
    logits : Tensor of shape (N, K) or (B, V, K)
        Hazard logits ``a``.
    time : Tensor of shape (N,) or (B, V)
        Follow-up in years (to the event or censoring), non-negative.
    event : Tensor of shape (N,) or (B, V)
        Event indicators (bool or 0/1 numbers).
    cuts : array-like of shape (K + 1,)
        Grid edges (``TimeGrid.cuts_``); times past the last are censored there.
    weight : Tensor of shape (N,) or (B, V), optional
        Non-negative row weights.
    mask : Tensor of shape (N,) or (B, V), bool, optional
        Rows to use (real visits for landmark input).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: weighted mean over valid rows (``sum w l / sum w``; 0 if
        no row). ``"none"``: per-row losses (times ``weight``) in the shape of
        ``time``, 0 at masked rows.

    Returns
    -------
    loss : Tensor
        Scalar, or per-row for ``reduction="none"``.

    Examples
    --------
    With a constant hazard of 0.5 per year on one bin of width 2, a subject
    censored at 1 year has ``-log L = H(1) = 0.5``:

    >>> import math, torch
    >>> a = torch.tensor([[math.log(math.expm1(1.0))]])  # eta = 1 over (0, 2]
    >>> float(survival_nll(a, torch.tensor([1.0]), torch.tensor([False]), [0.0, 2.0]))
    0.5
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    time, event, cuts, mask, weight = _check_inputs(logits, time, event, cuts, mask, weight)
    logits = logits.to(time.dtype)  # the likelihood in float32 even for bf16 logits
    if reduction == "none":
        flat = logits.reshape(-1, logits.shape[-1])
        per_row = _nll_rows(flat, time.reshape(-1), event.reshape(-1), cuts).reshape(time.shape)
        if weight is not None:
            per_row = per_row * weight
        if mask is not None:
            per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
        return per_row
    rows, t, ev, w, _ = _rows(logits, time, event, mask, weight)
    per_row = _nll_rows(rows, t, ev, cuts)
    if w is None:
        total, denom = per_row.sum(), float(per_row.shape[0])
    else:
        total, denom = (per_row * w).sum(), w.sum()
    if reduction == "sum":
        return total
    if isinstance(denom, float):
        return total / max(denom, 1.0)
    return total / denom.clamp_min(torch.finfo(logits.dtype).tiny)


def comparable_pairs(time_i, event_i, time_j, event_j):
    """Which ``(i, j)`` are comparable: ``i`` has the event at ``t_i``, ``j`` is at risk after it.

    ``j`` is at risk after ``t_i`` when ``t_j > t_i``, or ``t_j == t_i`` and
    ``j`` was censored (censoring at an event's time counts as after it, the
    Kaplan–Meier and Harrell convention, as in scikit-survival's
    ``concordance_index_censored``). Two events at the same time are not compared.

    Parameters
    ----------
    time_i, event_i : Tensor of shape (N_i,)
    time_j, event_j : Tensor of shape (N_j,)

    Returns
    -------
    comparable : Tensor of shape (N_i, N_j), bool
    """
    later = time_j[None, :] > time_i[:, None]
    tied_censored = (time_j[None, :] == time_i[:, None]) & ~event_j.bool()[None, :]
    return event_i.bool()[:, None] & (later | tied_censored)


def _pair_penalty(logits_i, time_i, event_i, groups_i, logits_j, time_j, event_j, groups_j,
                  cuts, sigma, form):
    """Penalties of every comparable (event i, at-risk j), compared at ``t_i``."""
    eta_i, eta_j = F.softplus(logits_i), F.softplus(logits_j)
    k, share = locate(time_i, cuts)  # where each t_i lies
    cumhaz_i = _cumhaz_in_bins(eta_i, k, share)
    before_j = torch.cumsum(eta_j, dim=1) - eta_j
    cumhaz_j_at_i = before_j.index_select(1, k).T + eta_j.index_select(1, k).T * share[:, None]
    # F = 1 - S; F_i(t_i) - F_j(t_i) = S_j(t_i) - S_i(t_i)
    diff = (torch.exp(-cumhaz_j_at_i) - torch.exp(-cumhaz_i)[:, None]) / sigma
    comparable = comparable_pairs(time_i, event_i, time_j, event_j)
    if groups_i is not None and groups_j is not None:
        comparable = comparable & (groups_i[:, None] != groups_j[None, :])
    penalty = torch.exp(-diff) if form == "exp" else F.softplus(-diff)
    return penalty * comparable.to(penalty.dtype), comparable


def pairwise_ranking_loss(
    logits,
    time,
    event,
    cuts,
    sigma=0.1,
    form="exp",
    mask=None,
    groups=None,
    reference=None,
    reduction="mean",
):
    """Pairwise ranking loss on the predicted cumulative incidence (DeepHit), by definition.

    A pair ``(i, j)`` is comparable when ``i`` had the event at ``t_i`` and
    ``j`` was still at risk after it (:func:`comparable_pairs`). With
    ``F = 1 - S`` read at ``t_i`` on the continuous curves, the pair is
    penalised by ``exp(-(F_i(t_i) - F_j(t_i)) / sigma)`` (``form="exp"``,
    DeepHit) or ``softplus(-(F_i - F_j) / sigma)`` (``form="softplus"``).

    For landmark input ``(B, V, K)`` pairs are formed across all valid
    (patient, visit) rows of *different* patients. ``reference`` adds rows seen
    earlier (e.g. a :class:`RankingMemory` of other batches, detached): pairs
    between the current rows and the reference rows, in both roles, join the
    mean, so the ranking is not confined to one batch.

    Parameters
    ----------
    logits : Tensor of shape (N, K) or (B, V, K)
        Hazard logits.
    time : Tensor of shape (N,) or (B, V)
        Follow-up in years.
    event : Tensor of shape (N,) or (B, V)
        Event indicators.
    cuts : array-like of shape (K + 1,)
        Grid edges; times past the last are censored there.
    sigma : float, default=0.1
        Temperature; smaller is steeper.
    form : {"exp", "softplus"}, default="exp"
        Penalty shape.
    mask : Tensor of shape (N,) or (B, V), bool, optional
        Rows to use.
    groups : Tensor of shape (N,), optional
        Group id per row (2-D input); pairs within a group (e.g. one patient's
        several prediction times) are skipped. For landmark input the patient
        index is used.
    reference : tuple of Tensors ``(logits, time, event, groups)``, optional
        Extra rows of shape ``(M, K)``, ``(M,)``, ``(M,)``, ``(M,)`` (groups may
        be None), compared with the current rows but not with each other.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: mean over comparable pairs, 0 (with a ``grad_fn``) when
        there is none; ``"sum"``: sum over pairs; ``"none"``: the (N, N)
        penalty matrix over the valid current rows, 0 for non-comparable pairs
        (reference rows are then ignored).

    Returns
    -------
    loss : Tensor
        Scalar, or (N, N) for ``reduction="none"``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if form not in ("exp", "softplus"):
        raise ValueError(f"form must be 'exp' or 'softplus', got {form!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    time, event, cuts, mask, _ = _check_inputs(logits, time, event, cuts, mask)
    logits = logits.to(time.dtype)  # compared in float32 even for bf16 logits
    rows, t, ev, _, auto_groups = _rows(logits, time, event, mask)
    if groups is None:
        groups = auto_groups
    elif logits.dim() == 3:
        raise ValueError("groups is only for (N, K) input; landmark input groups by patient")
    else:
        groups = torch.as_tensor(groups, device=logits.device)
        if mask is not None:
            groups = groups[mask]
    args = dict(cuts=cuts, sigma=sigma, form=form)
    penalty, comparable = _pair_penalty(rows, t, ev, groups, rows, t, ev, groups, **args)
    if reduction == "none":
        return penalty
    total, n_pairs = penalty.sum(), comparable.sum()
    if reference is not None:
        r_logits, r_time, r_event, r_groups = reference
        r_time, r_event, _, _, _ = _check_inputs(r_logits, r_time, r_event, cuts, None)
        r_logits = r_logits.to(rows.dtype)
        if r_groups is not None and groups is None:
            raise ValueError("reference has groups but the current rows do not")
        for a, b in (((rows, t, ev, groups), (r_logits, r_time, r_event, r_groups)),
                     ((r_logits, r_time, r_event, r_groups), (rows, t, ev, groups))):
            p, c = _pair_penalty(*a, *b, **args)
            total, n_pairs = total + p.sum(), n_pairs + c.sum()
    if reduction == "sum":
        return total
    return total / n_pairs.clamp_min(1).to(total.dtype)


class RankingMemory:
    """Rows of recent batches (detached) for the ranking term to compare against.

    Training batches hold patients of similar history length (to keep padding
    low), so ranking within a batch alone would never compare a short history
    with a long one. The memory keeps the last ``size`` rows seen (their logits
    detached, follow-up, event and group), drawn from batches of every length
    bucket, and :func:`pairwise_ranking_loss` ranks the current batch against
    them too. The logits are a few steps stale, as in a MoCo queue, but never
    older than the current epoch: the survival net empties it (:meth:`clear`) as
    each epoch begins, so a cohort smaller than ``size`` is not held several times
    over, from past epochs' weights.
    Logits and times are stored in float32 at least (bf16 would round the times).

    Parameters
    ----------
    size : int
        Rows kept (a ring buffer).
    """

    def __init__(self, size: int):
        self.size = int(size)
        self.logits = self.time = self.event = self.groups = None
        self.n = 0
        self.pos = 0

    def __len__(self) -> int:
        return self.n

    def clear(self):
        """Forget every row (the buffer is kept)."""
        self.n = 0
        self.pos = 0

    def view(self):
        """The stored rows.

        Returns
        -------
        tuple of Tensor or None
            ``(logits, time, event, groups)`` of the rows held, or None when empty.
        """
        if self.n == 0:
            return None
        sl = slice(0, self.n)
        return self.logits[sl], self.time[sl], self.event[sl], self.groups[sl]

    @torch.no_grad()
    def push(self, logits, time, event, groups):
        """Add rows (detached), overwriting the oldest when full.

        Parameters
        ----------
        logits : Tensor of shape (N, K)
        time, event, groups : Tensor of shape (N,)
        """
        if self.size <= 0:
            return
        if self.logits is None or self.logits.shape[1] != logits.shape[1]:
            k, device = logits.shape[1], logits.device
            self.logits = torch.zeros(self.size, k, dtype=_exact_dtype(logits.dtype), device=device)
            self.time = torch.zeros(self.size, dtype=_exact_dtype(time.dtype), device=device)
            self.event = torch.zeros(self.size, dtype=torch.bool, device=device)
            self.groups = torch.zeros(self.size, dtype=torch.long, device=device)
            self.clear()  # rows of another grid are gone with the old buffer
        n = logits.shape[0]
        if n > self.size:
            logits, time, event, groups = (x[-self.size:] for x in (logits, time, event, groups))
            n = self.size
        idx = (self.pos + torch.arange(n, device=logits.device)) % self.size
        self.logits[idx] = logits.detach().to(self.logits.dtype)
        self.time[idx] = time.detach().to(self.time.dtype)
        self.event[idx] = event.detach().bool()
        self.groups[idx] = groups.detach().long()
        self.pos = int((self.pos + n) % self.size)
        self.n = min(self.size, self.n + n)


@dataclass
class SurvivalLossOutput:
    """Result of :class:`HybridSurvivalLoss`: the total and its parts.

    Supports attribute and item access (``out.loss`` or ``out["loss"]``).

    Parameters
    ----------
    loss : Tensor
        ``nll + rank_weight * ranking``; backpropagate this.
    nll : Tensor
        Negative log-likelihood.
    ranking : Tensor
        Pairwise ranking loss.
    """

    loss: torch.Tensor
    nll: torch.Tensor
    ranking: torch.Tensor

    def __getitem__(self, key):
        """Item access, ``out["nll"]``.

        Parameters
        ----------
        key : {"loss", "nll", "ranking"}
            Field name.

        Returns
        -------
        value : Tensor
            The field.
        """
        if key not in ("loss", "nll", "ranking"):
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self):
        """Detached float values for logging.

        Returns
        -------
        values : dict of str to float
            ``{"loss": ..., "nll": ..., "ranking": ...}``.
        """
        return {k: float(getattr(self, k).detach()) for k in ("loss", "nll", "ranking")}


def hybrid_survival_loss(logits, time, event, cuts, rank_weight=0.2, sigma=0.1, form="exp",
                         weight=None, mask=None, groups=None, reference=None):
    """Negative log-likelihood plus weighted ranking loss.

    Parameters
    ----------
    logits : Tensor of shape (N, K) or (B, V, K)
        Hazard logits.
    time : Tensor of shape (N,) or (B, V)
        Follow-up in years.
    event : Tensor of shape (N,) or (B, V)
        Event indicators.
    cuts : array-like of shape (K + 1,)
        Grid edges.
    rank_weight : float, default=0.2
        Weight ``lambda`` of the ranking term.
    sigma : float, default=0.1
        Ranking temperature.
    form : {"exp", "softplus"}, default="exp"
        Ranking penalty shape.
    weight : Tensor, optional
        Row weights for the likelihood term.
    mask : Tensor, bool, optional
        Rows to use.
    groups : Tensor of shape (N,), optional
        Group ids for the ranking term (see :func:`pairwise_ranking_loss`).
    reference : tuple of Tensors, optional
        Extra rows for the ranking term (see :func:`pairwise_ranking_loss`).

    Returns
    -------
    out : SurvivalLossOutput
        ``loss = nll + rank_weight * ranking`` (mean reductions), with parts.
    """
    nll = survival_nll(logits, time, event, cuts, weight=weight, mask=mask)
    ranking = pairwise_ranking_loss(logits, time, event, cuts, sigma=sigma, form=form, mask=mask,
                                    groups=groups, reference=reference)
    return SurvivalLossOutput(loss=nll + rank_weight * ranking, nll=nll, ranking=ranking)


class _GridLoss(nn.Module):
    """A loss bound to a time grid, with an optional ranking memory used in training."""

    def __init__(self, cuts, memory_size=0):
        super().__init__()
        self.cuts = np.asarray(cuts, dtype=float)
        self.memory_size = int(memory_size)
        self.memory = RankingMemory(self.memory_size)

    def _reference(self, logits, groups):
        # training only, 2-D rows with groups: rank against (then remember) other batches
        use = self.training and self.memory_size > 0 and logits.dim() == 2 and groups is not None
        return use, (self.memory.view() if use else None)

    def _remember(self, use, logits, time, event, groups):
        if use:
            t, ev, _, _, _ = _check_inputs(logits, time, event, self.cuts, None)
            self.memory.push(logits, t, ev, torch.as_tensor(groups, device=logits.device))


class SurvivalNLL(_GridLoss):
    """Module form of :func:`survival_nll`.

    Parameters
    ----------
    cuts : array-like of shape (K + 1,)
        Grid edges.
    reduction : {"mean", "sum", "none"}, default="mean"
    """

    def __init__(self, cuts, reduction="mean"):
        super().__init__(cuts)
        self.reduction = reduction

    def forward(self, logits, time, event, weight=None, mask=None, groups=None):
        """Compute the loss (``groups`` is accepted and ignored, for a uniform call).

        Parameters
        ----------
        logits : Tensor of shape (N, K) or (B, V, K)
        time, event : Tensor of shape (N,) or (B, V)
        weight, mask : Tensor, optional
        groups : ignored

        Returns
        -------
        loss : Tensor
        """
        return survival_nll(logits, time, event, self.cuts, weight=weight, mask=mask,
                            reduction=self.reduction)


class PairwiseRankingLoss(_GridLoss):
    """Module form of :func:`pairwise_ranking_loss`, with a :class:`RankingMemory`.

    Parameters
    ----------
    cuts : array-like of shape (K + 1,)
        Grid edges.
    sigma : float, default=0.1
    form : {"exp", "softplus"}, default="exp"
    memory_size : int, default=0
        Rows of earlier batches to rank against in training (0: within-batch only).
    reduction : {"mean", "sum", "none"}, default="mean"
    """

    def __init__(self, cuts, sigma=0.1, form="exp", memory_size=0, reduction="mean"):
        super().__init__(cuts, memory_size)
        self.sigma = sigma
        self.form = form
        self.reduction = reduction

    def forward(self, logits, time, event, mask=None, groups=None):
        """Compute the loss.

        Parameters
        ----------
        logits : Tensor of shape (N, K) or (B, V, K)
        time, event : Tensor of shape (N,) or (B, V)
        mask : Tensor, bool, optional
        groups : Tensor of shape (N,), optional
            Group ids; pairs within a group are skipped. Needed for the memory.

        Returns
        -------
        loss : Tensor
        """
        use, reference = self._reference(logits, groups)
        out = pairwise_ranking_loss(logits, time, event, self.cuts, sigma=self.sigma,
                                    form=self.form, mask=mask, groups=groups,
                                    reference=reference, reduction=self.reduction)
        self._remember(use, logits, time, event, groups)
        return out


class HybridSurvivalLoss(_GridLoss):
    """``nll + rank_weight * ranking``, returning both parts for logging.

    Parameters
    ----------
    cuts : array-like of shape (K + 1,)
        Grid edges.
    rank_weight : float, default=0.2
        Weight ``lambda`` of the ranking term.
    sigma : float, default=0.1
        Ranking temperature.
    form : {"exp", "softplus"}, default="exp"
        Ranking penalty shape.
    memory_size : int, default=0
        Rows of earlier batches the ranking term compares with in training.
    """

    def __init__(self, cuts, rank_weight=0.2, sigma=0.1, form="exp", memory_size=0):
        super().__init__(cuts, memory_size)
        self.rank_weight = rank_weight
        self.sigma = sigma
        self.form = form

    def forward(self, logits, time, event, weight=None, mask=None, groups=None):
        """Compute the loss and its parts.

        Parameters
        ----------
        logits : Tensor of shape (N, K) or (B, V, K)
        time, event : Tensor of shape (N,) or (B, V)
        weight, mask : Tensor, optional
        groups : Tensor of shape (N,), optional
            Group ids for the ranking term; needed for the memory.

        Returns
        -------
        out : SurvivalLossOutput
        """
        use, reference = self._reference(logits, groups)
        out = hybrid_survival_loss(logits, time, event, self.cuts, rank_weight=self.rank_weight,
                                   sigma=self.sigma, form=self.form, weight=weight, mask=mask,
                                   groups=groups, reference=reference)
        self._remember(use, logits, time, event, groups)
        return out
