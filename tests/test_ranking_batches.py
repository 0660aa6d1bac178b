"""The ranking term compares short and long histories although batches are bucketed by length."""

import numpy as np
import pandas as pd
import pytest
import torch
from loss_references import ranking_reference
from sksurv.util import Surv

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.data.batching import BucketBatchSampler, padding_fraction
from survbehrt.losses import HybridSurvivalLoss, comparable_pairs


class _RecordingLoss(HybridSurvivalLoss):
    """The estimator's hybrid loss, recording each training batch and the ranking term it gave."""

    def __init__(self, *args, log=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log

    def forward(self, logits, time, event, weight=None, mask=None, groups=None):
        out = super().forward(logits, time, event, weight=weight, mask=mask, groups=groups)
        if self.training:
            self.log.append(dict(logits=logits.detach().double().numpy(), time=time.numpy(),
                                 event=event.numpy(), groups=groups.numpy(),
                                 ranking=out.ranking.item()))
        return out


class _Recording(BEHRTSurvivalEstimator):
    log = []

    def _make_criterion(self, cuts):
        base = super()._make_criterion(cuts)
        return _RecordingLoss(cuts, rank_weight=base.rank_weight, sigma=base.sigma,
                              memory_size=base.memory_size, log=self.log)


def _cohort(n=480, seed=0):
    rng = np.random.default_rng(seed)
    n_visits = rng.integers(2, 100, n)  # 5 to ~200 tokens
    codes = [[["A"]] * int(k) for k in n_visits]
    ages = [list(np.linspace(40.0, 60.0, int(k))) for k in n_visits]
    X = pd.DataFrame({"codes": codes, "ages": ages})
    y = Surv.from_arrays(rng.random(n) < 0.6, rng.uniform(0.1, 5.0, n))
    return X, y


def _stack(batches):
    return {k: np.concatenate([b[k] for b in batches]) for k in ("logits", "time", "event", "groups")}


def _met(current, earlier):
    """Groups that met in a comparable pair, in either role, between the two sets of rows."""
    met = set()
    for a, b in ((current, earlier), (earlier, current)):
        c = comparable_pairs(*(torch.tensor(x[k]) for x in (a, b) for k in ("time", "event")))
        i, j = np.nonzero(c.numpy())
        met.update(zip(a["groups"][i].tolist(), b["groups"][j].tolist()))
    return met


def test_short_and_long_histories_meet_in_the_ranking_term_every_epoch():
    X, y = _cohort()
    _Recording.log = log = []
    est = _Recording(loss="hybrid", embedding_dim=8, num_layers=1, num_heads=2, ff_dim=16, max_epochs=3,
                     batch_size=32, time_bins=5, early_stopping=None, validation_fraction=0,
                     random_state=0, n_threads=1)
    est.fit(X, y)
    cuts = est.time_grid_.cuts_
    horizon = cuts[-1]
    lengths = est.tokenizer_.transform(X).lengths
    short = set(np.flatnonzero(lengths <= np.quantile(lengths, 0.1)).tolist())
    long = set(np.flatnonzero(lengths >= np.quantile(lengths, 0.9)).tolist())
    per_epoch = -(-len(X) // 32)
    assert len(log) == 3 * per_epoch
    for epoch in range(3):
        batches = log[epoch * per_epoch:(epoch + 1) * per_epoch]
        met = set()
        for b, current in enumerate(batches):
            if b == 0:
                # the memory holds nothing of past epochs: the first batch ranks alone
                expected, _ = ranking_reference(current["logits"], current["time"],
                                                current["event"], cuts, est.rank_sigma, "exp",
                                                groups=current["groups"])
            else:
                # the true pairs: this batch against the rows this epoch already saw (< 1024),
                # with the logits they had then, times past the grid censored at its end
                earlier = _stack(batches[:b])
                rows = _stack([current, earlier])
                rows["event"] = rows["event"].astype(bool) & (rows["time"] <= horizon)
                rows["time"] = np.minimum(rows["time"], horizon)
                met |= _met({k: v[:len(current["time"])] for k, v in rows.items()},
                            {k: v[len(current["time"]):] for k, v in rows.items()})
                if b not in (1, per_epoch - 1):
                    continue  # the loop reference is slow: check the second and last batches
                expected, _ = ranking_reference(rows["logits"], rows["time"], rows["event"], cuts,
                                                est.rank_sigma, "exp", groups=rows["groups"],
                                                n_current=len(current["time"]))
            assert current["ranking"] == pytest.approx(expected, rel=1e-5), (epoch, b)
        assert any((a in short and b in long) or (a in long and b in short) for a, b in met)
    # the batches themselves stay bucketed: few pairs of deciles share a batch
    sampler = BucketBatchSampler(lengths, 32, seed=0)
    batches = sampler.batches()
    assert padding_fraction(lengths, batches) <= 0.15
    assert not any(short & set(b.tolist()) and long & set(b.tolist()) for b in batches)
