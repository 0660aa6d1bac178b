import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from survbehrt.model import (
    IGNORE_INDEX,
    MASK_ID,
    N_SPECIAL,
    mask_tokens,
    next_visit_targets,
    patient_code_targets,
    pretraining_loss,
)

from model_helpers import VOCAB_SIZE, make_batch, random_batch, random_patients

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------- masking


@pytest.fixture(scope="module")
def large_batch():
    # ~2000 patients x ~15 code tokens: ~30k candidate tokens
    return random_batch(2000, seed=11, max_visits=5, max_codes=5)


def test_masking_never_touches_special_or_padding(large_batch):
    codes, am = large_batch["codes"], large_batch["attention_mask"]
    gen = torch.Generator().manual_seed(0)
    inp, labels = mask_tokens(codes, am, VOCAB_SIZE, generator=gen)
    non_code = (codes < N_SPECIAL) | ~am
    assert torch.equal(inp[non_code], codes[non_code])
    assert (labels[non_code] == IGNORE_INDEX).all()
    assert inp.shape == codes.shape and inp.dtype == codes.dtype
    assert codes.max() < VOCAB_SIZE  # input was not modified in place
    # tokens that were not chosen are unchanged
    not_chosen = labels == IGNORE_INDEX
    assert torch.equal(inp[not_chosen], codes[not_chosen])
    chosen = ~not_chosen
    assert torch.equal(labels[chosen], codes[chosen])


def test_masking_rate_and_80_10_10(large_batch):
    codes, am = large_batch["codes"], large_batch["attention_mask"]
    inp, labels = mask_tokens(codes, am, VOCAB_SIZE, generator=torch.Generator().manual_seed(1))
    candidates = am & (codes >= N_SPECIAL)
    chosen = labels != IGNORE_INDEX
    rate = chosen.sum().item() / candidates.sum().item()
    assert abs(rate - 0.15) < 0.02
    n = chosen.sum().item()
    masked = (inp[chosen] == MASK_ID).sum().item() / n
    kept = (inp[chosen] == codes[chosen]).sum().item() / n
    replaced = inp[chosen][(inp[chosen] != MASK_ID) & (inp[chosen] != codes[chosen])]
    assert abs(masked - 0.8) < 0.03
    # a random replacement can draw the original code: kept ~ 0.1 + 0.1 / n_codes
    assert abs(kept - (0.1 + 0.1 / (VOCAB_SIZE - N_SPECIAL))) < 0.03
    assert abs(replaced.numel() / n - 0.1 * (1 - 1 / (VOCAB_SIZE - N_SPECIAL))) < 0.03
    assert replaced.min() >= N_SPECIAL and replaced.max() < VOCAB_SIZE


def test_masking_reproducible_with_generator():
    batch = random_batch(50, seed=2)
    a = mask_tokens(
        batch["codes"],
        batch["attention_mask"],
        VOCAB_SIZE,
        generator=torch.Generator().manual_seed(5),
    )
    b = mask_tokens(
        batch["codes"],
        batch["attention_mask"],
        VOCAB_SIZE,
        generator=torch.Generator().manual_seed(5),
    )
    c = mask_tokens(
        batch["codes"],
        batch["attention_mask"],
        VOCAB_SIZE,
        generator=torch.Generator().manual_seed(6),
    )
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_masking_edge_probabilities_and_validation():
    batch = random_batch(20, seed=3)
    codes, am = batch["codes"], batch["attention_mask"]
    inp, labels = mask_tokens(codes, am, VOCAB_SIZE, mask_prob=0.0)
    assert torch.equal(inp, codes) and (labels == IGNORE_INDEX).all()
    _, labels = mask_tokens(codes, am, VOCAB_SIZE, mask_prob=1.0)
    assert torch.equal(labels != IGNORE_INDEX, am & (codes >= N_SPECIAL))
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens(codes, am, VOCAB_SIZE, mask_prob=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        mask_tokens(codes, am, N_SPECIAL)


# --------------------------------------------------------------------------- next visit


def _loop_next_visit(patients, num_visits, vocab_size):
    b = len(patients)
    targets = torch.zeros(b, num_visits, vocab_size)
    mask = torch.zeros(b, num_visits, dtype=torch.bool)
    for i, visits in enumerate(patients):
        for t in range(len(visits) - 1):
            mask[i, t] = True
            for c in visits[t + 1]:
                targets[i, t, c] = 1.0
    return targets, mask


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), extra=st.integers(0, 2))
def test_next_visit_targets_match_loop(seed, n, extra):
    patients = random_patients(np.random.default_rng(seed), n, max_visits=5, max_codes=4)
    num_visits = max(len(p) for p in patients) + extra
    batch = make_batch(patients, num_visits=num_visits)
    targets, mask = next_visit_targets(
        batch["codes"], batch["visits"], batch["visit_mask"], VOCAB_SIZE
    )
    ref_t, ref_m = _loop_next_visit(patients, num_visits, VOCAB_SIZE)
    assert targets.dtype == torch.float32 and targets.shape == ref_t.shape
    assert torch.equal(targets, ref_t)
    assert torch.equal(mask, ref_m)
    assert targets[..., :N_SPECIAL].sum() == 0  # [SEP] etc. never targets


def test_next_visit_targets_multi_hot_with_duplicates():
    batch = make_batch([[[5], [6, 6, 7]]])
    targets, mask = next_visit_targets(batch["codes"], batch["visits"], batch["visit_mask"], 10)
    assert targets[0, 0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    assert targets[0, 1].sum() == 0 and mask.tolist() == [[True, False]]


# --------------------------------------------------------------------------- loss


def test_pretraining_loss_matches_manual():
    torch.manual_seed(0)
    b, n, v, vocab = 3, 7, 4, 12
    mlm_logits = torch.randn(b, n, vocab)
    labels = torch.full((b, n), IGNORE_INDEX)
    labels[0, 1], labels[2, 4], labels[2, 5] = 6, 9, 5
    nv_logits = torch.randn(b, v, vocab)
    targets = (torch.rand(b, v, vocab) < 0.2).float()
    nv_mask = torch.tensor([[True, True, False, False], [True, False, False, False], [False] * 4])
    out = pretraining_loss(
        {"mlm_logits": mlm_logits, "next_visit_logits": nv_logits},
        mlm_labels=labels,
        next_visit_targets=targets,
        next_visit_mask=nv_mask,
    )
    mlm_ref = F.cross_entropy(mlm_logits.view(-1, vocab), labels.view(-1))
    bce = [
        F.binary_cross_entropy_with_logits(nv_logits[i, t], targets[i, t])
        for i in range(b)
        for t in range(v)
        if nv_mask[i, t]
    ]
    nv_ref = torch.stack(bce).mean()
    torch.testing.assert_close(out["mlm"], mlm_ref)
    torch.testing.assert_close(out["next_visit"], nv_ref)
    torch.testing.assert_close(out["loss"], mlm_ref + nv_ref)


def test_pretraining_loss_single_objective_and_empty_targets():
    logits = torch.randn(2, 5, 10, requires_grad=True)
    labels = torch.full((2, 5), IGNORE_INDEX)
    out = pretraining_loss({"mlm_logits": logits}, mlm_labels=labels)
    assert out["next_visit"] is None and out["mlm"].item() == 0.0
    out["loss"].backward()  # still differentiable, no NaN
    assert torch.isfinite(logits.grad).all()
    nv = pretraining_loss(
        {"next_visit_logits": logits},
        next_visit_targets=torch.zeros(2, 5, 10),
        next_visit_mask=torch.zeros(2, 5, dtype=torch.bool),
    )
    assert nv["mlm"] is None and nv["next_visit"].item() == 0.0
    with pytest.raises(ValueError, match="mlm_labels"):
        pretraining_loss({"mlm_logits": logits})
    with pytest.raises(ValueError, match="next_visit_targets"):
        pretraining_loss({"next_visit_logits": logits})
    with pytest.raises(ValueError):
        pretraining_loss({})


def test_patient_code_targets_and_cls_loss_match_a_loop():
    batch = random_batch(6, seed=4, max_visits=4, max_codes=3)
    codes = batch["codes"]
    targets = patient_code_targets(codes, VOCAB_SIZE)
    for i in range(codes.shape[0]):
        present = {int(c) for c in codes[i] if int(c) >= N_SPECIAL}
        assert {c for c in range(VOCAB_SIZE) if targets[i, c] == 1} == present
        assert targets[i].sum() == len(present)
    torch.manual_seed(1)
    logits = torch.randn(codes.shape[0], VOCAB_SIZE)
    out = pretraining_loss({"cls_logits": logits}, cls_targets=targets)
    ref = torch.stack([F.binary_cross_entropy_with_logits(logits[i], targets[i])
                       for i in range(codes.shape[0])]).mean()
    torch.testing.assert_close(out["cls"], ref)
    torch.testing.assert_close(out["loss"], ref)
    assert out["mlm"] is None and out["next_visit"] is None
    with pytest.raises(ValueError, match="cls_targets"):
        pretraining_loss({"cls_logits": logits})
