"""survbehrt.competing_metrics: each metric against a plain loop over its definition, against
scikit-survival's Aalen–Johansen, against its single-cause counterpart, and on simulated
data whose cumulative incidence is known."""

from functools import lru_cache

import numpy as np
import pytest
from sksurv.nonparametric import CensoringDistributionEstimator

from survbehrt import metrics
from survbehrt.competing_metrics import (
    aalen_johansen,
    cause_specific_auc,
    cause_specific_brier,
    cause_specific_c,
    cif_calibration_table,
    cif_calibration_test,
)
from survbehrt.data import competing_y


def _sample(seed, n=150, rates=(0.3, 0.2), grid=0.25):
    """Constant cause-specific hazards, uniform censoring, times on a grid (ties)."""
    rng = np.random.default_rng(seed)
    rates = np.asarray(rates)
    t_event = rng.exponential(1.0 / rates.sum(), n)
    cause = 1 + rng.choice(len(rates), n, p=rates / rates.sum())
    t_cens = rng.uniform(0, 6, n)
    time = np.minimum(t_event, t_cens)
    if grid:
        time = np.ceil(time / grid) * grid
    event = np.where(t_event <= t_cens, cause, 0)
    # a risk that knows the cause a little, with ties
    risk = np.round((event == 1) * 0.8 + rng.normal(size=n), 1)
    return competing_y(event, time), risk


def _single(y):
    out = np.empty(len(y), dtype=[("event", bool), ("time", float)])
    out["event"], out["time"] = y["event"] > 0, y["time"]
    return out


def _g(y_train):
    """G(t), scikit-survival's censoring Kaplan-Meier of y_train, one time at a time."""
    cens = CensoringDistributionEstimator().fit(_single(y_train))
    return lru_cache(maxsize=None)(lambda t: float(cens.predict_proba(np.array([t]))[0]))


# ------------------------------------------------------------------ references


def _score(a, b):
    """1 when the case's risk is higher, one half for a tie (within 1e-8), else 0."""
    return 0.5 if abs(a - b) <= 1e-8 else float(a > b)


def ref_aalen_johansen(event, time, n_causes):
    """Loop over distinct times: F_k += S(t-) d_k(t) / n(t); S *= 1 - d(t) / n(t)."""
    times = sorted(set(time.tolist()))
    surv, cif, out = 1.0, np.zeros(n_causes + 1), []
    for t in times:
        at_risk = sum(1 for s in time if s >= t)
        died = [sum(1 for e, s in zip(event, time) if s == t and e == k)
                for k in range(n_causes + 1)]
        for k in range(1, n_causes + 1):
            cif[k] += surv * died[k] / at_risk
        surv *= 1 - sum(died[1:]) / at_risk
        cif[0] = 1 - surv
        out.append(cif.copy())
    return np.array(times), np.array(out).T


def ref_c(event, time, risk, k, weight_of=None, tau=np.inf):
    """Wolbers' comparable pairs, one by one."""
    w = weight_of if weight_of is not None else (lambda i: 1.0)
    num = den = 0.0
    for i in range(len(event)):
        if event[i] != k or not time[i] < tau:
            continue
        for j in range(len(event)):
            if j == i:
                continue
            if time[j] > time[i] or (time[j] == time[i] and event[j] != k):
                weight = w(i) * w(i)  # j event-free at t_i
            elif time[j] < time[i] and event[j] not in (0, k):
                weight = w(i) * w(j)  # j had another cause first
            else:
                continue
            num += weight * _score(risk[i], risk[j])
            den += weight
    return num / den


def ref_auc(event, time, risk, t, k, G, controls):
    num = den = 0.0
    for i in range(len(event)):
        if not (time[i] <= t and event[i] == k):
            continue
        for j in range(len(event)):
            if time[j] > t:
                wj = 1 / G(t)
            elif controls == "not-cause" and time[j] <= t and event[j] not in (0, k):
                wj = 1 / G(time[j])
            else:
                continue
            weight = wj / G(time[i])
            num += weight * _score(risk[i], risk[j])
            den += weight
    return num / den


def ref_brier(event, time, cif, t, k, G):
    total = 0.0
    for i in range(len(event)):
        if time[i] <= t and event[i] != 0:
            total += ((event[i] == k) - cif[i]) ** 2 / G(time[i])
        elif time[i] > t:
            total += cif[i] ** 2 / G(t)
    return total / len(event)


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", range(3))
def test_aalen_johansen_matches_the_loop_and_keeps_absent_causes(seed):
    y, _ = _sample(seed, n=80)
    y = competing_y(np.where(y["event"] == 2, 3, y["event"]), y["time"])  # no cause 2
    times, cif = aalen_johansen(y, n_causes=4)  # nor 4
    ref_times, ref_cif = ref_aalen_johansen(y["event"], y["time"], 4)
    np.testing.assert_array_equal(times, ref_times)
    np.testing.assert_allclose(cif, ref_cif, atol=1e-12)
    assert not cif[2].any() and not cif[4].any() and cif[3].any()
    _, _, ci = aalen_johansen(y, n_causes=4, conf_type="log-log")
    assert np.isnan(ci[[2, 4]]).all() and (ci[1, 0] <= cif[1] + 1e-12).all()
    # a single cause: scikit-survival fails there; 1 - Kaplan-Meier
    one = competing_y(np.where(y["event"] == 3, 0, y["event"]), y["time"])
    np.testing.assert_allclose(aalen_johansen(one, n_causes=2)[1],
                               ref_aalen_johansen(one["event"], one["time"], 2)[1], atol=1e-12)


def test_aalen_johansen_recovers_the_true_incidence():
    rates = np.array([0.3, 0.2])
    y, _ = _sample(0, n=8000, rates=rates, grid=0)
    times, cif = aalen_johansen(y)
    grid = np.linspace(0.2, 4, 20)
    total = rates.sum()
    for k in (1, 2):
        truth = rates[k - 1] / total * (1 - np.exp(-total * grid))
        got = cif[k][np.searchsorted(times, grid, side="right") - 1]
        assert np.abs(got - truth).max() < 0.02


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cause", [1, 2])
def test_cause_specific_c_matches_the_pairs(seed, cause):
    y, risk = _sample(seed, n=60)
    e, t = y["event"], y["time"]
    assert cause_specific_c(y, risk, cause) == pytest.approx(ref_c(e, t, risk, cause), abs=1e-12)
    y_train, _ = _sample(seed + 10, n=200)
    G = _g(y_train)

    def w(i):
        return 1 / G(t[i]) if e[i] else 0.0

    for tau in (None, 2.0):
        got = cause_specific_c(y, risk, cause, y_train=y_train, tau=tau)
        want = ref_c(e, t, risk, cause, w, tau=np.inf if tau is None else tau)
        assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_one_cause_gives_harrell_and_uno(seed):
    y, risk = _sample(seed, rates=(0.4,))
    y_train, _ = _sample(seed + 10, n=300, rates=(0.4,))
    assert cause_specific_c(y, risk, 1) == pytest.approx(metrics.harrell_c(_single(y), risk),
                                                         abs=1e-12)
    for tau in (None, 1.5):
        assert cause_specific_c(y, risk, 1, y_train=y_train, tau=tau) == pytest.approx(
            metrics.uno_c(_single(y_train), _single(y), risk, tau=tau), abs=1e-12)
    # a bool y is read as one cause
    assert cause_specific_c(_single(y), risk, 1) == cause_specific_c(y, risk, 1)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("controls", ["event-free", "not-cause"])
def test_auc_matches_the_pairs(seed, controls):
    y, risk = _sample(seed, n=60)
    y_train, _ = _sample(seed + 10, n=200)
    g = _g(y_train)

    times = np.array([0.5, 1.0, 2.0])
    est = risk[:, None] + np.array([0.0, 0.3, -0.2]) * y["time"][:, None]  # time-dependent
    for k in (1, 2):
        _, auc, _ = cause_specific_auc(y_train, y, est, times, k, controls=controls)
        want = [ref_auc(y["event"], y["time"], est[:, m], t, k, g, controls)
                for m, t in enumerate(times)]
        np.testing.assert_allclose(auc, want, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_one_cause_auc_is_scikit_survivals(seed):
    y, risk = _sample(seed, rates=(0.4,))
    y_train, _ = _sample(seed + 10, n=300, rates=(0.4,))
    times = np.array([0.5, 1.0, 1.5, 2.5])
    got_times, auc, mean_auc = cause_specific_auc(y_train, y, risk, times, 1)
    ref_times, ref_auc_, ref_mean = metrics.time_dependent_auc(_single(y_train), _single(y),
                                                              risk, times)
    np.testing.assert_allclose(auc, ref_auc_, atol=1e-12)
    assert mean_auc == pytest.approx(ref_mean, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_brier_matches_the_rows_and_reduces_to_one_cause(seed):
    y, risk = _sample(seed, n=60)
    y_train, _ = _sample(seed + 10, n=200)
    g = _g(y_train)

    times = np.array([0.5, 1.0, 2.0])
    cif = 1 / (1 + np.exp(-risk[:, None] - times[None, :]))
    for k in (1, 2):
        _, scores = cause_specific_brier(y_train, y, cif, times, k)
        want = [ref_brier(y["event"], y["time"], cif[:, m], t, k, g)
                for m, t in enumerate(times)]
        np.testing.assert_allclose(scores, want, atol=1e-12)
    y1, _ = _sample(seed, rates=(0.4,))
    y1_train, _ = _sample(seed + 10, n=300, rates=(0.4,))
    surv = np.exp(-np.outer(np.exp(np.linspace(-1, 1, len(y1))), times * 0.4))
    _, scores = cause_specific_brier(y1_train, y1, 1 - surv, times, 1)
    _, ref = metrics.brier(_single(y1_train), _single(y1), surv, times)
    np.testing.assert_allclose(scores, ref, atol=1e-12)


def test_the_true_incidence_scores_better_than_one_minus_kaplan_meier():
    # 1 - KM of the cause-specific hazard ignores the competitor: it overestimates
    rates = np.array([0.3, 0.3])
    y, _ = _sample(1, n=4000, rates=rates, grid=0)
    y_train, _ = _sample(2, n=4000, rates=rates, grid=0)
    times = np.array([1.0, 2.0, 3.0])
    truth = 0.5 * (1 - np.exp(-0.6 * times))
    naive = 1 - np.exp(-0.3 * times)
    n = len(y)
    _, true_bs = cause_specific_brier(y_train, y, np.tile(truth, (n, 1)), times, 1)
    _, naive_bs = cause_specific_brier(y_train, y, np.tile(naive, (n, 1)), times, 1)
    assert (true_bs < naive_bs).all()
    # the Brier score of a constant prediction p is about F(1 - p)^2 + (1 - F) p^2
    np.testing.assert_allclose(true_bs, truth * (1 - truth), atol=0.015)


def test_calibration_groups_against_the_loop_and_one_cause():
    y, risk = _sample(3, n=200)
    pred = 1 / (1 + np.exp(-risk))
    table = cif_calibration_table(y, pred, 2.0, cause=1, n_groups=4)
    order = np.argsort(pred, kind="stable")
    for g, idx in enumerate(np.array_split(order, 4)):
        times, cif = ref_aalen_johansen(y["event"][idx], y["time"][idx], 2)
        i = np.searchsorted(times, 2.0, side="right") - 1
        assert table.loc[g, "observed"] == pytest.approx(cif[1, i], abs=1e-12)
        assert table.loc[g, "predicted"] == pytest.approx(pred[idx].mean(), abs=1e-12)
        assert table.loc[g, "n_events"] == ((y["event"][idx] == 1) & (y["time"][idx] <= 2)).sum()
        assert table.loc[g, "lower"] <= table.loc[g, "observed"] <= table.loc[g, "upper"]
    y1, risk1 = _sample(3, n=200, rates=(0.4,))
    surv = 1 / (1 + np.exp(risk1))
    one = cif_calibration_table(y1, 1 - surv, 2.0, cause=1, n_groups=4)
    km = metrics.calibration_table(_single(y1), surv, 2.0, n_groups=4)
    np.testing.assert_allclose(one["observed"], 1 - km["observed"], atol=1e-12)


def test_the_true_model_is_calibrated():
    rates = np.array([0.2, 0.4])
    rng = np.random.default_rng(5)
    n = 6000
    scale = np.exp(rng.normal(0, 0.7, n))  # the patient's multiplier of both hazards
    total = rates.sum() * scale
    t_event = rng.exponential(1 / total)
    cause = 1 + (rng.random(n) < rates[1] / rates.sum())
    t_cens = rng.uniform(0, 5, n)
    y = competing_y(np.where(t_event <= t_cens, cause, 0), np.minimum(t_event, t_cens))
    truth = rates[0] / rates.sum() * (1 - np.exp(-total * 1.5))
    table = cif_calibration_table(y, truth, 1.5, cause=1, n_groups=5)
    assert ((table["lower"] <= table["predicted"]) & (table["predicted"] <= table["upper"])).all()
    assert table["predicted"].is_monotonic_increasing
    wrong = cif_calibration_table(y, 1 - np.exp(-rates[0] * scale * 1.5), 1.5, 1, n_groups=5)
    assert not ((wrong["lower"] <= wrong["predicted"]) & (wrong["predicted"] <= wrong["upper"])).all()
    assert cif_calibration_test(table).p_value > 0.05
    assert cif_calibration_test(wrong).p_value < 1e-6
    assert cif_calibration_test(table).dof == 5


def test_the_standard_error_matches_the_spread_of_the_estimate():
    observed, se = [], []
    for seed in range(300):
        y, _ = _sample(seed, n=300, grid=0)
        table = cif_calibration_table(y, np.zeros(len(y)), 2.0, cause=1, n_groups=1)
        observed.append(table["observed"][0])
        se.append(table["se"][0])
    assert np.mean(se) == pytest.approx(np.std(observed), rel=0.1)


def test_bad_input():
    y, risk = _sample(0, n=30)
    with pytest.raises(ValueError, match=r"cause must be in 1..2"):
        cause_specific_c(y, risk, 3)
    named = competing_y(y["event"], y["time"], causes=["mi", "death"])
    assert cause_specific_c(named, risk, "death") == cause_specific_c(y, risk, 2)
    with pytest.raises(ValueError, match=r"'stroke' is not one of the causes"):
        cause_specific_c(named, risk, "stroke")
    with pytest.raises(ValueError, match="shape"):
        cause_specific_auc(y, y, risk[:5], [1.0], 1)
    with pytest.raises(ValueError, match="controls must be"):
        cause_specific_auc(y, y, risk, [1.0], 1, controls="all")
    with pytest.raises(ValueError, match="estimate row 2 is not finite"):
        cause_specific_c(y, np.r_[risk[:2], np.nan, risk[3:]], 1)
