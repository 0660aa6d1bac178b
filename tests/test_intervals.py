"""Tests for survbehrt.intervals: the bootstrap against a plain loop over the same resamples,
grouped resampling, paired differences, failed resamples and bad input."""

import numpy as np
import pytest
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from survbehrt.intervals import (
    BootstrapResult,
    bootstrap_counts,
    bootstrap_interval,
    paired_bootstrap,
    results_frame,
)
from survbehrt.metrics import integrated_brier, uno_c


def _cohort(n, seed, censor=2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-x))
    c = rng.exponential(censor, n)
    # rounded times and risks: tied times and tied risks, which the pair rules must handle
    y = Surv.from_arrays(t <= c, np.round(np.minimum(t, c), 1) + 0.01)
    return np.round(x + rng.normal(0, 0.5, n), 1), y


def _rows(counts, b):
    return np.repeat(np.arange(counts.shape[1]), counts[b])


def _percentile(values, level=0.95):
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return np.quantile(values, [(1 - level) / 2, (1 + level) / 2])


@pytest.mark.parametrize("grouped", [False, True])
def test_harrell_matches_plain_loop_on_the_same_resamples(grouped):
    risk, y = _cohort(400, 0)
    groups = np.arange(400) // 3 if grouped else None
    n_boot = 60
    result = bootstrap_interval(y, risk, groups=groups, n_boot=n_boot, random_state=7)
    counts = bootstrap_counts(400, n_boot, groups, random_state=7)
    ref = []
    for b in range(n_boot):
        i = _rows(counts, b)
        ref.append(concordance_index_censored(y["event"][i], y["time"][i], risk[i])[0])
    np.testing.assert_allclose(result.replicates, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose([result.lower, result.upper], _percentile(ref), atol=1e-12)
    assert result.estimate == pytest.approx(
        concordance_index_censored(y["event"], y["time"], risk)[0], abs=1e-12)
    assert (result.n_boot, result.n_failed) == (n_boot, 0)


def _loop(fn, y, est, counts):
    """The metric on each resample by a plain loop; NaN where it is undefined."""
    out = []
    for b in range(counts.shape[0]):
        i = _rows(counts, b)
        try:
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(fn(y[i], est[i]))
        except (ValueError, NoComparablePairException):
            out.append(np.nan)
    return np.array(out, dtype=float)


def test_ipcw_metrics_match_plain_loop():
    risk, y_train = _cohort(300, 1)
    risk_te, y = _cohort(150, 2)
    y_train = Surv.from_arrays(y_train["event"], y_train["time"] + 5.0)  # covers the test times
    times = np.quantile(y["time"], [0.2, 0.5, 0.8])
    surv = np.exp(-np.outer(np.exp(risk_te), times))
    counts = bootstrap_counts(150, 15, random_state=3)
    runs = {
        "uno_c": (risk_te, lambda yy, e: concordance_index_ipcw(y_train, yy, e)[0]),
        "mean_auc": (risk_te, lambda yy, e: cumulative_dynamic_auc(y_train, yy, e, times)[1]),
        "integrated_brier": (surv, lambda yy, e: integrated_brier_score(y_train, yy, e, times)),
    }
    for metric, (est, fn) in runs.items():
        result = bootstrap_interval(y, est, metric, y_train=y_train, times=times, n_boot=15,
                                    random_state=3)
        ref = [fn(y[_rows(counts, b)], est[_rows(counts, b)]) for b in range(15)]
        np.testing.assert_allclose(result.replicates, ref, rtol=1e-12, err_msg=metric)
        assert result.estimate == pytest.approx(fn(y, est), rel=1e-12)


def test_uno_and_brier_match_the_wrappers_with_tau_truncation_and_failures():
    # small test set, short training follow-up (test times truncated at its maximum),
    # Uno's tau, and evaluation times near the ends of the follow-up: many resamples fail
    risk, y_train = _cohort(200, 3, censor=0.8)
    risk_te, y = _cohort(40, 4)
    times = np.quantile(y["time"], [0.03, 0.5, 0.93])
    surv = np.exp(-np.outer(np.exp(risk_te), times))
    counts = bootstrap_counts(40, 200, random_state=5)
    tau = float(np.quantile(y["time"], 0.6))
    with pytest.warns(UserWarning, match="undefined"):
        ibs = bootstrap_interval(y, surv, "integrated_brier", y_train=y_train, times=times,
                                 n_boot=200, random_state=5)
    ref = _loop(lambda yy, e: integrated_brier(y_train, yy, e, times), y, surv, counts)
    assert 5 < np.isnan(ref).sum() < 180
    np.testing.assert_allclose(ibs.replicates, ref, rtol=1e-12)
    assert ibs.n_failed == np.isnan(ref).sum()
    uno = bootstrap_interval(y, risk_te, "uno_c", y_train=y_train, tau=tau, n_boot=200,
                             random_state=5)
    ref = _loop(lambda yy, e: uno_c(y_train, yy, e, tau=tau), y, risk_te, counts)
    np.testing.assert_allclose(uno.replicates, ref, rtol=1e-12)
    assert uno.estimate == pytest.approx(uno_c(y_train, y, risk_te, tau=tau), rel=1e-12)


def test_grouped_counts_keep_a_patients_rows_together():
    rng = np.random.default_rng(0)
    groups = rng.choice(np.array(["p1", "p2", "p3", "p4", "p5", "p6", "p7"]), size=40)
    counts = bootstrap_counts(40, 300, groups, random_state=1)
    _, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    for g in range(sizes.shape[0]):
        rows = counts[:, inverse == g]
        assert (rows == rows[:, :1]).all()  # the same copies of every row of the patient
    # each resample draws as many patients as there are (not as many rows)
    per_patient = np.stack([counts[:, inverse == g][:, 0] for g in range(sizes.shape[0])], axis=1)
    assert (per_patient.sum(axis=1) == sizes.shape[0]).all()
    assert not (counts.sum(axis=1) == 40).all()  # rows follow their patient's draw
    # same seed, same resamples; another seed, others
    np.testing.assert_array_equal(counts, bootstrap_counts(40, 300, groups, random_state=1))
    assert not np.array_equal(counts, bootstrap_counts(40, 300, groups, random_state=2))


def test_ungrouped_counts_are_multinomial():
    counts = bootstrap_counts(50, 4000, random_state=0)
    assert (counts.sum(axis=1) == 50).all()
    # each row is drawn Binomial(50, 1/50) times: mean 1, variance 0.98
    assert counts.mean() == pytest.approx(1.0, abs=0.01)
    assert counts.var() == pytest.approx(0.98, abs=0.03)


def test_paired_difference_of_a_score_with_itself_is_zero():
    risk, y = _cohort(300, 4)
    for groups in (None, np.arange(300) // 2):
        result = paired_bootstrap(y, risk, risk.copy(), groups=groups, n_boot=200, random_state=0)
        assert result.metric == "harrell_c difference"
        assert (result.estimate, result.lower, result.upper) == (0.0, 0.0, 0.0)
        assert (result.replicates == 0).all()


def test_paired_difference_uses_the_same_resamples():
    risk, y = _cohort(300, 5)
    other = risk + np.random.default_rng(1).normal(0, 1.0, 300)
    diff = paired_bootstrap(y, risk, other, n_boot=100, random_state=9)
    a = bootstrap_interval(y, risk, n_boot=100, random_state=9)
    b = bootstrap_interval(y, other, n_boot=100, random_state=9)
    np.testing.assert_allclose(diff.replicates, a.replicates - b.replicates, atol=1e-15)
    assert diff.estimate == pytest.approx(a.estimate - b.estimate)
    # correlated scores: the difference's interval is narrower than the sum of the two widths
    assert diff.upper - diff.lower < (a.upper - a.lower) + (b.upper - b.lower)


def test_failed_resamples_are_counted_not_replaced():
    risk, y = _cohort(30, 6)
    event = np.zeros(30, dtype=bool)
    event[[3, 17]] = True  # two events: some resamples draw neither
    y = Surv.from_arrays(event, y["time"])
    counts = bootstrap_counts(30, 400, random_state=2)
    no_event = 0  # resamples without a comparable pair, as scikit-survival sees them
    for b in range(400):
        i = _rows(counts, b)
        try:
            with np.errstate(invalid="ignore"):  # sksurv: 0 / 0 when no later row was drawn
                no_event += np.isnan(concordance_index_censored(y["event"][i], y["time"][i], risk[i])[0])
        except (NoComparablePairException, ValueError):  # no event at all
            no_event += 1
    assert no_event >= (counts[:, [3, 17]].sum(axis=1) == 0).sum() > 20
    with pytest.warns(UserWarning, match=f"undefined on {no_event} of 400"):
        result = bootstrap_interval(y, risk, n_boot=400, random_state=2)
    assert result.n_failed == no_event
    assert np.isnan(result.replicates).sum() == no_event
    assert np.isfinite([result.lower, result.upper]).all()


def test_results_frame():
    risk, y = _cohort(200, 7)
    res = {"model": bootstrap_interval(y, risk, n_boot=50, random_state=0)}
    frame = results_frame(res)
    assert list(frame.columns) == ["metric", "estimate", "lower", "upper", "level", "n_boot", "n_failed"]
    assert frame.loc["model", "estimate"] == res["model"].estimate
    assert isinstance(res["model"], BootstrapResult)


def test_bad_input():
    risk, y = _cohort(50, 8)
    with pytest.raises(ValueError, match="metric must be one of"):
        bootstrap_interval(y, risk, "brier")
    with pytest.raises(ValueError, match="estimate has 49 rows, y has 50"):
        bootstrap_interval(y, risk[:49])
    bad = risk.copy()
    bad[12] = np.nan
    with pytest.raises(ValueError, match="estimate_b is not finite at row 12"):
        paired_bootstrap(y, risk, bad)
    with pytest.raises(ValueError, match="groups must have one entry per row"):
        bootstrap_interval(y, risk, groups=np.arange(10))
    with pytest.raises(ValueError, match="groups has a missing value at row 4"):
        bootstrap_interval(y, risk, groups=np.array([1, 2, 3, 4, None] + [5] * 45, dtype=object))
    with pytest.raises(ValueError, match="uno_c needs y_train"):
        bootstrap_interval(y, risk, "uno_c")
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_interval(y, risk, level=95)
    with pytest.raises(ValueError, match="one risk per row"):
        bootstrap_interval(y, np.c_[risk, risk])
    with pytest.raises(ValueError, match="n_rows and n_boot must be positive"):
        bootstrap_interval(y, risk, n_boot=0)
