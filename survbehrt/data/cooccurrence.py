"""Each code's neighbours by within-visit co-occurrence (for shared code parameters).

Codes recorded together at visits share a meaning: synonyms of one concept (``"K37.04"``
and ``"K37.11"``, or local codes for the same test) are written interchangeably, and a
concept's second code is often recorded beside its first. Where no hierarchy names the
concepts (``code_prefix``), the co-occurrence can: measured on the ``"synonyms"``
cohort, the code whose row of positive pointwise mutual information was nearest a risk
code's own was a synonym of its concept for every one of them (docs/pretraining.md,
"Code embeddings from co-occurrence").

The definitions: ``C[i, j]``, the number of visits recording both codes ``i`` and ``j``
(each code once per visit; the static codes, which have no visit time, left out);
``PMI[i, j] = log(C[i, j] C / (C[i] C[j]))`` with ``C[i]`` the row sums and ``C`` their
total. A code's neighbours are the codes with ``C[i, j] >= min_count`` and a positive
``PMI``, the ``k`` highest, weighted by their ``PMI`` divided by the kept ones' sum.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._flat import group_arange
from .tokenized import row_chunks

__all__ = ["cooccurrence_neighbours", "visit_cooccurrence"]


def visit_cooccurrence(tokens, vocab_size: int, n_special: int, rows=None):
    """How many visits record each pair of codes.

    Parameters
    ----------
    tokens : TokenizedEHR or TokenStore
        A tokenized cohort (read in chunks of about a million tokens).
    vocab_size, n_special : int
        The tokenizer's vocabulary size and its number of special tokens (ids below it,
        which are not counted).
    rows : array-like of int, optional
        The patients to count (default: all).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (vocab_size, vocab_size)
        Symmetric; entry ``(i, j)``, ``i != j``, the number of visits at which both
        codes ``i`` and ``j`` were recorded; the diagonal is zero. Static codes (no visit
        time: age bin 0) are not counted.
    """
    rows = np.arange(len(tokens)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = sparse.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    for part in row_chunks(tokens, rows):
        row = np.repeat(np.arange(len(part)), part.lengths)
        keep = (part.codes >= n_special) & (part.age_bins > 0)
        # the visit of each kept token, numbered within the chunk; a code once per visit
        visit = part.visit_offsets[row[keep]] + part.visits[keep]
        codes = part.codes[keep].astype(np.int64)
        key = np.unique(visit * vocab_size + codes)
        n_visits = int(part.visit_offsets[-1])
        at = sparse.csr_matrix((np.ones(len(key)), (key // vocab_size, key % vocab_size)),
                               shape=(n_visits, vocab_size))
        out = out + (at.T @ at).tocsr()
    out.setdiag(0.0)
    out.eliminate_zeros()
    return out


def cooccurrence_neighbours(counts, k: int, min_count: int = 1):
    """Each code's ``k`` strongest co-occurring codes and their weights.

    Parameters
    ----------
    counts : scipy.sparse matrix of shape (V, V)
        :func:`visit_cooccurrence`.
    k : int
        Neighbours kept per code (at most).
    min_count : int, default=1
        A pair must share at least this many visits: the PMI of a pair seen together
        at one visit rests on that visit (small cohorts have many such pairs).

    Returns
    -------
    ids : ndarray of int64, shape (V, k)
        Each code's neighbours, strongest first (ties: the lower id first); 0 (the
        padding id) where it has fewer than ``k``.
    weights : ndarray of float32, shape (V, k)
        Their PMI over the sum of the code's kept PMIs (each row sums to 1, or is zero
        for a code without neighbours); 0 beside the padding ids.
    """
    counts = sparse.csr_matrix(counts, dtype=np.float64)
    n_codes = counts.shape[0]
    ids = np.zeros((n_codes, k), dtype=np.int64)
    weights = np.zeros((n_codes, k), dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    keep = coo.data >= min_count
    row, col, count = coo.row[keep], coo.col[keep], coo.data[keep]
    pmi = np.log(count * totals.sum() / (totals[row] * totals[col]))
    positive = pmi > 0
    row, col, pmi = row[positive], col[positive], pmi[positive]
    # by code, then PMI descending, then neighbour id: each code's run, strongest first
    order = np.lexsort((col, -pmi, row))
    row, col, pmi = row[order], col[order], pmi[order]
    rank = group_arange(np.bincount(row, minlength=n_codes))
    top = rank < k
    row, col, pmi, rank = row[top], col[top], pmi[top], rank[top]
    ids[row, rank] = col
    sums = np.bincount(row, weights=pmi, minlength=n_codes)
    weights[row, rank] = pmi / sums[row]
    return ids, weights
