"""Zero-shot survival from time-to-event pre-training: the C-index before any fine-tuning.

Run: ``python benchmarks/zero_shot_tte.py [--pool N] [--labelled N] [--epochs E]``.

A cohort where the outcome code is also a pre-training task. Each patient is followed for
10 years; code ``"A"`` recurs as a Poisson process at a rate of the patient's own, 0.3 or
1.5 per year (half and half); other visits (rate 2 per year) hold one of 30 other codes.
The outcome, at a landmark 6 years in, is the time to the next ``"A"`` (censored 4 years
later); the features are the history before the landmark, whose count of ``"A"`` reveals
the rate.

1. ``BEHRTPretrainer(objective="tte")`` on an unlabelled pool of whole 10-year histories;
2. ``BEHRTSurvivalEstimator(pretrained=..., init_head_from_task="A", max_epochs=0)``:
   the zero-shot C-index on the test half (its fit reads the labels only for the time
   grid);
3. for scale: the same after ``--epochs`` epochs of fine-tuning, fine-tuning from the
   same encoder with the default head start, and the oracle (the true rate).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator

SMALL = dict(embedding_dim=64, num_layers=2, num_heads=4, ff_dim=256)


def cohort(n, seed, years=10.0, landmark=None):
    """Histories (cut at ``landmark`` when given), the outcome after it, and each rate."""
    rng = np.random.default_rng(seed)
    codes, ages, rates, event, time = [], [], [], [], []
    for _ in range(n):
        rate = rng.choice([0.3, 1.5])
        a_times = np.cumsum(rng.exponential(1 / rate, 80))
        o_times = np.cumsum(rng.exponential(0.5, 80))
        a_times, o_times = a_times[a_times < years], o_times[o_times < years]
        if landmark is not None:
            after = a_times[a_times >= landmark]
            event.append(len(after) > 0)
            time.append(after[0] - landmark if len(after) else years - landmark)
            a_times, o_times = a_times[a_times < landmark], o_times[o_times < landmark]
        times = np.concatenate([a_times, o_times, [0.0]])  # a first visit at the start
        labels = ["A"] * len(a_times) + [f"O{rng.integers(30)}" for _ in o_times] + ["O0"]
        order = np.argsort(times)
        codes.append([[labels[i]] for i in order])
        ages.append((30.0 + times[order]).tolist())
        rates.append(rate)
    X = pd.DataFrame({"codes": codes, "ages": ages})
    if landmark is not None:
        X["index_age"] = 30.0 + landmark
        return X, Surv.from_arrays(event, time), np.array(rates)
    return X


def cindex(y, risk):
    return concordance_index_censored(y["event"], y["time"], risk)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--labelled", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    pool = cohort(args.pool, seed=0)
    X, y, rate = cohort(args.labelled, seed=1, landmark=6.0)
    half = len(X) // 2
    tr, te = slice(0, half), slice(half, None)
    pre = BEHRTPretrainer(**SMALL, objective="tte", tte_tasks=31, max_epochs=args.pretrain_epochs,
                          random_state=0).fit(pool)
    print(f"pre-trained on {len(pool)} histories: tasks {pre.tte_tasks_[:5]}..., "
          f"grid {np.round(pre.tte_cuts_, 2).tolist()}")
    common = dict(pretrained=pre, wide=None, early_stopping=None, validation_fraction=0.0,
                  random_state=0)
    zero = BEHRTSurvivalEstimator(**common, init_head_from_task="A", max_epochs=0).fit(X[tr], y[tr])
    tuned = BEHRTSurvivalEstimator(**common, init_head_from_task="A",
                                   max_epochs=args.epochs).fit(X[tr], y[tr])
    plain = BEHRTSurvivalEstimator(**common, max_epochs=args.epochs).fit(X[tr], y[tr])
    print(f"test rows {len(X) - half}, events {int(y[te]['event'].sum())}")
    print(f"zero-shot (task 'A' head, no fine-tuning)   C = {cindex(y[te], zero.predict(X[te])):.3f}")
    print(f"task start + {args.epochs} epochs fine-tuning        C = {cindex(y[te], tuned.predict(X[te])):.3f}")
    print(f"default head + {args.epochs} epochs fine-tuning      C = {cindex(y[te], plain.predict(X[te])):.3f}")
    print(f"oracle (the true rate)                     C = {cindex(y[te], rate[te]):.3f}")


if __name__ == "__main__":
    main()
