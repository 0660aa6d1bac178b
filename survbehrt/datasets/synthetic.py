"""The public synthetic generators: :func:`make_synthetic_ehr` and :func:`make_unlabelled_pool`.

Each kind of cohort (``scenario``) has its own module: :mod:`.clusters` (``"sequence"``
and ``"counts"``), :mod:`.latent` (``"latent"``) and :mod:`.synonyms` (``"synonyms"``);
:func:`simulate` dispatches to them, and :mod:`.events` writes any of them as an event
table.
"""

from __future__ import annotations

import inspect

from sksurv.util import Surv

from . import clusters, latent, synonyms
from ._common import pool_rng_of, rng_of, to_frame

__all__ = ["make_synthetic_ehr", "make_unlabelled_pool"]

SCENARIOS = ("sequence", "counts", "latent", "synonyms")
# Arguments of the cluster world's code system ("sequence", "counts" only).
_CLUSTER_ONLY = ("n_codes", "n_clusters", "cluster_size")


def simulate(n_patients, scenario, rng, **params):
    """Draw a cohort of kind ``scenario`` as a sim (see :mod:`._common`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}; got {scenario!r}.")
    if scenario in ("sequence", "counts"):
        return clusters.simulate(n_patients, scenario, rng, **params)
    defaults = inspect.signature(make_synthetic_ehr).parameters
    changed = [k for k in _CLUSTER_ONLY if params.pop(k) != defaults[k].default]
    if changed:
        raise ValueError(
            f"{', '.join(changed)} set the code system of scenario 'sequence' and 'counts'; "
            f"scenario={scenario!r} has its own (see make_synthetic_ehr)."
        )
    module = latent if scenario == "latent" else synonyms
    return module.simulate(n_patients, rng, **params)


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
    code counts only, so a Cox model on counts is near the oracle. Two more kinds,
    built apart from those two (own code systems, visit processes and risks, nobody's
    model tuned on them): under ``scenario="latent"`` the risk is a hidden disease stage
    that advances and remits and shows only through the recent codes; under
    ``scenario="synonyms"`` it lies in the order of two concepts, the recency of a third
    and the visit tempo, each concept spread over many rare synonym codes.
    :func:`make_unlabelled_pool` draws more patients of any kind without outcomes.

    The next paragraphs, up to **Outcome**, describe ``"sequence"`` and ``"counts"``.

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

    **Kind "latent"** (:mod:`survbehrt.datasets.latent`). 96 opaque codes ``"L000"``,
    …: 16 disease codes and 80 Zipf background codes. A patient's disease stage
    ``0..3`` is a continuous-time Markov chain over the last 8 years before the index
    (fewer if that would start before age 18): it starts in stage 0, 1, 2, 3 with
    probability 0.55, 0.25, 0.15, 0.05, goes up one stage at rates 0.12, 0.18, 0.15 a
    year (from stages 0, 1, 2) times the patient's frailty ``Gamma(2, mean 1)``, and
    down one (remission) at rates 0.30, 0.15, 0.05 a year (from stages 1, 2, 3). Visits
    are a Poisson process whose rate grows with the stage (1, 1.3, 1.7, 2.2 times a
    base rate that gives about ``mean_visits``), plus a last visit 1–119 days before
    the index. A visit in stage ``s`` holds ``1 + Poisson(mean_codes_per_visit - 1 +
    0.5 s)`` code draws (at most 12), each a disease code with probability 0.15, 0.45,
    0.6, 0.7 (by stage), else a background code. A disease draw takes a uniform code of
    the stage's set (disease codes 0–5, 2–9, 6–13, 10–15: neighbours overlap), or with
    probability 0.25 of a neighbouring stage's set. Risk, with ``S`` the stage at the
    index::

        0.35 * (index_age - 60) / 10 + s * (0, 0.9, 1.8, 2.7)[S]

    Outcome as above with shape 1.2 and ``lambda = 14`` years. The counts over the
    history mix the stages a patient went through: with 4,000 training patients a Cox
    model on code counts reaches C 0.75 against the oracle's 0.79.

    **Kind "synonyms"** (:mod:`survbehrt.datasets.synonyms`). Codes ``"<concept>.<nn>"``
    (``"K37.04"``): 40 concepts, three risk concepts ``P``, ``Q``, ``R`` of 20 synonyms
    each and 37 background concepts of 4–20 (Zipf frequencies with ``zipf_exponent``);
    within a concept, synonym ``k`` has a frequency proportional to ``1 / k ** 0.5``.
    Visits over the last 10 years (from age 18 at the earliest): a Poisson process at
    the patient's rate ``Gamma(2, mean (mean_visits - 1) / 10)`` a year; with
    probability 0.3, ``Poisson(2.5)`` more visits in the last year; a last visit 1–119
    days before the index; at most ``max_visits`` (the most recent). Each visit holds
    ``1 + Poisson(mean_codes_per_visit - 1)`` background codes (at most 10). With
    probability 0.5 a patient with two visits or more has both ``P`` and ``Q``: two
    distinct random visits are their first ones (``P`` at the earlier with probability
    1/2), and each concept recurs at ``Binomial(2, 0.5)`` more random visits after both
    first ones, so their counts carry no trace of which came first. Otherwise ``P``
    alone or ``Q`` alone (probability 0.15 each): a random first visit and
    ``Binomial(2, 0.5)`` more after it. ``R`` (probability 0.45) at one random visit.
    Each occurrence records one random synonym of the concept (two with probability
    0.3). Risk::

        0.3 * (index_age - 60) / 10
        + s * 1.6 * [both, and P's first visit before Q's first visit]    order
        + s * 2.0 * exp(-(years from R's visit to the index) / 1)        recency
        + s * 1.4 * [>= 3 visits within 1 year before the index]         tempo

    Outcome as above with shape 1.1 and ``lambda = 16`` years. With 4,000 training
    patients a Cox model on code counts reaches C 0.58, the oracle 0.78.

    Parameters
    ----------
    n_patients : int, default=4000
        Number of patients.
    scenario : {"sequence", "counts", "latent", "synonyms"}, default="sequence"
        Which model generates the cohort (``"sequence"`` and ``"counts"`` draw the
        histories the same way and differ in the risk).
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed of the patient draws; the same seed gives the same cohort.
    n_codes : int, default=120
        Size of the code system (at least ``10 + n_clusters * cluster_size + 10``).
        ``n_codes``, ``n_clusters`` and ``cluster_size`` shape the code system of
        ``"sequence"`` and ``"counts"``; the other kinds refuse other values.
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
        Exponent of the Zipf code frequencies (of the background concepts for
        ``"synonyms"``).
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
        ``"effects"`` (the coefficients) and ``"scenario"``; ``"latent"`` adds
        ``"stage"`` (each patient's stage at the index), ``"visit_stage"`` (the stage
        at each visit, visit after visit) and ``"rates"``; ``"synonyms"`` adds
        ``"concepts"`` (the prefixes of ``P``, ``Q`` and ``R``).

    See Also
    --------
    make_synthetic_events : The same cohort as a long event table.
    make_unlabelled_pool : More patients of the same population, without outcomes.

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


def make_unlabelled_pool(n_patients, scenario="sequence", random_state=None, **kwargs):
    """Draw patients of the same population without outcomes (for pre-training).

    The histories come from the generating model of :func:`make_synthetic_ehr` with the
    same ``scenario`` and keyword arguments, drawn from a seed stream of their own:
    the pool drawn with ``random_state=s`` is independent of the labelled cohort drawn
    with ``random_state=s`` (and of the pools of other seeds), so one seed can name a
    labelled set and its pool. Nothing of the outcome is returned.

    Parameters
    ----------
    n_patients : int
        Number of patients in the pool.
    scenario : {"sequence", "counts", "latent", "synonyms"}, default="sequence"
        As in :func:`make_synthetic_ehr`.
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed; the same seed gives the same pool.
    **kwargs
        Further keyword arguments of :func:`make_synthetic_ehr` (``mean_visits``, …;
        not ``return_info``).

    Returns
    -------
    X : pandas.DataFrame of shape (n_patients, 3)
        Columns ``codes``, ``ages`` and ``index_age``, as :func:`make_synthetic_ehr`'s.

    See Also
    --------
    make_synthetic_ehr : A labelled cohort of the same population.

    Examples
    --------
    >>> from survbehrt.datasets import make_synthetic_ehr, make_unlabelled_pool
    >>> X, y, risk = make_synthetic_ehr(n_patients=50, scenario="latent", random_state=0)
    >>> pool = make_unlabelled_pool(200, scenario="latent", random_state=0)
    >>> pool.shape, list(pool.columns) == list(X.columns)
    ((200, 3), True)
    """
    sim = simulate(n_patients, scenario, pool_rng_of(random_state), **ehr_defaults(kwargs))
    return to_frame(sim)


def ehr_defaults(kwargs):
    """make_synthetic_ehr's generator arguments, with its defaults, updated by kwargs."""
    params = inspect.signature(make_synthetic_ehr).parameters
    defaults = {
        name: p.default
        for name, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "return_info"
    }
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
    defaults.update(kwargs)
    return defaults
