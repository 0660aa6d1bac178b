"""Token stores: cohorts written chunk by chunk to disk and read back memory-mapped."""

import json
from dataclasses import fields

import numpy as np
import pytest
from sklearn.model_selection import KFold, cross_val_score

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.cox_start import count_features
from survbehrt.data import (
    EHRDataset,
    EHRTokenizer,
    TokenizedEHR,
    TokenStore,
    TokenStoreWriter,
    load_tokens,
    write_tokens,
)

from helpers import random_cohort

pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_length")


def cohort(n=90, seed=0):
    X, y = random_cohort(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    X["static"] = [["SEX//F"] if rng.random() < 0.5 else [] for _ in range(n)]
    X["values"] = [[[float(rng.normal()) for _ in v] for v in visits] for visits in X["codes"]]
    return X, y


def assert_same_tokens(a: TokenizedEHR, b: TokenizedEHR):
    for f in fields(TokenizedEHR):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype and np.array_equal(x, y), f.name


def test_store_written_in_chunks_equals_the_cohort(tmp_path):
    X, _ = cohort()
    tok = EHRTokenizer(max_length=12, n_value_bins=4).fit(X)
    whole = tok.transform(X)
    assert whole.n_truncated_rows > 0 and not whole.visit_complete.all()
    with TokenStoreWriter(tmp_path / "s", tok) as w:
        for a, b in [(0, 7), (7, 50), (50, 90)]:
            w.append(tok.transform(X.iloc[a:b]))
            w.append(whole.subset([]))  # an empty chunk changes nothing
    store = TokenStore(tmp_path / "s")
    assert len(store) == len(X) and store.tokenizer.to_dict() == tok.to_dict()
    assert_same_tokens(store.tokens, whole)
    for f in fields(TokenizedEHR):  # memory-mapped, read-only: not read into memory
        arr = getattr(store.tokens, f.name)
        assert isinstance(arr, np.memmap) and not arr.flags.writeable, f.name
    in_memory = load_tokens(tmp_path / "s", mmap=False)
    assert not isinstance(in_memory.codes, np.memmap)
    assert_same_tokens(in_memory, whole)


def test_write_tokens_from_a_frame_and_from_frames(tmp_path):
    X, _ = cohort(n=50)
    tok = EHRTokenizer(max_length=16).fit(X.iloc[:30])  # rows 30+ hold unseen codes too
    a = write_tokens(tok, X, tmp_path / "a", batch_size=13)
    b = write_tokens(tok, (X.iloc[i : i + 20] for i in range(0, 50, 20)), tmp_path / "b")
    assert_same_tokens(a.tokens, tok.transform(X))
    assert_same_tokens(b.tokens, tok.transform(X))
    assert a.meta["columns"] == ["codes", "ages", "index_age", "static", "values"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_tokens(tok, X, tmp_path / "a")
    assert len(write_tokens(tok, X.iloc[:5], tmp_path / "a", overwrite=True)) == 5


def test_views_index_like_an_array(tmp_path):
    X, _ = cohort(n=20)
    tok = EHRTokenizer().fit(X)
    store = write_tokens(tok, X, tmp_path / "s")
    view = store[[5, 2, 9, 11]]
    assert view.rows.tolist() == [5, 2, 9, 11]
    assert view[1:].rows.tolist() == [2, 9, 11]
    assert view[np.array([True, False, True, False])].rows.tolist() == [5, 9]
    assert view[np.array([3, 0]), ...].rows.tolist() == [11, 5]  # as scikit-learn indexes
    assert view.shape == (4,) and store.rows.tolist() == list(range(20))
    assert_same_tokens(view.to_tokens(), tok.transform(X.iloc[[5, 2, 9, 11]]))


def test_batches_from_a_store_equal_batches_from_memory(tmp_path):
    X, y = cohort()
    tok = EHRTokenizer(max_length=12, n_value_bins=4).fit(X)
    whole = tok.transform(X)
    store = write_tokens(tok, X, tmp_path / "s", batch_size=25)
    rows = np.array([80, 3, 41, 7, 7, 60, 12])
    targets = {"time": y["time"][rows]}
    mapped = EHRDataset(store.tokens, targets, rows=rows)
    copied = EHRDataset(whole.subset(rows), targets)
    assert mapped.lengths.tolist() == copied.lengths.tolist()
    for batch in ([0, 1, 2], [6, 4, 5, 3]):
        (xa, ya), (xb, yb) = mapped.__getitems__(batch), copied.__getitems__(batch)
        assert xa.keys() == xb.keys()
        for k in xa:
            assert xa[k].dtype == xb[k].dtype and bool((xa[k] == xb[k]).all()), k
        assert bool((ya["time"] == yb["time"]).all())
    with pytest.raises(ValueError, match="3 rows for 7 patients"):
        EHRDataset(store.tokens, {"time": y["time"][:3]}, rows=rows)


def test_count_features_by_rows_counts_each_rows_codes(tmp_path):
    X, _ = cohort(n=40)
    tok = EHRTokenizer(max_length=12).fit(X)
    tokens = write_tokens(tok, X, tmp_path / "s").tokens
    rows = [30, 1, 1, 17]
    got = count_features(tokens, 5, tok.vocab_size_, rows=rows).toarray()
    expected = np.zeros((len(rows), tok.vocab_size_))
    for r, i in enumerate(rows):  # the definition: log(1 + count) of each real code
        for code in tokens.patient(i)["codes"]:
            if code >= 5:
                expected[r, code] += 1
    np.testing.assert_allclose(got, np.log1p(expected))


SMALL = dict(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=2,
             batch_size=16, max_length=12, n_value_bins=4, time_bins=5, random_state=0)


def test_estimator_fitted_on_a_store_predicts_as_on_the_frame(tmp_path):
    # Same seed, same tokenizer (a frame fit learns it from all rows when nothing is held
    # out), same batches: the same computations in the same order, so equal exactly.
    X, y = cohort()
    params = dict(SMALL, early_stopping=None, validation_fraction=0.0)
    frame = BEHRTSurvivalEstimator(**params).fit(X, y)
    store = write_tokens(EHRTokenizer(max_length=12, n_value_bins=4).fit(X), X,
                         tmp_path / "s", batch_size=40)
    on_store = BEHRTSurvivalEstimator(**params).fit(str(tmp_path / "s"), y)
    assert on_store.truncation_ == frame.truncation_
    assert on_store.feature_names_in_.tolist() == frame.feature_names_in_.tolist()
    np.testing.assert_array_equal(on_store.predict(store), frame.predict(X))
    np.testing.assert_array_equal(on_store.predict(X), frame.predict(X))
    np.testing.assert_array_equal(on_store.predict_survival_function(store[[4, 2]], True),
                                  frame.predict_survival_function(X.iloc[[4, 2]], True))
    assert on_store.score(store, y) == frame.score(X, y)


def test_estimator_with_validation_split_on_a_store(tmp_path):
    # With a validation split the frame fit learns its vocabulary from the training rows:
    # a store written with that tokenizer gives the same fit.
    X, y = cohort()
    frame = BEHRTSurvivalEstimator(**SMALL, validation_fraction=0.2).fit(X, y)
    store = write_tokens(frame.tokenizer_, X, tmp_path / "s")
    on_store = BEHRTSurvivalEstimator(**SMALL, validation_fraction=0.2).fit(store, y)
    assert [h["valid_cindex"] for h in on_store.history_] == \
        [h["valid_cindex"] for h in frame.history_]
    np.testing.assert_array_equal(on_store.predict(store), frame.predict(X))


def test_cross_validation_cuts_a_store_into_folds(tmp_path):
    X, y = cohort(n=60)
    store = write_tokens(EHRTokenizer(max_length=12).fit(X), X, tmp_path / "s")
    est = BEHRTSurvivalEstimator(**dict(SMALL, max_epochs=1), early_stopping=None,
                                 validation_fraction=0.0)
    cv = KFold(3)
    scores = cross_val_score(est, store, y, cv=cv)
    by_hand = [BEHRTSurvivalEstimator(**est.get_params()).fit(store[tr], y[tr]).score(store[te], y[te])
               for tr, te in cv.split(np.zeros(60))]
    np.testing.assert_array_equal(scores, by_hand)


def test_pretrainer_on_a_store(tmp_path):
    X, _ = cohort(n=40)
    params = dict(embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=1,
                  max_length=12, n_value_bins=4, validation_fraction=0.0, random_state=0)
    frame = BEHRTPretrainer(**params).fit(X)
    store = write_tokens(frame.tokenizer_, X, tmp_path / "s")
    on_store = BEHRTPretrainer(**params).fit(store)
    np.testing.assert_array_equal(on_store.transform(store[[3, 1]]), frame.transform(X.iloc[[3, 1]]))


def test_clear_errors(tmp_path):
    X, y = cohort(n=30)
    tok = EHRTokenizer(max_length=12).fit(X)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        TokenStore(tmp_path / "absent")
    w = TokenStoreWriter(tmp_path / "open", tok)
    w.append(tok.transform(X))  # never closed
    with pytest.raises(FileNotFoundError, match="not a token store"):
        TokenStore(tmp_path / "open")
    store = write_tokens(tok, X, tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    (tmp_path / "s" / "store.json").write_text(json.dumps(dict(meta, version=99)))
    with pytest.raises(ValueError, match="version 99"):
        TokenStore(tmp_path / "s")
    (tmp_path / "s" / "store.json").write_text(json.dumps(meta))
    est = BEHRTSurvivalEstimator(**dict(SMALL, max_epochs=1), early_stopping=None,
                                 validation_fraction=0.0)
    with pytest.raises(ValueError, match="y has 29 rows but X has 30"):
        est.fit(store, y[:-1])
    est.fit(store, y)
    other = write_tokens(EHRTokenizer(max_length=12).fit(X.iloc[:10]), X, tmp_path / "o")
    with pytest.raises(ValueError, match="another tokenizer"):
        est.predict(other)
    assert not store.tokens.visit_complete.all()
    with pytest.raises(ValueError, match="pass the patient frame"):
        est.predict_visit_risks(store)
    with pytest.raises(TypeError, match="takes a TokenizedEHR"):
        TokenStoreWriter(tmp_path / "t", tok).append(X)
