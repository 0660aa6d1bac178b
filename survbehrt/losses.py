"""Discrete-time survival losses (torch): negative log-likelihood, ranking, hybrid.

Targets follow :func:`survbehrt.survival.discretize`: ``bin_idx`` is the event
bin for events (``0 .. K-1``) and, for censored subjects, the number of bins
observed all the way through (``0 .. K``). For a subject with index ``kappa``
and event indicator ``delta`` the likelihood is

``L = prod_{j<kappa} (1 - h_j) * h_kappa ** delta``,

so a censored subject's bins ``< kappa`` count as survived and the bin in which
it was censored contributes nothing.

Every loss takes either one row per patient, ``logits (N, K)`` with targets
``(N,)``, or one row per (patient, visit) landmark, ``logits (B, V, K)`` with
targets ``(B, V)`` and a ``mask (B, V)`` of real visits (see
:func:`survbehrt.survival.landmark_targets`); masked rows are dropped.

Argument order is ``(logits, bin_idx, event)``, the order of the design issue.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DiscreteTimeNLL",
    "HybridSurvivalLoss",
    "PairwiseRankingLoss",
    "SurvivalLossOutput",
    "discrete_time_nll",
    "hybrid_survival_loss",
    "pairwise_ranking_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(logits, bin_idx, event, mask, weight=None):
    """Validate shapes/dtypes once at the boundary; return the targets as tensors."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point torch.Tensor")
    if logits.dim() not in (2, 3):
        raise ValueError(f"logits must be (N, K) or (B, V, K), got shape {tuple(logits.shape)}")
    bin_idx = torch.as_tensor(bin_idx, device=logits.device)
    if bin_idx.dtype == torch.bool or bin_idx.is_floating_point():
        raise TypeError(
            f"bin_idx must be an integer tensor, got {bin_idx.dtype}; arguments are "
            "(logits, bin_idx, event)"
        )
    event = torch.as_tensor(event, device=logits.device)
    target_shape = tuple(logits.shape[:-1])
    for name, value in (("bin_idx", bin_idx), ("event", event)):
        if tuple(value.shape) != target_shape:
            raise ValueError(
                f"{name} must have shape {target_shape} to match logits "
                f"{tuple(logits.shape)}, got {tuple(value.shape)}"
            )
    if mask is not None:
        mask = torch.as_tensor(mask, device=logits.device).bool()
        if tuple(mask.shape) != target_shape:
            raise ValueError(f"mask must have shape {target_shape}, got {tuple(mask.shape)}")
    if weight is not None:
        weight = torch.as_tensor(weight, device=logits.device, dtype=logits.dtype)
        if tuple(weight.shape) != target_shape:
            raise ValueError(f"weight must have shape {target_shape}, got {tuple(weight.shape)}")
    n_bins = logits.shape[-1]
    bin_idx = bin_idx.long()
    if mask is not None:
        # padded rows may carry any target; neutralise them so gathers stay in range
        bin_idx = torch.where(mask, bin_idx, torch.zeros_like(bin_idx))
        event = torch.where(mask, event, torch.zeros_like(event))
    ev = event.bool()
    if bin_idx.numel() and (
        bin_idx.min() < 0 or bin_idx.max() > n_bins or (ev & (bin_idx >= n_bins)).any()
    ):
        raise ValueError(
            f"bin_idx out of range: events need 0 <= bin_idx < {n_bins}, "
            f"censored 0 <= bin_idx <= {n_bins}"
        )
    return bin_idx, event, mask, weight


def _rows(logits, bin_idx, event, mask, weight=None):
    """Flatten landmark input (B, V, K) to the valid rows (N, K), with patient ids."""
    if logits.dim() == 2:
        groups = None
        if mask is not None:
            logits, bin_idx, event = logits[mask], bin_idx[mask], event[mask]
            weight = None if weight is None else weight[mask]
        return logits, bin_idx, event, weight, groups
    batch, visits, n_bins = logits.shape
    if mask is None:
        mask = torch.ones(batch, visits, dtype=torch.bool, device=logits.device)
    groups = torch.arange(batch, device=logits.device)[:, None].expand(batch, visits)[mask]
    weight = None if weight is None else weight[mask]
    return logits[mask], bin_idx[mask], event[mask], weight, groups


def _nll_rows(logits, bin_idx, event):
    """Per-row negative log-likelihood, log-sigmoid form (no log(0) for any finite logit)."""
    n, n_bins = logits.shape
    log_surv = F.logsigmoid(-logits)  # log(1 - h)
    # cum[:, k] = sum_{j<k} log(1 - h_j), k = 0..K
    cum = torch.cat([log_surv.new_zeros(n, 1), torch.cumsum(log_surv, dim=1)], dim=1)
    survived = cum.gather(1, bin_idx[:, None]).squeeze(1)
    event_bin = bin_idx.clamp(max=n_bins - 1)
    log_h = F.logsigmoid(logits).gather(1, event_bin[:, None]).squeeze(1)
    return -(survived + event.to(logits.dtype) * log_h)


def discrete_time_nll(logits, bin_idx, event, weight=None, mask=None, reduction="mean"):
    """Discrete-time negative log-likelihood of right-censored data.

    ``-[sum_{j<kappa} log(1 - h_j) + delta log h_kappa]`` per row, with
    ``log h = logsigmoid(a)`` and ``log(1 - h) = logsigmoid(-a)`` summed by
    ``cumsum`` and read with ``gather``: finite and smooth for any finite logit.
    A censored row that survived at least one bin still contributes, so a
    censored-only batch has a non-zero likelihood.

    Parameters
    ----------
    logits : Tensor of shape (N, K) or (B, V, K)
        Hazard logits ``a``; ``h = sigmoid(a)``.
    bin_idx : Tensor of shape (N,) or (B, V), integer
        Targets from :func:`survbehrt.survival.discretize`.
    event : Tensor of shape (N,) or (B, V)
        Event indicators (bool or 0/1 floats).
    weight : Tensor of shape (N,) or (B, V), optional
        Non-negative row weights.
    mask : Tensor of shape (N,) or (B, V), bool, optional
        Rows to use (real visits for landmark input).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: weighted mean over valid rows (``sum w l / sum w``; 0 if
        no row). ``"none"``: per-row losses (times ``weight``) in the shape of
        ``bin_idx``, 0 at masked rows.

    Returns
    -------
    loss : Tensor
        Scalar, or per-row for ``reduction="none"``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    bin_idx, event, mask, weight = _check_inputs(logits, bin_idx, event, mask, weight)
    if reduction == "none":
        flat = logits.reshape(-1, logits.shape[-1])
        per_row = _nll_rows(flat, bin_idx.reshape(-1), event.reshape(-1))
        per_row = per_row.reshape(bin_idx.shape)
        if weight is not None:
            per_row = per_row * weight
        if mask is not None:
            per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
        return per_row
    rows, idx, ev, w, _ = _rows(logits, bin_idx, event, mask, weight)
    per_row = _nll_rows(rows, idx, ev)
    if w is None:
        total, denom = per_row.sum(), float(per_row.shape[0])
    else:
        total, denom = (per_row * w).sum(), w.sum()
    if reduction == "sum":
        return total
    if isinstance(denom, float):
        return total / max(denom, 1.0)
    return total / denom.clamp_min(torch.finfo(logits.dtype).tiny)


def pairwise_ranking_loss(
    logits,
    bin_idx,
    event,
    sigma=0.1,
    form="exp",
    mask=None,
    groups=None,
    reduction="mean",
):
    """Pairwise ranking loss on the predicted cumulative incidence (DeepHit).

    A pair ``(i, j)`` is comparable when ``i`` had the event in bin ``k_i`` and
    ``j`` was still at risk then: ``k_j > k_i``, or ``k_j == k_i`` and ``j``
    censored. With ``F = 1 - S`` read at the end of bin ``k_i``, the pair is
    penalised by ``exp(-(F_i - F_j) / sigma)`` (``form="exp"``, DeepHit) or
    ``softplus(-(F_i - F_j) / sigma)`` (``form="softplus"``, logistic).
    Vectorised over all pairs (N x N matrices).

    For landmark input ``(B, V, K)`` pairs are formed across all valid
    (patient, visit) rows of *different* patients: each landmark row is a
    subject with its own follow-up, and rows of one patient (the same event
    seen from different visits) are not ranked against each other. Cost is
    O(N^2) memory in the number of valid rows.

    Parameters
    ----------
    logits : Tensor of shape (N, K) or (B, V, K)
        Hazard logits.
    bin_idx : Tensor of shape (N,) or (B, V), integer
        Targets from :func:`survbehrt.survival.discretize`.
    event : Tensor of shape (N,) or (B, V)
        Event indicators.
    sigma : float, default=0.1
        Temperature; smaller is steeper.
    form : {"exp", "softplus"}, default="exp"
        Penalty shape.
    mask : Tensor of shape (N,) or (B, V), bool, optional
        Rows to use.
    groups : Tensor of shape (N,), optional
        Group id per row (2-D input); pairs within a group are skipped. For
        landmark input the patient index is used.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: mean over comparable pairs, 0 (with a ``grad_fn``) when
        there is none; ``"sum"``: sum over pairs; ``"none"``: the (N, N)
        penalty matrix over the valid rows, 0 for non-comparable pairs.

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
    bin_idx, event, mask, _ = _check_inputs(logits, bin_idx, event, mask)
    rows, idx, ev, _, auto_groups = _rows(logits, bin_idx, event, mask)
    if groups is None:
        groups = auto_groups
    elif logits.dim() == 3:
        raise ValueError("groups is only for (N, K) input; landmark input groups by patient")
    else:
        groups = torch.as_tensor(groups, device=logits.device)
        if mask is not None:
            groups = groups[mask]
    n_bins = rows.shape[1]
    ev = ev.bool()
    cif = 1.0 - torch.exp(torch.cumsum(F.logsigmoid(-rows), dim=1))  # F = 1 - S, (N, K)
    at = idx.clamp(max=n_bins - 1)  # event bin of row i (only used where i is an event)
    cif_j_at_i = cif.index_select(1, at).T  # [i, j] = F_j(end of bin k_i)
    cif_i = cif_j_at_i.diagonal()
    diff = (cif_i[:, None] - cif_j_at_i) / sigma
    later = idx[None, :] > idx[:, None]
    tied_censored = (idx[None, :] == idx[:, None]) & ~ev[None, :]
    comparable = ev[:, None] & (later | tied_censored)
    if groups is not None:
        comparable = comparable & (groups[:, None] != groups[None, :])
    penalty = torch.exp(-diff) if form == "exp" else F.softplus(-diff)
    penalty = penalty * comparable.to(penalty.dtype)
    if reduction == "none":
        return penalty
    total = penalty.sum()
    if reduction == "sum":
        return total
    return total / comparable.sum().clamp_min(1).to(total.dtype)


@dataclass
class SurvivalLossOutput:
    """Result of :class:`HybridSurvivalLoss`: the total and its parts.

    Supports attribute and item access (``out.loss`` or ``out["loss"]``).

    Parameters
    ----------
    loss : Tensor
        ``nll + rank_weight * ranking``; backpropagate this.
    nll : Tensor
        Discrete-time negative log-likelihood.
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


def hybrid_survival_loss(
    logits, bin_idx, event, rank_weight=0.2, sigma=0.1, form="exp", weight=None, mask=None
):
    """Negative log-likelihood plus weighted ranking loss.

    Parameters
    ----------
    logits : Tensor of shape (N, K) or (B, V, K)
        Hazard logits.
    bin_idx : Tensor of shape (N,) or (B, V), integer
        Grid targets.
    event : Tensor of shape (N,) or (B, V)
        Event indicators.
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

    Returns
    -------
    out : SurvivalLossOutput
        ``loss = nll + rank_weight * ranking`` (mean reductions), with parts.
    """
    nll = discrete_time_nll(logits, bin_idx, event, weight=weight, mask=mask)
    ranking = pairwise_ranking_loss(logits, bin_idx, event, sigma=sigma, form=form, mask=mask)
    return SurvivalLossOutput(loss=nll + rank_weight * ranking, nll=nll, ranking=ranking)


class DiscreteTimeNLL(nn.Module):
    """Module form of :func:`discrete_time_nll`.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default="mean"
        See :func:`discrete_time_nll`.
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits, bin_idx, event, weight=None, mask=None):
        """Compute the loss.

        Parameters
        ----------
        logits : Tensor of shape (N, K) or (B, V, K)
            Hazard logits.
        bin_idx : Tensor of shape (N,) or (B, V), integer
            Grid targets.
        event : Tensor of shape (N,) or (B, V)
            Event indicators.
        weight : Tensor, optional
            Row weights.
        mask : Tensor, bool, optional
            Rows to use.

        Returns
        -------
        loss : Tensor
            See :func:`discrete_time_nll`.
        """
        return discrete_time_nll(
            logits, bin_idx, event, weight=weight, mask=mask, reduction=self.reduction
        )


class PairwiseRankingLoss(nn.Module):
    """Module form of :func:`pairwise_ranking_loss`.

    Parameters
    ----------
    sigma : float, default=0.1
        Temperature.
    form : {"exp", "softplus"}, default="exp"
        Penalty shape.
    reduction : {"mean", "sum", "none"}, default="mean"
        See :func:`pairwise_ranking_loss`.
    """

    def __init__(self, sigma=0.1, form="exp", reduction="mean"):
        super().__init__()
        self.sigma = sigma
        self.form = form
        self.reduction = reduction

    def forward(self, logits, bin_idx, event, mask=None, groups=None):
        """Compute the loss.

        Parameters
        ----------
        logits : Tensor of shape (N, K) or (B, V, K)
            Hazard logits.
        bin_idx : Tensor of shape (N,) or (B, V), integer
            Grid targets.
        event : Tensor of shape (N,) or (B, V)
            Event indicators.
        mask : Tensor, bool, optional
            Rows to use.
        groups : Tensor of shape (N,), optional
            Group ids; pairs within a group are skipped.

        Returns
        -------
        loss : Tensor
            See :func:`pairwise_ranking_loss`.
        """
        return pairwise_ranking_loss(
            logits,
            bin_idx,
            event,
            sigma=self.sigma,
            form=self.form,
            mask=mask,
            groups=groups,
            reduction=self.reduction,
        )


class HybridSurvivalLoss(nn.Module):
    """``nll + rank_weight * ranking``, returning both parts for logging.

    Parameters
    ----------
    rank_weight : float, default=0.2
        Weight ``lambda`` of the ranking term.
    sigma : float, default=0.1
        Ranking temperature.
    form : {"exp", "softplus"}, default="exp"
        Ranking penalty shape.
    """

    def __init__(self, rank_weight=0.2, sigma=0.1, form="exp"):
        super().__init__()
        self.rank_weight = rank_weight
        self.sigma = sigma
        self.form = form

    def forward(self, logits, bin_idx, event, weight=None, mask=None):
        """Compute the loss and its parts.

        Parameters
        ----------
        logits : Tensor of shape (N, K) or (B, V, K)
            Hazard logits.
        bin_idx : Tensor of shape (N,) or (B, V), integer
            Grid targets.
        event : Tensor of shape (N,) or (B, V)
            Event indicators.
        weight : Tensor, optional
            Row weights for the likelihood term.
        mask : Tensor, bool, optional
            Rows to use.

        Returns
        -------
        out : SurvivalLossOutput
            ``loss``, ``nll`` and ``ranking``.
        """
        return hybrid_survival_loss(
            logits,
            bin_idx,
            event,
            rank_weight=self.rank_weight,
            sigma=self.sigma,
            form=self.form,
            weight=weight,
            mask=mask,
        )
