"""One benchmark run: folds, fits, scores and the files written after every fold."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from .data import load_benchmark_data, make_folds, subject_groups
from .models import _evaluate, _oracle_row, fit_noting_warnings, make_models, make_pretrainer
from .output import _InterruptFlag, _machine, _prepare_output, write_csv
from .report import _plot_cindex, _plots, summarize
from .settings import COMPETING, METRICS, ORACLE, OUTPUT_FILES, BenchmarkSettings


def _prediction_rows(name, fold, test, y_test, risk, groups) -> pd.DataFrame:
    """One model's test-fold risks beside each row's outcome (and subject, when rows share one)."""
    event_name, time_name = y_test.dtype.names
    frame = pd.DataFrame({"model": name, "fold": fold, "row": test,
                          "event": y_test[event_name].astype(bool),
                          "time": y_test[time_name].astype(float), "risk": risk})
    if groups is not None:
        frame["group"] = np.asarray(groups)[test]
    return frame


def _write(out: Path, rows: list, dcal_counts: dict, settings: BenchmarkSettings, started: float,
           complete: bool, predictions: list, intervals: bool = False):
    frame = pd.DataFrame(rows)
    write_csv(frame, out / "results.csv", index=False)
    pooled = pd.concat(predictions, ignore_index=True) if predictions else None
    if pooled is not None:
        write_csv(pooled, out / "predictions.csv", index=False)
    # the bootstrap once, at the end (not after every fold)
    summary = (summarize(frame, dcal_counts, pooled if intervals else None) if len(frame)
               else pd.DataFrame())
    write_csv(summary, out / "summary.csv", index_label="model")
    payload = {
        "settings": asdict(settings),
        "machine": _machine(),
        "complete": complete,
        "wall_time_s": time.perf_counter() - started,
        "folds": frame.to_dict(orient="records"),
        "summary": json.loads(summary.reset_index().to_json(orient="records")) if len(summary) else [],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=float))
    return summary


@contextlib.contextmanager
def _warnings_above_bars(enabled: bool):
    """Print warnings with ``tqdm.write`` (above the progress bars) instead of through them."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = warnings.formatwarning(message, category, filename, lineno, line)
        tqdm.write(text.rstrip(), file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def run_benchmark(settings: BenchmarkSettings | None = None, out="benchmark_results", quiet=False,
                  plots=True, log=None, overwrite=False):
    """Run the benchmark and write its results and plots to ``out``.

    A competing-risks dataset (``"synthetic-competing"``) runs the competing-risks task
    instead (:func:`survbehrt.benchmark.competing.run_competing_benchmark`: one row per
    model, cause and fold).

    Files: ``results.csv`` (one row per model and fold), ``summary.csv`` (mean and
    standard deviation over folds of every metric, the pooled D-calibration test, the
    mean fold C's 95 % bootstrap interval and the paired difference to the best count
    baseline: :mod:`survbehrt.benchmark.uncertainty`), ``results.json`` (settings,
    machine, folds, summary), ``predictions.csv`` (every model's risk on every test row,
    with the row's fold, event, time and subject) and, with matplotlib,
    ``cindex.png``, ``calibration.png``, ``survival_curves.png``, ``auc.png`` and
    ``brier.png``. ``summary.attrs["files"]`` lists the files written.

    Parameters
    ----------
    settings : BenchmarkSettings, optional
    out : str or path-like, default="benchmark_results"
        Output folder; it must not exist or be empty unless ``overwrite``.
    quiet : bool, default=False
        No progress bars (without it they draw only when stderr is a terminal, so a
        log file holds no cursor codes).
    plots : bool, default=True
        Write the PNG plots (when matplotlib is installed).
    log : callable, optional
        Where progress lines go (one string per call); default ``tqdm.write``, which
        prints above the progress bars instead of tearing them.
    overwrite : bool, default=False
        Write into a non-empty ``out`` (the files of an earlier run are replaced;
        other files are left alone).

    Returns
    -------
    pandas.DataFrame
        The summary (see :func:`summarize`); ``summary.attrs["complete"]`` is False when
        the run was interrupted (Ctrl-C) and holds only the finished folds.

    Raises
    ------
    FileExistsError
        If ``out`` is not empty and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    settings = (settings or BenchmarkSettings()).resolved()
    if settings.dataset in COMPETING:
        from .competing import run_competing_benchmark

        return run_competing_benchmark(settings, out=out, quiet=quiet, plots=plots, log=log,
                                       overwrite=overwrite)
    out = Path(out)
    _prepare_output(out, overwrite)
    log = log if log is not None else tqdm.write
    started = time.perf_counter()
    X, y, true_risk = load_benchmark_data(settings.dataset, settings.n_patients, settings.random_state)
    event = y[y.dtype.names[0]]
    models = make_models(settings)
    needs_pretrainer = any(name.startswith("BEHRT") for name in models)
    groups = subject_groups(X)
    folds = make_folds(X, event, settings.folds, settings.random_state)
    rows, fitted, curves, dcal_counts, predictions = [], {}, {}, {}, []
    written = {"results.csv", "summary.csv", "results.json"}
    size = f"{len(X)} patients" if groups is None else (
        f"{len(X)} rows of {len(pd.unique(groups))} subjects (folds grouped by subject)")
    log(f"benchmark: {settings.dataset}, {size}, {event.mean():.0%} events, "
        f"{settings.folds} folds, models {list(models)}")
    complete = False
    interrupt = _InterruptFlag()
    with _warnings_above_bars(not quiet):  # warnings must not tear the bars either
        try:
            interrupt.install()
            # disable=None: tqdm draws only on a terminal (no cursor codes in a log file)
            bars = dict(disable=True if quiet else None)
            fold_bar = tqdm(folds, desc="folds", **bars)
            for fold, (tr, te) in enumerate(fold_bar):
                X_tr, X_te, y_tr, y_te = X.iloc[tr], X.iloc[te], y[tr], y[te]
                pretrainer, pretrain_time = None, 0.0
                if needs_pretrainer:
                    t0 = time.perf_counter()
                    pretrainer, note = fit_noting_warnings(make_pretrainer(settings), X_tr, None, None,
                                                           settings.random_state, f"fold {fold} pretrainer")
                    if note:
                        log(note)
                    pretrain_time = time.perf_counter() - t0
                    interrupt.check()
                for name, template in tqdm(models.items(), desc=f"fold {fold}", leave=False, **bars):
                    model = clone(template)
                    if name.startswith("BEHRT"):
                        model.set_params(pretrained=pretrainer)
                    t0 = time.perf_counter()
                    model, note = fit_noting_warnings(
                        model, X_tr, y_tr, None if groups is None else groups[tr],
                        settings.random_state, f"fold {fold} {name}")
                    fit_time = time.perf_counter() - t0
                    interrupt.check()  # a fit cut short by Ctrl-C is not reported
                    # a tuned baseline is a search: evaluate its refitted best model
                    model = getattr(model, "best_estimator_", model)
                    result, predict_time, risk = _evaluate(model, X_te, y_te, y_tr)
                    predictions.append(_prediction_rows(name, fold, te, y_te, risk, groups))
                    rows.append({"model": name, "fold": fold,
                                 **{m: result[m] for m in METRICS if m in result},
                                 "fit_time": fit_time, "predict_time": predict_time,
                                 "pretrain_time": pretrain_time if name.startswith("BEHRT") else 0.0})
                    dcal_counts.setdefault(name, []).append(result["d_calibration_counts"])
                    if fold == 0:
                        fitted[name], curves[name] = model, result
                    log(f"  fold {fold} {name:<13} C={result['harrell_c']:.3f}  fit {fit_time:.1f}s")
                    if note:
                        log(note)
                if true_risk is not None:
                    rows.append({"model": ORACLE, "fold": fold, **_oracle_row(true_risk[te], y_te, y_tr)})
                    predictions.append(_prediction_rows(ORACLE, fold, te, y_te, true_risk[te], groups))
                if fold == 0 and plots:
                    written |= _plots(out, fitted, curves, X_te, y_te)
                _write(out, rows, dcal_counts, settings, started, complete=False, predictions=predictions)
            complete = True
        except KeyboardInterrupt:
            log("interrupted: the finished folds are saved.")
        finally:
            interrupt.uninstall()
    summary = _write(out, rows, dcal_counts, settings, started, complete=complete,
                     predictions=predictions, intervals=True)
    if predictions:
        written.add("predictions.csv")
    if plots and len(summary):
        written |= _plot_cindex(out, pd.DataFrame(rows))
    summary.attrs["complete"] = complete
    summary.attrs["files"] = [name for name in OUTPUT_FILES if name in written]
    return summary
