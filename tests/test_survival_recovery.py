"""Statistical properties where the truth is known: a model that can learn nothing but the
marginal survival must recover it, whatever the grid and the censoring."""

import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from survbehrt.losses import survival_nll
from survbehrt.survival import TimeGrid, survival_at

from helpers import tiny_estimator

RATE = 0.25  # events per year


def _exponential(n, censoring, seed):
    rng = np.random.default_rng(seed)
    t = rng.exponential(1.0 / RATE, n)
    if censoring == "uniform":
        c = rng.uniform(0.0, 8.0, n)
    else:  # administrative: everyone followed to a common end, entry spread over 6 years
        c = 8.0 - rng.uniform(0.0, 6.0, n)
    return Surv.from_arrays(t <= c, np.minimum(t, c))


def _kaplan_meier(y, times):
    km_t, km_s = kaplan_meier_estimator(y["event"], y["time"])
    idx = np.searchsorted(km_t, times, side="right") - 1
    return np.where(idx >= 0, km_s[np.maximum(idx, 0)], 1.0)


def _fit_marginal(y, grid):
    """Maximum likelihood of one hazard per bin shared by everyone (no covariates)."""
    logits = torch.zeros(1, grid.n_bins_, dtype=torch.float64, requires_grad=True)
    time = torch.tensor(np.ascontiguousarray(y["time"]))
    event = torch.tensor(np.ascontiguousarray(y["event"]))
    opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-10,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = survival_nll(logits.expand(len(time), -1), time, event, grid.cuts_)
        loss.backward()
        return loss

    opt.step(closure)
    return logits.detach().numpy()


@pytest.mark.parametrize("censoring", ["uniform", "administrative"])
@pytest.mark.parametrize("n_bins", [5, 20, 40])
def test_likelihood_recovers_the_marginal_survival(n_bins, censoring):
    y = _exponential(10_000, censoring, seed=n_bins)
    grid = TimeGrid(n_bins).fit(y)
    logits = _fit_marginal(y, grid)
    # inside the follow-up: up to where 5 % of the observed times still lie ahead
    follow_up = np.linspace(0.0, np.quantile(y["time"], 0.95), 200)
    fitted = survival_at(logits, grid.cuts_, follow_up)[0]
    assert np.abs(fitted - np.exp(-RATE * follow_up)).max() < 0.02
    # and it is the nonparametric answer: within 0.01 of Kaplan-Meier on the same data
    assert np.abs(fitted - _kaplan_meier(y, follow_up)).max() < 0.01


def test_estimator_without_information_recovers_the_marginal_survival():
    # the case: every patient has the same two visits, so the only thing to learn
    # is the marginal curve; the default 20-bin grid and the likelihood loss
    n = 5000
    y = _exponential(n, "uniform", seed=3)
    X = pd.DataFrame({"codes": [[["A", "B"], ["C"]]] * n, "ages": [[50.0, 51.0]] * n,
                      "index_age": [51.5] * n})
    est = tiny_estimator(loss="nll", time_bins=20, max_epochs=4, batch_size=256, lr=3e-3)
    est.fit(X, y)
    times = np.linspace(0.0, 7.5, 61)
    curve = est.predict_survival_function(X.iloc[:1])[0](times)
    assert np.abs(curve - np.exp(-RATE * times)).max() < 0.02
    assert np.abs(curve - _kaplan_meier(y, times)).max() < 0.02
