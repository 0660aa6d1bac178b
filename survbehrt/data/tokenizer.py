"""Tokenizer: patient histories to flat, compact token arrays.

The vocabulary is learned from the rows passed to ``fit`` only (a training fold),
so codes seen only in a validation fold map to ``[UNK]``. The output is a
:class:`TokenizedEHR`: int32 values plus offsets, not a list of tensors, so a
cohort of millions of tokens stays small and batches are cut from it on the fly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .validation import flatten_ehr

__all__ = [
    "PAD",
    "CLS",
    "SEP",
    "MASK",
    "UNK",
    "SPECIAL_TOKENS",
    "PAD_ID",
    "CLS_ID",
    "SEP_ID",
    "MASK_ID",
    "UNK_ID",
    "N_SPECIAL",
    "TokenizedEHR",
    "EHRTokenizer",
]

PAD, CLS, SEP, MASK, UNK = "[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"
SPECIAL_TOKENS = (PAD, CLS, SEP, MASK, UNK)
PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = range(5)
N_SPECIAL = len(SPECIAL_TOKENS)


def _group_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` without the Python loop."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


@dataclass
class TokenizedEHR:
    """A tokenized cohort in a flat, CSR-like layout.

    Patient ``i`` owns tokens ``offsets[i]:offsets[i + 1]`` and visits
    ``visit_offsets[i]:visit_offsets[i + 1]``. Each patient reads
    ``[CLS] c c [SEP] c [SEP] ...``; ``[CLS]`` belongs to visit 0 and each ``[SEP]``
    to the visit it closes.

    Attributes
    ----------
    codes, age_bins, visits, positions, time_bins : ndarray of int32, shape (n_tokens,)
        Token id, age bin (0 = padding), visit index and position within the patient,
        and the log-scale bin of the time from the visit to the prediction time.
    offsets : ndarray of int64, shape (n_patients + 1,)
    visit_times : ndarray of float32, shape (n_visits,)
        Years from each kept visit to the prediction time.
    visit_offsets : ndarray of int64, shape (n_patients + 1,)
    """

    codes: np.ndarray
    age_bins: np.ndarray
    visits: np.ndarray
    positions: np.ndarray
    time_bins: np.ndarray
    offsets: np.ndarray
    visit_times: np.ndarray
    visit_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of tokens of each patient, shape (n_patients,)."""
        return np.diff(self.offsets)

    @property
    def n_visits(self) -> np.ndarray:
        """Number of kept visits of each patient, shape (n_patients,)."""
        return np.diff(self.visit_offsets)

    @property
    def n_tokens(self) -> int:
        """Total number of tokens."""
        return int(self.offsets[-1])

    def patient(self, i: int) -> dict:
        """The token arrays of one patient, for inspection and tests.

        Parameters
        ----------
        i : int
            Patient position.

        Returns
        -------
        dict of str to ndarray
            Views of ``codes``, ``age_bins``, ``visits``, ``positions``, ``time_bins``
            and ``visit_times`` of that patient.
        """
        sl = slice(self.offsets[i], self.offsets[i + 1])
        vs = slice(self.visit_offsets[i], self.visit_offsets[i + 1])
        return {
            "codes": self.codes[sl],
            "age_bins": self.age_bins[sl],
            "visits": self.visits[sl],
            "positions": self.positions[sl],
            "time_bins": self.time_bins[sl],
            "visit_times": self.visit_times[vs],
        }

    def subset(self, indices) -> TokenizedEHR:
        """A new cohort holding the given patients, in that order.

        Parameters
        ----------
        indices : array-like of int
            Patient positions.

        Returns
        -------
        TokenizedEHR
        """
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        tok = np.repeat(self.offsets[indices], lengths) + _group_arange(lengths)
        n_vis = self.n_visits[indices]
        vis = np.repeat(self.visit_offsets[indices], n_vis) + _group_arange(n_vis)
        token_fields = ("codes", "age_bins", "visits", "positions", "time_bins")
        return TokenizedEHR(
            **{name: getattr(self, name)[tok] for name in token_fields},
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            visit_times=self.visit_times[vis],
            visit_offsets=np.concatenate([[0], np.cumsum(n_vis)]).astype(np.int64),
        )

    def nbytes(self) -> int:
        """Memory held by the arrays.

        Returns
        -------
        int
            Bytes.
        """
        return sum(getattr(self, f.name).nbytes for f in fields(self))


class EHRTokenizer(TransformerMixin, BaseEstimator):
    """Learn a code vocabulary and turn patient histories into token arrays.

    Parameters
    ----------
    max_length : int, default=256
        Largest number of tokens per patient (``[CLS]`` and ``[SEP]`` included).
        Longer histories keep their most recent *whole* visits; a last visit that
        alone exceeds the limit keeps its first ``max_length - 2`` codes.
    min_frequency : int, default=1
        Codes seen fewer times than this in ``fit`` map to ``[UNK]``.
    age_bin_width : float, default=1.0
        Width of the age bins in years.
    max_age : float, default=120.0
        Ages above this share the last bin.
    n_time_bins : int, default=12
        Number of time-before-prediction bins (bin 0 is padding). The time from a
        visit to the prediction time is binned on a log2 scale of months:
        ``1 + floor(log2(1 + months))``, clipped to the last bin.

    Attributes
    ----------
    vocabulary_ : dict of str to int
        Code to token id; special tokens first (``[PAD]=0 … [UNK]=4``).
    codes_ : ndarray of object
        Token id to code, the inverse of ``vocabulary_``.
    vocab_size_ : int
    n_age_bins_ : int
        Size of the age-bin table (padding bin 0 included).
    n_time_bins_ : int
    max_visits_ : int
        Upper bound on the visit index of any patient, for the visit embedding table.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"codes": [[["A", "B"], ["C"]]], "ages": [[50.0, 51.0]]})
    >>> tok = EHRTokenizer().fit(X)
    >>> t = tok.transform(X)
    >>> [tok.codes_[i] for i in t.codes]
    ['[CLS]', 'A', 'B', '[SEP]', 'C', '[SEP]']
    >>> t.visits.tolist()
    [0, 0, 0, 0, 1, 1]
    """

    def __init__(
        self,
        max_length: int = 256,
        min_frequency: int = 1,
        age_bin_width: float = 1.0,
        max_age: float = 120.0,
        n_time_bins: int = 12,
    ):
        self.max_length = max_length
        self.min_frequency = min_frequency
        self.age_bin_width = age_bin_width
        self.max_age = max_age
        self.n_time_bins = n_time_bins

    def _check_params(self):
        if int(self.max_length) < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS] code [SEP]); got {self.max_length}.")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1; got {self.min_frequency}.")
        if not self.age_bin_width > 0:
            raise ValueError(f"age_bin_width must be > 0; got {self.age_bin_width}.")
        if self.n_time_bins < 2:
            raise ValueError(f"n_time_bins must be >= 2; got {self.n_time_bins}.")

    def fit(self, X, y=None):
        """Learn the vocabulary from the codes of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame
            The patient frame (training rows only).
        y : ignored

        Returns
        -------
        self : EHRTokenizer
        """
        self._fit_flat(flatten_ehr(X))
        return self

    def fit_transform(self, X, y=None) -> TokenizedEHR:
        """Learn the vocabulary and tokenize ``X``, validating and flattening it once.

        Parameters
        ----------
        X : pandas.DataFrame
            The patient frame (training rows).
        y : ignored

        Returns
        -------
        TokenizedEHR
        """
        flat = flatten_ehr(X)
        self._fit_flat(flat)
        return self._tokenize(flat)

    def _fit_flat(self, flat):
        self._check_params()
        counts = Counter(flat.codes)
        kept = sorted(
            (c for c, n in counts.items() if n >= self.min_frequency and c not in SPECIAL_TOKENS),
            key=lambda c: (-counts[c], c),
        )
        return self._set_vocabulary(kept)

    def _set_vocabulary(self, codes):
        """Set the fitted state from the list of real codes (ids from ``N_SPECIAL``)."""
        self._check_params()
        self.codes_ = np.array(list(SPECIAL_TOKENS) + list(codes), dtype=object)
        self.vocabulary_ = {c: i for i, c in enumerate(self.codes_)}
        self.vocab_size_ = len(self.codes_)
        self.n_age_bins_ = int(np.floor(self.max_age / self.age_bin_width)) + 2
        self.n_time_bins_ = int(self.n_time_bins)
        # Each visit costs at least two tokens (a code and its [SEP]).
        self.max_visits_ = int(self.max_length)
        return self

    def transform(self, X) -> TokenizedEHR:
        """Tokenize patient histories.

        Parameters
        ----------
        X : pandas.DataFrame
            The patient frame.

        Returns
        -------
        TokenizedEHR
            Flat token arrays; unknown codes map to ``[UNK]``.
        """
        check_is_fitted(self, "vocabulary_")
        return self._tokenize(flatten_ehr(X))

    def _tokenize(self, flat) -> TokenizedEHR:
        vocab = self.vocabulary_
        ids = np.fromiter(
            (vocab.get(c, UNK_ID) for c in flat.codes), dtype=np.int32, count=len(flat.codes)
        )
        n_patients = flat.n_patients
        n_visits = flat.n_visits
        visit_len = flat.visit_lengths
        visit_patient = np.repeat(np.arange(n_patients), n_visits)
        visit_start = np.cumsum(n_visits) - n_visits  # first visit of each patient
        code_start = np.cumsum(visit_len) - visit_len  # first code of each visit

        # Truncation: keep the most recent whole visits that fit after [CLS].
        budget = int(self.max_length) - 1
        cost = visit_len + 1  # codes + [SEP]
        csum = np.cumsum(cost)
        patient_total = np.add.reduceat(cost, visit_start) if len(cost) else cost
        # cost of visit v and every later visit of the same patient
        before = csum - cost - np.repeat(csum[visit_start] - cost[visit_start], n_visits)
        suffix = np.repeat(patient_total, n_visits) - before
        is_last = np.zeros(len(cost), dtype=bool)
        is_last[visit_start + n_visits - 1] = True
        keep = (suffix <= budget) | is_last
        kept_len = np.where(keep, np.minimum(visit_len, budget - 1), 0)

        kv = np.flatnonzero(keep)
        kv_len = kept_len[kv]
        kv_patient = visit_patient[kv]
        kept_per_patient = np.bincount(kv_patient, minlength=n_patients)
        first_kept = np.cumsum(kept_per_patient) - kept_per_patient
        kv_index = _group_arange(kept_per_patient)  # visit index within patient, 0-based
        tokens_per_patient = 1 + np.bincount(kv_patient, weights=kv_len + 1, minlength=n_patients)
        tokens_per_patient = tokens_per_patient.astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(tokens_per_patient)]).astype(np.int64)
        n_tokens = int(offsets[-1])

        ages = flat.visit_ages[kv]
        age_bins = 1 + np.clip(
            np.floor(ages / self.age_bin_width), 0, self.n_age_bins_ - 2
        ).astype(np.int32)
        visit_times = (flat.index_age[kv_patient] - ages).astype(np.float32)
        months = np.maximum(visit_times, 0.0) * 12.0
        time_bins = 1 + np.clip(
            np.floor(np.log2(1.0 + months)), 0, self.n_time_bins_ - 2
        ).astype(np.int32)

        # Where each kept visit's first token lands: after [CLS] and earlier kept visits.
        cost_kept = kv_len + 1
        within = np.cumsum(cost_kept) - cost_kept
        within -= np.repeat(within[first_kept], kept_per_patient)
        vstart = offsets[kv_patient] + 1 + within

        out_visit = np.empty(n_tokens, dtype=np.int64)  # kept-visit row of each token
        cls_pos = offsets[:-1]
        out_visit[cls_pos] = first_kept
        code_pos = np.repeat(vstart, kv_len) + _group_arange(kv_len)
        out_visit[code_pos] = np.repeat(np.arange(len(kv)), kv_len)
        sep_pos = vstart + kv_len
        out_visit[sep_pos] = np.arange(len(kv))

        codes = np.empty(n_tokens, dtype=np.int32)
        codes[cls_pos] = 1  # CLS_ID
        codes[code_pos] = ids[np.repeat(code_start[kv], kv_len) + _group_arange(kv_len)]
        codes[sep_pos] = 2  # SEP_ID

        return TokenizedEHR(
            codes=codes,
            age_bins=age_bins[out_visit],
            visits=kv_index[out_visit].astype(np.int32),
            positions=_group_arange(tokens_per_patient).astype(np.int32),
            time_bins=time_bins[out_visit],
            offsets=offsets,
            visit_times=visit_times,
            visit_offsets=np.concatenate([[0], np.cumsum(kept_per_patient)]).astype(np.int64),
        )
