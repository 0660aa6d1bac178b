"""The comorbidity-cluster world: the ``"sequence"`` and ``"counts"`` kinds.

Both kinds draw the histories alike (:func:`simulate`): a fixed code system of signal
codes, comorbidity clusters and Zipf background codes; patients with active clusters,
visits built backwards from the index date, signal codes injected into chosen visits.
They differ only in the risk: :func:`_sequence_risk` (the order, recency and tempo of
visits) or :func:`_count_risk` (code counts). The generating model is described in
:func:`survbehrt.datasets.make_synthetic_ehr`.
"""

from __future__ import annotations

import numpy as np

from ._common import (
    DAYS_PER_YEAR,
    check_cohort,
    group_arange,
    index_days,
    scaled_risk,
    sim_of,
    unique_per_visit,
    weibull_outcome,
    zipf,
)

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
        "p_cluster_code": zipf(cluster_size, zipf_exponent),
        "p_background": zipf(len(background), zipf_exponent),
        "prevalence": np.resize(np.asarray(_CLUSTER_PREVALENCE), n_clusters),
    }


def simulate(
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
    n = check_cohort(n_patients, mean_visits, max_visits, mean_codes_per_visit, followup)
    if scenario == "counts" and n_clusters < len(_COUNT_EFFECTS):
        raise ValueError(
            f"scenario='counts' needs n_clusters >= {len(_COUNT_EFFECTS)}; got {n_clusters}."
        )
    world = _world(n_codes, n_clusters, cluster_size, zipf_exponent)

    # --- patient level: index age, latent clusters, number of visits -----------------
    index_day = index_days(rng, n)
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
    pos = group_arange(n_vis)  # visit position, 0 = oldest
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
        episodes[group] = np.repeat(start[has], length) + group_arange(length)

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
    all_visit, all_code, codes_per_visit = unique_per_visit(
        rng, all_visit, all_code, n_codes, n_vis_total
    )

    # --- risk ----------------------------------------------------------------------------
    if scenario == "sequence":
        d_codes = np.isin(all_code, world["signal"]["D"])
        has_d = np.bincount(pat_of_visit[all_visit[d_codes]], minlength=n) > 0
        # Episodes do not overlap, so A before B is: the A episode starts first.
        a_before_b = both & (a_visit < b_visit)
        components = _sequence_risk(index_age, has_d, a_before_b, c_visit, years_before,
                                    pat_of_visit)
    else:
        components = _count_risk(index_age, world, pat_of_visit[all_visit], all_code)
    components, true_risk = scaled_risk(components, effect_scale)

    # --- outcome: Weibull proportional hazards, administrative + random censoring --------
    event, time = weibull_outcome(
        rng, true_risk, _BASELINE_SCALE[scenario], _WEIBULL_SHAPE, followup, dropout_rate
    )
    if scenario == "sequence":
        effects = dict(_SEQUENCE_EFFECTS)
    else:
        effects = {"age": _COUNT_AGE_EFFECT}
        effects.update({k[len("log1p_count_") :]: b
                        for k, b in zip(list(components)[1:], _COUNT_EFFECTS)})
    visits = {"n_vis": n_vis, "pat_of_visit": pat_of_visit, "visit_day": visit_day,
              "visit_age": visit_age}
    return sim_of(world, visits, index_day, codes_per_visit, all_code, (event, time),
                  true_risk=true_risk, components=components, effects=effects,
                  signal_codes={g: world["names"][c].tolist() for g, c in world["signal"].items()},
                  extra={})


def _sequence_risk(index_age, has_d, a_before_b, c_visit, years_before, pat_of_visit):
    """The terms of the ``"sequence"`` log-hazard (before ``effect_scale``)."""
    n = len(index_age)
    c_recent = np.zeros(n, bool)
    c_ok = c_visit >= 0
    c_recent[c_ok] = years_before[c_visit[c_ok]] <= _RECENCY_YEARS
    n_last_year = np.bincount(
        pat_of_visit, weights=years_before <= _TEMPO_YEARS, minlength=n
    ).astype(np.int64)
    e = _SEQUENCE_EFFECTS
    return {
        "age": e["age"] * (index_age - 60.0) / 10.0,
        "D_present": e["D_present"] * has_d,
        "A_before_B": e["A_before_B"] * a_before_b,
        "C_recent": e["C_recent"] * c_recent,
        "tempo": e["tempo"] * (n_last_year >= _TEMPO_MIN_VISITS),
    }


def _count_risk(index_age, world, pat_of_code, all_code):
    """The terms of the ``"counts"`` log-hazard (before ``effect_scale``)."""
    n = len(index_age)
    components = {"age": _COUNT_AGE_EFFECT * (index_age - 60.0) / 10.0}
    for k, beta in enumerate(_COUNT_EFFECTS):
        code = world["clusters"][k, 0]
        count = np.bincount(pat_of_code[all_code == code], minlength=n)
        components[f"log1p_count_{world['names'][code]}"] = beta * np.log1p(count)
    return components
