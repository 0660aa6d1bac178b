"""Bootstrap intervals on the benchmark's Harrell C, and paired differences to the best count baseline.

Every fold has its own fitted model, and so its own risk scale: a Cox model's linear
predictor in one fold and a forest's cumulative hazard in the next are not on one
scale, and neither are two folds of the same model. Harrell's C on the test
predictions pooled over folds would compare rows of different folds, i.e. scores of
different models. The C reported here counts only pairs within a fold: it is the mean
over folds of each test fold's Harrell C, the ``Harrell C`` mean of the summary table.

Its interval is a stratified bootstrap: each resample draws, within every test fold,
as many rows as the fold has (whole subjects, when rows share one: the Synthea sample's
landmarks; folds are grouped by subject, so a subject lies in one fold), computes each
fold's C on its draw and averages over folds. The folds' sizes stay fixed, as they are
in the estimate. Every model is scored on the same resamples, so the difference of two
models' C (each a mean over folds) gets a paired interval. The interval is conditional
on the fitted models: refitting is not resampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..intervals import _harrell_weighted, _result, bootstrap_counts

#: The count baselines (models on code counts + age) that the reference is chosen from.
COUNT_BASELINES = ("CoxPH", "RSF", "GBS")
#: Columns :func:`c_intervals` adds to the summary.
INTERVAL_COLUMNS = ("harrell_c_estimate", "harrell_c_lower", "harrell_c_upper", "reference", "harrell_c_diff",
                    "harrell_c_diff_lower", "harrell_c_diff_upper")


def stratified_counts(folds, groups=None, n_boot=1000, random_state=None):
    """The resamples of a stratified (within-fold) bootstrap, one count matrix per fold.

    Parameters
    ----------
    folds : array-like of shape (n_rows,)
        Test fold of each row.
    groups : array-like of shape (n_rows,), optional
        Subject of each row; a drawn subject brings all its rows (of its fold).
    n_boot : int, default=1000
    random_state : int or numpy.random.Generator, optional

    Returns
    -------
    list of (ndarray, ndarray)
        Per fold (sorted): the fold's row positions and its counts
        ``(n_boot, n_fold_rows)``, as :func:`survbehrt.intervals.bootstrap_counts`.
    """
    folds = np.asarray(folds)
    rng = np.random.default_rng(random_state)
    out = []
    for fold in np.unique(folds):
        rows = np.flatnonzero(folds == fold)
        fold_groups = None if groups is None else np.asarray(groups)[rows]
        out.append((rows, bootstrap_counts(rows.shape[0], n_boot, fold_groups, rng)))
    return out


def fold_mean_c(event, time, risks, strata):
    """Mean over folds of the within-fold Harrell C, on the data and on every resample.

    Parameters
    ----------
    event, time : ndarray of shape (n_rows,)
    risks : list of ndarray of shape (n_rows,)
        One risk score per model, every model on the same rows.
    strata : list of (ndarray, ndarray)
        From :func:`stratified_counts`.

    Returns
    -------
    estimates : ndarray of shape (n_models,)
    replicates : ndarray of shape (n_models, n_boot)
        NaN where a fold of the resample has no comparable pair.
    """
    n_boot = strata[0][1].shape[0]
    estimates = np.zeros(len(risks))
    replicates = np.zeros((len(risks), n_boot))
    for rows, counts in strata:
        e, t = event[rows], time[rows]
        for k, risk in enumerate(risks):
            estimates[k] += _harrell_weighted(e, t, risk[rows], np.ones((1, rows.shape[0])))[0]
            replicates[k] += _harrell_weighted(e, t, risk[rows], counts)
    return estimates / len(strata), replicates / len(strata)


def reference_model(summary: pd.DataFrame):
    """The best count baseline: the one of ``COUNT_BASELINES`` with the highest mean fold C.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`~survbehrt.benchmark.summarize` (``harrell_c_mean``).

    Returns
    -------
    str or None
        None when no count baseline ran.
    """
    present = [name for name in COUNT_BASELINES if name in summary.index]
    if not present:
        return None
    return str(summary.loc[present, "harrell_c_mean"].idxmax())


def c_intervals(predictions: pd.DataFrame, reference=None, n_boot=1000, level=0.95,
                random_state=0) -> pd.DataFrame:
    """Each model's mean fold C with its stratified bootstrap interval, and its paired difference.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``predictions.csv`` of a run: ``model, fold, row, event, time, risk`` and, when
        rows share a subject, ``group``.
    reference : str, optional
        The model the differences are taken to (``model - reference``); none without it.
    n_boot : int, default=1000
    level : float, default=0.95
    random_state : int, default=0
        The same seed gives every model the same resamples.

    Returns
    -------
    pandas.DataFrame
        Indexed by model: ``harrell_c_estimate`` (the mean fold C over the folds that
        every model finished: all of them but in an interrupted run), ``harrell_c_lower`` /
        ``harrell_c_upper``, ``reference``, ``harrell_c_diff`` and its
        ``harrell_c_diff_lower`` / ``harrell_c_diff_upper`` (NaN without a reference).

    Raises
    ------
    ValueError
        If the models were not scored on the same rows of the same folds.
    """
    models = list(dict.fromkeys(predictions["model"]))
    # an interrupted run's last fold may lack some models: only the folds all have
    per_fold = predictions.groupby("fold")["model"].nunique()
    predictions = predictions[predictions["fold"].isin(per_fold.index[per_fold == len(models)])]
    tables = {name: part.sort_values(["fold", "row"]) for name, part in predictions.groupby("model")}
    first = tables[models[0]]
    for name in models[1:]:
        if not np.array_equal(tables[name][["fold", "row"]].to_numpy(),
                              first[["fold", "row"]].to_numpy()):
            raise ValueError(f"model {name!r} was not scored on the same rows and folds as "
                             f"{models[0]!r}")
    groups = first["group"].to_numpy() if "group" in first else None
    strata = stratified_counts(first["fold"].to_numpy(), groups, n_boot, random_state)
    risks = [tables[name]["risk"].to_numpy(dtype=float) for name in models]
    estimates, reps = fold_mean_c(first["event"].to_numpy(dtype=bool),
                                  first["time"].to_numpy(dtype=float), risks, strata)
    out = pd.DataFrame(index=pd.Index(models, name="model"))
    out["harrell_c_estimate"] = estimates
    results = [_result("harrell_c", est, rep, level) for est, rep in zip(estimates, reps)]
    out["harrell_c_lower"] = [r.lower for r in results]
    out["harrell_c_upper"] = [r.upper for r in results]
    out["reference"] = reference
    out["harrell_c_diff"] = out["harrell_c_diff_lower"] = out["harrell_c_diff_upper"] = np.nan
    if reference is not None:
        ref = models.index(reference)
        for k, name in enumerate(models):
            diff = _result("harrell_c difference", estimates[k] - estimates[ref], reps[k] - reps[ref],
                           level)
            out.loc[name, ["harrell_c_diff", "harrell_c_diff_lower", "harrell_c_diff_upper"]] = (
                diff.estimate, diff.lower, diff.upper)
    return out
