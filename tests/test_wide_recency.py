"""The wide path's recent code counts: against plain loops over ``X``, the module's term equal
to the Cox start's design, the start finding a recency hazard and leaving them out where
they do not help, bf16, and older files."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from survbehrt.cox_start import count_features, hazard_start
from survbehrt.data import EHRTokenizer
from survbehrt.data.batching import collate_tokens
from survbehrt.data.tokenizer import N_SPECIAL
from survbehrt.metrics import harrell_c
from survbehrt.model import BEHRTCompetingModule, BEHRTSurvivalModule
from survbehrt.model.wide import WideTerm, covariate_matrix

from helpers import exponential_outcome, random_cohort, six_visit_ages, tiny_estimator
from model_helpers import started_wide_term, tiny_config

TAU = 1.0


def _with_static_and_repeats(n, seed):
    # static codes (no time: no recent count) and codes repeated within a visit
    X, y = random_cohort(n=n, seed=seed)
    X["static"] = [["SEX//F"] if i % 2 else ["SEX//M", "C3"] for i in range(n)]
    X["codes"] = [[v + v[:1] for v in row] for row in X["codes"]]
    return X, y


def _recent_loop(X, row, tau):
    # the definition: every timed occurrence of a code, weighted by how long before the
    # prediction time its visit was
    out = {}
    for visit, age in zip(X["codes"].iloc[row], X["ages"].iloc[row]):
        for c in visit:
            out[c] = out.get(c, 0.0) + math.exp(-max(X["index_age"].iloc[row] - age, 0.0) / tau)
    return out


def test_recent_counts_follow_the_definition():
    X, _ = _with_static_and_repeats(25, seed=5)
    tok = EHRTokenizer().fit(X)
    tokens = tok.transform(X)
    vocab = tok.vocabulary_
    rows = [3, 0, 24, 3]
    got = count_features(tokens, N_SPECIAL, tok.vocab_size_, rows=rows, recency=0.7).toarray()
    alone = count_features(tokens, N_SPECIAL, tok.vocab_size_, rows=rows).toarray()
    assert got.shape == (4, 2 * tok.vocab_size_)
    np.testing.assert_array_equal(got[:, : tok.vocab_size_], alone)
    for r, i in enumerate(rows):
        expected = np.zeros(tok.vocab_size_)
        for c, q in _recent_loop(X, i, 0.7).items():
            expected[vocab[c]] = q
        np.testing.assert_allclose(got[r, tok.vocab_size_ :], expected, rtol=1e-5, atol=1e-12)
    # a static code alone has no recent count, and is no presence in the sparse matrix
    sex = tok.vocab_size_ + vocab["SEX//M"]
    assert got[1, sex] == 0.0 and sex not in set(
        count_features(tokens, N_SPECIAL, tok.vocab_size_, rows=[0], recency=0.7).indices)


def test_wide_term_adds_the_recent_counts_up_to_each_visit():
    X, _ = _with_static_and_repeats(6, seed=1)
    tok = EHRTokenizer().fit(X)
    tokens = tok.transform(X)
    batch = collate_tokens(tokens, np.arange(6))
    n_slots = batch["visit_mask"].shape[1]
    wide = WideTerm(vocab_size=tok.vocab_size_, n_special=N_SPECIAL, recency=TAU)
    rho = torch.linspace(-1.0, 1.0, tok.vocab_size_)
    with torch.no_grad():
        wide.recent_weight.weight.copy_(rho[:, None])
    out = wide(batch["codes"], batch["visits"], batch["attention_mask"], n_slots,
               visit_times=batch["visit_times"], visit_mask=batch["visit_mask"],
               timed=batch["age_bins"] > 0).detach()
    for b in range(6):
        for t in range(len(X["ages"].iloc[b])):  # visit t sees visits 0..t
            cut = X.iloc[[b]].copy()
            cut.at[cut.index[0], "codes"] = X["codes"].iloc[b][: t + 1]
            cut.at[cut.index[0], "ages"] = X["ages"].iloc[b][: t + 1]
            expected = sum(float(rho[tok.vocabulary_[c]]) * q
                           for c, q in _recent_loop(cut, 0, TAU).items())
            assert float(out[b, t]) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="recent code counts"):
        wide(batch["codes"], batch["visits"], batch["attention_mask"], n_slots,
             visit_times=batch["visit_times"], visit_mask=batch["visit_mask"])
    with pytest.raises(ValueError, match="recency"):
        WideTerm(vocab_size=10, n_special=N_SPECIAL, recency=0.0)


def test_the_modules_wide_term_at_the_last_visit_is_the_cox_starts_design():
    X, y, _ = recency_cohort(400, seed=2)
    X["static"] = [["SEX//F"] if i % 2 else ["SEX//M"] for i in range(len(X))]
    tok = EHRTokenizer().fit(X)
    tokens = tok.transform(X)
    rows, vocab = np.arange(len(X)), tok.vocab_size_
    cuts = np.array([0.0, 1.0, 2.5, 5.0])
    start = hazard_start(tokens, rows, y["time"], y["event"], cuts, wide=True,
                         n_special=N_SPECIAL, vocab_size=vocab, recency=TAU)
    assert start.beta.shape == (2 * vocab,) and start.recent
    term = started_wide_term(tokens, rows, start, vocab, wide_recency=TAU)
    last = tokens.n_visits_at(rows) - 1
    z = (tokens.index_age[rows] - start.age_mean) / start.age_scale
    design = covariate_matrix(z, tokens.n_visits_at(rows))
    counts = count_features(tokens, N_SPECIAL, vocab, rows=rows, recency=TAU)
    np.testing.assert_allclose(term[rows, last], counts @ start.beta + design @ start.gamma,
                               rtol=1e-4, atol=1e-4)
    # the competing module takes each cause's (2 vocab,) weights as columns
    competing = BEHRTCompetingModule(tiny_config(vocab_size=vocab), 3, 2, wide=True,
                                     wide_recency=TAU)
    competing.start_from(np.zeros((2, 3)), np.stack([start.beta, -start.beta], axis=1),
                         np.stack([start.gamma, start.gamma]))
    np.testing.assert_allclose(competing.wide.recent_weight.weight[:, 1].detach().numpy(),
                               -start.beta[vocab:])
    module = BEHRTSurvivalModule(tiny_config(vocab_size=vocab), 3, wide=True, wide_recency=TAU)
    with pytest.raises(ValueError, match="then the recent counts"):
        module.start_from(start.baseline, start.beta[:vocab], start.gamma)


def recency_cohort(n, seed):
    """Six visits over 0.3 to 8 years; C0 in exactly two of them (every patient has the
    same count), and a hazard 7.4 times higher where it occurred in the year before the
    prediction time, whatever its count (the recency of C0, alone).

    Returns ``X``, ``y`` and the true log-hazard ratio of each row.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ages = six_visit_ages(rng)
        codes = [[f"C{c}" for c in rng.integers(1, 20, 2)] for _ in range(6)]
        for v in rng.choice(6, 2, replace=False):
            codes[v].append("C0")
        rows.append({"codes": codes, "ages": ages.tolist(), "index_age": ages[-1] + 0.01})
    X = pd.DataFrame(rows)
    risk = np.array([2.0 * _recent_loop(X, i, TAU).get("C0", 0.0) for i in range(n)])
    return X, exponential_outcome(np.random.default_rng(seed), risk), risk


def test_the_cox_start_finds_a_recency_hazard():
    # every patient has C0 twice: only its recency tells the risk; the start alone (no
    # epoch, no tempo covariates) ranks by it
    X, y, _ = recency_cohort(1500, 0)
    X_test, y_test, risk = recency_cohort(2000, 1)
    scores = {}
    for recency in (None, TAU):
        est = tiny_estimator(max_epochs=0, wide="joint", decay_scales=None, wide_recency=recency)
        scores[recency] = harrell_c(y_test, est.fit(X, y).predict(X_test))
        assert est.wide_recent_ is (None if recency is None else True)
    oracle = harrell_c(y_test, risk)
    assert scores[TAU] >= oracle - 0.03
    assert scores[TAU] >= scores[None] + 0.05


def test_the_cox_start_leaves_them_out_where_they_do_not_help():
    # a hazard in C0's count over the whole history, whenever it occurred: the folds
    # keep the counts alone, and the start is the start without recent counts
    X, _ = random_cohort(n=600, seed=8)
    risk = np.array([0.8 * sum(v.count("C0") for v in row) for row in X["codes"]])
    y = exponential_outcome(np.random.default_rng(8), risk)
    fits = {r: tiny_estimator(max_epochs=0, wide="joint", wide_recency=r).fit(X, y)
            for r in (None, TAU)}
    module = fits[TAU].net_.module_
    assert fits[TAU].wide_recent_ is False
    assert torch.count_nonzero(module.wide.recent_weight.weight) == 0
    np.testing.assert_allclose(fits[TAU].predict(X), fits[None].predict(X), rtol=1e-5)


def test_bf16_wide_term_weighs_codes_at_exact_times():
    # the weights exp(-r / tau) are float32 from exact times; only the term meets bf16
    X, _ = random_cohort(n=6, seed=1)
    X["index_age"] = [max(a) + 10.3 for a in X["ages"]]  # 10.3 years: bf16 reads 10.3125
    tok = EHRTokenizer().fit(X)
    tokens = tok.transform(X)
    batch = collate_tokens(tokens, np.arange(6))
    wide = WideTerm(vocab_size=tok.vocab_size_, n_special=N_SPECIAL, recency=0.3)
    with torch.no_grad():
        wide.recent_weight.weight.fill_(1.0)
    half = wide.to(torch.bfloat16)
    out = half(batch["codes"], batch["visits"], batch["attention_mask"],
               batch["visit_mask"].shape[1], visit_times=batch["visit_times"],
               visit_mask=batch["visit_mask"], timed=batch["age_bins"] > 0)
    assert out.dtype == torch.bfloat16 and half.recency == 0.3
    last = tokens.n_visits_at(np.arange(6)) - 1
    exact = count_features(tokens, N_SPECIAL, tok.vocab_size_, recency=0.3)
    exact = np.asarray(exact[:, tok.vocab_size_ :].sum(axis=1)).ravel()
    got = out.detach().float().numpy()[np.arange(6), last]
    # a few bf16 roundings of the sum of tiny weights (8-bit mantissa), not of the times:
    # a 10.3125-year gap would be 4 % off at this scale
    np.testing.assert_allclose(got, exact, rtol=2 ** -6, atol=1e-30)


def test_files_without_recent_counts_load_as_before(tmp_path):
    X, y = random_cohort(n=60, seed=3)
    est = tiny_estimator(wide="joint", wide_recency=TAU).fit(X, y)
    assert est.net_.module_.wide.recency == TAU
    args = est._module_args(est.net_.module_)
    assert args["wide_recency"] == TAU
    old = dict(args)  # a file from before: module args without "wide_recency"
    del old["wide_recency"]
    module = type(est)._rebuild_module(old)
    assert module.wide.recent_weight is None and module.wide.recency is None
    est.save(tmp_path / "m.pt")
    loaded = type(est).load(tmp_path / "m.pt")
    np.testing.assert_allclose(loaded.predict(X), est.predict(X), rtol=1e-6)


def test_with_an_encoders_part_the_recent_counts_keep_their_place():
    # the encoder's part is fitted with the codes the wide start kept: the joint start
    # keeps the first fit's choice of the recent counts, their half of beta zero where
    # they stayed out, and refits the counts' half. The risk is in the representation,
    # so whether the recent counts enter is a draw: two draws, one of each
    seen = set()
    for seed, draw in ((0, 0), (1, 0)):
        X, _, _ = recency_cohort(400, seed=seed)
        tok = EHRTokenizer().fit(X)
        tokens, vocab, n = tok.transform(X), tok.vocab_size_, len(X)
        rng = np.random.default_rng(draw)
        reps = rng.normal(size=(n, 3))
        t = rng.exponential(1.0 / (0.3 * np.exp(reps[:, 0])))
        c = rng.uniform(0.5, 5.0, n)
        time, event = np.minimum(t, c), t <= c
        cuts = np.array([0.0, 0.5, 1.0, 2.0, 5.0])
        common = dict(wide=True, n_special=N_SPECIAL, vocab_size=vocab, recency=TAU)
        alone = hazard_start(tokens, np.arange(n), time, event, cuts, **common)
        start = hazard_start(tokens, np.arange(n), time, event, cuts, **common,
                             representations=reps)
        assert start.representation_used and start.representation_weight[0] > 0.5
        assert start.recent == alone.recent and start.beta.shape == (2 * vocab,)
        assert start.beta[vocab:].any() == start.recent
        assert not np.allclose(start.beta[:vocab], alone.beta[:vocab])
        seen.add(start.recent)
    assert seen == {True, False}


def test_without_the_wide_path_the_recent_counts_fit_nothing(monkeypatch):
    # the recent counts belong to the wide path: without it (and without an encoder's
    # part to compare) the start is the population's hazards and no penalised fit is
    # made for a held-out likelihood that nothing reads
    import survbehrt.cox_start as cox_start
    from survbehrt.survival import marginal_logits

    X, _, _ = recency_cohort(200, seed=0)
    tok = EHRTokenizer().fit(X)
    rng = np.random.default_rng(0)
    time, event = rng.uniform(0.5, 5.0, len(X)), rng.random(len(X)) < 0.5
    cuts = np.array([0.0, 1.0, 2.0, 5.0])
    calls = []
    fit = cox_start.fit_wide_start
    monkeypatch.setattr(cox_start, "fit_wide_start",
                        lambda *a, **k: calls.append(1) or fit(*a, **k))
    start = hazard_start(tok.transform(X), np.arange(len(X)), time, event, cuts, wide=False,
                         n_special=N_SPECIAL, vocab_size=tok.vocab_size_, recency=TAU)
    assert calls == [] and start.beta is None
    np.testing.assert_array_equal(start.baseline, marginal_logits(time, event, cuts))
