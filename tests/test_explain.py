"""Tests for survbehrt.explain: completeness of the integrated gradients, the wide path's exact
contributions, the tidy frame, and signal codes found on synthetic cohorts of known risk."""

import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from survbehrt.datasets import make_synthetic_ehr
from survbehrt.explain import explain, summarize_codes, visit_attributions
from tests.helpers import random_cohort, tiny_estimator


def _with_static_and_values(X, seed=0):
    rng = np.random.default_rng(seed)
    X = X.copy()
    X["static"] = [["SEX//F"] if rng.random() < 0.5 else ["SEX//M"] for _ in range(len(X))]
    X["values"] = [[[float(rng.normal()) if c == "C1" else None for c in visit] for visit in row]
                   for row in X["codes"]]
    return X


@pytest.fixture(scope="module")
def fitted():
    X, y = random_cohort(n=60, seed=1)
    X = _with_static_and_values(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # with the wide path's recent code counts: their weights are attributed too
        est = tiny_estimator(max_epochs=3, wide_recency=1.0).fit(X, y)
    # a strongly non-linear deep part, so that completeness is not met by a near-linear model
    torch.manual_seed(0)
    with torch.no_grad():
        for p in est.net_.module_.head.parameters():
            p.normal_(0.0, 0.8)
        est.net_.module_.wide.code_weight.weight.normal_(0.0, 0.5)
        est.net_.module_.wide.recent_weight.weight.normal_(0.0, 0.5)
    return est, X


def test_completeness_and_scale(fitted):
    est, X = fitted
    attributions, rows = explain(est, X, return_rows=True)
    log_risk = rows["log_risk"].to_numpy()
    np.testing.assert_allclose(np.exp(log_risk), est.predict(X), rtol=1e-4)
    spread = log_risk.max() - log_risk.min()
    assert spread > 0.5  # the check below is not met by a flat model
    assert (rows["error"].abs() <= 0.01 * spread).all()
    # the frame's attributions are the ones summed in rows["total"]
    total = attributions.groupby("row")["attribution"].sum()
    np.testing.assert_allclose(total.to_numpy(), rows["total"].to_numpy(), rtol=1e-5, atol=1e-6)
    # a too-coarse path breaks completeness: the check can fail
    _, coarse = explain(est, X, n_steps=1, return_rows=True)
    assert (coarse["error"].abs() > 0.01 * spread).any()


def test_completeness_without_wide_path_values_or_continuous_time():
    X, y = random_cohort(n=40, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = tiny_estimator(wide=None, continuous_time=False, n_value_bins=0).fit(X, y)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in est.net_.module_.head.parameters():
            p.normal_(0.0, 0.8)
    attributions, rows = explain(est, X, return_rows=True)
    assert set(attributions["part"]) == {"deep"} and attributions["wide_logit"].isna().all()
    spread = rows["log_risk"].max() - rows["log_risk"].min()
    assert spread > 0.5
    assert (rows["error"].abs() <= 0.01 * spread).all()
    np.testing.assert_allclose(np.exp(rows["log_risk"]), est.predict(X), rtol=1e-4)


def test_baseline_is_the_same_timeline_without_codes(fitted):
    # the baseline keeps ages, visits, positions and special tokens and drops every code,
    # value and wide weight: rows with the same timeline and other codes, values and
    # static codes share it
    est, X = fitted
    _, rows = explain(est, X.iloc[:8], return_rows=True)
    other = {f"C{i}": f"C{(i + 5) % 12}" for i in range(12)}
    Xb = X.iloc[:8].copy()
    Xb["codes"] = [[[other[c] for c in v] for v in row] for row in Xb["codes"]]
    Xb["static"] = [["SEX//M"] if s == ["SEX//F"] else ["SEX//F"] for s in Xb["static"]]
    Xb["values"] = [[[None] * len(v) for v in row] for row in Xb["codes"]]
    _, rows_b = explain(est, Xb, return_rows=True)
    assert not np.allclose(rows_b["log_risk"], rows["log_risk"], rtol=1e-3)
    np.testing.assert_allclose(rows_b["baseline_log_risk"], rows["baseline_log_risk"], rtol=1e-5)


def test_wide_logit_is_the_exact_count_term(fitted):
    # beta_c log(1 + n_c) over the codes, plus rho_c exp(-r / tau) over each timed
    # occurrence (the recent counts; static codes have none)
    est, X = fitted
    attributions = explain(est, X)
    wide = attributions[attributions["part"] == "wide"]
    term = est.net_.module_.wide
    beta = term.code_weight.weight.detach().numpy()[:, 0]
    rho = term.recent_weight.weight.detach().numpy()[:, 0]
    assert term.recency == est.wide_recency and np.abs(rho).max() > 0
    vocab = est.tokenizer_.vocabulary_
    for row in range(len(X)):
        counts = Counter(sum(X["codes"].iloc[row], []) + list(X["static"].iloc[row]))
        expected = sum(beta[vocab[c]] * np.log1p(n) for c, n in counts.items())
        index_age = X["index_age"].iloc[row]
        for visit, age in zip(X["codes"].iloc[row], X["ages"].iloc[row]):
            expected += sum(rho[vocab[c]] * np.exp(-(index_age - age) / term.recency) for c in visit)
        assert wide.loc[wide["row"] == row, "wide_logit"].sum() == pytest.approx(expected, abs=1e-5)


def test_frame_layout(fitted):
    est, X = fitted
    attributions = explain(est, X.iloc[:10])
    assert {"row", "visit", "age", "code", "attribution", "part", "kind", "wide_logit"} <= set(
        attributions.columns)
    static = attributions[attributions["kind"] == "static"]
    assert set(static["code"]) <= {"SEX//F", "SEX//M"}
    assert (static["visit"] == -1).all() and static["age"].isna().all()
    assert set(attributions.loc[attributions["kind"] == "value", "code"]) == {"C1"}
    # one deep code line per code occurrence, with the visit's age
    deep = attributions[(attributions["part"] == "deep") & (attributions["kind"] == "code")]
    for row in range(10):
        visits = X["codes"].iloc[row]
        got = deep[deep["row"] == row].sort_values("token")
        assert got["code"].tolist() == sum(visits, [])
        ages = [a for v, a in zip(visits, X["ages"].iloc[row]) for _ in v]
        np.testing.assert_allclose(got["age"], ages, atol=1e-3)
    per_visit = visit_attributions(attributions)
    np.testing.assert_allclose(per_visit.groupby("row")["attribution"].sum(),
                               attributions.groupby("row")["attribution"].sum(), atol=1e-6)
    # the estimator's method is the function
    np.testing.assert_array_equal(est.explain(X.iloc[:10])["attribution"], attributions["attribution"])


def test_bad_input(fitted):
    est, X = fitted
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        explain(est, X, n_steps=0)
    with pytest.raises(Exception, match="not fitted"):
        explain(tiny_estimator(), X)


def _signal_ranking(scenario, n_patients, epochs):
    X, y, _, info = make_synthetic_ehr(n_patients, scenario, random_state=0, return_info=True)
    if scenario == "sequence":
        signal = sum(info["signal_codes"].values(), [])
    else:
        signal = [c for c in info["effects"] if c != "age"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = tiny_estimator(embedding_dim=32, ff_dim=64, max_epochs=epochs).fit(X, y)
    summary = summarize_codes(explain(est, X.iloc[:300]))
    return summary, signal


def _check_signal(summary, signal, top):
    frequent = summary[summary["count"] >= 30]  # rare codes: too few occurrences to rank
    in_top = frequent.index[:top].isin(signal).sum()
    other = summary[~summary.index.isin(signal)]
    sig = summary[summary.index.isin(signal)]
    noise = np.average(other["mean"].abs(), weights=other["count"])
    strength = np.average(sig["mean_abs"], weights=sig["count"])
    return in_top, noise / strength


# The rules, per case: at least ``min_top`` of the signal codes among the top ``top``
# codes (of those with >= 30 occurrences in 300 explained rows), and the codes the
# generator never uses for risk with a mean signed attribution (count-weighted) under
# ``max_ratio`` times the signal codes' mean |attribution|. Sequence: the 10 codes of
# groups A-D; counts: the 6 counted codes. The fast case (about 6 s) is the counts
# cohort with fewer patients and epochs, and a looser bound on the other codes.
@pytest.mark.parametrize("scenario, n_patients, epochs, top, min_top, max_ratio", [
    pytest.param("sequence", 1500, 8, 12, 8, 0.25, marks=pytest.mark.slow),
    pytest.param("counts", 1500, 8, 8, 5, 0.25, marks=pytest.mark.slow),
    pytest.param("counts", 1200, 4, 8, 5, 0.35, id="counts-fast"),
])
def test_signal_codes_rank_on_top(scenario, n_patients, epochs, top, min_top, max_ratio):
    summary, signal = _signal_ranking(scenario, n_patients, epochs)
    in_top, ratio = _check_signal(summary, signal, top)
    print(f"{scenario}: {in_top} of {len(signal)} in the top {top}, noise ratio {ratio:.3f}")
    assert in_top >= min_top
    assert ratio < max_ratio
