"""The cohort a benchmark runs on, and its folds (grouped by subject where needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
)

from .settings import COMPETING, DATASETS, SYNTHETIC


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
        ``"synthetic"``, ``"synthetic-counts"``, ``"synthetic-latent"``,
        ``"synthetic-synonyms"`` (the scenarios ``"sequence"``, ``"counts"``, ``"latent"``
        and ``"synonyms"`` of :func:`survbehrt.datasets.make_synthetic_ehr`),
        ``"synthetic-competing"`` (:func:`survbehrt.datasets.competing.make_synthetic_competing`:
        ``y`` has the integer causes, ``true_risk`` is each cause's log-hazard, shape
        ``(n, 2)``), ``"synthea-sample"`` (indexed by
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

    from ..datasets import load_synthea_sample, make_synthetic_ehr

    if dataset in SYNTHETIC:
        return make_synthetic_ehr(n_patients=n_patients, scenario=SYNTHETIC[dataset],
                                  random_state=random_state)
    if dataset in COMPETING:
        from ..datasets.competing import make_synthetic_competing

        return make_synthetic_competing(n_patients=n_patients, random_state=random_state)
    if dataset == "synthea-sample":
        X, y = load_synthea_sample()
        return X, y, None
    from ..data.events import from_events

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
    from ..estimators._common import resolve_groups

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
