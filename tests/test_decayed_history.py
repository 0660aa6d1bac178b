"""Decayed sums of the visits so far (``decay_scales``): the module against its definition,
its start as the identity, causality, and the estimators' plumbing."""

import math
import pickle

import numpy as np
import pytest
import torch

from survbehrt import BEHRTCompetingRisksEstimator
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.datasets.competing import make_synthetic_competing
from survbehrt.model import BEHRTSurvivalModule
from survbehrt.model.decayed_history import DecayedHistory, check_decay_scales

from helpers import tempo_scores, tiny_estimator
from model_helpers import random_batch, seed_everything, tiny_config

SCALES = (0.25, 1.0, 4.0)


def _reference_sums(module, reps, mask, before, scales=SCALES):
    """``s_tau(t) = sum_{v <= t, real} exp(-r_v / tau) [u(h_v), 1]`` by plain loops."""
    b, v, _ = reps.shape
    u = module.project(reps).detach()
    channels = u.shape[-1] + 1
    out = torch.zeros(b, v, len(SCALES), channels)
    for i in range(b):
        for t in range(v):
            for s, tau in enumerate(scales):
                for j in range(t + 1):
                    if not mask[i, j]:
                        continue
                    w = math.exp(-max(float(before[i, j]), 0.0) / tau)
                    out[i, t, s, :-1] += w * u[i, j]
                    out[i, t, s, -1] += w
    return out


def _visits(seed=0, b=3, v=5, dim=6):
    g = torch.Generator().manual_seed(seed)
    reps = torch.randn(b, v, dim, generator=g)
    mask = torch.rand(b, v, generator=g) > 0.3
    # years before the prediction time, decreasing along the visits (one negative: a
    # visit after the prediction time counts as at it)
    before = torch.sort(torch.rand(b, v, generator=g) * 6, dim=1, descending=True).values
    before[0, -1] = -0.5
    return reps, mask, before


def test_sums_follow_the_definition():
    seed_everything(0)
    module = DecayedHistory(6, SCALES, channels=3)
    reps, mask, before = _visits()
    got = module.sums(reps, mask, before).detach()
    assert torch.allclose(got, _reference_sums(module, reps, mask, before), atol=1e-5)


def test_constant_channel_counts_recent_visits():
    # three visits 0.1 year before the prediction time and one 10 years before: at a
    # one-month scale the count is ~3 (the old visit decayed away), at 100 years ~4
    module = DecayedHistory(4, (1 / 12, 100.0))
    reps = torch.zeros(1, 4, 4)
    before = torch.tensor([[10.0, 0.1, 0.1, 0.1]])
    count = module.sums(reps, torch.ones(1, 4, dtype=torch.bool), before)[0, -1, :, -1]
    assert count[0].item() == pytest.approx(3 * math.exp(-1.2), rel=1e-5)
    assert count[1].item() == pytest.approx(math.exp(-0.1) + 3 * math.exp(-0.001), rel=1e-5)


def test_starts_as_the_identity_and_stays_causal():
    module = DecayedHistory(6, SCALES)
    reps, mask, before = _visits()
    assert torch.equal(module(reps, mask, before), reps)
    with torch.no_grad():  # once trained, a later visit still cannot move an earlier one
        module.output.weight.normal_()
    changed = reps.clone()
    changed[:, 3:] += 5.0
    a, b = module(reps, mask, before), module(changed, mask, before)
    assert torch.allclose(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_survival_module_starts_with_the_same_hazards():
    batch = random_batch(n=5, seed=1)
    batch["index_age"] = torch.full((5,), 60.0)
    seed_everything(0)
    plain = BEHRTSurvivalModule(tiny_config(), num_bins=4).eval()
    seed_everything(0)
    decayed = BEHRTSurvivalModule(tiny_config(), num_bins=4, decay_scales=SCALES).eval()
    assert torch.allclose(plain(**batch), decayed(**batch))
    assert plain.history is None and isinstance(decayed.history, DecayedHistory)


def test_bf16_model_sums_in_float32_with_exact_times_and_scales():
    seed_everything(0)
    scales = (0.3, 1.0, 4.0)  # 0.3 in bf16 is 0.30078
    module = DecayedHistory(6, scales, channels=3)
    reps, mask, before = _visits()
    before = before + 10.3  # 10.3 years back: bf16 would read 10.3125
    reference = _reference_sums(module, reps.bfloat16().float(), mask, before, scales)
    half = module.to(torch.bfloat16)
    assert half.scales == scales
    sums = half.sums(reps.bfloat16(), mask, before)
    assert sums.dtype == torch.float32
    # u(h) is computed in bf16 (the model's precision), the decay and the sums are not
    assert torch.allclose(sums, reference, rtol=2e-2, atol=5e-3)
    counts = sums[..., -1]  # the constant channel: exact
    assert torch.allclose(counts, reference[..., -1], rtol=1e-6, atol=1e-9)
    assert half(reps.bfloat16(), mask, before).dtype == torch.bfloat16


def test_survival_module_needs_visit_times_for_the_sums():
    batch = random_batch(n=2, seed=1)
    del batch["visit_times"]
    module = BEHRTSurvivalModule(tiny_config(), num_bins=4, decay_scales=SCALES)
    with pytest.raises(ValueError, match="visit_times"):
        module(**batch)


@pytest.mark.parametrize("scales", [(), (1.0, 0.0), (-1.0,), ("a",), (float("inf"),), 3.0, "14"])
def test_bad_scales_are_refused(scales):
    with pytest.raises(ValueError, match="decay_scales"):
        check_decay_scales(scales)


# --------------------------------------------------------------------------- the estimators


@pytest.fixture(scope="module")
def cohort():
    X, y, _ = make_synthetic_ehr(160, "sequence", random_state=0)
    return X, y


def test_estimator_survives_pickle_and_save_load(cohort, tmp_path):
    X, y = cohort
    est = tiny_estimator(decay_scales=SCALES).fit(X, y)
    history = est.net_.module_.history
    assert history.output.weight.abs().sum() > 0  # it trained
    expected = est.predict(X)
    assert not np.allclose(tiny_estimator(decay_scales=None).fit(X, y).predict(X), expected)
    assert np.allclose(pickle.loads(pickle.dumps(est)).predict(X), expected)
    est.save(tmp_path / "model.pt")
    loaded = type(est).load(tmp_path / "model.pt")
    assert np.allclose(loaded.predict(X), expected)
    assert loaded.net_.module_.history.scales == SCALES
    # a file of the first format, whose state dict held the scales as a buffer, loads
    state = {**est.net_.module_.state_dict(), "history.scales": torch.tensor(SCALES)}
    loaded.net_.module_.load_state_dict(state)
    assert np.allclose(loaded.predict(X), expected)


def test_frozen_strategy_trains_the_decayed_sums(cohort):
    X, y = cohort
    with pytest.warns(UserWarning, match="without `pretrained`"):
        est = tiny_estimator(decay_scales=SCALES, strategy="frozen").fit(X, y)
    module = est.net_.module_
    assert all(p.requires_grad for p in module.history.parameters())
    assert not any(p.requires_grad for p in module.encoder.parameters())


def test_competing_estimator_takes_decay_scales(tmp_path):
    X, y, _ = make_synthetic_competing(160, random_state=0)
    est = BEHRTCompetingRisksEstimator(
        decay_scales=SCALES, embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32,
        max_epochs=1, time_bins=5, early_stopping=None, validation_fraction=0,
        random_state=0, n_threads=1,
    ).fit(X, y)
    expected = est.predict_cumulative_incidence(X, return_array=True)
    est.save(tmp_path / "model.pt")
    loaded = type(est).load(tmp_path / "model.pt")
    assert np.allclose(loaded.predict_cumulative_incidence(X, return_array=True), expected)
    assert loaded.net_.module_.history is not None


def test_bad_decay_scales_are_named(cohort):
    X, y = cohort
    with pytest.raises(ValueError, match="decay_scales"):
        tiny_estimator(decay_scales=(0.0,)).fit(X, y)


def test_decayed_sums_find_the_visit_tempo_on_a_frozen_random_encoder():
    # every patient has six visits, so the tempo is in the visits' times only; a frozen,
    # randomly initialised encoder passes them on through its time embeddings, the head
    # cannot count them, the decayed visit count can
    with pytest.warns(UserWarning, match="without `pretrained`"):
        oracle, scores = tempo_scores(
            lambda scales: tiny_estimator(strategy="frozen", wide=None, decay_scales=scales,
                                          lr=1e-2, max_epochs=15),
            SCALES, n_train=1200)
    assert scores[SCALES] >= oracle - 0.03
    assert scores[SCALES] >= scores[None] + 0.03
