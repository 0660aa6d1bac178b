"""Why the wide path's Cox start ranks below the count Cox on the Synthea sample: its penalties.

Run: ``python benchmarks/synthea_start.py [--seeds 0 1 2 3]`` (about 3 minutes on one core).

On the label-efficiency benchmark's patient-grouped folds of the Synthea sample (three
per seed, all training patients of a fold: about 530 patients and 33 deaths), it fits
and scores by Harrell's C on the fold's test rows:

- ``cox``: the benchmark's ``CoxPH`` (log code counts of codes in 5 rows or more, the
  index age and the log number of visits, standardised; one ridge penalty on all of them
  chosen from 1 to 10,000 by an inner 3-fold CV of C), and the chosen penalty;
- ``cox 1e4``: the same pipeline at the penalty 10,000 (no CV);
- ``ours 1e4``: :func:`survbehrt.cox_start.fit_wide_start` (the start's piecewise-constant
  hazard likelihood) on the same standardised columns, one penalty of 10,000 on all of
  them: the same model as ``cox 1e4`` but for the likelihood;
- ``ours walk 1``: the same, the one penalty chosen by the start's rule (the held-out
  likelihood of the patient-grouped folds);
- ``ours walk 2``: the same, with the start's two penalties (the codes; the age and the
  number of visits);
- ``start``: the estimator's own start (``max_epochs=0``, its own features and rule).

If ``ours 1e4`` matches ``cox 1e4``, the likelihood and the columns are not what costs
the start: the penalty rule is. It prints each fold's line, then the means and each
column's paired difference from ``cox``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.base import clone

from survbehrt.cox_start import fit_wide_start
from survbehrt.metrics import harrell_c
from survbehrt.survival import TimeGrid

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_efficiency as le  # noqa: E402  (the Synthea folds and the Cox recipe)
from wide_start import start_alone  # noqa: E402

COLUMNS = ("cox", "cox 1e4", "ours 1e4", "ours walk 1", "ours walk 2", "start")


def fold_scores(cox, X, y, groups, seed, X_test, y_test):
    """C of every column on one fold, and the count Cox's chosen penalty."""
    search = clone(cox).fit(X, y)
    fixed = clone(cox.estimator).set_params(coxphsurvivalanalysis__alpha=1e4).fit(X, y)
    # the count Cox's own standardised columns, for the start's likelihood
    prep = search.best_estimator_[:-1]
    train, test = prep.transform(X), prep.transform(X_test)
    names = list(prep.get_feature_names_out())
    dense = [names.index(n) for n in ("index_age", "n_visits")]
    codes = [j for j in range(train.shape[1]) if j not in dense]
    time, event = y["time"], y["event"]
    cuts = TimeGrid().fit(y).cuts_  # the estimator's default grid, on these rows
    one = dict(covariate_alphas=[1.0], min_rows=1)
    at_1e4 = fit_wide_start(sparse.csr_matrix(train), np.zeros((len(train), 0)), time, event,
                            cuts, alphas=[1e4], **one)
    walk_1 = fit_wide_start(sparse.csr_matrix(train), np.zeros((len(train), 0)), time, event,
                            cuts, groups=groups, random_state=seed, **one)
    walk_2 = fit_wide_start(sparse.csr_matrix(train[:, codes]), train[:, dense], time, event,
                            cuts, groups=groups, random_state=seed, min_rows=1)
    risks = [search.predict(X_test), fixed.predict(X_test), test @ at_1e4["beta"],
             test @ walk_1["beta"],
             test[:, codes] @ walk_2["beta"] + test[:, dense] @ walk_2["gamma"],
             start_alone(1.0, seed, X, y, groups).predict(X_test)]
    return ([harrell_c(y_test, np.asarray(r, dtype=float)) for r in risks],
            search.best_params_["coxphsurvivalanalysis__alpha"],
            (walk_1["alpha"], walk_2["alpha"], walk_2["covariate_alpha"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # Cox convergence notes of the penalty grids
    print("seed fold  " + "  ".join(f"{c:>11}" for c in COLUMNS)
          + "  penalties (cox; walk 1; walk 2 codes, dense)")
    rows = []
    for seed in args.seeds:
        run = le.Run(le.parse_args(["--datasets", "synthea-sample", "--seeds", str(seed),
                                    "--recipes", "cox"]))
        cox = run.recipes(seed, {})["cox"]
        for fold, _, labelled, X_test, y_test, _ in le.synthea_runs(run, "synthea-sample", seed):
            _, X, y, groups = labelled[-1]
            c, chosen, walked = fold_scores(cox, X, y, groups, seed, X_test, y_test)
            rows.append(c)
            print(f"{seed:>4} {fold:>4}  " + "  ".join(f"{v:11.3f}" for v in c)
                  + f"  {chosen:g}; {walked[0]:.0f}; {walked[1]:.0f}, {walked[2]:.0f}",
                  flush=True)
    c = np.array(rows)
    print(f"mean over {len(c)} folds: " + ", ".join(
        f"{name} {m:.3f}" for name, m in zip(COLUMNS, c.mean(axis=0))))
    diff = c - c[:, :1]
    print("minus cox, paired (mean; folds above): " + ", ".join(
        f"{name} {d.mean():+.3f} ({(d > 0).sum()}/{len(d)})"
        for name, d in zip(COLUMNS[1:], diff[:, 1:].T)))


if __name__ == "__main__":
    main()
