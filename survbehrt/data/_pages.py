"""numpy's huge-page advice switched off while the data path builds its large arrays.

numpy asks the kernel to back every array of 4 MiB or more with transparent huge pages
(``madvise(MADV_HUGEPAGE)``). Where transparent huge pages are on "madvise" with
defragmentation on "madvise" — the default of many Linux distributions — and memory is
fragmented, the first touch of such an array makes the kernel compact memory before it can
hand out a 2 MiB page. On this project's development machine a first conversion and
tokenization of 50 M MEDS events took 31.6 s with the advice and 8.5 s without it
(``benchmarks/meds_speed.py --tokenize [--numpy-advice]``), in a path that writes each
large array once and reads it sequentially (where huge pages save almost nothing).
numpy has a switch for exactly this (its ``NUMPY_MADVISE_HUGEPAGE`` environment variable,
read at import); :func:`plain_pages` sets the same switch for the duration of one call
and restores it after.

The switch is process-wide: arrays that another thread allocates during the call get no
huge-page advice either (a speed matter only; values are never affected). A user who set
``NUMPY_MADVISE_HUGEPAGE=1`` explicitly keeps the advice.
"""

from __future__ import annotations

import functools
import os


def _setter():
    """numpy's private setter of the advice (``None`` where this numpy has none)."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # numpy < 2
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            return None
    return _set_madvise_hugepage


_SET_ADVICE = _setter()


def plain_pages(function):
    """Decorate ``function`` to run with numpy's huge-page advice off (see the module docstring).

    Parameters
    ----------
    function : callable

    Returns
    -------
    callable
        ``function`` wrapped; the previous setting is restored however the call ends.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if _SET_ADVICE is None or os.environ.get("NUMPY_MADVISE_HUGEPAGE") == "1":
            return function(*args, **kwargs)
        previous = _SET_ADVICE(False)
        try:
            return function(*args, **kwargs)
        finally:
            _SET_ADVICE(previous)

    return wrapper
