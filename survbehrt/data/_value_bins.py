"""The tokenizer's value bins: quantile cut points of each code's numeric values.

Split from ``tokenizer.py``: the statistics ``EHRTokenizer.fit`` runs over the values
of a cohort (grouped by code with a counting sort, then each code's quantiles), apart
from the vocabulary and the token layout.
"""

from __future__ import annotations

import numpy as np

from ._flat import group_arange

__all__ = ["quantile_edges"]

#: Up to this many codes with values, each code's values are sorted on their own.
_SEGMENT_SORTS = 50_000


def _grouped_values(code_index, values, n_names, chunk):
    """The values (NaN: none) of each distinct code, grouped by its ``code_index``.

    Returns the grouped values, and the first position and count of each code. A counting
    sort in two passes over chunks of the codes: the only cohort-sized array is the
    result.
    """
    step = max(chunk, 4 * n_names)  # a chunk's per-code arrays stay a small share
    n = len(code_index)
    ok_buf = np.empty(min(step, n), dtype=bool)

    def chunks():
        for a in range(0, n, step):
            b = min(a + step, n)
            ok = np.isnan(values[a:b], out=ok_buf[: b - a])
            np.logical_not(ok, out=ok)
            yield code_index[a:b][ok], values[a:b][ok]

    count = np.zeros(n_names, dtype=np.int64)
    for names, _ in chunks():
        count += np.bincount(names, minlength=n_names)
    start = np.cumsum(count) - count
    grouped = np.empty(int(count.sum()), dtype=np.float64)
    cursor = start.copy()
    for names, vals in chunks():
        if not len(names):
            continue
        # group the chunk by code (a stable radix sort when the codes fit 16 bits); each
        # code's run lands at that code's cursor
        order = np.argsort(
            names.astype(np.uint16) if n_names <= 2**16 else names, kind="stable"
        )
        in_chunk = np.bincount(names, minlength=n_names)
        shift = cursor - (np.cumsum(in_chunk) - in_chunk)
        dest = shift[names[order]]
        dest += np.arange(len(names))
        grouped[dest] = vals[order]
        cursor += in_chunk
    return grouped, start, count


def quantile_edges(name_ids, code_index, values, n_bins: int, n_special: int, chunk: int) -> dict:
    """Cut points of each code id: its values' quantiles ``1/n … (n-1)/n``, unique.

    ``name_ids`` is the id of each distinct code, ``code_index`` the code of each value
    (a position in ``name_ids``), ``values`` the values (NaN: none); ids below
    ``n_special`` ([UNK]) get none; ``chunk`` values at least are grouped at a time. Vectorised over codes: the values grouped by code
    and each group sorted, then numpy's "linear" quantile (``a + (b - a) * t``, from the
    upper side when ``t >= 0.5``, as numpy).
    """
    values, start, count = _grouped_values(code_index, values, len(name_ids), chunk)
    # distinct codes are distinct ids, but for those that map to [UNK]: left out
    uniq = np.flatnonzero((count > 0) & (name_ids >= n_special))
    if not len(uniq):
        return {}
    start, count = start[uniq], count[uniq]
    if len(uniq) <= _SEGMENT_SORTS:
        for a, b in zip(start.tolist(), (start + count).tolist()):
            values[a:b].sort()
    else:  # many codes: one sort by (code, value) beats a Python loop
        keep = np.repeat(start, count) + group_arange(count)
        values = values[keep]
        values = values[np.lexsort((values, np.repeat(np.arange(len(uniq)), count)))]
        start = np.cumsum(count) - count
    q = np.arange(1, n_bins) / n_bins
    pos = q[None, :] * (count[:, None] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, count[:, None] - 1)
    t = pos - lo
    a, b = values[start[:, None] + lo], values[start[:, None] + hi]
    diff = b - a
    edges = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return {int(i): np.unique(e) for i, e in zip(name_ids[uniq], edges)}
