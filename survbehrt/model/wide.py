"""The wide path: an additive term over code counts, recent code counts and the age at prediction.

BEHRT alone has no direct way to say "each diagnosis of X multiplies the hazard by
a constant", which is what a Cox model on code counts exploits on small cohorts.
:class:`WideTerm` adds exactly that, learned jointly with the transformer (wide &
deep): for the history up to visit ``t``,

``w(t) = sum_c beta_c log(1 + n_c(t)) + sum_c rho_c q_c(t) + gamma_1 z + gamma_2 z^2
+ gamma_3 log(1 + t) + sum_s gamma_{3+s} asinh(m_s(t))``,

with ``n_c(t)`` the number of times code ``c`` occurred up to visit ``t``, ``q_c(t) =
sum_{v <= t, c in v} exp(-r_v / tau)`` its recent count at the time scale ``tau``
(``recency``; ``r_v`` as below): what the stage of a disease that comes and goes is
read from, which the count over the whole history mixes with every stage passed
through (static codes have no time and no recent count), ``z`` the
standardised age at the prediction time, ``1 + t`` the number of (kept) visits up
to visit ``t`` (history length is a strong risk signal in EHR data) and, with time
scales ``tau_s`` (``scales``), ``m_s(t) = sum_{v <= t} exp(-r_v / tau_s)`` the visits
counted with a weight that decays with ``r_v``, the years from visit ``v`` to the
prediction time: the visit tempo, at each scale (how often the patient has been seen
lately), which the count of all visits does not tell. ``w(t)`` is added to every one of the
visit's ``K`` hazard logits; since ``softplus(a + w) ~ e^w softplus(a)`` for small
hazards, it acts as a proportional-hazards shift. All weights start at zero, so the
model starts as the transformer alone, and they are regularised by the optimiser's
weight decay.

The count terms are computed per token, without a dense (patients x codes) matrix:
``log(1 + n)`` telescopes into ``sum_{k=1..n} log((1 + k) / k)``, so the ``k``-th
occurrence of a code adds ``beta_c log((k + 1) / k)`` (and ``rho_c exp(-r_v / tau)``),
and a cumulative sum over visits gives every visit its own (causal) value.

The estimator starts these weights at a penalised Cox fit on the same inputs; that fit
is statistics, not a module, and lives in :mod:`survbehrt.cox_start` (which reads
:func:`covariate_matrix` from here, so both use one definition of the covariates).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .decayed_history import check_decay_scales, decay_weights

__all__ = ["WideTerm", "covariate_matrix", "occurrence_rank", "wide_recency_of",
           "wide_scales_of"]

N_COVARIATES = 3


def covariate_matrix(z, n_visits, tempo=None):
    """The wide path's dense covariates ``(z, z^2, log(1 + n_visits)[, asinh(tempo)])`` (numpy or torch).

    Parameters
    ----------
    z : ndarray or Tensor of shape (...)
        Standardised age at the prediction time.
    n_visits : ndarray or Tensor of shape (...)
        Number of visits in the history so far.
    tempo : ndarray or Tensor of shape (..., S), optional
        The decayed visit counts ``m_s`` at each time scale (see the module docstring).

    Returns
    -------
    ndarray or Tensor of shape (..., 3 + S)
    """
    if isinstance(z, torch.Tensor):
        dense = torch.stack([z, z * z, torch.log1p(n_visits)], dim=-1)
        return dense if tempo is None else torch.cat([dense, torch.asinh(tempo)], dim=-1)
    z = np.asarray(z, dtype=float)
    dense = np.stack([z, z * z, np.log1p(np.asarray(n_visits, dtype=float))], axis=-1)
    if tempo is None:
        return dense
    return np.concatenate([dense, np.arcsinh(np.asarray(tempo, dtype=float))], axis=-1)


def occurrence_rank(codes: Tensor, counted: Tensor) -> Tensor:
    """For each token, how many times its code has occurred so far in its row (1, 2, ...).

    Parameters
    ----------
    codes : Tensor of shape (B, L), integer
        Token ids.
    counted : Tensor of shape (B, L), bool
        Tokens that count (real code tokens); others get rank 0 and are not counted.

    Returns
    -------
    Tensor of shape (B, L), int64
        ``1 +`` the number of earlier counted tokens of the row with the same code.
    """
    batch, length = codes.shape
    if codes.numel() == 0:
        return torch.zeros_like(codes, dtype=torch.long)
    rows = torch.arange(batch, device=codes.device)[:, None].expand(batch, length)
    pos = torch.arange(length, device=codes.device)[None, :].expand(batch, length)
    vocab = int(codes.max()) + 1
    # group = (row, code) of counted tokens; uncounted tokens get a group of their own
    group = torch.where(counted, rows * vocab + codes.long(), -1 - (rows * length + pos))
    key = group * length + pos  # sort by group, then by position
    order = torch.argsort(key.reshape(-1))
    sorted_group = group.reshape(-1)[order]
    idx = torch.arange(order.numel(), device=codes.device)
    new_run = torch.ones_like(sorted_group, dtype=torch.bool)
    new_run[1:] = sorted_group[1:] != sorted_group[:-1]
    run_start = torch.cummax(torch.where(new_run, idx, torch.zeros_like(idx)), dim=0).values
    rank_sorted = idx - run_start + 1
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return torch.where(counted, rank.reshape(batch, length), torch.zeros_like(rank.reshape(batch, length)))


class WideTerm(nn.Module):
    """Additive log-count and age term added to every hazard logit (see the module docstring).

    Parameters
    ----------
    vocab_size : int
        Number of token ids.
    n_special : int
        Ids below this are special tokens ([PAD], [CLS], ...), never counted.
    age_mean, age_scale : float, default=60.0, 15.0
        Standardisation of the age at prediction (set from the training rows).
    n_outputs : int, optional
        Several terms with their own weights (one per competing cause), returned on a
        last axis; default one term, without that axis.
    scales : sequence of float, optional
        Time scales (years) of the tempo covariates ``asinh(m_s(t))``; None: none (the
        term of files saved before them).
    recency : float, optional
        Time scale ``tau`` (years) of the recent code counts ``q_c(t)``; None: none (the
        term of files saved before them).

    Attributes
    ----------
    code_weight : torch.nn.Embedding
        ``beta_c``, one scalar per token id (zero-initialised); ``n_outputs`` columns.
    recent_weight : torch.nn.Embedding or None
        ``rho_c``, as ``code_weight`` (None without ``recency``).
    covariate_weight : torch.nn.Linear
        ``gamma`` on ``(z, z^2, log(1 + t)[, asinh(m_s(t))])``, no bias (zero-initialised).
    scales : tuple of float
        The tempo covariates' time scales (empty without them); plain floats, not a
        tensor, so that bf16 cannot round them.
    recency : float or None
        As the parameter (a plain float, as ``scales``).
    """

    def __init__(self, vocab_size: int, n_special: int, age_mean: float = 60.0,
                 age_scale: float = 15.0, n_outputs: int | None = None,
                 scales: Sequence[float] | None = None, recency: float | None = None) -> None:
        super().__init__()
        self.n_special = int(n_special)
        self.n_outputs = n_outputs
        self.scales = check_decay_scales(scales) or ()
        if recency is not None and not 0.0 < float(recency) < float("inf"):
            raise ValueError(f"recency must be None or a positive finite number of years, got "
                             f"{recency!r}")
        self.recency = None if recency is None else float(recency)
        width = 1 if n_outputs is None else int(n_outputs)
        self.code_weight = nn.Embedding(int(vocab_size), width)
        self.recent_weight = (None if self.recency is None
                              else nn.Embedding(int(vocab_size), width))
        self.covariate_weight = nn.Linear(N_COVARIATES + len(self.scales), width, bias=False)
        self.register_buffer("age_mean", torch.tensor(float(age_mean)))
        self.register_buffer("age_scale", torch.tensor(float(age_scale)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weights: the wide term starts at 0."""
        nn.init.zeros_(self.code_weight.weight)
        if self.recent_weight is not None:
            nn.init.zeros_(self.recent_weight.weight)
        nn.init.zeros_(self.covariate_weight.weight)

    def start_from(self, code_weight=None, covariate_weight=None) -> None:
        """Set the weights to a Cox fit's (:func:`survbehrt.cox_start.hazard_start`).

        Parameters
        ----------
        code_weight : array-like of shape (vocab_size,) or (2 vocab_size,), optional
            ``beta``, then (with ``recency``) ``rho``; a column per output with
            ``n_outputs``.
        covariate_weight : array-like of shape (3 + S,), optional
            ``gamma``; a row per output with ``n_outputs``.
        """
        width = self.code_weight.weight.shape[1]
        if code_weight is not None:
            code_weight = torch.as_tensor(np.asarray(code_weight, dtype=np.float32)).reshape(-1, width)
            tables = [self.code_weight] + ([] if self.recent_weight is None else [self.recent_weight])
            vocab = self.code_weight.num_embeddings
            if code_weight.shape[0] != vocab * len(tables):
                raise ValueError(f"code_weight must hold {vocab * len(tables)} weights per output "
                                 f"(the codes{'' if len(tables) == 1 else ', then the recent counts'});"
                                 f" got {code_weight.shape[0]}")
            for k, table in enumerate(tables):
                table.weight.data.copy_(code_weight[k * vocab : (k + 1) * vocab])
        if covariate_weight is not None:
            covariate_weight = torch.as_tensor(np.asarray(covariate_weight, dtype=np.float32))
            self.covariate_weight.weight.data.copy_(covariate_weight.reshape(width, -1))

    def token_terms(self, codes: Tensor, visits: Tensor, attention_mask: Tensor,
                    n_visit_slots: int, visit_times: Tensor | None = None,
                    visit_mask: Tensor | None = None, timed: Tensor | None = None) -> Tensor:
        """What each code token adds to ``w``: ``beta_c log((k + 1) / k)`` for the ``k``-th
        occurrence of its code, plus ``rho_c exp(-r_v / tau)`` with ``recency``.

        The parameters are :meth:`forward`'s. Returns a Tensor of shape (B, L, width),
        zero at tokens that are not counted ([CLS], [SEP], padding); :meth:`forward` sums
        it per visit and over the visits so far.
        """
        counted = attention_mask.bool() & (codes >= self.n_special)
        rank = occurrence_rank(codes, counted).to(self.code_weight.weight.dtype)
        step = torch.where(counted, torch.log1p(1.0 / rank.clamp_min(1.0)), torch.zeros_like(rank))
        contrib = self.code_weight(codes.long()) * step[..., None]  # (B, L, width)
        if self.recent_weight is not None:
            if visit_times is None or visit_mask is None or timed is None:
                raise ValueError("the wide path's recent code counts need the batch's "
                                 "visit_times, visit_mask and which tokens have a time")
            # each token's exp(-r_v / tau), from the exact times in float32
            decay = decay_weights(visit_times, visit_mask, (self.recency,))[..., 0]
            slot = visits.long().clamp(0, n_visit_slots - 1)
            decay = torch.gather(decay, 1, slot) * (counted & timed.bool())
            contrib = contrib + self.recent_weight(codes.long()) * decay.to(contrib.dtype)[..., None]
        return contrib

    def forward(self, codes: Tensor, visits: Tensor, attention_mask: Tensor, n_visit_slots: int,
                index_age: Tensor | None = None, visit_times: Tensor | None = None,
                visit_mask: Tensor | None = None, timed: Tensor | None = None) -> Tensor:
        """The wide term of every visit.

        Parameters
        ----------
        codes, visits : Tensor of shape (B, L), integer
            Token ids and the visit each token belongs to.
        attention_mask : Tensor of shape (B, L), bool
            Real tokens.
        n_visit_slots : int
            ``V``, the number of visit slots of the batch.
        index_age : Tensor of shape (B,), optional
            Age at the prediction time in years; no age term without it.
        visit_times, visit_mask : Tensor of shape (B, V), optional
            Years from each visit to the prediction time, and the real visits: needed
            by the tempo covariates (``scales``) and the recent counts (``recency``).
        timed : Tensor of shape (B, L), bool, optional
            Tokens with a time (not static codes): needed by the recent counts.

        Returns
        -------
        Tensor of shape (B, V), or (B, V, n_outputs)
            ``w(t)`` for every visit slot (the value of the last real visit repeats
            into padding slots).
        """
        contrib = self.token_terms(codes, visits, attention_mask, n_visit_slots, visit_times,
                                   visit_mask, timed)
        batch, width = codes.shape[0], contrib.shape[-1]
        per_visit = contrib.new_zeros(batch, n_visit_slots, width)
        slot = visits.long().clamp(0, n_visit_slots - 1)[..., None].expand(-1, -1, width)
        per_visit.scatter_add_(1, slot, contrib)
        out = torch.cumsum(per_visit, dim=1)
        z = (out.new_zeros(batch) if index_age is None
             else (index_age.to(out.dtype) - self.age_mean) / self.age_scale)
        n_visits = torch.arange(1, n_visit_slots + 1, device=out.device, dtype=out.dtype)
        tempo = None
        if self.scales:
            if visit_times is None or visit_mask is None:
                raise ValueError("the wide path's tempo covariates need the batch's visit_times "
                                 "(the years from each visit to the prediction time) and "
                                 "visit_mask")
            tempo = torch.cumsum(decay_weights(visit_times, visit_mask, self.scales), dim=1)
        covariates = covariate_matrix(z[:, None].expand(batch, n_visit_slots),
                                      n_visits[None, :].expand(batch, n_visit_slots),
                                      None if tempo is None else tempo.to(out.dtype))
        out = out + self.covariate_weight(covariates)
        return out.squeeze(-1) if self.n_outputs is None else out


def wide_scales_of(module: nn.Module) -> list[float] | None:
    """The time scales of ``module.wide``'s tempo covariates (a list, as saved with a model), or None."""
    wide = getattr(module, "wide", None)
    return None if wide is None or not wide.scales else [float(s) for s in wide.scales]


def wide_recency_of(module: nn.Module) -> float | None:
    """The time scale of ``module.wide``'s recent code counts (as saved with a model), or None."""
    wide = getattr(module, "wide", None)
    return None if wide is None else wide.recency
