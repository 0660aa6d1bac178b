"""survbehrt.competing_hazards: the competing likelihood and incidence against plain loops,
their one-cause reductions, and the no-covariate fit against Aalen–Johansen."""

import math

import numpy as np
import pytest
import torch

from survbehrt.competing_hazards import (
    competing_nll,
    cumulative_incidence_at,
    marginal_competing_logits,
)
from survbehrt.competing_metrics import aalen_johansen
from survbehrt.data import competing_y
from survbehrt.losses import survival_nll
from survbehrt.survival import TimeGrid, survival_at

CUTS = [0.0, 0.5, 1.5, 3.0]


def _rate(a, width):
    return math.log1p(math.exp(a)) / width


def ref_nll(logits, time, event, cuts):
    """Row by row, cause by cause, bin by bin: sum_c H_c(t) - log lambda_{cause}(t)."""
    total = 0.0
    for row, t, d in zip(logits, time, event):
        if t > cuts[-1]:  # the grid is the modelled horizon: censored at its end
            t, d = cuts[-1], 0
        for c, a in enumerate(row):
            for k in range(len(cuts) - 1):
                lo, hi = cuts[k], cuts[k + 1]
                total += _rate(a[k], hi - lo) * max(0.0, min(t, hi) - lo)
                if d == c + 1 and lo < t <= hi or (d == c + 1 and t == 0 and k == 0):
                    total -= math.log(_rate(a[k], hi - lo))
    return total / len(time)


def ref_cif(logits, cuts, t, steps=20000):
    """F_c(t) = integral_0^t lambda_c(s) S(s) ds by the midpoint rule."""
    s = (np.arange(steps) + 0.5) * t / steps
    k = np.minimum(np.searchsorted(cuts[1:], s, side="left"), len(cuts) - 2)
    widths = np.diff(cuts)
    rates = np.log1p(np.exp(logits)) / widths  # (C, K)
    lam = rates[:, k]  # (C, steps)
    cum = np.cumsum(lam.sum(axis=0)) * t / steps - lam.sum(axis=0) * t / steps / 2
    return (lam * np.exp(-cum)).sum(axis=1) * t / steps


def test_the_likelihood_matches_the_loop_and_sums_single_cause_ones():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3, 3))
    time = rng.uniform(0, 4, 40)  # some past the last edge: censored there
    event = rng.integers(0, 4, 40)
    got = competing_nll(torch.tensor(logits), torch.tensor(time), torch.tensor(event), CUTS)
    assert float(got) == pytest.approx(ref_nll(logits, time, event, CUTS), rel=1e-10)
    one = competing_nll(torch.tensor(logits[:, :1]), torch.tensor(time),
                        torch.tensor((event == 1).astype(np.int64)), CUTS)
    single = survival_nll(torch.tensor(logits[:, 0]), torch.tensor(time),
                          torch.tensor(event == 1), CUTS)
    assert float(one) == pytest.approx(float(single), rel=1e-12)
    with pytest.raises(TypeError, match="integer causes"):
        competing_nll(torch.tensor(logits), torch.tensor(time), torch.tensor(event > 0), CUTS)
    with pytest.raises(ValueError, match="event must be in 0..3"):
        competing_nll(torch.tensor(logits), torch.tensor(time), torch.tensor(event + 1), CUTS)


def test_the_incidence_is_the_integral_and_sums_to_one_minus_survival():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 2, 3))
    times = np.array([0.0, 0.3, 0.5, 1.2, 3.0, 4.5])  # 4.5: past the grid, tail rule
    cif = cumulative_incidence_at(logits, CUTS, times)
    for i in range(4):
        for m, t in enumerate(times):
            np.testing.assert_allclose(cif[i, :, m], ref_cif(logits[i], np.array(CUTS), t),
                                       atol=2e-5)  # the midpoint rule's error
    all_cause = np.log1p(np.exp(logits)).sum(axis=1)
    surv = survival_at(np.log(np.expm1(all_cause)), CUTS, times)
    np.testing.assert_allclose(cif.sum(axis=1), 1 - surv, atol=1e-12)


def test_a_model_that_learns_nothing_recovers_aalen_johansen():
    # n = 10,000, two causes, uniform censoring: the marginal (no-covariate) MLE's
    # incidence is within 0.02 of Aalen-Johansen (the target for the estimator)
    rng = np.random.default_rng(2)
    n = 10_000
    t1, t2 = rng.weibull(1.5, n) * 4.0, rng.exponential(6.0, n)
    t_event, cause = np.minimum(t1, t2), np.where(t1 <= t2, 1, 2)
    censor = rng.uniform(0, 5, n)
    y = competing_y(np.where(t_event <= censor, cause, 0), np.minimum(t_event, censor))
    any_event = np.empty(n, dtype=[("event", bool), ("time", float)])
    any_event["event"], any_event["time"] = y["event"] > 0, y["time"]
    cuts = TimeGrid(15).fit(any_event).cuts_
    logits = marginal_competing_logits(y["time"], y["event"], cuts)
    grid = np.linspace(0.1, 4.5, 30)
    model = cumulative_incidence_at(logits[None], cuts, grid)[0]
    times, cif = aalen_johansen(y)
    aj = cif[1:, np.searchsorted(times, grid, side="right") - 1]
    assert np.abs(model - aj).max() < 0.02
    # the first-order condition: the marginal logits minimise the likelihood
    base = torch.tensor(np.repeat(logits[None], n, axis=0), requires_grad=True)
    competing_nll(base, torch.tensor(y["time"]), torch.tensor(y["event"]), cuts).backward()
    assert base.grad.sum(axis=0).abs().max() < 1e-6
