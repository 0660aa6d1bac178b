import numpy as np
import pandas as pd
import pytest

from survbehrt.data import N_SPECIAL, EHRTokenizer, _value_bins, flatten_ehr, tokenizer
from survbehrt.data.tokenizer import CLS_ID, PAD_ID, SEP_ID, UNK_ID

from helpers import as_arrow, random_cohort

# Truncation is reached on purpose here; the warning itself is tested below.
pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_length")


def with_static_and_values(X, seed=0):
    """Add a ``static`` column (0-2 codes) and a ``values`` column (some NaN) to a cohort."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    X["static"] = [[f"S{int(s)}" for s in rng.integers(0, 3, size=int(rng.integers(0, 3)))]
                   for _ in range(len(X))]
    X["values"] = [
        [[float(rng.normal(int(c[1:]), 2.0)) if rng.random() < 0.6 else np.nan for c in visit]
         for visit in visits]
        for visits in X["codes"]
    ]
    return X


def reference_edges(X, n_bins):
    """Cut points per code from the definition: quantiles j/n of its fit values, unique."""
    by_code = {}
    for visits, values in zip(X["codes"], X["values"]):
        for visit, vals in zip(visits, values):
            for c, x in zip(visit, vals):
                if not np.isnan(x):
                    by_code.setdefault(c, []).append(x)
    return {c: np.unique([np.quantile(v, j / n_bins) for j in range(1, n_bins)])
            for c, v in by_code.items()}


def reference_value_bin(edges, code, x):
    if code not in edges or np.isnan(x):
        return 0
    b = 1
    for e in edges[code]:
        if e < x:
            b += 1
    return b


def reference_tokens(tokenizer, X, edges=None):
    """Plain-loop tokenization of each patient, for comparison."""
    out = []
    n = len(X)
    statics = X["static"] if "static" in X else [[]] * n
    values = X["values"] if "values" in X else [[[np.nan] * len(v) for v in p] for p in X["codes"]]
    edges = edges or {}
    for visits, ages, index_age, static, vals in zip(X["codes"], X["ages"], X["index_age"],
                                                      statics, values):
        static = list(static)[: tokenizer.max_length - 3]
        budget = tokenizer.max_length - 1 - len(static)
        kept, used = [], 0
        for v in range(len(visits) - 1, -1, -1):
            cost = len(visits[v]) + 1
            if used + cost > budget and kept:
                break
            kept.append(v)
            used += cost
        kept = kept[::-1]
        codes = [CLS_ID] + [tokenizer.vocabulary_.get(c, UNK_ID) for c in static]
        visit_idx, age_b, time_b = [0] * len(codes), [], []
        value_b = [0] * len(codes)
        for j, v in enumerate(kept):
            vis = visits[v][: budget - 1]
            codes += [tokenizer.vocabulary_.get(c, UNK_ID) for c in vis] + [SEP_ID]
            value_b += [reference_value_bin(edges, c, x) for c, x in zip(vis, vals[v])] + [0]
            visit_idx += [j] * (len(vis) + 1)
            ab = 1 + min(int(np.floor(ages[v] / tokenizer.age_bin_width)), tokenizer.n_age_bins_ - 2)
            months = (np.float32(index_age - ages[v])) * 12
            tb = 1 + min(int(np.floor(np.log2(1 + months))), tokenizer.n_time_bins_ - 2)
            if j == 0:  # [CLS] takes the first visit's bins, static codes none
                age_b += [ab] + [0] * len(static)
                time_b += [tb] + [0] * len(static)
            age_b += [ab] * (len(vis) + 1)
            time_b += [tb] * (len(vis) + 1)
        full = 1 + len(X["static"].iloc[len(out)] if "static" in X else []) + sum(
            len(v) + 1 for v in visits)
        out.append(dict(codes=codes, visits=visit_idx, age_bins=age_b, time_bins=time_b,
                        value_bins=value_b, visit_times=[index_age - ages[v] for v in kept],
                        truncated=full - len(codes), dropped=kept[0]))
    return out


@pytest.mark.parametrize("max_length", [4, 9, 256])
@pytest.mark.parametrize("extra", [False, True])
@pytest.mark.parametrize("layout", ["lists", "arrow", "small chunks"])
def test_matches_loop_reference(max_length, extra, layout, monkeypatch):
    X, _ = random_cohort(n=30, seed=1)
    if extra:
        X = with_static_and_values(X, seed=1)
    if layout == "arrow":  # Arrow-backed columns: the columnar path (same reference)
        X = as_arrow(X, dictionary=extra)
    if layout == "small chunks":  # token arrays filled in many chunks; values sorted at once
        monkeypatch.setattr(tokenizer, "_CHUNK_TOKENS", 7)
        monkeypatch.setattr(tokenizer, "_CHUNKS", 10**6)
        monkeypatch.setattr(_value_bins, "_SEGMENT_SORTS", 0)
    tok = EHRTokenizer(max_length=max_length, n_value_bins=4).fit(X)
    t = tok.transform(X)
    edges = reference_edges(X, 4) if extra else {}
    assert tok.value_edges_.keys() == edges.keys()
    for code, e in edges.items():
        np.testing.assert_allclose(tok.value_edges_[code], e, rtol=1e-12)
    for i, ref in enumerate(reference_tokens(tok, X, edges)):
        p = t.patient(i)
        for name in ("codes", "visits", "age_bins", "time_bins", "value_bins"):
            assert p[name].tolist() == ref[name], name
        assert p["positions"].tolist() == list(range(len(ref["codes"])))
        np.testing.assert_allclose(p["visit_times"], ref["visit_times"], rtol=1e-5, atol=1e-5)
        assert len(p["codes"]) <= max_length
        assert t.truncated_tokens[i] == ref["truncated"] and t.dropped_visits[i] == ref["dropped"]
    assert t.n_truncated_rows == sum(r["truncated"] > 0 for r in reference_tokens(tok, X, edges))


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


def test_fit_flat_on_some_rows_equals_fit_on_those_rows():
    # what the estimators do: flatten the cohort once, fit on the training rows' cut,
    # tokenize all; the same vocabulary, value bins and tokens as fitting those rows' frame
    X = with_static_and_values(random_cohort(n=40, seed=7)[0], seed=7)
    train = np.random.default_rng(7).permutation(len(X))[:25]
    flat = flatten_ehr(X)
    a = EHRTokenizer(max_length=12, n_value_bins=4)
    a.fit_flat(flat.cut(train, flat.n_visits[train]))
    b = EHRTokenizer(max_length=12, n_value_bins=4).fit(X.iloc[train])
    assert list(a.codes_) == list(b.codes_)
    ta, tb = a.transform_flat(flat), b.transform(X)
    for name in ("codes", "age_bins", "visits", "positions", "time_bins", "offsets",
                 "value_bins", "visit_times", "visit_offsets"):
        np.testing.assert_array_equal(getattr(ta, name), getattr(tb, name))


# ---------------------------------------------------------------- causal truncation


def cut_frame(X, row, n_keep):
    """Row ``row`` of X with its history cut after ``n_keep`` visits (same prediction time)."""
    r = X.iloc[[row]].copy()
    for col in ("codes", "ages", "values"):
        if col in r:
            r[col] = [list(r[col].iloc[0])[:n_keep]]
    return r


@pytest.mark.parametrize("max_length", [6, 11, 25])
def test_visit_complete_means_same_tokens_as_the_cut_history(max_length):
    X = with_static_and_values(random_cohort(n=40, max_visits=10, seed=8)[0], seed=8)
    tok = EHRTokenizer(max_length=max_length, n_value_bins=3).fit(X)
    t = tok.transform(X)
    assert t.n_truncated_rows > 5  # the test reaches truncation
    seen_incomplete = 0
    for i in range(len(X)):
        p = t.patient(i)
        for j in range(len(p["visit_times"])):
            cut = tok.transform(cut_frame(X, i, int(t.dropped_visits[i]) + j + 1)).patient(0)
            visible = p["visits"] <= j  # what visit j sees under the visit-causal mask
            same = all(
                np.array_equal(p[name][visible], cut[name])
                for name in ("codes", "age_bins", "visits", "positions", "time_bins", "value_bins")
            )
            assert bool(p["visit_complete"][j]) == same, (i, j)
            seen_incomplete += not same
        assert p["visit_complete"][-1]
    assert seen_incomplete > 0
    assert t.visit_complete[t.visit_offsets[:-1][t.dropped_visits == 0]].all()


def test_truncation_counts_and_warning():
    X = pd.DataFrame({"codes": [[["A", "B"], ["C", "D", "E"], ["F"], ["G", "H"]], [["A"]]],
                      "ages": [[40.0, 41.0, 42.0, 43.0], [50.0]],
                      "static": [["S1", "S2"], None]})
    tok = EHRTokenizer(max_length=8).fit(X)
    with pytest.warns(UserWarning, match=r"1 of 2 rows \(50.0%\).*max_length=8.*7 of 18 tokens"):
        t = tok.transform(X)
    # row 0: [CLS] S1 S2 | room 5: [G H SEP] + [F SEP]; cut [A B SEP] [C D E SEP] = 7 tokens
    assert [tok.codes_[c] for c in t.patient(0)["codes"]] == ["[CLS]", "S1", "S2", "F", "[SEP]",
                                                              "G", "H", "[SEP]"]
    assert t.truncated_tokens.tolist() == [7, 0] and t.dropped_visits.tolist() == [2, 0]
    assert t.truncation() == {"rows": 2, "truncated_rows": 1, "tokens": 18, "truncated_tokens": 7,
                              "truncated_row_share": 0.5, "truncated_token_share": 7 / 18}
    # max_length=4 leaves room for one static code and one code of the last visit
    with pytest.warns(UserWarning, match="longer than max_length=4"):
        t4 = EHRTokenizer(max_length=4).fit(X).transform(X)
    assert [tok.codes_[c] for c in t4.patient(0)["codes"]] == ["[CLS]", "S1", "G", "[SEP]"]
    assert t4.truncated_tokens.tolist() == [11, 0] and t4.patient(0)["visit_complete"].all()


def test_no_warning_at_or_below_the_share():
    from survbehrt.data.tokenizer import TRUNCATION_WARNING_SHARE

    long = [["A"]] * 10
    rows = 20
    n_long = int(TRUNCATION_WARNING_SHARE * rows)  # exactly the share: no warning
    X = pd.DataFrame({"codes": [long] * n_long + [[["A"]]] * (rows - n_long),
                      "ages": [[float(a) for a in range(10)]] * n_long + [[1.0]] * (rows - n_long)})
    tok = EHRTokenizer(max_length=10).fit(X)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tok.transform(X).n_truncated_rows == n_long
    with pytest.warns(UserWarning, match="longer than max_length"):
        tok.transform(X.iloc[: rows - 1])


# ---------------------------------------------------------------- numeric values as tokens


def lab_frame():
    """A hand-written table: code L has values 1..9 (and a NaN), K a constant, N none."""
    return pd.DataFrame({
        "codes": [[["L", "K"], ["L", "N"]], [["L"], ["L", "K"]], [["L", "L"], ["L", "L", "L"]]],
        "ages": [[30.0, 31.0], [40.0, 41.0], [50.0, 51.0]],
        "values": [[[1.0, 7.0], [2.0, np.nan]], [[3.0], [np.nan, 7.0]],
                   [[4.0, 5.0], [6.0, 8.0, 9.0]]],
    })


def value_bins_by_code(tok, t):
    return [(str(tok.codes_[c]), int(b)) for c, b in zip(t.codes, t.value_bins) if c >= UNK_ID]


def test_value_bins_round_trip_on_a_hand_written_table():
    X = lab_frame()
    tok = EHRTokenizer(n_value_bins=4).fit(X)
    # L's fit values 1..9: quartile cut points by a plain loop over the definition
    vals = sorted([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0])
    ref = []
    for j in (1, 2, 3):
        pos = j / 4 * (len(vals) - 1)
        lo = int(np.floor(pos))
        ref.append(vals[lo] + (vals[min(lo + 1, len(vals) - 1)] - vals[lo]) * (pos - lo))
    np.testing.assert_allclose(tok.value_edges_["L"], ref)
    np.testing.assert_array_equal(tok.value_edges_["K"], [7.0])  # constant: one cut point
    assert "N" not in tok.value_edges_  # no value at all
    t = tok.transform(X)
    expected = []
    for visits, values in zip(X["codes"], X["values"]):
        for visit, vs in zip(visits, values):
            for c, x in zip(visit, vs):
                if c == "L" and not np.isnan(x):
                    expected.append((c, 1 + sum(e < x for e in ref)))
                elif c == "K":
                    expected.append((c, 1))  # every value of a constant code: bin 1
                else:
                    expected.append((c, 0))  # no value: the code alone
    assert value_bins_by_code(tok, t) == expected
    assert tok.n_value_bins_ == 4
    assert (t.value_bins[t.codes < N_SPECIAL] == 0).all()


def test_value_bins_learned_from_fit_rows_only():
    X = lab_frame()
    tok = EHRTokenizer(n_value_bins=4).fit(X)
    edges = {c: e.copy() for c, e in tok.value_edges_.items()}
    new = pd.DataFrame({"codes": [[["L", "K", "N", "NEW"]]], "ages": [[60.0]],
                        "values": [[[1000.0, -5.0, 3.0, 1.0]]]})
    both = pd.concat([X, new], ignore_index=True)
    t = tok.transform(both)
    assert tok.value_edges_.keys() == edges.keys()
    for c in edges:
        np.testing.assert_array_equal(tok.value_edges_[c], edges[c])
    # the fit rows tokenize as before; the new row: L above every cut point, K below its
    # constant, N and the unknown code without learned bins
    first = t.subset(range(len(X)))
    np.testing.assert_array_equal(first.value_bins, tok.transform(X).value_bins)
    assert value_bins_by_code(tok, t.subset([3])) == [("L", 4), ("K", 1), ("N", 0), ("[UNK]", 0)]
    # refitting on all rows does move L's cut points: the test above could fail
    assert not np.array_equal(EHRTokenizer(n_value_bins=4).fit(both).value_edges_["L"], edges["L"])


def test_values_off_or_absent_give_bin_zero():
    X = lab_frame()
    assert (EHRTokenizer(n_value_bins=0).fit(X).transform(X).value_bins == 0).all()
    tok = EHRTokenizer(n_value_bins=4).fit(X.drop(columns="values"))
    assert tok.n_value_bins_ == 0 and tok.value_edges_ == {}
    assert (tok.transform(X).value_bins == 0).all()
    # a fitted tokenizer reading a frame without values: every code alone
    fitted = EHRTokenizer(n_value_bins=4).fit(X)
    without = fitted.transform(X.drop(columns="values"))
    assert (without.value_bins == 0).all()
    np.testing.assert_array_equal(without.codes, fitted.transform(X).codes)


def test_tokenizer_state_round_trip():
    X = with_static_and_values(random_cohort(n=20, seed=3)[0], seed=3)
    tok = EHRTokenizer(max_length=12, n_value_bins=5).fit(X)
    again = EHRTokenizer.from_dict(tok.to_dict())
    assert again.get_params() == tok.get_params() and again.vocabulary_ == tok.vocabulary_
    a, b = tok.transform(X), again.transform(X)
    for name in ("codes", "value_bins", "age_bins", "offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # state saved before value bins existed: no bins
    old = {"params": {"max_length": 12}, "codes": list(tok.codes_[N_SPECIAL:])}
    assert (EHRTokenizer.from_dict(old).transform(X).value_bins == 0).all()


# ---------------------------------------------------------------- static codes


def test_static_codes_are_timeless_tokens_of_visit_zero():
    X = pd.DataFrame({"codes": [[["A"], ["B"]], [["A"]]], "ages": [[50.0, 52.0], [60.0]],
                      "index_age": [53.0, 61.0], "static": [["SEX//F", "ETH//X"], []]})
    tok = EHRTokenizer().fit(X)
    assert {"SEX//F", "ETH//X"} <= set(tok.vocabulary_)
    p = tok.transform(X).patient(0)
    assert [str(tok.codes_[c]) for c in p["codes"]] == ["[CLS]", "SEX//F", "ETH//X", "A", "[SEP]",
                                                        "B", "[SEP]"]
    assert p["visits"].tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert p["age_bins"][1:3].tolist() == [0, 0] and p["time_bins"][1:3].tolist() == [0, 0]
    assert (p["age_bins"][[0, 3, 4, 5, 6]] > 0).all()
    # an unseen static code maps to [UNK]; None and [] mean no static code
    other = X.copy()
    other["static"] = [["SEX//M"], None]
    t = tok.transform(other)
    assert t.patient(0)["codes"][1] == UNK_ID
    assert t.patient(1)["codes"].tolist() == [CLS_ID, tok.vocabulary_["A"], SEP_ID]
