"""Tests for survbehrt.losses against references written from the definitions (plain loops)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from loss_references import cumhaz_loop, ranking_reference
from scipy.integrate import trapezoid
from sksurv.metrics import concordance_index_censored

from survbehrt.losses import (
    HybridSurvivalLoss,
    PairwiseRankingLoss,
    RankingMemory,
    SurvivalLossOutput,
    SurvivalNLL,
    comparable_pairs,
    hybrid_survival_loss,
    pairwise_ranking_loss,
    survival_nll,
)


def _nll_reference(logits, time, event, cuts):
    """-log L per subject: H(t) - delta log(rate at t), censored at the last edge."""
    out = []
    for a, t, e in zip(logits, time, event):
        if t > cuts[-1]:
            t, e = cuts[-1], False
        h, rate = cumhaz_loop(a, cuts, t)
        out.append(h - (math.log(rate) if e else 0.0))
    return np.array(out)


def _case(seed, n=60, n_bins=5):
    """Random small case with events and censoring in every bin, on edges and past the end."""
    rng = np.random.default_rng(seed)
    cuts = np.concatenate([[0.0], np.sort(rng.uniform(0.5, 5.0, n_bins))])
    per_bin = [rng.uniform(cuts[k], cuts[k + 1], 4) for k in range(n_bins)]
    time = np.concatenate(per_bin + [cuts, [0.0, cuts[-1] + 1.0], rng.uniform(0, 6, n)])
    event = np.tile([True, False], time.shape[0] // 2 + 1)[: time.shape[0]]
    rng.shuffle(event)
    event[: 4 * n_bins : 4] = False  # each bin holds a censored subject
    logits = rng.normal(0, 2, size=(time.shape[0], n_bins))
    return logits, time, event, cuts


# ------------------------------------------------------------------ likelihood


@pytest.mark.parametrize("seed", range(5))
def test_nll_matches_loop_reference(seed):
    logits, time, event, cuts = _case(seed)
    ref = _nll_reference(logits, time, event, cuts)
    got = survival_nll(torch.tensor(logits), torch.tensor(time), torch.tensor(event), cuts,
                       reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)
    mean = survival_nll(torch.tensor(logits), torch.tensor(time), torch.tensor(event), cuts)
    assert mean.item() == pytest.approx(ref.mean(), rel=1e-10)
    module = SurvivalNLL(cuts, reduction="sum")
    total = module(torch.tensor(logits), torch.tensor(time), torch.tensor(event))
    assert total.item() == pytest.approx(ref.sum(), rel=1e-10)


def test_nll_is_a_density_in_time():
    # an event's likelihood is a density: f(t) = lambda(t) S(t) integrates to 1 - S(c_K)
    rng = np.random.default_rng(1)
    cuts = np.array([0.0, 0.7, 1.5, 4.0])
    logits = torch.tensor(rng.normal(0, 1, size=(1, 3)))
    grid = np.linspace(0, 4.0, 400001)
    density = np.exp(-survival_nll(logits.expand(grid.shape[0], -1), torch.tensor(grid),
                                   torch.ones(grid.shape[0], dtype=torch.bool), cuts,
                                   reduction="none").numpy())
    mass = 1.0 - math.exp(-cumhaz_loop(logits[0].numpy(), cuts, 4.0)[0])
    # scipy's trapezoid: numpy has it only from 2.0 (the minimum supported numpy is 1.24)
    assert trapezoid(density, grid) == pytest.approx(mass, abs=1e-6)


def test_censoring_inside_a_bin_counts_for_the_time_observed():
    # one bin of width 2 and a constant hazard eta=1: censored at 0.5 -> H = 0.25,
    # the old "bin not observed through" rule gave 0 here
    a = torch.tensor([[math.log(math.expm1(1.0))]], dtype=torch.float64)
    for t in (0.5, 1.0, 2.0):
        nll = survival_nll(a, torch.tensor([t]), torch.tensor([False]), [0.0, 2.0])
        assert nll.item() == pytest.approx(t / 2.0, rel=1e-12)


def test_nll_censored_only_batch_is_nonzero():
    logits = torch.zeros(4, 3)
    loss = survival_nll(logits, torch.tensor([0.5, 1.5, 2.5, 3.0]), torch.zeros(4, dtype=torch.bool),
                        [0.0, 1.0, 2.0, 3.0])
    assert loss.item() > 0


def test_nll_gradcheck_float64():
    logits, time, event, cuts = _case(3, n=8, n_bins=4)
    x = torch.tensor(logits, requires_grad=True)
    w = torch.rand(len(time), dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a: survival_nll(a, torch.tensor(time), torch.tensor(event), cuts, weight=w), (x,)
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([-50.0, 50.0, 0.0, -49.5, 49.5, -120.0]), min_size=12, max_size=12),
    st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.5, 3.0, 9.0]), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_losses_finite_for_extreme_logits(values, times, ev):
    logits = torch.tensor(values, dtype=torch.float32).reshape(3, 4).requires_grad_(True)
    cuts = [0.0, 1.0, 2.0, 3.0, 4.0]
    out = hybrid_survival_loss(logits, torch.tensor(times), torch.tensor(ev), cuts, rank_weight=0.5)
    for part in (out.loss, out.nll, out.ranking):
        assert torch.isfinite(part)
    out.loss.backward()
    assert torch.isfinite(logits.grad).all()
    soft = pairwise_ranking_loss(logits.detach(), torch.tensor(times), torch.tensor(ev), cuts,
                                 form="softplus")
    assert torch.isfinite(soft)


# ------------------------------------------------------------------ ranking


@pytest.mark.parametrize("form", ["exp", "softplus"])
@pytest.mark.parametrize("seed", range(4))
def test_ranking_matches_double_loop(form, seed):
    logits, time, event, cuts = _case(seed, n=20)
    ref, pairs = ranking_reference(logits, time, event, cuts, 0.3, form)
    got = pairwise_ranking_loss(torch.tensor(logits), torch.tensor(time), torch.tensor(event),
                                cuts, sigma=0.3, form=form)
    assert pairs > 50
    assert got.item() == pytest.approx(ref, rel=1e-10)


def test_same_bin_censoring_before_the_event_is_not_a_pair():
    # the case: edges [0, 1, 2, 3], an event at 1.9 and a censoring at 1.1 share
    # bin 1, but the censored subject left before the event: not comparable
    cuts = [0.0, 1.0, 2.0, 3.0]
    t = torch.tensor([1.9, 1.1, 1.95, 1.9])
    e = torch.tensor([True, False, False, False])
    comparable = comparable_pairs(t, e, t, e)
    assert comparable[0].tolist() == [False, False, True, True]  # 1.95 later; 1.9 censored tie
    assert not comparable[1:].any()
    penalty = pairwise_ranking_loss(torch.zeros(4, 3), t, e, cuts, reduction="none")
    assert (penalty[0, 1] == 0) and (penalty[0, 2] > 0) and (penalty[0, 3] > 0)


@pytest.mark.parametrize("seed", range(3))
def test_comparable_pairs_are_harrells(seed):
    # the number of comparable pairs equals what scikit-survival's Harrell C counts
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 8, 40).astype(float)  # many ties
    event = rng.random(40) < 0.6
    event[0] = True
    c = comparable_pairs(torch.tensor(time), torch.tensor(event), torch.tensor(time),
                         torch.tensor(event))
    _, concordant, discordant, tied_risk, _ = concordance_index_censored(
        event, time, rng.normal(size=40)
    )
    assert int(c.sum()) == concordant + discordant + tied_risk


@pytest.mark.parametrize(
    "time, event",
    [([1.0, 2.0, 3.0], [False, False, False]), ([2.5, 2.5], [True, True]), ([2.0], [True])],
)
def test_ranking_no_pairs_is_zero_with_grad(time, event):
    logits = torch.zeros(len(time), 4, requires_grad=True)
    loss = pairwise_ranking_loss(logits, torch.tensor(time), torch.tensor(event), [0, 1, 2, 3, 4])
    assert loss.item() == 0.0
    loss.backward()


def test_ranking_penalises_misordering():
    cuts = [0.0, 1.0, 2.0, 3.0]
    t, e = torch.tensor([0.5, 2.5]), torch.tensor([True, False])
    right = torch.tensor([[2.0, 2.0, 2.0], [-3.0, -3.0, -3.0]])  # the early event has high risk
    assert pairwise_ranking_loss(right, t, e, cuts) < pairwise_ranking_loss(right.flip(0), t, e, cuts)


def test_ranking_with_reference_rows_matches_double_loop():
    logits, time, event, cuts = _case(7, n=10)
    n = len(time)
    cur = np.arange(n) < n // 2
    groups = np.arange(n) % 9  # some rows share a group
    ref, pairs = ranking_reference(
        np.concatenate([logits[cur], logits[~cur]]), np.concatenate([time[cur], time[~cur]]),
        np.concatenate([event[cur], event[~cur]]), cuts, 0.2, "exp",
        groups=np.concatenate([groups[cur], groups[~cur]]), n_current=int(cur.sum()),
    )
    reference = tuple(torch.tensor(x[~cur]) for x in (logits, time, event, groups))
    got = pairwise_ranking_loss(torch.tensor(logits[cur]), torch.tensor(time[cur]),
                                torch.tensor(event[cur]), cuts, sigma=0.2,
                                groups=torch.tensor(groups[cur]), reference=reference)
    assert pairs > 20
    assert got.item() == pytest.approx(ref, rel=1e-10)


def test_ranking_memory_ring_buffer():
    mem = RankingMemory(5)
    assert mem.view() is None
    for start in (0, 3, 6):
        ids = torch.arange(start, start + 3)
        mem.push(ids[:, None].float().expand(3, 2), ids.float(), ids % 2 == 0, ids)
    logits, time, event, groups = mem.view()
    assert len(mem) == 5
    assert sorted(groups.tolist()) == [4, 5, 6, 7, 8]  # the five most recent rows
    assert torch.equal(time, groups.float()) and not logits.requires_grad


def test_memory_used_in_training_only():
    cuts = [0.0, 1.0, 2.0]
    loss = HybridSurvivalLoss(cuts, memory_size=8)
    a = torch.zeros(3, 2)
    t, e, g = torch.tensor([0.5, 1.5, 1.8]), torch.tensor([True, False, True]), torch.arange(3)
    loss.train()
    loss(a, t, e, groups=g)
    assert len(loss.memory) == 3
    loss.eval()
    loss(a, t, e, groups=g + 3)
    assert len(loss.memory) == 3  # validation batches are not remembered


@pytest.mark.parametrize("module", ["hybrid", "ranking"])
def test_memory_reaches_the_ranking_term(module):
    # the second batch is ranked against the first one's rows (detached, as they were)
    logits, time, event, cuts = _case(4, n=16)
    n = len(time)
    groups = np.arange(n)
    first = np.arange(n) < n // 2
    loss = (HybridSurvivalLoss(cuts, rank_weight=1.0, sigma=0.3, memory_size=n) if module == "hybrid"
            else PairwiseRankingLoss(cuts, sigma=0.3, memory_size=n)).train()
    for rows in (first, ~first):
        out = loss(*(torch.tensor(x[rows]) for x in (logits, time, event)),
                   groups=torch.tensor(groups[rows]))
    got = out.ranking if module == "hybrid" else out
    order = np.concatenate([np.flatnonzero(~first), np.flatnonzero(first)])
    ref, pairs = ranking_reference(logits[order], time[order], event[order], cuts, 0.3, "exp",
                                   groups=groups[order], n_current=int((~first).sum()))
    alone, _ = ranking_reference(logits[~first], time[~first], event[~first], cuts, 0.3, "exp")
    assert pairs > 30 and abs(ref - alone) > 1e-3  # the memory changes the term
    assert got.item() == pytest.approx(ref, rel=1e-10)


def test_memory_counters_reset_with_the_buffer():
    mem = RankingMemory(4)
    mem.push(torch.zeros(3, 2), torch.ones(3), torch.ones(3, dtype=torch.bool), torch.arange(3))
    mem.push(torch.zeros(2, 5), torch.ones(2), torch.ones(2, dtype=torch.bool), torch.arange(2))
    logits, _, _, groups = mem.view()  # a new grid: only the rows pushed on it
    assert len(mem) == 2 and logits.shape == (2, 5) and groups.tolist() == [0, 1]
    mem.clear()
    assert len(mem) == 0 and mem.view() is None


def test_hybrid_is_nll_plus_weighted_ranking():
    logits, time, event, cuts = _case(2, n=10)
    a, t, e = torch.tensor(logits), torch.tensor(time), torch.tensor(event)
    out = hybrid_survival_loss(a, t, e, cuts, rank_weight=0.7, sigma=0.5)
    assert isinstance(out, SurvivalLossOutput)
    nll = survival_nll(a, t, e, cuts)
    rank = pairwise_ranking_loss(a, t, e, cuts, sigma=0.5)
    assert out.nll.item() == pytest.approx(nll.item())
    assert out.ranking.item() == pytest.approx(rank.item())
    assert out["loss"].item() == pytest.approx(nll.item() + 0.7 * rank.item())
    assert set(out.as_dict()) == {"loss", "nll", "ranking"}
    module = PairwiseRankingLoss(cuts, sigma=0.5).eval()
    assert module(a, t, e).item() == pytest.approx(rank.item())


# ----------------------------------------------------------------- landmark


def test_landmark_losses_equal_flattened_rows():
    rng = np.random.default_rng(5)
    batch, visits, n_bins = 4, 3, 5
    cuts = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    logits = torch.tensor(rng.normal(size=(batch, visits, n_bins)))
    mask = torch.tensor(rng.random((batch, visits)) < 0.7)
    mask[:, 0] = True
    event = torch.tensor(rng.random((batch, visits)) < 0.5)
    time = torch.tensor(rng.uniform(0, 5, (batch, visits)))
    # padded visits carry garbage targets, which must be ignored
    time = torch.where(mask, time, torch.full_like(time, -7.0))
    flat_logits, flat_t, flat_ev = logits[mask], time[mask], event[mask]
    groups = torch.arange(batch)[:, None].expand(batch, visits)[mask]

    nll_3d = survival_nll(logits, time, event, cuts, mask=mask)
    nll_2d = survival_nll(flat_logits, flat_t, flat_ev, cuts)
    assert nll_3d.item() == pytest.approx(nll_2d.item(), rel=1e-12)
    none_3d = survival_nll(logits, time, event, cuts, mask=mask, reduction="none")
    assert none_3d.shape == (batch, visits)
    assert torch.all(none_3d[~mask] == 0)
    np.testing.assert_allclose(
        none_3d[mask].numpy(), _nll_reference(flat_logits.numpy(), flat_t.numpy(),
                                              flat_ev.numpy(), cuts), rtol=1e-10,
    )
    rank_3d = pairwise_ranking_loss(logits, time, event, cuts, mask=mask)
    ref, _ = ranking_reference(flat_logits.numpy(), flat_t.numpy(), flat_ev.numpy(), cuts, 0.1,
                                "exp", groups.numpy())
    assert rank_3d.item() == pytest.approx(ref, rel=1e-10)


def test_input_validation():
    logits = torch.zeros(3, 4)
    cuts = [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(TypeError, match="boolean"):
        survival_nll(logits, torch.tensor([True, False, True]), torch.tensor([1.0, 2, 3]), cuts)
    with pytest.raises(ValueError, match="shape"):
        survival_nll(logits, torch.tensor([0.0, 1.0]), torch.tensor([True, False]), cuts)
    with pytest.raises(ValueError, match="non-negative"):
        survival_nll(logits, torch.tensor([0.0, -1.0, 1.0]), torch.ones(3), cuts)
    with pytest.raises(ValueError, match="edges"):
        survival_nll(logits, torch.tensor([0.0, 1.0, 1.0]), torch.ones(3), cuts[:-1])
    with pytest.raises(ValueError):
        pairwise_ranking_loss(logits, torch.tensor([0.0, 1, 2]), torch.ones(3), cuts, form="hinge")
    with pytest.raises(ValueError):
        survival_nll(logits, torch.tensor([0.0, 1, 2]), torch.ones(3), cuts, reduction="avg")
