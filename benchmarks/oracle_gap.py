"""Where BEHRT's gap to the oracle comes from, on the synthetic sequence cohort.

Run: ``python benchmarks/oracle_gap.py [--folds 0 1 2 3 4] [--seeds 1] [--recipe benchmark]``.

On the benchmark's folds of the 4,000-patient cohort, one BEHRT per fold and seed is
fitted — ``--recipe benchmark``: the benchmark's BEHRT-full (a pretrainer fitted on
the training fold, then full fine-tuning; ``survbehrt.benchmark.make_models``);
``--recipe defaults``: ``BEHRTSurvivalEstimator()`` as it comes. For the test fold it
prints:

- ``C``: Harrell's C of the model's risk, and ``oracle``: of the true log-hazard;
- ``C proj``: Harrell's C of the model's log-risk *projected* on the generating model's
  components (age, D present, A before B, C recent, tempo) by least squares — the model
  with the part of its risk that no component explains removed;
- ``R2``: the share of the log-risk's variance that the components explain;
- the fitted weight of each component relative to age's (the truth: 1 everywhere);
- with ``--seeds k``, the same for the mean of the k seeds' standardised log-risks.

The projection is on the log scale, the truth's: ``predict`` returns a sum of cumulative
hazards, which under proportional hazards grows as ``exp`` of the log-hazard, so a linear
fit of the raw score would count that curvature as unexplained variance.

If ``C proj`` is near the oracle while ``C`` is not, the model has found every
component and what it lacks is precision: the rest of its risk is variation that the
outcome does not have.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from survbehrt.benchmark import BenchmarkSettings, make_folds, make_models, make_pretrainer
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.estimators import BEHRTSurvivalEstimator
from survbehrt.metrics import harrell_c


def projection(risk, components):
    """Least-squares fit of ``risk`` on the components (with an intercept): fit, R², weights."""
    design = np.column_stack([components, np.ones(len(risk))])
    coef = np.linalg.lstsq(design, risk, rcond=None)[0]
    fitted = design @ coef
    r2 = 1.0 - np.var(risk - fitted) / np.var(risk)
    return fitted, r2, coef[:-1]


def scores(y, risk, components):
    """Harrell's C of ``risk`` and of its projection, the projection's R² and weights."""
    fitted, r2, coef = projection(risk, components)
    return harrell_c(y, risk), harrell_c(y, fitted), r2, coef


def line(label, scored, names, oracle):
    c, c_proj, r2, coef = scored
    weights = " ".join(f"{n}={w / coef[0]:.2f}" for n, w in zip(names[1:], coef[1:]))
    return (f"{label:<18} C {c:.3f}  C proj {c_proj:.3f}  "
            f"oracle {oracle:.3f}  R2 {r2:.2f}  weights/age: {weights}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--recipe", choices=["benchmark", "defaults"], default="benchmark")
    parser.add_argument("--n-threads", type=int, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    X, y, true_risk, info = make_synthetic_ehr(4000, "sequence", random_state=0, return_info=True)
    names = list(info["components"].columns)
    components = info["components"].to_numpy()
    settings = BenchmarkSettings(models=["BEHRT-full"], n_threads=args.n_threads).resolved()
    folds = make_folds(X, y["event"], settings.folds, settings.random_state)
    summary = {"C": [], "C proj": [], "oracle": []}
    for fold in args.folds:
        train, test = folds[fold]
        y_te, comp_te = y[test], components[test]
        oracle = harrell_c(y_te, true_risk[test])
        pretrainer = None
        if args.recipe == "benchmark":
            pretrainer = make_pretrainer(settings).fit(X.iloc[train])
        risks = []
        for seed in range(args.seeds):
            if args.recipe == "benchmark":
                model = make_models(settings)["BEHRT-full"].set_params(
                    pretrained=pretrainer, random_state=seed)
            else:
                model = BEHRTSurvivalEstimator(random_state=seed, n_threads=args.n_threads)
            t0 = time.perf_counter()
            # predict() is a sum of cumulative hazards (> 0): its log is on the scale of
            # the generating log-hazard, which the components add up to
            risk = np.log(model.fit(X.iloc[train], y[train]).predict(X.iloc[test]))
            scored = scores(y_te, risk, comp_te)
            print(line(f"fold {fold} seed {seed}", scored, names, oracle)
                  + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
            risks.append((risk - risk.mean()) / risk.std())
        if args.seeds > 1:  # one seed: its scores are the fold's (C is scale-free)
            scored = scores(y_te, np.mean(risks, axis=0), comp_te)
            print(line(f"fold {fold} mean of {args.seeds}", scored, names, oracle), flush=True)
        summary["C"].append(scored[0])
        summary["C proj"].append(scored[1])
        summary["oracle"].append(oracle)
    c, proj, oracle = (np.mean(summary[k]) for k in ("C", "C proj", "oracle"))
    print(f"mean over folds {args.folds}: C {c:.3f}  C proj {proj:.3f}  oracle {oracle:.3f}  "
          f"gap {oracle - c:.3f} (of which the projection leaves {oracle - proj:.3f})")


if __name__ == "__main__":
    main()
