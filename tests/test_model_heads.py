import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from survbehrt.model import (
    BEHRTEncoder,
    BEHRTPretrainingModule,
    BEHRTSurvivalModule,
    HazardHead,
    MLMHead,
    NextVisitHead,
    apply_lora,
    mask_tokens,
    next_visit_targets,
    pretraining_loss,
)

from model_helpers import (
    VOCAB_SIZE,
    make_batch,
    random_batch,
    seed_everything,
    tiny_config,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------- heads


def test_head_shapes():
    h = torch.randn(3, 7, 16)
    assert MLMHead(16, VOCAB_SIZE)(h).shape == (3, 7, VOCAB_SIZE)
    assert NextVisitHead(16, VOCAB_SIZE)(h).shape == (3, 7, VOCAB_SIZE)
    head = HazardHead(16, num_bins=5)
    assert head(h).shape == (3, 7, 5) and head.hidden.out_features == 8
    assert HazardHead(16, 5, hidden_dim=3).hidden.out_features == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_bins"):
            HazardHead(16, bad)


def test_mlm_weight_tying():
    tied = BEHRTPretrainingModule(tiny_config(tie_mlm_weights=True), objective="mlm")
    assert tied.mlm_head.decoder.weight is tied.encoder.embeddings.code.weight
    untied = BEHRTPretrainingModule(tiny_config(tie_mlm_weights=False), objective="mlm")
    assert untied.mlm_head.decoder.weight is not untied.encoder.embeddings.code.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == VOCAB_SIZE * 16
    # the tie survives deepcopy and pickle
    for clone in (copy.deepcopy(tied), pickle.loads(pickle.dumps(tied))):
        assert clone.mlm_head.decoder.weight is clone.encoder.embeddings.code.weight
    with pytest.raises(ValueError, match="shape"):
        MLMHead(16, VOCAB_SIZE + 1, tied_weight=tied.encoder.embeddings.code.weight)


def test_tied_decoder_keeps_code_padding_row_zero():
    seed_everything(0)
    module = BEHRTPretrainingModule(tiny_config(), objective="mlm")
    batch = random_batch(8)
    inp, labels = mask_tokens(batch["codes"], batch["attention_mask"], VOCAB_SIZE, 0.5)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        pretraining_loss(module(**batch, masked_codes=inp), mlm_labels=labels)["loss"].backward()
        opt.step()
    assert torch.count_nonzero(module.encoder.embeddings.code.weight[0]) == 0


# --------------------------------------------------------------------------- survival module

PATIENT = [[5, 6, 7], [8, 9], [10, 11, 12]]


def test_survival_module_shapes_and_extra_keys():
    seed_everything(0)
    module = BEHRTSurvivalModule(tiny_config(), num_bins=4).eval()
    batch = random_batch(5)
    out = module(**batch, event=torch.ones(5), unknown_key="ignored")
    assert out.shape == (5, batch["visit_mask"].shape[1], 4)
    assert torch.isfinite(out).all()
    # the visit_mask width fixes V, even with trailing empty slots
    wide = make_batch([PATIENT], num_visits=6)
    assert module(**wide).shape == (1, 6, 4)
    assert torch.isfinite(module(**wide)).all()


@pytest.mark.parametrize(
    "later", [PATIENT[:1] + [[20], [21, 22, 23]], PATIENT + [[24, 25]], PATIENT + [[5], [6]]]
)
def test_hazards_are_visit_causal(later):
    seed_everything(0)
    module = BEHRTSurvivalModule(tiny_config(), num_bins=4).eval()
    with torch.no_grad():  # O(1) logits, so that atol=1e-5 is a strict comparison
        for p in module.head.parameters():
            p.normal_(0.0, 1.0)
    n_early = 1 if later[1] != PATIENT[1] else len(PATIENT)
    with torch.no_grad():
        ref = module(**make_batch([PATIENT]))
        new = module(**make_batch([later]))
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(new[:, :n_early], ref[:, :n_early], atol=1e-5, rtol=0)
    # the same head on bidirectional visit representations sees the change
    with torch.no_grad():
        bi_ref = module.head(module.encoder.visit_representations(**make_batch([PATIENT]))[0])
        bi_new = module.head(module.encoder.visit_representations(**make_batch([later]))[0])
    assert (bi_new[:, :n_early] - bi_ref[:, :n_early]).abs().max() > 1e-3


def test_from_encoder_copies_weights():
    seed_everything(0)
    pre = BEHRTPretrainingModule(tiny_config(), objective="both")
    batch = random_batch(4)
    surv = BEHRTSurvivalModule.from_encoder(pre.encoder, num_bins=3).eval()
    pre.eval()
    with torch.no_grad():
        torch.testing.assert_close(surv.encoder(**batch), pre.encoder(**batch))
    # a copy, not shared
    assert surv.encoder.embeddings.code.weight is not pre.encoder.embeddings.code.weight
    with torch.no_grad():
        surv.encoder.embeddings.code.weight.add_(1.0)
    assert not torch.allclose(
        surv.encoder.embeddings.code.weight, pre.encoder.embeddings.code.weight
    )
    # the constructor argument does the same
    sd = pre.encoder.state_dict()
    other = BEHRTSurvivalModule(tiny_config(), num_bins=3, encoder_state_dict=sd).eval()
    with torch.no_grad():
        torch.testing.assert_close(other.encoder(**batch), pre.encoder(**batch))
    # a different dropout is fine, a different architecture is not
    BEHRTSurvivalModule.from_encoder(pre.encoder, 3, config=tiny_config(dropout=0.3))
    with pytest.raises(RuntimeError):
        BEHRTSurvivalModule.from_encoder(pre.encoder, 3, config=tiny_config(num_layers=3))


def test_from_lora_encoder_merges_adapters():
    seed_everything(0)
    pre = BEHRTPretrainingModule(tiny_config(), objective="mlm").eval()
    apply_lora(pre, rank=2)
    with torch.no_grad():
        for name, p in pre.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0.0, 0.05)
    batch = random_batch(3)
    surv = BEHRTSurvivalModule.from_encoder(pre.encoder, 2).eval()
    real = batch["attention_mask"]  # padding outputs are meaningless (and ill-conditioned)
    with torch.no_grad():
        torch.testing.assert_close(
            surv.encoder(**batch)[real], pre.encoder(**batch)[real], atol=1e-5, rtol=0
        )
    assert any("lora_A" in n for n, _ in pre.named_parameters())  # source untouched


def test_survival_module_pickles():
    seed_everything(0)
    module = BEHRTSurvivalModule(tiny_config(), num_bins=3).eval()
    apply_lora(module, rank=2)
    batch = random_batch(3)
    with torch.no_grad():
        ref = module(**batch)
        for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
            torch.testing.assert_close(clone(**batch), ref)


# --------------------------------------------------------------------------- pretraining module


def test_pretraining_module_outputs_by_objective():
    seed_everything(0)
    batch = random_batch(4)
    b, n = batch["codes"].shape
    v = batch["visit_mask"].shape[1]
    expected = {
        "mlm": {"mlm_logits": (b, n, VOCAB_SIZE)},
        "next_visit": {"next_visit_logits": (b, v, VOCAB_SIZE)},
        "both": {"mlm_logits": (b, n, VOCAB_SIZE), "next_visit_logits": (b, v, VOCAB_SIZE)},
    }
    for objective, shapes in expected.items():
        module = BEHRTPretrainingModule(tiny_config(), objective=objective)
        out = module(**batch)
        assert {k: tuple(t.shape) for k, t in out.items()} == shapes
    with pytest.raises(ValueError, match="next_visit"):
        BEHRTPretrainingModule(tiny_config(), objective="nsp")


def test_both_objective_uses_masked_codes_for_mlm_only():
    seed_everything(0)
    module = BEHRTPretrainingModule(tiny_config(), objective="both").eval()
    batch = random_batch(4)
    inp, _ = mask_tokens(batch["codes"], batch["attention_mask"], VOCAB_SIZE, 0.5)
    with torch.no_grad():
        plain = module(**batch)
        masked = module(**batch, masked_codes=inp)
    torch.testing.assert_close(masked["next_visit_logits"], plain["next_visit_logits"])
    assert not torch.allclose(masked["mlm_logits"], plain["mlm_logits"])


def test_mlm_decoder_on_the_chosen_tokens_alone_gives_the_same_rows_and_loss():
    # with ``mlm_chosen`` the decoder runs on the chosen tokens only: its rows are the
    # full logits at those tokens (row-major), and the loss is the full logits' loss
    from survbehrt.model import IGNORE_INDEX, pretraining_loss

    seed_everything(0)
    module = BEHRTPretrainingModule(tiny_config(), objective="mlm").eval()
    batch = random_batch(6)
    inp, labels = mask_tokens(batch["codes"], batch["attention_mask"], VOCAB_SIZE, 0.3)
    chosen = labels != IGNORE_INDEX
    assert 0 < int(chosen.sum()) < int(batch["attention_mask"].sum())
    with torch.no_grad():
        full = module(**batch, masked_codes=inp)["mlm_logits"]
        rows = module(**batch, masked_codes=inp, mlm_chosen=chosen)["mlm_logits"]
    assert rows.shape == (int(chosen.sum()), VOCAB_SIZE)
    torch.testing.assert_close(rows, full[chosen])
    expected = sum(F.cross_entropy(full[i, j], labels[i, j]) for i, j in chosen.nonzero())
    expected = expected / int(chosen.sum())
    for logits in (full, rows):
        loss = pretraining_loss({"mlm_logits": logits}, mlm_labels=labels)["loss"]
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- overfitting


def _train(module, loss_fn, steps, lr=3e-3):
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


OVERFIT_PATIENTS = [
    [[5, 6, 7], [8, 9], [10, 11]],
    [[12, 13], [14, 15, 16]],
    [[17], [18, 19], [20, 21], [22]],
    [[23, 24, 25], [26, 27]],
]


def test_overfit_mlm():
    seed_everything(0)
    module = BEHRTPretrainingModule(tiny_config(embedding_dim=32, ff_dim=64), objective="mlm")
    batch = make_batch(OVERFIT_PATIENTS)
    inp, labels = mask_tokens(
        batch["codes"],
        batch["attention_mask"],
        VOCAB_SIZE,
        0.3,
        generator=torch.Generator().manual_seed(0),
    )
    assert (labels != -100).sum() >= 4

    def loss_fn():
        return pretraining_loss(module(**batch, masked_codes=inp), mlm_labels=labels)["loss"]

    losses = _train(module, loss_fn, steps=150, lr=1e-2)
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])


def test_overfit_next_visit():
    seed_everything(0)
    module = BEHRTPretrainingModule(
        tiny_config(embedding_dim=32, ff_dim=64), objective="next_visit"
    )
    batch = make_batch(OVERFIT_PATIENTS)
    targets, tmask = next_visit_targets(
        batch["codes"], batch["visits"], batch["visit_mask"], VOCAB_SIZE
    )

    def loss_fn():
        out = module(**batch)
        return pretraining_loss(out, next_visit_targets=targets, next_visit_mask=tmask)["loss"]

    losses = _train(module, loss_fn, steps=200, lr=1e-2)
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])


def test_overfit_hazard():
    seed_everything(0)
    k = 4
    module = BEHRTSurvivalModule(tiny_config(embedding_dim=32, ff_dim=64), num_bins=k)
    batch = make_batch(OVERFIT_PATIENTS)
    last = batch["visit_mask"].sum(1) - 1
    event_bin = torch.tensor([0, 2, 1, 3])
    event = torch.tensor([1.0, 0.0, 1.0, 1.0])

    def loss_fn():
        # discrete-time NLL at each patient's last visit, log-sigmoid form:
        # survive bins < t, then event (or survive) in bin t.
        logits = module(**batch)[torch.arange(4), last]  # (B, K)
        before = torch.arange(k).unsqueeze(0) < event_bin.unsqueeze(1)
        at = F.one_hot(event_bin, k).bool()
        surv = F.logsigmoid(-logits)
        nll = -(surv * before).sum(1)
        nll = nll - (event * F.logsigmoid(logits) + (1 - event) * surv)[at]
        return nll.mean()

    losses = _train(module, loss_fn, steps=150, lr=1e-2)
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])


def test_patient_embedding_from_pretraining_encoder():
    module = BEHRTPretrainingModule(tiny_config(), objective="mlm").eval()
    batch = random_batch(5)
    assert isinstance(module.encoder, BEHRTEncoder)
    with torch.no_grad():
        assert module.encoder.patient_embedding(**batch).shape == (5, 16)
