"""The public synthetic generators: :func:`make_synthetic_ehr` and :func:`make_unlabelled_pool`.

Each kind of cohort (``scenario``) has its own module: :mod:`.clusters` (``"sequence"``
and ``"counts"``), :mod:`.latent` (``"latent"``) and :mod:`.synonyms` (``"synonyms"``);
:func:`simulate` dispatches to them, and :mod:`.events` writes any of them as an event
table.
"""

from __future__ import annotations

from sksurv.util import Surv

from . import clusters
from ._common import rng_of, to_frame

__all__ = ["make_synthetic_ehr"]

SCENARIOS = ("sequence", "counts")


def simulate(n_patients, scenario, rng, **params):
    """Draw a cohort of kind ``scenario`` as a sim (see :mod:`._common`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}; got {scenario!r}.")
    return clusters.simulate(n_patients, scenario, rng, **params)


def _info(sim, scenario, effect_scale):
    import pandas as pd

    return {
        "scenario": scenario,
        "signal_codes": sim["signal_codes"],
        "components": pd.DataFrame(sim["components"]),
        "effects": sim["effects"],
        "effect_scale": float(effect_scale),
        **sim["extra"],
    }


def make_synthetic_ehr(
    n_patients=4000,
    scenario="sequence",
    random_state=None,
    *,
    n_codes=120,
    n_clusters=8,
    cluster_size=10,
    mean_visits=8.0,
    max_visits=30,
    mean_codes_per_visit=2.0,
    zipf_exponent=1.1,
    followup=(2.0, 8.0),
    dropout_rate=0.05,
    effect_scale=1.0,
    return_info=False,
):
    """Draw a synthetic EHR cohort with a survival outcome of known risk.

    Each patient has a history of visits (lists of diagnosis-like codes with the age at
    each visit), an index age (the prediction time, shortly after the last visit) and
    a time to an outcome after the index, drawn from a proportional-hazards model whose
    log-hazard multiplier (``true_risk``) is a known function of the history. Under
    ``scenario="sequence"`` most of that risk lies in the order, recency and tempo of
    the visits, which code counts cannot see; under ``scenario="counts"`` it lies in
    code counts only, so a Cox model on counts is near the oracle.

    **Code system** (fixed by ``n_codes``, ``n_clusters``, ``cluster_size`` and
    ``zipf_exponent``, *not* by ``random_state``: cohorts drawn with different seeds
    come from one population). Codes are named ``"C000"``, ``"C001"``, … in a fixed
    random order and split into ten *signal* codes (groups A and B of two codes each,
    C and D of three each), ``n_clusters`` comorbidity clusters of ``cluster_size``
    codes, and the remaining *background* codes. Within a cluster and within the
    background, the ``k``-th code has a frequency proportional to
    ``1 / k ** zipf_exponent`` (Zipf).

    **Patients.** ``index_age = 20 + 70 * Beta(2.2, 1.6)`` years (rounded to a whole
    day). Cluster ``k`` is active with probability
    ``logistic(logit(p_k) + 0.6 * (index_age - 55) / 15)``, ``p_k`` falling from 0.35
    to 0.1 over the clusters (older patients carry more comorbidity). The number of
    visits is ``3 + NegBin`` (gamma-Poisson, shape 2) with a mean growing with the
    number of active clusters (overall mean about ``mean_visits``), capped at
    ``max_visits``.

    **Visit times**, in whole days, built backwards from the index: the last visit is
    ``1 + floor(365.25 * min(Exp(mean 0.15), 0.9))`` days before the index; earlier
    gaps are ``Gamma(shape 1.5, mean 1 year)`` (at least one day). With probability
    0.25 a patient has a *burst*: the last 3–6 visits follow each other at
    ``Gamma(2, scale 0.06 year)`` gaps. Histories that would start before age 18 are
    shrunk to fit. A visit's age is its day since birth / 365.25, so visits are on
    distinct days and ages strictly increase.

    **Codes of a visit**: ``1 + Poisson(mean_codes_per_visit - 1)`` draws (at most
    10), each from a uniformly chosen active cluster of the patient with probability
    0.6 (if any is active), else from the background. Signal codes are added on top;
    at each visit that receives a group, ``1 + Binomial(size - 1, 0.5)`` distinct codes
    of the group are recorded:

    - A/B *pathway* (probability 0.45): an A episode and a B episode, each starting at
      one of two distinct random visits and lasting ``1 + Binomial(2, 0.5)`` consecutive
      visits (both capped alike so that they neither overlap nor pass the last visit);
      A first or B first with probability 1/2 each. Since both episodes are drawn
      alike, the A and B counts carry no trace of the order.
    - C (probability 0.4): one visit, within the last year before the index
      (probability 1/2) or more than 3 years before it (otherwise, or the recent
      one when there is none). No C code falls 1 to 3 years before the index, so the
      2-year recency rule below is never a close call.
    - D (probability ``0.12 + 0.25 * [cluster 0 active]``): one random visit.

    The order within a visit is random and a code is recorded once per visit.

    **Risk**, ``true_risk``, the log-hazard multiplier (fixed reference, not centred).
    With ``s = effect_scale``, ``scenario="sequence"``::

        0.4 * (index_age - 60) / 10                               age
        + s * 1.0 * [a D code anywhere]                            presence
        + s * 1.8 * [the A episode starts before the B episode]    order
        + s * 2.2 * [a C code within 2 years before the index]     recency
        + s * 1.8 * [>= 3 visits within 1 year before the index]   tempo

    ``scenario="counts"``::

        0.35 * (index_age - 60) / 10
        + s * sum_k beta_k * log1p(n_k),   beta = (1.0, 0.8, -0.7, 0.9, 0.6, 0.8)

    with ``n_k`` the number of visits holding the most frequent code of cluster ``k``
    (``k = 0..5``), that is the code's count in the history, exactly the ``log1p``
    count feature of :class:`survbehrt.data.features.CodeCountTransformer`.

    **Outcome**: Weibull proportional hazards in years after the index, cumulative
    hazard ``H(t) = (t / lambda) ** 1.3 * exp(true_risk)`` with ``lambda = 18`` years
    (``"sequence"``) or 10 years (``"counts"``). Censoring is the earlier of
    administrative censoring ``Uniform(*followup)`` and loss to follow-up
    ``Exp(rate=dropout_rate)``, independent of the risk. With the defaults about half
    of the patients have the event; times are continuous (no ties). With 3,000
    patients the oracle C-index (of ``true_risk``) is about 0.82 for ``"sequence"``
    and 0.75 for ``"counts"``.

    Parameters
    ----------
    n_patients : int, default=4000
        Number of patients.
    scenario : {"sequence", "counts"}, default="sequence"
        Which risk model generates the outcome (the histories are drawn the same way).
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed of the patient draws; the same seed gives the same cohort.
    n_codes : int, default=120
        Size of the code system (at least ``10 + n_clusters * cluster_size + 10``).
    n_clusters : int, default=8
        Number of comorbidity clusters (at least 6 for ``scenario="counts"``).
    cluster_size : int, default=10
        Codes per cluster.
    mean_visits : float, default=8.0
        Mean number of visits (before capping at ``max_visits``).
    max_visits : int, default=30
        Largest number of visits of a patient (at least 3).
    mean_codes_per_visit : float, default=2.0
        Mean number of codes drawn per visit (before signal codes and de-duplication).
    zipf_exponent : float, default=1.1
        Exponent of the Zipf code frequencies.
    followup : tuple of float, default=(2.0, 8.0)
        Range of the administrative censoring time, in years after the index.
    dropout_rate : float, default=0.05
        Rate (per year) of random loss to follow-up; 0 switches it off.
    effect_scale : float, default=1.0
        Multiplier of every non-age effect (0 leaves only age).
    return_info : bool, default=False
        Also return a dictionary describing the generating model.

    Returns
    -------
    X : pandas.DataFrame of shape (n_patients, 3)
        Columns ``codes`` (list of visits, each a list of ``str``), ``ages`` (list of
        float) and ``index_age`` (float); a ``RangeIndex``.
    y : structured ndarray of shape (n_patients,)
        ``Surv.from_arrays(event, time)``: fields ``event`` (bool) and ``time`` (years
        after the index).
    true_risk : ndarray of float64, shape (n_patients,)
        The log-hazard multiplier; higher means an earlier event.
    info : dict
        Only with ``return_info=True``: ``"signal_codes"`` (group -> list of codes),
        ``"components"`` (DataFrame of the per-patient terms of ``true_risk``),
        ``"effects"`` (the coefficients) and ``"scenario"``.

    See Also
    --------
    make_synthetic_events : The same cohort as a long event table.

    Examples
    --------
    >>> from survbehrt.datasets import make_synthetic_ehr
    >>> X, y, risk = make_synthetic_ehr(n_patients=50, random_state=0)
    >>> X.shape, y.shape, risk.shape
    ((50, 3), (50,), (50,))
    >>> list(X.columns)
    ['codes', 'ages', 'index_age']
    >>> bool((X["index_age"] >= X["ages"].map(max)).all())
    True

    The generating model, for checks against the truth:

    >>> X, y, risk, info = make_synthetic_ehr(n_patients=50, random_state=0, return_info=True)
    >>> sorted(info["signal_codes"]), list(info["components"].columns)
    (['A', 'B', 'C', 'D'], ['age', 'D_present', 'A_before_B', 'C_recent', 'tempo'])
    >>> bool(abs(info["components"].sum(axis=1) - risk).max() < 1e-12)
    True
    """
    sim = simulate(
        n_patients,
        scenario,
        rng_of(random_state),
        n_codes=n_codes,
        n_clusters=n_clusters,
        cluster_size=cluster_size,
        mean_visits=mean_visits,
        max_visits=max_visits,
        mean_codes_per_visit=mean_codes_per_visit,
        zipf_exponent=zipf_exponent,
        followup=followup,
        dropout_rate=dropout_rate,
        effect_scale=effect_scale,
    )
    X = to_frame(sim)
    y = Surv.from_arrays(sim["event"], sim["time"])
    if not return_info:
        return X, y, sim["true_risk"]
    return X, y, sim["true_risk"], _info(sim, scenario, effect_scale)
