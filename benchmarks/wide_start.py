"""The wide path's Cox start alone, with and without the recent code counts, on every generator.

Run: ``python benchmarks/wide_start.py [--seeds 0 1] [--sizes 1000 4000]
[--synthea-seeds 0 1 2 3]``.

For each simulated cohort kind and labelled size, a ``BEHRTSurvivalEstimator`` with
``max_epochs=0`` (the Cox start and nothing else; no recalibration) is fitted with
``wide_recency=None`` and with the default ``wide_recency=1.0``, on the label-efficiency
benchmark's labelled rows (``make_synthetic_ehr(n, kind, random_state=seed)``), and
scored on its independent test cohort (seed ``10,000 + seed``). It prints Harrell's C of
each start, whether the start kept the recent counts (``wide_recent_``: the folds'
held-out likelihood decides) and the seconds of each fit. The oracle is the generating
model's C on the same test cohort. What the fine-tuned recipes make of the start is the
label-efficiency benchmark's table.

On the Synthea sample (``--synthea-seeds``), the label-efficiency benchmark's
patient-grouped folds (three per seed; all training patients of a fold): the two starts
and, paired on the same fold, the benchmark's Cox on code counts (``cox``: counts of
codes in 5 rows or more, standardised, the ridge penalty chosen by an inner 3-fold CV),
and the start without the tempo covariates (``decay_scales=None``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.datasets.synthetic import SCENARIOS
from survbehrt.metrics import harrell_c

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_efficiency as le  # noqa: E402  (the Synthea folds and the Cox recipe, not re-written)


def start_alone(recency, seed, X, y, groups=None, **params):
    """A fitted estimator that is its Cox start (no epoch, no recalibration)."""
    return BEHRTSurvivalEstimator(
        max_epochs=0, wide_recency=recency, embedding_dim=16, num_layers=1, num_heads=2,
        ff_dim=32, max_length=128, random_state=seed, recalibrate=False,
        n_threads=1, **params).fit(X, y, groups=groups)


def synthea_starts(seeds):
    """Per fold of the Synthea sample: C of the two starts and of the benchmark's Cox."""
    rows = []
    for seed in seeds:
        run = le.Run(le.parse_args(["--datasets", "synthea-sample", "--seeds", str(seed),
                                    "--recipes", "cox"]))
        cox = run.recipes(seed, {})["cox"]
        for fold, _, labelled, X_test, y_test, _ in le.synthea_runs(run, "synthea-sample", seed):
            n, X, y, groups = labelled[-1]
            c = [harrell_c(y_test, start_alone(r, seed, X, y, groups).predict(X_test))
                 for r in (None, 1.0)]
            c.append(le.fit_and_score(cox, X, y, groups, seed, X_test, y_test)[0])
            # and the start without the tempo covariates (decay_scales=None)
            c.append(harrell_c(y_test, start_alone(None, seed, X, y, groups,
                                                   decay_scales=None).predict(X_test)))
            rows.append(c)
            print(f"synthea   {seed:>4} {n:>5}  {c[0]:7.3f}  {c[1]:5.3f}  fold {fold}, "
                  f"Cox on counts {c[2]:.3f}, start without tempo covariates {c[3]:.3f}",
                  flush=True)
    c = np.array(rows)
    print(f"synthea means over {len(c)} folds: start without {c[:, 0].mean():.3f}, with "
          f"{c[:, 1].mean():.3f}, without tempo covariates {c[:, 3].mean():.3f}, Cox on counts "
          f"{c[:, 2].mean():.3f}; start without minus Cox per fold "
          + " ".join(f"{d:+.3f}" for d in c[:, 0] - c[:, 2]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 4000])
    parser.add_argument("--test", type=int, default=4000)
    parser.add_argument("--kinds", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--synthea-seeds", nargs="*", type=int, default=[0, 1, 2, 3],
                        help="seeds of the Synthea sample's folds (none: skip it)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # Cox convergence notes of the penalty walk
    print(f"{'cohort':<9} {'seed':>4} {'n':>5}  {'without':>7}  {'with':>5}  kept  "
          f"{'oracle':>6}  seconds (without, with)")
    for kind in args.kinds:
        for seed in args.seeds:
            X, y, _ = make_synthetic_ehr(max(args.sizes), kind, random_state=seed)
            X_test, y_test, risk = make_synthetic_ehr(args.test, kind, random_state=10_000 + seed)
            oracle = harrell_c(y_test, risk)
            for n in sorted(args.sizes):
                row = []
                for recency in (None, 1.0):
                    t0 = time.perf_counter()
                    est = start_alone(recency, seed, X.iloc[:n], y[:n])
                    row.append((harrell_c(y_test, est.predict(X_test)), est.wide_recent_,
                                time.perf_counter() - t0))
                (c0, _, s0), (c1, kept, s1) = row
                print(f"{kind:<9} {seed:>4} {n:>5}  {c0:7.3f}  {c1:5.3f}  {'yes' if kept else 'no ':<4}  "
                      f"{oracle:6.3f}  {s0:.1f}, {s1:.1f}", flush=True)
    if args.synthea_seeds:
        synthea_starts(args.synthea_seeds)


if __name__ == "__main__":
    main()
