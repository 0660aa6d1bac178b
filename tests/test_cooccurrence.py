"""Code vectors from within-visit co-occurrence, and the pretrainer's ``code_init``.

The counts are checked against a plain loop over the patients' visits (the definition:
each pair of distinct codes recorded at one visit, each code once per visit, static
codes left out); the vectors against numpy's full SVD of a PPMI written from its
definition; and on a cohort whose codes come in interchangeable synonyms, each synonym's
nearest vector is a synonym of its own concept.
"""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from survbehrt.data import cooccurrence
from survbehrt.data.cooccurrence import cooccurrence_vectors, visit_cooccurrence
from survbehrt.data.tokenized import row_chunks
from survbehrt.data.tokenizer import N_SPECIAL, EHRTokenizer

from helpers import random_cohort, tiny_pretrainer


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


def _reference_vectors(counts):
    """PPMI from its definition, then numpy's full SVD: rows of U sqrt(S), unit length."""
    total, rowsum = counts.sum(), counts.sum(axis=1)
    ppmi = np.zeros_like(counts)
    for i, j in zip(*np.nonzero(counts)):
        ppmi[i, j] = max(0.0, np.log(counts[i, j] * total / (rowsum[i] * rowsum[j])))
    u, s, _ = np.linalg.svd(ppmi)
    v = u * np.sqrt(s)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_vectors_are_the_svd_of_the_ppmi():
    rng = np.random.default_rng(3)
    counts = rng.poisson(2.0, (12, 12)).astype(float)
    counts = counts + counts.T
    np.fill_diagonal(counts, 0.0)
    vectors, found = cooccurrence_vectors(counts, dim=12, norm=0.5, random_state=0)
    assert found.all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 0.5, rtol=1e-5)
    # the same geometry (the SVD's signs are arbitrary: compare the Gram matrices)
    ref = _reference_vectors(counts)
    unit = vectors / 0.5
    np.testing.assert_allclose(unit @ unit.T, ref @ ref.T, atol=1e-4)


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


def test_synonyms_start_next_to_each_other():
    X = _synonym_cohort(400, 0)
    tok = EHRTokenizer().fit(X)
    counts = visit_cooccurrence(tok.transform(X), tok.vocab_size_, N_SPECIAL)
    vectors, found = cooccurrence_vectors(counts, dim=8, norm=1.0)
    names = np.array(tok.codes_)
    synonyms = np.flatnonzero(np.char.startswith(names.astype(str), "K"))
    assert found[synonyms].all() and not found[:N_SPECIAL].any()
    cos = vectors[synonyms] @ vectors[synonyms].T
    np.fill_diagonal(cos, -np.inf)
    concept = np.array([names[i][:2] for i in synonyms])
    assert (concept[cos.argmax(axis=1)] == concept).all()


def test_the_pretrainer_starts_its_codes_at_their_vectors():
    X = _synonym_cohort(300, 1)
    common = dict(max_epochs=0, validation_fraction=0.0, objective="mlm")
    pre = tiny_pretrainer(code_init="cooccurrence", **common).fit(X)
    plain = tiny_pretrainer(**common).fit(X)
    tokens = pre.tokenizer_.transform(X)
    counts = visit_cooccurrence(tokens, pre.tokenizer_.vocab_size_, N_SPECIAL)
    config = pre.module_.encoder.config
    vectors, found = cooccurrence_vectors(
        counts, config.embedding_dim, config.initializer_range * np.sqrt(config.embedding_dim),
        random_state=0)
    weight = pre.module_.encoder.embeddings.code.weight.detach().numpy()
    np.testing.assert_allclose(weight[found], vectors[found], rtol=1e-6)
    # the special tokens keep the random start (the padding row zero)
    torch.testing.assert_close(torch.from_numpy(weight[~found]),
                               plain.module_.encoder.embeddings.code.weight[~found].detach())
    assert not weight[0].any()


def test_code_init_must_be_named():
    X = _synonym_cohort(20, 2)
    with pytest.raises(ValueError, match="code_init='svd' is not valid"):
        tiny_pretrainer(code_init="svd").fit(X)
