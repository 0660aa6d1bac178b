"""Code groups: the shared prefix helper, the group embedding, and the estimators' code_prefix."""

import json
import pickle

import numpy as np
import pytest
import torch

from survbehrt import BEHRTCompetingRisksEstimator
from survbehrt.data.code_groups import code_groups
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.datasets.competing import make_synthetic_competing
from survbehrt.model import N_SPECIAL, BEHRTConfig, BEHRTEmbeddings

from helpers import tiny_estimator, tiny_pretrainer
from model_helpers import VOCAB_SIZE, embedding_inputs, random_batch, seed_everything, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------- the helper


def test_code_groups_by_prefix_and_by_code():
    codes = ["[PAD]", "[CLS]", "I21.4", "E11.9", "I21.0", "I22", "E11.2"]
    ids, names = code_groups(codes, n_special=2, prefix=3)
    assert names == ["E11", "I21", "I22"]
    assert ids.tolist() == [-1, -1, 1, 0, 1, 2, 0]
    # no prefix: every code is its own group
    ids, names = code_groups(codes, n_special=2)
    assert names == sorted(codes[2:])
    assert [names[i] for i in ids[2:]] == codes[2:]
    # a prefix longer than a code keeps the whole code
    ids, names = code_groups(codes, n_special=2, prefix=10)
    assert names == sorted(codes[2:])


@pytest.mark.parametrize("prefix", [0, -1, 2.5, True, "3"])
def test_code_groups_refuse_a_bad_prefix(prefix):
    with pytest.raises(ValueError, match="positive number of characters"):
        code_groups(["[PAD]", "A1"], n_special=1, prefix=prefix)


# --------------------------------------------------------------------------- the config


def _groups(vocab_size=VOCAB_SIZE, n_groups=3):
    """Real codes dealt round-robin into ``n_groups`` groups (1..n), specials in none (0)."""
    groups = np.zeros(vocab_size, dtype=np.int64)
    groups[N_SPECIAL:] = 1 + np.arange(vocab_size - N_SPECIAL) % n_groups
    return groups


def test_config_keeps_code_groups_through_json():
    config = tiny_config(code_groups=_groups())
    assert config.code_groups == tuple(_groups().tolist())
    again = BEHRTConfig(**json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert "code_groups" not in repr(config)  # a vocabulary-long tuple stays out of reprs


@pytest.mark.parametrize("groups, message", [
    (np.zeros(VOCAB_SIZE - 1, dtype=np.int64), "one int per token id"),
    (np.full(VOCAB_SIZE, 0.5), "one int per token id"),
    (np.r_[np.zeros(N_SPECIAL, int), -np.ones(VOCAB_SIZE - N_SPECIAL, int)], ">= 0"),
    (np.ones(VOCAB_SIZE, dtype=np.int64), "special tokens"),
])
def test_config_refuses_bad_code_groups(groups, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(code_groups=groups)


# --------------------------------------------------------------------------- the embedding


def test_group_embedding_is_the_code_table_plus_each_codes_group_row():
    """From the definition: a grouped embedding equals an ungrouped one whose code table
    is replaced, row by row, by the code's row plus its group's row."""
    seed_everything(0)
    groups = _groups()
    grouped = BEHRTEmbeddings(tiny_config(code_groups=groups))
    plain = BEHRTEmbeddings(tiny_config())
    plain.load_state_dict(grouped.state_dict(), strict=False)
    with torch.no_grad():
        torch.nn.init.normal_(grouped.code_group.weight[1:])  # far from zero, so it shows
        for token in range(VOCAB_SIZE):
            plain.code.weight[token] = (grouped.code.weight[token]
                                        + grouped.code_group.weight[groups[token]])
    batch = random_batch(5)
    assert torch.allclose(grouped(**embedding_inputs(batch)), plain(**embedding_inputs(batch)), atol=1e-6)
    # and the group rows matter: without them the output differs
    with torch.no_grad():
        grouped.code_group.weight.zero_()
    assert not torch.allclose(grouped(**embedding_inputs(batch)), plain(**embedding_inputs(batch)), atol=1e-3)


def test_a_gradient_through_one_code_reaches_its_group_only():
    seed_everything(0)
    groups = _groups(n_groups=3)
    emb = BEHRTEmbeddings(tiny_config(code_groups=groups))
    token = N_SPECIAL  # group 1
    codes = torch.tensor([[token]])
    zeros = torch.zeros_like(codes)
    out = emb(codes=codes, age_bins=zeros + 1, visits=zeros, positions=zeros, time_bins=zeros + 1)
    out.pow(2).sum().backward()
    grad = emb.code_group.weight.grad
    assert grad[groups[token]].abs().sum() > 0
    others = [g for g in range(grad.shape[0]) if g != groups[token]]
    assert torch.count_nonzero(grad[others]) == 0  # row 0 (specials) and the other groups


def test_group_table_is_in_the_state_dict_and_its_map_in_the_config_only():
    emb = BEHRTEmbeddings(tiny_config(code_groups=_groups()))
    keys = emb.state_dict().keys()
    assert "code_group.weight" in keys
    assert "group_of_code" not in keys
    assert BEHRTEmbeddings(tiny_config()).code_group is None


# --------------------------------------------------------------------------- the estimators


@pytest.fixture(scope="module")
def synonyms():
    X, y, _ = make_synthetic_ehr(160, "synonyms", random_state=0)
    return X, y


def _expected_groups(estimator, prefix):
    codes = estimator.tokenizer_.codes_
    return tuple(int(g) for g in code_groups(codes, N_SPECIAL, prefix)[0] + 1)


def test_estimator_groups_its_vocabulary_by_prefix(synonyms):
    X, y = synonyms
    est = tiny_estimator(code_prefix=3).fit(X, y)
    config = est.net_.module_.encoder.config
    assert config.code_groups == _expected_groups(est, 3)
    # the synonyms' 40 concepts, at most: every code of a concept shares its group
    prefixes = {str(c)[:3] for c in est.tokenizer_.codes_[N_SPECIAL:]}
    assert est.net_.module_.encoder.embeddings.code_group.num_embeddings == len(prefixes) + 1
    # and the default has no group table
    plain = tiny_estimator().fit(X, y)
    assert plain.net_.module_.encoder.embeddings.code_group is None


def test_grouped_estimator_survives_pickle_and_save_load(synonyms, tmp_path):
    X, y = synonyms
    est = tiny_estimator(code_prefix=3).fit(X, y)
    expected = est.predict(X)
    assert np.allclose(pickle.loads(pickle.dumps(est)).predict(X), expected)
    est.save(tmp_path / "model.pt")
    loaded = type(est).load(tmp_path / "model.pt")
    assert np.allclose(loaded.predict(X), expected)
    assert loaded.net_.module_.encoder.config.code_groups == _expected_groups(est, 3)


def test_fine_tuning_keeps_the_pretrainers_groups_and_their_rows(synonyms):
    X, y = synonyms
    pre = tiny_pretrainer(code_prefix=3).fit(X)
    pre_table = pre.module_.encoder.embeddings.code_group.weight.detach().clone()
    # the estimator's own code_prefix is ignored with pretrained: the pretrainer's holds
    est = tiny_estimator(pretrained=pre, strategy="lora", code_prefix=5).fit(X, y)
    emb = est.net_.module_.encoder.embeddings
    assert est.net_.module_.encoder.config.code_groups == _expected_groups(pre, 3)
    assert torch.equal(emb.code_group.weight, pre_table)  # LoRA leaves the embeddings alone
    assert not emb.code_group.weight.requires_grad


def test_competing_estimator_takes_code_prefix():
    X, y, _ = make_synthetic_competing(160, random_state=0)
    est = BEHRTCompetingRisksEstimator(
        code_prefix=2, embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=1,
        time_bins=5, early_stopping=None, validation_fraction=0, random_state=0, n_threads=1,
    ).fit(X, y)
    assert est.net_.module_.encoder.config.code_groups == _expected_groups(est, 2)


@pytest.mark.parametrize("make", [tiny_estimator, tiny_pretrainer])
def test_bad_code_prefix_is_named(make, synonyms):
    X, y = synonyms
    with pytest.raises(ValueError, match="code_prefix"):
        make(code_prefix=0).fit(X, y)
