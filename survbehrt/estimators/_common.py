"""Small helpers shared by the two estimators: parameter checks, seeds, devices, splits."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from sklearn.utils import check_random_state
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import concordance_index_censored

from ..competing_hazards import cause_specific_concordance
from ..data.competing import check_competing_y
from ..data.validation import check_survival_y

__all__ = [
    "check_choice",
    "check_positive",
    "check_fraction",
    "draw_seed",
    "seeded_torch",
    "resolve_device",
    "fitting",
    "torch_threads",
    "validation_split",
    "resolve_groups",
    "model_config",
    "token_store",
    "check_store_tokenizer",
    "harrell_score",
    "history_tags",
]


def check_choice(name: str, value, valid) -> None:
    """Raise a ``ValueError`` listing the valid values when ``value`` is not one of them."""
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}.")


def check_positive(name: str, value, integer: bool = True, allow_zero: bool = False) -> None:
    """Raise a ``ValueError`` unless ``value`` is a positive (or non-negative) number."""
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        what = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {what} {'integer' if integer else 'number'}; got {value!r}.")


def check_fraction(name: str, value) -> None:
    """Raise a ``ValueError`` unless ``0 <= value < 1``."""
    if not (isinstance(value, (int, float)) and 0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1); got {value!r}.")


def draw_seed(random_state) -> int:
    """An int seed from ``random_state`` (None draws a fresh one)."""
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def seeded_torch(seed: int, device="cpu"):
    """Seed torch inside the block without disturbing the caller's global RNG state.

    The RNGs of the visible GPUs are forked only when ``device`` is not the CPU, so a
    CPU fit makes no CUDA call.
    """
    on_cpu = str(resolve_device(device)).startswith("cpu")
    devices = [] if on_cpu or not torch.cuda.is_available() else list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n_threads):
    """Use ``n_threads`` torch threads inside the block (None: leave as is)."""
    if n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device) -> str:
    """``"auto"`` becomes ``"cuda"`` when a GPU is present, else ``"cpu"``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@contextlib.contextmanager
def fitting(estimator, seed: int):
    """The block a fit trains in: ``estimator.n_threads`` torch threads, torch seeded with
    ``seed`` (:func:`seeded_torch`) on the device it trains on (its ``accelerator``'s, else
    its ``device``)."""
    accelerator = getattr(estimator, "accelerator", None)
    device = estimator.device if accelerator is None else str(accelerator.device)
    with torch_threads(estimator.n_threads), seeded_torch(seed, device):
        yield


def validation_split(n: int, fraction: float, seed: int, stratify=None, groups=None):
    """Indices of a train / validation split, stratified on ``stratify`` when possible.

    With ``groups`` (e.g. patient ids when a patient has several rows), the split is by
    group: no group has rows on both sides (a stratified group split, taking one fold of
    ``round(1 / fraction)`` as the validation rows).

    Returns ``(train_idx, valid_idx)``; ``valid_idx`` is empty when ``fraction == 0``.
    """
    idx = np.arange(n)
    if fraction <= 0:
        return idx, idx[:0]
    strat = None
    if stratify is not None:
        _, counts = np.unique(stratify, return_counts=True)
        if len(counts) > 1 and counts.min() >= 2:
            strat = stratify
    if groups is not None:
        groups = np.asarray(groups)
        n_groups = np.unique(groups).shape[0]
        if n_groups < n:  # some group has several rows: split by group
            n_splits = min(n_groups, max(2, int(round(1.0 / fraction))))
            if n_splits < 2:
                raise ValueError("a validation split by patient needs at least two patients")
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            labels = strat if strat is not None else np.zeros(n, dtype=int)
            tr, va = next(splitter.split(idx, labels, groups))
            return np.sort(tr), np.sort(va)
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strat)
    return np.sort(tr), np.sort(va)


def resolve_groups(X, groups, n: int):
    """Patient groups of the rows: ``groups`` if given, else from X's index.

    A MultiIndex with a level ``subject_id``, or one whose last level is
    ``prediction_time`` (what :func:`survbehrt.data.from_events` makes, whatever the
    subject column is called), gives the groups.

    Parameters
    ----------
    X : pandas.DataFrame
    groups : array-like of shape (n,) or None
    n : int
        Number of rows.

    Returns
    -------
    ndarray of shape (n,) or None
        None when every row is its own patient as far as we can tell.
    """
    if groups is None:
        names = list(getattr(getattr(X, "index", None), "names", []) or [])
        if len(names) < 2:
            return None
        if "subject_id" in names:
            groups = X.index.get_level_values("subject_id")
        elif names[-1] == "prediction_time":  # from_events with another subject column
            groups = X.index.get_level_values(0)
        else:
            return None
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have one entry per row of X ({n}), got shape {groups.shape}")
    if pd.isna(groups).any():
        raise ValueError(f"groups has missing values (row {int(np.flatnonzero(pd.isna(groups))[0])})")
    return groups


def model_config(estimator, tokenizer):
    """A :class:`~survbehrt.model.BEHRTConfig` from an estimator's architecture parameters."""
    from ..data.code_groups import code_groups
    from ..model import BEHRTConfig
    from ..model.config import N_SPECIAL

    groups = None
    if getattr(estimator, "code_prefix", None) is not None:
        # the config numbers groups from 1: 0 is the special tokens' (no group)
        groups = code_groups(tokenizer.codes_, N_SPECIAL, estimator.code_prefix)[0] + 1

    return BEHRTConfig(
        vocab_size=tokenizer.vocab_size_,
        n_age_bins=tokenizer.n_age_bins_,
        n_time_bins=tokenizer.n_time_bins_,
        n_value_bins=tokenizer.n_value_bins_,
        max_visits=tokenizer.max_visits_,
        max_position=int(tokenizer.max_length),
        embedding_dim=estimator.embedding_dim,
        num_layers=estimator.num_layers,
        num_heads=estimator.num_heads,
        ff_dim=estimator.ff_dim,
        dropout=estimator.dropout,
        continuous_time=bool(getattr(estimator, "continuous_time", False)),
        code_groups=groups,
        code_neighbours=getattr(estimator, "code_neighbours", None) or 0,
    )


def token_store(X):
    """``X`` as a :class:`~survbehrt.data.TokenStore` when it is one (or its folder), else None.

    A string or path is read as a store's folder: the estimators take patient frames
    or stores, never file names of frames.
    """
    import os

    from ..data.token_store import TokenStore

    if isinstance(X, TokenStore):
        return X
    if isinstance(X, (str, os.PathLike)):
        return TokenStore(X)
    return None


def check_store_tokenizer(store, tokenizer, whose: str) -> None:
    """Raise unless ``store`` was tokenized by ``tokenizer`` (same vocabulary, bins, params)."""
    import json

    if store.meta["tokenizer"] != json.loads(json.dumps(tokenizer.to_dict())):
        raise ValueError(
            f"the token store at {store.folder} was written with another tokenizer than "
            f"{whose}'s (vocabulary, value bins or parameters differ); write the store "
            f"with {whose}'s tokenizer (survbehrt.data.write_tokens)."
        )


def harrell_score(predict, X, y) -> float:
    """Harrell's C of ``predict(X)`` against ``y``: the estimators' ``score``.

    NaN when ``y`` has no events or no comparable pair (the C-index is undefined), so
    that a cross-validation fold without events does not abort a search.
    """
    store = token_store(X)
    X = X if store is None else store
    event, time = check_survival_y(y, n_samples=len(X), require_events=False)
    risk = predict(X)
    if not event.any():  # e.g. a CV test fold without events: undefined, not an error
        return float("nan")
    try:
        return concordance_index_censored(event, time, risk)[0]
    except NoComparablePairException:
        return float("nan")


def cause_specific_score(predict, X, y, cause: int) -> float:
    """Wolbers' concordance of ``predict(X)`` for ``cause``: the competing-risks ``score``.

    Unweighted (Harrell-type); NaN without a case of ``cause`` or a comparable pair,
    as :func:`harrell_score`.
    """
    store = token_store(X)
    X = X if store is None else store
    event, time, _ = check_competing_y(y, n_samples=len(X))
    return cause_specific_concordance(event, time, predict(X), cause)


def history_tags(tags, random_state, supervised: bool):
    """scikit-learn tags of an estimator of patient histories.

    ``X`` is one row per patient, not a 2-D numeric array; ``y`` is required when
    ``supervised``; the fit is non-deterministic without a ``random_state``.
    """
    tags.input_tags.two_d_array = False
    if supervised:
        tags.target_tags.required = True
    tags.non_deterministic = random_state is None
    return tags
