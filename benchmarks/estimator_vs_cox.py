"""BEHRTSurvivalEstimator with default settings against a count-based Cox model, same split.

Run: ``python benchmarks/estimator_vs_cox.py [--n-patients 3000]``. Prints both test C-indices
(Harrell) and the oracle's, on ``make_synthetic_ehr`` (80/20 stratified split).
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.data.features import CodeCountTransformer
from survbehrt.datasets import make_synthetic_ehr


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-patients", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    X, y, risk = make_synthetic_ehr(n_patients=args.n_patients, random_state=args.seed)
    tr, te = train_test_split(np.arange(len(X)), test_size=0.2, random_state=args.seed,
                              stratify=y["event"])

    def c(r):
        return concordance_index_censored(y["event"][te], y["time"][te], r)[0]

    t0 = time.perf_counter()
    cox = make_pipeline(CodeCountTransformer(min_frequency=5), StandardScaler(),
                        CoxPHSurvivalAnalysis(alpha=100.0)).fit(X.iloc[tr], y[tr])
    cox_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    est = BEHRTSurvivalEstimator(random_state=args.seed).fit(X.iloc[tr], y[tr])
    est_s = time.perf_counter() - t0
    print(f"patients {len(X)} (train {len(tr)}, test {len(te)}), events {y['event'].mean():.0%}")
    print(f"oracle (true risk)             C = {c(risk[te]):.3f}")
    print(f"Cox on log code counts + age   C = {c(cox.predict(X.iloc[te])):.3f}   fit {cox_s:.1f} s")
    print(f"BEHRTSurvivalEstimator()       C = {est.score(X.iloc[te], y[te]):.3f}   fit {est_s:.1f} s, "
          f"{len(est.history_)} epochs")


if __name__ == "__main__":
    main()
