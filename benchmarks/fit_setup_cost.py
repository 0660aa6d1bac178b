"""What ``fit`` costs before the first epoch, and how much of it is the wide path's Cox start.

Run: ``OMP_NUM_THREADS=1 python benchmarks/fit_setup_cost.py [--n-patients 4000]
[--datasets ...] [--repeats 3]``.

For each dataset (names as in ``survbehrt benchmark``), ``BEHRTSurvivalEstimator`` with
``max_epochs=0`` and ``recalibrate=False`` (everything ``fit`` does before the first
epoch: validation, tokenizing, the split, the start) is fitted with the default
``wide="joint"`` and with ``wide=None`` (the start is then the population's hazards, no
Cox fit), and once more with ``wide="joint"`` and ``recalibrate=True`` (the step after
the last epoch: one inference pass over every fitted row and the slope's fit),
alternately, ``--repeats`` times each in one thread. It prints the fastest wall-clock
seconds and the fastest CPU seconds of this process (``time.process_time``) of each, and
the differences: the Cox start's cost and the recalibration's. CPU seconds are what the
work costs; on a shared machine the wall clock also holds the time other processes had
the core, so the CPU columns are the ones to compare with issue 24's target (set-up at
most 1.5 s on 4,000 patients).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.benchmark import load_benchmark_data


def timed_fit(X, y, wide, recalibrate=False):
    est = BEHRTSurvivalEstimator(max_epochs=0, wide=wide, recalibrate=recalibrate,
                                 random_state=0, n_threads=1)
    wall, cpu = time.perf_counter(), time.process_time()
    est.fit(X, y)
    return time.perf_counter() - wall, time.process_time() - cpu, est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=4000)
    parser.add_argument("--datasets", nargs="+", default=[
        "synthetic", "synthetic-counts", "synthetic-latent", "synthetic-synonyms",
        "synthea-sample"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(f"{'dataset':<20} {'rows':>5} {'codes kept':>10} {'set-up wall':>11} {'set-up CPU':>10} "
          f"{'None wall':>9} {'None CPU':>8} {'start CPU':>9} {'recalibration CPU':>17}")
    for name in args.datasets:
        X, y, _ = load_benchmark_data(name, args.n_patients, 0)
        best = {run: [float("inf")] * 2 for run in [("joint", False), (None, False), ("joint", True)]}
        for _ in range(args.repeats):
            for wide, recalibrate in best:
                wall, cpu, est = timed_fit(X, y, wide, recalibrate)
                best[wide, recalibrate] = [min(best[wide, recalibrate][0], wall),
                                           min(best[wide, recalibrate][1], cpu)]
                if wide == "joint":
                    kept = int((est.net_.module_.wide.code_weight.weight.detach() != 0).sum())
        (jw, jc), (nw, nc), (_, rc) = best.values()
        print(f"{name:<20} {len(X):>5} {kept:>10} {jw:>11.2f} {jc:>10.2f} {nw:>9.2f} {nc:>8.2f} "
              f"{jc - nc:>9.2f} {rc - jc:>17.2f}", flush=True)


if __name__ == "__main__":
    main()
