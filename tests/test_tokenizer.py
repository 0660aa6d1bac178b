import numpy as np
import pandas as pd
import pytest

from survbehrt.data import N_SPECIAL, EHRTokenizer, flatten_ehr
from survbehrt.data.tokenizer import CLS_ID, PAD_ID, SEP_ID, UNK_ID

from helpers import random_cohort


def reference_tokens(tokenizer, X):
    """Plain-loop tokenization of each patient, for comparison."""
    out = []
    for visits, ages, index_age in zip(X["codes"], X["ages"], X["index_age"]):
        budget = tokenizer.max_length - 1
        kept, used = [], 0
        for v in range(len(visits) - 1, -1, -1):
            cost = len(visits[v]) + 1
            if used + cost > budget and kept:
                break
            kept.append(v)
            used += cost
        kept = kept[::-1]
        codes, visit_idx, age_b, time_b = [CLS_ID], [0], [], []
        for j, v in enumerate(kept):
            vis = visits[v][: budget - 1]
            codes += [tokenizer.vocabulary_.get(c, UNK_ID) for c in vis] + [SEP_ID]
            visit_idx += [j] * (len(vis) + 1)
            ab = 1 + min(int(np.floor(ages[v] / tokenizer.age_bin_width)), tokenizer.n_age_bins_ - 2)
            months = (np.float32(index_age - ages[v])) * 12
            tb = 1 + min(int(np.floor(np.log2(1 + months))), tokenizer.n_time_bins_ - 2)
            age_b += [ab] * (len(vis) + 1 + (j == 0))
            time_b += [tb] * (len(vis) + 1 + (j == 0))
        out.append(dict(codes=codes, visits=visit_idx, age_bins=age_b, time_bins=time_b,
                        visit_times=[index_age - ages[v] for v in kept]))
    return out


@pytest.mark.parametrize("max_length", [4, 9, 256])
def test_matches_loop_reference(max_length):
    X, _ = random_cohort(n=30, seed=1)
    tok = EHRTokenizer(max_length=max_length).fit(X)
    t = tok.transform(X)
    for i, ref in enumerate(reference_tokens(tok, X)):
        p = t.patient(i)
        assert p["codes"].tolist() == ref["codes"]
        assert p["visits"].tolist() == ref["visits"]
        assert p["age_bins"].tolist() == ref["age_bins"]
        assert p["time_bins"].tolist() == ref["time_bins"]
        assert p["positions"].tolist() == list(range(len(ref["codes"])))
        np.testing.assert_allclose(p["visit_times"], ref["visit_times"], rtol=1e-5, atol=1e-5)
        assert len(p["codes"]) <= max_length


def test_truncation_keeps_last_visits_whole():
    X = pd.DataFrame({"codes": [[["A", "B"], ["C", "D", "E"], ["F"], ["G", "H"]]],
                      "ages": [[40.0, 41.0, 42.0, 43.0]]})
    tok = EHRTokenizer(max_length=8).fit(X)
    t = tok.transform(X)
    # budget after [CLS] = 7: last visits cost 3 ([G H SEP]) + 2 ([F SEP]) = 5; + 4 would overflow
    assert [tok.codes_[c] for c in t.codes] == ["[CLS]", "F", "[SEP]", "G", "H", "[SEP]"]
    assert t.visits.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(t.visit_times, [1.0, 0.0])


def test_vocabulary_from_fit_rows_only():
    X_a = pd.DataFrame({"codes": [[["A", "B"]], [["B"]]], "ages": [[1.0], [2.0]]})
    X_b = pd.DataFrame({"codes": [[["Z", "A"]]], "ages": [[3.0]]})
    tok = EHRTokenizer().fit(X_a)
    assert "Z" not in tok.vocabulary_ and {"A", "B"} <= set(tok.vocabulary_)
    t = tok.transform(X_b)
    assert t.codes.tolist() == [CLS_ID, UNK_ID, tok.vocabulary_["A"], SEP_ID]


def test_min_frequency_and_order():
    X = pd.DataFrame({"codes": [[["A", "B", "B"], ["C", "B", "A"]]], "ages": [[1.0, 2.0]]})
    tok = EHRTokenizer(min_frequency=2).fit(X)
    assert list(tok.codes_[N_SPECIAL:]) == ["B", "A"]  # by frequency, C dropped
    assert tok.transform(X).codes.tolist().count(UNK_ID) == 1


def test_no_padding_inside_patients_and_int32_layout():
    X, _ = random_cohort(n=50, seed=2)
    t = EHRTokenizer(max_length=16).fit(X).transform(X)
    assert PAD_ID not in t.codes
    assert (t.age_bins > 0).all() and (t.time_bins > 0).all()
    for name in ("codes", "age_bins", "visits", "positions", "time_bins"):
        assert getattr(t, name).dtype == np.int32
    assert t.offsets.dtype == np.int64 and t.offsets[-1] == len(t.codes)
    # each patient's [SEP] count equals its kept visits
    for i in range(len(t)):
        p = t.patient(i)
        assert (p["codes"] == SEP_ID).sum() == len(p["visit_times"])


def test_subset_equals_tokenizing_subset():
    X, _ = random_cohort(n=20, seed=3)
    tok = EHRTokenizer(max_length=12).fit(X)
    idx = [5, 0, 19, 5]
    a = tok.transform(X).subset(idx)
    b = tok.transform(X.iloc[idx])
    for name in ("codes", "age_bins", "visits", "positions", "time_bins", "offsets",
                 "visit_times", "visit_offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_transform_validates_and_requires_fit():
    from sklearn.exceptions import NotFittedError

    X, _ = random_cohort(n=5)
    with pytest.raises(NotFittedError):
        EHRTokenizer().transform(X)
    tok = EHRTokenizer().fit(X)
    bad = X.copy()
    codes = bad["codes"].tolist()
    codes[3] = [["A"], []]  # an empty visit
    bad["codes"] = codes
    bad["ages"] = [a if i != 3 else [50.0, 51.0] for i, a in enumerate(bad["ages"])]
    with pytest.raises(ValueError, match=r"X row 3 .*'codes'"):
        tok.transform(bad)


def test_bad_params():
    X, _ = random_cohort(n=5)
    with pytest.raises(ValueError, match="max_length"):
        EHRTokenizer(max_length=2).fit(X)


def test_flat_ages_equal_frame():
    X, _ = random_cohort(n=10, seed=4)
    flat = flatten_ehr(X)
    np.testing.assert_array_equal(flat.visit_ages, np.concatenate(X["ages"].tolist()))


def test_fit_transform_equals_fit_then_transform():
    X, _ = random_cohort(n=25, seed=6)
    a = EHRTokenizer(max_length=10).fit_transform(X)
    b = EHRTokenizer(max_length=10).fit(X).transform(X)
    for name in ("codes", "age_bins", "visits", "positions", "time_bins", "offsets",
                 "visit_times", "visit_offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
