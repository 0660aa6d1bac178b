"""The wide path: occurrence ranks and the additive log-count term, against plain loops."""

import math

import numpy as np
import pytest
import torch

from survbehrt.model.wide import WideTerm, occurrence_rank


def _batch(seed=0, batch=5, length=30, vocab=12, n_special=5):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, vocab, (batch, length))
    lengths = rng.integers(5, length + 1, batch)
    mask = np.arange(length)[None, :] < lengths[:, None]
    visits = np.sort(rng.integers(0, 6, (batch, length)), axis=1)
    codes[~mask] = 0
    return (torch.tensor(codes), torch.tensor(visits), torch.tensor(mask), n_special)


@pytest.mark.parametrize("seed", range(3))
def test_occurrence_rank_matches_loop(seed):
    codes, _, mask, n_special = _batch(seed)
    counted = mask & (codes >= n_special)
    rank = occurrence_rank(codes, counted)
    for b in range(codes.shape[0]):
        seen = {}
        for i in range(codes.shape[1]):
            if counted[b, i]:
                c = int(codes[b, i])
                seen[c] = seen.get(c, 0) + 1
                assert rank[b, i] == seen[c]
            else:
                assert rank[b, i] == 0


@pytest.mark.parametrize("seed", range(3))
def test_wide_term_is_sum_of_log_counts_up_to_each_visit(seed):
    codes, visits, mask, n_special = _batch(seed)
    wide = WideTerm(vocab_size=12, n_special=n_special, age_mean=50.0, age_scale=10.0)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        wide.code_weight.weight.copy_(torch.tensor(rng.normal(size=(12, 1))))
        wide.covariate_weight.weight.copy_(torch.tensor([[0.3, -0.1, 0.2]]))
    index_age = torch.tensor(rng.uniform(30, 80, codes.shape[0]), dtype=torch.float32)
    out = wide(codes, visits, mask, 6, index_age=index_age).detach()
    beta = wide.code_weight.weight[:, 0].detach().numpy()
    for b in range(codes.shape[0]):
        z = (float(index_age[b]) - 50.0) / 10.0
        for t in range(6):
            counts = {}
            for i in range(codes.shape[1]):
                c = int(codes[b, i])
                if mask[b, i] and c >= n_special and int(visits[b, i]) <= t:
                    counts[c] = counts.get(c, 0) + 1
            expected = (sum(beta[c] * math.log1p(n) for c, n in counts.items())
                        + 0.3 * z - 0.1 * z * z + 0.2 * math.log1p(t + 1))
            assert float(out[b, t]) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_wide_term_starts_at_zero_and_learns():
    codes, visits, mask, n_special = _batch(1)
    wide = WideTerm(vocab_size=12, n_special=n_special)
    out = wide(codes, visits, mask, 6)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert wide.code_weight.weight.grad.abs().sum() > 0


def test_wide_start_recovers_proportional_hazards():
    # exponential times with rate 0.1 * exp(x beta + 0.5 z): beta recovered by the
    # penalised fit (a tiny penalty) on the model's own piecewise-constant likelihood
    from scipy import sparse

    from survbehrt.cox_start import fit_wide_start
    from survbehrt.model.wide import covariate_matrix

    rng = np.random.default_rng(0)
    n = 6000
    counts = rng.poisson(0.7, size=(n, 3))
    x = np.log1p(counts)
    beta = np.array([0.8, -0.5, 0.0])
    z = rng.normal(size=n)
    n_visits = rng.integers(1, 20, n)
    rate = 0.1 * np.exp(x @ beta + 0.5 * z + 0.3 * np.log1p(n_visits))
    t = rng.exponential(1 / rate)
    c = rng.uniform(0, 10, n)
    time, event = np.minimum(t, c), t <= c
    cuts = np.concatenate([[0.0], np.quantile(time[event], np.linspace(0.1, 1, 10))])
    out = fit_wide_start(sparse.csr_matrix(x), covariate_matrix(z, n_visits), time, event, cuts,
                         alphas=(0.01, 1000.0), select="likelihood")
    assert out["alpha"] == 0.01  # the cross-validated likelihood prefers the truth
    np.testing.assert_allclose(out["beta"], beta, atol=0.08)
    np.testing.assert_allclose(out["gamma"], [0.5, 0.0, 0.3], atol=0.06)


def _pc_nll(logits, cuts, time, event):
    """-log L of piecewise-constant hazards from the definition: a loop over rows and bins."""
    total = 0.0
    for a, t, d in zip(logits, time, event):
        t = min(t, cuts[-1])
        for k in range(len(cuts) - 1):
            rate = np.log1p(np.exp(a[k])) / (cuts[k + 1] - cuts[k])
            if t <= cuts[k + 1]:
                total += rate * (t - cuts[k]) - (np.log(rate) if d else 0.0)
                break
            total += rate * (cuts[k + 1] - cuts[k])
    return total


def test_wide_start_by_concordance_rescales_a_stronger_penalty():
    # 40 codes, 3 of them real, ~80 events: the held-out likelihood prefers a weak
    # penalty, the held-out concordance a very strong one. The strong fit's direction is
    # kept, its hazard ratios stretched by the held-out calibration slope, and its
    # baseline refitted to the stretched predictor; where both criteria agree, nothing
    # is scaled.
    from scipy import sparse

    from survbehrt.cox_start import fit_wide_start
    from survbehrt.model.wide import covariate_matrix

    rng = np.random.default_rng(2)
    n = 300
    x = np.log1p(rng.poisson(0.5, size=(n, 40)))
    z = rng.normal(size=n)
    n_visits = rng.integers(1, 20, n)
    t = rng.exponential(1 / (0.03 * np.exp(x[:, :3] @ [1.0, 0.8, 0.6] + 0.5 * z)))
    c = rng.uniform(0, 8, n)
    time, event = np.minimum(t, c), t <= c
    cuts = np.concatenate([[0.0], np.quantile(time[event], np.linspace(0.25, 1, 4))])
    feats, cov = sparse.csr_matrix(x), np.asarray(covariate_matrix(z, n_visits))
    kw = dict(min_rows=1)
    alphas = (10.0, 1e5)  # far apart: the two criteria do not come near a tie
    by_likelihood = fit_wide_start(feats, cov, time, event, cuts, alphas=alphas,
                                   select="likelihood", **kw)
    ranked = fit_wide_start(feats, cov, time, event, cuts, alphas=alphas, **kw)
    assert (by_likelihood["alpha"], ranked["alpha"]) == (10.0, 1e5)  # they disagree
    assert by_likelihood["scale"] == 1.0
    strong = fit_wide_start(feats, cov, time, event, cuts, alphas=(1e5,), **kw)
    assert strong["scale"] == 1.0  # one candidate: both criteria agree
    w_strong = np.concatenate([strong["beta"], strong["gamma"]])
    w_ranked = np.concatenate([ranked["beta"], ranked["gamma"]])
    np.testing.assert_allclose(w_ranked, ranked["scale"] * w_strong, rtol=1e-4, atol=1e-7)
    assert ranked["scale"] > 10  # the strong penalty shrank the hazard ratios a lot

    lp = x @ ranked["beta"] + cov @ ranked["gamma"]

    def nll_with(baseline):
        return _pc_nll(baseline[None, :] + lp[:, None], cuts, time, event)

    fitted = nll_with(ranked["baseline"])
    for k in range(len(cuts) - 1):
        for step in (-0.05, 0.05):
            moved = ranked["baseline"].astype(float).copy()
            moved[k] += step
            assert fitted < nll_with(moved)
    with pytest.raises(ValueError, match="select"):
        fit_wide_start(feats, cov, time, event, cuts, select="auc", **kw)
