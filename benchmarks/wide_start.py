"""The wide path's Cox start alone, with and without the recent code counts, on every generator.

Run: ``python benchmarks/wide_start.py [--seeds 0 1] [--sizes 1000 4000]``.

For each simulated cohort kind and labelled size, a ``BEHRTSurvivalEstimator`` with
``max_epochs=0`` (the Cox start and nothing else; no recalibration) is fitted with
``wide_recency=None`` and with the default ``wide_recency=1.0``, on the label-efficiency
benchmark's labelled rows (``make_synthetic_ehr(n, kind, random_state=seed)``), and
scored on its independent test cohort (seed ``10,000 + seed``). It prints Harrell's C of
each start, whether the start kept the recent counts (``wide_recent_``: the folds'
held-out likelihood decides) and the seconds of each fit. The oracle is the generating
model's C on the same test cohort. What the fine-tuned recipes make of the start is the
label-efficiency benchmark's table.
"""

from __future__ import annotations

import argparse
import time
import warnings

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.datasets.synthetic import SCENARIOS
from survbehrt.metrics import harrell_c


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 4000])
    parser.add_argument("--test", type=int, default=4000)
    parser.add_argument("--kinds", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # Cox convergence notes of the penalty walk
    print(f"{'cohort':<9} {'seed':>4} {'n':>5}  {'without':>7}  {'with':>5}  kept  "
          f"{'oracle':>6}  seconds (without, with)")
    for kind in args.kinds:
        for seed in args.seeds:
            X, y, _ = make_synthetic_ehr(max(args.sizes), kind, random_state=seed)
            X_test, y_test, risk = make_synthetic_ehr(args.test, kind, random_state=10_000 + seed)
            for n in sorted(args.sizes):
                row = []
                for recency in (None, 1.0):
                    t0 = time.perf_counter()
                    est = BEHRTSurvivalEstimator(
                        max_epochs=0, wide_recency=recency, embedding_dim=16, num_layers=1,
                        num_heads=2, ff_dim=32, max_length=128, random_state=seed,
                        recalibrate=False, n_threads=1).fit(X.iloc[:n], y[:n])
                    row.append((harrell_c(y_test, est.predict(X_test)), est.wide_recent_,
                                time.perf_counter() - t0))
                (c0, _, s0), (c1, kept, s1) = row
                print(f"{kind:<9} {seed:>4} {n:>5}  {c0:7.3f}  {c1:5.3f}  {'yes' if kept else 'no ':<4}  "
                      f"{harrell_c(y_test, risk):6.3f}  {s0:.1f}, {s1:.1f}", flush=True)


if __name__ == "__main__":
    main()
