"""The wide path's tempo covariates: decayed visit counts against plain loops, the module's term
equal to the Cox start's design, the Cox start finding a tempo hazard, and older files."""

import math

import numpy as np
import pytest
import torch

from survbehrt.cox_start import count_features, hazard_start
from survbehrt.data import EHRTokenizer
from survbehrt.data.batching import collate_tokens
from survbehrt.data.tokenizer import N_SPECIAL
from survbehrt.model.wide import WideTerm, covariate_matrix

from helpers import random_cohort, tempo_scores, tiny_estimator
from model_helpers import started_wide_term

SCALES = (0.25, 1.0, 4.0)


def _decayed_loop(ages, index_age, tau):
    # the definition: every visit, weighted by how long before the prediction time it was
    return sum(math.exp(-max(index_age - a, 0.0) / tau) for a in ages)


def test_decayed_visit_counts_follow_the_definition():
    X, _ = random_cohort(n=30, seed=4)
    tokens = EHRTokenizer().fit(X).transform(X)
    rows = [7, 0, 29, 7, 12]
    got = tokens.decayed_visit_counts_at(rows, SCALES)
    assert got.shape == (5, 3)
    for r, i in enumerate(rows):
        for s, tau in enumerate(SCALES):
            expected = _decayed_loop(X["ages"][i], X["index_age"][i], tau)
            assert got[r, s] == pytest.approx(expected, rel=1e-5)


def test_wide_term_adds_the_tempo_covariates_up_to_each_visit():
    X, _ = random_cohort(n=6, seed=1)
    tokens = EHRTokenizer().fit(X).transform(X)
    batch = collate_tokens(tokens, np.arange(6))
    n_slots = batch["visit_mask"].shape[1]
    wide = WideTerm(vocab_size=tokens.codes.max() + 1, n_special=N_SPECIAL, age_mean=50.0,
                    age_scale=10.0, scales=SCALES)
    gamma = [0.3, -0.1, 0.2, 0.5, -0.7, 0.9]
    with torch.no_grad():
        wide.covariate_weight.weight.copy_(torch.tensor([gamma]))
    out = wide(batch["codes"], batch["visits"], batch["attention_mask"], n_slots,
               index_age=batch["index_age"], visit_times=batch["visit_times"],
               visit_mask=batch["visit_mask"]).detach()
    for b in range(6):
        ages, index_age = X["ages"][b], X["index_age"][b]
        z = (float(batch["index_age"][b]) - 50.0) / 10.0
        for t in range(len(ages)):  # visit t sees visits 0..t
            tempo = [math.asinh(_decayed_loop(ages[:t + 1], index_age, tau)) for tau in SCALES]
            expected = (0.3 * z - 0.1 * z * z + 0.2 * math.log1p(t + 1)
                        + sum(g * m for g, m in zip(gamma[3:], tempo)))
            assert float(out[b, t]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    with pytest.raises(ValueError, match="visit_times"):
        wide(batch["codes"], batch["visits"], batch["attention_mask"], n_slots)


def test_the_modules_wide_term_at_the_last_visit_is_the_cox_starts_design():
    # one definition of the covariates: the torch term (per visit) and the numpy design
    # of the Cox start (at the last visit) agree for a fitted start
    X, y = random_cohort(n=80, seed=2)
    tokens = EHRTokenizer().fit(X).transform(X)
    rows = np.arange(80)
    cuts = np.array([0.0, 1.0, 2.5, 5.0])
    start = hazard_start(tokens, rows, y["time"], y["event"], cuts, wide=True,
                         n_special=N_SPECIAL, vocab_size=int(tokens.codes.max()) + 1,
                         tempo_scales=SCALES)
    assert start.gamma.shape == (6,)
    term = started_wide_term(tokens, rows, start, int(tokens.codes.max()) + 1, wide_scales=SCALES)
    last = tokens.n_visits_at(rows) - 1
    z = (tokens.index_age[rows] - start.age_mean) / start.age_scale
    design = covariate_matrix(z, tokens.n_visits_at(rows),
                              tokens.decayed_visit_counts_at(rows, SCALES))
    counts = count_features(tokens, N_SPECIAL, int(tokens.codes.max()) + 1, rows=rows)
    expected = counts @ start.beta + design @ start.gamma
    np.testing.assert_allclose(term[rows, last], expected, rtol=1e-4, atol=1e-4)


def test_the_cox_start_finds_a_tempo_hazard():
    # six visits each: only the tempo covariates can tell three visits in the last year
    # from three spread over years; the start alone (no epoch) ranks by them (without the
    # recent code counts, which see some of the tempo too)
    oracle, scores = tempo_scores(
        lambda scales: tiny_estimator(max_epochs=0, wide="joint", decay_scales=scales,
                                      wide_recency=None),
        SCALES, n_train=1500)
    assert scores[SCALES] >= oracle - 0.03
    assert scores[SCALES] >= scores[None] + 0.05


def test_files_without_tempo_covariates_load_as_before(tmp_path):
    X, y = random_cohort(n=60, seed=3)
    est = tiny_estimator(wide="joint", decay_scales=SCALES).fit(X, y)
    assert est.net_.module_.wide.scales == SCALES
    args = est._module_args(est.net_.module_)
    assert args["wide_scales"] == list(SCALES)
    # a file from before: module args without "wide_scales", three dense covariates
    old = dict(args)
    del old["wide_scales"]
    module = type(est)._rebuild_module(old)
    assert module.wide.covariate_weight.weight.shape == (1, 3)
    est.save(tmp_path / "m.pt")
    loaded = type(est).load(tmp_path / "m.pt")
    np.testing.assert_allclose(loaded.predict(X), est.predict(X), rtol=1e-6)


def test_bf16_wide_term_counts_visits_at_exact_times():
    # the decayed counts are float32 from exact times; only the covariate then meets bf16
    X, _ = random_cohort(n=6, seed=1)
    X["index_age"] = [max(a) + 10.3 for a in X["ages"]]  # 10.3 years: bf16 reads 10.3125
    tokens = EHRTokenizer().fit(X).transform(X)
    batch = collate_tokens(tokens, np.arange(6))
    n_slots = batch["visit_mask"].shape[1]
    wide = WideTerm(vocab_size=int(tokens.codes.max()) + 1, n_special=N_SPECIAL,
                    scales=(0.3, 1.0, 4.0))
    with torch.no_grad():
        wide.covariate_weight.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]))
    half = wide.to(torch.bfloat16)
    out = half(batch["codes"], batch["visits"], batch["attention_mask"], n_slots,
               visit_times=batch["visit_times"], visit_mask=batch["visit_mask"])
    assert out.dtype == torch.bfloat16 and half.scales == (0.3, 1.0, 4.0)
    last = tokens.n_visits_at(np.arange(6)) - 1
    exact = np.arcsinh(tokens.decayed_visit_counts_at(np.arange(6), [0.3]))[:, 0]
    got = out.detach().float().numpy()[np.arange(6), last]
    # one bf16 rounding of the covariate (8-bit mantissa), not of the times or scales
    np.testing.assert_allclose(got, exact, rtol=2 ** -8, atol=1e-30)
