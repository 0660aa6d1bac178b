"""Continuous time signals: exact age and time-before-prediction of every token.

The age and time tables of :class:`~survbehrt.model.embeddings.BEHRTEmbeddings` see
one-year age bins and log2-month time bins: no smoothness across bins, and nothing
finer than a bin. :class:`ContinuousTimeEncoding` adds, beside them, a learned
projection of a sinusoidal encoding of the exact age in years (periods from 1 to
256 years, as Delphi-2M encodes continuous age) and of the log of the time from the
visit to the prediction time. Tokens without time (padding, static codes) get zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ContinuousTimeEncoding", "token_times"]


def token_times(visits: Tensor, visit_times: Tensor, index_age: Tensor) -> tuple[Tensor, Tensor]:
    """Exact age and years-before-prediction of every token, from the batch's visit fields.

    Parameters
    ----------
    visits : Tensor of shape (B, L), integer
        Visit index of each token.
    visit_times : Tensor of shape (B, V)
        Years from each visit to the prediction time.
    index_age : Tensor of shape (B,)
        Age at the prediction time.

    Returns
    -------
    age, before : Tensor of shape (B, L)
        ``index_age - visit_times[visit]`` and ``visit_times[visit]``.
    """
    idx = visits.long().clamp(0, max(visit_times.shape[1] - 1, 0))
    before = visit_times.gather(1, idx) if visit_times.shape[1] else torch.zeros_like(
        idx, dtype=visit_times.dtype)
    return index_age[:, None].to(before.dtype) - before, before


class ContinuousTimeEncoding(nn.Module):
    """Sinusoidal features of exact age and log time-before-prediction, projected to ``dim``.

    Parameters
    ----------
    dim : int
        Width of the output (the embedding width).
    n_frequencies : int, default=8
        Sine/cosine pairs for the age (periods ``2^k`` years, ``k = 0 .. n - 1``) and
        for ``log1p(months before prediction)``.

    Attributes
    ----------
    projection : torch.nn.Linear
        From the ``4 * n_frequencies`` features to ``dim`` (no bias).
    """

    def __init__(self, dim: int, n_frequencies: int = 8) -> None:
        super().__init__()
        k = torch.arange(n_frequencies, dtype=torch.float32)
        self.register_buffer("age_omega", 2 * math.pi / (2.0 ** k), persistent=False)
        self.register_buffer("time_omega", 1.0 / (1.5 ** k), persistent=False)
        self.projection = nn.Linear(4 * n_frequencies, dim, bias=False)

    def forward(self, age: Tensor, before: Tensor, timed: Tensor) -> Tensor:
        """Encode.

        Parameters
        ----------
        age, before : Tensor of shape (B, L)
            Age in years and years before the prediction time (see :func:`token_times`).
        timed : Tensor of shape (B, L), bool
            Tokens that have a time; the others get zero.

        Returns
        -------
        Tensor of shape (B, L, dim)
        """
        a = age.float()[..., None] * self.age_omega
        t = torch.log1p(12.0 * before.float().clamp_min(0.0))[..., None] * self.time_omega
        feats = torch.cat([torch.sin(a), torch.cos(a), torch.sin(t), torch.cos(t)], dim=-1)
        feats = feats * timed[..., None].to(feats.dtype)
        return self.projection(feats.to(self.projection.weight.dtype))
