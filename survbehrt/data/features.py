"""Count features: the bag-of-codes baseline representation of a patient.

:class:`CodeCountTransformer` turns the patient frame into one row of code counts
per patient (plus the index age and the number of visits), so that the classical
survival models of scikit-survival (Cox, Coxnet, Random Survival Forest, gradient
boosting) can be fitted on the same ``X`` as the sequence models, in a Pipeline.
What these features cannot see (the order, timing and tempo of the visits) is what a
sequence model can add.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .validation import flatten_ehr

__all__ = ["CodeCountTransformer"]


def _code_rows(flat) -> np.ndarray:
    """Patient row of every code of a flattened cohort."""
    visit_row = np.repeat(np.arange(flat.n_patients), flat.n_visits)
    return np.repeat(visit_row, flat.visit_lengths)


class CodeCountTransformer(TransformerMixin, BaseEstimator):
    """Code counts per patient (a bag of codes), plus index age and number of visits.

    ``fit`` learns the vocabulary from the training rows only; ``transform`` counts,
    for every patient, how often each vocabulary code occurs over all visits. Codes
    not in the vocabulary (unseen in ``fit``, or filtered out by ``min_frequency`` /
    ``max_features``) are ignored: a count model has no column for them. The visit
    structure (order, timing, tempo) is lost by design; this is the baseline that
    sequence models are compared with.

    Parameters
    ----------
    min_frequency : int or float, default=1
        Keep codes that occur in at least this many training patients (an int >= 1),
        or in at least this fraction of them (a float in (0, 1)).
    log : bool, default=True
        Return ``log1p`` of the counts (and of the number of visits), which suits the
        log-linear hazard of Cox models better than raw counts.
    include_age : bool, default=True
        Append the ``index_age`` column (in years; the last visit's age when ``X`` has
        no ``index_age``).
    include_n_visits : bool, default=True
        Append the number of visits (``log1p`` of it with ``log=True``).
    max_features : int or None, default=None
        Keep only the ``max_features`` codes present in the most training patients
        (ties broken by the code string).
    sparse_output : bool, default=False
        Return a ``scipy.sparse`` CSR matrix instead of a dense array.

    Attributes
    ----------
    vocabulary_ : dict of str to int
        Code to column index; columns are the codes in sorted order.
    codes_ : ndarray of object, shape (n_codes,)
        The vocabulary codes in column order.
    code_frequency_ : ndarray of int64, shape (n_codes,)
        Number of training patients with each vocabulary code.
    n_features_out_ : int
        Number of output columns.

    See Also
    --------
    survbehrt.data.tokenizer.EHRTokenizer : The sequence models' representation.

    Examples
    --------
    >>> import pandas as pd
    >>> from survbehrt.data.features import CodeCountTransformer
    >>> X = pd.DataFrame({
    ...     "codes": [[["I10", "E11"], ["I10"]], [["J45"]]],
    ...     "ages": [[60.0, 61.0], [30.0]],
    ...     "index_age": [61.5, 30.2],
    ... })
    >>> cct = CodeCountTransformer(log=False).fit(X)
    >>> cct.get_feature_names_out().tolist()
    ['count__E11', 'count__I10', 'count__J45', 'index_age', 'n_visits']
    >>> cct.transform(X)
    array([[ 1. ,  2. ,  0. , 61.5,  2. ],
           [ 0. ,  0. ,  1. , 30.2,  1. ]])

    In a Pipeline with a Cox model:

    >>> from sklearn.pipeline import make_pipeline
    >>> from sksurv.linear_model import CoxPHSurvivalAnalysis
    >>> from survbehrt.datasets import make_synthetic_ehr
    >>> X, y, _ = make_synthetic_ehr(n_patients=300, scenario="counts", random_state=0)
    >>> model = make_pipeline(CodeCountTransformer(min_frequency=10),
    ...                       CoxPHSurvivalAnalysis(alpha=1.0)).fit(X, y)
    >>> bool(0.5 < model.score(X, y) <= 1.0)
    True
    """

    def __init__(
        self,
        min_frequency=1,
        log=True,
        include_age=True,
        include_n_visits=True,
        max_features=None,
        sparse_output=False,
    ):
        self.min_frequency = min_frequency
        self.log = log
        self.include_age = include_age
        self.include_n_visits = include_n_visits
        self.max_features = max_features
        self.sparse_output = sparse_output

    def _check_params(self, n_patients):
        mf = self.min_frequency
        if isinstance(mf, numbers.Integral) and not isinstance(mf, bool):
            if mf < 1:
                raise ValueError(
                    f"min_frequency must be an int >= 1 or a float in (0, 1); got {mf!r}."
                )
            threshold = int(mf)
        elif isinstance(mf, numbers.Real) and 0.0 < mf < 1.0:
            threshold = max(1, int(np.ceil(mf * n_patients)))
        else:
            raise ValueError(f"min_frequency must be an int >= 1 or a float in (0, 1); got {mf!r}.")
        if self.max_features is not None and not (
            isinstance(self.max_features, numbers.Integral) and self.max_features >= 1
        ):
            raise ValueError(
                f"max_features must be None or an int >= 1; got {self.max_features!r}."
            )
        return threshold

    def fit(self, X, y=None):
        """Learn the code vocabulary from the training patients.

        Parameters
        ----------
        X : pandas.DataFrame
            The patient frame (columns ``codes``, ``ages``, optional ``index_age``).
        y : ignored
            Accepted for Pipeline compatibility.

        Returns
        -------
        self : CodeCountTransformer
            The fitted transformer.
        """
        flat = flatten_ehr(X)
        threshold = self._check_params(flat.n_patients)
        ids, uniques = flat.code_index, flat.code_names
        rows = _code_rows(flat)
        # Document frequency: in how many patients each code occurs (repeats count once).
        pairs = np.unique(rows.astype(np.int64) * len(uniques) + ids)
        freq = (
            np.bincount(pairs % len(uniques), minlength=len(uniques))
            if len(uniques)
            else np.zeros(0, np.int64)
        )
        uniques = np.asarray(uniques, dtype=object)
        keep = freq >= threshold
        codes, freq = uniques[keep], freq[keep]
        if self.max_features is not None and len(codes) > self.max_features:
            # Most frequent first, ties by code; then back to sorted order.
            top = np.lexsort((codes.astype(str), -freq))[: self.max_features]
            codes, freq = codes[top], freq[top]
        order = np.argsort(codes.astype(str), kind="stable")
        self.codes_ = codes[order]
        self.code_frequency_ = freq[order].astype(np.int64)
        self.vocabulary_ = {c: j for j, c in enumerate(self.codes_.tolist())}
        self.n_features_out_ = (
            len(self.codes_) + bool(self.include_age) + bool(self.include_n_visits)
        )
        return self

    def transform(self, X):
        """Count the vocabulary codes of each patient.

        Parameters
        ----------
        X : pandas.DataFrame
            The patient frame.

        Returns
        -------
        Xt : ndarray of float64 or scipy.sparse.csr_matrix, shape (n_patients, n_features_out_)
            Code counts (``log1p`` with ``log=True``) in the order of ``codes_``, then
            ``index_age`` and the number of visits when included.
        """
        check_is_fitted(self, "vocabulary_")
        flat = flatten_ehr(X)
        n = flat.n_patients
        col = pd.Index(self.codes_, dtype=object).get_indexer(flat.code_names)[flat.code_index]
        known = col >= 0
        counts = sp.csr_matrix(
            (np.ones(int(known.sum())), (_code_rows(flat)[known], col[known])),
            shape=(n, len(self.codes_)),
            dtype=np.float64,
        )
        counts.sum_duplicates()
        if self.log:
            counts.data = np.log1p(counts.data)
        extra = []
        if self.include_age:
            extra.append(flat.index_age.astype(np.float64))
        if self.include_n_visits:
            n_vis = flat.n_visits.astype(np.float64)
            extra.append(np.log1p(n_vis) if self.log else n_vis)
        if extra:
            counts = sp.hstack([counts, sp.csr_matrix(np.column_stack(extra))], format="csr")
        if self.sparse_output:
            return counts
        return counts.toarray()

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns.

        Parameters
        ----------
        input_features : ignored
            The input is a patient frame, not feature columns.

        Returns
        -------
        names : ndarray of object, shape (n_features_out_,)
            ``"count__<code>"`` for each code, then ``"index_age"`` and ``"n_visits"``
            when included.
        """
        check_is_fitted(self, "vocabulary_")
        names = [f"count__{c}" for c in self.codes_.tolist()]
        if self.include_age:
            names.append("index_age")
        if self.include_n_visits:
            names.append("n_visits")
        return np.asarray(names, dtype=object)
