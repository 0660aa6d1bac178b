"""Tests for survbehrt.survival: time grid, mapping, survival answers, step functions."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sksurv.functions import StepFunction
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from survbehrt.survival import (
    TimeGrid,
    cumulative_hazard_at,
    cumulative_hazard_from_logits,
    discretize,
    evaluate_on_times,
    hazards_from_logits,
    landmark_targets,
    risk_score,
    survival_at,
    survival_curves,
    survival_from_logits,
)


def _simulate(n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.exponential(2.0, n)
    c = rng.exponential(3.0, n)
    return Surv.from_arrays(t <= c, np.minimum(t, c))


def _bins_reference(time, event, cuts):
    """Plain loop: the bins a subject was seen through, and its event bin."""
    n_bins = len(cuts) - 1
    idx, ev_out = [], []
    for t, e in zip(time, event):
        if e and t <= cuts[-1]:
            k = 0
            while not (t <= cuts[k + 1]):
                k += 1
            idx.append(k)  # event in bin (c_k, c_{k+1}] (t = 0 in bin 0)
            ev_out.append(True)
        else:
            survived = 0
            for k in range(n_bins):
                if t >= cuts[k + 1]:  # observed all the way through bin k
                    survived += 1
            idx.append(survived)
            ev_out.append(False)
    return np.array(idx), np.array(ev_out)


# ------------------------------------------------------------------ TimeGrid


def test_grid_int_cuts_increasing_and_km_quantiles():
    y = _simulate()
    grid = TimeGrid(time_bins=8).fit(y)
    cuts = grid.cuts_
    assert cuts[0] == 0.0
    assert cuts.shape == (grid.n_bins_ + 1,)
    assert np.all(np.diff(cuts) > 0)
    assert grid.n_bins_ == 8
    assert grid.max_time_ == y["time"].max()
    # each inner edge is the first event time where the KM curve reaches its level
    event, time = y["event"], y["time"]
    t_km, s_km = kaplan_meier_estimator(event, time)
    event_times = np.unique(time[event])
    km_at = dict(zip(t_km, s_km))
    s_min = km_at[event_times[-1]]
    for k, c in enumerate(cuts[1:], start=1):
        level = 1.0 - k * (1.0 - s_min) / 8
        assert c in event_times
        assert km_at[c] <= level + 1e-9
        earlier = event_times[event_times < c]
        if earlier.size:
            assert km_at[earlier[-1]] > level + 1e-12
    assert cuts[-1] == event_times[-1]


def test_grid_explicit_edges():
    y = _simulate()
    grid = TimeGrid(time_bins=[0.5, 1.0, 2.0]).fit(y)
    np.testing.assert_array_equal(grid.cuts_, [0.0, 0.5, 1.0, 2.0])
    assert grid.n_bins_ == 3
    grid = TimeGrid(time_bins=np.array([0.0, 1.0, 4.0])).fit(y)
    np.testing.assert_array_equal(grid.cuts_, [0.0, 1.0, 4.0])
    with pytest.warns(UserWarning, match="duplicate"):
        grid = TimeGrid(time_bins=[1.0, 1.0, 3.0]).fit(y)
    np.testing.assert_array_equal(grid.cuts_, [0.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="increasing"):
        TimeGrid(time_bins=[2.0, 1.0]).fit(y)
    with pytest.raises(ValueError):
        TimeGrid(time_bins=[-1.0, 1.0]).fit(y)
    with pytest.raises(ValueError):
        TimeGrid(time_bins=0).fit(y)
    with pytest.raises(TypeError):
        TimeGrid(time_bins=2.5).fit(y)


def test_grid_duplicate_cuts_merged_with_warning():
    # one big tie: the KM curve drops in one step over several levels
    time = np.array([1.0] * 20 + [2.0, 3.0, 4.0, 5.0])
    event = np.ones(time.shape[0], dtype=bool)
    y = Surv.from_arrays(event, time)
    with pytest.warns(UserWarning, match="duplicate"):
        grid = TimeGrid(time_bins=4).fit(y)
    assert grid.n_bins_ < 4
    assert np.all(np.diff(grid.cuts_) > 0)


def test_grid_oversize_warns_and_reduces():
    y = Surv.from_arrays([True, True, False, True, True], [1.0, 2.0, 2.5, 3.0, 3.0])
    with pytest.warns(UserWarning, match="exceeds"):
        grid = TimeGrid(time_bins=20).fit(y)
    assert grid.n_bins_ == 3
    np.testing.assert_array_equal(grid.cuts_, [0.0, 1.0, 2.0, 3.0])


def test_grid_all_censored_raises_and_not_fitted():
    y = Surv.from_arrays([False, False, False], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no events"):
        TimeGrid(5).fit(y)
    with pytest.raises(NotFittedError):
        TimeGrid(5).transform([1.0], [True])


def test_grid_is_a_clean_estimator():
    grid = TimeGrid(time_bins=7)
    assert grid.get_params() == {"time_bins": 7}
    assert clone(grid).get_params() == {"time_bins": 7}
    assert not hasattr(grid, "cuts_")


def test_mapping_matches_loop_reference():
    rng = np.random.default_rng(3)
    y = _simulate(seed=1)
    grid = TimeGrid(6).fit(y)
    cuts = grid.cuts_
    # random times plus every edge exactly, 0, and beyond the last edge
    time = np.concatenate([rng.uniform(0, cuts[-1] * 1.3, 300), cuts, [0.0, cuts[-1] * 2]])
    event = rng.random(time.shape[0]) < 0.5
    time = np.concatenate([time, time])
    event = np.concatenate([event, ~event])
    idx, ev = grid.transform(time, event)
    ref_idx, ref_ev = _bins_reference(time, event, cuts)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(ev, ref_ev)
    assert idx.dtype == np.int64 and ev.dtype == bool
    # structured-array input and torch input agree
    idx_y, ev_y = grid.transform(Surv.from_arrays(event, time))
    np.testing.assert_array_equal(idx_y, ref_idx)
    idx_t, ev_t = discretize(torch.tensor(time), torch.tensor(event), cuts)
    np.testing.assert_array_equal(idx_t.numpy(), ref_idx)
    np.testing.assert_array_equal(ev_t.numpy(), ref_ev)


def test_transform_validates():
    grid = TimeGrid(3).fit(_simulate())
    with pytest.raises(TypeError, match="swap|not \\(event, time\\)"):
        grid.transform(np.array([True, False]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        grid.transform([-1.0], [True])
    with pytest.raises(ValueError):
        grid.transform([1.0, 2.0], [True])


def test_landmark_targets_numpy_and_torch():
    time = np.array([1.0, 0.5, 2.0])
    event = np.array([True, False, True])
    visit_times = np.array([[3.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = np.array([[True, True, True], [True, True, False], [True, False, False]])
    follow, ev = landmark_targets(time, event, visit_times, mask)
    for i in range(3):
        for v in range(3):
            if mask[i, v]:
                assert follow[i, v] == visit_times[i, v] + time[i]
                assert ev[i, v] == event[i]
            else:
                assert follow[i, v] == 0.0 and not ev[i, v]
    follow_t, ev_t = landmark_targets(
        torch.tensor(time),
        torch.tensor(event, dtype=torch.float32),
        torch.tensor(visit_times),
        torch.tensor(mask),
    )
    np.testing.assert_allclose(follow_t.numpy(), follow)
    np.testing.assert_array_equal(ev_t.numpy().astype(bool), ev)
    assert ev_t.dtype == torch.float32
    # the landmark rows map onto the grid with the same convention as patients
    grid = TimeGrid([1.0, 2.0, 3.0]).fit(Surv.from_arrays(event, time))
    idx, ev_grid = grid.transform(follow[mask], ev[mask])
    ref_idx, ref_ev = _bins_reference(follow[mask], ev[mask], grid.cuts_)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(ev_grid, ref_ev)


# ------------------------------------------------------- survival answers


def _softplus(a):
    return math.log1p(math.exp(a)) if a < 30 else a


def _cumhaz_loop(row, cuts, t):
    """H(t) from the definition: a constant rate eta_k / width_k in bin k, the last
    bin's rate continuing past the last edge."""
    h = 0.0
    n_bins = len(cuts) - 1
    for k in range(n_bins):
        rate = _softplus(float(row[k])) / (cuts[k + 1] - cuts[k])
        if t <= cuts[k + 1] or k == n_bins - 1:
            return h + rate * (t - cuts[k])
        h += rate * (cuts[k + 1] - cuts[k])


def test_survival_at_edges_matches_product_and_is_monotone():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(7, 6))
    surv = survival_from_logits(logits)
    for i in range(7):
        prod = 1.0
        for k in range(6):
            h = 1.0 / (1.0 + math.exp(-logits[i, k]))  # P(event in bin k | alive at its start)
            prod *= 1.0 - h
            assert surv[i, k] == pytest.approx(prod, rel=1e-10, abs=1e-300)
    assert np.all(np.diff(surv, axis=1) <= 0)
    hazards = hazards_from_logits(logits)
    cumhaz = cumulative_hazard_from_logits(logits)
    np.testing.assert_allclose(cumhaz, -np.log(surv), rtol=1e-10)
    np.testing.assert_allclose(cumhaz, np.cumsum(-np.log1p(-hazards), axis=1), rtol=1e-8)
    np.testing.assert_allclose(risk_score(logits), cumhaz.sum(axis=1))
    lt = torch.tensor(logits)
    np.testing.assert_allclose(survival_from_logits(lt).numpy(), surv, rtol=1e-12)
    np.testing.assert_allclose(hazards_from_logits(lt).numpy(), hazards, rtol=1e-12)
    np.testing.assert_allclose(risk_score(lt).numpy(), risk_score(logits), rtol=1e-12)


def test_cumulative_hazard_between_edges_matches_loop():
    rng = np.random.default_rng(3)
    cuts = np.array([0.0, 0.4, 1.0, 2.5, 4.0])
    logits = rng.normal(0, 2, size=(5, 4))
    times = np.concatenate([cuts, rng.uniform(0, 6, 40)])  # edges, inside bins, past the end
    got = cumulative_hazard_at(logits, cuts, times)
    for i in range(5):
        for j, t in enumerate(times):
            assert got[i, j] == pytest.approx(_cumhaz_loop(logits[i], cuts, t), rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(survival_at(logits, cuts, times), np.exp(-got), rtol=1e-12)
    # at the edges it is the per-bin answer
    np.testing.assert_allclose(got[:, 1:5], cumulative_hazard_from_logits(logits), rtol=1e-12)
    # torch: one time per row
    row_t = torch.tensor(rng.uniform(0, 6, 5))
    torch_h = cumulative_hazard_at(torch.tensor(logits), cuts, row_t).numpy()
    for i in range(5):
        assert torch_h[i] == pytest.approx(_cumhaz_loop(logits[i], cuts, float(row_t[i])), rel=1e-12)


def test_survival_is_continuous_and_log_linear_inside_bins():
    cuts = np.array([0.0, 1.0, 3.0])
    logits = np.array([[0.3, -1.0]])
    eps = 1e-9
    for c in cuts[1:2]:
        left, right = survival_at(logits, cuts, np.array([c - eps, c + eps]))[0]
        assert right == pytest.approx(left, abs=1e-8)  # no step at an edge
    a, m, b = survival_at(logits, cuts, np.array([1.2, 2.1, 3.0]))[0]
    assert math.log(m) == pytest.approx((math.log(a) + math.log(b)) / 2, rel=1e-12)


def test_tail_continues_the_last_rate():
    cuts = np.array([0.0, 1.0, 2.0])
    logits = np.array([[0.0, 1.0]])
    s2, s3, s4 = survival_at(logits, cuts, np.array([2.0, 3.0, 4.0]))[0]
    assert s3 / s2 == pytest.approx(math.exp(-_softplus(1.0)), rel=1e-12)
    assert s4 / s3 == pytest.approx(s3 / s2, rel=1e-12)


def test_survival_extreme_logits_finite():
    logits = np.array([[50.0, -50.0, 50.0], [-50.0, -50.0, -50.0]])
    surv = survival_at(logits, [0.0, 1.0, 2.0, 3.0], np.linspace(0, 4, 9))
    assert np.all(np.isfinite(surv)) and np.all((surv >= 0) & (surv <= 1))
    assert np.all(np.isfinite(cumulative_hazard_from_logits(logits)))
    surv_t = survival_from_logits(torch.tensor(logits, dtype=torch.float32))
    assert torch.isfinite(surv_t).all()


def test_risk_score_is_monotone_in_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 5))
    bumped = logits.copy()
    bumped[:, 2] += 1.0
    assert np.all(risk_score(bumped) > risk_score(logits))


@pytest.mark.parametrize("kind", ["survival", "cumhaz"])
def test_survival_curves_cover_domain_and_match_array(kind):
    y = _simulate(seed=2)
    grid = TimeGrid(7).fit(y)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, grid.n_bins_))
    funcs = survival_curves(logits, grid.cuts_, grid.max_time_, kind=kind)
    assert funcs.shape == (5,) and funcs.dtype == object
    assert all(isinstance(f, StepFunction) for f in funcs)
    assert funcs[0].domain == (0.0, grid.max_time_)
    test_times = np.concatenate(
        [np.sort(y["time"]), grid.cuts_, [0.0, grid.max_time_], rng.uniform(0, grid.max_time_, 50)]
    )
    array = evaluate_on_times(logits, grid.cuts_, test_times, kind=kind)
    for i, fn in enumerate(funcs):
        np.testing.assert_allclose(fn(test_times), array[i], rtol=1e-12)
        for t, v in zip(test_times[:40], array[i, :40]):
            h = _cumhaz_loop(logits[i], grid.cuts_, t)
            assert v == pytest.approx(math.exp(-h) if kind == "survival" else h, rel=1e-10)
        # the stored knots hold the exact curve too (for plots and sksurv code reading x / y)
        np.testing.assert_allclose(fn.y, evaluate_on_times(logits[i : i + 1], grid.cuts_, fn.x,
                                                           kind=kind)[0], rtol=1e-12)
    if kind == "survival":
        assert np.all(np.diff(evaluate_on_times(logits, grid.cuts_, np.sort(test_times)), axis=1) <= 0)
    with pytest.raises(ValueError):
        funcs[0](grid.max_time_ * 1.01)


def test_survival_curves_domain_reaches_last_edge_when_edges_exceed_data():
    funcs = survival_curves(np.array([[0.1, -0.5]]), [0.0, 1.0, 10.0], max_time=3.0)
    assert funcs[0].domain == (0.0, 10.0)
    assert funcs[0](0.0) == 1.0
    assert funcs[0](10.0) == pytest.approx(survival_from_logits(np.array([[0.1, -0.5]]))[0, -1])


def test_survival_curves_validate():
    with pytest.raises(ValueError):
        survival_curves(np.ones((2, 3)), [0.0, 1.0], 2.0)
    with pytest.raises(ValueError):
        evaluate_on_times(np.ones((2, 1)), [0.0, 1.0], [0.5], kind="hazard")
    with pytest.raises(ValueError):
        evaluate_on_times(np.ones((2, 1)), [0.0, 1.0], [-0.5])


def test_no_warnings_on_clean_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TimeGrid(5).fit(_simulate())
