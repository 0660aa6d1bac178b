import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from survbehrt.model import CLS_ID, MASK_ID, N_SPECIAL, SEP_ID, UNK_ID, code_token_mask, pool_visits

from model_helpers import make_batch, random_patients

pytestmark = pytest.mark.usefixtures("single_thread")


def _loop_pool(hidden, visits, token_mask, num_visits):
    """Reference: plain Python loop over patients and visits."""
    b, n, d = hidden.shape
    reps = torch.zeros(b, num_visits, d, dtype=hidden.dtype)
    mask = torch.zeros(b, num_visits, dtype=torch.bool)
    for i in range(b):
        for v in range(num_visits):
            rows = [hidden[i, t] for t in range(n) if token_mask[i, t] and visits[i, t] == v]
            if rows:
                reps[i, v] = torch.stack(rows).mean(0)
                mask[i, v] = True
    return reps, mask


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 6),
    extra_visits=st.integers(0, 2),
    dim=st.integers(1, 5),
)
def test_pooling_matches_loop(seed, n, extra_visits, dim):
    rng = np.random.default_rng(seed)
    batch = make_batch(random_patients(rng, n, max_visits=5, max_codes=3))
    hidden = torch.from_numpy(rng.normal(size=(*batch["codes"].shape, dim))).float()
    tm = code_token_mask(batch["codes"], batch["attention_mask"])
    num_visits = batch["visit_mask"].shape[1] + extra_visits
    got, got_mask = pool_visits(hidden, batch["visits"], tm, num_visits)
    ref, ref_mask = _loop_pool(hidden, batch["visits"], tm, num_visits)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
    assert torch.equal(got_mask, ref_mask)
    # default number of visit slots: visits.max() + 1
    got_default, _ = pool_visits(hidden, batch["visits"], tm)
    torch.testing.assert_close(got_default, ref[:, : int(batch["visits"].max()) + 1])


def test_code_token_mask():
    codes = torch.tensor([[CLS_ID, 7, UNK_ID, SEP_ID, MASK_ID, N_SPECIAL, 0, 9]])
    am = torch.tensor([[True] * 6 + [False, False]])  # 9 is beyond the mask
    expected = torch.tensor([[False, True, False, False, False, True, False, False]])
    assert torch.equal(code_token_mask(codes, am), expected)
    expected[0, 2] = True
    assert torch.equal(code_token_mask(codes, am, include_unknown=True), expected)
    assert code_token_mask(codes)[0, 7]  # without attention_mask: padding is id 0 only


def test_visit_without_code_token_is_zero_and_masked():
    # visit 1 holds only special tokens: no pooled token
    codes = torch.tensor([[CLS_ID, 6, SEP_ID, UNK_ID, SEP_ID, 8, SEP_ID]])
    visits = torch.tensor([[0, 0, 0, 1, 1, 2, 2]])
    hidden = torch.randn(1, 7, 3)
    reps, mask = pool_visits(hidden, visits, code_token_mask(codes), num_visits=4)
    assert mask.tolist() == [[True, False, True, False]]
    assert torch.count_nonzero(reps[0, [1, 3]]) == 0
    torch.testing.assert_close(reps[0, 0], hidden[0, 1])
    torch.testing.assert_close(reps[0, 2], hidden[0, 5])


def test_non_finite_values_at_excluded_tokens_do_not_leak():
    batch = make_batch([[[5, 6], [7]], [[8]]])
    hidden = torch.randn(*batch["codes"].shape, 4)
    tm = code_token_mask(batch["codes"], batch["attention_mask"])
    hidden[~tm] = float("nan")
    reps, mask = pool_visits(hidden, batch["visits"], tm, 2)
    assert torch.isfinite(reps).all()
    assert mask.tolist() == [[True, True], [True, False]]


def test_gradient_is_one_over_visit_size():
    batch = make_batch([[[5, 6, 7], [8]], [[9, 10]]])
    hidden = torch.randn(*batch["codes"].shape, 2, requires_grad=True)
    tm = code_token_mask(batch["codes"], batch["attention_mask"])
    reps, _ = pool_visits(hidden, batch["visits"], tm)
    reps.sum().backward()
    grad = hidden.grad[..., 0]
    expected = torch.zeros_like(grad)
    for i in range(2):
        for t in range(grad.shape[1]):
            if tm[i, t]:
                same = (tm[i] & (batch["visits"][i] == batch["visits"][i, t])).sum()
                expected[i, t] = 1.0 / same
    torch.testing.assert_close(grad, expected)


def test_tokens_beyond_num_visits_are_dropped():
    batch = make_batch([[[5], [6], [7]]])
    hidden = torch.randn(*batch["codes"].shape, 2)
    tm = code_token_mask(batch["codes"], batch["attention_mask"])
    reps, mask = pool_visits(hidden, batch["visits"], tm, num_visits=2)
    full, _ = pool_visits(hidden, batch["visits"], tm, num_visits=3)
    assert reps.shape == (1, 2, 2) and mask.all()
    torch.testing.assert_close(reps, full[:, :2])


def test_pool_patient_matches_loop_and_skips_padding_visits():
    from survbehrt.model import pool_patient

    rng = np.random.default_rng(3)
    reps = torch.from_numpy(rng.normal(size=(4, 5, 3))).float()
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]).bool()
    reps[~mask] = 1e6  # padding slots hold garbage: none of it may show
    mean, maxed = pool_patient(reps, mask, "mean"), pool_patient(reps, mask, "max")
    for i in range(4):
        rows = [reps[i, v] for v in range(5) if mask[i, v]]
        if not rows:
            assert mean[i].abs().sum() == 0 and maxed[i].abs().sum() == 0
            continue
        for d in range(3):
            values = [float(r[d]) for r in rows]
            assert float(mean[i, d]) == pytest.approx(sum(values) / len(values), rel=1e-6)
            assert float(maxed[i, d]) == max(values)
    with pytest.raises(ValueError, match="'mean' or 'max'"):
        pool_patient(reps, mask, "median")
