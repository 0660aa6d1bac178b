"""Code groups: the codes that share a prefix of their name (a hierarchy written in the code).

Clinical code systems write their hierarchy into the code: ICD-10 ``"I21.4"`` belongs to
the category ``"I21"``, ATC ``"C10AA05"`` to ``"C10"``. Grouping the vocabulary by a
prefix lets a model share what it learns across the rare codes of one concept: the
time-to-event pre-training tasks (``BEHRTPretrainer(tte_prefix=...)``) and the group
embedding added to each code's own (``code_prefix=...`` of the estimators).
"""

from __future__ import annotations

import numpy as np

__all__ = ["code_groups"]


def code_groups(codes, n_special, prefix=None):
    """Group of every token id: the first ``prefix`` characters of its code.

    Parameters
    ----------
    codes : sequence of str
        The tokenizer's ``codes_``: token id ``i`` is ``codes[i]``; the first
        ``n_special`` are special tokens, in no group.
    n_special : int
        Number of special tokens at the start of ``codes``.
    prefix : int, optional
        Characters of the code that name its group (the whole code as written, a
        vocabulary part such as ``"ICD10CM//"`` included). None: each code is its own
        group.

    Returns
    -------
    group_of_code : ndarray of int64, shape (len(codes),)
        Index of each token's group in ``names``; -1 for the special tokens.
    names : list of str
        The groups' names, sorted.

    Examples
    --------
    >>> ids, names = code_groups(["[PAD]", "I21.4", "I21.9", "E11.2"], n_special=1, prefix=3)
    >>> ids.tolist(), names
    ([-1, 1, 1, 0], ['E11', 'I21'])
    """
    if prefix is not None and (isinstance(prefix, bool) or not isinstance(prefix, (int, np.integer))
                               or prefix < 1):
        raise ValueError(f"a code prefix must be a positive number of characters, got {prefix!r}")
    groups = [str(c) if prefix is None else str(c)[:prefix] for c in codes[n_special:]]
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    group_of_code = np.array([-1] * n_special + [index[g] for g in groups], dtype=np.int64)
    return group_of_code, names
