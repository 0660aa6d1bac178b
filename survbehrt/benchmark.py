"""The benchmark: BEHRT survival models against Cox / RSF / boosting, on the same folds.

``survbehrt benchmark`` (see :mod:`survbehrt.cli`) calls :func:`run_benchmark`. Every
model sees the same stratified folds, grouped by subject where a subject has several rows
(the Synthea sample's landmarks); baselines use log code counts + age (+ number of
visits) from :class:`~survbehrt.data.features.CodeCountTransformer`, or the index age
alone (``Cox-age``); the BEHRT variants
are fine-tuned from one :class:`~survbehrt.BEHRTPretrainer` fitted on the training fold's
histories; the ``oracle`` row scores the generating model's true risk (synthetic data).
Results are written after every fold, so an interrupted run keeps its finished folds.
"""

from __future__ import annotations

import json
import os
import platform
import signal
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
    loss : {"nll", "ranking", "hybrid"}, default="hybrid"
        Loss of the BEHRT variants.
    epochs : int, optional
        Fine-tuning epochs (default 30, LoRA 4/3 of it; 15 with ``quick``), with early
        stopping on the validation C-index.
    pretrain_epochs : int, optional
        Pre-training epochs (default 15; 5 with ``quick``).
    quick : bool, default=False
        A smoke run: 1500 patients, 2 folds, fewer epochs and trees, no early stopping.
    random_state : int, default=0
    n_jobs : int, default=1
        Jobs for the forest baseline.
    """

    dataset: str = "synthetic"
    n_patients: int = 4000
    folds: int = 5
    models: list = field(default_factory=lambda: list(BASELINES + BEHRT_MODELS))
    loss: str = "hybrid"
    epochs: int | None = None
    pretrain_epochs: int | None = None
    quick: bool = False
    random_state: int = 0
    n_jobs: int = 1

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
            s.epochs = 15 if s.quick else 30
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
                 early_stopping="cindex", patience=8)
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
                           random_state=settings.random_state, validation_fraction=0.0)


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
        result = evaluate(model, X_test, y_test, y_train)
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


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over folds of every metric, one row per model.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per (model, fold), as :func:`run_benchmark` writes to ``results.csv``.

    Returns
    -------
    pandas.DataFrame
        Indexed by model, columns ``<metric>_mean`` / ``<metric>_sd``, sorted by the
        mean Harrell's C.
    """
    grouped = rows.groupby("model", sort=False)[list(METRICS)]
    mean = grouped.mean().add_suffix("_mean")
    sd = grouped.std(ddof=1).add_suffix("_sd")
    table = pd.concat([mean, sd], axis=1)
    table["folds"] = rows.groupby("model", sort=False)["fold"].nunique()
    return table.sort_values("harrell_c_mean", ascending=False)


def _plus_minus(row, metric) -> str:
    sd = row[f"{metric}_sd"]
    return f"{row[f'{metric}_mean']:.3f} ± {0.0 if np.isnan(sd) else sd:.3f}"


def _mean_or_dash(row, metric, fmt) -> str:
    value = row[f"{metric}_mean"]
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
    """
    lines = [f"{'model':<14}{'Harrell C':>16}{'Uno C':>16}{'IBS':>8}{'mean AUC':>10}"
             f"{'D-cal p':>9}{'fit s':>9}{'pred s':>8}"]
    for name, r in summary.iterrows():
        lines.append(f"{name:<14}{_plus_minus(r, 'harrell_c'):>16}{_plus_minus(r, 'uno_c'):>16}"
                     f"{_mean_or_dash(r, 'integrated_brier', '.3f'):>8}"
                     f"{_mean_or_dash(r, 'mean_auc', '.3f'):>10}"
                     f"{_mean_or_dash(r, 'd_calibration_p', '.3f'):>9}"
                     f"{_mean_or_dash(r, 'fit_time', '.1f'):>9}"
                     f"{_mean_or_dash(r, 'predict_time', '.2f'):>8}")
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


def _write(out: Path, rows: list, settings: BenchmarkSettings, started: float, complete: bool):
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "results.csv", index=False)
    summary = summarize(frame) if len(frame) else pd.DataFrame()
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


def run_benchmark(settings: BenchmarkSettings | None = None, out="benchmark_results", quiet=False,
                  plots=True, log=print):
    """Run the benchmark and write ``results.csv``, ``results.json`` and plots to ``out``.

    Parameters
    ----------
    settings : BenchmarkSettings, optional
    out : str or path-like, default="benchmark_results"
    quiet : bool, default=False
        No progress bars.
    plots : bool, default=True
        Write ``cindex.png``, ``calibration.png`` and ``survival_curves.png``.
    log : callable, default=print
        Where progress lines go.

    Returns
    -------
    pandas.DataFrame
        The summary (see :func:`summarize`); ``summary.attrs["complete"]`` is False when
        the run was interrupted (Ctrl-C) and holds only the finished folds.
    """
    from tqdm.auto import tqdm

    from .metrics import calibration_table

    settings = (settings or BenchmarkSettings()).resolved()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    X, y, true_risk = load_benchmark_data(settings.dataset, settings.n_patients, settings.random_state)
    event = y[y.dtype.names[0]]
    models = make_models(settings)
    needs_pretrainer = any(name.startswith("BEHRT") for name in models)
    groups = subject_groups(X)
    folds = make_folds(X, event, settings.folds, settings.random_state)
    rows, curves = [], {}
    size = f"{len(X)} patients" if groups is None else (
        f"{len(X)} rows of {len(pd.unique(groups))} subjects (folds grouped by subject)")
    log(f"benchmark: {settings.dataset}, {size}, {event.mean():.0%} events, "
        f"{settings.folds} folds, models {list(models)}")
    complete = False
    interrupt = _InterruptFlag()
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
                if fold == 0:
                    curves[name] = model
                log(f"  fold {fold} {name:<13} C={result['harrell_c']:.3f}  fit {fit_time:.1f}s")
            if true_risk is not None:
                rows.append({"model": ORACLE, "fold": fold, **_oracle_row(true_risk[te], y_te, y_tr)})
            if fold == 0 and plots:
                _plots(out, curves, X_te, y_te, y_tr, calibration_table)
            _write(out, rows, settings, started, complete=False)
        complete = True
    except KeyboardInterrupt:
        log("interrupted: the finished folds are saved.")
    finally:
        interrupt.uninstall()
    summary = _write(out, rows, settings, started, complete=complete)
    if plots and len(summary):
        _plot_cindex(out, pd.DataFrame(rows))
    summary.attrs["complete"] = complete
    return summary


def _plots(out, models, X_te, y_te, y_tr, calibration_table):
    """Calibration at the median horizon and survival curves, on the first fold."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional
        return
    from .plotting import plot_calibration, plot_survival_curves

    time_name = y_te.dtype.names[1]
    horizon = float(np.median(y_te[time_name]))
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        surv = np.array([fn(horizon) for fn in model.predict_survival_function(X_te)])
        plot_calibration(calibration_table(y_te, surv, horizon), ax=ax)
        ax.set_title(f"{name} (t={horizon:.1f} y)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        fns = model.predict_survival_function(X_te.iloc[:4])
        plot_survival_curves(fns, y=y_te, labels=[f"patient {i}" for i in range(len(fns))], ax=ax)
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "survival_curves.png", dpi=110)
    plt.close(fig)


def _plot_cindex(out, rows):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    order = rows.groupby("model")["harrell_c"].mean().sort_values().index
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(order) + 1.2))
    for i, name in enumerate(order):
        vals = rows.loc[rows["model"] == name, "harrell_c"]
        ax.scatter(vals, np.full(len(vals), i), s=14, alpha=0.6)
        ax.plot([vals.mean()] * 2, [i - 0.3, i + 0.3], color="black")
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("Harrell's C (test folds; bar = mean)")
    fig.tight_layout()
    fig.savefig(out / "cindex.png", dpi=110)
    plt.close(fig)
