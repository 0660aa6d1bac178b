"""Truncation, static codes and values through the estimators.

Landmark predictions stay causal when truncation is reached; what is cut is counted;
the X columns the estimators read are the documented ones, nothing else.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from survbehrt import BEHRTPretrainer
from survbehrt.data import EHRTokenizer, collate_tokens

from helpers import random_cohort, tiny_estimator, tiny_pretrainer

pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_length")


def long_patient(n_visits=10, seed=0):
    """One row of ``n_visits`` visits of 2-3 codes: about 30 tokens."""
    rng = np.random.default_rng(seed)
    visits = [[f"C{int(c)}" for c in rng.integers(0, 12, size=int(rng.integers(2, 4)))]
              for _ in range(n_visits)]
    ages = (50.0 + np.cumsum(rng.uniform(0.1, 1.0, size=n_visits))).round(2).tolist()
    return pd.DataFrame({"codes": [visits], "ages": [ages], "index_age": [ages[-1] + 0.5]})


def cut_at(X, n_keep):
    """The (single) row of X with its history cut after ``n_keep`` visits, same index_age."""
    cut = X.copy()
    for col in ("codes", "ages", "values"):
        if col in cut:
            cut[col] = [list(cut[col].iloc[0])[:n_keep]]
    return cut


@pytest.fixture(scope="module")
def fitted_25():
    X, y = random_cohort(n=80, max_visits=10, seed=11)
    return tiny_estimator(max_length=25, max_epochs=2, landmarks="all").fit(X, y)


def test_visit_risks_equal_predictions_on_the_cut_history(fitted_25):
    X = long_patient()
    tokens = fitted_25.tokenizer_.transform(X)
    assert tokens.n_truncated_rows == 1 and tokens.dropped_visits[0] > 0  # truncation reached
    assert not tokens.visit_complete.all()  # and some visits see a window set by later visits
    risks = fitted_25.predict_visit_risks(X)[0]
    first = int(tokens.dropped_visits[0])
    assert len(risks) == 10 - first
    for j, risk in enumerate(risks):
        expected = fitted_25.predict(cut_at(X, first + j + 1))[0]
        np.testing.assert_allclose(risk, expected, rtol=1e-6, atol=1e-6)

    # the test can fail: read straight from the kept sequence, an incomplete visit differs
    batch = collate_tokens(tokens, [0])
    from survbehrt.survival import risk_score

    with torch.no_grad():
        raw = np.asarray(risk_score(fitted_25.net_.module_.eval()(**batch)))[0]
    bad = np.flatnonzero(~tokens.visit_complete)
    assert not np.allclose(raw[bad], risks[bad], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(raw[tokens.visit_complete], risks[tokens.visit_complete], rtol=1e-5)


def test_landmarks_all_trains_on_complete_visits_only(fitted_25):
    from survbehrt.estimators._training import SurvivalNet

    class Recorder(torch.nn.Module):
        def forward(self, rows, *targets, **options):
            self.rows = rows
            return rows.sum()

    X = pd.concat([long_patient(seed=s) for s in range(3)] + [random_cohort(n=3, seed=1)[0]],
                  ignore_index=True)
    tokens = fitted_25.tokenizer_.transform(X)
    batch = collate_tokens(tokens, range(len(X)))
    assert not batch["visit_complete"][batch["visit_mask"]].all()
    net = SurvivalNet(module=fitted_25.net_.module_, criterion=Recorder, landmarks="all").initialize()
    y_pred = torch.randn(*batch["visit_mask"].shape, 5)
    y_true = {"time": torch.ones(len(X)), "event": torch.ones(len(X)),
              "group": torch.arange(len(X))}
    net.get_loss(y_pred, y_true, X=batch, training=True)
    expected = [y_pred[b, v] for b in range(len(X)) for v in range(batch["visit_mask"].shape[1])
                if batch["visit_mask"][b, v] and batch["visit_complete"][b, v]]
    torch.testing.assert_close(net.criterion_.rows, torch.stack(expected))


def test_truncation_reported_after_fit():
    X, y = random_cohort(n=40, max_visits=10, seed=2)
    with pytest.warns(UserWarning, match=r"rows \(\d+\.\d%\) are longer than max_length=12"):
        est = tiny_estimator(max_length=12, max_epochs=0).fit(X, y)
    ref = EHRTokenizer(max_length=12).fit(X).transform(X)
    lengths = [1 + sum(len(v) + 1 for v in visits) for visits in X["codes"]]
    assert est.truncation_["truncated_rows"] == sum(n > 12 for n in lengths) == ref.n_truncated_rows
    assert est.truncation_["tokens"] == sum(lengths)
    assert est.truncation_["truncated_tokens"] == sum(lengths) - ref.n_tokens
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*longer than max_length")
        assert tiny_estimator(max_epochs=0).fit(X, y).truncation_["truncated_rows"] == 0


# ---------------------------------------------------------------- X columns


@pytest.fixture(scope="module")
def rich():
    X, y = random_cohort(n=60, seed=4)
    rng = np.random.default_rng(4)
    X["static"] = [["SEX//F"] if rng.random() < 0.5 else ["SEX//M"] for _ in range(len(X))]
    X["values"] = [[[float(rng.normal()) for _ in v] for v in visits] for visits in X["codes"]]
    return X, y


def test_static_and_values_reach_the_model(rich):
    X, y = rich
    est = tiny_estimator(max_epochs=1).fit(X, y)
    assert {"SEX//F", "SEX//M"} <= set(est.vocabulary_)
    assert est.net_.module_.config.n_value_bins == est.tokenizer_.n_value_bins_ == 10
    assert list(est.feature_names_in_) == ["codes", "ages", "index_age", "static", "values"]
    flipped = X.iloc[:5].copy()
    flipped["static"] = [["SEX//M"] if s == ["SEX//F"] else ["SEX//F"] for s in flipped["static"]]
    base = est.predict(X.iloc[:5])
    assert (est.predict(X.iloc[:5]) == base).all()  # deterministic: any change is the input's
    assert (est.predict(flipped) != base).all()
    shifted = X.iloc[:5].copy()
    shifted["values"] = [[[x + 3.0 for x in v] for v in visits] for visits in shifted["values"]]
    assert (est.predict(shifted) != base).all()


def test_extra_columns_and_order_free_at_fit_and_predict(rich):
    X, y = rich
    noisy = X.assign(subject_id=np.arange(len(X)), note="x")[["note", "values", "ages", "static",
                                                             "subject_id", "index_age", "codes"]]
    est = tiny_estimator(max_epochs=1).fit(noisy, y)
    ref = tiny_estimator(max_epochs=1).fit(X, y)
    np.testing.assert_allclose(est.predict(X), ref.predict(X), rtol=1e-6)
    np.testing.assert_allclose(ref.predict(noisy.assign(other=1.0)), ref.predict(X), rtol=1e-6)


def test_missing_optional_column_at_predict_warns(rich):
    X, y = rich
    est = tiny_estimator(max_epochs=1).fit(X, y)
    for column in ("static", "values", "index_age"):
        with pytest.warns(UserWarning, match=f"lacks the column.*'{column}'"):
            risk = est.predict(X.drop(columns=column))
        assert np.isfinite(risk).all()
    with pytest.warns(UserWarning, match="lacks the column"):
        no_values = est.predict(X.drop(columns="values"))
    # an absent column reads like a column of None cells: every code without a value
    np.testing.assert_allclose(no_values, est.predict(X.assign(values=None)), rtol=1e-6)


def test_pretrainer_keeps_value_bins_through_save_and_load(rich, tmp_path):
    X, _ = rich
    pre = tiny_pretrainer().fit(X)
    assert pre.module_.config.n_value_bins == 10
    path = tmp_path / "pre.pt"
    pre.save(path)
    loaded = BEHRTPretrainer.load(path)
    assert loaded.tokenizer_.value_edges_.keys() == pre.tokenizer_.value_edges_.keys()
    np.testing.assert_array_equal(loaded.transform(X),
                                  pre.transform(X))
    # the estimator fine-tunes with the pretrainer's tokenizer and value table
    est = tiny_estimator(pretrained=pre, max_epochs=1).fit(X, rich[1])
    assert est.net_.module_.encoder.embeddings.value is not None
