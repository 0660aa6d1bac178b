"""Tokenizer: patient histories to flat, compact token arrays.

The vocabulary is learned from the rows passed to ``fit`` only (a training fold),
so codes seen only in a validation fold map to ``[UNK]``. The output is a
:class:`~survbehrt.data.tokenized.TokenizedEHR` (in ``tokenized.py``, re-exported here):
int32 values plus offsets, not a list of tensors, so a cohort of millions of tokens
stays small and batches are cut from it on the fly.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._flat import FlatEHR, group_arange
from ._pages import plain_pages
from ._value_bins import quantile_edges
from .tokenized import TRUNCATION_WARNING_SHARE, TokenizedEHR, _warn_truncation
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
    "TRUNCATION_WARNING_SHARE",
    "TokenizedEHR",
    "EHRTokenizer",
]

PAD, CLS, SEP, MASK, UNK = "[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"
SPECIAL_TOKENS = (PAD, CLS, SEP, MASK, UNK)
PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = range(5)
N_SPECIAL = len(SPECIAL_TOKENS)


#: ``transform`` fills the token arrays in about ``_CHUNKS`` chunks of patients of at
#: least ``_CHUNK_TOKENS`` tokens: its temporaries are those of one chunk.
_CHUNK_TOKENS = 1 << 16
_CHUNKS = 64


class EHRTokenizer(TransformerMixin, BaseEstimator):
    """Learn a code vocabulary (and value bins) and turn histories into token arrays.

    Each row becomes ``[CLS] s1 s2 … c c [SEP] c [SEP] …``:

    * **static codes** (the optional ``static`` column, e.g. ``GENDER//F``) come right
      after ``[CLS]``, without time: age bin 0 and time bin 0 (the "no time" slot,
      whose embeddings are zero), visit index 0. Visit 0 is visible to every visit under
      the visit-causal mask, so every landmark sees them. They are in the vocabulary
      (learned at fit, ``[UNK]`` when unseen) and are never dropped by visit truncation.
    * **visits**, oldest first, each closed by ``[SEP]``; each code token carries its
      visit's age bin and time-before-prediction bin, and its **value bin**.

    **Value bins.** For every code with numeric values (the optional ``values``
    column) in the rows passed to ``fit``, ``n_value_bins - 1`` cut points are learned
    at the quantiles ``1/n … (n-1)/n`` of its values (numpy's linear interpolation),
    duplicates removed. A value ``x`` gets bin ``1 + #{cut points < x}`` (so bin ``b``
    covers ``(e_{b-1}, e_b]``; a code with constant values has one cut point and all
    its training values in bin 1). A code without a value (NaN), ``[UNK]``, a code with
    no value in the fit rows, and every special or static token get bin 0: the code
    alone. Bins come from the fit rows only, like the vocabulary.

    **Truncation.** A row longer than ``max_length`` keeps ``[CLS]``, its static codes
    (at most ``max_length - 3``) and its most recent *whole* visits that fit; a last
    visit that alone exceeds the room keeps its first codes. This keeps the most history
    for the prediction at the last visit. For an earlier visit ``t``, what it sees (the
    kept visits up to ``t``) can differ from the history cut at ``t`` (which may reach
    further back); ``TokenizedEHR.visit_complete`` marks the visits where both agree.
    What was cut is counted per row (``TokenizedEHR.truncated_tokens``) and
    ``transform`` warns when more than ``TRUNCATION_WARNING_SHARE`` (5 %) of the rows
    were truncated.

    Parameters
    ----------
    max_length : int, default=256
        Largest number of tokens per patient (``[CLS]``, static codes and ``[SEP]``
        included).
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
    n_value_bins : int, default=10
        Quantile bins per code for numeric values; 0 ignores values.

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
    n_value_bins_ : int
        Largest value bin emitted (0 when no fit row had a value, or values are off).
    value_edges_ : dict of str to ndarray
        The cut points of each code that had values at fit.
    max_visits_ : int
        Upper bound on the visit index of any patient, for the visit embedding table.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> X = pd.DataFrame({"codes": [[["A", "B"], ["C"]]], "ages": [[50.0, 51.0]],
    ...                   "static": [["SEX//F"]]})
    >>> tok = EHRTokenizer().fit(X)
    >>> t = tok.transform(X)
    >>> [str(tok.codes_[i]) for i in t.codes]
    ['[CLS]', 'SEX//F', 'A', 'B', '[SEP]', 'C', '[SEP]']
    >>> t.visits.tolist(), t.age_bins.tolist()
    ([0, 0, 0, 0, 0, 1, 1], [51, 0, 51, 51, 51, 52, 52])
    >>> X["values"] = [[[1.0, np.nan], [5.0]]]
    >>> EHRTokenizer(n_value_bins=4).fit(X).transform(X).value_bins.tolist()
    [0, 0, 1, 0, 0, 1, 0]
    """

    def __init__(
        self,
        max_length: int = 256,
        min_frequency: int = 1,
        age_bin_width: float = 1.0,
        max_age: float = 120.0,
        n_time_bins: int = 12,
        n_value_bins: int = 10,
    ):
        self.max_length = max_length
        self.min_frequency = min_frequency
        self.age_bin_width = age_bin_width
        self.max_age = max_age
        self.n_time_bins = n_time_bins
        self.n_value_bins = n_value_bins

    def _check_params(self):
        if int(self.max_length) < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS] code [SEP]); got {self.max_length}.")
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1; got {self.min_frequency}.")
        if not self.age_bin_width > 0:
            raise ValueError(f"age_bin_width must be > 0; got {self.age_bin_width}.")
        if self.n_time_bins < 2:
            raise ValueError(f"n_time_bins must be >= 2; got {self.n_time_bins}.")
        if isinstance(self.n_value_bins, bool) or not isinstance(self.n_value_bins, (int, np.integer)) \
                or self.n_value_bins < 0:
            raise ValueError(f"n_value_bins must be an integer >= 0; got {self.n_value_bins!r}.")

    @plain_pages
    def fit(self, X, y=None):
        """Learn the vocabulary and the value bins from ``X``.

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

    @plain_pages
    def fit_flat(self, flat: FlatEHR) -> EHRTokenizer:
        """Learn the vocabulary and the value bins from an already validated cohort.

        Parameters
        ----------
        flat : FlatEHR
            :func:`~survbehrt.data.flatten_ehr` output, or some of its rows
            (``flat.cut(rows, flat.n_visits[rows])``): a cohort flattened once can fit on
            its training rows and then be tokenized whole (:meth:`transform_flat`).

        Returns
        -------
        self : EHRTokenizer
        """
        self._fit_flat(flat)
        return self

    @plain_pages
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
        tokens = self._tokenize(flat)
        _warn_truncation(tokens, int(self.max_length))
        return tokens

    def _fit_flat(self, flat: FlatEHR) -> None:
        """Fit on a flattened cohort: count each distinct code once, then the value bins."""
        self._check_params()
        n_names = len(flat.code_names)
        counts = np.zeros(n_names, dtype=np.int64)
        for index in (flat.code_index, flat.static_index):
            for start in range(0, len(index), _CHUNK_TOKENS):  # bincount copies to intp
                counts += np.bincount(index[start : start + _CHUNK_TOKENS], minlength=n_names)
        count = dict(zip(flat.code_names.tolist(), counts.tolist()))
        kept = sorted(
            (c for c, n in count.items() if n >= self.min_frequency and c not in SPECIAL_TOKENS),
            key=lambda c: (-count[c], c),
        )
        self._set_vocabulary(kept)
        if self.n_value_bins == 0 or flat.values is None:
            return
        edges = quantile_edges(
            self._name_ids(flat.code_names), flat.code_index, flat.values,
            int(self.n_value_bins), n_special=N_SPECIAL, chunk=_CHUNK_TOKENS,
        )
        self._set_value_edges(edges, by_id=True)

    def _set_vocabulary(self, codes, value_edges=None):
        """Set the fitted state from the real codes (ids from ``N_SPECIAL``) and their cut points."""
        self._check_params()
        self.codes_ = np.array(list(SPECIAL_TOKENS) + list(codes), dtype=object)
        self.vocabulary_ = {c: i for i, c in enumerate(self.codes_)}
        self.vocab_size_ = len(self.codes_)
        self.n_age_bins_ = int(np.floor(self.max_age / self.age_bin_width)) + 2
        self.n_time_bins_ = int(self.n_time_bins)
        # Each visit costs at least two tokens (a code and its [SEP]).
        self.max_visits_ = int(self.max_length)
        self._set_value_edges(value_edges or {})
        return self

    def _set_value_edges(self, edges: dict, by_id: bool = False):
        """Store the cut points (dict code -> sorted unique edges) in both forms."""
        if by_id:
            edges = {self.codes_[i]: e for i, e in edges.items()}
        self.value_edges_ = {str(c): np.asarray(e, dtype=np.float64) for c, e in edges.items()
                             if c in self.vocabulary_}
        width = max((len(e) for e in self.value_edges_.values()), default=0)
        edge_table = np.full((width, self.vocab_size_), np.inf)
        self._has_values = np.zeros(self.vocab_size_, dtype=bool)
        for code, e in self.value_edges_.items():
            edge_table[: len(e), self.vocabulary_[code]] = e
            self._has_values[self.vocabulary_[code]] = True
        # Padded table, one row per cut point (a column per token id; unused slots +inf,
        # never below a value), each row contiguous.
        self._edge_columns = list(edge_table)
        self.n_value_bins_ = width + 1 if self.value_edges_ else 0

    def to_dict(self) -> dict:
        """The fitted state as plain Python values (for saving).

        Returns
        -------
        dict
            ``params`` (constructor parameters), ``codes`` (real codes by id) and
            ``value_edges`` (code -> list of cut points).
        """
        check_is_fitted(self, "vocabulary_")
        return {
            "params": self.get_params(),
            "codes": [str(c) for c in self.codes_[N_SPECIAL:]],
            "value_edges": {c: e.tolist() for c, e in self.value_edges_.items()},
        }

    @classmethod
    def from_dict(cls, state: dict) -> EHRTokenizer:
        """A fitted tokenizer from :meth:`to_dict` output.

        Parameters
        ----------
        state : dict
            ``params``, ``codes`` and optionally ``value_edges`` (absent in files saved
            before value bins existed: then no value bins).

        Returns
        -------
        EHRTokenizer
        """
        return cls(**state["params"])._set_vocabulary(state["codes"], state.get("value_edges"))

    @plain_pages
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

        Warns
        -----
        UserWarning
            When more than ``TRUNCATION_WARNING_SHARE`` of the rows were truncated.
        """
        check_is_fitted(self, "vocabulary_")
        return self.transform_flat(flatten_ehr(X))

    @plain_pages
    def transform_flat(self, flat: FlatEHR, warn: bool = True) -> TokenizedEHR:
        """Tokenize an already validated cohort (:func:`~survbehrt.data.flatten_ehr` output).

        Parameters
        ----------
        flat : FlatEHR
        warn : bool, default=True
            Warn when more than ``TRUNCATION_WARNING_SHARE`` of the rows were truncated.

        Returns
        -------
        TokenizedEHR
        """
        check_is_fitted(self, "vocabulary_")
        tokens = self._tokenize(flat)
        if warn:
            _warn_truncation(tokens, int(self.max_length))
        return tokens

    def _name_ids(self, names) -> np.ndarray:
        """Token ids of distinct code strings (``[UNK]`` when not in the vocabulary)."""
        vocab = self.vocabulary_
        return np.fromiter((vocab.get(c, UNK_ID) for c in names), dtype=np.int32, count=len(names))

    def _value_bins(self, ids: np.ndarray, values, out: np.ndarray) -> None:
        """Write ``1 + #{cut points of the code < value}`` into ``out`` where a code has a
        value and cut points; leave ``out`` elsewhere."""
        if values is None or not self.value_edges_ or self.n_value_bins == 0:
            return
        has = self._has_values[ids]
        has &= ~np.isnan(values)
        idx = np.flatnonzero(has)
        del has
        x, rows = values[idx], ids[idx]
        count = np.ones(len(idx), dtype=np.int32)
        edge = np.empty(len(idx), dtype=np.float64)
        below = np.empty(len(idx), dtype=bool)
        for column in self._edge_columns:  # at most n_value_bins - 1 passes
            np.take(column, rows, out=edge, mode="clip")  # ids are valid rows
            np.less(edge, x, out=below)
            count += below
        out[idx] = count

    def _tokenize(self, flat: FlatEHR) -> TokenizedEHR:
        # Visit-level work is done for the whole cohort (one entry per visit). A token
        # array is written at once by np.repeat over runs of tokens that share a value
        # ([CLS], a patient's static codes, a visit's codes, its [SEP]); only the code
        # ids and value bins vary within a run: they are filled patient chunk by patient
        # chunk, so that the temporaries scale with a chunk, not with the cohort.
        name_ids = self._name_ids(flat.code_names)  # each distinct code looked up once
        n_patients = flat.n_patients
        n_visits = flat.n_visits
        visit_len = flat.visit_lengths
        visit_start = np.cumsum(n_visits) - n_visits  # first visit of each patient

        # Static codes: at most max_length - 3, so that one code and its [SEP] still fit.
        n_static = flat.static_counts
        s_kept = np.minimum(n_static, int(self.max_length) - 3)
        # Room for visits after [CLS] and the static codes, per patient.
        budget = int(self.max_length) - 1 - s_kept

        cost = visit_len + 1  # codes + [SEP]
        patient_total = np.add.reduceat(cost, visit_start) if len(cost) else cost
        if (patient_total <= budget).all():
            # Nothing to cut: every visit is kept whole (the general case below gives
            # the same, at the price of a dozen arrays per visit).
            kept_len = None
            kv_len, kept_per_patient, first_kept = visit_len, n_visits, visit_start
            kv_patient = np.repeat(np.arange(n_patients), n_visits)
            dropped = np.zeros(n_patients, dtype=np.int64)
            tokens_per_patient = 1 + s_kept + patient_total
            visit_complete = np.ones(len(visit_len), dtype=bool)
            ages = flat.visit_ages
        else:
            visit_patient = np.repeat(np.arange(n_patients), n_visits)
            budget_v = np.repeat(budget, n_visits)
            # Truncation: keep the most recent whole visits that fit.
            csum = np.cumsum(cost)
            # cost of visit v and every later visit of the same patient
            before = csum - cost - np.repeat(csum[visit_start] - cost[visit_start], n_visits)
            suffix = np.repeat(patient_total, n_visits) - before
            del csum, before
            is_last = np.zeros(len(cost), dtype=bool)
            is_last[visit_start + n_visits - 1] = True
            keep = (suffix <= budget_v) | is_last
            kept_len = np.where(keep, np.minimum(visit_len, budget_v - 1), 0)

            kv = np.flatnonzero(keep)
            kv_len = kept_len[kv]
            kv_patient = visit_patient[kv]
            kept_per_patient = np.bincount(kv_patient, minlength=n_patients)
            first_kept = np.cumsum(kept_per_patient) - kept_per_patient
            dropped = n_visits - kept_per_patient
            tokens_per_patient = 1 + s_kept + np.bincount(
                kv_patient, weights=kv_len + 1, minlength=n_patients
            ).astype(np.int64)

            # A kept visit t sees the kept visits f..t (f the first kept). The history cut
            # at t keeps u..t with u the oldest visit such that visits u..t fit the room.
            # Both agree when f is the row's first visit or when visit f-1 would not fit in
            # front of f..t.
            kv_cost = cost[kv]
            upto = np.cumsum(kv_cost)
            upto -= np.repeat(upto[first_kept] - kv_cost[first_kept], kept_per_patient)
            prev_cost = np.where(dropped > 0, cost[np.maximum(visit_start + dropped - 1, 0)], 0)
            visit_complete = (np.repeat(dropped, kept_per_patient) == 0) | (
                np.repeat(prev_cost, kept_per_patient) + upto > budget[kv_patient]
            )
            del upto, kv_cost, suffix, keep, budget_v, is_last, visit_patient
            ages = flat.visit_ages[kv]
        offsets = np.concatenate([[0], np.cumsum(tokens_per_patient)]).astype(np.int64)
        visit_offsets = np.concatenate([[0], np.cumsum(kept_per_patient)]).astype(np.int64)
        n_tokens = int(offsets[-1])
        full_length = 1 + n_static + patient_total
        truncated = (full_length - tokens_per_patient).astype(np.int64)

        scaled = ages / self.age_bin_width
        np.floor(scaled, out=scaled)
        age_bins = np.clip(scaled, 0, self.n_age_bins_ - 2, out=scaled).astype(np.int32)
        age_bins += 1
        visit_times = (flat.index_age[kv_patient] - ages).astype(np.float32)
        months = np.maximum(visit_times, 0.0)
        months *= 12.0
        months += 1.0
        np.log2(months, out=months)
        np.floor(months, out=months)
        time_bins = np.clip(months, 0, self.n_time_bins_ - 2, out=months).astype(np.int32)
        time_bins += 1
        del ages, scaled, months

        # Runs of tokens: per patient [CLS], its static codes, then per kept visit its
        # codes and its [SEP]. Run 2p + 2 * first_kept[p] is patient p's [CLS]; kept
        # visit k's codes are run 2 * kv_patient[k] + 2 + 2k.
        n_kept = len(kv_len)
        cls_run = 2 * np.arange(n_patients) + 2 * first_kept
        code_run = 2 * kv_patient + 2 + 2 * np.arange(n_kept)
        del kv_patient
        all_runs = (cls_run, cls_run + 1, code_run, code_run + 1)
        run_len = np.empty(2 * (n_patients + n_kept), dtype=np.int64)
        for run, length in zip(all_runs, (1, s_kept, kv_len, 1)):
            run_len[run] = length
        run_value = np.empty(len(run_len), dtype=np.int32)
        visit_index = group_arange(kept_per_patient).astype(np.int32)  # visit in patient
        out = {}
        # (field, [CLS], static codes, a visit's codes, its [SEP]); the code tokens are
        # -1 until filled below, static codes have no time
        for name, *values in (
            ("codes", CLS_ID, 0, -1, SEP_ID),
            ("age_bins", age_bins[first_kept], 0, age_bins, age_bins),
            ("time_bins", time_bins[first_kept], 0, time_bins, time_bins),
            ("visits", 0, 0, visit_index, visit_index),
        ):
            for run, value in zip(all_runs, values):
                run_value[run] = value
            out[name] = np.repeat(run_value, run_len)
        del run_value, run_len, cls_run, code_run, all_runs, visit_index
        # 0, 1, ... within each patient: ones, a step back at each patient's start, summed
        positions = np.ones(n_tokens, dtype=np.int32)
        positions[offsets[1:-1]] = 1 - tokens_per_patient[:-1]
        if n_tokens:
            positions[0] = 0
        np.cumsum(positions, dtype=np.int32, out=positions)
        out["positions"] = positions

        codes = out["codes"]
        static_start = np.cumsum(n_static) - n_static
        static_pos = np.repeat(offsets[:-1] + 1, s_kept) + group_arange(s_kept)
        static_src = np.repeat(static_start, s_kept) + group_arange(s_kept)
        codes[static_pos] = name_ids[flat.static_index[static_src]]
        del static_pos, static_src

        # The code tokens, patient chunk by patient chunk: a chunk's codes are a slice of
        # code_index, less the codes of dropped visits and the cut end of an over-long
        # last visit where the chunk has any.
        code_offsets = np.concatenate([[0], np.cumsum(patient_total - n_visits)])
        visit_offsets_all = np.append(visit_start, len(visit_len))
        out["value_bins"] = value_bins = np.zeros(n_tokens, dtype=np.int32)
        step = max(_CHUNK_TOKENS, n_tokens // _CHUNKS)
        cuts = np.unique(np.searchsorted(offsets, np.arange(0, n_tokens, step), "right") - 1)
        ends = np.append(cuts[1:], n_patients)
        # buffers for the largest chunk, reused by every chunk
        ids = np.empty(int((code_offsets[ends] - code_offsets[cuts]).max(initial=0)), np.int32)
        is_code = np.empty(int((offsets[ends] - offsets[cuts]).max(initial=0)), dtype=bool)
        bins = np.empty(len(ids), dtype=np.int32)
        with_bins = flat.values is not None and bool(self._edge_columns)
        for p0, p1 in zip(cuts.tolist(), ends.tolist()):
            t0, t1 = int(offsets[p0]), int(offsets[p1])
            c0, c1 = int(code_offsets[p0]), int(code_offsets[p1])
            chunk_index = flat.code_index[c0:c1]
            chunk_values = flat.values[c0:c1] if with_bins else None
            if kept_len is not None:
                v0, v1 = int(visit_offsets_all[p0]), int(visit_offsets_all[p1])
                kept = kept_len[v0:v1]
                if kept.sum() < c1 - c0:
                    parts = np.empty(2 * (v1 - v0), dtype=np.int64)
                    parts[0::2], parts[1::2] = kept, visit_len[v0:v1] - kept
                    kept_code = np.repeat(np.tile([True, False], v1 - v0), parts)
                    chunk_index = chunk_index[kept_code]
                    chunk_values = chunk_values[kept_code] if with_bins else None
            m = len(chunk_index)
            chunk_ids = np.take(name_ids, chunk_index, out=ids[:m], mode="clip")
            chunk_codes = codes[t0:t1]
            mask = np.equal(chunk_codes, -1, out=is_code[: t1 - t0])
            chunk_codes[mask] = chunk_ids
            if with_bins:
                chunk_bins = bins[:m]
                chunk_bins[:] = 0
                self._value_bins(chunk_ids, chunk_values, chunk_bins)
                value_bins[t0:t1][mask] = chunk_bins

        return TokenizedEHR(
            **out,
            offsets=offsets,
            visit_times=visit_times,
            visit_complete=visit_complete,
            visit_offsets=visit_offsets,
            truncated_tokens=truncated,
            dropped_visits=dropped.astype(np.int64),
            index_age=np.asarray(flat.index_age, dtype=np.float32),
        )
