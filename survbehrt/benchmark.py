"""The benchmark: BEHRT survival models against Cox / RSF / boosting, on the same folds.

``survbehrt benchmark`` (see :mod:`survbehrt.cli`) calls :func:`run_benchmark`. Every
model sees the same stratified folds, grouped by subject where a subject has several rows
(the Synthea sample's landmarks); baselines use log code counts + age (+ number of
visits) from :class:`~survbehrt.data.features.CodeCountTransformer`, or the index age
alone (``Cox-age``); the BEHRT variants
are fine-tuned from one :class:`~survbehrt.BEHRTPretrainer` fitted on the training fold's
histories; the ``oracle`` row scores the generating model's true risk (synthetic data).
Results are written after every fold, so an interrupted run keeps its finished folds.

The D-calibration column is one test per model on the bin counts pooled over the test
folds (each fold's counts from that fold's model): under calibration every fold's
``S_i(T_i)`` is uniform, so the pooled counts are too, and one test on all test patients
has more power than any fold's. A mean of per-fold p-values would mean nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

__all__ = [
    "BASELINES",
    "BEHRT_MODELS",
    "OUTPUT_FILES",
    "DATASETS",
    "BenchmarkSettings",
    "check_group_split",
    "format_table",
    "load_benchmark_data",
    "make_folds",
    "make_models",
    "run_benchmark",
    "subject_groups",
    "summarize",
]

BASELINES = ("CoxPH", "Cox-age", "RSF", "GBS")
DATASETS = ("synthetic", "synthetic-counts", "synthea-sample")
BEHRT_MODELS = ("BEHRT-full", "BEHRT-lora", "BEHRT-frozen")
ORACLE = "oracle"
METRICS = ("harrell_c", "uno_c", "integrated_brier", "mean_auc", "d_calibration_p",
           "fit_time", "predict_time")
#: Per-fold columns averaged in the summary (a mean of p-values would mean nothing: the
#: D-calibration test is pooled over folds instead, see the module docstring).
SUMMARY_METRICS = ("harrell_c", "uno_c", "integrated_brier", "mean_auc", "fit_time",
                   "predict_time", "pretrain_time")
#: Every file a run may write into its output folder.
OUTPUT_FILES = ("results.csv", "summary.csv", "results.json", "cindex.png", "calibration.png",
                "survival_curves.png", "auc.png", "brier.png")


@dataclass
class BenchmarkSettings:
    """What one benchmark run does (the CLI's options).

    Parameters
    ----------
    dataset : str, default="synthetic"
        ``"synthetic"`` (risk depends on order, recency and tempo), ``"synthetic-counts"``
        (risk from code counts only), ``"synthea-sample"`` (the vendored Synthea sample:
        death within 10 years of a landmark, several landmarks per patient; see
        :func:`survbehrt.datasets.load_synthea_sample`) or a path to a folder holding
        ``events`` and ``labels`` tables (parquet or CSV; see :func:`load_benchmark_data`).
    n_patients : int, default=4000
        Size of a synthetic cohort.
    folds : int, default=5
    models : list of str, optional
        Subset of ``BASELINES + BEHRT_MODELS`` (default all); the oracle row is added
        whenever the true risk is known.
    loss : {"nll", "ranking", "hybrid"}, default="nll"
        Loss of the BEHRT variants.
    epochs : int, optional
        Fine-tuning epochs (default 30, LoRA 4/3 of it; 10 with ``quick``), with early
        stopping on the validation C-index.
    pretrain_epochs : int, optional
        Pre-training epochs (default 15; 5 with ``quick``).
    quick : bool, default=False
        A smoke run: 1500 patients, 2 folds, fewer epochs and trees, no early stopping.
    random_state : int, default=0
    n_jobs : int, default=1
        Jobs for the forest baseline.
    device : str, default="cpu"
        torch device of the BEHRT models and the pretrainer (``"cuda"``, ``"auto"``).
    n_threads : int, optional
        torch threads of the BEHRT models and the pretrainer (default: torch's).
    """

    dataset: str = "synthetic"
    n_patients: int = 4000
    folds: int = 5
    models: list = field(default_factory=lambda: list(BASELINES + BEHRT_MODELS))
    loss: str = "nll"
    epochs: int | None = None
    pretrain_epochs: int | None = None
    quick: bool = False
    random_state: int = 0
    n_jobs: int = 1
    device: str = "cpu"
    n_threads: int | None = None

    def resolved(self) -> BenchmarkSettings:
        """A copy with the quick-mode and epoch defaults filled in.

        Returns
        -------
        BenchmarkSettings
        """
        s = BenchmarkSettings(**asdict(self))
        if s.quick:
            s.n_patients = min(s.n_patients, 1500)
            s.folds = min(s.folds, 2)
        if s.epochs is None:
            # quick: 10 keeps the smoke run of both datasets under two minutes on two
            # cores (112 s measured; 140 s with 15) and BEHRT still learns on the
            # synthetic cohort (LoRA 0.708 against Cox 0.671)
            s.epochs = 10 if s.quick else 30
        if s.pretrain_epochs is None:
            s.pretrain_epochs = 5 if s.quick else 15
        unknown = set(s.models) - set(BASELINES + BEHRT_MODELS)
        if unknown:
            raise ValueError(
                f"unknown models {sorted(unknown)}; choose from {list(BASELINES + BEHRT_MODELS)}."
            )
        return s


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: expected a .parquet or .csv file.")


def _find_table(folder: Path, stem: str) -> Path:
    for suffix in (".parquet", ".csv"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    raise FileNotFoundError(f"{folder} holds no {stem}.parquet or {stem}.csv.")


def load_benchmark_data(dataset: str, n_patients: int = 4000, random_state: int = 0):
    """The cohort a benchmark runs on.

    Parameters
    ----------
    dataset : str
        ``"synthetic"``, ``"synthetic-counts"``, ``"synthea-sample"`` (indexed by
        ``subject_id`` and ``prediction_time``; see
        :func:`survbehrt.datasets.load_synthea_sample`), or a folder with two tables:
        ``events`` (MEDS-style ``subject_id``, ``time``, ``code``, with ``MEDS_BIRTH``
        rows) and ``labels`` (``subject_id``, ``prediction_time``, ``event``, ``time`` —
        the last in years after the prediction time — and optionally ``true_risk``),
        each ``.parquet`` or ``.csv``.
    n_patients : int, default=4000
        Size of a synthetic cohort.
    random_state : int, default=0

    Returns
    -------
    X : pandas.DataFrame
    y : structured ndarray
    true_risk : ndarray or None
        The generating log-hazard (synthetic data, or a ``true_risk`` label column).
    """
    from sksurv.util import Surv

    from .datasets import load_synthea_sample, make_synthetic_ehr

    if dataset in ("synthetic", "synthetic-counts"):
        scenario = "sequence" if dataset == "synthetic" else "counts"
        return make_synthetic_ehr(n_patients=n_patients, scenario=scenario, random_state=random_state)
    if dataset == "synthea-sample":
        X, y = load_synthea_sample()
        return X, y, None
    from .data.events import from_events

    folder = Path(dataset)
    if not folder.is_dir():
        raise ValueError(
            f"--dataset {dataset!r} is neither {', '.join(map(repr, DATASETS))} nor a folder "
            f"holding events.(parquet|csv) and labels.(parquet|csv)."
        )
    events = _read_table(_find_table(folder, "events"))
    labels = _read_table(_find_table(folder, "labels"))
    missing = {"subject_id", "prediction_time", "event", "time"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels table lacks columns {sorted(missing)}.")
    if not pd.api.types.is_numeric_dtype(events["time"]):
        events["time"] = pd.to_datetime(events["time"])
        labels["prediction_time"] = pd.to_datetime(labels["prediction_time"])
    # X is indexed by (subject_id, prediction_time), one row per labels row it can build.
    X = from_events(events, prediction_times=labels[["subject_id", "prediction_time"]])
    labels = labels.set_index(["subject_id", "prediction_time"]).loc[X.index]
    y = Surv.from_arrays(labels["event"].astype(bool).to_numpy(), labels["time"].to_numpy(float))
    true_risk = labels["true_risk"].to_numpy(float) if "true_risk" in labels else None
    return X, y, true_risk


def _index_age(X) -> np.ndarray:
    """The age at the prediction time as a one-column matrix (the ``Cox-age`` feature)."""
    from .data.validation import flatten_ehr

    return flatten_ehr(X).index_age[:, None]


def _index_age_name(transformer, input_features):
    return np.asarray(["index_age"], dtype=object)


def make_models(settings: BenchmarkSettings) -> dict:
    """Unfitted models by name (the BEHRT variants get their pretrainer per fold).

    Parameters
    ----------
    settings : BenchmarkSettings
        Resolved settings.

    Returns
    -------
    dict of str to estimator
    """
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from .data.features import CodeCountTransformer
    from .estimators import BEHRTSurvivalEstimator

    s = settings
    trees = 50 if s.quick else 200
    counts = dict(min_frequency=5)
    # Baselines are tuned as a careful user would: the Cox ridge penalty by inner 3-fold CV.
    cox = GridSearchCV(
        make_pipeline(CodeCountTransformer(**counts), StandardScaler(), CoxPHSurvivalAnalysis()),
        {"coxphsurvivalanalysis__alpha": [1.0, 10.0, 100.0, 1000.0, 10000.0]},
        cv=KFold(3, shuffle=True, random_state=s.random_state),
    )
    models = {
        "CoxPH": cox,
        # How much of the ranking age alone explains: the floor every model must clear.
        "Cox-age": make_pipeline(
            FunctionTransformer(_index_age, feature_names_out=_index_age_name),
            StandardScaler(), CoxPHSurvivalAnalysis()),
        "RSF": make_pipeline(CodeCountTransformer(**counts), RandomSurvivalForest(
            n_estimators=trees, min_samples_leaf=10, max_features="sqrt",
            n_jobs=s.n_jobs, random_state=s.random_state)),
        "GBS": make_pipeline(CodeCountTransformer(**counts), GradientBoostingSurvivalAnalysis(
            n_estimators=trees, learning_rate=0.05, max_depth=3, subsample=0.8,
            random_state=s.random_state)),
    }
    epochs = s.epochs
    # X["static"] (the Synthea sample's sex, race, ethnicity) reaches the BEHRT models as
    # timeless tokens; their validation split follows the subject_id index level.
    behrt = dict(loss=s.loss, random_state=s.random_state, validation_fraction=0.1,
                 early_stopping="cindex", patience=8, device=s.device, n_threads=s.n_threads)
    if s.quick:
        # a few hundred patients leave ~30 for validation: their C-index is noise, and early
        # stopping on it would restore an almost untrained epoch
        behrt.update(validation_fraction=0.0, early_stopping=None)
    # Recipes from held-out experiments on the synthetic cohort (docs/pretraining.md):
    # full fine-tuning wants a small learning rate; LoRA and the frozen head a larger one.
    models["BEHRT-full"] = BEHRTSurvivalEstimator(strategy="full", lr=5e-4, max_epochs=epochs, **behrt)
    models["BEHRT-lora"] = BEHRTSurvivalEstimator(
        strategy="lora", lr=3e-3, lora_rank=16, lora_feedforward=True,
        max_epochs=int(epochs * 4 / 3), **behrt)
    models["BEHRT-frozen"] = BEHRTSurvivalEstimator(strategy="frozen", lr=3e-3, max_epochs=epochs, **behrt)
    return {name: model for name, model in models.items() if name in s.models}


def make_pretrainer(settings: BenchmarkSettings):
    """The pretrainer fitted on each training fold for the BEHRT variants."""
    from .estimators import BEHRTPretrainer

    return BEHRTPretrainer(objective="both", max_epochs=settings.pretrain_epochs,
                           random_state=settings.random_state, validation_fraction=0.0,
                           device=settings.device, n_threads=settings.n_threads)


def subject_groups(X) -> np.ndarray | None:
    """The subject of each row, when ``X`` holds several rows of one subject.

    The subjects are read from ``X``'s index as the estimators read them (a MultiIndex
    with a ``subject_id`` level, or ending in ``prediction_time``, as
    :func:`survbehrt.data.from_events` and :func:`survbehrt.datasets.load_synthea_sample`
    make), so that the benchmark's folds and the estimators' validation splits agree.

    Parameters
    ----------
    X : pandas.DataFrame
        The patient frame.

    Returns
    -------
    ndarray or None
        The subject of each row, or None when the index names no subject or every
        subject has one row (plain stratified folds then suffice).
    """
    from .estimators._common import resolve_groups

    groups = resolve_groups(X, None, len(X))
    if groups is None or pd.Index(groups).is_unique:
        return None
    return groups


def check_group_split(groups, train, test, fold=None) -> None:
    """Refuse a split that puts one subject on both sides.

    Parameters
    ----------
    groups : array-like
        Subject of each row.
    train, test : array-like of int
        Row positions of the training and test sides.
    fold : int, optional
        Fold number, for the message.

    Raises
    ------
    ValueError
        When a subject has rows in both ``train`` and ``test`` (its rows are correlated:
        the test score would be optimistic). The message names the subjects.
    """
    groups = np.asarray(groups, dtype=object)
    both = pd.Index(groups[np.asarray(test)]).intersection(pd.Index(groups[np.asarray(train)]))
    if len(both):
        where = "a split" if fold is None else f"fold {fold}"
        shown = ", ".join(map(repr, both[:5].tolist())) + (", ..." if len(both) > 5 else "")
        raise ValueError(
            f"{where} puts {len(both)} subject(s) in both the training and the test rows "
            f"({shown}); split by subject (GroupKFold / StratifiedGroupKFold)."
        )


def make_folds(X, event, n_splits: int, random_state: int) -> list:
    """Stratified folds, grouped by subject when a subject has several rows.

    Parameters
    ----------
    X : pandas.DataFrame
        The patient frame (see :func:`subject_groups`).
    event : ndarray of bool
        The event indicator, the stratification variable.
    n_splits : int
    random_state : int

    Returns
    -------
    list of (ndarray, ndarray)
        Training and test row positions of each fold; no subject is on both sides.
    """
    groups = subject_groups(X)
    if groups is None:
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
        return list(splitter.split(np.zeros(len(X)), event))
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
    folds = list(splitter.split(np.zeros(len(X)), event, groups))
    for fold, (train, test) in enumerate(folds):
        check_group_split(groups, train, test, fold)
    return folds


def _fit(model, X, y, groups, random_state):
    """Fit; a tuned baseline's inner cross-validation is grouped by subject too."""
    if groups is not None and isinstance(model, GridSearchCV):
        model.set_params(cv=GroupKFold(model.cv.get_n_splits(), shuffle=True,
                                       random_state=random_state))
        return model.fit(X, y, groups=groups)
    return model.fit(X, y)


def _evaluate(model, X_test, y_test, y_train):
    from .metrics import evaluate

    t0 = time.perf_counter()
    model.predict(X_test)
    predict_time = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(model, X_test, y_test, y_train, return_curves=True)
    return result, predict_time


def _oracle_row(true_risk, y_test, y_train):
    from .metrics import harrell_c, uno_c

    return {
        "harrell_c": harrell_c(y_test, true_risk),
        "uno_c": uno_c(y_train, y_test, true_risk),
        "integrated_brier": np.nan,
        "mean_auc": np.nan,
        "d_calibration_p": np.nan,
        "fit_time": 0.0,
        "predict_time": 0.0,
    }


class _InterruptFlag:
    """Remember a Ctrl-C even when a library swallows it.

    skorch catches ``KeyboardInterrupt`` in ``fit`` to end training early, so the
    benchmark would carry on with a half-trained model. The handler records the
    interrupt (and still raises, so skorch stops the fit); :meth:`check` re-raises
    after the fit returns.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        self.raised = True
        raise KeyboardInterrupt

    def install(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def uninstall(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def check(self):
        if self.raised:
            raise KeyboardInterrupt


def _pooled_d_calibration_p(counts) -> float:
    from scipy import stats

    if not counts:
        return float("nan")
    return float(stats.chisquare(np.sum(counts, axis=0)).pvalue)


def summarize(rows: pd.DataFrame, d_calibration_counts=None) -> pd.DataFrame:
    """Mean and standard deviation over folds of every metric, one row per model.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per (model, fold), as :func:`run_benchmark` writes to ``results.csv``.
    d_calibration_counts : dict of str to list of ndarray, optional
        Each model's D-calibration bin counts per test fold
        (``evaluate(..., return_curves=True)["d_calibration_counts"]``).

    Returns
    -------
    pandas.DataFrame
        Indexed by model, columns ``<metric>_mean`` / ``<metric>_sd`` for the metrics
        of ``SUMMARY_METRICS`` present in ``rows``, ``d_calibration_pooled_p`` (the
        D-calibration test on the counts summed over folds; NaN without counts) and
        ``folds``; sorted by the mean Harrell's C.
    """
    metrics = [m for m in SUMMARY_METRICS if m in rows]
    grouped = rows.groupby("model", sort=False)[metrics]
    mean = grouped.mean().add_suffix("_mean")
    sd = grouped.std(ddof=1).add_suffix("_sd")
    table = pd.concat([mean, sd], axis=1)
    counts = d_calibration_counts or {}
    table["d_calibration_pooled_p"] = [_pooled_d_calibration_p(counts.get(m, [])) for m in table.index]
    table["folds"] = rows.groupby("model", sort=False)["fold"].nunique()
    return table.sort_values("harrell_c_mean", ascending=False)


def _plus_minus(row, metric) -> str:
    sd = row[f"{metric}_sd"]
    return f"{row[f'{metric}_mean']:.3f} ± {0.0 if np.isnan(sd) else sd:.3f}"


def _value_or_dash(value, fmt) -> str:
    return "—" if np.isnan(value) else format(value, fmt)


def format_table(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width text table (for the terminal and the README).

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summarize`.

    Returns
    -------
    str
        A header, one line per model (mean ± standard deviation over folds, or the
        mean alone) and a line saying what the D-calibration column is.
    """
    lines = [f"{'model':<14}{'Harrell C':>16}{'Uno C':>16}{'IBS':>8}{'mean AUC':>10}"
             f"{'D-cal p*':>10}{'fit s':>9}{'pred s':>8}"]
    for name, r in summary.iterrows():
        lines.append(f"{name:<14}{_plus_minus(r, 'harrell_c'):>16}{_plus_minus(r, 'uno_c'):>16}"
                     f"{_value_or_dash(r['integrated_brier_mean'], '.3f'):>8}"
                     f"{_value_or_dash(r['mean_auc_mean'], '.3f'):>10}"
                     f"{_value_or_dash(r['d_calibration_pooled_p'], '.3f'):>10}"
                     f"{_value_or_dash(r['fit_time_mean'], '.1f'):>9}"
                     f"{_value_or_dash(r['predict_time_mean'], '.2f'):>8}")
    lines.append("* D-calibration test on the test-fold counts pooled over folds "
                 "(small p = miscalibrated); the other columns are means over folds.")
    return "\n".join(lines)


def _machine() -> dict:
    import torch

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _write(out: Path, rows: list, dcal_counts: dict, settings: BenchmarkSettings, started: float,
           complete: bool):
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    summary = summarize(frame, dcal_counts) if len(frame) else pd.DataFrame()
    summary.to_csv(out / "summary.csv", index_label="model")
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


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite``; then clear our own old files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} exists and is not empty; choose another output folder, or overwrite "
                f"it (--overwrite; overwrite=True)."
            )
        # only the files a run writes: an old plot must not pass for this run's
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def run_benchmark(settings: BenchmarkSettings | None = None, out="benchmark_results", quiet=False,
                  plots=True, log=None, overwrite=False):
    """Run the benchmark and write its results and plots to ``out``.

    Files: ``results.csv`` (one row per model and fold), ``summary.csv`` (mean and
    standard deviation over folds of every metric, the pooled D-calibration test),
    ``results.json`` (settings, machine, folds, summary) and, with matplotlib,
    ``cindex.png``, ``calibration.png``, ``survival_curves.png``, ``auc.png`` and
    ``brier.png``. ``summary.attrs["files"]`` lists the files written.

    Parameters
    ----------
    settings : BenchmarkSettings, optional
    out : str or path-like, default="benchmark_results"
        Output folder; it must not exist or be empty unless ``overwrite``.
    quiet : bool, default=False
        No progress bars.
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
    rows, fitted, curves, dcal_counts = [], {}, {}, {}
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
            fold_bar = tqdm(folds, desc="folds", disable=quiet)
            for fold, (tr, te) in enumerate(fold_bar):
                X_tr, X_te, y_tr, y_te = X.iloc[tr], X.iloc[te], y[tr], y[te]
                pretrainer, pretrain_time = None, 0.0
                if needs_pretrainer:
                    t0 = time.perf_counter()
                    pretrainer = make_pretrainer(settings).fit(X_tr)
                    pretrain_time = time.perf_counter() - t0
                    interrupt.check()
                for name, template in tqdm(models.items(), desc=f"fold {fold}", leave=False, disable=quiet):
                    model = clone(template)
                    if name.startswith("BEHRT"):
                        model.set_params(pretrained=pretrainer)
                    t0 = time.perf_counter()
                    _fit(model, X_tr, y_tr, None if groups is None else groups[tr],
                         settings.random_state)
                    fit_time = time.perf_counter() - t0
                    interrupt.check()  # a fit cut short by Ctrl-C is not reported
                    # a tuned baseline is a search: evaluate its refitted best model
                    model = getattr(model, "best_estimator_", model)
                    result, predict_time = _evaluate(model, X_te, y_te, y_tr)
                    rows.append({"model": name, "fold": fold,
                                 **{m: result[m] for m in METRICS if m in result},
                                 "fit_time": fit_time, "predict_time": predict_time,
                                 "pretrain_time": pretrain_time if name.startswith("BEHRT") else 0.0})
                    dcal_counts.setdefault(name, []).append(result["d_calibration_counts"])
                    if fold == 0:
                        fitted[name], curves[name] = model, result
                    log(f"  fold {fold} {name:<13} C={result['harrell_c']:.3f}  fit {fit_time:.1f}s")
                if true_risk is not None:
                    rows.append({"model": ORACLE, "fold": fold, **_oracle_row(true_risk[te], y_te, y_tr)})
                if fold == 0 and plots:
                    written |= _plots(out, fitted, curves, X_te, y_te)
                _write(out, rows, dcal_counts, settings, started, complete=False)
            complete = True
        except KeyboardInterrupt:
            log("interrupted: the finished folds are saved.")
        finally:
            interrupt.uninstall()
    summary = _write(out, rows, dcal_counts, settings, started, complete=complete)
    if plots and len(summary):
        written |= _plot_cindex(out, pd.DataFrame(rows))
    summary.attrs["complete"] = complete
    summary.attrs["files"] = [name for name in OUTPUT_FILES if name in written]
    return summary


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None without matplotlib (plots are optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")  # nothing cut at the edges


def _panels(plt, n: int, ncols: int = 3):
    """``n`` axes on a grid of at most ``ncols`` columns (unused cells hidden)."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows + 0.4),
                             squeeze=False, layout="constrained")
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _one_legend(ax, i: int, **kwargs) -> None:
    """A legend on the first panel only (the others share its entries)."""
    if i == 0:
        ax.legend(**kwargs)
    elif ax.get_legend() is not None:
        ax.get_legend().remove()


def _fold_figures(plt, models, curves, X_te, y_te) -> dict:
    """The first fold's figures by file name: calibration, survival curves, AUC, Brier."""
    from .metrics import calibration_table
    from .plotting import (
        format_years,
        plot_auc_curves,
        plot_brier_curves,
        plot_calibration,
        plot_survival_curves,
    )

    figures = {}
    time_name = y_te.dtype.names[1]
    horizon = float(np.median(y_te[time_name]))
    fig, axes = _panels(plt, len(models))
    for i, (ax, (name, model)) in enumerate(zip(axes, models.items())):
        surv = np.array([fn(horizon) for fn in model.predict_survival_function(X_te)])
        plot_calibration(calibration_table(y_te, surv, horizon), ax=ax)
        ax.set_title(name, fontsize=10)
        _one_legend(ax, i, fontsize=8, loc="upper left")
    fig.suptitle(f"Calibration at {format_years(horizon)} (the median test time), fold 0: "
                 f"10 risk groups, Kaplan-Meier 95% intervals")
    figures["calibration.png"] = fig

    fig, axes = _panels(plt, len(models))
    for i, (ax, (name, model)) in enumerate(zip(axes, models.items())):
        fns = model.predict_survival_function(X_te.iloc[:4])
        plot_survival_curves(fns, y=y_te, labels=[f"patient {i}" for i in range(len(fns))], ax=ax)
        ax.set_title(name, fontsize=10)
        _one_legend(ax, i, fontsize=8, loc="lower left")
    fig.suptitle("Predicted survival of four test patients and the test fold's Kaplan-Meier "
                 "curve (fold 0)")
    figures["survival_curves.png"] = fig

    for file, plot, title in (
        ("auc.png", plot_auc_curves, "Time-dependent AUC on the test fold (fold 0)"),
        ("brier.png", plot_brier_curves, "Brier score on the test fold (fold 0); lower is better"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        plot(curves, ax=ax)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the lines, not on them
        ax.set_title(title)
        figures[file] = fig
    return figures


def _plots(out, models, curves, X_te, y_te) -> set:
    """Write the first fold's figures; the files written (none without matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return set()
    figures = _fold_figures(plt, models, curves, X_te, y_te)
    for file, fig in figures.items():
        _save(fig, out / file)
    plt.close("all")
    return set(figures)


def _cindex_figure(plt, rows):
    """Harrell's C of every model on every test fold, the mean marked."""
    order = rows.groupby("model")["harrell_c"].mean().sort_values().index
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(order) + 1.4), layout="constrained")
    for i, name in enumerate(order):
        vals = rows.loc[rows["model"] == name, "harrell_c"]
        ax.scatter(vals, np.full(len(vals), i), s=14, alpha=0.6)
        ax.plot([vals.mean()] * 2, [i - 0.3, i + 0.3], color="black")
    ax.axvline(0.5, ls="--", color="grey", lw=1)
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("Harrell's C on the test folds (dots: folds; bar: mean; dashed: chance)")
    ax.set_title("Discrimination on each test fold")
    return fig


def _plot_cindex(out, rows) -> set:
    plt = _pyplot()
    if plt is None:
        return set()
    fig = _cindex_figure(plt, rows)
    _save(fig, out / "cindex.png")
    plt.close(fig)
    return {"cindex.png"}
