"""What each modelling piece buys, on every dataset: a paired cross-validated ablation.

For each dataset (the synthetic cohorts ``synthetic`` (sequence), ``synthetic-counts``,
``synthetic-latent``, ``synthetic-synonyms`` and the vendored Synthea sample, loaded by
name as the benchmark loads them) the same folds (patient-grouped for Synthea) are used for every model:
Cox on log code counts + age (ridge penalty chosen by inner CV, as in the benchmark), Cox
on age alone, and BEHRT variants given as JSON parameter overrides of
``BEHRTSurvivalEstimator()``'s defaults. Prints Harrell's C (mean ± sd over folds), the
paired difference to Cox (mean ± sd), the IBS, and on the pooled test folds the
D-calibration p-value and the calibration slope (:func:`survbehrt.recalibration.fit_calibration`:
1 calibrated, below 1 hazards too spread).

Run (2 cores; a few minutes per dataset and variant)::

    python benchmarks/ablation.py --datasets synthetic synthetic-counts synthea-sample \\
        --variant defaults='{}' --variant no-wide='{"wide": null}'

A variant ``start='{"max_epochs": 0}'`` scores the starting point alone (the wide path's
Cox fit, before the transformer trains).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.benchmark import load_benchmark_data, make_folds, subject_groups
from survbehrt.data.features import CodeCountTransformer
from survbehrt.metrics import d_calibration, default_time_grid, harrell_c, integrated_brier
from survbehrt.recalibration import fit_calibration


def load(name, n_patients, seed):
    """X, y, groups of a dataset (groups None when every row is its own patient)."""
    X, y, _ = load_benchmark_data(name, n_patients, seed)
    return X, y, subject_groups(X)


def _age(X):
    ages = X["index_age"] if "index_age" in X else X["ages"].map(lambda a: a[-1])
    return np.asarray(ages, dtype=float)[:, None]


def baselines(seed):
    cox = GridSearchCV(
        make_pipeline(CodeCountTransformer(min_frequency=5), StandardScaler(),
                      CoxPHSurvivalAnalysis()),
        {"coxphsurvivalanalysis__alpha": [1.0, 10.0, 100.0, 1000.0, 10000.0]},
        cv=KFold(3, shuffle=True, random_state=seed),
    )
    age = make_pipeline(FunctionTransformer(_age), StandardScaler(), CoxPHSurvivalAnalysis())
    return {"Cox counts+age": cox, "Cox age": age}


def score(model, X_te, y_te, y_tr):
    risk = model.predict(X_te)
    row = {"c": harrell_c(y_te, risk)}
    if isinstance(model, BEHRTSurvivalEstimator):
        funcs = model.predict_survival_function(X_te)
        t = y_te[y_te.dtype.names[1]]
        times = default_time_grid(y_te, y_tr)
        times = times[times <= min(f.domain[1] for f in funcs)]
        if times.shape[0] >= 2:
            row["ibs"] = integrated_brier(y_tr, y_te, np.vstack([f(times) for f in funcs]), times)
        row["s_own"] = np.array([float(f(min(tt, f.domain[1]))) for f, tt in zip(funcs, t)])
        # for the pooled calibration slope: events within the curves' domain, the
        # cumulative hazard at the row's own time, the log risk score
        end = np.array([f.domain[1] for f in funcs])
        row["cal"] = (y_te[y_te.dtype.names[0]] & (t <= end),
                      -np.log(np.clip(row["s_own"], 1e-300, None)), np.log(risk))
    return row


def main(argv=None):
    warnings.simplefilter("ignore")  # Cox convergence chatter on thousands of sparse counts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["synthetic", "synthetic-counts", "synthetic-latent",
                                 "synthetic-synonyms", "synthea-sample"])
    parser.add_argument("--variant", action="append", default=[],
                        help="name='{json overrides}' (repeatable); default: defaults='{}'")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--n-patients", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-threads", type=int, default=2)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--csv", help="write the per-fold rows here (rewritten after each model)")
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in (args.variant or ["defaults={}"]))
    variants = {k: json.loads(v) for k, v in variants.items()}

    rows = []
    for name in args.datasets:
        X, y, groups = load(name, args.n_patients, args.seed)
        # the benchmark's folds: stratified, grouped by patient when rows share one
        splits = make_folds(X, y[y.dtype.names[0]], args.folds, args.seed)
        n_pat = len(set(groups)) if groups is not None else len(X)
        print(f"== {name}: {len(X)} rows, {n_pat} patients, {int(y[y.dtype.names[0]].sum())} "
              f"events, {args.folds} folds", flush=True)
        models = {} if args.no_baselines else baselines(args.seed)
        for vname, params in variants.items():
            models[f"BEHRT {vname}"] = BEHRTSurvivalEstimator(
                random_state=args.seed, n_threads=args.n_threads, **params)
        for mname, proto in models.items():
            t0 = time.perf_counter()
            s_own, y_own, cal = [], [], []
            for k, (tr, te) in enumerate(splits):
                model = clone(proto)
                if isinstance(model, BEHRTSurvivalEstimator) and groups is not None:
                    model.fit(X.iloc[tr], y[tr], groups=groups[tr])
                else:
                    model.fit(X.iloc[tr], y[tr])
                r = score(model, X.iloc[te], y[te], y[tr])
                if "s_own" in r:
                    s_own.append(r.pop("s_own"))
                    y_own.append(y[te])
                    cal.append(r.pop("cal"))
                rows.append({"dataset": name, "model": mname, "fold": k, **r})
            dcal = (d_calibration(np.concatenate(y_own), np.concatenate(s_own)).p_value
                    if s_own else np.nan)
            rows[-1]["dcal_pooled"] = dcal
            rows[-1]["slope_pooled"] = (
                fit_calibration(*(np.concatenate(part) for part in zip(*cal))).slope
                if cal else np.nan)
            print(f"   {mname:28s} done in {time.perf_counter() - t0:6.1f} s", flush=True)
            if args.csv:
                pd.DataFrame(rows).to_csv(args.csv, index=False)
    table = pd.DataFrame(rows)
    print()
    header = (f"{'dataset':19s} {'model':28s} {'Harrell C':>15s} {'vs Cox (paired)':>17s} "
              f"{'IBS':>6s} {'D-cal p':>8s} {'slope':>6s}")
    print(header)
    for (dname, mname), g in table.groupby(["dataset", "model"], sort=False):
        cox = table[(table.dataset == dname) & (table.model == "Cox counts+age")]
        diff = ""
        if len(cox) and mname != "Cox counts+age":
            d = g["c"].to_numpy() - cox.sort_values("fold")["c"].to_numpy()
            diff = f"{d.mean():+.3f} ± {d.std(ddof=1):.3f}"
        ibs = f"{g['ibs'].mean():.3f}" if "ibs" in g and g["ibs"].notna().any() else "—"
        dcal = g["dcal_pooled"].dropna()
        dcal = f"{dcal.iloc[0]:.3f}" if len(dcal) else "—"
        slope = g["slope_pooled"].dropna() if "slope_pooled" in g else ()
        slope = f"{slope.iloc[0]:.2f}" if len(slope) else "—"
        print(f"{dname:19s} {mname:28s} {g['c'].mean():.3f} ± {g['c'].std(ddof=1):.3f} "
              f"{diff:>17s} {ibs:>6s} {dcal:>8s} {slope:>6s}")


if __name__ == "__main__":
    main()
