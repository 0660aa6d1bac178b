"""Tokenized cohorts on disk: written chunk by chunk, read back memory-mapped.

A store is a folder with one ``.npy`` file per array of a
:class:`~survbehrt.data.TokenizedEHR` and a ``store.json`` that holds the format
version, the counts and the fitted tokenizer (``EHRTokenizer.to_dict()``), so that a
store describes itself. :class:`TokenStoreWriter` appends cohorts (row batches) to
the files as they come and writes the ``.npy`` headers and ``store.json`` at
``close``; :class:`TokenStore` opens a store with its arrays memory-mapped
(read-only), so batches read only their own patients' tokens and a cohort's size is
bounded by the disk, not the memory.

The estimators take a :class:`TokenStore` (or its folder) in place of the patient
frame; see ``docs/scaling.md``.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import fields
from pathlib import Path

import numpy as np

from .tokenized import _TOKEN_FIELDS, TokenizedEHR, _warn_truncation
from .tokenizer import EHRTokenizer
from .validation import ehr_columns, flatten_ehr

__all__ = ["STORE_VERSION", "TokenStore", "TokenStoreWriter", "load_tokens", "write_tokens"]

#: Format version of ``store.json``; a store of another version is refused.
STORE_VERSION = 1
_FORMAT = "survbehrt-token-store"
_META = "store.json"
_DTYPES = {
    **{name: np.dtype(np.int32) for name in _TOKEN_FIELDS},
    "offsets": np.dtype(np.int64),
    "visit_times": np.dtype(np.float32),
    "visit_complete": np.dtype(bool),
    "visit_offsets": np.dtype(np.int64),
    "truncated_tokens": np.dtype(np.int64),
    "dropped_visits": np.dtype(np.int64),
    "index_age": np.dtype(np.float32),
}
assert set(_DTYPES) == {f.name for f in fields(TokenizedEHR)}
# What indexes each array: tokens, visits or patients (offsets: patients + 1).
_TOKEN_ARRAYS = _TOKEN_FIELDS
_VISIT_ARRAYS = ("visit_times", "visit_complete")
_ROW_ARRAYS = ("truncated_tokens", "dropped_visits", "index_age")


def _header(dtype: np.dtype, n: int) -> dict:
    return {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)}


class TokenStoreWriter:
    """Write a tokenized cohort to a folder, one chunk of patients at a time.

    Each :meth:`append` adds the chunk's arrays to the end of the ``.npy`` files
    (offsets shifted by what is already written); :meth:`close` writes the final
    ``.npy`` headers (in place: numpy leaves room in a header for the length to grow)
    and ``store.json``. A folder without ``store.json`` (a writer that never closed) is
    not a store: :class:`TokenStore` refuses it.

    Parameters
    ----------
    folder : str or path-like
        Created if absent; must not already hold a store unless ``overwrite``.
    tokenizer : EHRTokenizer
        The fitted tokenizer that made the chunks, saved in ``store.json``.
    overwrite : bool, default=False
        Replace a store already in ``folder``.
    columns : list of str, optional
        The patient-frame columns the chunks were made from (``codes``, ``ages``,
        ``index_age``, ``static``, ``values``), saved so that an estimator fitted on the
        store knows them (its ``feature_names_in_``).

    Examples
    --------
    >>> import tempfile
    >>> from survbehrt.data import EHRTokenizer, TokenStore, TokenStoreWriter
    >>> from survbehrt.datasets import make_synthetic_ehr
    >>> X, y, _ = make_synthetic_ehr(n_patients=50, random_state=0)
    >>> tok = EHRTokenizer().fit(X)
    >>> folder = tempfile.mkdtemp()
    >>> with TokenStoreWriter(folder, tok, overwrite=True) as w:
    ...     w.append(tok.transform(X.iloc[:20]))
    ...     w.append(tok.transform(X.iloc[20:]))
    >>> len(TokenStore(folder))
    50
    """

    def __init__(self, folder, tokenizer: EHRTokenizer, overwrite: bool = False, columns=None):
        self.folder = Path(folder)
        self.columns = None if columns is None else [str(c) for c in columns]
        self._state = tokenizer.to_dict()  # also checks that it is fitted
        self._max_length = int(tokenizer.max_length)
        if (self.folder / _META).exists():
            if not overwrite:
                raise FileExistsError(f"{self.folder} already holds a token store; pass "
                                      f"overwrite=True to replace it.")
            os.remove(self.folder / _META)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files = {}
        for name, dtype in _DTYPES.items():
            f = open(self.folder / f"{name}.npy", "wb")
            np.lib.format.write_array_header_1_0(f, _header(dtype, 0))
            self._header_len = f.tell()  # the same for every array (64-byte aligned)
            self._files[name] = f
        self._n = {"rows": 0, "tokens": 0, "visits": 0}
        for name in ("offsets", "visit_offsets"):
            self._files[name].write(np.zeros(1, dtype=np.int64).tobytes())
        self.closed = False

    def __len__(self) -> int:
        return self._n["rows"]

    def append(self, tokens: TokenizedEHR) -> None:
        """Add a chunk of patients after those already written.

        Parameters
        ----------
        tokens : TokenizedEHR
            Made by the writer's tokenizer.
        """
        if self.closed:
            raise ValueError("the writer is closed")
        if not isinstance(tokens, TokenizedEHR):
            raise TypeError(f"append takes a TokenizedEHR; got {type(tokens).__name__}.")
        n_tok, n_vis = int(tokens.offsets[-1]), int(tokens.visit_offsets[-1])
        sizes = {**dict.fromkeys(_TOKEN_ARRAYS, n_tok), **dict.fromkeys(_VISIT_ARRAYS, n_vis),
                 **dict.fromkeys(_ROW_ARRAYS, len(tokens))}
        for name, n in sizes.items():
            if len(getattr(tokens, name)) != n:
                raise ValueError(f"chunk array {name!r} has {len(getattr(tokens, name))} entries; "
                                 f"its offsets say {n}.")
        for name in sizes:
            self._files[name].write(np.ascontiguousarray(getattr(tokens, name),
                                                         dtype=_DTYPES[name]).tobytes())
        for name, base in (("offsets", self._n["tokens"]), ("visit_offsets", self._n["visits"])):
            shifted = np.asarray(getattr(tokens, name)[1:], dtype=np.int64) + base
            self._files[name].write(shifted.tobytes())
        self._n["rows"] += len(tokens)
        self._n["tokens"] += n_tok
        self._n["visits"] += n_vis

    def close(self) -> None:
        """Write the ``.npy`` headers and ``store.json``; the store can then be opened."""
        if self.closed:
            return
        n = {**dict.fromkeys(_TOKEN_ARRAYS, self._n["tokens"]),
             **dict.fromkeys(_VISIT_ARRAYS, self._n["visits"]),
             **dict.fromkeys(_ROW_ARRAYS, self._n["rows"]),
             "offsets": self._n["rows"] + 1, "visit_offsets": self._n["rows"] + 1}
        for name, f in self._files.items():
            end = f.tell()
            f.seek(0)
            np.lib.format.write_array_header_1_0(f, _header(_DTYPES[name], n[name]))
            if f.tell() != self._header_len:  # numpy pads headers for this; never expected
                raise RuntimeError(f"the .npy header of {name!r} changed size; store not written")
            f.seek(end)
            f.close()
        meta = {"format": _FORMAT, "version": STORE_VERSION, "n_patients": self._n["rows"],
                "n_tokens": self._n["tokens"], "n_visits": self._n["visits"],
                "columns": self.columns, "tokenizer": self._state}
        tmp = self.folder / (_META + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.folder / _META)  # the store exists once this file does
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # leave no half-written store behind that looks complete
            for f in self._files.values():
                f.close()
            self.closed = True


def write_tokens(tokenizer: EHRTokenizer, X, folder, batch_size: int = 50_000,
                 overwrite: bool = False) -> TokenStore:
    """Tokenize a cohort in row batches with a fitted tokenizer and write it to a store.

    The vocabulary is the tokenizer's (fit it on the training rows first:
    ``EHRTokenizer().fit(X_train)``); only one batch is tokenized in memory at a time.

    Parameters
    ----------
    tokenizer : EHRTokenizer
        Fitted.
    X : pandas.DataFrame or iterable of pandas.DataFrame
        The patient frame (cut into ``batch_size`` rows), or frames to write in turn
        (e.g. one per file, read one at a time).
    folder : str or path-like
    batch_size : int, default=50_000
        Rows tokenized at once when ``X`` is one frame.
    overwrite : bool, default=False
        Replace a store already in ``folder``.

    Returns
    -------
    TokenStore
        The written store, opened memory-mapped.

    Warns
    -----
    UserWarning
        When more than ``TRUNCATION_WARNING_SHARE`` of the rows were truncated (once,
        over the whole store).
    """
    if hasattr(X, "iloc"):
        frames = (X.iloc[i : i + batch_size] for i in range(0, len(X), int(batch_size)))
    else:
        frames = iter(X)
    first = next(frames, None)
    columns = None if first is None else ehr_columns(first).tolist()
    with TokenStoreWriter(folder, tokenizer, overwrite=overwrite, columns=columns) as writer:
        for frame in [] if first is None else itertools.chain([first], frames):
            writer.append(tokenizer.transform_flat(flatten_ehr(frame), warn=False))
    store = TokenStore(folder)
    _warn_truncation(store.tokens, int(tokenizer.max_length))
    return store


class TokenStore:
    """A tokenized cohort on disk, opened with its arrays memory-mapped.

    Parameters
    ----------
    folder : str or path-like
        A folder written by :class:`TokenStoreWriter` or :func:`write_tokens`.
    mmap : bool, default=True
        Map the arrays read-only (pages are read on demand and can be dropped by the
        system); False reads them into memory.

    Attributes
    ----------
    folder : pathlib.Path
    tokens : TokenizedEHR
        The whole stored cohort (its arrays ``numpy.memmap`` with ``mmap``).
    tokenizer : EHRTokenizer
        The fitted tokenizer that made it.
    rows : ndarray of int64
        The stored patients this object stands for, in order: all of them for an
        opened store; a subset for ``store[idx]`` (a view: nothing is copied).

    Notes
    -----
    A store is indexable like an array of patients (``len``, ``shape``,
    ``store[idx]`` with integer or boolean arrays and slices), so scikit-learn's
    splitters and ``cross_validate`` can cut it into folds. The estimators accept it
    in place of the patient frame (``fit(store, y)``, ``predict(store)``) and use its
    tokenizer; ``y`` aligns with ``rows`` by position.
    """

    def __init__(self, folder, mmap: bool = True):
        self.folder = Path(folder)
        meta_path = self.folder / _META
        if not self.folder.is_dir():
            raise FileNotFoundError(f"no token store at {self.folder}: no such folder")
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{self.folder} is not a token store (no {_META}; a writer that was not "
                f"closed leaves none)"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT or meta.get("version") != STORE_VERSION:
            raise ValueError(
                f"{meta_path} is format {meta.get('format')!r} version {meta.get('version')!r}; "
                f"this survbehrt reads {_FORMAT!r} version {STORE_VERSION}. Write the store "
                f"again with this version."
            )
        self.meta = meta
        expected = {**dict.fromkeys(_TOKEN_ARRAYS, meta["n_tokens"]),
                    **dict.fromkeys(_VISIT_ARRAYS, meta["n_visits"]),
                    **dict.fromkeys(_ROW_ARRAYS, meta["n_patients"]),
                    "offsets": meta["n_patients"] + 1, "visit_offsets": meta["n_patients"] + 1}
        arrays = {}
        for name, dtype in _DTYPES.items():
            arr = np.load(self.folder / f"{name}.npy", mmap_mode="r" if mmap else None)
            if arr.dtype != dtype or arr.shape != (expected[name],):
                raise ValueError(f"{self.folder / name}.npy holds {arr.dtype} {arr.shape}; "
                                 f"{_META} says {dtype} ({expected[name]},)")
            arrays[name] = arr
        self.tokens = TokenizedEHR(**arrays)
        self.tokenizer = EHRTokenizer.from_dict(meta["tokenizer"])
        self.rows = np.arange(meta["n_patients"], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple:
        """``(n_rows,)``: the store indexes like a one-dimensional array of patients."""
        return (len(self.rows),)

    def __getitem__(self, key) -> TokenStore:
        if isinstance(key, tuple):  # scikit-learn indexes arrays as X[idx, ...]
            if len(key) != 2 or key[1] is not Ellipsis:
                raise IndexError("a token store has one axis (patients)")
            key = key[0]
        if isinstance(key, (int, np.integer)):
            key = [key]
        view = object.__new__(TokenStore)
        view.__dict__.update(self.__dict__)
        view.rows = self.rows[key]
        return view

    def __repr__(self) -> str:
        return (f"TokenStore({str(self.folder)!r}: {len(self):,} of "
                f"{self.meta['n_patients']:,} patients, {self.meta['n_tokens']:,} tokens)")

    def to_tokens(self) -> TokenizedEHR:
        """The rows of this store (or view) as an in-memory :class:`TokenizedEHR`.

        Returns
        -------
        TokenizedEHR
            A copy: only for cohorts that fit in memory.
        """
        return self.tokens.subset(self.rows)


def load_tokens(folder, mmap: bool = True) -> TokenizedEHR:
    """The cohort of a token store (``TokenStore(folder, mmap).tokens``).

    Parameters
    ----------
    folder : str or path-like
    mmap : bool, default=True
        Memory-map the arrays (read-only) instead of reading them.

    Returns
    -------
    TokenizedEHR
    """
    return TokenStore(folder, mmap=mmap).tokens
