"""The first steps of ``fit``: the rows a fit sees, validated, split and tokenized.

:func:`validate_cohort` checks ``X`` (a patient frame, or a token store on disk), ``y``
and ``groups``; :func:`split_and_tokenize` holds out the early-stopping rows and
tokenizes, learning the vocabulary from the rows that train only (or using the
pretrained encoder's tokenizer, or the store's). Both estimators start their ``fit``
with these two; with an outcome, the result also holds the survival estimator's
training and early-stopping sets (``train_set``, ``valid_set``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.batching import EHRDataset
from ..data.tokenizer import EHRTokenizer
from ..data.validation import check_survival_y, ehr_columns, flatten_ehr
from ._common import check_store_tokenizer, resolve_groups, token_store, validation_split

__all__ = ["Cohort", "FitCohort", "split_and_tokenize", "validate_cohort"]


@dataclass(frozen=True)
class Cohort:
    """``X``, ``y`` and ``groups`` of a fit, checked.

    Attributes
    ----------
    X : pandas.DataFrame or TokenStore
        The patient frame, or the token store ``X`` named.
    store : TokenStore or None
        ``X`` when it is a store.
    groups : ndarray or None
        Patient of each row (:func:`~survbehrt.estimators._common.resolve_groups`).
    event, time : ndarray or None
        The outcome (None without ``y``).
    """

    X: object
    store: object
    groups: np.ndarray | None
    event: np.ndarray | None = None
    time: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.X)


def validate_cohort(X, y=None, groups=None) -> Cohort:
    """Check the inputs of ``fit``: ``X`` opened when it names a store, ``y``, ``groups``.

    Parameters
    ----------
    X : pandas.DataFrame, or TokenStore or path-like
    y : structured ndarray, optional
        The survival outcome; it must hold events.
    groups : array-like of shape (n_samples,), optional

    Returns
    -------
    Cohort
    """
    store = token_store(X)
    X = X if store is None else store
    event = time = None
    if y is not None:
        event, time = check_survival_y(y, n_samples=len(X), require_events=True)
    return Cohort(X, store, resolve_groups(X, groups, len(X)), event, time)


@dataclass(frozen=True)
class FitCohort:
    """A cohort split into training and early-stopping rows, tokenized.

    Attributes
    ----------
    cohort : Cohort
    tokenizer : EHRTokenizer
    tokens : TokenizedEHR
        Every row of the cohort (in memory, or the store's memory map).
    rows : ndarray of int
        The cohort's rows in ``tokens``.
    train_idx, valid_idx : ndarray of int
        Positions in the cohort of the training and early-stopping rows.
    feature_names : ndarray of str
        The columns of ``X`` the model reads.
    train_set, valid_set : EHRDataset or None
        With an outcome: the training and early-stopping rows with their outcome and
        patient (``valid_set`` None without early-stopping rows).
    """

    cohort: Cohort
    tokenizer: EHRTokenizer
    tokens: object
    rows: np.ndarray
    train_idx: np.ndarray
    valid_idx: np.ndarray
    feature_names: np.ndarray
    train_set: EHRDataset | None = None
    valid_set: EHRDataset | None = None


def _survival_sets(cohort: Cohort, tokens, rows, train_idx, valid_idx) -> tuple:
    """The training and early-stopping rows with their outcome and patient, as views."""
    group_ids = (np.arange(len(cohort)) if cohort.groups is None
                 else np.unique(cohort.groups, return_inverse=True)[1].reshape(-1))
    targets = {"time": cohort.time, "event": cohort.event, "group": group_ids}

    def dataset(idx):  # a view of the rows: token arrays are not copied
        return EHRDataset(tokens, {k: v[idx] for k, v in targets.items()}, rows=rows[idx])

    return dataset(train_idx), dataset(valid_idx) if len(valid_idx) else None


def split_and_tokenize(cohort: Cohort, seed: int, validation_fraction: float, *,
                       tokenizer_params: dict, pretrained=None, stratify: bool = False) -> FitCohort:
    """Hold out the early-stopping rows, then tokenize.

    The split comes first: the vocabulary (and the value bins) are learned from the rows
    that train, never from the early-stopping rows.

    Parameters
    ----------
    cohort : Cohort
    seed : int
        Seeds the split.
    validation_fraction : float
        Share of the rows held out (patients kept whole, see ``validation_split``).
    tokenizer_params : dict
        ``EHRTokenizer`` parameters of a new tokenizer (a frame without ``pretrained``).
    pretrained : EHRTokenizer, optional
        A fitted tokenizer to use instead (a pretrained encoder's); a store must have
        been written with it.
    stratify : bool, default=False
        Stratify the split on the event.

    Returns
    -------
    FitCohort
    """
    X, store = cohort.X, cohort.store
    train_idx, valid_idx = validation_split(
        len(cohort), validation_fraction, seed,
        stratify=cohort.event if stratify else None, groups=cohort.groups,
    )
    if store is not None:
        # a cohort on disk: its tokenizer, its rows, batches read from the memory map
        tokenizer, tokens, rows = store.tokenizer, store.tokens, store.rows
        if pretrained is not None:
            check_store_tokenizer(store, pretrained, "the pretrained encoder")
            tokenizer = pretrained
        columns = np.array(store.meta.get("columns") or [], dtype=object)
    else:
        if pretrained is not None:
            tokenizer = pretrained
            # validates X (errors name the row and column); the tokenizer trusts it afterwards
            tokens = tokenizer.transform(X)
        else:
            tokenizer = EHRTokenizer(**tokenizer_params)
            # validated and flattened once (errors name the row and column); the
            # vocabulary and value bins from the training rows alone
            flat = flatten_ehr(X)
            train = np.asarray(train_idx, dtype=np.int64)
            tokens = tokenizer.fit_flat(flat.cut(train, flat.n_visits[train])).transform_flat(flat)
        rows = np.arange(len(X))
        columns = ehr_columns(X)
    sets = (() if cohort.event is None
            else _survival_sets(cohort, tokens, rows, train_idx, valid_idx))
    return FitCohort(cohort, tokenizer, tokens, rows, train_idx, valid_idx, columns, *sets)
