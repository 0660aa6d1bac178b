"""Time-decayed sums of the visits so far: counts and recency that attention averages away.

Softmax attention and the mean pooling of a visit's tokens are averages: a patient with
three visits in the last year and one with thirty look alike to them when the visits
look alike, and how recently something happened reaches the hazard head only through
the time embeddings of the tokens that attention happens to weight. Counts and recency
are what a clinician reads first (how often is this patient seen; how long since the
last episode), and the simulated cohorts put part of their risk there (the visit
tempo; the recency of a code group; the current stage of a progressing disease).

:class:`DecayedHistory` gives the head these sums directly. For the history up to
visit ``t`` and each time scale ``tau`` (years),

``s_tau(t) = sum_{v <= t} exp(-r_v / tau) [u(h_v), 1]``,

with ``r_v`` the years from visit ``v`` to the prediction time, ``h_v`` the visit's
representation and ``u`` a learned projection to a few channels; the constant channel
makes ``s_tau`` hold a decayed count of the visits (the tempo at scale ``tau``). The
sums are a cumulative sum over the visits, so every visit gets its own causal value at
no more than the cost of the pooling. ``asinh`` of the sums (log-like for large counts,
linear near zero, signed) goes through a linear map, initialised at zero, to a vector
added to the visit's representation before the hazard head: the module starts as the
identity, and training moves it only as far as the data asks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DecayedHistory", "check_decay_scales", "decay_scales_of", "decay_weights"]


def check_decay_scales(scales) -> tuple[float, ...] | None:
    """``scales`` as a tuple of positive finite floats (years), or None.

    Raises
    ------
    ValueError
        If ``scales`` is empty, not a sequence of numbers, or holds a value that is not
        positive and finite.
    """
    if scales is None:
        return None
    try:
        if isinstance(scales, (str, bytes)):
            raise TypeError
        out = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(
            f"decay_scales must be None or a sequence of positive numbers (years), got "
            f"{scales!r}") from None
    if not out or not all(0 < s < float("inf") for s in out):
        raise ValueError(
            f"decay_scales must be None or a non-empty sequence of positive finite numbers "
            f"(years), got {scales!r}")
    return out


def decay_scales_of(module: nn.Module) -> list[float] | None:
    """The time scales of ``module.history`` (a list, as saved with a model), or None."""
    history = getattr(module, "history", None)
    return None if history is None else [float(s) for s in history.scales]


def decay_weights(visit_times: Tensor, visit_mask: Tensor, scales: Sequence[float]) -> Tensor:
    """Each visit's weight ``exp(-r_v / tau)`` at each time scale, 0 at padding visits.

    Parameters
    ----------
    visit_times : torch.Tensor of shape (B, V)
        Years ``r_v`` from each visit to the prediction time (negative ones count as 0).
    visit_mask : torch.Tensor of shape (B, V), bool
        Real visits.
    scales : sequence of float
        Time scales ``tau`` in years.

    Returns
    -------
    torch.Tensor of shape (B, V, S), float32
        In float32 whatever the model's precision: the times exact (bf16 would round a
        visit 10.3 years back to 10.3125).
    """
    before = visit_times.float().clamp_min(0.0)
    taus = torch.tensor([float(s) for s in scales], dtype=torch.float32, device=before.device)
    return torch.exp(-before[..., None] / taus) * visit_mask[..., None].float()


class DecayedHistory(nn.Module):
    """Exponentially decayed sums of the visits up to each visit, projected to ``dim``.

    Parameters
    ----------
    dim : int
        Width of the visit representations (input and output).
    scales : sequence of float
        Time scales ``tau`` in years.
    channels : int, default=8
        Learned channels ``u(h)`` summed beside the constant one.

    Attributes
    ----------
    scales : tuple of float
        The time scales, plain floats: not a tensor, so that moving the module to
        bf16 cannot round them (0.3 would become 0.30078).
    project : torch.nn.Linear
        ``u``: from ``dim`` to ``channels``.
    output : torch.nn.Linear
        From ``S * (channels + 1)`` features to ``dim``; starts at zero.
    """

    def __init__(self, dim: int, scales: Sequence[float], channels: int = 8) -> None:
        super().__init__()
        scales = check_decay_scales(scales)
        if scales is None:
            raise ValueError("DecayedHistory needs at least one time scale")
        self.scales = scales
        self.project = nn.Linear(dim, channels)
        self.output = nn.Linear(len(scales) * (channels + 1), dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def sums(self, visit_repr: Tensor, visit_mask: Tensor, visit_times: Tensor) -> Tensor:
        """The decayed sums ``s_tau(t)`` before ``asinh``, shape ``(B, V, S, channels + 1)``.

        Parameters
        ----------
        visit_repr : torch.Tensor of shape (B, V, D)
        visit_mask : torch.Tensor of shape (B, V), bool
            Real visits; the others add nothing.
        visit_times : torch.Tensor of shape (B, V)
            Years from each visit to the prediction time.
        """
        # in float32 whatever the model's precision (see decay_weights); the running
        # sums without bf16's 8-bit mantissa
        u = self.project(visit_repr).float()
        u = torch.cat([u, torch.ones_like(u[..., :1])], dim=-1)  # (B, V, C + 1)
        weight = decay_weights(visit_times, visit_mask, self.scales)  # (B, V, S)
        return torch.cumsum(weight[..., None] * u[..., None, :], dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files saved before the scales left the state dict hold them as a buffer; the
        # module's own (the saved decay_scales) are the same values, unrounded
        state_dict.pop(prefix + "scales", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, visit_repr: Tensor, visit_mask: Tensor, visit_times: Tensor) -> Tensor:
        """``visit_repr`` plus the projected decayed sums of the visits up to each visit.

        Parameters
        ----------
        visit_repr, visit_mask, visit_times
            As in :meth:`sums`.

        Returns
        -------
        torch.Tensor of shape (B, V, D)
        """
        feats = torch.asinh(self.sums(visit_repr, visit_mask, visit_times)).flatten(-2)
        return visit_repr + self.output(feats.to(self.output.weight.dtype))
