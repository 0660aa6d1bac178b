"""Small hand-made cohorts and tiny estimators shared by the tests."""

import numpy as np
import pandas as pd
from sksurv.util import Surv


def random_cohort(n=40, n_codes=12, max_visits=8, seed=0):
    """A small random cohort in the X contract, with a survival y."""
    rng = np.random.default_rng(seed)
    codes, ages, index_age = [], [], []
    for _ in range(n):
        n_vis = int(rng.integers(1, max_visits + 1))
        visits = [
            [f"C{int(c)}" for c in rng.integers(0, n_codes, size=int(rng.integers(1, 4)))]
            for _ in range(n_vis)
        ]
        a = np.sort(rng.uniform(30, 70, size=n_vis)).round(2).tolist()
        codes.append(visits)
        ages.append(a)
        index_age.append(a[-1] + float(rng.uniform(0, 1)))
    X = pd.DataFrame({"codes": codes, "ages": ages, "index_age": index_age})
    y = Surv.from_arrays(rng.random(n) < 0.5, rng.uniform(0.1, 5.0, size=n))
    y["event"][0] = True  # at least one event whatever the seed
    return X, y


def tempo_cohort(n, seed):
    """Six visits of random codes over 0.3 to 8 years; the hazard is 7.4 times higher with
    three visits or more in the year before the prediction time (the tempo, alone).

    Returns ``X``, ``y`` and the true log-hazard ratio of each row.
    """
    rng = np.random.default_rng(seed)
    rows, risk = [], []
    for _ in range(n):
        ages = six_visit_ages(rng)
        codes = [[f"C{c}" for c in rng.integers(0, 20, 2)] for _ in range(6)]
        index = ages[-1] + 0.01
        rows.append({"codes": codes, "ages": ages.tolist(), "index_age": index})
        risk.append(2.0 * (np.sum(index - ages <= 1.0) >= 3))
    risk = np.array(risk)
    return pd.DataFrame(rows), exponential_outcome(rng, risk), risk


def six_visit_ages(rng):
    """The ages of six visits spread over 0.3 to 8 years, the last at 60 + the span."""
    span = rng.uniform(0.3, 8.0)
    ages = np.sort(rng.uniform(0, span, 6))
    return 60 + ages - ages[-1] + span


def exponential_outcome(rng, risk):
    """Exponential event times at hazard ``0.2 exp(risk)``, censored uniformly on (0, 8) years."""
    time = rng.exponential(1 / (0.2 * np.exp(risk)))
    censor = rng.uniform(0, 8, len(risk))
    return Surv.from_arrays(time <= censor, np.minimum(time, censor))


def tempo_scores(make, scales, n_train):
    """C of the oracle, and of ``make(s)`` fitted on :func:`tempo_cohort` for s in (None, scales).

    ``make(s)`` returns an unfitted estimator with ``decay_scales=s``; the test cohort is
    2,000 patients of another seed.
    """
    from survbehrt.metrics import harrell_c

    X, y, _ = tempo_cohort(n_train, 0)
    X_test, y_test, true_risk = tempo_cohort(2000, 1)
    scores = {s: harrell_c(y_test, make(s).fit(X, y).predict(X_test)) for s in (None, scales)}
    return harrell_c(y_test, true_risk), scores


def no_signal_competing(n, seed):
    """Histories unrelated to the outcome; two causes (rates 0.10, 0.05), uniform censoring."""
    from survbehrt.data import competing_y

    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"codes": [[["A", "B"]]] * n, "ages": [[60.0]] * n,
                      "index_age": np.full(n, 60.5)})
    latent = rng.exponential([10.0, 20.0], size=(n, 2))
    censor = rng.uniform(0, 10, size=n)
    first = latent.min(axis=1)
    event = np.where(first <= censor, 1 + latent.argmin(axis=1), 0)
    return X, competing_y(event, np.minimum(first, censor), causes=["a", "b"])


def as_arrow(X, dictionary=False):
    """``X`` with its list columns Arrow-backed (``pd.ArrowDtype``), as a user may build it.

    ``dictionary=True`` stores the code strings as dictionary arrays, as
    :func:`~survbehrt.data.from_events` does; else as plain strings.
    """
    import pyarrow as pa

    X = X.copy()
    for name in ("codes", "ages", "static", "values"):
        if name in X.columns:
            arr_type = None
            if dictionary and name in ("codes", "static"):
                # built as dictionaries directly: pyarrow 12 cannot cast strings to them
                leaf = pa.dictionary(pa.int32(), pa.string())
                arr_type = pa.list_(pa.list_(leaf)) if name == "codes" else pa.list_(leaf)
            arr = pa.array(X[name].tolist(), type=arr_type)
            X[name] = pd.Series(pd.arrays.ArrowExtensionArray(arr), index=X.index)
    return X


def tiny_estimator(**params):
    """A tiny, fast, reproducible survival estimator (``params`` override)."""
    from survbehrt import BEHRTSurvivalEstimator

    base = dict(
        embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=2, batch_size=32,
        time_bins=5, early_stopping=None, validation_fraction=0, random_state=0, n_threads=1,
    )
    return BEHRTSurvivalEstimator(**{**base, **params})


def tiny_pretrainer(**params):
    """A tiny, fast, reproducible pretrainer (``params`` override)."""
    from survbehrt import BEHRTPretrainer

    base = dict(
        embedding_dim=16, num_layers=1, num_heads=2, ff_dim=32, max_epochs=1, random_state=0,
        n_threads=1,
    )
    return BEHRTPretrainer(**{**base, **params})
