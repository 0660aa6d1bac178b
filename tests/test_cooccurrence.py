"""Shared parameters over the codes' co-occurrence: the counts, the neighbours, the
embedding that adds them, and the pretrainer that sets them.

The counts are checked against a plain loop over the patients' visits (the definition:
each pair of distinct codes recorded at one visit, each code once per visit, static
codes left out); the neighbours against a loop over each code's pairs written from the
PMI's definition; the embedding against a sum over each token's neighbours; and on a
cohort whose codes come in interchangeable synonyms, a synonym's neighbours are
synonyms of its concept.
"""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from survbehrt.data import cooccurrence
from survbehrt.data.cooccurrence import cooccurrence_neighbours, visit_cooccurrence
from survbehrt.data.tokenized import row_chunks
from survbehrt.data.tokenizer import N_SPECIAL, EHRTokenizer
from survbehrt.model import BEHRTConfig, BEHRTEmbeddings

from helpers import random_cohort, tiny_estimator, tiny_pretrainer
from model_helpers import VOCAB_SIZE, embedding_inputs, random_batch, seed_everything, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------- the counts


def _loop_counts(X, vocab, size, rows):
    """The definition, visit by visit."""
    out = np.zeros((size, size))
    for i in rows:
        for visit in X["codes"].iloc[i]:
            for a, b in itertools.permutations(sorted(set(visit)), 2):
                out[vocab[a], vocab[b]] += 1
    return out


def _with_static_and_repeats(seed):
    X, _ = random_cohort(n=60, n_codes=9, seed=seed)
    X["static"] = [["SEX//F", "C1"] if i % 2 else ["SEX//M"] for i in range(len(X))]
    # a code twice at one visit counts once
    X.at[0, "codes"] = [list(X.at[0, "codes"][0]) + [X.at[0, "codes"][0][0]]] + X.at[0, "codes"][1:]
    return X


@pytest.mark.parametrize("chunk_tokens", [None, 40])
def test_visit_counts_are_the_pairs_recorded_together(monkeypatch, chunk_tokens):
    X = _with_static_and_repeats(0)
    if chunk_tokens:  # many chunks: the visits must be numbered within each
        monkeypatch.setattr(cooccurrence, "row_chunks",
                            lambda t, r: row_chunks(t, r, max_tokens=chunk_tokens))
    tok = EHRTokenizer(max_length=512).fit(X)
    tokens = tok.transform(X)
    assert tokens.n_truncated_rows == 0
    rows = np.arange(3, 50)
    got = visit_cooccurrence(tokens, tok.vocab_size_, N_SPECIAL, rows).toarray()
    want = _loop_counts(X, tok.vocabulary_, tok.vocab_size_, rows)
    np.testing.assert_array_equal(got, want)
    # the static codes are counted nowhere, even "C1", a visit code elsewhere, only at visits
    assert got[tok.vocabulary_["SEX//F"]].sum() == 0 and got[tok.vocabulary_["SEX//M"]].sum() == 0


# --------------------------------------------------------------------------- the neighbours


def _loop_neighbours(counts, k, min_count):
    """From the definition, code by code: PMI over the kept pairs, the k highest."""
    size = len(counts)
    total, rowsum = counts.sum(), counts.sum(axis=1)
    ids, weights = np.zeros((size, k), dtype=int), np.zeros((size, k))
    for i in range(size):
        pairs = []
        for j in range(size):
            if counts[i, j] >= min_count and counts[i, j] > 0:
                pmi = math.log(counts[i, j] * total / (rowsum[i] * rowsum[j]))
                if pmi > 0:
                    pairs.append((-pmi, j))
        kept = sorted(pairs)[:k]
        norm = sum(-p for p, _ in kept)
        for slot, (p, j) in enumerate(kept):
            ids[i, slot], weights[i, slot] = j, -p / norm
    return ids, weights


@pytest.mark.parametrize("k, min_count", [(3, 1), (5, 4), (20, 1)])
def test_neighbours_are_the_strongest_pmi_pairs(k, min_count):
    rng = np.random.default_rng(3)
    counts = rng.poisson(2.0, (14, 14)).astype(float)
    counts[:, 9:] *= 4  # some strong pairs
    counts = counts + counts.T
    counts[2:4, 2:4] = 7  # a tie in a row: the lower id first
    np.fill_diagonal(counts, 0.0)
    counts[:, 12] = counts[12, :] = 0  # a code without pairs
    ids, weights = cooccurrence_neighbours(counts, k, min_count)
    want_ids, want_weights = _loop_neighbours(counts, k, min_count)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(weights, want_weights, rtol=1e-6)
    assert not ids[12].any() and not weights[12].any()
    # every code with a neighbour has weights summing to one
    has = weights.sum(axis=1) > 0
    np.testing.assert_allclose(weights[has].sum(axis=1), 1.0, rtol=1e-6)


def _synonym_cohort(n, seed):
    """Each visit records two of the five interchangeable codes of one of four concepts,
    and one of 20 noise codes drawn apart from it."""
    rng = np.random.default_rng(seed)
    codes, ages = [], []
    for _ in range(n):
        visits = []
        for _ in range(int(rng.integers(2, 6))):
            concept = int(rng.integers(4))
            pair = rng.choice(5, 2, replace=False)
            visits.append([f"K{concept}.{p}" for p in pair] + [f"N{int(rng.integers(20))}"])
        codes.append(visits)
        ages.append(np.sort(rng.uniform(40, 60, len(visits))).tolist())
    return pd.DataFrame({"codes": codes, "ages": ages})


def test_a_synonyms_neighbours_are_the_synonyms_of_its_concept():
    # PMI of a synonym pair log(3.75), of a code and a noise code log(1.5): with 1,000
    # patients (about 35 visits per synonym pair) chance does not swap them
    X = _synonym_cohort(1000, 0)
    tok = EHRTokenizer().fit(X)
    counts = visit_cooccurrence(tok.transform(X), tok.vocab_size_, N_SPECIAL)
    ids, weights = cooccurrence_neighbours(counts, k=4, min_count=5)
    names = np.array(tok.codes_).astype(str)
    for code in np.flatnonzero(np.char.startswith(names, "K")):
        assert sorted(names[ids[code]]) == sorted(
            n for n in names if n[:2] == names[code][:2] and n != names[code])
    # none of the specials has a neighbour
    assert not weights[:N_SPECIAL].any()


# --------------------------------------------------------------------------- the embedding


def _with_neighbours(k=3, seed=0):
    seed_everything(seed)
    emb = BEHRTEmbeddings(tiny_config(code_neighbours=k))
    rng = np.random.default_rng(seed)
    ids = rng.integers(N_SPECIAL, VOCAB_SIZE, (VOCAB_SIZE, k))
    weights = rng.uniform(0.1, 1.0, (VOCAB_SIZE, k)).astype(np.float32)
    ids[:N_SPECIAL], weights[:N_SPECIAL] = 0, 0.0
    ids[N_SPECIAL, -1], weights[N_SPECIAL, -1] = 0, 0.0  # an empty slot
    emb.set_code_neighbours(ids, weights)
    with torch.no_grad():  # (it starts at zero: give the sum something to add)
        emb.code_shared.normal_()
    return emb, ids, weights


def test_the_embedding_adds_the_weighted_rows_of_each_codes_neighbours():
    emb, ids, weights = _with_neighbours()
    batch = embedding_inputs(random_batch(n=5, seed=1))
    with_shared = _pre_norm(emb, batch)
    shared = emb.code_shared.detach().clone()
    with torch.no_grad():
        emb.code_shared.zero_()
    without = _pre_norm(emb, batch)
    # the added part, token by token, from the definition
    want = torch.zeros_like(with_shared)
    for b, t in itertools.product(*map(range, batch["codes"].shape)):
        c = int(batch["codes"][b, t])
        want[b, t] = sum(float(weights[c, s]) * shared[ids[c, s]] for s in range(ids.shape[1]))
    assert want.abs().sum() > 0
    torch.testing.assert_close(with_shared - without, want, rtol=1e-5, atol=1e-6)


def _pre_norm(emb, batch):
    """The embeddings' sum before LayerNorm (the norm replaced by identity once)."""
    norm = emb.norm
    emb.norm = torch.nn.Identity()
    try:
        return emb(**batch)
    finally:
        emb.norm = norm


def test_the_shared_table_learns_through_the_neighbours_only():
    emb, ids, weights = _with_neighbours()
    codes = torch.tensor([[N_SPECIAL + 1, 0]])  # a code and a padding token
    zeros = torch.zeros_like(codes)
    out = emb(codes=codes, age_bins=zeros + 1, visits=zeros, positions=zeros,
              time_bins=zeros + 1)
    out[0, 0].pow(2).sum().backward()
    grad = emb.code_shared.grad
    touched = set(ids[N_SPECIAL + 1][weights[N_SPECIAL + 1] > 0].tolist())
    assert {i for i in range(VOCAB_SIZE) if grad[i].abs().sum() > 0} == touched


def test_neighbours_live_in_the_state_dict_and_their_slots_in_the_config():
    emb, ids, _ = _with_neighbours(k=2)
    state = emb.state_dict()
    assert {"code_shared", "neighbour_ids", "neighbour_weights"} <= state.keys()
    fresh = BEHRTEmbeddings(tiny_config(code_neighbours=2))
    assert not fresh.neighbour_weights.any()  # no neighbours until set
    fresh.load_state_dict(state)
    assert torch.equal(fresh.neighbour_ids, torch.from_numpy(ids))
    assert BEHRTEmbeddings(tiny_config()).code_shared is None
    with pytest.raises(ValueError, match="no neighbour slots"):
        BEHRTEmbeddings(tiny_config()).set_code_neighbours(ids, ids)
    with pytest.raises(ValueError, match=r"shape \(30, 2\)"):
        emb.set_code_neighbours(ids[:, :1], ids[:, :1])
    with pytest.raises(ValueError, match="code_neighbours must be >= 0"):
        BEHRTConfig(vocab_size=VOCAB_SIZE, code_neighbours=-1)


# --------------------------------------------------------------------------- the estimators


@pytest.fixture(scope="module")
def synonyms():
    X = _synonym_cohort(300, 1)
    rng = np.random.default_rng(1)
    from sksurv.util import Surv

    y = Surv.from_arrays(rng.random(len(X)) < 0.6, rng.uniform(0.5, 5.0, len(X)))
    return X, y


def test_the_pretrainer_sets_its_fit_rows_neighbours_and_fine_tuning_keeps_them(synonyms, tmp_path):
    X, y = synonyms
    pre = tiny_pretrainer(code_neighbours=4, min_cooccurrence=3, validation_fraction=0.2,
                          objective="mlm").fit(X)
    emb = pre.module_.encoder.embeddings
    # the counts of the fit rows only: rebuild the validation split's training rows
    tokens = pre.tokenizer_.transform(X)
    rows = _fit_rows(pre, X)
    want = cooccurrence_neighbours(
        visit_cooccurrence(tokens, pre.tokenizer_.vocab_size_, N_SPECIAL, rows), 4, 3)
    np.testing.assert_array_equal(emb.neighbour_ids.numpy(), want[0])
    np.testing.assert_allclose(emb.neighbour_weights.numpy(), want[1])
    assert emb.neighbour_weights.sum() > 0
    # (which differ from every row's: the test sees a count of the validation rows)
    every = cooccurrence_neighbours(
        visit_cooccurrence(tokens, pre.tokenizer_.vocab_size_, N_SPECIAL), 4, 3)
    assert not np.allclose(every[1], want[1])
    # fine-tuned (LoRA): the neighbours and the shared table as pre-trained, frozen
    est = tiny_estimator(pretrained=pre, strategy="lora").fit(X, y)
    tuned = est.net_.module_.encoder.embeddings
    assert est.net_.module_.encoder.config.code_neighbours == 4
    assert torch.equal(tuned.neighbour_ids, emb.neighbour_ids)
    assert torch.equal(tuned.code_shared, emb.code_shared)
    assert emb.code_shared.abs().sum() > 0  # (pre-training moved it from zero)
    assert not tuned.code_shared.requires_grad
    # and a saved model predicts the same
    est.save(tmp_path / "model.pt")
    np.testing.assert_allclose(type(est).load(tmp_path / "model.pt").predict(X), est.predict(X))


def _fit_rows(pre, X):
    """The rows the pretrainer fitted on (its validation split's other side)."""
    from survbehrt.estimators._cohort import split_and_tokenize, validate_cohort
    from survbehrt.estimators._common import draw_seed

    data = split_and_tokenize(validate_cohort(X), draw_seed(pre.random_state),
                              pre.validation_fraction,
                              tokenizer_params=dict(max_length=pre.max_length,
                                                    min_frequency=pre.min_frequency,
                                                    n_value_bins=pre.n_value_bins))
    return data.rows[data.train_idx]


def test_without_neighbours_the_pretrainer_is_the_plain_one(synonyms):
    """The shared table starts at zero and draws nothing: where no pair passes
    ``min_cooccurrence`` the model is the plain model, weight for weight."""
    X, _ = synonyms
    common = dict(validation_fraction=0.0, objective="mlm")
    plain = tiny_pretrainer(**common).fit(X)
    empty = tiny_pretrainer(code_neighbours=4, min_cooccurrence=10**9, **common).fit(X)
    assert not empty.module_.encoder.embeddings.neighbour_weights.any()
    state = empty.module_.state_dict()
    for name, tensor in plain.module_.state_dict().items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, msg=name)
    assert not state["encoder.embeddings.code_shared"].any()
    np.testing.assert_array_equal(empty.transform(X), plain.transform(X))


@pytest.mark.parametrize("params, match", [
    (dict(code_neighbours=0), "code_neighbours"),
    (dict(code_neighbours=4, min_cooccurrence=0), "min_cooccurrence"),
])
def test_bad_neighbour_parameters_are_named(synonyms, params, match):
    with pytest.raises(ValueError, match=match):
        tiny_pretrainer(**params).fit(synonyms[0])
