"""Datasets: synthetic EHR cohorts with a known risk, and a real-format Synthea sample.

:func:`make_synthetic_ehr` draws a cohort in the package's patient-frame format
(``X``), a survival outcome (``y``) and the true log-hazard multiplier of every
patient, so that models can be compared with the oracle. :func:`make_synthetic_events`
writes the same kind of cohort as a MEDS-style long event table plus a labels table,
for the event-table converter :func:`survbehrt.data.events.from_events`.
:func:`load_synthea_sample` loads the vendored Synthea sample (:mod:`.synthea`) as a
landmark survival task, or as a long event table.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
from sksurv.util import Surv

from .mimic import load_mimic_iv_demo
from .synthea import SYNTHEA_HISTORY_START, SYNTHEA_LANDMARKS, load_synthea_sample

__all__ = [
    "SYNTHEA_HISTORY_START",
    "SYNTHEA_LANDMARKS",
    "load_mimic_iv_demo",
    "load_synthea_sample",
    "make_synthetic_ehr",
    "make_synthetic_events",
]

DAYS_PER_YEAR = 365.25

# The "world" (code system, clusters, frequencies, signal groups) is drawn from this
# fixed seed, never from ``random_state``: cohorts drawn with different seeds come from
# the same population and can serve as training and test sets of one another.
_WORLD_SEED = 20240531

_N_SIGNAL = {"A": 2, "B": 2, "C": 3, "D": 3}
_CLUSTER_PREVALENCE = (0.35, 0.3, 0.28, 0.25, 0.22, 0.2, 0.18, 0.15, 0.12, 0.1, 0.1, 0.1)

# Generating-model constants (documented in make_synthetic_ehr).
_P_AB = 0.45
_P_C, _P_C_RECENT = 0.40, 0.5
_P_D_BASE, _P_D_CLUSTER0 = 0.12, 0.25
_P_BURST = 0.25
_P_EXTRA_SIGNAL = 0.5
_AB_EPISODE = 3
_GAP_SHAPE, _GAP_MEAN = 1.5, 1.0  # years
_C_RECENT_YEARS, _C_OLD_YEARS = 1.0, 3.0
_RECENCY_YEARS = 2.0
_TEMPO_YEARS, _TEMPO_MIN_VISITS = 1.0, 3
_SEQUENCE_EFFECTS = {
    "age": 0.4,  # per decade of index age above 60
    "D_present": 1.0,
    "A_before_B": 1.8,
    "C_recent": 2.2,
    "tempo": 1.8,
}
_COUNT_EFFECTS = (1.0, 0.8, -0.7, 0.9, 0.6, 0.8)  # per log1p(count), first code of clusters 0..5
_COUNT_AGE_EFFECT = 0.35
_WEIBULL_SHAPE = 1.3
_BASELINE_SCALE = {"sequence": 18.0, "counts": 10.0}  # years


def _rng(random_state):
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


def _zipf(n, exponent):
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def _world(n_codes, n_clusters, cluster_size, zipf_exponent):
    """Code names, cluster membership, Zipf weights and signal groups (fixed per arguments)."""
    n_signal = sum(_N_SIGNAL.values())
    n_background = n_codes - n_signal - n_clusters * cluster_size
    if n_background < 10:
        raise ValueError(
            f"n_codes={n_codes} is too small for n_clusters={n_clusters} clusters of "
            f"{cluster_size} codes plus {n_signal} signal codes and 10 background codes; "
            f"use n_codes >= {n_signal + n_clusters * cluster_size + 10}."
        )
    world_rng = np.random.default_rng([_WORLD_SEED, n_codes, n_clusters, cluster_size])
    width = max(3, len(str(n_codes - 1)))
    # Code ids are a random permutation of the names, so that the signal codes and the
    # cluster codes do not sit in recognisable blocks of the vocabulary.
    names = np.array([f"C{j:0{width}d}" for j in world_rng.permutation(n_codes)], dtype=object)
    ids = np.arange(n_codes)
    signal, start = {}, 0
    for group, size in _N_SIGNAL.items():
        signal[group] = ids[start : start + size]
        start += size
    clusters = ids[start : start + n_clusters * cluster_size].reshape(n_clusters, cluster_size)
    background = ids[start + n_clusters * cluster_size :]
    return {
        "names": names,
        "signal": signal,
        "clusters": clusters,
        "background": background,
        "p_cluster_code": _zipf(cluster_size, zipf_exponent),
        "p_background": _zipf(len(background), zipf_exponent),
        "prevalence": np.resize(np.asarray(_CLUSTER_PREVALENCE), n_clusters),
    }


def _group_arange(counts):
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum())) - np.repeat(starts, counts)


def _split(flat, counts):
    """Cut a Python list into consecutive chunks of the given sizes."""
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends[:-1]]
    return [flat[s:e] for s, e in zip(starts, ends)]


def _simulate(
    n_patients,
    scenario,
    rng,
    n_codes,
    n_clusters,
    cluster_size,
    mean_visits,
    max_visits,
    mean_codes_per_visit,
    zipf_exponent,
    followup,
    dropout_rate,
    effect_scale,
):
    """Draw the cohort as flat arrays (the shared engine of both public functions)."""
    if scenario not in ("sequence", "counts"):
        raise ValueError(f"scenario must be 'sequence' or 'counts'; got {scenario!r}.")
    if int(n_patients) < 1:
        raise ValueError(f"n_patients must be a positive integer; got {n_patients!r}.")
    if not (mean_visits >= 3 and max_visits >= 3):
        raise ValueError(
            f"mean_visits and max_visits must be >= 3; got {mean_visits} and {max_visits}."
        )
    if not mean_codes_per_visit >= 1:
        raise ValueError(f"mean_codes_per_visit must be >= 1; got {mean_codes_per_visit}.")
    f_lo, f_hi = followup
    if not 0 < f_lo <= f_hi:
        raise ValueError(f"followup must be (low, high) with 0 < low <= high; got {followup}.")
    if scenario == "counts" and n_clusters < len(_COUNT_EFFECTS):
        raise ValueError(
            f"scenario='counts' needs n_clusters >= {len(_COUNT_EFFECTS)}; got {n_clusters}."
        )
    n = int(n_patients)
    world = _world(n_codes, n_clusters, cluster_size, zipf_exponent)

    # --- patient level: index age, latent clusters, number of visits -----------------
    # Whole days from birth: ages in X are day / 365.25, as from_events computes them.
    index_day = np.round((20.0 + 70.0 * rng.beta(2.2, 1.6, size=n)) * DAYS_PER_YEAR).astype(
        np.int64
    )
    index_age = index_day / DAYS_PER_YEAR
    age_z = (index_age - 55.0) / 15.0
    logit = np.log(world["prevalence"] / (1 - world["prevalence"]))
    p_active = 1.0 / (1.0 + np.exp(-(logit[None, :] + 0.6 * age_z[:, None])))
    active = rng.random((n, n_clusters)) < p_active
    n_active = active.sum(axis=1)
    mean_extra = (mean_visits - 3.0) * (0.7 + 0.3 * n_active) / (0.7 + 0.3 * n_active.mean())
    # Negative binomial (gamma-Poisson, shape 2) extra visits on top of the minimum of 3.
    n_vis = 3 + rng.poisson(rng.gamma(2.0, np.maximum(mean_extra, 1e-9) / 2.0))
    n_vis = np.minimum(n_vis, int(max_visits)).astype(np.int64)
    n_vis_total = int(n_vis.sum())
    pat_of_visit = np.repeat(np.arange(n), n_vis)
    first_visit = np.cumsum(n_vis) - n_vis
    pos = _group_arange(n_vis)  # visit position, 0 = oldest
    rev = np.repeat(n_vis, n_vis) - 1 - pos  # 0 = most recent visit

    # --- visit times, built backwards from the index date in whole days ------------------
    lag_years = np.minimum(rng.exponential(0.15, size=n), 0.9)
    lag_days = 1 + np.floor(lag_years * DAYS_PER_YEAR).astype(np.int64)
    burst = rng.random(n) < _P_BURST
    burst_len = rng.integers(3, 7, size=n)  # the last 3..6 visits come in a burst
    gap_years = rng.gamma(_GAP_SHAPE, _GAP_MEAN / _GAP_SHAPE, size=n_vis_total)
    in_burst = burst[pat_of_visit] & (rev < burst_len[pat_of_visit] - 1)
    gap_years = np.where(in_burst, rng.gamma(2.0, 0.06, size=n_vis_total), gap_years)
    # gap_years[v] is the time from visit v back to the visit before it; the oldest
    # visit of each patient has no earlier visit.
    gap_years[pos == 0] = 0.0
    gap_days = np.floor(gap_years * DAYS_PER_YEAR)
    span = np.bincount(pat_of_visit, weights=gap_days, minlength=n)
    # Keep every visit at age >= 18: shrink the gaps of patients whose history would not fit.
    room = (index_day - lag_days) - np.ceil(18.0 * DAYS_PER_YEAR) - n_vis
    shrink = np.clip(room / np.maximum(span, 1.0), 0.0, 1.0)
    gap_days = np.floor(gap_days * shrink[pat_of_visit]) + (pos > 0)
    span = np.bincount(pat_of_visit, weights=gap_days, minlength=n)
    # Days from each visit to the last one: the gaps of the later visits of the patient.
    last_day = index_day - lag_days
    within = np.cumsum(gap_days) - np.repeat(np.cumsum(span) - span, n_vis)
    back = np.repeat(span, n_vis) - within
    visit_day = np.repeat(last_day, n_vis) - back
    visit_age = visit_day / DAYS_PER_YEAR
    years_before = (index_day[pat_of_visit] - visit_day) / DAYS_PER_YEAR

    # --- codes of each visit --------------------------------------------------------------
    n_per_visit = np.minimum(1 + rng.poisson(mean_codes_per_visit - 1.0, size=n_vis_total), 10)
    slot_visit = np.repeat(np.arange(n_vis_total), n_per_visit)
    slot_pat = pat_of_visit[slot_visit]
    n_slots = len(slot_visit)
    from_cluster = (rng.random(n_slots) < 0.6) & (n_active[slot_pat] > 0)
    # A random active cluster of the patient: active clusters first, pick one uniformly.
    active_first = np.argsort(~active, axis=1, kind="stable")
    pick = np.floor(rng.random(n_slots) * np.maximum(n_active[slot_pat], 1)).astype(np.int64)
    cluster = active_first[slot_pat, pick]
    cluster_code = world["clusters"][
        cluster, rng.choice(cluster_size, size=n_slots, p=world["p_cluster_code"])
    ]
    bg_code = rng.choice(world["background"], size=n_slots, p=world["p_background"])
    slot_code = np.where(from_cluster, cluster_code, bg_code)

    # --- signal codes, each injected into one chosen visit ---------------------------------
    def random_visit(mask_pat, allowed=None):
        """One random visit of each patient in mask_pat (restricted to allowed visits)."""
        keys = rng.random(n_vis_total)
        ok = mask_pat[pat_of_visit]
        if allowed is not None:
            ok = ok & allowed
        keys = np.where(ok, keys, -1.0)
        # Visits of a patient are contiguous: the argmax of the keys within each patient.
        best = np.full(n, -1, dtype=np.int64)
        top = np.maximum.reduceat(keys, first_visit)
        hit = ok & (keys == top[pat_of_visit])
        best[pat_of_visit[hit]] = np.flatnonzero(hit)
        return best  # -1 where the patient has no eligible visit

    both = rng.random(n) < _P_AB
    v1 = random_visit(both)
    v2 = random_visit(both, allowed=np.arange(n_vis_total) != v1[pat_of_visit])
    a_first = rng.random(n) < 0.5
    early, late = np.minimum(v1, v2), np.maximum(v1, v2)
    a_visit = np.where(both, np.where(a_first, early, late), -1)
    b_visit = np.where(both, np.where(a_first, late, early), -1)

    has_c = rng.random(n) < _P_C
    want_recent = rng.random(n) < _P_C_RECENT
    c_recent_visit = random_visit(has_c, allowed=years_before <= _C_RECENT_YEARS)
    c_old_visit = random_visit(has_c, allowed=years_before > _C_OLD_YEARS)
    c_visit = np.where(want_recent | (c_old_visit < 0), c_recent_visit, c_old_visit)
    c_visit = np.where(has_c, c_visit, -1)

    p_d = _P_D_BASE + _P_D_CLUSTER0 * active[:, 0]
    d_visit = random_visit(rng.random(n) < p_d)

    # A and B come as episodes: the start visit and up to _AB_EPISODE - 1 following
    # visits. Both episodes of a patient get the same cap (they must not overlap nor run
    # past the last visit), so the A and B counts are exchangeable whatever the order:
    # counts carry no trace of it.
    last_visit = first_visit + n_vis - 1
    cap = np.minimum(late - early, last_visit - late + 1)
    episodes = {}
    for group, start in (("A", a_visit), ("B", b_visit)):
        has = start >= 0
        length = np.minimum(1 + rng.binomial(_AB_EPISODE - 1, 0.5, size=n), cap)[has]
        episodes[group] = np.repeat(start[has], length) + _group_arange(length)

    sig_visit, sig_code = [], []
    for group, visits in (
        ("A", episodes["A"]),
        ("B", episodes["B"]),
        ("C", c_visit[c_visit >= 0]),
        ("D", d_visit[d_visit >= 0]),
    ):
        vis = visits
        group_codes = world["signal"][group]
        size = len(group_codes)
        # 1 + Binomial(size - 1, p) distinct codes of the group at the chosen visit.
        k = 1 + rng.binomial(size - 1, _P_EXTRA_SIGNAL, size=len(vis))
        perm = np.argsort(rng.random((len(vis), size)), axis=1)
        take = np.arange(size)[None, :] < k[:, None]
        sig_visit.append(np.repeat(vis, k))
        sig_code.append(group_codes[perm][take])
    all_visit = np.concatenate([slot_visit, *sig_visit])
    all_code = np.concatenate([slot_code, *sig_code])
    # Shuffle the codes within each visit, then drop repeats of a code within a visit.
    order = np.lexsort((rng.random(len(all_visit)), all_visit))
    all_visit, all_code = all_visit[order], all_code[order]
    key = all_visit.astype(np.int64) * n_codes + all_code
    _, first_idx = np.unique(key, return_index=True)
    keep = np.zeros(len(key), bool)
    keep[first_idx] = True
    all_visit, all_code = all_visit[keep], all_code[keep]
    codes_per_visit = np.bincount(all_visit, minlength=n_vis_total)

    # --- risk ----------------------------------------------------------------------------
    def present(group):
        in_group = np.isin(all_code, world["signal"][group])
        return np.bincount(pat_of_visit[all_visit[in_group]], minlength=n) > 0

    # Episodes do not overlap, so A before B is: the A episode starts first.
    a_before_b = both & (a_visit < b_visit)
    components = {}
    if scenario == "sequence":
        c_recent = np.zeros(n, bool)
        c_ok = c_visit >= 0
        c_recent[c_ok] = years_before[c_visit[c_ok]] <= _RECENCY_YEARS
        n_last_year = np.bincount(
            pat_of_visit, weights=years_before <= _TEMPO_YEARS, minlength=n
        ).astype(np.int64)
        e = _SEQUENCE_EFFECTS
        components = {
            "age": e["age"] * (index_age - 60.0) / 10.0,
            "D_present": e["D_present"] * present("D"),
            "A_before_B": e["A_before_B"] * a_before_b,
            "C_recent": e["C_recent"] * c_recent,
            "tempo": e["tempo"] * (n_last_year >= _TEMPO_MIN_VISITS),
        }
    else:
        components["age"] = _COUNT_AGE_EFFECT * (index_age - 60.0) / 10.0
        pat_of_code = pat_of_visit[all_visit]
        for k, beta in enumerate(_COUNT_EFFECTS):
            code = world["clusters"][k, 0]
            count = np.bincount(pat_of_code[all_code == code], minlength=n)
            components[f"log1p_count_{world['names'][code]}"] = beta * np.log1p(count)
    scale = float(effect_scale)
    components = {
        name: np.asarray(v, dtype=np.float64) * (1.0 if name == "age" else scale)
        for name, v in components.items()
    }
    true_risk = np.sum(list(components.values()), axis=0)

    # --- outcome: Weibull proportional hazards, administrative + random censoring --------
    # Cumulative hazard H(t) = (t / scale0) ** shape * exp(true_risk).
    scale0 = _BASELINE_SCALE[scenario]
    event_time = scale0 * (rng.exponential(size=n) * np.exp(-true_risk)) ** (1.0 / _WEIBULL_SHAPE)
    admin = rng.uniform(f_lo, f_hi, size=n)
    dropout = rng.exponential(1.0 / dropout_rate, size=n) if dropout_rate > 0 else np.inf
    censor = np.minimum(admin, dropout)
    event = event_time <= censor
    time = np.where(event, event_time, censor)

    return {
        "world": world,
        "n_vis": n_vis,
        "pat_of_visit": pat_of_visit,
        "visit_day": visit_day,
        "visit_age": visit_age,
        "index_day": index_day,
        "index_age": index_age,
        "codes_per_visit": codes_per_visit,
        "all_code": all_code,
        "event": event,
        "time": time,
        "true_risk": true_risk,
        "components": components,
        "signal_codes": {g: world["names"][c].tolist() for g, c in world["signal"].items()},
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
    sim = _simulate(
        n_patients,
        scenario,
        _rng(random_state),
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
    X = _to_frame(sim)
    y = Surv.from_arrays(sim["event"], sim["time"])
    if not return_info:
        return X, y, sim["true_risk"]
    return X, y, sim["true_risk"], _info(sim, scenario, effect_scale)


def _info(sim, scenario, effect_scale):
    if scenario == "sequence":
        effects = dict(_SEQUENCE_EFFECTS)
    else:
        effects = {"age": _COUNT_AGE_EFFECT}
        effects.update(
            {
                k[len("log1p_count_") :]: b
                for k, b in zip(list(sim["components"])[1:], _COUNT_EFFECTS)
            }
        )
    return {
        "scenario": scenario,
        "signal_codes": sim["signal_codes"],
        "components": pd.DataFrame(sim["components"]),
        "effects": effects,
        "effect_scale": float(effect_scale),
    }


def _to_frame(sim):
    names = sim["world"]["names"]
    flat_codes = names[sim["all_code"]].tolist()
    visits = _split(flat_codes, sim["codes_per_visit"])
    codes = _split(visits, sim["n_vis"])
    ages = _split(sim["visit_age"].tolist(), sim["n_vis"])
    return pd.DataFrame({"codes": codes, "ages": ages, "index_age": sim["index_age"]})


def make_synthetic_events(
    n_patients=4000,
    scenario="sequence",
    random_state=None,
    *,
    start="2012-01-01",
    end="2017-12-31",
    include_future=True,
    **kwargs,
):
    """Draw a synthetic cohort as a MEDS-style long event table plus labels.

    The histories, outcomes and risks are those of :func:`make_synthetic_ehr` with the
    same arguments (same ``random_state`` -> same cohort), written as dated events:
    each patient's prediction (index) date is uniform between ``start`` and ``end``
    (a whole day), the birth date is ``index_day`` days before it (a ``"MEDS_BIRTH"``
    row), and every code of a visit is one row at the visit's date (midnight).
    :func:`survbehrt.data.events.from_events` with ``prediction_times`` from the labels
    gives back ``X`` (indexed by ``subject_id``).

    With ``include_future=True`` the table also holds what happened *after* the
    prediction time, as a real extract would: for patients with the event, an
    ``"OUTCOME"`` row at the event date, and for everyone follow-up visits (Poisson,
    about one a year of follow-up, one or two background codes each) during the
    follow-up. A converter must drop them (they leak the outcome).

    Parameters
    ----------
    n_patients : int, default=4000
        Number of patients.
    scenario : {"sequence", "counts"}, default="sequence"
        As in :func:`make_synthetic_ehr`.
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed; the same seed gives the same cohort as :func:`make_synthetic_ehr`.
    start, end : str or datetime-like, default="2012-01-01", "2017-12-31"
        Range of the prediction dates.
    include_future : bool, default=True
        Add the post-index rows (follow-up visits and the outcome).
    **kwargs
        Further keyword arguments of :func:`make_synthetic_ehr` (``n_codes``, …).

    Returns
    -------
    events : pandas.DataFrame
        Columns ``subject_id`` (int64), ``time`` (datetime64[ns]) and ``code`` (str),
        sorted by subject and time; the birth row first for each subject.
    labels : pandas.DataFrame
        One row per subject: ``subject_id``, ``prediction_time`` (datetime64[ns]),
        ``event`` (bool), ``time`` (float, years after the prediction time) and
        ``true_risk`` (float).

    See Also
    --------
    make_synthetic_ehr : The same cohort as a patient frame.
    survbehrt.data.events.from_events : Event table to patient frame.

    Examples
    --------
    >>> from survbehrt.datasets import make_synthetic_events
    >>> events, labels = make_synthetic_events(n_patients=20, random_state=0)
    >>> list(events.columns), list(labels.columns)
    (['subject_id', 'time', 'code'], ['subject_id', 'prediction_time', 'event', 'time', 'true_risk'])
    >>> int((events["code"] == "MEDS_BIRTH").sum())
    20
    """
    rng = _rng(random_state)
    sim = _simulate(n_patients, scenario, rng, **_ehr_defaults(kwargs))
    n = len(sim["n_vis"])
    # Post-simulation draws use their own stream, so that the cohort equals make_synthetic_ehr's.
    extra = np.random.default_rng(rng.integers(np.iinfo(np.int64).max))
    start_day = pd.Timestamp(start).normalize()
    n_days = (pd.Timestamp(end).normalize() - start_day).days + 1
    pred_date = start_day + pd.to_timedelta(extra.integers(0, n_days, size=n), unit="D")
    birth = pred_date - pd.to_timedelta(sim["index_day"], unit="D")
    pat_of_visit = sim["pat_of_visit"]
    visit_date = (
        birth.to_numpy()[pat_of_visit] + pd.to_timedelta(sim["visit_day"], unit="D").to_numpy()
    )
    code_visit = np.repeat(np.arange(len(pat_of_visit)), sim["codes_per_visit"])
    names = sim["world"]["names"]
    parts = [
        pd.DataFrame({"subject_id": np.arange(n), "time": birth.to_numpy(), "code": "MEDS_BIRTH"}),
        pd.DataFrame(
            {
                "subject_id": pat_of_visit[code_visit],
                "time": visit_date[code_visit],
                "code": names[sim["all_code"]],
            }
        ),
    ]
    if include_future:
        n_fu = extra.poisson(sim["time"])
        fu_pat = np.repeat(np.arange(n), n_fu)
        # At least one day after the prediction time: these rows are the future.
        fu_days = 1 + np.floor(extra.uniform(0, sim["time"][fu_pat]) * DAYS_PER_YEAR)
        n_fu_codes = 1 + (extra.random(len(fu_pat)) < 0.5)
        fu_code_pat = np.repeat(fu_pat, n_fu_codes)
        fu_code_day = np.repeat(fu_days, n_fu_codes)
        world = sim["world"]
        fu_codes = extra.choice(world["background"], size=len(fu_code_pat), p=world["p_background"])
        out = np.flatnonzero(sim["event"])
        out_days = np.maximum(1, np.ceil(sim["time"][out] * DAYS_PER_YEAR))
        pred = pred_date.to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "subject_id": fu_code_pat,
                    "time": pred[fu_code_pat] + pd.to_timedelta(fu_code_day, unit="D").to_numpy(),
                    "code": names[fu_codes],
                }
            )
        )
        parts.append(
            pd.DataFrame(
                {
                    "subject_id": out,
                    "time": pred[out] + pd.to_timedelta(out_days, unit="D").to_numpy(),
                    "code": "OUTCOME",
                }
            )
        )
    events = pd.concat(parts, ignore_index=True)
    events["code"] = events["code"].astype(str)
    events["subject_id"] = events["subject_id"].astype(np.int64)
    events["time"] = events["time"].astype("datetime64[ns]")
    events = events.sort_values(["subject_id", "time"], kind="stable", ignore_index=True)
    labels = pd.DataFrame(
        {
            "subject_id": np.arange(n, dtype=np.int64),
            "prediction_time": pred_date.astype("datetime64[ns]"),
            "event": sim["event"],
            "time": sim["time"],
            "true_risk": sim["true_risk"],
        }
    )
    return events, labels


def _ehr_defaults(kwargs):
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
