"""Pre-training objectives: MLM masking, next-visit multi-hot targets, and their loss (with TTE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import MASK_ID, N_SPECIAL

__all__ = [
    "IGNORE_INDEX",
    "mask_tokens",
    "next_visit_targets",
    "patient_code_targets",
    "pretraining_loss",
]

#: Label of the tokens that the MLM loss ignores (``cross_entropy``'s default).
IGNORE_INDEX = -100


def mask_tokens(
    codes: Tensor,
    attention_mask: Tensor,
    vocab_size: int,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT-style masking of real code tokens (80% ``[MASK]``, 10% random code, 10% kept).

    Each real code token (``id >= N_SPECIAL`` and ``attention_mask``) is chosen
    independently with probability ``mask_prob``; special and padding tokens are
    never chosen nor changed. Of the chosen tokens, 80% become ``[MASK]``, 10% a
    uniformly random real code id, 10% stay unchanged.

    Parameters
    ----------
    codes : torch.Tensor of shape (B, L)
        Token ids (long).
    attention_mask : torch.Tensor of shape (B, L)
        Bool, True for real tokens.
    vocab_size : int
        Number of token ids; random replacements are drawn from
        ``N_SPECIAL .. vocab_size - 1``.
    mask_prob : float, default=0.15
        Probability that a code token is chosen.
    generator : torch.Generator, optional
        Random source (for reproducible masking); its device is used for the draws.

    Returns
    -------
    input_codes : torch.Tensor of shape (B, L)
        The corrupted codes (a new tensor; ``codes`` is not modified).
    labels : torch.Tensor of shape (B, L)
        The original id at chosen tokens, ``IGNORE_INDEX`` (-100) elsewhere.

    Raises
    ------
    ValueError
        If ``mask_prob`` is not in [0, 1] or ``vocab_size <= N_SPECIAL``.
    """
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob!r}")
    if vocab_size <= N_SPECIAL:
        raise ValueError(f"vocab_size must exceed N_SPECIAL={N_SPECIAL}, got {vocab_size}")
    device = codes.device
    draw_device = generator.device if generator is not None else device
    shape = codes.shape
    # Two uniforms per token: one chooses, one splits 80/10/10 (independent).
    u = torch.rand((2, *shape), generator=generator, device=draw_device).to(device)
    random_ids = torch.randint(
        N_SPECIAL, vocab_size, shape, generator=generator, device=draw_device
    ).to(device=device, dtype=codes.dtype)
    chosen = (u[0] < mask_prob) & (codes >= N_SPECIAL) & attention_mask.bool()
    labels = torch.where(chosen, codes, IGNORE_INDEX)
    input_codes = torch.where(chosen & (u[1] < 0.8), MASK_ID, codes)
    input_codes = torch.where(chosen & (u[1] >= 0.8) & (u[1] < 0.9), random_ids, input_codes)
    return input_codes, labels


def next_visit_targets(
    codes: Tensor, visits: Tensor, visit_mask: Tensor, vocab_size: int
) -> tuple[Tensor, Tensor]:
    """Multi-hot targets of the next visit's codes, for every visit.

    Parameters
    ----------
    codes : torch.Tensor of shape (B, L)
        Token ids (padding has id 0).
    visits : torch.Tensor of shape (B, L)
        Visit index of each token.
    visit_mask : torch.Tensor of shape (B, V)
        Bool, True for real visits.
    vocab_size : int
        Target width.

    Returns
    -------
    targets : torch.Tensor of shape (B, V, vocab_size)
        Float; ``targets[b, t, c] = 1`` iff code ``c`` (a real code,
        ``c >= N_SPECIAL``) occurs in visit ``t + 1`` of patient ``b``.
    target_mask : torch.Tensor of shape (B, V)
        Bool, True where visits ``t`` and ``t + 1`` both exist.
    """
    b, num_visits = visit_mask.shape
    n_rows = b * num_visits
    # token of visit v feeds row v - 1; rows outside [0, V) and non-code tokens go to
    # a dummy row n_rows that is dropped (one scatter, no loop).
    keep = (codes >= N_SPECIAL) & (visits >= 1) & (visits <= num_visits)
    base = torch.arange(b, device=codes.device).unsqueeze(1) * num_visits
    rows = torch.where(keep, base + visits - 1, n_rows).reshape(-1)
    cols = torch.where(keep, codes, 0).reshape(-1)
    targets = torch.zeros(n_rows + 1, vocab_size, device=codes.device)
    targets.index_put_((rows, cols), targets.new_ones(()))
    target_mask = torch.zeros_like(visit_mask, dtype=torch.bool)
    target_mask[:, :-1] = visit_mask[:, :-1] & visit_mask[:, 1:]
    return targets[:n_rows].view(b, num_visits, vocab_size), target_mask


def patient_code_targets(codes: Tensor, vocab_size: int) -> Tensor:
    """Multi-hot targets of every real code in each patient's history (the [CLS] objective).

    Parameters
    ----------
    codes : torch.Tensor of shape (B, L)
        Unmasked token ids (padding has id 0).
    vocab_size : int
        Target width.

    Returns
    -------
    torch.Tensor of shape (B, vocab_size)
        Float; ``targets[b, c] = 1`` iff real code ``c`` (``c >= N_SPECIAL``) occurs
        anywhere in patient ``b``'s tokens.

    Examples
    --------
    >>> import torch
    >>> patient_code_targets(torch.tensor([[1, 6, 5, 2, 6, 2, 0]]), 8).tolist()
    [[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]]
    """
    targets = torch.zeros(codes.shape[0], vocab_size, device=codes.device)
    targets.scatter_(1, codes.long(), 1.0)
    targets[:, :N_SPECIAL] = 0.0  # padding and special tokens are not codes
    return targets


def pretraining_loss(
    outputs: dict[str, Tensor],
    mlm_labels: Tensor | None = None,
    next_visit_targets: Tensor | None = None,
    next_visit_mask: Tensor | None = None,
    cls_targets: Tensor | None = None,
    tte: Tensor | None = None,
) -> dict[str, Tensor | None]:
    """Loss of the pre-training objectives present in ``outputs``.

    - MLM: cross-entropy over the chosen tokens (``ignore_index=-100``); 0 when a
      batch has no chosen token (rather than NaN).
    - Next visit: binary cross-entropy with logits, averaged over the vocabulary
      and then over the valid visits (``next_visit_mask``); 0 without any.
    - Time to event (``tte_logits``): the piecewise-constant hazard likelihood of the
      time to each task's next occurrence (see :mod:`survbehrt.model.tte`).
    - [CLS]: binary cross-entropy with logits of the patient's codes
      (:func:`patient_code_targets`) from the ``[CLS]`` token, averaged over the
      vocabulary and the patients.

    Parameters
    ----------
    outputs : dict
        Output of ``BEHRTPretrainingModule``: ``mlm_logits`` (B, L, vocab), or
        (n_chosen, vocab) for the labelled tokens alone in row-major order (the module's
        ``mlm_chosen``), and/or ``next_visit_logits`` (B, V, vocab).
    mlm_labels : torch.Tensor of shape (B, L), optional
        From :func:`mask_tokens`; required when ``mlm_logits`` is present.
    next_visit_targets : torch.Tensor of shape (B, V, vocab), optional
        From :func:`next_visit_targets`; required with ``next_visit_logits``.
    next_visit_mask : torch.Tensor of shape (B, V), optional
        Valid visits; default all visits.
    cls_targets : torch.Tensor of shape (B, vocab), optional
        From :func:`patient_code_targets`; required with ``cls_logits``.
    tte : torch.Tensor, optional
        The time-to-event part, required with ``tte_logits``: the likelihood of
        ``outputs``' ``tte_logits`` / ``tte_time`` / ``tte_event``, computed by the caller
        with :func:`survbehrt.losses.survival_nll` (the model layer does not import the
        losses; see ``PretrainingCriterion``).

    Returns
    -------
    dict
        ``loss`` (the sum of the present parts), ``mlm``, ``next_visit`` and ``cls``
        (scalar tensors, or None when that objective is absent).

    Raises
    ------
    ValueError
        If an objective's logits are present without its targets, or no
        objective is present.
    """
    mlm = next_visit = None
    if "mlm_logits" in outputs:
        if mlm_labels is None:
            raise ValueError("mlm_labels is required when outputs has 'mlm_logits'")
        logits, labels = outputs["mlm_logits"], mlm_labels.reshape(-1)
        if logits.dim() == 2:  # the chosen tokens' rows only (``mlm_chosen``)
            labels = labels[labels != IGNORE_INDEX]
        # sum / count instead of mean: a batch without any chosen token gives 0, not NaN.
        total = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels,
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        mlm = total / (mlm_labels != IGNORE_INDEX).sum().clamp_min(1)
    if "next_visit_logits" in outputs:
        if next_visit_targets is None:
            raise ValueError("next_visit_targets is required when outputs has 'next_visit_logits'")
        logits = outputs["next_visit_logits"]
        per_visit = F.binary_cross_entropy_with_logits(
            logits, next_visit_targets.to(logits.dtype), reduction="none"
        ).mean(dim=-1)
        if next_visit_mask is None:
            next_visit = per_visit.mean()
        else:
            weight = next_visit_mask.to(per_visit.dtype)
            next_visit = (per_visit * weight).sum() / weight.sum().clamp_min(1)
    cls = None
    if "cls_logits" in outputs:
        if cls_targets is None:
            raise ValueError("cls_targets is required when outputs has 'cls_logits'")
        logits = outputs["cls_logits"]
        cls = F.binary_cross_entropy_with_logits(logits, cls_targets.to(logits.dtype))
    if "tte_logits" in outputs and tte is None:
        raise ValueError("tte (the likelihood of 'tte_logits') is required when outputs has them")
    parts = [p for p in (mlm, next_visit, cls, tte) if p is not None]
    if not parts:
        raise ValueError("outputs has no pre-training logits ('mlm_logits', 'next_visit_logits', "
                         "'tte_logits')")
    return {"loss": sum(parts[1:], parts[0]), "mlm": mlm, "next_visit": next_visit, "cls": cls,
            "tte": tte}
