"""The competing-risks task of the benchmark: per-cause scores on the same kind of folds.

A dataset whose ``y`` has competing causes (``"synthetic-competing"``:
:func:`survbehrt.datasets.competing.make_synthetic_competing`) runs this task instead of
the single-outcome one; the choice follows the data, as scikit-survival's own functions
tell a competing-risks ``y`` by its integer event, so ``--dataset synthetic
synthetic-competing`` runs both tasks in one command.

Every model predicts each cause's cumulative incidence ``F_k(t | x)``; its value at
one horizon (the median time of the events of any cause, in the whole cohort) is the
risk of cause ``k`` in every metric: Wolbers' cause-specific concordance (Harrell-type,
and with inverse-probability-of-censoring weights; cases before the horizon), the
time-dependent AUC (Blanche; event-free controls) and the Brier score at the horizon,
and the calibration of ``F_k(horizon)`` against the Aalen–Johansen incidence in ten
risk groups, one test on the test folds pooled (as the single-outcome task pools its
D-calibration counts). The models are those of
:data:`~survbehrt.benchmark.competing_models.COMPETING_MODELS`; the ``oracle`` row
scores the generator's true incidence.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..competing_metrics import (
    cause_specific_auc,
    cause_specific_brier,
    cause_specific_c,
    cif_calibration_table,
    cif_calibration_test,
)
from ..data.competing import cause_names, check_competing_y
from .competing_models import AALEN_JOHANSEN, COMPETING_MODELS, CauseSpecificCox
from .data import load_benchmark_data, make_folds, subject_groups
from .models import fit_noting_warnings, make_pretrainer
from .output import _InterruptFlag, _machine, _prepare_output, write_csv
from .settings import CALIBRATION_GROUPS, ORACLE, BenchmarkSettings

__all__ = ["COMPETING_METRICS", "evaluation_horizon", "run_competing_benchmark", "score_causes",
           "summarize_competing"]

#: Per (model, cause, fold) columns of ``results.csv``, averaged in the summary.
COMPETING_METRICS = ("c_index", "c_ipcw", "auc", "brier", "fit_time", "predict_time")


def evaluation_horizon(y) -> float:
    """The time at which incidences are compared: the median time of the events (any cause).

    Parameters
    ----------
    y : structured ndarray
        Competing-risks outcome of the whole cohort.

    Returns
    -------
    float
    """
    event, time_, _ = check_competing_y(y)
    return float(np.median(time_[event > 0]))


def cif_at(model, X, horizon) -> np.ndarray:
    """``F_k(horizon | x_i)`` of a fitted model, shape ``(n_samples, K)``."""
    functions = np.asarray(model.predict_cumulative_incidence(X), dtype=object)
    return np.array([[float(np.ravel(fn(horizon))[0]) for fn in row] for row in functions])


def score_causes(cif, y_test, y_train, horizon) -> list[dict]:
    """Each cause's scores of one model on one test fold.

    Parameters
    ----------
    cif : ndarray, shape (n_samples, K)
        Predicted ``F_k(horizon | x_i)``.
    y_test, y_train : structured ndarray
        Competing-risks outcomes (the training one estimates the censoring weights).
    horizon : float

    Returns
    -------
    list of dict
        One per cause: ``cause`` (its name), ``c_index``, ``c_ipcw``, ``auc`` and
        ``brier``; NaN where the fold has no case of the cause before the horizon.
    """
    rows = []
    for k, name in enumerate(cause_names(y_test), start=1):
        risk = cif[:, k - 1]
        row = {"cause": name}
        try:
            row["c_index"] = cause_specific_c(y_test, risk, k, tau=horizon)
            row["c_ipcw"] = cause_specific_c(y_test, risk, k, y_train=y_train, tau=horizon)
        except ValueError:  # no case before the horizon: no comparable pair
            row["c_index"] = row["c_ipcw"] = np.nan
        row["auc"] = cause_specific_auc(y_train, y_test, risk, [horizon], k)[2]
        row["brier"] = float(cause_specific_brier(y_train, y_test, risk[:, None], [horizon], k)[1][0])
        rows.append(row)
    return rows


def _pooled_calibration_p(y, cif, horizon, cause) -> float:
    table = cif_calibration_table(y, cif, horizon, cause, n_groups=min(CALIBRATION_GROUPS, len(y)))
    return cif_calibration_test(table).p_value


def summarize_competing(rows: pd.DataFrame, pooled: dict | None = None, horizon=None) -> pd.DataFrame:
    """Mean and standard deviation over folds, one row per (model, cause).

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per (model, cause, fold), as ``results.csv``.
    pooled : dict, optional
        Model name -> (y, cif) of its test rows pooled over folds; gives
        ``calibration_pooled_p``.
    horizon : float, optional
        The horizon of ``pooled``'s incidences.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``model``, ``cause``), columns ``<metric>_mean`` / ``<metric>_sd``,
        ``calibration_pooled_p`` and ``folds``; causes in their order, models by their
        mean concordance within a cause.
    """
    metrics = [m for m in COMPETING_METRICS if m in rows]
    grouped = rows.groupby(["model", "cause"], sort=False)
    table = pd.concat([grouped[metrics].mean().add_suffix("_mean"),
                       grouped[metrics].std(ddof=1).add_suffix("_sd")], axis=1)
    causes = list(dict.fromkeys(rows["cause"]))
    pooled = pooled or {}
    table["calibration_pooled_p"] = [
        _pooled_calibration_p(pooled[m][0], pooled[m][1][:, causes.index(c)], horizon,
                              causes.index(c) + 1) if m in pooled else np.nan
        for m, c in table.index]
    table["folds"] = grouped["fold"].nunique()
    order = table.reset_index()
    order["_cause"] = order["cause"].map(causes.index)
    order = order.sort_values(["_cause", "c_index_mean"], ascending=[True, False])
    return table.loc[pd.MultiIndex.from_frame(order[["model", "cause"]])]


def _fit(model, X, y, groups, settings, label, log):
    """Fit a competing model; a cause-specific one notes each cause's fit warnings."""
    def noting(one, X, y_cause, groups, cause):
        fitted, note = fit_noting_warnings(one, X, y_cause, groups, settings.random_state,
                                           f"{label} [{cause}]")
        if note:
            log(note)
        return fitted

    if isinstance(model, CauseSpecificCox):
        return model.fit(X, y, groups, fit_one=noting)
    fitted, note = fit_noting_warnings(model, X, y, groups, settings.random_state, label)
    if note:
        log(note)
    return fitted


def _fold_predictions(names, settings, X_tr, y_tr, X_te, groups_tr, horizon, label, log,
                      interrupt):
    """Fit every model on a training fold; each one's test incidences at the horizon and times."""
    pretrainer, predictions = None, {}
    if any(name.startswith("BEHRT") for name in names):
        pretrainer, note = fit_noting_warnings(make_pretrainer(settings), X_tr, None, None,
                                               settings.random_state, f"{label} pretrainer")
        if note:
            log(note)
        interrupt.check()
    for name in names:
        model = COMPETING_MODELS[name](settings)
        if name.startswith("BEHRT"):
            model.set_params(pretrained=pretrainer)
        t0 = time.perf_counter()
        model = _fit(model, X_tr, y_tr, groups_tr, settings, f"{label} {name}", log)
        fit_time = time.perf_counter() - t0
        interrupt.check()  # a fit cut short by Ctrl-C is not reported
        t0 = time.perf_counter()
        predictions[name] = (cif_at(model, X_te, horizon), fit_time, time.perf_counter() - t0)
    return predictions


def _oracle_cif(log_hazards, horizon):
    from ..datasets.competing import true_cumulative_incidence

    return true_cumulative_incidence(log_hazards, [horizon])[:, :, 0]


def _write(out, rows, pooled, horizon, settings, started, complete):
    frame = pd.DataFrame(rows)
    write_csv(frame, out / "results.csv", index=False)
    summary = summarize_competing(frame, pooled, horizon) if len(frame) else pd.DataFrame()
    write_csv(summary, out / "summary.csv")
    payload = {"settings": asdict(settings), "task": "competing", "horizon": horizon,
               "machine": _machine(), "complete": complete,
               "wall_time_s": time.perf_counter() - started,
               "folds": frame.to_dict(orient="records"),
               "summary": json.loads(summary.reset_index().to_json(orient="records"))
               if len(summary) else []}
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=float))
    summary.attrs["horizon"] = horizon
    return summary


def run_competing_benchmark(settings: BenchmarkSettings, out="benchmark_results", quiet=False,
                            plots=True, log=None, overwrite=False):
    """Run the competing-risks task (see the module) and write its results to ``out``.

    Called by :func:`survbehrt.benchmark.run_benchmark` for a competing-risks dataset.
    Files: ``results.csv`` (one row per model, cause and fold), ``summary.csv`` and
    ``results.json``; no plots yet.

    Parameters
    ----------
    settings : BenchmarkSettings
        Resolved settings; models without a competing-risks counterpart are skipped
        (logged), the Aalen–Johansen row always runs.
    out, quiet, plots, log, overwrite
        As in :func:`~survbehrt.benchmark.run_benchmark` (``plots`` is not used yet).

    Returns
    -------
    pandas.DataFrame
        :func:`summarize_competing`'s table; ``attrs``: ``horizon``, ``complete``
        (False when interrupted by Ctrl-C: the finished folds only), ``files``.
    """
    from tqdm.auto import tqdm


    out = Path(out)
    _prepare_output(out, overwrite)
    log = log if log is not None else tqdm.write
    started = time.perf_counter()
    X, y, log_hazards = load_benchmark_data(settings.dataset, settings.n_patients,
                                            settings.random_state)
    event, _, _ = check_competing_y(y)
    horizon = evaluation_horizon(y)
    names = [m for m in settings.models if m in COMPETING_MODELS] + [AALEN_JOHANSEN]
    skipped = [m for m in settings.models if m not in COMPETING_MODELS]
    groups = subject_groups(X)
    folds = make_folds(X, event, settings.folds, settings.random_state)
    counts = ", ".join(f"{c} {int((event == k).sum())}" for k, c in enumerate(cause_names(y), 1))
    log(f"benchmark: {settings.dataset} (competing risks; events: {counts}), {len(X)} rows, "
        f"{settings.folds} folds, horizon {horizon:.2f} years, models {names}")
    if skipped:
        log(f"  no competing-risks counterpart (yet), skipped: {skipped}")
    rows, pooled, complete = [], {}, False
    interrupt = _InterruptFlag()
    try:
        interrupt.install()
        for fold, (tr, te) in enumerate(folds):
            predictions = _fold_predictions(names, settings, X.iloc[tr], y[tr], X.iloc[te],
                                            None if groups is None else groups[tr], horizon,
                                            f"fold {fold}", log, interrupt)
            if log_hazards is not None:
                predictions[ORACLE] = (_oracle_cif(log_hazards[te], horizon), 0.0, 0.0)
            for name, (cif, fit_time, predict_time) in predictions.items():
                scores = score_causes(cif, y[te], y[tr], horizon)
                rows += [{"model": name, "fold": fold, **s, "fit_time": fit_time,
                          "predict_time": predict_time} for s in scores]
                y_pool, cif_pool = pooled.get(name, (y[:0], cif[:0]))
                pooled[name] = (np.concatenate([y_pool, y[te]]), np.concatenate([cif_pool, cif]))
                log(f"  fold {fold} {name:<15} C " + "  ".join(
                    f"{s['cause']}={s['c_index']:.3f}" for s in scores) + f"  fit {fit_time:.1f}s")
            _write(out, rows, pooled, horizon, settings, started, complete=False)
        complete = True
    except KeyboardInterrupt:
        log("interrupted: the finished folds are saved.")
    finally:
        interrupt.uninstall()
    summary = _write(out, rows, pooled, horizon, settings, started, complete=complete)
    summary.attrs.update(complete=complete, files=["results.csv", "summary.csv", "results.json"])
    return summary
