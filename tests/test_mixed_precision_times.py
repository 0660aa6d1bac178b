"""Follow-up times keep their float32 value when the logits are bfloat16 (mixed precision).

bf16 holds 8 significant bits: near 10 years its steps are 0.0625 (23 days), so a loss
that cast the times to the logits' dtype would move events across grid edges and turn
comparable pairs into ties. Here the logits come out of a real layer under CPU autocast
(bf16) and hold values bf16 represents exactly, so the float32 run sees the very same
numbers and only the handling of the times can differ.
"""

import numpy as np
import pytest
import torch

from survbehrt.losses import (
    HybridSurvivalLoss,
    hybrid_survival_loss,
    pairwise_ranking_loss,
    survival_nll,
)
from survbehrt.survival import cumulative_hazard_at

CUTS = np.array([0.0, 2.0, 5.0, 9.99, 10.01, 10.5, 12.0])


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    # times a few days apart around 10 years (bf16 rounds them all to 9.9375 / 10.0 / 10.0625),
    # on both sides of the edges 9.99 and 10.01, then a spread of others
    close = np.array([9.98, 9.985, 9.995, 10.0, 10.005, 10.02, 10.03, 10.04])
    time = np.concatenate([close, close + 0.002, rng.uniform(1.0, 12.0, 24)]).astype(np.float32)
    event = np.tile([True, False, True, True, False, True, False, True], 5)[: time.size]
    n_bins = CUTS.size - 1
    weight = torch.tensor(rng.normal(0.0, 1.0, (time.size, n_bins)), dtype=torch.float32)
    weight = weight.to(torch.bfloat16).to(torch.float32)  # values bf16 holds exactly
    return torch.tensor(time), torch.tensor(event), weight


def _logits(weight, bf16):
    # the identity through a linear layer: under autocast the output is bf16, same values
    eye = torch.eye(weight.shape[0])
    if not bf16:
        return torch.nn.functional.linear(eye, weight.T)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.nn.functional.linear(eye, weight.T)
    assert out.dtype == torch.bfloat16
    return out


def _under_autocast(fn, *args, **kwargs):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn(*args, **kwargs)


def test_the_batch_would_be_moved_by_bf16():
    # the premise: rounding these times to bf16 changes bins and merges distinct times
    time, _, _ = _batch()
    rounded = time.to(torch.bfloat16).to(torch.float32)
    bins = np.searchsorted(CUTS[1:], time.numpy(), side="left")
    assert (np.searchsorted(CUTS[1:], rounded.numpy(), side="left") != bins).any()
    assert torch.unique(rounded).numel() < torch.unique(time).numel()


def test_likelihood_under_bf16_equals_float32():
    time, event, weight = _batch()
    exact = survival_nll(_logits(weight, False), time, event, CUTS, reduction="none")
    mixed = _under_autocast(survival_nll, _logits(weight, True), time, event, CUTS,
                            reduction="none")
    # every event keeps its interval: each row's -log L is the float32 one
    np.testing.assert_allclose(mixed.float().numpy(), exact.numpy(), rtol=1e-5)
    assert mixed.dtype == torch.float32
    mean = _under_autocast(survival_nll, _logits(weight, True), time, event, CUTS)
    assert mean.item() == pytest.approx(exact.mean().item(), rel=1e-3)


def test_comparable_pairs_and_ranking_under_bf16_equal_float32():
    time, event, weight = _batch()
    exact = pairwise_ranking_loss(_logits(weight, False), time, event, CUTS, reduction="none")
    mixed = _under_autocast(pairwise_ranking_loss, _logits(weight, True), time, event, CUTS,
                            reduction="none")
    assert torch.equal(mixed != 0, exact != 0)  # the same comparable pairs
    assert int((exact != 0).sum()) > 100
    total = hybrid_survival_loss(_logits(weight, False), time, event, CUTS, rank_weight=0.5)
    mixed_total = _under_autocast(hybrid_survival_loss, _logits(weight, True), time, event, CUTS,
                                  rank_weight=0.5)
    assert mixed_total.loss.item() == pytest.approx(total.loss.item(), rel=1e-3)


def test_ranking_memory_keeps_float32_times():
    time, event, weight = _batch()
    half = time.shape[0] // 2
    groups = torch.arange(time.shape[0])
    results = []
    for bf16 in (False, True):
        loss = HybridSurvivalLoss(CUTS, rank_weight=1.0, memory_size=64).train()
        logits = _logits(weight, bf16)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss(logits[:half], time[:half], event[:half], groups=groups[:half])
            results.append(loss(logits[half:], time[half:], event[half:], groups=groups[half:]))
        assert torch.equal(loss.memory.view()[1], time)  # stored as given, not rounded
    assert results[1].ranking.item() == pytest.approx(results[0].ranking.item(), rel=1e-3)


def test_curves_of_bf16_logits_are_summed_in_float32():
    time, _, weight = _batch()
    exact = cumulative_hazard_at(weight.double(), CUTS, time.double())
    mixed = cumulative_hazard_at(_logits(weight, True), CUTS, time)
    np.testing.assert_allclose(mixed.numpy(), exact.numpy(), rtol=1e-5)
    assert mixed.dtype == torch.float32
