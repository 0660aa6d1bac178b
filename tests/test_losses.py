"""Tests for survbehrt.losses against brute-force references."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from survbehrt.losses import (
    DiscreteTimeNLL,
    HybridSurvivalLoss,
    PairwiseRankingLoss,
    SurvivalLossOutput,
    discrete_time_nll,
    hybrid_survival_loss,
    pairwise_ranking_loss,
)
from survbehrt.survival import discretize


def _sigmoid(a):
    return 1.0 / (1.0 + math.exp(-a))


def _likelihood_reference(logits, time, event, cuts):
    """Product of probabilities from raw times, one subject and one bin at a time.

    A bin counts as survived only if the subject was observed all the way
    through it; the event bin contributes h; nothing else contributes.
    """
    n, n_bins = logits.shape
    nll = []
    for i in range(n):
        lik = 1.0
        for k in range(n_bins):
            h = _sigmoid(float(logits[i, k]))
            lo, hi = cuts[k], cuts[k + 1]
            in_bin = time[i] <= hi and (time[i] > lo or k == 0)
            if event[i] and in_bin:
                lik *= h
                break
            if time[i] >= hi:
                lik *= 1.0 - h
            else:
                break
        nll.append(-math.log(lik))
    return np.array(nll)


def _case(seed, n=60, n_bins=5):
    """Random small case with events and censoring in every bin, on edges and past the end."""
    rng = np.random.default_rng(seed)
    cuts = np.concatenate([[0.0], np.sort(rng.uniform(0.5, 5.0, n_bins))])
    per_bin = [rng.uniform(cuts[k], cuts[k + 1], 4) for k in range(n_bins)]
    time = np.concatenate(per_bin + [cuts, [0.0, cuts[-1] + 1.0], rng.uniform(0, 6, n)])
    event = np.tile([True, False], time.shape[0] // 2 + 1)[: time.shape[0]]
    rng.shuffle(event)
    # make sure each bin holds a censored subject
    event[: 4 * n_bins : 4] = False
    logits = rng.normal(0, 2, size=(time.shape[0], n_bins))
    return logits, time, event, cuts


@pytest.mark.parametrize("seed", range(5))
def test_nll_matches_product_of_probabilities(seed):
    logits, time, event, cuts = _case(seed)
    idx, ev = discretize(time, event, cuts)
    # censoring really does occur in every bin
    assert set(idx[~ev]) >= set(range(len(cuts) - 1))
    ref = _likelihood_reference(logits, time, event, cuts)
    lt = torch.tensor(logits)
    per_row = discrete_time_nll(lt, torch.tensor(idx), torch.tensor(ev), reduction="none")
    np.testing.assert_allclose(per_row.numpy(), ref, rtol=1e-10, atol=1e-12)
    mean = discrete_time_nll(lt, torch.tensor(idx), torch.tensor(ev))
    assert mean.item() == pytest.approx(ref.mean(), rel=1e-10)
    total = DiscreteTimeNLL(reduction="sum")(lt, torch.tensor(idx), torch.tensor(ev))
    assert total.item() == pytest.approx(ref.sum(), rel=1e-10)
    # weights: weighted mean
    w = np.random.default_rng(seed).uniform(0.1, 2.0, ref.shape[0])
    weighted = discrete_time_nll(lt, torch.tensor(idx), torch.tensor(ev), weight=torch.tensor(w))
    assert weighted.item() == pytest.approx((w * ref).sum() / w.sum(), rel=1e-10)


def test_nll_censored_only_batch_is_nonzero():
    logits = torch.zeros(3, 4, requires_grad=True)
    loss = discrete_time_nll(logits, torch.tensor([1, 2, 4]), torch.tensor([False, False, False]))
    assert loss.item() == pytest.approx((1 + 2 + 4) * math.log(2.0) / 3)
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_nll_gradcheck_float64():
    logits, time, event, cuts = _case(11, n=10, n_bins=4)
    idx, ev = discretize(time, event, cuts)
    x = torch.tensor(logits, requires_grad=True)
    w = torch.rand(x.shape[0], dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(
        lambda a: discrete_time_nll(a, torch.tensor(idx), torch.tensor(ev), weight=w), (x,)
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([-50.0, 50.0, 0.0, -49.5, 49.5]), min_size=12, max_size=12),
    st.lists(st.integers(0, 3), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_losses_finite_for_extreme_logits(values, idx, ev):
    logits = torch.tensor(values, dtype=torch.float32).reshape(3, 4).requires_grad_(True)
    bin_idx = torch.tensor(idx)
    event = torch.tensor(ev)
    out = hybrid_survival_loss(logits, bin_idx, event, rank_weight=0.5)
    for part in (out.loss, out.nll, out.ranking):
        assert torch.isfinite(part)
    out.loss.backward()
    assert torch.isfinite(logits.grad).all()
    soft = pairwise_ranking_loss(logits.detach(), bin_idx, event, form="softplus")
    assert torch.isfinite(soft)


# ------------------------------------------------------------------ ranking


def _ranking_reference(logits, idx, event, sigma, form, groups=None):
    n, n_bins = logits.shape
    cif = np.zeros((n, n_bins))
    for i in range(n):
        s = 1.0
        for k in range(n_bins):
            s *= 1.0 - _sigmoid(float(logits[i, k]))
            cif[i, k] = 1.0 - s
    total, pairs = 0.0, 0
    for i in range(n):
        for j in range(n):
            if not event[i]:
                continue
            if groups is not None and groups[i] == groups[j]:
                continue
            if idx[j] > idx[i] or (idx[j] == idx[i] and not event[j]):
                z = -(cif[i, idx[i]] - cif[j, idx[i]]) / sigma
                total += math.exp(z) if form == "exp" else math.log1p(math.exp(z))
                pairs += 1
    return total / max(pairs, 1), pairs


@pytest.mark.parametrize("form", ["exp", "softplus"])
@pytest.mark.parametrize("seed", range(4))
def test_ranking_matches_double_loop(form, seed):
    rng = np.random.default_rng(seed)
    n, n_bins = 25, 4
    logits = rng.normal(0, 1.5, size=(n, n_bins))
    event = rng.random(n) < 0.5
    # many ties; censored subjects may sit at K (survived the grid)
    idx = np.where(event, rng.integers(0, n_bins, n), rng.integers(0, n_bins + 1, n))
    sigma = 0.3
    ref, pairs = _ranking_reference(logits, idx, event, sigma, form)
    assert pairs > 0
    got = pairwise_ranking_loss(
        torch.tensor(logits), torch.tensor(idx), torch.tensor(event), sigma=sigma, form=form
    )
    assert got.item() == pytest.approx(ref, rel=1e-10)
    summed = PairwiseRankingLoss(sigma=sigma, form=form, reduction="sum")(
        torch.tensor(logits), torch.tensor(idx), torch.tensor(event)
    )
    assert summed.item() == pytest.approx(ref * pairs, rel=1e-10)
    groups = rng.integers(0, 6, n)
    ref_g, _ = _ranking_reference(logits, idx, event, sigma, form, groups=groups)
    got_g = pairwise_ranking_loss(
        torch.tensor(logits),
        torch.tensor(idx),
        torch.tensor(event),
        sigma=sigma,
        form=form,
        groups=torch.tensor(groups),
    )
    assert got_g.item() == pytest.approx(ref_g, rel=1e-10)


@pytest.mark.parametrize(
    "idx, event",
    [
        ([0, 1, 2], [False, False, False]),  # no event
        ([1, 1, 1], [True, True, True]),  # events tied in one bin
        ([1], [True]),  # single row
    ],
)
def test_ranking_no_pairs_is_zero_with_grad(idx, event):
    logits = torch.randn(len(idx), 3, requires_grad=True)
    loss = pairwise_ranking_loss(logits, torch.tensor(idx), torch.tensor(event))
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_ranking_penalises_misordering():
    # i has the event in bin 0, j survives; ordered right -> small loss
    good = torch.tensor([[3.0, 0.0], [-3.0, -3.0]])
    bad = torch.tensor([[-3.0, -3.0], [3.0, 0.0]])
    idx, ev = torch.tensor([0, 2]), torch.tensor([True, False])
    assert pairwise_ranking_loss(good, idx, ev) < pairwise_ranking_loss(bad, idx, ev)


# ------------------------------------------------------------------- hybrid


def test_hybrid_is_nll_plus_weighted_ranking():
    logits, time, event, cuts = _case(7, n=20, n_bins=4)
    idx, ev = discretize(time, event, cuts)
    lt, it, et = torch.tensor(logits), torch.tensor(idx), torch.tensor(ev)
    out = HybridSurvivalLoss(rank_weight=0.35, sigma=0.2)(lt, it, et)
    assert isinstance(out, SurvivalLossOutput)
    nll = discrete_time_nll(lt, it, et)
    rank = pairwise_ranking_loss(lt, it, et, sigma=0.2)
    assert torch.equal(out.nll, nll)
    assert torch.equal(out.ranking, rank)
    assert torch.equal(out.loss, nll + 0.35 * rank)
    assert torch.equal(out["loss"], out.loss)
    assert set(out.as_dict()) == {"loss", "nll", "ranking"}
    with pytest.raises(KeyError):
        out["other"]


# ----------------------------------------------------------------- landmark


def test_landmark_losses_equal_flattened_rows():
    rng = np.random.default_rng(5)
    batch, visits, n_bins = 4, 3, 5
    logits = torch.tensor(rng.normal(size=(batch, visits, n_bins)))
    mask = torch.tensor(rng.random((batch, visits)) < 0.7)
    mask[:, 0] = True
    event = torch.tensor(rng.random((batch, visits)) < 0.5)
    idx = torch.tensor(rng.integers(0, n_bins, (batch, visits)))
    # padded visits carry garbage targets, which must be ignored
    idx = torch.where(mask, idx, torch.full_like(idx, -7))
    flat_logits, flat_idx, flat_ev = logits[mask], idx[mask], event[mask]
    groups = torch.arange(batch)[:, None].expand(batch, visits)[mask]

    nll_3d = discrete_time_nll(logits, idx, event, mask=mask)
    nll_2d = discrete_time_nll(flat_logits, flat_idx, flat_ev)
    assert nll_3d.item() == pytest.approx(nll_2d.item(), rel=1e-12)
    none_3d = discrete_time_nll(logits, idx, event, mask=mask, reduction="none")
    assert none_3d.shape == (batch, visits)
    assert torch.all(none_3d[~mask] == 0)
    np.testing.assert_allclose(
        none_3d[mask].numpy(),
        discrete_time_nll(flat_logits, flat_idx, flat_ev, reduction="none").numpy(),
    )

    rank_3d = pairwise_ranking_loss(logits, idx, event, mask=mask)
    ref, _ = _ranking_reference(
        flat_logits.numpy(), flat_idx.numpy(), flat_ev.numpy(), 0.1, "exp", groups.numpy()
    )
    assert rank_3d.item() == pytest.approx(ref, rel=1e-10)

    out = HybridSurvivalLoss(rank_weight=0.5)(logits, idx, event, mask=mask)
    assert torch.equal(out.loss, out.nll + 0.5 * out.ranking)


def test_input_validation():
    logits = torch.zeros(3, 4)
    with pytest.raises(TypeError, match="integer"):
        discrete_time_nll(logits, torch.tensor([True, False, True]), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="shape"):
        discrete_time_nll(logits, torch.tensor([0, 1]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="out of range"):
        discrete_time_nll(logits, torch.tensor([0, 4, 1]), torch.tensor([True, True, False]))
    with pytest.raises(ValueError, match="out of range"):
        discrete_time_nll(logits, torch.tensor([0, 5, 1]), torch.tensor([False, False, False]))
    with pytest.raises(ValueError):
        pairwise_ranking_loss(logits, torch.tensor([0, 1, 2]), torch.ones(3), form="hinge")
    with pytest.raises(ValueError):
        discrete_time_nll(logits, torch.tensor([0, 1, 2]), torch.ones(3), reduction="avg")
