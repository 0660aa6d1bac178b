import copy
import pickle

import pytest
import torch
from torch import nn

from survbehrt.model import (
    BEHRTConfig,
    BEHRTPretrainingModule,
    BEHRTSurvivalModule,
    LoRALinear,
    apply_lora,
    configure_trainable,
    lora_parameters,
    merge_lora,
)

from model_helpers import random_batch, seed_everything, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


ATTN = ("q_proj", "k_proj", "v_proj", "out_proj")


def _survival(**overrides):
    return BEHRTSurvivalModule(tiny_config(**overrides), num_bins=3)


def _trainable(module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_lora_linear_starts_as_base():
    seed_everything(0)
    base = nn.Linear(6, 5)
    lora = LoRALinear(base, rank=3, alpha=6)
    assert lora.lora_A.shape == (3, 6) and lora.lora_B.shape == (5, 3)
    assert torch.count_nonzero(lora.lora_B) == 0 and torch.count_nonzero(lora.lora_A) > 0
    assert lora.scaling == 2.0 and (lora.in_features, lora.out_features) == (6, 5)
    x = torch.randn(4, 7, 6)
    torch.testing.assert_close(lora(x), base(x), atol=0, rtol=0)


def test_lora_linear_update_formula_and_validation():
    seed_everything(0)
    lora = LoRALinear(nn.Linear(6, 5), rank=2, alpha=4)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(3, 6)
    ref = lora.base(x) + 2.0 * x @ lora.lora_A.T @ lora.lora_B.T
    torch.testing.assert_close(lora(x), ref)
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(3, 3), rank=0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(nn.Linear(3, 3), alpha=0)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(nn.Linear(3, 3), dropout=1.0)
    with pytest.raises(TypeError):
        LoRALinear(nn.Conv1d(3, 3, 1))


def test_lora_dropout_only_in_training():
    seed_everything(0)
    lora = LoRALinear(nn.Linear(8, 8), rank=2, dropout=0.5)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(16, 8)
    lora.eval()
    torch.testing.assert_close(lora(x), lora(x))
    lora.train()
    assert not torch.allclose(lora(x), lora(x))


def test_apply_lora_wraps_exactly_the_targets():
    module = apply_lora(_survival(), rank=2)
    wrapped = {n for n, m in module.named_modules() if isinstance(m, LoRALinear)}
    assert wrapped == {f"encoder.layers.{i}.self_attn.{p}" for i in range(2) for p in ATTN}
    ff = apply_lora(_survival(), rank=2, include_feedforward=True)
    wrapped_ff = {n for n, m in ff.named_modules() if isinstance(m, LoRALinear)}
    assert wrapped_ff == wrapped | {
        f"encoder.layers.{i}.{p}" for i in range(2) for p in ("ff_in", "ff_out")
    }
    only_q = apply_lora(_survival(), targets=("q_proj",))
    assert {
        n.rsplit(".", 1)[1] for n, m in only_q.named_modules() if isinstance(m, LoRALinear)
    } == {"q_proj"}
    with pytest.raises(ValueError, match="no nn.Linear"):
        apply_lora(_survival(), targets=("nope",))


def test_apply_lora_twice_does_not_stack():
    module = apply_lora(_survival(), rank=2)
    n_params = len(lora_parameters(module))
    apply_lora(module, rank=2)
    assert len(lora_parameters(module)) == n_params == 2 * 4 * 2


def test_fresh_adapters_leave_model_output_unchanged():
    seed_everything(0)
    module = _survival().eval()
    batch = random_batch(4)
    with torch.no_grad():
        ref = module(**batch)
        apply_lora(module, rank=4, include_feedforward=True)
        torch.testing.assert_close(module(**batch), ref, atol=0, rtol=0)


def test_configure_trainable_parameter_names():
    module = apply_lora(_survival(), rank=2)
    names = {n for n, _ in module.named_parameters()}
    head = {n for n in names if n.startswith("head.")}
    adapters = {n for n in names if n.endswith(("lora_A", "lora_B"))}
    embeddings = {n for n in names if n.startswith("encoder.embeddings.")}
    assert head and len(adapters) == 16 and embeddings

    counts = configure_trainable(module, "frozen")
    assert _trainable(module) == head
    assert counts["total"] == sum(p.numel() for p in module.parameters())
    assert counts["trainable"] == sum(p.numel() for n, p in module.named_parameters() if n in head)

    configure_trainable(module, "frozen", train_embeddings=True)
    assert _trainable(module) == head | embeddings

    configure_trainable(module, "lora")
    assert _trainable(module) == head | adapters
    configure_trainable(module, "lora", train_embeddings=True)
    assert _trainable(module) == head | adapters | embeddings

    counts = configure_trainable(module, "full")
    assert _trainable(module) == names and counts["trainable"] == counts["total"]


def test_configure_trainable_errors():
    with pytest.raises(ValueError, match="apply_lora"):
        configure_trainable(_survival(), "lora")
    with pytest.raises(ValueError, match=r"\['frozen', 'lora', 'full'\]"):
        configure_trainable(_survival(), "partial")
    with pytest.raises(ValueError, match="encoder"):
        configure_trainable(nn.Linear(2, 2), "frozen")


def test_frozen_pretraining_module_keeps_tied_embedding_frozen():
    module = BEHRTPretrainingModule(tiny_config(), objective="both")
    configure_trainable(module, "frozen")
    assert not module.encoder.embeddings.code.weight.requires_grad
    assert module.mlm_head.decoder.bias.requires_grad
    assert module.next_visit_head.decoder.weight.requires_grad


def test_lora_on_medium_preset_trains_under_5_percent():
    cfg = BEHRTConfig.preset("medium", vocab_size=1000)
    module = apply_lora(BEHRTSurvivalModule(cfg, num_bins=10), rank=8, alpha=16)
    counts = configure_trainable(module, "lora")
    fraction = counts["trainable"] / counts["total"]
    assert 0 < fraction < 0.05, fraction
    expected = sum(p.numel() for p in lora_parameters(module)) + sum(
        p.numel() for p in module.head.parameters()
    )
    assert counts["trainable"] == expected


def test_merge_after_training_matches_unmerged():
    seed_everything(0)
    module = _survival()
    batch = random_batch(6)
    original_keys = set(module.state_dict())
    apply_lora(module, rank=2, alpha=4, include_feedforward=True)
    configure_trainable(module, "lora")
    base_before = module.encoder.layers[0].self_attn.q_proj.base.weight.detach().clone()
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(10):
        opt.zero_grad()
        module(**batch).pow(2).mean().backward()
        opt.step()
    q = module.encoder.layers[0].self_attn.q_proj
    assert torch.count_nonzero(q.lora_B) > 0  # B has trained away from zero
    torch.testing.assert_close(q.base.weight, base_before, atol=0, rtol=0)  # base frozen

    module.eval()
    with torch.no_grad():
        unmerged = module(**batch)
        unmerged_hidden = module.encoder(**batch, causal=True)
        merged_module = merge_lora(module)
        merged = merged_module(**batch)
        merged_hidden = module.encoder(**batch, causal=True)
    assert merged_module is module
    assert not any(isinstance(m, LoRALinear) for m in module.modules())
    assert type(module.encoder.layers[0].self_attn.q_proj) is nn.Linear
    assert set(module.state_dict()) == original_keys
    real = batch["visit_mask"]
    torch.testing.assert_close(merged[real], unmerged[real], atol=1e-5, rtol=0)
    # hidden states are O(1) (LayerNorm), a stricter check than the small head outputs
    tokens = batch["attention_mask"]
    torch.testing.assert_close(merged_hidden[tokens], unmerged_hidden[tokens], atol=1e-5, rtol=0)
    assert not torch.allclose(module.encoder.layers[0].self_attn.q_proj.weight, base_before)


def test_merge_lora_on_a_single_layer():
    lora = LoRALinear(nn.Linear(4, 3), rank=2)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(5, 4)
    expected = lora(x)
    merged = merge_lora(lora)
    assert type(merged) is nn.Linear
    torch.testing.assert_close(merged(x), expected, atol=1e-6, rtol=1e-5)


def test_lora_module_deepcopy_and_pickle():
    seed_everything(0)
    module = apply_lora(_survival(), rank=2, dropout=0.1).eval()
    with torch.no_grad():
        for p in lora_parameters(module):
            p.normal_(0.0, 0.05)
    batch = random_batch(3)
    with torch.no_grad():
        ref = module(**batch)
        for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
            torch.testing.assert_close(clone(**batch), ref)
            assert len(lora_parameters(clone)) == 16
