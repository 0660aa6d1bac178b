"""BEHRTSurvivalEstimator and BEHRTPretrainer: the contract, strategies, bad input, persistence."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sksurv.util import Surv

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.model import LoRALinear

from helpers import random_cohort, tiny_estimator, tiny_pretrainer


@pytest.fixture(scope="module")
def data():
    return random_cohort(n=120, seed=5)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return tiny_estimator(max_epochs=3, validation_fraction=0.2, early_stopping="cindex",
                          loss="hybrid").fit(X, y)


@pytest.fixture(scope="module")
def pretrainer(data):
    X, _ = data
    return tiny_pretrainer().fit(X)


# ---------------------------------------------------------------- the prediction contract


def test_predict_shapes_and_fitted_attributes(fitted, data):
    X, y = data
    risk = fitted.predict(X)
    assert risk.shape == (len(X),) and np.isfinite(risk).all()
    # every observed time of the training rows (scikit-survival's convention), events flagged
    times = set(y["time"].tolist())
    assert set(fitted.unique_times_.tolist()) < times
    assert len(fitted.unique_times_) == round(0.8 * len(X))  # the validation rows are not in it
    for t, is_event in zip(fitted.unique_times_, fitted.is_event_time_):
        assert is_event == bool(y["event"][y["time"] == t].any())
    assert fitted.time_grid_.n_bins_ == 5
    assert fitted.vocabulary_ is fitted.tokenizer_.vocabulary_
    assert list(fitted.feature_names_in_) == ["codes", "ages", "index_age"]
    assert 0 < fitted.n_trainable_params_ == fitted.n_params_
    history = fitted.history_
    for key in ("train_loss", "valid_loss", "valid_cindex", "train_nll", "train_ranking",
                "valid_nll", "valid_ranking"):
        assert key in history[-1], key
    # the hybrid loss logged is nll + rank_weight * ranking, epoch means of batch means
    batches = history[-1]["batches"]
    train = [b for b in batches if "train_loss" in b]
    for b in train:
        np.testing.assert_allclose(b["train_loss"], b["train_nll"] + 0.2 * b["train_ranking"], rtol=1e-5)


def test_survival_functions_consistent(fitted, data):
    X, y = data
    fns = fitted.predict_survival_function(X)
    arr = fitted.predict_survival_function(X, return_array=True)
    assert arr.shape == (len(X), len(fitted.unique_times_))
    grid = np.linspace(0, y["time"].max(), 50)
    for fn, row in zip(fns, arr):
        np.testing.assert_allclose(fn(fitted.unique_times_), row)
        values = fn(grid)  # never raises up to the largest training time
        assert (np.diff(values) <= 1e-12).all() and (values >= 0).all() and (values <= 1).all()
    cum = fitted.predict_cumulative_hazard_function(X, return_array=True)
    np.testing.assert_allclose(cum, -np.log(arr), rtol=1e-5, atol=1e-6)
    # the risk score is the cumulative hazard summed over the grid's edges
    cum_fns = fitted.predict_cumulative_hazard_function(X)
    edges = fitted.time_grid_.cuts_[1:]
    np.testing.assert_allclose(fitted.predict(X), [fn(edges).sum() for fn in cum_fns], rtol=1e-5)


def test_score_is_harrell_c(fitted, data):
    from sksurv.metrics import concordance_index_censored

    X, y = data
    expected = concordance_index_censored(y["event"], y["time"], fitted.predict(X))[0]
    assert fitted.score(X, y) == expected


def test_visit_risks_end_with_predict(fitted, data):
    X, _ = data
    risks = fitted.predict_visit_risks(X.iloc[:10])
    np.testing.assert_allclose([r[-1] for r in risks], fitted.predict(X.iloc[:10]), rtol=1e-5)
    assert [len(r) for r in risks] == [len(v) for v in X["codes"].iloc[:10]]


def test_visit_risk_ignores_later_visits(fitted, data):
    X, _ = data
    row = X.iloc[[int(np.argmax([len(v) for v in X["codes"]]))]]
    k = len(row["codes"].iloc[0])
    cut = row.copy()
    cut["codes"] = [row["codes"].iloc[0][: k - 1]]
    cut["ages"] = [row["ages"].iloc[0][: k - 1]]
    # same index_age: the truncated history's risk equals the full history's risk at visit k-1
    full = fitted.predict_visit_risks(row)[0]
    np.testing.assert_allclose(fitted.predict_visit_risks(cut)[0], full[: k - 1], rtol=1e-5, atol=1e-6)


def test_training_beats_no_training():
    from survbehrt.datasets import make_synthetic_ehr

    X, y, _ = make_synthetic_ehr(n_patients=700, random_state=1)
    train, test = np.arange(500), np.arange(500, 700)
    # the transformer alone (no wide path, whose Cox start is already informative)
    kw = dict(embedding_dim=32, num_layers=1, num_heads=2, ff_dim=64, time_bins=10, wide=None,
              early_stopping=None, validation_fraction=0, random_state=0, lr=3e-3)
    untrained = BEHRTSurvivalEstimator(max_epochs=0, **kw).fit(X.iloc[train], y[train])
    trained = BEHRTSurvivalEstimator(max_epochs=8, **kw).fit(X.iloc[train], y[train])
    assert trained.score(X.iloc[test], y[test]) > untrained.score(X.iloc[test], y[test]) + 0.05


# ---------------------------------------------------------------- strategies and losses


@pytest.mark.parametrize("loss", ["nll", "ranking", "hybrid"])
@pytest.mark.parametrize("strategy", ["full", "lora", "frozen"])
def test_every_strategy_and_loss_fits(strategy, loss, data, pretrainer):
    X, y = data
    est = tiny_estimator(strategy=strategy, loss=loss, max_epochs=1, pretrained=pretrainer).fit(X, y)
    assert np.isfinite(est.predict(X)).all()
    module = est.net_.module_
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    # the hazard head, the decayed sums and the wide path sit outside the encoder: they
    # train in every strategy
    head = {n for n, _ in module.named_parameters()
            if n.startswith(("head.", "history.", "wide."))}
    assert any(n.startswith("wide.") for n in head) and any(n.startswith("history.") for n in head)
    if strategy == "frozen":
        assert trainable == head
    elif strategy == "lora":
        assert trainable - head and all(".lora_" in n for n in trainable - head)
        assert any(isinstance(m, LoRALinear) for m in module.modules())
    else:
        assert trainable == {n for n, _ in module.named_parameters()}
    assert est.n_trainable_params_ == sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_trainable_counts_order(data, pretrainer):
    X, y = data
    counts = {s: tiny_estimator(strategy=s, max_epochs=0, pretrained=pretrainer).fit(X, y).n_trainable_params_
              for s in ("frozen", "lora", "full")}
    assert counts["frozen"] < counts["lora"] < counts["full"]


def test_frozen_keeps_pretrained_encoder(data, pretrainer):
    X, y = data
    est = tiny_estimator(strategy="frozen", max_epochs=2, pretrained=pretrainer).fit(X, y)
    state = est.net_.module_.encoder.state_dict()
    for k, v in pretrainer.encoder_state_dict().items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)


def test_full_from_pretrained_starts_there(data, pretrainer):
    X, y = data
    est = tiny_estimator(strategy="full", max_epochs=0, pretrained=pretrainer).fit(X, y)
    state = est.net_.module_.encoder.state_dict()
    for k, v in pretrainer.encoder_state_dict().items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    assert est.vocabulary_ == pretrainer.vocabulary_


@pytest.mark.parametrize("dropout", [0.0, 0.35])
def test_dropout_applies_when_fine_tuning_a_pretrained_encoder(data, pretrainer, dropout):
    # dropout is a training setting: it must not silently fall back to the pretrainer's
    assert pretrainer.dropout != dropout
    X, y = data
    est = tiny_estimator(max_epochs=0, dropout=dropout, pretrained=pretrainer).fit(X, y)
    module = est.net_.module_
    rates = {m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {dropout}
    assert module.encoder.config.dropout == dropout
    assert pretrainer.module_.encoder.config.dropout == pretrainer.dropout  # not mutated


def test_lora_and_frozen_without_pretrained_warn(data):
    X, y = data
    for strategy in ("lora", "frozen"):
        with pytest.warns(UserWarning, match="randomly initialised encoder"):
            tiny_estimator(strategy=strategy, max_epochs=0).fit(X, y)


def test_landmarks_all_trains_on_every_visit(data):
    # the loss of landmarks="all" is the likelihood of every (patient, visit) row, each
    # predicting the outcome after the prediction time; "last" uses the last visit only
    from survbehrt.estimators._training import to_device

    X, y = data
    est = tiny_estimator(landmarks="all", loss="nll", max_epochs=1).fit(X, y)
    net = est.net_
    tokens = est.tokenizer_.transform(X.iloc[:16])
    from survbehrt.data.batching import collate_tokens

    batch = to_device(collate_tokens(tokens, np.arange(16)), "cpu")
    y_true = {"time": torch.tensor(y["time"][:16].astype(np.float32)),
              "event": torch.tensor(y["event"][:16].astype(np.float32)),
              "group": torch.arange(16, dtype=torch.float32)}
    net.module_.eval()
    with torch.no_grad():
        logits = net.module_(**batch)
        loss_all = net.get_loss(logits, y_true, X=batch).item()
        net.landmarks = "last"
        loss_last = net.get_loss(logits, y_true, X=batch).item()
    cuts = est.time_grid_.cuts_
    rows_all, rows_last = [], []
    for i in range(16):
        n_vis = int(batch["visit_mask"][i].sum())
        for v in range(n_vis):
            nll = _nll_loop(logits[i, v].numpy(), cuts, y["time"][i], bool(y["event"][i]))
            rows_all.append(nll)
            if v == n_vis - 1:
                rows_last.append(nll)
    assert loss_all == pytest.approx(np.mean(rows_all), rel=1e-4)
    assert loss_last == pytest.approx(np.mean(rows_last), rel=1e-4)
    assert len(rows_all) > len(rows_last)


def _nll_loop(a, cuts, t, event):
    """-log L of one row from the definition (rate eta_k / width_k in bin k, censored at c_K)."""
    import math

    if t > cuts[-1]:
        t, event = cuts[-1], False
    h = 0.0
    for k in range(len(cuts) - 1):
        rate = math.log1p(math.exp(float(a[k]))) / (cuts[k + 1] - cuts[k])
        if t <= cuts[k + 1] or k == len(cuts) - 2:
            return h + rate * (t - cuts[k]) - (math.log(rate) if event else 0.0)
        h += rate * (cuts[k + 1] - cuts[k])


def test_unfitted_pretrained_rejected(data):
    X, y = data
    with pytest.raises(ValueError, match="fitted BEHRTPretrainer"):
        tiny_estimator(pretrained=tiny_pretrainer()).fit(X, y)


# ---------------------------------------------------------------- bad input


def test_predict_before_fit():
    X, _ = random_cohort(n=5)
    for method in ("predict", "predict_survival_function", "predict_cumulative_hazard_function"):
        with pytest.raises(NotFittedError):
            getattr(tiny_estimator(), method)(X)
    with pytest.raises(NotFittedError):
        tiny_pretrainer().transform(X)


@pytest.mark.parametrize("name, value", [("strategy", "lorra"), ("loss", "cox"), ("landmarks", "first")])
def test_typos_list_valid_values(name, value, data):
    X, y = data
    with pytest.raises(ValueError, match=rf"{name}='{value}' is not valid; choose one of \["):
        tiny_estimator(**{name: value}).fit(X, y)


def test_pretrainer_objective_typo(data):
    with pytest.raises(ValueError, match="objective='mlmm' is not valid"):
        tiny_pretrainer(objective="mlmm").fit(data[0])


@pytest.mark.parametrize("name, value", [("lr", 0), ("batch_size", 0), ("validation_fraction", 1.0),
                                         ("max_epochs", -1)])
def test_bad_numeric_params(name, value, data):
    X, y = data
    with pytest.raises(ValueError, match=name):
        tiny_estimator(**{name: value}).fit(X, y)


def test_early_stopping_needs_validation(data):
    X, y = data
    with pytest.raises(ValueError, match="validation set"):
        tiny_estimator(early_stopping="loss", validation_fraction=0).fit(X, y)


def test_all_censored_y(data):
    X, y = data
    censored = Surv.from_arrays(np.zeros(len(y), bool), y["time"])
    with pytest.raises(ValueError, match="no events"):
        tiny_estimator().fit(X, censored)


def test_bad_y_values(data):
    X, y = data
    bad = y.copy()
    bad["time"][7] = np.nan
    with pytest.raises(ValueError, match="y row 7, field 'time'"):
        tiny_estimator().fit(X, bad)
    bad = y.copy()
    bad["time"][3] = -1.0
    with pytest.raises(ValueError, match="y row 3, field 'time'.*negative"):
        tiny_estimator().fit(X, bad)
    with pytest.raises(ValueError, match=f"y has {len(y) - 1} rows but X has {len(y)}"):
        tiny_estimator().fit(X, y[:-1])


def test_bad_x_names_row_and_column(data):
    X, y = data
    bad = X.copy()
    ages = bad["ages"].tolist()
    ages[4] = list(reversed(ages[4])) if len(ages[4]) > 1 else [np.nan]
    bad["ages"] = ages
    with pytest.raises(ValueError, match=r"X row 4 .*column 'ages'"):
        tiny_estimator().fit(bad, y)


def test_too_many_time_bins_warns_and_reduces(data):
    X, y = data
    few = y.copy()
    few["event"][:] = False
    few["event"][:3] = True
    few["time"][:3] = [1.0, 2.0, 3.0]
    with pytest.warns(UserWarning):
        est = tiny_estimator(time_bins=50, max_epochs=0).fit(X, few)
    assert est.time_grid_.n_bins_ <= 3


def test_unknown_codes_at_predict_map_to_unk(fitted):
    base = pd.DataFrame({"codes": [[["C1"], ["NEVER-SEEN-1", "C2"]]], "ages": [[50.0, 51.0]],
                         "index_age": [51.5]})
    other = base.copy()
    other["codes"] = [[["C1"], ["NEVER-SEEN-2", "C2"]]]
    np.testing.assert_array_equal(fitted.predict(base), fitted.predict(other))
    assert fitted.tokenizer_.transform(base).codes.tolist().count(4) == 1  # [UNK]


def test_predict_validates_x(fitted):
    bad = pd.DataFrame({"codes": [[["C1"], []]], "ages": [[50.0, 51.0]], "index_age": [52.0]})
    with pytest.raises(ValueError, match=r"X row 0 .*column 'codes'.*empty visit"):
        fitted.predict(bad)


# ---------------------------------------------------------------- pretrainer


@pytest.mark.parametrize("objective", ["mlm", "next_visit", "both"])
def test_pretrainer_objectives(objective, data):
    X, _ = data
    pre = tiny_pretrainer(objective=objective).fit(X)
    emb = pre.transform(X)
    assert emb.shape == (len(X), 16) and np.isfinite(emb).all()
    parts = {"mlm": ["train_mlm"], "next_visit": ["train_next_visit"],
             "both": ["train_mlm", "train_next_visit"]}[objective]
    for key in parts:
        assert key in pre.history_[-1]
    score = pre.score(X)
    assert np.isfinite(score)
    if objective != "next_visit":
        assert 0.0 <= score <= 1.0
    assert pre.score(X) == score  # fixed masks: deterministic
    assert list(pre.get_feature_names_out()) == [f"behrt{i}" for i in range(16)]


def test_pretraining_learns():
    # visits are pairs (C_k, C_k+6): a masked code is predictable from its partner
    rng = np.random.default_rng(0)
    codes, ages = [], []
    for _ in range(150):
        ks = rng.integers(0, 6, int(rng.integers(2, 6)))
        codes.append([[f"C{k}", f"C{k + 6}"] for k in ks])
        ages.append(sorted(rng.uniform(30, 70, len(ks)).tolist()))
    X = pd.DataFrame({"codes": codes, "ages": ages})
    short = tiny_pretrainer(objective="mlm", max_epochs=1, lr=3e-3).fit(X)
    longer = tiny_pretrainer(objective="mlm", max_epochs=15, lr=3e-3).fit(X)
    assert longer.history_[-1]["train_loss"] < short.history_[0]["train_loss"]
    assert longer.score(X) > short.score(X)


def test_pretrainer_save_load(tmp_path, pretrainer, data):
    X, y = data
    path = tmp_path / "pre.pt"
    pretrainer.save(path)
    loaded = BEHRTPretrainer.load(path)
    np.testing.assert_array_equal(loaded.transform(X), pretrainer.transform(X))
    assert loaded.vocabulary_ == pretrainer.vocabulary_
    assert loaded.get_params() == pretrainer.get_params()
    assert loaded.score(X) == pretrainer.score(X)
    # a path is accepted by the survival estimator
    est = tiny_estimator(strategy="frozen", pretrained=str(path), max_epochs=1).fit(X, y)
    for k, v in pretrainer.encoder_state_dict().items():
        torch.testing.assert_close(est.net_.module_.encoder.state_dict()[k], v, rtol=0, atol=0)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ValueError, match="not a file written by BEHRTPretrainer.save"):
        BEHRTPretrainer.load(path)


def test_fit_leaves_global_torch_rng_alone(data):
    X, y = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny_estimator(max_epochs=1).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


def test_all_unknown_last_visit_still_informs_prediction(fitted):
    # Two patients differ only in the age of an all-unknown last visit: [UNK] tokens are
    # pooled, so the last visit's representation (and the risk) sees that visit.
    a = pd.DataFrame({"codes": [[["C1"], ["NEW-1", "NEW-2"]]], "ages": [[50.0, 51.0]],
                      "index_age": [51.0]})
    b = a.copy()
    b["ages"] = [[50.0, 80.0]]
    b["index_age"] = [80.0]
    assert fitted.predict(a)[0] != fitted.predict(b)[0]
    visit = fitted.predict_visit_risks(a)[0]
    assert np.isfinite(visit).all() and len(visit) == 2


@pytest.mark.parametrize("monitor", ["cindex", "loss"])
def test_early_stopping_keeps_the_start_when_training_only_hurts(monitor):
    # the wide path's Cox fit is informative on count data; a learning rate of 5 wrecks
    # every epoch, so the validation score never beats the start, which is restored
    from survbehrt.datasets import make_synthetic_ehr

    X, y, _ = make_synthetic_ehr(n_patients=600, scenario="counts", random_state=2)
    kw = dict(validation_fraction=0.3, early_stopping=monitor, patience=3, time_bins=8)
    start = tiny_estimator(max_epochs=0, **kw).fit(X, y)
    wrecked = tiny_estimator(max_epochs=3, lr=5.0, **kw).fit(X, y)
    stopper = dict(wrecked.net_.callbacks_)["early_stopping"]
    assert stopper.best_epoch_ == 0
    # (an epoch whose training loss turned non-finite is stopped before it is scored)
    key = "valid_cindex" if monitor == "cindex" else "valid_loss"
    scored = [h[key] for h in wrecked.history_ if key in h]
    assert scored
    if monitor == "cindex":
        assert all(score < stopper.start_score_ for score in scored)
    else:
        assert all(score > stopper.start_score_ for score in scored)
    np.testing.assert_allclose(wrecked.predict(X), start.predict(X), rtol=1e-6)


@pytest.mark.parametrize("loss", ["nll", "hybrid"])
def test_start_validation_loss_is_skorchs_valid_loss(loss):
    # With weights that cannot move (lr ~ 0, no weight decay) the first epoch's recorded
    # valid_loss is the start's: the start competes with the epochs on the same number.
    from survbehrt.datasets import make_synthetic_ehr

    X, y, _ = make_synthetic_ehr(n_patients=300, scenario="counts", random_state=1)
    est = tiny_estimator(max_epochs=1, lr=1e-12, weight_decay=0.0, dropout=0.0, loss=loss,
                         validation_fraction=0.3, early_stopping="loss", patience=3).fit(X, y)
    stopper = dict(est.net_.callbacks_)["early_stopping"]
    assert np.isfinite(stopper.start_score_)
    np.testing.assert_allclose(stopper.start_score_, est.history_[-1]["valid_loss"], rtol=1e-5)
