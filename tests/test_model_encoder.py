import copy
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from survbehrt.model import (
    BEHRTConfig,
    BEHRTEncoder,
    MultiHeadSelfAttention,
    as_config,
    build_attention_mask,
    code_token_mask,
)

from model_helpers import (
    make_batch,
    pad_columns,
    random_batch,
    seed_everything,
    tiny_config,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "name, expected",
    [
        ("small", (64, 2, 4, 256)),
        ("medium", (128, 4, 4, 512)),
        ("large", (256, 6, 8, 1024)),
    ],
)
def test_presets(name, expected):
    cfg = BEHRTConfig.preset(name, vocab_size=50)
    assert (cfg.embedding_dim, cfg.num_layers, cfg.num_heads, cfg.ff_dim) == expected


def test_preset_overrides_and_unknown_name():
    cfg = BEHRTConfig.preset("small", vocab_size=50, num_layers=3, dropout=0.0)
    assert cfg.num_layers == 3 and cfg.dropout == 0.0 and cfg.embedding_dim == 64
    with pytest.raises(ValueError, match="small"):
        BEHRTConfig.preset("huge", vocab_size=50)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(embedding_dim=30, num_heads=4), "divisible"),
        (dict(vocab_size=5), "vocab_size"),
        (dict(num_layers=0), "num_layers"),
        (dict(dropout=1.0), "dropout"),
        (dict(attention_dropout=-0.1), "attention_dropout"),
        (dict(position_embedding="rotary"), "position_embedding"),
        (dict(norm_first="yes"), "norm_first"),
        (dict(ff_dim=2.5), "ff_dim"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps"),
    ],
)
def test_config_validation(overrides, match):
    fields = dict(vocab_size=50, embedding_dim=32, num_heads=4)
    fields.update(overrides)
    with pytest.raises(ValueError, match=match):
        BEHRTConfig(**fields)


def test_config_coerces_numpy_and_round_trips():
    cfg = BEHRTConfig(vocab_size=np.int64(40), embedding_dim=np.int32(32), dropout=np.float64(0.2))
    assert type(cfg.vocab_size) is int and type(cfg.embedding_dim) is int
    assert type(cfg.dropout) is float
    assert BEHRTConfig(**cfg.to_dict()) == cfg
    assert as_config(cfg.to_dict()) == cfg
    with pytest.raises(TypeError):
        as_config(42)


# --------------------------------------------------------------------------- masks


def _loop_mask(attention_mask, visits, causal):
    b, n = attention_mask.shape
    out = torch.zeros(b, n, n, dtype=torch.bool)
    for i in range(b):
        for q in range(n):
            for k in range(n):
                ok = bool(attention_mask[i, k])
                if causal:
                    ok = ok and bool(visits[i, k] <= visits[i, q])
                out[i, q, k] = ok or (causal and q == k)
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_attention_mask_matches_loop(causal):
    batch = random_batch(5, seed=3)
    got = build_attention_mask(batch["attention_mask"], batch["visits"], causal)
    assert got.dtype == torch.bool
    length = batch["codes"].shape[1]
    assert got.shape == ((5, 1, length, length) if causal else (5, 1, 1, length))
    expected = _loop_mask(batch["attention_mask"], batch["visits"], causal)
    torch.testing.assert_close(got[:, 0].expand_as(expected), expected)


def test_every_query_row_has_an_allowed_key():
    am = torch.tensor([[True, True, False], [False, False, False]])
    visits = torch.tensor([[0, 1, 0], [0, 0, 0]])
    for causal in (False, True):
        mask = build_attention_mask(am, visits, causal).expand(2, 1, 3, 3)
        assert mask.any(-1).all()


# --------------------------------------------------------------------------- attention


def test_attention_matches_explicit_softmax():
    seed_everything(0)
    attn = MultiHeadSelfAttention(16, 4).eval()
    batch = random_batch(3, seed=1)
    x = torch.randn(*batch["codes"].shape, 16)
    mask = build_attention_mask(batch["attention_mask"], batch["visits"], causal=True)
    got = attn(x, mask)

    b, n, _ = x.shape

    def heads(t):
        return t.view(b, n, 4, 4).transpose(1, 2)

    q, k, v = heads(attn.q_proj(x)), heads(attn.k_proj(x)), heads(attn.v_proj(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)
    scores = scores.masked_fill(~mask, float("-inf"))
    ref = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, 16))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_projection_and_feedforward_names():
    enc = BEHRTEncoder(tiny_config())
    names = dict(enc.named_modules())
    for layer in range(2):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            assert type(names[f"layers.{layer}.self_attn.{proj}"]) is nn.Linear
        for ff in ("ff_in", "ff_out"):
            assert type(names[f"layers.{layer}.{ff}"]) is nn.Linear
    assert names["layers.0.ff_in"].out_features == 32


def test_norm_first_option():
    assert isinstance(BEHRTEncoder(tiny_config(norm_first=True)).final_norm, nn.LayerNorm)
    assert isinstance(BEHRTEncoder(tiny_config(norm_first=False)).final_norm, nn.Identity)


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_padding_invariance(causal, norm_first):
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config(norm_first=norm_first)).eval()
    batch = random_batch(6, seed=2)
    real = batch["attention_mask"]
    with torch.no_grad():
        ref = enc(**batch, causal=causal)
        padded = enc(**pad_columns(batch, 7), causal=causal)
    torch.testing.assert_close(padded[:, : real.shape[1]][real], ref[real], atol=1e-5, rtol=0)


PATIENT = [[5, 6, 7], [8, 9], [10, 11, 12], [13]]


def _visit_reps(enc, patients, causal):
    batch = make_batch(patients)
    with torch.no_grad():
        hidden = enc(**batch, causal=causal)
        reps, mask = enc.visit_representations(**batch, causal=causal)
    return batch, hidden, reps, mask


@pytest.mark.parametrize(
    "later",
    [
        PATIENT[:2] + [[20, 21], [22, 23, 24]],  # later visits changed
        PATIENT + [[25, 26]],  # one more visit appended
    ],
)
def test_visit_causal_invariance(later):
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config()).eval()
    n_early = 2
    # the early visits' tokens: [CLS] 5 6 7 [SEP] 8 9 [SEP]
    n_tok = 1 + sum(len(v) + 1 for v in PATIENT[:n_early])
    _, h0, r0, _ = _visit_reps(enc, [PATIENT], causal=True)
    _, h1, r1, _ = _visit_reps(enc, [later], causal=True)
    torch.testing.assert_close(h1[:, :n_tok], h0[:, :n_tok], atol=1e-5, rtol=0)
    torch.testing.assert_close(r1[:, :n_early], r0[:, :n_early], atol=1e-5, rtol=0)
    # bidirectional attention sees the future, so the same comparison must fail
    _, _, b0, _ = _visit_reps(enc, [PATIENT], causal=False)
    _, _, b1, _ = _visit_reps(enc, [later], causal=False)
    assert (b1[:, :n_early] - b0[:, :n_early]).abs().max() > 1e-3


def test_single_visit_is_the_same_in_both_modes():
    # a single-visit patient sees the same tokens in both modes
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config()).eval()
    batch = make_batch([[[5, 6, 7]]])
    with torch.no_grad():
        torch.testing.assert_close(enc(**batch, causal=True), enc(**batch, causal=False))


@pytest.mark.parametrize("attention_dropout", [0.0, 0.1])  # fused / math SDPA kernels
@pytest.mark.parametrize("causal", [False, True])
def test_fully_padded_patient_gives_no_nan(causal, attention_dropout):
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config(dropout=0.1, attention_dropout=attention_dropout)).train()
    batch = pad_columns(random_batch(3), 4)
    for key in ("codes", "age_bins", "visits", "positions", "time_bins", "attention_mask"):
        batch[key][1] = 0  # patient 1 has no token at all
    hidden = enc(**batch, causal=causal)
    assert torch.isfinite(hidden).all()
    reps, mask = enc.visit_representations(**batch, causal=causal)
    assert torch.isfinite(reps).all() and not mask[1].any()
    reps.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_patient_embedding_is_mean_of_bidirectional_visits():
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config()).eval()
    batch = random_batch(4, seed=5)
    with torch.no_grad():
        emb = enc.patient_embedding(**batch)
        reps, mask = enc.visit_representations(**batch, causal=False)
    assert emb.shape == (4, 16)
    for i in range(4):
        torch.testing.assert_close(emb[i], reps[i][mask[i]].mean(0))


def test_visit_representations_use_code_tokens_only():
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config()).eval()
    batch = random_batch(3, seed=4)
    with torch.no_grad():
        hidden = enc(**batch, causal=True)
        reps, mask = enc.visit_representations(**batch, causal=True)
    tm = code_token_mask(batch["codes"], batch["attention_mask"])
    v = batch["visits"]
    for i in range(3):
        sel = tm[i] & (v[i] == 0)
        torch.testing.assert_close(reps[i, 0], hidden[i][sel].mean(0))
    torch.testing.assert_close(mask, batch["visit_mask"])


def test_deepcopy_and_pickle_round_trip():
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config(position_embedding="sinusoidal")).eval()
    batch = random_batch(3)
    with torch.no_grad():
        ref = enc(**batch, causal=True)
        for clone in (copy.deepcopy(enc), pickle.loads(pickle.dumps(enc))):
            torch.testing.assert_close(clone(**batch, causal=True), ref)


def test_dropout_only_in_training():
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config(dropout=0.2, attention_dropout=0.2))
    batch = random_batch(3)
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(**batch), enc(**batch))
        enc.train()
        assert not torch.allclose(enc(**batch), enc(**batch))
