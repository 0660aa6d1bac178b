"""Tests of the count-feature transformer ``CodeCountTransformer``."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sksurv.linear_model import CoxPHSurvivalAnalysis

from survbehrt.data.features import CodeCountTransformer
from survbehrt.datasets import make_synthetic_ehr


@pytest.fixture(scope="module")
def cohort():
    return make_synthetic_ehr(n_patients=400, random_state=3)


def _reference(X, vocabulary, log):
    """Plain-loop reference: one Counter per patient."""
    out = np.zeros((len(X), len(vocabulary) + 2))
    for i, (visits, ages) in enumerate(zip(X["codes"], X["ages"])):
        for code, k in Counter(c for v in visits for c in v).items():
            if code in vocabulary:
                out[i, vocabulary[code]] = np.log1p(k) if log else k
        out[i, -2] = X["index_age"].iloc[i] if "index_age" in X else ages[-1]
        out[i, -1] = np.log1p(len(visits)) if log else len(visits)
    return out


@pytest.mark.parametrize("log", [True, False])
def test_counts_equal_a_plain_loop(cohort, log):
    X = cohort[0]
    cct = CodeCountTransformer(log=log).fit(X)
    np.testing.assert_allclose(cct.transform(X), _reference(X, cct.vocabulary_, log))


def test_vocabulary_comes_from_the_fit_rows_only(cohort):
    X = cohort[0]
    train, test = X.iloc[:50], X.iloc[50:]
    seen = {c for visits in train["codes"] for v in visits for c in v}
    cct = CodeCountTransformer().fit(train)
    assert set(cct.vocabulary_) == seen
    assert sorted(cct.vocabulary_) == cct.codes_.tolist()
    assert [cct.vocabulary_[c] for c in cct.codes_] == list(range(len(seen)))
    # Codes of the test rows that the training rows never had are ignored.
    unseen = {c for visits in test["codes"] for v in visits for c in v} - seen
    assert unseen, "the test rows should hold codes unseen in the 50 training rows"
    np.testing.assert_allclose(cct.transform(test), _reference(test, cct.vocabulary_, True))


def test_a_made_up_code_is_ignored():
    X = pd.DataFrame({"codes": [[["A", "B"], ["A"]]], "ages": [[40.0, 41.0]]})
    cct = CodeCountTransformer(log=False).fit(X)
    X_new = pd.DataFrame({"codes": [[["A", "NEW"], ["NEW"]]], "ages": [[50.0, 52.0]]})
    np.testing.assert_array_equal(cct.transform(X_new), [[1.0, 0.0, 52.0, 2.0]])


def test_min_frequency_and_max_features(cohort):
    X = cohort[0]
    ref = CodeCountTransformer().fit(X)
    freq = dict(zip(ref.codes_, ref.code_frequency_))
    # Document frequency: the number of patients having the code.
    for code in list(freq)[:20]:
        assert freq[code] == sum(any(code in v for v in visits) for visits in X["codes"])
    by_count = CodeCountTransformer(min_frequency=20).fit(X)
    assert set(by_count.vocabulary_) == {c for c, f in freq.items() if f >= 20}
    by_fraction = CodeCountTransformer(min_frequency=0.05).fit(X)
    assert set(by_fraction.vocabulary_) == {c for c, f in freq.items() if f >= 0.05 * len(X)}
    top = CodeCountTransformer(max_features=10).fit(X)
    expected = sorted(freq, key=lambda c: (-freq[c], c))[:10]
    assert set(top.vocabulary_) == set(expected)
    assert top.transform(X).shape == (len(X), 12)


def test_optional_columns_names_and_sparse_output(cohort):
    X = cohort[0]
    dense = CodeCountTransformer().fit(X)
    names = dense.get_feature_names_out()
    assert names.tolist()[-2:] == ["index_age", "n_visits"]
    assert len(names) == dense.n_features_out_ == dense.transform(X).shape[1]
    sparse = CodeCountTransformer(sparse_output=True).fit(X)
    Xt = sparse.transform(X)
    assert sp.issparse(Xt)
    np.testing.assert_allclose(Xt.toarray(), dense.transform(X))
    bare = CodeCountTransformer(include_age=False, include_n_visits=False).fit(X)
    assert bare.transform(X).shape[1] == len(bare.vocabulary_)
    assert all(n.startswith("count__") for n in bare.get_feature_names_out())


def test_without_index_age_uses_the_last_visit(cohort):
    X = cohort[0].drop(columns="index_age")
    Xt = CodeCountTransformer().fit(X).transform(X)
    np.testing.assert_array_equal(Xt[:, -2], X["ages"].map(lambda a: a[-1]).to_numpy())


def test_pandas_output(cohort):
    X = cohort[0]
    out = CodeCountTransformer().set_output(transform="pandas").fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns)[-2:] == ["index_age", "n_visits"]


def test_errors():
    X = pd.DataFrame({"codes": [[["A"]]], "ages": [[40.0]]})
    with pytest.raises(NotFittedError):
        CodeCountTransformer().transform(X)
    for bad in (0, -1, 1.5, 0.0):
        with pytest.raises(ValueError, match="min_frequency"):
            CodeCountTransformer(min_frequency=bad).fit(X)
    with pytest.raises(ValueError, match="max_features"):
        CodeCountTransformer(max_features=0).fit(X)
    with pytest.raises(ValueError, match="codes"):
        CodeCountTransformer().fit(X.drop(columns="codes"))


def test_pipeline_with_cox(cohort):
    X, y, _ = cohort
    model = make_pipeline(CodeCountTransformer(min_frequency=5), CoxPHSurvivalAnalysis(alpha=1.0))
    model.fit(X.iloc[:300], y[:300])
    risk = model.predict(X.iloc[300:])
    assert risk.shape == (100,) and np.isfinite(risk).all()
    assert 0.5 < model.score(X.iloc[300:], y[300:]) <= 1.0
    scores = cross_val_score(clone(model), X, y, cv=3)
    assert scores.shape == (3,) and np.all((scores > 0) & (scores <= 1))
