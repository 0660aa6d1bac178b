"""Continuous time signals: exact token ages from the batch, and an encoding that sees them."""

import numpy as np
import pandas as pd
import torch

from survbehrt.data.batching import collate_tokens
from survbehrt.data.tokenizer import EHRTokenizer
from survbehrt.model import BEHRTConfig
from survbehrt.model.embeddings import BEHRTEmbeddings
from survbehrt.model.time_encoding import ContinuousTimeEncoding, token_times


def _frame():
    return pd.DataFrame({
        "codes": [[["A"], ["B", "C"]], [["C"]]],
        "ages": [[50.25, 51.5], [70.9]],
        "index_age": [52.0, 71.0],
        "static": [["GENDER//F"], []],
    })


def test_token_times_are_the_visit_ages():
    X = _frame()
    tok = EHRTokenizer().fit(X)
    batch = collate_tokens(tok.transform(X), [0, 1])
    age, before = token_times(batch["visits"], batch["visit_times"], batch["index_age"])
    for b in range(2):
        for i in range(int(batch["attention_mask"][b].sum())):
            v = int(batch["visits"][b, i])
            expected_age = X["ages"][b][v]  # [CLS], static codes and [SEP] share their visit's
            assert float(age[b, i]) == np.float32(expected_age)
            assert abs(float(before[b, i]) - (X["index_age"][b] - expected_age)) < 1e-5


def test_encoding_separates_ages_inside_one_bin_and_ignores_untimed_tokens():
    enc = ContinuousTimeEncoding(8)
    torch.nn.init.normal_(enc.projection.weight)
    age = torch.tensor([[50.1, 50.6, 50.6]])
    before = torch.tensor([[1.0, 1.0, 1.0]])
    timed = torch.tensor([[True, True, False]])
    out = enc(age, before, timed)
    assert not torch.allclose(out[0, 0], out[0, 1])  # same one-year bin, different ages
    assert torch.equal(out[0, 2], torch.zeros(8))


def test_embeddings_use_exact_ages_when_configured():
    X = _frame()
    tok = EHRTokenizer().fit(X)
    shifted = X.copy()
    shifted["ages"] = [[50.75, 51.9], [70.1]]  # same age bins, other exact ages
    cfg = dict(vocab_size=tok.vocab_size_, embedding_dim=8, num_heads=2, dropout=0.0)
    for continuous, differs in ((False, False), (True, True)):
        torch.manual_seed(0)
        emb = BEHRTEmbeddings(BEHRTConfig(continuous_time=continuous, **cfg)).eval()
        outs = []
        for frame in (X, shifted):
            batch = collate_tokens(tok.transform(frame), [0, 1])
            # the time bins may move with the exact times: keep them fixed to isolate the ages
            batch["time_bins"] = collate_tokens(tok.transform(X), [0, 1])["time_bins"]
            outs.append(emb(batch["codes"], batch["age_bins"], batch["visits"], batch["positions"],
                            batch["time_bins"], index_age=batch["index_age"],
                            visit_times=batch["visit_times"]))
        assert (not torch.allclose(outs[0], outs[1])) == differs
