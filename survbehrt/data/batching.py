"""Batches cut on the fly from a :class:`~survbehrt.data.tokenizer.TokenizedEHR`.

Two pieces:

* :class:`BucketBatchSampler` groups patients of similar length: indices are
  shuffled, cut into chunks of ``batch_size * bucket_chunks``, sorted by length
  inside each chunk and split into batches whose order is shuffled again. Padding
  stays low (each batch pads only to its own longest patient) while every epoch
  still sees a fresh random order.
* :class:`EHRDataset` builds a whole padded batch with numpy fancy indexing in
  ``__getitems__`` (no per-patient tensor), so the DataLoader's collate step is
  the identity.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, Subset

from ._flat import group_arange
from .tokenized import _TOKEN_FIELDS, TokenizedEHR

__all__ = [
    "BucketBatchSampler",
    "EHRDataset",
    "collate_tokens",
    "identity_collate",
    "dataset_lengths",
]

def collate_tokens(tokens: TokenizedEHR, indices) -> dict:
    """Build one padded batch from the given patients.

    Parameters
    ----------
    tokens : TokenizedEHR
        The cohort.
    indices : array-like of int, shape (batch_size,)
        Patient positions in ``tokens``.

    Returns
    -------
    dict of torch.Tensor
        ``codes``, ``age_bins``, ``visits``, ``positions``, ``time_bins``,
        ``value_bins`` (long, ``(B, L)``), ``attention_mask`` (bool, ``(B, L)``),
        ``visit_mask`` and ``visit_complete`` (bool, ``(B, V)``), ``visit_times``
        (float, ``(B, V)``) and ``index_age`` (float, ``(B,)``), with ``L`` and ``V`` the batch's own largest token and
        visit counts (see ``docs/dev/interfaces.md``). ``visit_complete`` is False at
        padding visits.
    """
    indices = np.asarray(indices, dtype=np.int64)
    batch = len(indices)
    lengths = tokens.lengths_at(indices)  # not tokens.lengths: a store may hold millions
    max_len = int(lengths.max()) if batch else 0
    rows = np.repeat(np.arange(batch), lengths)
    cols = group_arange(lengths)
    src = np.repeat(tokens.offsets[indices], lengths) + cols

    out = {}
    for name in _TOKEN_FIELDS:
        padded = np.zeros((batch, max_len), dtype=np.int64)
        padded[rows, cols] = getattr(tokens, name)[src]
        out[name] = torch.from_numpy(padded)
    mask = np.zeros((batch, max_len), dtype=bool)
    mask[rows, cols] = True
    out["attention_mask"] = torch.from_numpy(mask)

    n_vis = tokens.n_visits_at(indices)
    max_vis = int(n_vis.max()) if batch else 0
    vrows = np.repeat(np.arange(batch), n_vis)
    vcols = group_arange(n_vis)
    vsrc = np.repeat(tokens.visit_offsets[indices], n_vis) + vcols
    vmask = np.zeros((batch, max_vis), dtype=bool)
    vmask[vrows, vcols] = True
    vtimes = np.zeros((batch, max_vis), dtype=np.float32)
    vtimes[vrows, vcols] = tokens.visit_times[vsrc]
    vcomplete = np.zeros((batch, max_vis), dtype=bool)
    vcomplete[vrows, vcols] = tokens.visit_complete[vsrc]
    out["visit_mask"] = torch.from_numpy(vmask)
    out["visit_complete"] = torch.from_numpy(vcomplete)
    out["visit_times"] = torch.from_numpy(vtimes)
    out["index_age"] = torch.from_numpy(np.asarray(tokens.index_age[indices], dtype=np.float32))
    return out


def identity_collate(batch):
    """Collate function for datasets whose ``__getitems__`` already returns a batch."""
    return batch


class EHRDataset(Dataset):
    """A tokenized cohort with optional per-patient targets, served batch-wise.

    Parameters
    ----------
    tokens : TokenizedEHR
        The cohort (in memory, or memory-mapped from a
        :class:`~survbehrt.data.TokenStore`).
    targets : dict of str to ndarray, optional
        Per-row arrays (e.g. ``event``, ``time``), one entry per dataset row, returned
        beside each batch as float tensors.
    rows : array-like of int, optional
        The patients of ``tokens`` this dataset serves, in order (default: all). Row
        ``i`` of the dataset is patient ``rows[i]``: a split of a cohort without copying
        its token arrays (batches read only their own patients).

    Notes
    -----
    ``dataset[i]`` returns the batch of the single row ``i``; DataLoaders use
    ``__getitems__`` and get ``(X_batch, y_batch)`` with ``y_batch`` a dict of
    tensors (or ``None`` without targets).
    """

    def __init__(self, tokens: TokenizedEHR, targets: dict | None = None, rows=None):
        self.tokens = tokens
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.targets = targets
        if targets is not None:
            for name, values in targets.items():
                if len(values) != len(self):
                    raise ValueError(
                        f"target {name!r} has {len(values)} rows for {len(self)} patients."
                    )

    def __len__(self) -> int:
        return len(self.tokens) if self.rows is None else len(self.rows)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row."""
        return self.tokens.lengths if self.rows is None else self.tokens.lengths_at(self.rows)

    def __getitems__(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        X = collate_tokens(self.tokens, indices if self.rows is None else self.rows[indices])
        y = None
        if self.targets is not None:
            y = {
                name: torch.as_tensor(np.asarray(values)[indices], dtype=torch.float32)
                for name, values in self.targets.items()
            }
        return X, y

    def __getitem__(self, i):
        return self.__getitems__([i])


def dataset_lengths(dataset) -> np.ndarray:
    """Tokens per patient of an :class:`EHRDataset` or a ``Subset`` of one.

    Parameters
    ----------
    dataset : EHRDataset or torch.utils.data.Subset
        Subsets (as made by skorch's ``ValidSplit``) may be nested.

    Returns
    -------
    ndarray of int64, shape (len(dataset),)
    """
    if isinstance(dataset, Subset):
        return dataset_lengths(dataset.dataset)[np.asarray(dataset.indices)]
    return np.asarray(dataset.lengths)


class BucketBatchSampler(Sampler):
    """Batches of patients of similar length, in a random order.

    Parameters
    ----------
    lengths : ndarray of int, shape (n_samples,)
        Tokens per patient.
    batch_size : int
        Patients per batch.
    shuffle : bool, default=True
        Shuffle within and across chunks each epoch. Without shuffling, patients are
        sorted by length globally (the least padding, for inference).
    bucket_chunks : int, default=50
        Chunks of ``batch_size * bucket_chunks`` patients are sorted by length.
        Larger chunks give less padding but less randomness in batch composition.
    seed : int or numpy.random.Generator, optional
        Source of randomness; successive epochs draw fresh orders from it.
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool = True, bucket_chunks: int = 50, seed=None):
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        self.shuffle = shuffle
        self.bucket_chunks = bucket_chunks
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self) -> list:
        """One epoch of batches.

        Returns
        -------
        list of ndarray of int
            Index arrays of at most ``batch_size`` patients; every patient once.
        """
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        perm = self.rng.permutation(n)
        chunk = self.batch_size * max(1, int(self.bucket_chunks))
        batches = []
        for start in range(0, n, chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size))
        return [batches[i] for i in self.rng.permutation(len(batches))]

    def __iter__(self):
        for b in self.batches():
            yield b.tolist()


def padding_fraction(lengths, batches) -> float:
    """Fraction of padded slots over a list of batches (for benchmarks).

    Parameters
    ----------
    lengths : ndarray of int
        Tokens per patient.
    batches : iterable of index arrays

    Returns
    -------
    float
    """
    lengths = np.asarray(lengths)
    real = padded = 0
    for b in batches:
        lb = lengths[np.asarray(b)]
        real += int(lb.sum())
        padded += int(lb.max()) * len(lb)
    return 1.0 - real / padded if padded else 0.0
