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
                         alphas=(0.01, 1000.0))
    assert out["alpha"] == 0.01  # the cross-validated likelihood prefers the truth
    np.testing.assert_allclose(out["beta"], beta, atol=0.08)
    np.testing.assert_allclose(out["gamma"], [0.5, 0.0, 0.3], atol=0.06)


def _pc_nll(logits, cuts, time, event):
    """-log L of piecewise-constant hazards from the definition: a loop over rows and bins."""
    total = 0.0
    for a, t, d in zip(logits, time, event):
        d = d and t <= cuts[-1]  # the grid is the horizon: later events censored there
        t = min(t, cuts[-1])
        for k in range(len(cuts) - 1):
            rate = np.log1p(np.exp(a[k])) / (cuts[k + 1] - cuts[k])
            if t <= cuts[k + 1]:
                total += rate * (t - cuts[k]) - (np.log(rate) if d else 0.0)
                break
            total += rate * (cuts[k + 1] - cuts[k])
    return total


def _small_cohort(seed=2, n=300, n_codes=40, signal=(1.0, 0.8, 0.6), horizon=8.0):
    """40 log-count codes (the first few real), ~80 events on 300 rows."""
    from survbehrt.model.wide import covariate_matrix

    rng = np.random.default_rng(seed)
    x = np.log1p(rng.poisson(0.5, size=(n, n_codes)))
    z = rng.normal(size=n)
    n_visits = rng.integers(1, 20, n)
    k = len(signal)
    t = rng.exponential(1 / (0.03 * np.exp(x[:, :k] @ np.asarray(signal) + 0.5 * z)))
    c = rng.uniform(0, horizon, n)
    time, event = np.minimum(t, c), t <= c
    cuts = np.concatenate([[0.0], np.quantile(time[event], np.linspace(0.25, 1, 4))])
    return x, np.asarray(covariate_matrix(z, n_visits)), time, event, cuts


def _weights(out):
    return np.concatenate([out["beta"], out["gamma"], out["baseline"]]).astype(float)


def test_wide_start_chosen_penalty_is_that_penalty_fit():
    # no stretch bolted on: what the search returns is the fit at the penalties it chose,
    # whether they came from the walks, from lists of candidates, or alone
    from scipy import sparse

    from survbehrt.cox_start import fit_wide_start

    x, cov, time, event, cuts = _small_cohort()
    feats, kw = sparse.csr_matrix(x), dict(min_rows=1)
    walked = fit_wide_start(feats, cov, time, event, cuts, **kw)
    alone = fit_wide_start(feats, cov, time, event, cuts, alphas=(walked["alpha"],),
                           covariate_alphas=(walked["covariate_alpha"],), **kw)
    np.testing.assert_allclose(_weights(walked), _weights(alone), rtol=1e-3, atol=1e-4)
    listed = fit_wide_start(feats, cov, time, event, cuts, alphas=(10.0, 1e5),
                            covariate_alphas=(1.0, 100.0), **kw)
    assert listed["alpha"] in (10.0, 1e5) and listed["covariate_alpha"] in (1.0, 100.0)
    strong = fit_wide_start(feats, cov, time, event, cuts, alphas=(listed["alpha"],),
                            covariate_alphas=(listed["covariate_alpha"],), **kw)
    np.testing.assert_allclose(_weights(listed), _weights(strong), rtol=1e-3, atol=1e-4)
    for name in ("alphas", "covariate_alphas"):
        with pytest.raises(ValueError, match=name):
            fit_wide_start(feats, cov, time, event, cuts, **{name: (0.0,)}, **kw)


def test_wide_start_is_continuous_in_both_penalties():
    # the fit moves by about eps * |w| when a penalty moves by a factor (1 + eps): a jump
    # anywhere on the range (the old rule's stretch, bolted on or not) fails
    from scipy import sparse

    from survbehrt.cox_start import fit_wide_start

    x, cov, time, event, cuts = _small_cohort()
    feats, eps = sparse.csr_matrix(x), 1e-2
    for alpha, lam in ((1.0, 1.0), (30.0, 1.0), (1e3, 10.0), (3e4, 1e3), (1e6, 1.0)):
        at = fit_wide_start(feats, cov, time, event, cuts, alphas=(alpha,),
                            covariate_alphas=(lam,), min_rows=1)
        for moved in ((alpha * (1 + eps), lam), (alpha, lam * (1 + eps))):
            near = fit_wide_start(feats, cov, time, event, cuts, alphas=(moved[0],),
                                  covariate_alphas=(moved[1],), min_rows=1)
            w_at, w_near = _weights(at), _weights(near)
            assert np.abs(w_near - w_at).max() <= 2 * eps * np.abs(w_at).max() + 1e-5


def _penalised_objective(alpha, lam, x, cov, time, event, cuts):
    """The penalised -log L from the definition: the loop above plus the two ridge terms
    on the columns' standard deviations (every code fitted)."""
    def value(beta, gamma, baseline):
        lp = x @ beta + cov @ gamma
        pen = alpha * np.sum((x.std(axis=0) * beta) ** 2)
        pen += lam * np.sum((cov.std(axis=0) * gamma) ** 2)
        return _pc_nll(baseline[None, :] + lp[:, None], cuts, time, event) + 0.5 * pen

    return value


def _raised_by_every_move(value, params, step=0.05):
    fitted = value(*params)
    for which, p in enumerate(params):
        for j in range(p.shape[0]):
            for move in (-step, step):
                moved = [q.copy() for q in params]
                moved[which][j] += move
                assert fitted < value(*moved), (which, j, move)
    return fitted


def test_ridge_fit_minimises_the_penalised_likelihood():
    # every parameter (codes, covariates, baseline) of the ridge fit moved either way
    # raises the penalised -log L computed by the loop, for both penalties' sizes
    from scipy import sparse

    from survbehrt.cox_start import _RidgeFit

    x, cov, time, event, cuts = _small_cohort(n_codes=6)
    data = (sparse.csr_matrix(x), cov, time, event, cuts)
    for alpha, lam in ((3.0, 1.0), (300.0, 100.0)):
        fit = _RidgeFit(data, np.arange(len(x)), min_rows=1).fit(alpha, lam)
        beta, gamma = fit.ridge_weights(6, 3)
        value = _penalised_objective(alpha, lam, x, cov, time, event, cuts)
        _raised_by_every_move(value, [beta, gamma, fit.b.copy()])


def test_ridge_fit_gives_the_representations_block_its_own_penalty():
    # the last dense columns (an encoder's representations) have a penalty of their own:
    # the fit at (alpha, lam, rho) is the minimum of the loop's penalised -log L with the
    # three ridge terms, and at rho = lam it is the fit where they are plain covariates
    from scipy import sparse

    from survbehrt.cox_start import _RidgeFit

    x, cov, time, event, cuts = _small_cohort(n_codes=6)
    rng = np.random.default_rng(5)
    reps = np.column_stack([x[:, 0] + rng.normal(0.0, 0.5, len(x)), rng.normal(size=len(x))])
    data = (sparse.csr_matrix(x), np.hstack([cov, reps]), time, event, cuts)
    alpha, lam, rho = 3.0, 1.0, 40.0
    fit = _RidgeFit(data, np.arange(len(x)), 1, n_representations=2).fit(alpha, lam, rho)
    beta, dense = fit.ridge_weights(6, 5)
    gamma, weight = dense[:3], dense[3:]

    def value(beta, gamma, weight, baseline):
        lp = x @ beta + cov @ gamma + reps @ weight
        pen = (alpha * np.sum((x.std(axis=0) * beta) ** 2)
               + lam * np.sum((cov.std(axis=0) * gamma) ** 2)
               + rho * np.sum((reps.std(axis=0) * weight) ** 2))
        return _pc_nll(baseline[None, :] + lp[:, None], cuts, time, event) + 0.5 * pen

    _raised_by_every_move(value, [beta, gamma, weight, fit.b.copy()])
    block = _RidgeFit(data, np.arange(len(x)), 1, n_representations=2).fit(alpha, lam, lam)
    plain = _RidgeFit(data, np.arange(len(x)), 1).fit(alpha, lam)
    np.testing.assert_allclose(block.theta, plain.theta, rtol=1e-10, atol=1e-12)


def test_wide_start_is_the_ridge_direction_at_its_shrunk_likelihood_scale(monkeypatch):
    # the start: its weights are the ridge fit's times one factor, the factor that with
    # the baseline maximises the unpenalised likelihood (the loop) along the direction,
    # times the shrinkage; the baseline then maximises it at that scale
    from scipy import sparse

    import survbehrt.cox_start as cox_start

    x, cov, time, event, cuts = _small_cohort(n_codes=6)
    data = (sparse.csr_matrix(x), cov, time, event, cuts)
    alpha, lam = 1e3, 100.0  # strong: the ridge alone under-scales the predictor
    beta, gamma = cox_start._RidgeFit(data, np.arange(len(x)), 1).fit(alpha, lam).ridge_weights(
        6, 3)
    eta = x @ beta + cov @ gamma

    def nll(scale, baseline):
        return _pc_nll(baseline[None, :] + scale * eta[:, None], cuts, time, event)

    ml_scale = None
    for shrinkage in (1.0, 0.8):
        monkeypatch.setattr(cox_start, "_held_out_slope", lambda *args, s=shrinkage: s)
        out = cox_start.fit_wide_start(*data, alphas=(alpha,), covariate_alphas=(lam,),
                                       min_rows=1)
        assert out["shrinkage"] == shrinkage
        # (to the Newton stop, a decrement of 1e-7 per row: the full fit starts from the
        # folds' fits, the reference from zero)
        np.testing.assert_allclose(out["beta"], out["scale"] * beta, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(out["gamma"], out["scale"] * gamma, rtol=1e-3, atol=1e-6)
        baseline = out["baseline"].astype(float)
        if shrinkage == 1.0:
            ml_scale = out["scale"]
            assert ml_scale > 1.5
            _raised_by_every_move(nll, [np.array([ml_scale]), baseline], step=0.02)
        else:
            assert out["scale"] == pytest.approx(shrinkage * ml_scale, rel=1e-6)
            _raised_by_every_move(lambda b, s=out["scale"]: nll(s, b), [baseline], step=0.02)


def test_penalty_criterion_scores_each_fold_at_its_shrunk_scale(monkeypatch):
    # the rule's held-out likelihood at a pair, from the definition: each fold's ridge
    # direction and relaxed scale (tested above) times the folds' slope, the baseline
    # maximising the fold's training likelihood at that scale (by scipy, on the loop),
    # and the held-out rows' -log L by the loop, summed over the folds
    from scipy import optimize, sparse
    from sklearn.model_selection import KFold

    import survbehrt.cox_start as cox_start

    x, cov, time, event, cuts = _small_cohort(seed=0, n=500, n_codes=8)
    assert (event & (time <= cuts[-1])).sum() >= 50  # enough events: the scale is shrunk
    data = (sparse.csr_matrix(x), cov, time, event, cuts)
    alpha, lam, slope = 30.0, 3.0, 0.7
    monkeypatch.setattr(cox_start, "_held_out_slope", lambda folds: slope)
    out = cox_start.fit_wide_start(*data, alphas=[alpha], covariate_alphas=[lam], min_rows=1,
                                   random_state=4, held_out=True)
    expected = 0.0
    for train, test in KFold(3, shuffle=True, random_state=4).split(np.arange(len(x))):
        fold = cox_start._RidgeFit(data, train, 1).fit(alpha, lam)
        beta, gamma = fold.ridge_weights(8, cov.shape[1])
        scale = slope * fold.relaxed[1]

        def eta(rows, beta=beta, gamma=gamma):
            return x[rows] @ beta + cov[rows] @ gamma

        def train_nll(b, rows=train, scale=scale, eta=eta):
            return _pc_nll(b[None, :] + scale * eta(rows)[:, None], cuts, time[rows],
                           event[rows])

        b = optimize.minimize(train_nll, fold.b, method="Nelder-Mead",
                              options=dict(xatol=1e-8, fatol=1e-10, maxiter=20000)).x
        expected += _pc_nll(b[None, :] + scale * eta(test)[:, None], cuts, time[test],
                            event[test])
    # (to the fits' Newton stop: the folds' ridge fits are warm-started in the rule)
    assert out["held_out_nll"] == pytest.approx(expected, rel=1e-4)
    # and not the likelihood at the unshrunk scale
    monkeypatch.setattr(cox_start, "_held_out_slope", lambda folds: 1.0)
    unshrunk = cox_start.fit_wide_start(*data, alphas=[alpha], covariate_alphas=[lam],
                                        min_rows=1, random_state=4, held_out=True)
    assert abs(unshrunk["held_out_nll"] - expected) > 1e-3 * expected  # ten times the tolerance


def _cumulative_hazard_at(logits, cuts, time):
    """Each row's cumulative hazard at its own time (the grid's end at most), by the loop."""
    out = np.zeros(len(time))
    for i, (a, t) in enumerate(zip(logits, time)):
        t = min(t, cuts[-1])
        for k in range(len(cuts) - 1):
            rate = np.log1p(np.exp(a[k])) / (cuts[k + 1] - cuts[k])
            out[i] += rate * (np.clip(t, cuts[k], cuts[k + 1]) - cuts[k])
    return out


def test_shrinkage_brings_the_starts_slope_on_new_patients_towards_one(monkeypatch):
    # 60 codes (3 real) for ~120 events: the in-sample scale spreads the risks of new
    # patients too far (slope well below 1); the held-out shrinkage (below 0.9 here)
    # brings the slope on an independent cohort of the same population closer to 1
    from scipy import sparse

    import survbehrt.cox_start as cox_start
    from survbehrt.recalibration import fit_calibration

    held_out_slope = cox_start._held_out_slope
    for seed in range(3):
        x, cov, time, event, cuts = _small_cohort(seed=seed, n=500, n_codes=60)
        x_new, cov_new, time_new, event_new, _ = _small_cohort(seed=100 + seed, n=5000,
                                                               n_codes=60)
        event_new &= time_new <= cuts[-1]
        # the penalties the rule chooses, then held there: the shrinkage alone differs
        chosen = cox_start.fit_wide_start(sparse.csr_matrix(x), cov, time, event, cuts,
                                          min_rows=1)
        slopes = {}
        for shrunk in (False, True):
            monkeypatch.setattr(cox_start, "_held_out_slope",
                                held_out_slope if shrunk else lambda *args: 1.0)
            out = cox_start.fit_wide_start(sparse.csr_matrix(x), cov, time, event, cuts,
                                           min_rows=1, alphas=[chosen["alpha"]],
                                           covariate_alphas=[chosen["covariate_alpha"]])
            lp = x_new @ out["beta"] + cov_new @ out["gamma"]
            cumhaz = _cumulative_hazard_at(out["baseline"][None, :] + lp[:, None], cuts,
                                           time_new)
            slopes[shrunk] = fit_calibration(event_new, cumhaz, lp).slope
        assert out["shrinkage"] < 0.9
        assert slopes[False] < 0.9
        assert abs(slopes[True] - 1.0) < abs(slopes[False] - 1.0) - 0.05, slopes


@pytest.mark.parametrize("minimum", [0.05, 7.0, 2e3, 3e6])
def test_search_walks_until_the_criterion_turns(minimum):
    # a criterion quadratic in log(alpha): the walk reaches its minimum wherever it is
    # (the old grid ran from 1 to 1e5) and the parabola through the best point and its
    # neighbours places it exactly; it stops one point after the turn
    from survbehrt.cox_start import ALPHA_STEP, FIRST_ALPHA, _search

    tried = []

    def criterion(alpha):
        tried.append(alpha)
        return (np.log(alpha) - np.log(minimum)) ** 2

    assert _search(criterion) == pytest.approx(minimum, rel=1e-9)
    steps = abs(np.log(minimum / FIRST_ALPHA) / np.log(ALPHA_STEP))
    assert len(tried) <= steps + 4


def test_search_stops_at_the_range_where_the_criterion_never_turns():
    from survbehrt.cox_start import ALPHA_RANGE, COVARIATE_ALPHA_RANGE, _search

    assert _search(lambda alpha: -np.log(alpha)) == pytest.approx(ALPHA_RANGE[1])
    assert _search(lambda alpha: np.log(alpha)) == pytest.approx(ALPHA_RANGE[0])
    # a walk that starts at the range's weak end goes up (the covariates' penalty)
    lam = _search(lambda a: (np.log10(a) - 2.0) ** 2, 1.0, 10.0, COVARIATE_ALPHA_RANGE)
    assert lam == pytest.approx(100.0)
    assert _search(np.log, 1.0, 10.0, COVARIATE_ALPHA_RANGE) == 1.0


def test_each_penalty_shrinks_the_part_that_is_noise():
    # the codes carry the signal and age, its square and the visits none: the held-out
    # likelihood shrinks the covariates (a penalty above the weak end of their walk). With
    # the age informative and the codes noise, the codes are shrunk to nothing and the
    # relaxed scale gives the age the weight an unpenalised (relaxed) fit gives it
    from scipy import sparse

    from survbehrt.cox_start import fit_wide_start
    from survbehrt.model.wide import covariate_matrix

    rng = np.random.default_rng(3)
    n = 600
    x = np.log1p(rng.poisson(0.5, size=(n, 10)))
    z, n_visits = rng.normal(size=n), rng.integers(1, 20, n)
    cov = np.asarray(covariate_matrix(z, n_visits))
    for lp, noisy in ((x[:, :3] @ [1.0, 0.8, 0.6], "covariates"), (0.9 * z, "codes")):
        t = rng.exponential(1 / (0.05 * np.exp(lp)))
        c = rng.uniform(0, 10, n)
        time, event = np.minimum(t, c), t <= c
        cuts = np.concatenate([[0.0], np.quantile(time[event], np.linspace(0.25, 1, 4))])
        out = fit_wide_start(sparse.csr_matrix(x), cov, time, event, cuts, min_rows=1)
        if noisy == "covariates":
            assert out["covariate_alpha"] > 10.0, out
        else:
            assert out["alpha"] > 1e4 and np.abs(out["beta"]).max() < 0.01, out
            free = fit_wide_start(sparse.csr_matrix(x), cov, time, event, cuts,
                                  alphas=(1e-2,), covariate_alphas=(1e-2,), min_rows=1)
            assert free["gamma"][0] > 0.5
            # the relaxed fit, before the shrinkage (which both fits have)
            relaxed = out["gamma"][0] / out["shrinkage"]
            free_relaxed = free["gamma"][0] / free["shrinkage"]
            ridge = relaxed / (out["scale"] / out["shrinkage"])  # before the relaxed refit
            assert abs(relaxed - free_relaxed) < 0.1
            assert abs(relaxed - free_relaxed) < 0.5 * abs(ridge - free_relaxed)


def test_wide_start_weak_penalty_for_strong_signal():
    # three strong codes on 3,000 rows: the held-out likelihood walks down to a weak
    # penalty, and the weights are the truth's
    from scipy import sparse

    from survbehrt.cox_start import fit_wide_start

    signal = (1.0, 0.8, 0.6)
    x, cov, time, event, _ = _small_cohort(n=3000, n_codes=3, signal=signal, horizon=30)
    # fine intervals: softplus(a + w) is then e^w softplus(a), proportional hazards
    cuts = np.concatenate([[0.0], np.quantile(time[event], np.linspace(0.05, 1, 20))])
    out = fit_wide_start(sparse.csr_matrix(x), cov, time, event, cuts, min_rows=1)
    assert out["alpha"] < 100.0  # the walk starts at 1,000
    np.testing.assert_allclose(out["beta"], signal, atol=0.1)


def test_piecewise_exp_matches_the_loss_and_its_derivatives():
    # the start's numpy likelihood is the model's: value, gradient and (diagonal) second
    # derivative against survival_nll and torch's autograd
    from survbehrt.cox_start import _PiecewiseExp
    from survbehrt.losses import survival_nll

    rng = np.random.default_rng(0)
    n, cuts = 50, np.array([0.0, 0.5, 1.5, 3.0, 5.0])
    time = rng.uniform(0, 6, n)  # some past the last edge
    time[:3] = [0.0, 0.5, 5.0]  # on edges
    event = rng.random(n) < 0.6
    a = rng.normal(-1.0, 1.5, (n, 4))
    lik = _PiecewiseExp(time, event, cuts)
    logits = torch.tensor(a, requires_grad=True)
    ref = survival_nll(logits, torch.tensor(time), torch.tensor(event), cuts, reduction="sum")
    (grad_ref,) = torch.autograd.grad(ref, logits, create_graph=True)
    (hess_ref,) = torch.autograd.grad(grad_ref.sum(), logits)
    grad, hess = lik.derivatives(a)
    assert lik.value(a) == pytest.approx(ref.item(), rel=1e-9)
    np.testing.assert_allclose(grad, grad_ref.detach().numpy(), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(hess, hess_ref.numpy(), rtol=1e-7, atol=1e-10)
    assert (hess >= 0).all()


def test_wide_start_folds_see_only_their_training_rows(monkeypatch):
    # the codes kept and the penalty's scales come from each fold's training rows: a code
    # present in 3 rows overall is kept (min_rows=3) on all rows but not in a fold that
    # holds some of them out; every fit's scales are the columns' sds on its own rows
    from scipy import sparse

    import survbehrt.cox_start as cs

    x, cov, time, event, cuts = _small_cohort(n_codes=5)
    x[:, 4] = 0.0
    x[[0, 1, 2], 4] = np.log(2.0)
    seen = []
    init = cs._RidgeFit.__init__

    def spy(self, data, rows, min_rows, *args):
        init(self, data, rows, min_rows, *args)
        seen.append((np.asarray(rows), self.codes.copy(), self.scale_sq.copy()))

    monkeypatch.setattr(cs._RidgeFit, "__init__", spy)
    cs.fit_wide_start(sparse.csr_matrix(x), cov, time, event, cuts, min_rows=3)
    assert len(seen) == 4  # all rows, then three folds
    seen = seen[1:] + seen[:1]
    for rows, codes, scale_sq in seen:
        part = x[rows]
        kept = [j for j in range(5) if np.count_nonzero(part[:, j]) >= 3]
        assert codes.tolist() == kept
        np.testing.assert_allclose(scale_sq, np.r_[part[:, kept].std(axis=0),
                                                   cov[rows].std(axis=0)] ** 2, rtol=1e-9)
    assert [len(r) for r, _, _ in seen][-1] == len(x)
    assert sum(4 in codes for _, codes, _ in seen[:3]) < 3  # some fold lost the code
    assert 4 in seen[-1][1]


def test_wide_start_columns_every_row_shares_keep_zero_weight():
    # codes every patient has, the same number of times, and a shared age and visit count
    # carry no information: they keep a zero weight instead of entering the Newton system
    # with a near-zero penalty (their one-pass variance cancels to ~1e-8, not 0)
    from scipy import sparse

    from survbehrt.cox_start import fit_wide_start
    from survbehrt.model.wide import covariate_matrix

    x, _, time, event, cuts = _small_cohort(n=400)
    shared = np.full((len(x), 3), np.log1p(2.0))
    feats = sparse.csr_matrix(np.hstack([shared, x[:, :3]]))
    cov = np.asarray(covariate_matrix(np.zeros(len(x)), np.full(len(x), 2)))
    out = fit_wide_start(feats, cov, time, event, cuts)
    np.testing.assert_array_equal(out["beta"][:3], 0.0)
    np.testing.assert_array_equal(out["gamma"], 0.0)
    assert np.all(out["beta"][3:] > 0.1)  # the real codes are still fitted
