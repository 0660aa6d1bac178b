"""save / load: one weights-only, versioned format; a loaded estimator predicts identically."""

import json
import warnings

import numpy as np
import pytest
import torch

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.estimators._persistence import FORMAT_VERSION, decode, encode
from survbehrt.model import LoRALinear

from helpers import random_cohort, tiny_estimator, tiny_pretrainer


@pytest.fixture(scope="module")
def data():
    return random_cohort(n=80, seed=11)


@pytest.fixture(scope="module")
def pretrainer(data, single_thread):
    return tiny_pretrainer(max_epochs=2).fit(data[0])


def _same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict_survival_function(X, return_array=True),
                                  b.predict_survival_function(X, return_array=True))
    np.testing.assert_array_equal(a.predict_cumulative_hazard_function(X, return_array=True),
                                  b.predict_cumulative_hazard_function(X, return_array=True))
    for ra, rb in zip(a.predict_visit_risks(X), b.predict_visit_risks(X), strict=True):
        np.testing.assert_array_equal(ra, rb)


@pytest.mark.parametrize("strategy", ["full", "lora", "frozen"])
def test_estimator_round_trip_predicts_identically(strategy, data, pretrainer, tmp_path):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = tiny_estimator(strategy=strategy, pretrained=pretrainer, time_bins=[0.5, 1.0, 2.5, 5.0],
                             lr=3e-3).fit(X, y)
    path = tmp_path / "model.pt"
    est.save(path)
    loaded = BEHRTSurvivalEstimator.load(path)
    _same_predictions(est, loaded, X)
    # fitted state, parameters (less the pretrainer, which is not saved), history
    np.testing.assert_array_equal(loaded.unique_times_, est.unique_times_)
    np.testing.assert_array_equal(loaded.time_grid_.cuts_, est.time_grid_.cuts_)
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    assert loaded.vocabulary_ == est.vocabulary_ and loaded.vocabulary_ is loaded.tokenizer_.vocabulary_
    assert (loaded.n_params_, loaded.n_trainable_params_) == (est.n_params_, est.n_trainable_params_)
    expected = {**est.get_params(deep=False), "pretrained": None}
    got = loaded.get_params(deep=False)
    np.testing.assert_array_equal(got.pop("time_bins"), expected.pop("time_bins"))
    assert got == expected
    assert [r["train_loss"] for r in loaded.history_] == [r["train_loss"] for r in est.history_]
    if strategy == "lora":  # the adapters came back, trained (B starts at zero)
        adapters = [m for m in loaded.net_.module_.modules() if isinstance(m, LoRALinear)]
        assert adapters and all(a.lora_B.abs().sum() > 0 for a in adapters)


@pytest.mark.parametrize("wide", ["joint", "offset", None])
def test_round_trip_with_static_codes_values_and_the_wide_term(wide, tmp_path):
    X, y = random_cohort(n=60, seed=4)
    rng = np.random.default_rng(4)
    X["static"] = [["SEX//F"] if rng.random() < 0.5 else ["SEX//M"] for _ in range(len(X))]
    X["values"] = [[[float(rng.normal()) for _ in v] for v in visits] for visits in X["codes"]]
    est = tiny_estimator(max_epochs=2, wide=wide).fit(X, y)
    assert est.tokenizer_.n_value_bins_ > 0 and (est.net_.module_.wide is None) == (wide is None)
    est.save(tmp_path / "m.pt")
    loaded = BEHRTSurvivalEstimator.load(tmp_path / "m.pt")
    _same_predictions(est, loaded, X)
    assert loaded.tokenizer_.value_edges_.keys() == est.tokenizer_.value_edges_.keys()
    for code, edges in est.tokenizer_.value_edges_.items():
        np.testing.assert_array_equal(loaded.tokenizer_.value_edges_[code], edges)
    pre = tiny_pretrainer(pooling="cls").fit(X)
    pre.save(tmp_path / "p.pt")
    np.testing.assert_array_equal(BEHRTPretrainer.load(tmp_path / "p.pt").transform(X), pre.transform(X))


def test_the_file_is_weights_only_plain_values(data, pretrainer, tmp_path):
    X, y = data
    est = tiny_estimator(max_epochs=1).fit(X, y)
    est.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)  # no code is unpickled
    assert set(payload) == {"format", "format_version", "metadata", "state_dict"}
    assert payload["format_version"] == FORMAT_VERSION
    meta = json.loads(payload["metadata"])  # everything but the weights is JSON
    assert meta["class"] == "BEHRTSurvivalEstimator"
    assert meta["components"]["tokenizer_"]["class"] == "EHRTokenizer"
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_pretrainer_round_trip_with_each_pooling(data, tmp_path):
    X, _ = data
    for pooling in ("mean", "cls"):
        pre = tiny_pretrainer(pooling=pooling).fit(X)
        pre.save(tmp_path / f"{pooling}.pt")
        loaded = BEHRTPretrainer.load(tmp_path / f"{pooling}.pt")
        np.testing.assert_array_equal(loaded.transform(X), pre.transform(X))
        assert loaded.get_params() == pre.get_params()
        assert loaded.score(X) == pre.score(X)
        assert (loaded.module_.cls_head is None) == (pooling != "cls")


def test_load_leaves_the_global_torch_rng_alone(data, pretrainer, tmp_path):
    pretrainer.save(tmp_path / "p.pt")
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    BEHRTPretrainer.load(tmp_path / "p.pt")
    torch.testing.assert_close(torch.rand(2), expected)


def test_clear_errors(data, pretrainer, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        BEHRTSurvivalEstimator.load(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ValueError, match="not a file written by BEHRTSurvivalEstimator.save"):
        BEHRTSurvivalEstimator.load(tmp_path / "text.pt")
    pretrainer.save(tmp_path / "pre.pt")
    with pytest.raises(ValueError, match=r"holds a BEHRTPretrainer.*BEHRTPretrainer.load"):
        BEHRTSurvivalEstimator.load(tmp_path / "pre.pt")
    payload = torch.load(tmp_path / "pre.pt", weights_only=True)
    for version, advice in ((FORMAT_VERSION + 1, "upgrade survbehrt"), (1, "refit the model")):
        torch.save({**payload, "format_version": version}, tmp_path / "other.pt")
        with pytest.raises(ValueError, match=f"format version {version}.*{advice}"):
            BEHRTPretrainer.load(tmp_path / "other.pt")
    # the first pretrainer files (format 1) are refused with the same advice
    torch.save({"format": "survbehrt.BEHRTPretrainer", "version": 1}, tmp_path / "v1.pt")
    with pytest.raises(ValueError, match="format version 1.*refit"):
        BEHRTPretrainer.load(tmp_path / "v1.pt")


def test_unsaveable_values_are_refused_by_name(data, tmp_path):
    X, y = data
    est = tiny_estimator(max_epochs=1).fit(X, y)
    est.extra_ = object()  # a fitted attribute that is not a plain value
    with pytest.raises(TypeError, match=r"BEHRTSurvivalEstimator\.extra_.*not a plain value"):
        est.save(tmp_path / "m.pt")


def test_callbacks_and_random_state_objects_are_dropped(data, tmp_path):
    from skorch.callbacks import EpochTimer

    X, y = data
    est = tiny_estimator(max_epochs=1, callbacks=[EpochTimer()],
                         random_state=np.random.RandomState(0)).fit(X, y)
    est.save(tmp_path / "m.pt")
    meta = json.loads(torch.load(tmp_path / "m.pt", weights_only=True)["metadata"])
    assert set(meta["not_saved"]) == {"callbacks", "random_state"}
    loaded = BEHRTSurvivalEstimator.load(tmp_path / "m.pt")
    assert loaded.callbacks is None and loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))


def test_encode_decode_round_trip():
    value = {
        "f": np.array([0.1, np.nan, np.inf], dtype=np.float32),
        "i": np.arange(6, dtype=np.int64).reshape(2, 3),
        "b": np.array([True, False]),
        "o": np.array(["a", "b"], dtype=object),
        "u": np.array(["xy", "z"]),
        "t": (1, 2.5, None, "s"),
        "nested": {"__tuple__": 1, 3: [np.int32(4), np.float64(0.5), np.bool_(True)]},
        "empty": np.zeros((0, 2)),
    }
    back = decode(json.loads(json.dumps(encode(value))))
    assert back.keys() == value.keys()
    for key in ("f", "i", "b", "o", "u", "empty"):
        assert back[key].dtype == value[key].dtype and back[key].shape == value[key].shape
        np.testing.assert_array_equal(back[key], value[key])
    assert back["t"] == (1, 2.5, None, "s")
    assert back["nested"] == {"__tuple__": 1, 3: [4, 0.5, True]}
    with pytest.raises(TypeError, match=r"where\['k'\]"):
        encode({"k": {1, 2}}, "where")


def _tamper(src, dst, meta=None, weights=None):
    """Copy a saved file with its metadata and/or weights changed in place by the callables."""
    payload = torch.load(src, weights_only=True)
    metadata = json.loads(payload["metadata"])
    if meta is not None:
        meta(metadata)
    if weights is not None:
        weights(payload["state_dict"])
    torch.save({**payload, "metadata": json.dumps(metadata)}, dst)


def _first_weight(w):
    return next(iter(w))


_TAMPERED = {
    "unknown parameter": (dict(meta=lambda m: m["params"].update(colour="red")),
                          r"sets parameters \['colour'\] that BEHRTSurvivalEstimator does not have"),
    "unknown module setting": (dict(meta=lambda m: m["module"]["config"].update(depth=3)),
                               r"cannot rebuild the torch module.*depth.*another configuration"),
    "module of another size": (dict(meta=lambda m: m["module"]["config"].update(ff_dim=8)),
                               r"weights do not fit.*of another shape \(.*file \(32,.*model \(8,"),
    "missing weight": (dict(weights=lambda w: w.pop(_first_weight(w))),
                       r"weights do not fit.*1 missing \(e\.g\. \['encoder\."),
    "extra weight": (dict(weights=lambda w: w.update(stray=torch.zeros(2))),
                     r"weights do not fit.*1 extra \(e\.g\. \['stray'\]\)"),
    "method shadowed": (dict(meta=lambda m: m["attributes"].update(predict=1)),
                        r"attribute 'predict', which is not a fitted attribute"),
    "parameter shadowed": (dict(meta=lambda m: m["attributes"].update(lr_=1, lr=2)),
                           r"attribute 'lr', which is not a fitted attribute"),
    "component method shadowed": (
        dict(meta=lambda m: m["components"]["tokenizer_"]["fitted"].update(transform=1)),
        r"tokenizer_ sets the attribute 'transform', which is not a fitted attribute of EHRTokenizer"),
    "component parameter unknown": (
        dict(meta=lambda m: m["components"]["time_grid_"]["params"].update(colour=1)),
        r"time_grid_ sets parameters \['colour'\] that TimeGrid does not have"),
    "metadata cut": (dict(meta=lambda m: m.pop("module")), r"metadata lacks \['module'\]"),
}


@pytest.fixture(scope="module")
def saved_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "m.pt"
    tiny_estimator(max_epochs=1).fit(*data).save(path)
    return path


@pytest.mark.parametrize("case", list(_TAMPERED))
def test_tampered_files_fail_with_a_value_error_saying_what(case, saved_file, tmp_path):
    change, message = _TAMPERED[case]
    _tamper(saved_file, tmp_path / "t.pt", **change)
    with pytest.raises(ValueError, match=message):
        BEHRTSurvivalEstimator.load(tmp_path / "t.pt")


def test_another_package_version_is_read_with_a_warning(data, saved_file, tmp_path):
    _tamper(saved_file, tmp_path / "old.pt", meta=lambda m: m.update(survbehrt_version="0.0.1"))
    with pytest.warns(UserWarning, match=r"written by survbehrt 0\.0\.1; this is survbehrt .*"
                                         r"format is the same"):
        loaded = BEHRTSurvivalEstimator.load(tmp_path / "old.pt")
    np.testing.assert_array_equal(loaded.predict(data[0]),
                                  BEHRTSurvivalEstimator.load(saved_file).predict(data[0]))
