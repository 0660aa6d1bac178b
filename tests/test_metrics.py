"""Tests for survbehrt.metrics: wrappers agree with scikit-survival, calibration works."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sksurv.functions import StepFunction
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from survbehrt.metrics import (
    DCalibrationResult,
    brier,
    calibration_table,
    d_calibration,
    default_time_grid,
    evaluate,
    harrell_c,
    integrated_brier,
    time_dependent_auc,
    uno_c,
)
from survbehrt.survival import TimeGrid, evaluate_on_times, survival_curves


def _cohort(n, seed, beta=0.8, base=0.2, censor_max=12.0):
    """Exponential times with a known hazard base * exp(beta * x); uniform censoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    rate = base * np.exp(beta * x)
    t = rng.exponential(1.0 / rate)
    c = rng.uniform(0.0, censor_max, n)
    y = Surv.from_arrays(t <= c, np.minimum(t, c), name_event="status", name_time="years")
    return x, rate, y


@pytest.fixture(scope="module")
def split():
    x_tr, _, y_tr = _cohort(600, 0)
    x_te, rate_te, y_te = _cohort(300, 1)
    # make sure the test follow-up stays inside the training one (sksurv's rule)
    keep = y_te["years"] < y_tr["years"].max()
    return x_tr, y_tr, x_te[keep], rate_te[keep], y_te[keep]


def _exp_surv(rate, times):
    return np.exp(-np.outer(rate, times))


def test_concordance_wrappers_agree_with_sksurv(split):
    _, y_tr, x_te, rate_te, y_te = split
    risk = x_te + np.random.default_rng(0).normal(0, 0.5, x_te.shape[0])
    direct = concordance_index_censored(y_te["status"], y_te["years"], risk)[0]
    assert harrell_c(y_te, risk) == direct
    assert uno_c(y_tr, y_te, risk) == concordance_index_ipcw(y_tr, y_te, risk)[0]
    tau = np.percentile(y_te["years"], 70)
    assert uno_c(y_tr, y_te, risk, tau=tau) == concordance_index_ipcw(y_tr, y_te, risk, tau=tau)[0]


def test_auc_and_brier_wrappers_agree_with_sksurv(split):
    _, y_tr, _, rate_te, y_te = split
    times = default_time_grid(y_te, y_tr, n=15)
    surv = _exp_surv(rate_te, times)
    t_auc, auc, mean_auc = time_dependent_auc(y_tr, y_te, rate_te, times)
    ref_auc, ref_mean = cumulative_dynamic_auc(y_tr, y_te, rate_te, times)
    np.testing.assert_array_equal(t_auc, times)
    np.testing.assert_array_equal(auc, ref_auc)
    assert mean_auc == ref_mean
    _, auc_2d, _ = time_dependent_auc(y_tr, y_te, 1.0 - surv, times)
    np.testing.assert_array_equal(auc_2d, cumulative_dynamic_auc(y_tr, y_te, 1.0 - surv, times)[0])
    t_b, scores = brier(y_tr, y_te, surv, times)
    ref_t, ref_scores = brier_score(y_tr, y_te, surv, times)
    np.testing.assert_array_equal(t_b, ref_t)
    np.testing.assert_array_equal(scores, ref_scores)
    assert integrated_brier(y_tr, y_te, surv, times) == integrated_brier_score(
        y_tr, y_te, surv, times
    )
    # default times need step functions
    with pytest.raises(ValueError, match="times"):
        integrated_brier(y_tr, y_te, surv)
    # step functions are evaluated at the times
    funcs = np.array([StepFunction(np.r_[0.0, times], np.r_[1.0, row]) for row in surv])
    np.testing.assert_array_equal(brier(y_tr, y_te, funcs, times)[1], ref_scores)


def test_default_time_grid_inside_ipcw_limits(split):
    _, y_tr, _, _, y_te = split
    times = default_time_grid(y_te, y_tr, n=12)
    assert 2 <= times.shape[0] <= 12
    assert np.all(np.diff(times) > 0)
    assert times.min() >= y_te["years"].min()
    assert times.max() < y_te["years"].max()
    assert times.max() < y_tr["years"].max()
    lo, hi = np.percentile(y_te["years"], [10, 90])
    assert times.min() >= lo - 1e-12 and times.max() <= hi + 1e-12
    # a training set with short follow-up caps the grid
    short = Surv.from_arrays([True, False, True], [0.5, 1.0, 1.5])
    assert default_time_grid(y_te, short).max() < 1.5
    with pytest.raises(ValueError):
        default_time_grid(y_te, Surv.from_arrays([True, True], [0.0, 1e-9]))


def test_test_times_beyond_training_follow_up(split):
    """sksurv raises; the wrappers censor at the training maximum and the values are exact."""
    _, y_tr, _, _, _ = split
    x_te, rate_te, y_te = _cohort(300, 2, censor_max=40.0)
    assert y_te["years"].max() > y_tr["years"].max()
    times = default_time_grid(y_te, y_tr, n=5)
    surv = _exp_surv(rate_te, times)
    with pytest.raises(ValueError):
        cumulative_dynamic_auc(y_tr, y_te, rate_te, times)
    with pytest.raises(ValueError):
        concordance_index_ipcw(y_tr, y_te, rate_te)
    _, scores = brier(y_tr, y_te, surv, times)
    # independent reference: Graf et al.'s IPCW Brier score written out
    cens = CensoringDistributionEstimator().fit(y_tr)
    ev, tt = y_te["status"], y_te["years"]
    for j, t in enumerate(times):
        g_t = cens.predict_proba(np.array([t]))[0]
        total = 0.0
        for i in range(tt.shape[0]):
            if tt[i] <= t and ev[i]:
                total += surv[i, j] ** 2 / cens.predict_proba(np.array([tt[i]]))[0]
            elif tt[i] > t:
                total += (1.0 - surv[i, j]) ** 2 / g_t
        assert scores[j] == pytest.approx(total / tt.shape[0], rel=1e-10)
    assert np.isfinite(uno_c(y_tr, y_te, rate_te))
    assert np.isfinite(time_dependent_auc(y_tr, y_te, rate_te, times)[2])


def _km_reference(event, time, horizon):
    """Product-limit estimate written out."""
    s = 1.0
    for u in np.unique(time[event]):
        if u > horizon:
            break
        at_risk = np.sum(time >= u)
        deaths = np.sum((time == u) & event)
        s *= 1.0 - deaths / at_risk
    return s


def test_calibration_table_against_kaplan_meier_loop(split):
    _, _, _, rate_te, y_te = split
    horizon = float(np.median(y_te["years"]))
    surv_h = np.exp(-rate_te * horizon)
    table = calibration_table(y_te, surv_h, horizon, n_groups=5)
    assert isinstance(table, pd.DataFrame)
    assert list(table["group"]) == list(range(5))
    assert table["n"].sum() == y_te.shape[0]
    # groups ordered by risk: predicted survival non-increasing
    assert np.all(np.diff(table["predicted"]) <= 0)
    order = np.argsort(1.0 - surv_h, kind="stable")
    for g, idx in enumerate(np.array_split(order, 5)):
        row = table.iloc[g]
        assert row["predicted"] == pytest.approx(surv_h[idx].mean())
        ref = _km_reference(y_te["status"][idx], y_te["years"][idx], horizon)
        assert row["observed"] == pytest.approx(ref, rel=1e-10)
        assert row["lower"] <= row["observed"] <= row["upper"]
    with pytest.raises(ValueError):
        calibration_table(y_te, surv_h, horizon, n_groups=0)


def _dcal_reference(event, surv, n_bins):
    counts = np.zeros(n_bins)
    for e, s in zip(event, surv):
        for k in range(n_bins):
            a, b = k / n_bins, (k + 1) / n_bins
            if e:
                if a <= s < b or (k == n_bins - 1 and s == 1.0):
                    counts[k] += 1
            elif s > 0:
                if b <= s:
                    counts[k] += (b - a) / s
                elif a <= s:
                    counts[k] += (s - a) / s
            elif k == 0:
                counts[k] += 1
    return counts


def test_d_calibration_matches_loop_reference():
    rng = np.random.default_rng(4)
    n = 200
    event = rng.random(n) < 0.6
    surv = rng.uniform(0, 1, n)
    surv[:5] = [0.0, 1.0, 0.5, 0.1, 0.0]
    y = Surv.from_arrays(event, rng.uniform(0.1, 3, n))
    result = d_calibration(y, surv, n_bins=10)
    assert isinstance(result, DCalibrationResult)
    ref = _dcal_reference(event, surv, 10)
    np.testing.assert_allclose(result.counts, ref, rtol=1e-12)
    assert result.counts.sum() == pytest.approx(n)
    ref_stat, ref_p = stats.chisquare(ref)
    assert result.statistic == pytest.approx(ref_stat)
    assert result.p_value == pytest.approx(ref_p)


def test_d_calibration_detects_miscalibration():
    x, rate, y = _cohort(5000, 7)
    t = y["years"]
    calibrated = d_calibration(y, np.exp(-rate * t))
    assert calibrated.p_value > 0.05
    too_risky = d_calibration(y, np.exp(-2.0 * rate * t))
    assert too_risky.p_value < 0.01
    too_safe = d_calibration(y, np.exp(-0.5 * rate * t))
    assert too_safe.p_value < 0.01


def test_d_calibration_accepts_step_functions():
    x, rate, y = _cohort(50, 8)
    grid = np.linspace(0, y["years"].max(), 400)
    funcs = np.array([StepFunction(grid, np.exp(-r * grid)) for r in rate])
    direct = np.array([fn(t) for fn, t in zip(funcs, y["years"])])
    a = d_calibration(y, funcs)
    b = d_calibration(y, direct)
    np.testing.assert_allclose(a.counts, b.counts)


def test_evaluate_with_sksurv_estimator(split):
    x_tr, y_tr, x_te, _, y_te = split
    rng = np.random.default_rng(123)
    X_tr = np.column_stack([x_tr, rng.normal(size=x_tr.shape[0])])
    X_te = np.column_stack([x_te, rng.normal(size=x_te.shape[0])])
    est = CoxPHSurvivalAnalysis().fit(X_tr, y_tr)
    res = evaluate(est, X_te, y_te, y_tr, return_curves=True)
    for key in (
        "harrell_c",
        "uno_c",
        "mean_auc",
        "integrated_brier",
        "d_calibration_stat",
        "d_calibration_p",
    ):
        assert np.isfinite(res[key]), key
    risk = est.predict(X_te)
    assert res["harrell_c"] == concordance_index_censored(y_te["status"], y_te["years"], risk)[0]
    assert res["uno_c"] == concordance_index_ipcw(y_tr, y_te, risk)[0]
    times = res["times"]
    surv = np.vstack([fn(times) for fn in est.predict_survival_function(X_te)])
    assert res["integrated_brier"] == integrated_brier_score(y_tr, y_te, surv, times)
    assert res["mean_auc"] == cumulative_dynamic_auc(y_tr, y_te, 1.0 - surv, times)[1]
    assert res["harrell_c"] > 0.6  # the covariate carries the hazard
    # a correctly specified Cox model is D-calibrated
    assert res["d_calibration_p"] > 0.01
    # the bin counts behind the test come back to be pooled over folds
    dcal = d_calibration(y_te, est.predict_survival_function(X_te))
    np.testing.assert_array_equal(res["d_calibration_counts"], dcal.counts)
    assert res["d_calibration_counts"].sum() == pytest.approx(len(y_te))


def _true_model_logits(rate, cuts):
    """Logits whose piecewise-constant hazards are the constant rate of each row exactly."""
    eta = rate[:, None] * np.diff(cuts)[None, :]
    return np.log(np.expm1(eta))  # softplus^-1


def test_true_model_on_the_grid_passes_d_calibration_and_scaled_hazards_fail():
    # exponential times with a per-patient rate, a 20-bin grid learned from the data; the
    # model that puts each patient's true rate in every bin must pass on the continuous
    # curves, and the same model with the hazards doubled or halved must fail
    _, rate, y = _cohort(4000, 11)
    grid = TimeGrid(20).fit(y)
    for scale, passes in ((1.0, True), (2.0, False), (0.5, False)):
        funcs = survival_curves(_true_model_logits(scale * rate, grid.cuts_), grid.cuts_,
                                grid.max_time_)
        p = d_calibration(y, funcs).p_value
        assert (p > 0.05) if passes else (p < 0.001), (scale, p)


def test_evaluate_with_survival_curves():
    x_tr, _, y_tr = _cohort(300, 3)
    x_te, rate, y_te = _cohort(100, 4)
    keep = y_te["years"] < y_tr["years"].max()
    y_te, rate = y_te[keep], rate[keep]
    grid = TimeGrid(8).fit(y_tr)
    logits = _true_model_logits(rate, grid.cuts_)
    funcs = survival_curves(logits, grid.cuts_, grid.max_time_)
    res = evaluate(funcs, None, y_te, y_tr, return_curves=True)
    surv = evaluate_on_times(logits, grid.cuts_, res["times"])
    expected_c = concordance_index_censored(y_te["status"], y_te["years"], -surv.sum(axis=1))[0]
    assert res["harrell_c"] == pytest.approx(expected_c, rel=1e-12)
    assert res["integrated_brier"] == pytest.approx(
        integrated_brier_score(y_tr, y_te, surv, res["times"]), rel=1e-12)
    with pytest.raises(TypeError):
        evaluate(np.ones(3), None, y_te[:3], y_tr)
