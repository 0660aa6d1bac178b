"""How the gap between BEHRT and the oracle shrinks with the number of training patients.

Run: ``python benchmarks/learning_curve.py [--n-train 1600 3200 6400 12800]
[--models BEHRT-full CoxPH] [--scenario sequence]``.

For each training size a cohort of ``make_synthetic_ehr`` is drawn (seed 0: the smaller
cohorts are not subsets of the larger ones, but they come from one population), the
benchmark's own recipes are fitted on it (``survbehrt.benchmark.make_models``; the BEHRT
variants fine-tune one ``make_pretrainer`` pretrainer fitted on the same training cohort),
and every model is scored on an independent test cohort of 5,000 patients (seed 999).
It prints Harrell's C of each model, its gap to the oracle's C on the same test cohort,
and the fit time (the pretrainer's time is printed on its own line).
"""

import argparse
import time
import warnings

from sksurv.metrics import concordance_index_censored

from survbehrt.benchmark import BEHRT_MODELS, BenchmarkSettings, make_models, make_pretrainer
from survbehrt.datasets import make_synthetic_ehr


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, nargs="+", default=[1600, 3200, 6400, 12800])
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--models", nargs="+", default=["BEHRT-full", "CoxPH"])
    parser.add_argument("--scenario", default="sequence", choices=["sequence", "counts"])
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    X_test, y_test, risk_test = make_synthetic_ehr(args.n_test, args.scenario, random_state=999)

    def harrell(risk):
        return concordance_index_censored(y_test["event"], y_test["time"], risk)[0]

    oracle = harrell(risk_test)
    print(f"{args.scenario}: independent test cohort of {args.n_test}; oracle C = {oracle:.3f}")
    print(f"{'n_train':>7} {'model':<13} {'Harrell C':>9} {'gap':>6} {'fit s':>6}")
    settings = BenchmarkSettings(models=args.models).resolved()
    for n_train in args.n_train:
        X, y, _ = make_synthetic_ehr(n_train, args.scenario, random_state=0)
        pretrainer = None
        if set(args.models) & set(BEHRT_MODELS):
            t0 = time.perf_counter()
            pretrainer = make_pretrainer(settings).fit(X)
            print(f"{n_train:>7} {'(pretrainer)':<13} {'':>9} {'':>6} "
                  f"{time.perf_counter() - t0:>6.1f}", flush=True)
        for name, model in make_models(settings).items():
            if name in BEHRT_MODELS:
                model.set_params(pretrained=pretrainer)
            t0 = time.perf_counter()
            model.fit(X, y)
            fit_s = time.perf_counter() - t0
            c = harrell(model.predict(X_test))
            print(f"{n_train:>7} {name:<13} {c:>9.3f} {oracle - c:>6.3f} {fit_s:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
