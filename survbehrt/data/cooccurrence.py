"""Code vectors from the codes' co-occurrence within visits (a start for code embeddings).

Codes recorded together at visits share a meaning: synonyms of one concept (``"K37.04"``
and ``"K37.11"``, or local codes for the same test) are written interchangeably, and a
concept's second code is often recorded beside its first. A pre-trained encoder starts
its code embeddings at random and must find that from its objectives; measured on the
``"synonyms"`` cohort, after pre-training on 44,000 histories the nearest code embedding
of a risk concept's synonym was another synonym of that concept for 37 % of them, while
the codes' within-visit co-occurrence alone names it for 98 % (docs/pretraining.md,
"Code embeddings from co-occurrence").

The vectors are the classic count-based word vectors (Levy and Goldberg's SVD of the
positive pointwise mutual information): ``C[i, j]``, the number of visits recording
both codes ``i`` and ``j`` (each code once per visit, the static codes, which have no
visit time, left out); ``PPMI[i, j] = max(0, log(C[i, j] C / (C[i] C[j])))`` with ``C[i]``
the row sums and ``C`` their total; and the rows of ``U sqrt(S)`` of its truncated SVD.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.utils.extmath import randomized_svd

from .tokenized import row_chunks

__all__ = ["EXACT_SVD_CODES", "cooccurrence_vectors", "visit_cooccurrence"]

#: Up to this many codes the SVD is exact (a dense one: seconds); above, randomized.
EXACT_SVD_CODES = 1000


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


def cooccurrence_vectors(counts, dim: int, norm: float, random_state=0):
    """Code vectors from a co-occurrence matrix: the truncated SVD of its PPMI.

    Parameters
    ----------
    counts : scipy.sparse matrix of shape (V, V)
        :func:`visit_cooccurrence`.
    dim : int
        The vectors' length (the embedding width).
    norm : float
        The Euclidean length every vector is scaled to (a code's direction in the
        co-occurrence space is what the vector carries; ``norm`` matches the random
        initialisation's, ``initializer_range * sqrt(dim)``).
    random_state : int, default=0
        Seeds the randomized SVD (above :data:`EXACT_SVD_CODES` codes with a vector).

    Returns
    -------
    vectors : ndarray of float32, shape (V, dim)
        Zero for codes that share no visit with another code.
    found : ndarray of bool, shape (V,)
        The codes with a vector: those sharing a visit with another code.
    """
    counts = sparse.csr_matrix(counts, dtype=np.float64)
    n_codes = counts.shape[0]
    vectors = np.zeros((n_codes, dim), dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    found = totals > 0
    if found.sum() < 2:
        return vectors, found
    total = totals.sum()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (totals[coo.row] * totals[coo.col]))
    positive = pmi > 0
    ppmi = sparse.csr_matrix((pmi[positive], (coo.row[positive], coo.col[positive])),
                             shape=counts.shape)
    # the SVD of the codes that have a vector (a code with only negative PMI keeps a zero
    # row, and then the zero vector: its direction is unknown)
    idx = np.flatnonzero(found)
    k = min(dim, len(idx))
    block = ppmi[idx][:, idx]
    if len(idx) <= EXACT_SVD_CODES:  # exact (and free of the seed)
        u, s, _ = np.linalg.svd(block.toarray())
        u, s = u[:, :k], s[:k]
    else:
        u, s, _ = randomized_svd(block, k, random_state=random_state)
    part = u * np.sqrt(s)
    length = np.linalg.norm(part, axis=1)
    has = length > 0
    vectors[idx[has], :k] = (part[has] / length[has, None] * norm).astype(np.float32)
    found[idx[~has]] = False
    return vectors, found
