"""The encoder's start: the hazard head begins at a Cox fit of the pre-trained representation.

With a ``pretrained`` encoder, ``BEHRTSurvivalEstimator(encoder_start=True)`` fits a
penalised Cox model of each training row's last-visit representation on top of the wide
start (``survbehrt.cox_start.hazard_start``'s ``representations``) and writes it into
the hazard head (``HazardHead.add_linear``). Checked here against the definition: the
head adds exactly the linear predictor, and on a cohort whose risk *is* a linear
function of the pre-trained representation, the start alone (no epoch of training)
ranks the test rows nearly as well as the true risk.
"""

import numpy as np
import pytest
import torch
from sksurv.util import Surv

from survbehrt.data.batching import collate_tokens
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.metrics import harrell_c
from survbehrt.model.heads import HazardHead

from helpers import tiny_estimator, tiny_pretrainer


def test_add_linear_adds_the_predictor_to_every_bin():
    torch.manual_seed(0)
    head = HazardHead(8, num_bins=5, dropout=0.0).eval()
    h, w = torch.randn(30, 8), torch.randn(8)
    silent = HazardHead(8, num_bins=5, dropout=0.0).eval()
    silent.load_state_dict(head.state_dict())
    with torch.no_grad():
        silent.output.weight[:, :2] = 0.0  # units 0 and 1 out: what add_linear keeps
        before = silent(h)
    head.add_linear(w.numpy())
    with torch.no_grad():
        after = head(h)
    expected = before + (h @ w)[:, None]  # the same z in every bin
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="2 hidden units"):
        HazardHead(8, num_bins=5, hidden_dim=1).add_linear(w)


def _cohort_of_the_representation(pre, X, seed=0):
    """Outcomes whose log hazard is a linear function of each patient's last-visit
    representation in ``pre``'s encoder, computed one patient at a time."""
    tokens = pre.tokenizer_.transform(X)
    encoder = pre.module_.encoder.eval()
    reps = []
    with torch.no_grad():
        for i in range(len(X)):
            batch = collate_tokens(tokens, np.array([i]))
            visit_reps, real = encoder.visit_representations(**batch, causal=True)
            reps.append(visit_reps[0, int(real[0].sum()) - 1].numpy())
    reps = np.asarray(reps, dtype=float)
    rng = np.random.default_rng(seed)
    risk = ((reps - reps.mean(0)) / reps.std(0)) @ rng.normal(size=reps.shape[1])
    risk = 1.2 * risk / risk.std()
    t = rng.exponential(1.0 / (0.3 * np.exp(risk)))
    c = rng.uniform(0.5, 6.0, len(X))
    return Surv.from_arrays(t <= c, np.minimum(t, c)), risk


@pytest.mark.parametrize("wide", [None, "joint"])
def test_the_start_alone_ranks_a_risk_linear_in_the_representation(wide):
    # no code count carries the risk: with the wide path, its start is (near) nothing and
    # the encoder's fit goes on top of it as an offset
    X, _, _ = make_synthetic_ehr(700, "sequence", random_state=3)
    pre = tiny_pretrainer(objective="mlm", max_epochs=1).fit(X)
    y, risk = _cohort_of_the_representation(pre, X)
    train, test = slice(0, 500), slice(500, None)
    common = dict(strategy="frozen", pretrained=pre, wide=wide, max_epochs=0, recalibrate=False)
    started = tiny_estimator(**common).fit(X.iloc[train], y[train])
    assert started.encoder_start_ is True
    oracle = harrell_c(y[test], risk[test])
    assert harrell_c(y[test], started.predict(X.iloc[test])) >= oracle - 0.04
    plain = tiny_estimator(**common, encoder_start=False).fit(X.iloc[train], y[train])
    assert harrell_c(y[test], plain.predict(X.iloc[test])) < oracle - 0.1
    assert plain.encoder_start_ is None


def test_a_representation_that_knows_nothing_stays_out():
    # the outcome is independent of the history: the held-out likelihood is not better
    # with the encoder's part, so the start is exactly the one without it
    X, _, _ = make_synthetic_ehr(500, "sequence", random_state=4)
    pre = tiny_pretrainer(objective="mlm", max_epochs=1).fit(X)
    rng = np.random.default_rng(1)
    t, c = rng.exponential(2.0, len(X)), rng.uniform(0.5, 6.0, len(X))
    y = Surv.from_arrays(t <= c, np.minimum(t, c))
    common = dict(strategy="frozen", pretrained=pre, max_epochs=0, recalibrate=False)
    started = tiny_estimator(**common).fit(X, y)
    plain = tiny_estimator(**common, encoder_start=False).fit(X, y)
    assert started.encoder_start_ is False
    np.testing.assert_array_equal(started.predict(X), plain.predict(X))


def test_encoder_start_must_be_a_bool():
    X, y, _ = make_synthetic_ehr(60, "sequence", random_state=0)
    with pytest.raises(ValueError, match="encoder_start='yes' is not valid"):
        tiny_estimator(encoder_start="yes").fit(X, y)


def _drawn_cohort(seed, n=150, effect=0.8, follow_up=4.0):
    """Features ``h`` (n, 4), outcomes whose risk is ``effect * h_0`` (censoring uniform up to
    ``follow_up`` years), and the time grid's edges."""
    from survbehrt.survival import TimeGrid

    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, 4))
    t = rng.exponential(1.0 / (0.4 * np.exp(effect * h[:, 0])))
    c = rng.uniform(0.5, follow_up, n)
    time, event = np.minimum(t, c), t <= c
    return h, time, event, TimeGrid(20).fit(Surv.from_arrays(event, time)).cuts_


def _start_fit(codes, time, event, cuts, seed):
    """``fit(reps=None)``: the start's penalised fit of ``codes`` (no covariates) and, when
    given, the encoder's representations, on the same folds (as ``hazard_start`` makes it)."""
    from survbehrt.cox_start import fit_wide_start

    def fit(reps=None):
        return fit_wide_start(codes, np.zeros((len(time), 0)), time, event, cuts,
                              random_state=seed, held_out=True, representations=reps)

    return fit


def _encoders_part(features, time, event, cuts, seed):
    """The logits the start with the encoder's part gives every row, and whether it entered."""
    from scipy import sparse

    from survbehrt.cox_start import HazardStart, _with_representations
    from survbehrt.survival import marginal_logits

    # the start without the wide path: no codes, no covariates
    fit = _start_fit(sparse.csr_matrix((len(time), 0)), time, event, cuts, seed)
    start = HazardStart(marginal_logits(time, event, cuts), 0.0, 1.0)
    part = _with_representations(start, fit()["held_out_nll"], fit, features, time, event, cuts)
    weight = (np.zeros(features.shape[1]) if part.representation_weight is None
              else part.representation_weight)
    return part.baseline[None, :] + (features @ weight)[:, None], part.representation_used


@pytest.mark.parametrize("seed", [0, 1])
def test_the_encoders_part_does_not_depend_on_where_its_features_are_centred(seed):
    # ~2 events per interval: some fold's training rows have none in an interval, which
    # then keeps the population's hazard; the part's fit, its test and the start's
    # hazards must not move when every row's features move by the same vector
    h, time, event, cuts = _drawn_cohort(seed)
    plain, used = _encoders_part(h, time, event, cuts, seed)
    shifted, used_shifted = _encoders_part(h + np.array([30.0, -20.0, 5.0, 40.0]), time, event,
                                           cuts, seed)
    assert used and used_shifted
    np.testing.assert_allclose(shifted, plain, rtol=1e-4, atol=1e-4)


def test_with_fewer_than_min_events_the_encoders_part_stays_out():
    # a strong signal on 39 events: no held-out slope can shrink the part, so it stays out
    # (the held-out test alone lets it in); the same signal on 99 events enters
    from survbehrt.recalibration import MIN_EVENTS

    assert MIN_EVENTS == 50  # the cohorts below are drawn around it
    _, used = _encoders_part(*_drawn_cohort(2, n=100, effect=1.5, follow_up=0.6), seed=2)
    assert used is False
    _, used_more = _encoders_part(*_drawn_cohort(2, n=200, effect=1.5, follow_up=3.0), seed=2)
    assert used_more is True


def test_the_encoders_part_and_the_codes_are_fitted_together():
    # a code count that is a noisy proxy of the risk, and representations that hold the
    # risk itself: fitted together, the representations take the proxy's weight. (Fitted
    # on top of the wide fit as a fixed offset, the codes kept all of theirs, and the
    # offset, fitted on every row, had seen each fold's held-out rows.)
    from scipy import sparse

    from survbehrt.cox_start import _as_start, _with_representations
    from survbehrt.survival import TimeGrid

    rng = np.random.default_rng(0)
    n = 600
    h = rng.normal(size=(n, 3))
    proxy = np.log1p(rng.poisson(np.exp(h[:, 0])))
    codes = sparse.csr_matrix(np.column_stack([proxy, np.log1p(rng.poisson(0.5, (n, 4)))]))
    t = rng.exponential(1.0 / (0.4 * np.exp(0.9 * h[:, 0])))
    c = rng.uniform(0.5, 4.0, n)
    time, event = np.minimum(t, c), t <= c
    cuts = TimeGrid(10).fit(Surv.from_arrays(event, time)).cuts_

    fit = _start_fit(codes, time, event, cuts, seed=0)
    wide = fit()
    joint = _with_representations(_as_start(wide, 0.0, 1.0), wide["held_out_nll"], fit, h, time,
                                  event, cuts)
    assert joint.representation_used
    assert wide["beta"][0] > 0.3  # alone, the proxy carries the risk
    assert joint.beta[0] < 0.25 * wide["beta"][0]
    assert joint.representation_weight[0] > 0.5


def test_below_min_events_the_start_does_not_run_the_encoder(monkeypatch):
    # the part cannot enter with fewer than MIN_EVENTS events, so the start does not run
    # the pre-trained encoder over the training rows for it; with enough events it does
    from survbehrt.recalibration import MIN_EVENTS

    X, _, _ = make_synthetic_ehr(300, "sequence", random_state=5)
    pre = tiny_pretrainer(objective="mlm", max_epochs=1).fit(X)
    calls = []
    encoder = pre.module_.encoder
    run = encoder.visit_representations
    monkeypatch.setattr(encoder, "visit_representations",
                        lambda *a, **k: calls.append(1) or run(*a, **k))
    rng = np.random.default_rng(2)
    time = rng.uniform(0.5, 5.0, len(X))
    common = dict(strategy="frozen", pretrained=pre, max_epochs=0, recalibrate=False)
    for n_events, runs in ((MIN_EVENTS - 10, False), (3 * MIN_EVENTS, True)):
        event = np.zeros(len(X), dtype=bool)
        event[rng.choice(len(X), n_events, replace=False)] = True
        calls.clear()
        started = tiny_estimator(**common).fit(X, Surv.from_arrays(event, time))
        assert bool(calls) is runs
        if not runs:
            assert started.encoder_start_ is False
