import math

import pytest
import torch

from survbehrt.model import (
    CLS_ID,
    MASK_ID,
    N_SPECIAL,
    PAD_ID,
    SEP_ID,
    UNK_ID,
    BEHRTEmbeddings,
    BEHRTEncoder,
    sinusoidal_table,
)

from model_helpers import random_batch, seed_everything, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


def _inputs(batch):
    return {k: batch[k] for k in ("codes", "age_bins", "visits", "positions", "time_bins")}


def test_output_shape_and_layer_norm():
    seed_everything(0)
    batch = random_batch(5)
    emb = BEHRTEmbeddings(tiny_config())
    out = emb(**_inputs(batch))
    assert out.shape == (*batch["codes"].shape, 16)
    # LayerNorm at init (weight 1, bias 0): each token is standardised
    assert torch.allclose(out.mean(-1), torch.zeros(()), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(()), atol=1e-3)


def test_padding_rows_zero_at_init_and_after_training():
    seed_everything(0)
    enc = BEHRTEncoder(tiny_config())
    emb = enc.embeddings
    for table in (emb.code, emb.age, emb.time):
        assert table.padding_idx == 0
        assert torch.count_nonzero(table.weight[0]) == 0
    batch = random_batch(6)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        enc(**batch).pow(2).sum().backward()
        opt.step()
    for table in (emb.code, emb.age, emb.time):
        assert torch.count_nonzero(table.weight[0]) == 0
    assert torch.count_nonzero(emb.code.weight[N_SPECIAL:]) > 0


def test_time_embedding_changes_output_only_when_enabled():
    seed_everything(0)
    batch = random_batch(4)
    shifted = dict(_inputs(batch))
    shifted["time_bins"] = torch.where(batch["attention_mask"], batch["time_bins"] % 9 + 1, 0)
    emb = BEHRTEmbeddings(tiny_config()).eval()
    assert not torch.allclose(emb(**_inputs(batch)), emb(**shifted))
    with pytest.raises(ValueError, match="time_bins"):
        emb(**{**_inputs(batch), "time_bins": None})

    off = BEHRTEmbeddings(tiny_config(use_time_embedding=False)).eval()
    assert off.time is None
    torch.testing.assert_close(off(**_inputs(batch)), off(**shifted))
    torch.testing.assert_close(off(**_inputs(batch)), off(**{**_inputs(batch), "time_bins": None}))


def test_each_feature_contributes():
    seed_everything(1)
    batch = random_batch(4)
    emb = BEHRTEmbeddings(tiny_config()).eval()
    ref = emb(**_inputs(batch))
    real = batch["attention_mask"]
    for key in ("age_bins", "visits", "positions"):
        changed = dict(_inputs(batch))
        changed[key] = torch.where(real, batch[key] + 1, batch[key])
        assert not torch.allclose(emb(**changed)[real], ref[real]), key


def test_sinusoidal_positions():
    cfg = tiny_config(position_embedding="sinusoidal")
    emb = BEHRTEmbeddings(cfg)
    names = [n for n, _ in emb.named_parameters()]
    assert not any(n.startswith("position") for n in names)
    assert not any(k.startswith("position") for k in BEHRTEncoder(cfg).state_dict())
    table = emb.position.table
    assert table.shape == (cfg.max_position, cfg.embedding_dim)
    pos, i = 7, 3  # column 2 * 3 = 6 -> sin, 7 -> cos
    freq = math.exp(-math.log(10000.0) * 2 * i / cfg.embedding_dim)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos * freq), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos * freq), abs=1e-6)
    # odd widths work too
    assert sinusoidal_table(5, 7).shape == (5, 7)


def test_out_of_range_ids_are_clipped_to_last_row():
    cfg = tiny_config()
    emb = BEHRTEmbeddings(cfg).eval()
    batch = random_batch(3)
    big = dict(_inputs(batch))
    capped = dict(_inputs(batch))
    for key, size in (
        ("age_bins", cfg.n_age_bins),
        ("visits", cfg.max_visits),
        ("positions", cfg.max_position),
        ("time_bins", cfg.n_time_bins),
    ):
        big[key] = batch[key] + 1000
        capped[key] = torch.full_like(batch[key], size - 1)
    torch.testing.assert_close(emb(**big), emb(**capped))


def test_special_ids_match_tokenizer():
    tok = pytest.importorskip("survbehrt.data.tokenizer")
    assert (tok.PAD_ID, tok.N_SPECIAL) == (PAD_ID, N_SPECIAL)
    for name, value in (
        ("CLS_ID", CLS_ID),
        ("SEP_ID", SEP_ID),
        ("MASK_ID", MASK_ID),
        ("UNK_ID", UNK_ID),
    ):
        if hasattr(tok, name):
            assert getattr(tok, name) == value
