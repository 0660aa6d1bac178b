"""The baselines BEHRT must beat on real-format data: the vendored Synthea sample.

Run: ``OMP_NUM_THREADS=1 python benchmarks/synthea_baselines.py [--folds 5] [--seed 0]``
(about 10 minutes on one core, most of it BEHRT).

The task is :func:`survbehrt.datasets.load_synthea_sample` with its defaults (death within
2 years of 1 January 2012, 2014, 2016 or 2018; histories from 2011 on; 2,859 rows of 799
patients, 49 deaths). Every model is fitted once per fold on the same patient-grouped,
event-stratified folds as ``survbehrt benchmark --dataset synthea-sample``
(:func:`survbehrt.benchmark.make_folds`; no patient on both sides), and scored by
Harrell's C on the test rows:

- ``Cox counts+age``: the benchmark's ``CoxPH`` (log code counts, index age and log number
  of visits, standardised; ridge penalty by a patient-grouped inner 3-fold CV);
- ``Cox age``: the benchmark's ``Cox-age`` (the age at the landmark alone);
- ``RSF``: the benchmark's random survival forest on the same counts;
- ``BEHRT defaults``: ``BEHRTSurvivalEstimator(random_state=seed, n_threads=1)``, every
  other parameter at today's default (no pretraining, full size: the sample is small).

It prints each fold's C, then per model the mean ± sd over folds and the mean ± sd of the
paired per-fold difference from ``Cox counts+age`` (the target: BEHRT >= Cox, paired).
With 49 events a fold's C moves by several hundredths: read the paired differences.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.benchmark import (
    BenchmarkSettings,
    _fit,
    make_folds,
    make_models,
    subject_groups,
)
from survbehrt.datasets import load_synthea_sample
from survbehrt.metrics import harrell_c


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="folds and model seed")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # convergence notes of the unpenalised grid points

    X, y = load_synthea_sample()
    event = y["event"]
    groups = subject_groups(X)
    folds = make_folds(X, event, args.folds, args.seed)
    print(f"Synthea sample: {len(X)} rows, {len(np.unique(groups))} patients, "
          f"{int(event.sum())} events; {args.folds} patient-grouped folds (seed {args.seed})")
    recipes = make_models(BenchmarkSettings(models=["CoxPH", "Cox-age", "RSF"],
                                            random_state=args.seed).resolved())
    models = {
        "Cox counts+age": recipes["CoxPH"],
        "Cox age": recipes["Cox-age"],
        "RSF": recipes["RSF"],
        "BEHRT defaults": BEHRTSurvivalEstimator(random_state=args.seed, n_threads=1),
    }
    scores = {name: [] for name in models}
    for fold, (train, test) in enumerate(folds):
        X_tr, X_te, y_tr, y_te = X.iloc[train], X.iloc[test], y[train], y[test]
        line = [f"fold {fold}: {int(y_te['event'].sum()):>2} test events"]
        for name, recipe in models.items():
            t0 = time.perf_counter()
            model = _fit(clone(recipe), X_tr, y_tr, groups[train], args.seed)
            model = getattr(model, "best_estimator_", model)  # the refitted best Cox
            c = harrell_c(y_te, model.predict(X_te))
            scores[name].append(c)
            line.append(f"{name} {c:.3f} ({time.perf_counter() - t0:.0f} s)")
        print("  " + ", ".join(line), flush=True)

    ref = np.asarray(scores["Cox counts+age"])
    print(f"\n{'model':<16}{'Harrell C':>16}{'minus Cox counts+age':>24}")
    for name, values in scores.items():
        values = np.asarray(values)
        diff = values - ref
        paired = "" if name == "Cox counts+age" else f"{diff.mean():+.3f} ± {diff.std(ddof=1):.3f}"
        print(f"{name:<16}{values.mean():>9.3f} ± {values.std(ddof=1):.3f}{paired:>24}")


if __name__ == "__main__":
    main()
