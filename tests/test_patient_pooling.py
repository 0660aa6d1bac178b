"""BEHRTPretrainer(pooling=...): mean, max or the [CLS] token, trained, padding-free."""

import numpy as np
import pandas as pd
import pytest

from helpers import random_cohort, tiny_pretrainer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def X():
    return random_cohort(n=60, seed=8)[0]


@pytest.fixture(scope="module")
def cls_pretrainer(X, single_thread):
    return tiny_pretrainer(pooling="cls", max_epochs=6, lr=3e-3).fit(X)


def test_each_pooling_changes_the_embedding(cls_pretrainer, X):
    out = {}
    for pooling in ("mean", "max", "cls"):
        cls_pretrainer.set_params(pooling=pooling)
        out[pooling] = cls_pretrainer.transform(X)
        assert out[pooling].shape == (len(X), 16) and np.isfinite(out[pooling]).all()
    cls_pretrainer.set_params(pooling="cls")
    for a, b in (("mean", "max"), ("mean", "cls"), ("max", "cls")):
        assert not np.allclose(out[a], out[b], atol=1e-3), (a, b)
    # "max" is at least the mean in every coordinate (a max over the same visits)
    assert (out["max"] >= out["mean"] - 1e-5).all()


def test_the_cls_objective_trains(cls_pretrainer):
    history = cls_pretrainer.history_
    assert "train_cls" in history[-1]
    assert history[-1]["train_cls"] < history[0]["train_cls"]


def test_padding_never_enters_the_embedding(cls_pretrainer, X):
    # one patient alone, and the same patient batched with a much longer patient
    # (padded to that length): the same embedding for every pooling
    long_patient = pd.DataFrame({
        "codes": [[[f"C{i % 12}", f"C{(i + 3) % 12}"] for i in range(40)]],
        "ages": [[30.0 + 0.5 * i for i in range(40)]],
        "index_age": [51.0],
    })
    for pooling in ("mean", "max", "cls"):
        cls_pretrainer.set_params(pooling=pooling)
        for i in (0, 1, 2):
            alone = cls_pretrainer.transform(X.iloc[[i]])
            batched = cls_pretrainer.transform(pd.concat([X.iloc[[i]], long_patient]))
            np.testing.assert_allclose(batched[0], alone[0], rtol=1e-5, atol=1e-5)
    cls_pretrainer.set_params(pooling="cls")


def test_cls_needs_the_cls_objective(X):
    pre = tiny_pretrainer(max_epochs=1).fit(X)
    assert pre.module_.cls_head is None and "train_cls" not in pre.history_[-1]
    with pytest.raises(ValueError, match="fitted with pooling='cls'"):
        pre.set_params(pooling="cls").transform(X)
    with pytest.raises(ValueError, match="pooling='median' is not valid"):
        tiny_pretrainer(pooling="median").fit(X)


def test_cls_objective_with_next_visit_only(X):
    pre = tiny_pretrainer(objective="next_visit", pooling="cls", max_epochs=1).fit(X)
    assert {"train_next_visit", "train_cls"} <= set(pre.history_[-1])
    assert "train_mlm" not in pre.history_[-1]
    assert pre.transform(X).shape == (len(X), 16)
