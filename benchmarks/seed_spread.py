"""How much one BEHRT fit varies with its seed, and what the ranking weight trades.

Run: ``python benchmarks/seed_spread.py [--n-train 3200] [--seeds 5] [--rank-weights 0.2 1 10]``.

One pretrainer is fitted on a training cohort of ``make_synthetic_ehr``; then, for every
ranking weight of the hybrid loss, the benchmark's BEHRT-full recipe (with ``loss="hybrid"``;
the benchmark's own is ``"nll"``) is fine-tuned with
several ``random_state`` values (which change the validation split, the initialisation of
the head, dropout and the batch order: nothing else). Each fit is scored on an
independent test cohort of 5,000 patients (another seed of the same population), so the
spread printed is the model's, not the test set's. It prints Harrell's C, the integrated
Brier score and the D-calibration p-value of every fit; per weight the mean and sd of C
and the C of the ensemble (mean of the fits' standardised risk scores); and the oracle.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sksurv.metrics import concordance_index_censored

from survbehrt.benchmark import BenchmarkSettings, make_models, make_pretrainer
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.metrics import evaluate


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=3200)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rank-weights", type=float, nargs="+", default=[0.2, 1.0, 10.0])
    parser.add_argument("--scenario", default="sequence", choices=["sequence", "counts"])
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    X, y, _ = make_synthetic_ehr(args.n_train, args.scenario, random_state=0)
    X_test, y_test, risk_test = make_synthetic_ehr(args.n_test, args.scenario, random_state=999)

    def harrell(risk):
        return concordance_index_censored(y_test["event"], y_test["time"], risk)[0]

    print(f"{args.scenario}: train {args.n_train} patients, independent test {args.n_test}; "
          f"oracle C = {harrell(risk_test):.3f}")
    # the benchmark's own recipes, so that the spread is that of its BEHRT-full row
    settings = BenchmarkSettings(models=["BEHRT-full"]).resolved()
    recipe = make_models(settings)["BEHRT-full"]
    t0 = time.perf_counter()
    pretrainer = make_pretrainer(settings).fit(X)
    print(f"pretrainer fitted in {time.perf_counter() - t0:.0f} s")
    print(f"{'rank_weight':>11} {'seed':>4} {'Harrell C':>9} {'IBS':>6} {'D-cal p':>7} "
          f"{'epochs':>6} {'fit s':>6}")
    for weight in args.rank_weights:
        c_values, standardised = [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            est = clone(recipe).set_params(
                # the recipe's loss is "nll" (the benchmark's default): the weight only
                # acts through the hybrid loss
                loss="hybrid", rank_weight=weight, pretrained=pretrainer, random_state=seed
            ).fit(X, y)
            fit_s = time.perf_counter() - t0
            risk = est.predict(X_test)
            metrics = evaluate(est, X_test, y_test, y)
            c_values.append(metrics["harrell_c"])
            standardised.append((risk - risk.mean()) / risk.std())
            print(f"{weight:>11g} {seed:>4} {metrics['harrell_c']:>9.3f} "
                  f"{metrics['integrated_brier']:>6.3f} {metrics['d_calibration_p']:>7.3f} "
                  f"{len(est.history_):>6} {fit_s:>6.1f}")
        print(f"{weight:>11g} mean C {np.mean(c_values):.3f}, sd {np.std(c_values, ddof=1):.3f}, "
              f"range {np.ptp(c_values):.3f}; ensemble of the {args.seeds} fits "
              f"C {harrell(np.mean(standardised, axis=0)):.3f}")


if __name__ == "__main__":
    main()
