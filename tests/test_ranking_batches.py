"""The ranking term compares short and long histories although batches are bucketed by length."""

import numpy as np
import pandas as pd
import torch
from sksurv.util import Surv

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.data.batching import BucketBatchSampler, padding_fraction
from survbehrt.losses import HybridSurvivalLoss, comparable_pairs


class _RecordingLoss(HybridSurvivalLoss):
    """The estimator's hybrid loss, recording which groups met in a comparable pair."""

    def __init__(self, *args, log=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log

    def forward(self, logits, time, event, weight=None, mask=None, groups=None):
        if self.training:
            ref = self.memory.view()
            met = set()
            rows = [(groups, time, event)]
            if ref is not None:
                rows.append((ref[3], ref[1], ref[2]))
            horizon = float(self.cuts[-1])
            for gi, ti, ei in rows[:1]:
                for gj, tj, ej in rows:
                    for (a, ta, ea), (b, tb, eb) in (((gi, ti, ei), (gj, tj, ej)),
                                                     ((gj, tj, ej), (gi, ti, ei))):
                        ea = ea.bool() & (ta <= horizon)
                        eb = eb.bool() & (tb <= horizon)
                        c = comparable_pairs(ta.clamp(max=horizon), ea, tb.clamp(max=horizon), eb)
                        i, j = torch.nonzero(c, as_tuple=True)
                        met.update(zip(a[i].long().tolist(), b[j].long().tolist()))
            self.log.append(met)
        return super().forward(logits, time, event, weight=weight, mask=mask, groups=groups)


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


def test_short_and_long_histories_meet_in_the_ranking_term_every_epoch():
    X, y = _cohort()
    _Recording.log = log = []
    est = _Recording(loss="hybrid", embedding_dim=8, num_layers=1, num_heads=2, ff_dim=16, max_epochs=3,
                     batch_size=32, time_bins=5, early_stopping=None, validation_fraction=0,
                     random_state=0, n_threads=1)
    est.fit(X, y)
    lengths = est.tokenizer_.transform(X).lengths
    short = set(np.flatnonzero(lengths <= np.quantile(lengths, 0.1)).tolist())
    long = set(np.flatnonzero(lengths >= np.quantile(lengths, 0.9)).tolist())
    per_epoch = -(-len(X) // 32)
    assert len(log) == 3 * per_epoch
    for epoch in range(3):
        met = set().union(*log[epoch * per_epoch:(epoch + 1) * per_epoch])
        assert any((a in short and b in long) or (a in long and b in short) for a, b in met)
    # the batches themselves stay bucketed: few pairs of deciles share a batch
    sampler = BucketBatchSampler(lengths, 32, seed=0)
    batches = sampler.batches()
    assert padding_fraction(lengths, batches) <= 0.15
    assert not any(short & set(b.tolist()) and long & set(b.tolist()) for b in batches)
