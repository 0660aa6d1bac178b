import math

import pytest
import torch

from survbehrt.data import tokenizer as tok
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

from model_helpers import embedding_inputs, random_batch, seed_everything, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_output_shape_and_layer_norm():
    seed_everything(0)
    batch = random_batch(5)
    emb = BEHRTEmbeddings(tiny_config())
    out = emb(**embedding_inputs(batch))
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
    shifted = dict(embedding_inputs(batch))
    shifted["time_bins"] = torch.where(batch["attention_mask"], batch["time_bins"] % 9 + 1, 0)
    emb = BEHRTEmbeddings(tiny_config()).eval()
    assert not torch.allclose(emb(**embedding_inputs(batch)), emb(**shifted))
    with pytest.raises(ValueError, match="time_bins"):
        emb(**{**embedding_inputs(batch), "time_bins": None})

    off = BEHRTEmbeddings(tiny_config(use_time_embedding=False)).eval()
    assert off.time is None
    torch.testing.assert_close(off(**embedding_inputs(batch)), off(**shifted))
    torch.testing.assert_close(off(**embedding_inputs(batch)), off(**{**embedding_inputs(batch), "time_bins": None}))


def test_each_feature_contributes():
    seed_everything(1)
    batch = random_batch(4)
    emb = BEHRTEmbeddings(tiny_config()).eval()
    ref = emb(**embedding_inputs(batch))
    real = batch["attention_mask"]
    for key in ("age_bins", "visits", "positions"):
        changed = dict(embedding_inputs(batch))
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
    big = dict(embedding_inputs(batch))
    capped = dict(embedding_inputs(batch))
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
    assert (tok.PAD_ID, tok.N_SPECIAL) == (PAD_ID, N_SPECIAL)
    for name, value in (
        ("CLS_ID", CLS_ID),
        ("SEP_ID", SEP_ID),
        ("MASK_ID", MASK_ID),
        ("UNK_ID", UNK_ID),
    ):
        if hasattr(tok, name):
            assert getattr(tok, name) == value


# ---------------------------------------------------------------- value bins


def test_value_bin_table_is_optional_and_sums_with_the_code():
    seed_everything(2)
    batch = random_batch(4)
    real = batch["attention_mask"]
    inputs = embedding_inputs(batch)
    values = torch.where(real & (batch["codes"] >= N_SPECIAL), batch["positions"] % 4, 0)
    # no table by default: value bins are ignored, configurations without the field load
    off = BEHRTEmbeddings(tiny_config()).eval()
    assert off.value is None and "value" not in dict(off.named_children())
    torch.testing.assert_close(off(**inputs, value_bins=values), off(**inputs))
    on = BEHRTEmbeddings(tiny_config(n_value_bins=3)).eval()
    assert on.value.num_embeddings == 4 and on.value.padding_idx == 0
    assert torch.count_nonzero(on.value.weight[0]) == 0
    # bin 0 (no value) is the code alone: the same output as no value bins at all
    torch.testing.assert_close(on(**inputs, value_bins=torch.zeros_like(values)), on(**inputs))
    # a bin adds its row to the sum before the LayerNorm (checked by hand)
    by_hand = (on.code(inputs["codes"]) + on.age(inputs["age_bins"]) + on.visit(inputs["visits"])
               + on.position(inputs["positions"]) + on.time(inputs["time_bins"])
               + on.value(values))
    torch.testing.assert_close(on(**inputs, value_bins=values), on.norm(by_hand))
    assert not torch.allclose(on(**inputs, value_bins=values)[real], on(**inputs)[real])
    # bins past the table are clipped to its last row
    torch.testing.assert_close(on(**inputs, value_bins=torch.where(values > 0, 99, 0)),
                               on(**inputs, value_bins=torch.where(values > 0, 3, 0)))


def test_config_n_value_bins_checked():
    with pytest.raises(ValueError, match="n_value_bins"):
        tiny_config(n_value_bins=-1)
    assert tiny_config().n_value_bins == 0


def test_static_tokens_not_pooled_but_seen_by_every_visit():
    from survbehrt.model import code_token_mask

    seed_everything(3)
    enc = BEHRTEncoder(tiny_config()).eval()
    # [CLS] S [A SEP] [B SEP]: S a static code (age bin 0, time bin 0, visit 0)
    codes = torch.tensor([[CLS_ID, 9, 7, SEP_ID, 8, SEP_ID]])
    batch = dict(codes=codes, age_bins=torch.tensor([[3, 0, 3, 3, 4, 4]]),
                 visits=torch.tensor([[0, 0, 0, 0, 1, 1]]), positions=torch.arange(6)[None],
                 time_bins=torch.tensor([[2, 0, 2, 2, 1, 1]]), attention_mask=codes > 0)
    mask = code_token_mask(codes, batch["attention_mask"], age_bins=batch["age_bins"])
    assert mask.tolist() == [[False, False, True, False, True, False]]
    with torch.no_grad():
        hidden = enc(**batch, causal=True)
        reps, vmask = enc.visit_representations(**batch, causal=True)
        other = enc.visit_representations(**{**batch, "codes": codes.where(codes != 9, 10)},
                                          causal=True)[0]
    torch.testing.assert_close(reps[0, 0], hidden[0, 2])  # visit 0 = its code A alone
    torch.testing.assert_close(reps[0, 1], hidden[0, 4])
    # another static code changes both visits: every visit attends to it
    assert not torch.allclose(other[0, 0], reps[0, 0]) and not torch.allclose(other[0, 1], reps[0, 1])


def test_mlm_pass_drops_the_value_bin_of_masked_codes():
    from survbehrt.model import BEHRTPretrainingModule

    seed_everything(4)
    batch = random_batch(3)
    real_code = batch["attention_mask"] & (batch["codes"] >= N_SPECIAL)
    values = torch.where(real_code, 1 + batch["positions"] % 3, 0)
    masked = torch.where(real_code & (batch["positions"] % 2 == 0), MASK_ID, batch["codes"])
    module = BEHRTPretrainingModule(tiny_config(n_value_bins=3), objective="mlm").eval()
    with torch.no_grad():
        out = module(**batch, masked_codes=masked, value_bins=values)["mlm_logits"]
        hidden_ref = module.encoder(masked, batch["age_bins"], batch["visits"], batch["positions"],
                                    batch["time_bins"], batch["attention_mask"],
                                    value_bins=torch.where(masked != batch["codes"], 0, values))
        leaky = module.mlm_head(module.encoder(
            masked, batch["age_bins"], batch["visits"], batch["positions"], batch["time_bins"],
            batch["attention_mask"], value_bins=values))
    torch.testing.assert_close(out, module.mlm_head(hidden_ref))
    assert not torch.allclose(out, leaky)  # the masked tokens' bins would have mattered
