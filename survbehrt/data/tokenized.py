"""``TokenizedEHR``: a tokenized cohort in a flat, CSR-like layout (what the tokenizer returns).

Split from ``tokenizer.py`` (the vocabulary and the bins, learned by ``EHRTokenizer``):
this is the data structure itself -- its arrays, the per-row and per-visit views
(``subset``, ``lengths_at``, ``n_visits_at``, ``truncation``) -- which the batches, the
token stores and the wide path's counts read without a tokenizer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np

from ._flat import group_arange

__all__ = ["TRUNCATION_WARNING_SHARE", "TokenizedEHR", "row_chunks"]

#: Above this share of truncated rows, ``transform`` warns (see ``max_length``).
TRUNCATION_WARNING_SHARE = 0.05

_TOKEN_FIELDS = ("codes", "age_bins", "visits", "positions", "time_bins", "value_bins")


@dataclass
class TokenizedEHR:
    """A tokenized cohort in a flat, CSR-like layout.

    Patient ``i`` owns tokens ``offsets[i]:offsets[i + 1]`` and visits
    ``visit_offsets[i]:visit_offsets[i + 1]``. Each patient reads
    ``[CLS] s s c c [SEP] c [SEP] ...``: ``[CLS]``, then its static codes ``s`` (no
    time: age bin 0, time bin 0), then the kept visits. ``[CLS]`` and the static codes
    belong to visit 0 and each ``[SEP]`` to the visit it closes.

    Attributes
    ----------
    codes, age_bins, visits, positions, time_bins, value_bins : ndarray of int32, shape (n_tokens,)
        Token id, age bin (0 = padding or no time), visit index and position within the
        patient, the log-scale bin of the time from the visit to the prediction time
        (0 = padding or no time), and the code's value bin (0 = no value).
    offsets : ndarray of int64, shape (n_patients + 1,)
    visit_times : ndarray of float32, shape (n_visits,)
        Years from each kept visit to the prediction time.
    visit_complete : ndarray of bool, shape (n_visits,)
        True when what the kept visit sees under the visit-causal mask (the kept visits
        up to it) is exactly the tokenization of the history cut at that visit, so its
        output does not depend on later visits. Always True for the last visit and for
        patients without truncation.
    visit_offsets : ndarray of int64, shape (n_patients + 1,)
    truncated_tokens : ndarray of int64, shape (n_patients,)
        Tokens cut from each patient by ``max_length`` (dropped visits, codes of an
        over-long last visit, static codes beyond the room).
    dropped_visits : ndarray of int64, shape (n_patients,)
        Oldest visits dropped from each patient: kept visit ``j`` is visit
        ``dropped_visits[i] + j`` of the row.
    index_age : ndarray of float32, shape (n_patients,)
        Age in years at each row's prediction time (with ``visit_times``, the exact
        age of every visit: ``index_age - visit_times``).
    """

    codes: np.ndarray
    age_bins: np.ndarray
    visits: np.ndarray
    positions: np.ndarray
    time_bins: np.ndarray
    value_bins: np.ndarray
    offsets: np.ndarray
    visit_times: np.ndarray
    visit_complete: np.ndarray
    visit_offsets: np.ndarray
    truncated_tokens: np.ndarray
    dropped_visits: np.ndarray
    index_age: np.ndarray

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

    @property
    def n_truncated_rows(self) -> int:
        """Number of patients (rows) that lost tokens to ``max_length``."""
        return int(np.count_nonzero(self.truncated_tokens))

    @property
    def n_truncated_tokens(self) -> int:
        """Number of tokens cut by ``max_length``, all patients together."""
        return int(self.truncated_tokens.sum())

    def lengths_at(self, rows) -> np.ndarray:
        """Number of tokens of the given patients, reading only their offsets.

        Parameters
        ----------
        rows : array-like of int
            Patient positions.

        Returns
        -------
        ndarray of int64, shape (len(rows),)
        """
        rows = np.asarray(rows, dtype=np.int64)
        return (self.offsets[rows + 1] - self.offsets[rows]).astype(np.int64)

    def n_visits_at(self, rows) -> np.ndarray:
        """Number of kept visits of the given patients, reading only their offsets.

        Parameters
        ----------
        rows : array-like of int
            Patient positions.

        Returns
        -------
        ndarray of int64, shape (len(rows),)
        """
        rows = np.asarray(rows, dtype=np.int64)
        return (self.visit_offsets[rows + 1] - self.visit_offsets[rows]).astype(np.int64)

    def decayed_visit_counts_at(self, rows, scales) -> np.ndarray:
        """The kept visits of the given patients, each weighted ``exp(-r / tau)``.

        ``r`` is the years from the visit to the prediction time (``visit_times``,
        negative values counted as 0); one column per time scale ``tau``: the visit
        tempo at that scale, as the wide path's tempo covariates read it at the last
        visit.

        Parameters
        ----------
        rows : array-like of int
            Patient positions.
        scales : sequence of float
            Time scales ``tau`` in years.

        Returns
        -------
        ndarray of float64, shape (len(rows), len(scales))
        """
        rows = np.asarray(rows, dtype=np.int64)
        starts, counts = self.visit_offsets[rows], self.n_visits_at(rows)
        owner = np.repeat(np.arange(len(rows)), counts)
        # each visit's position in the flat arrays: its row's start plus its rank there
        visit = np.repeat(starts, counts) + group_arange(counts)
        before = np.maximum(self.visit_times[visit].astype(np.float64), 0.0)
        return np.stack([np.bincount(owner, weights=np.exp(-before / float(tau)),
                                     minlength=len(rows)) for tau in scales], axis=1)

    def truncation(self, rows=None) -> dict:
        """Counts of what truncation to ``max_length`` cut.

        Parameters
        ----------
        rows : array-like of int, optional
            Count these patients only (default: all).

        Returns
        -------
        dict
            ``rows``, ``truncated_rows``, ``tokens`` (before truncation),
            ``truncated_tokens``, and the shares ``truncated_row_share``,
            ``truncated_token_share``.
        """
        if rows is None:
            n, cut, kept = len(self), self.truncated_tokens, self.n_tokens
        else:
            rows = np.asarray(rows, dtype=np.int64)
            n, cut = len(rows), self.truncated_tokens[rows]
            kept = int(self.lengths_at(rows).sum())
        n_cut_rows, n_cut = int(np.count_nonzero(cut)), int(cut.sum())
        total = kept + n_cut
        return {
            "rows": n,
            "truncated_rows": n_cut_rows,
            "tokens": total,
            "truncated_tokens": n_cut,
            "truncated_row_share": n_cut_rows / n if n else 0.0,
            "truncated_token_share": n_cut / total if total else 0.0,
        }

    def patient(self, i: int) -> dict:
        """The token arrays of one patient, for inspection and tests.

        Parameters
        ----------
        i : int
            Patient position.

        Returns
        -------
        dict of str to ndarray
            Views of the token fields (``codes`` ... ``value_bins``) and of the visit
            fields ``visit_times`` and ``visit_complete`` of that patient.
        """
        sl = slice(self.offsets[i], self.offsets[i + 1])
        vs = slice(self.visit_offsets[i], self.visit_offsets[i + 1])
        out = {name: getattr(self, name)[sl] for name in _TOKEN_FIELDS}
        out["visit_times"] = self.visit_times[vs]
        out["visit_complete"] = self.visit_complete[vs]
        return out

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
        lengths = self.lengths_at(indices)
        tok = np.repeat(self.offsets[indices], lengths) + group_arange(lengths)
        n_vis = self.n_visits_at(indices)
        vis = np.repeat(self.visit_offsets[indices], n_vis) + group_arange(n_vis)
        return TokenizedEHR(
            **{name: getattr(self, name)[tok] for name in _TOKEN_FIELDS},
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            visit_times=self.visit_times[vis],
            visit_complete=self.visit_complete[vis],
            visit_offsets=np.concatenate([[0], np.cumsum(n_vis)]).astype(np.int64),
            truncated_tokens=self.truncated_tokens[indices],
            dropped_visits=self.dropped_visits[indices],
            index_age=self.index_age[indices],
        )

    def nbytes(self) -> int:
        """Memory held by the arrays.

        Returns
        -------
        int
            Bytes.
        """
        return sum(getattr(self, f.name).nbytes for f in fields(self))


def row_chunks(tokens, rows, max_tokens: int = 1 << 20):
    """The given rows of a tokenized cohort, in that order, as subsets of about
    ``max_tokens`` tokens each (sized on the first 1,024 rows' mean length), so that what
    is computed per chunk stays small whatever the cohort's size (in memory or
    memory-mapped).

    Parameters
    ----------
    tokens : TokenizedEHR or TokenStore
    rows : ndarray of int64
    max_tokens : int, default=2**20

    Yields
    ------
    TokenizedEHR
        ``tokens.subset`` of consecutive ``rows``.
    """
    sample = tokens.lengths_at(rows[:1024])
    step = max(1, max_tokens // max(1, int(sample.mean()) if len(sample) else 1))
    for start in range(0, len(rows), step):
        yield tokens.subset(rows[start : start + step])


def _warn_truncation(tokens: TokenizedEHR, max_length: int) -> None:
    report = tokens.truncation()
    if report["truncated_row_share"] > TRUNCATION_WARNING_SHARE:
        warnings.warn(
            f"{report['truncated_rows']:,} of {report['rows']:,} rows "
            f"({report['truncated_row_share']:.1%}) are longer than max_length={max_length} "
            f"tokens: {report['truncated_tokens']:,} of {report['tokens']:,} tokens "
            f"({report['truncated_token_share']:.1%}) were cut, oldest visits first. Raise "
            f"max_length to keep more history (attention cost grows with its square).",
            UserWarning,
            stacklevel=4,
        )
