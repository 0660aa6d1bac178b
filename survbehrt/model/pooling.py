"""Pooling: the mean of each visit's code tokens, and a patient vector from its visits."""

from __future__ import annotations

import torch
from torch import Tensor

from .config import N_SPECIAL, UNK_ID

__all__ = ["PATIENT_POOLING", "code_token_mask", "pool_patient", "pool_visits"]

#: Valid ``pooling`` choices of a patient embedding (``"cls"`` reads the [CLS] token).
PATIENT_POOLING = ("mean", "max", "cls")


def code_token_mask(
    codes: Tensor,
    attention_mask: Tensor | None = None,
    include_unknown: bool = False,
    age_bins: Tensor | None = None,
) -> Tensor:
    """Mask of the tokens that are real codes (no padding, no special token).

    Parameters
    ----------
    codes : torch.Tensor of shape (B, L)
        Token ids.
    attention_mask : torch.Tensor of shape (B, L), optional
        True for real tokens; padding has id 0 anyway, so it only matters when
        padding carries another id.
    include_unknown : bool, default=False
        Also keep ``[UNK]`` tokens (a code unseen at fit time is still an event).
    age_bins : torch.Tensor of shape (B, L), optional
        When given, tokens with age bin 0 — static codes, which have no time — are
        left out: they belong to visit 0 only so that every visit sees them, and
        are not events of that visit.

    Returns
    -------
    torch.Tensor
        Bool tensor of shape ``(B, L)``: ``attention_mask & (codes >= N_SPECIAL)``
        (``& (age_bins > 0)`` with ``age_bins``).
    """
    mask = codes >= (UNK_ID if include_unknown else N_SPECIAL)
    if attention_mask is not None:
        mask &= attention_mask.bool()  # no copy when already bool
    if age_bins is not None:
        mask &= age_bins > 0
    return mask


def pool_visits(
    hidden: Tensor,
    visits: Tensor,
    token_mask: Tensor,
    num_visits: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean of each visit's selected tokens.

    One ``index_add_`` over the flattened ``(batch, visit)`` index: no loop over
    patients or visits. Unselected tokens (and tokens whose visit index is
    ``>= num_visits``) are routed to a dummy row that is dropped.

    Parameters
    ----------
    hidden : torch.Tensor of shape (B, L, D)
        Token representations.
    visits : torch.Tensor of shape (B, L)
        Visit index of each token (0-based).
    token_mask : torch.Tensor of shape (B, L)
        Bool, True for the tokens to pool (real code tokens, see
        :func:`code_token_mask`).
    num_visits : int, optional
        Number of visit slots ``V`` (e.g. ``batch["visit_mask"].shape[1]``);
        default ``visits.max() + 1``.

    Returns
    -------
    visit_repr : torch.Tensor of shape (B, V, D)
        Mean of each visit's tokens; zeros for a visit without a selected token.
    visit_mask : torch.Tensor of shape (B, V)
        True where the visit had at least one selected token.
    """
    b, length, dim = hidden.shape
    if num_visits is None:
        num_visits = int(visits.max()) + 1 if visits.numel() else 0
    n_rows = b * num_visits
    keep = token_mask & (visits < num_visits)
    # flat row index b * V + v; dropped tokens go to the extra row n_rows (this also
    # keeps non-finite values at padding positions out of the sums).
    base = torch.arange(b, device=visits.device).unsqueeze(1) * num_visits
    index = torch.where(keep, base + visits, n_rows).reshape(-1)
    sums = hidden.new_zeros(n_rows + 1, dim).index_add_(0, index, hidden.reshape(-1, dim))
    counts = hidden.new_zeros(n_rows + 1).index_add_(0, index, keep.reshape(-1).to(hidden.dtype))
    counts = counts[:n_rows].view(b, num_visits)
    visit_mask = counts > 0
    visit_repr = sums[:n_rows].view(b, num_visits, dim) / counts.clamp_min(1).unsqueeze(-1)
    return visit_repr, visit_mask


def pool_patient(visit_repr: Tensor, visit_mask: Tensor, how: str = "mean") -> Tensor:
    """One vector per patient from its real visits' representations.

    Padding visit slots (``visit_mask`` False) never enter the result: the mean
    divides by the number of real visits, the max ignores the other slots.

    Parameters
    ----------
    visit_repr : torch.Tensor of shape (B, V, D)
        Visit representations (e.g. from :func:`pool_visits`).
    visit_mask : torch.Tensor of shape (B, V)
        Bool, True for real visits.
    how : {"mean", "max"}, default="mean"
        Element-wise mean or maximum over the real visits.

    Returns
    -------
    torch.Tensor of shape (B, D)
        Zeros for a patient without a real visit.

    Examples
    --------
    >>> import torch
    >>> reps = torch.tensor([[[1.0, -2.0], [3.0, -4.0], [9.0, 9.0]]])
    >>> mask = torch.tensor([[True, True, False]])
    >>> pool_patient(reps, mask, "mean").tolist(), pool_patient(reps, mask, "max").tolist()
    ([[2.0, -3.0]], [[3.0, -2.0]])
    """
    weight = visit_mask.unsqueeze(-1)
    if how == "mean":
        w = weight.to(visit_repr.dtype)
        return (visit_repr * w).sum(dim=1) / w.sum(dim=1).clamp_min(1)
    if how == "max":
        masked = visit_repr.masked_fill(~weight, float("-inf")).amax(dim=1)
        return torch.where(visit_mask.any(dim=1, keepdim=True), masked, torch.zeros_like(masked))
    raise ValueError(f"how must be 'mean' or 'max', got {how!r}")
