"""The ``"synonyms"`` kind: risk concepts spread over many rare codes of a code hierarchy.

Codes are named like ICD codes, ``"<concept>.<nn>"`` (``"K37.04"``): 40 concepts of
4 to 20 synonym codes each, every synonym rare. Three concepts carry the risk: whether
concept ``P`` first appears before concept ``Q`` (their counts carry no trace of the
order), how recently concept ``R`` appeared (a decaying, not a threshold, effect), and
the visit tempo (at least three visits in the last year). A model must merge the
synonyms of a concept (the prefix, or their co-occurrence, tells which) and read the
order and timing of the visits. The generating model is described in
:func:`survbehrt.datasets.make_synthetic_ehr`.
"""

from __future__ import annotations

import numpy as np

from ._common import (
    DAYS_PER_YEAR,
    check_cohort,
    group_arange,
    history_window,
    index_days,
    poisson_times,
    scaled_risk,
    sim_of,
    unique_per_visit,
    visits_from_times,
    weibull_outcome,
    zipf,
)

_WORLD_SEED = 20261207
_N_CONCEPTS = 40  # the first three are P, Q and R
_RISK_SYNONYMS = 20
_SYNONYMS = (4, 20)  # range of the synonyms of a background concept
_SYNONYM_ZIPF = 0.5  # synonyms of a concept: mildly unequal frequencies
_HISTORY_YEARS = 10.0
_RATE_SHAPE = 2.0  # Gamma shape of a patient's visit rate
_P_ACCELERATE, _ACCELERATE_VISITS = 0.3, 2.5  # extra visits (Poisson mean) in the last year
_P_PQ, _P_ONE = 0.5, 0.15  # both P and Q; P alone (and Q alone)
_P_R = 0.45
_P_SECOND_SYNONYM = 0.3  # an occurrence records a second synonym of its concept
_EFFECTS = {"age": 0.3, "P_before_Q": 1.6, "R_recency": 2.0, "tempo": 1.4}
_R_DECAY_YEARS = 1.0
_TEMPO_VISITS = 3
_WEIBULL_SHAPE = 1.1
_BASELINE_SCALE = 16.0  # years


def _world(zipf_exponent):
    """Code names, each concept's codes and synonym weights, background concept weights."""
    world_rng = np.random.default_rng(_WORLD_SEED)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    prefixes = []
    while len(prefixes) < _N_CONCEPTS:
        p = f"{world_rng.choice(letters)}{world_rng.integers(0, 100):02d}"
        if p not in prefixes:
            prefixes.append(p)
    sizes = np.concatenate([
        np.full(3, _RISK_SYNONYMS),
        world_rng.integers(_SYNONYMS[0], _SYNONYMS[1] + 1, size=_N_CONCEPTS - 3),
    ])
    offsets = np.cumsum(sizes) - sizes
    names = np.array([f"{p}.{k:02d}" for p, m in zip(prefixes, sizes) for k in range(m)],
                     dtype=object)
    # cumulative synonym weights, one row per concept (padded with 1)
    cum = np.ones((_N_CONCEPTS, sizes.max()))
    for c, m in enumerate(sizes):
        cum[c, :m] = np.cumsum(zipf(m, _SYNONYM_ZIPF))
    return {
        "names": names,
        "prefixes": prefixes,
        "sizes": sizes,
        "offsets": offsets,
        "cum": cum,
        # background concepts 3..39 in a fixed random order of Zipf frequencies
        "background": 3 + world_rng.permutation(_N_CONCEPTS - 3),
        "p_background": zipf(_N_CONCEPTS - 3, zipf_exponent),
    }


def _codes_of(rng, world, concept):
    """One random synonym code of each concept."""
    u = rng.random(len(concept))
    k = (u[:, None] > world["cum"][concept]).sum(axis=1)
    return world["offsets"][concept] + np.minimum(k, world["sizes"][concept] - 1)


def _random_visits(rng, pat_of_visit, n_vis, k, allowed=None):
    """Mask of ``k[p]`` distinct random allowed visits of each patient ``p`` (fewer if
    it has fewer)."""
    keys = rng.random(len(pat_of_visit))
    if allowed is not None:
        keys[~allowed] = 2.0  # ranked after every allowed visit
    order = np.lexsort((keys, pat_of_visit))
    rank = np.empty(len(order), np.int64)
    rank[order] = group_arange(n_vis)
    chosen = rank < k[pat_of_visit]
    return chosen if allowed is None else chosen & allowed


def simulate(n_patients, rng, *, mean_visits, max_visits, mean_codes_per_visit, zipf_exponent,
             followup, dropout_rate, effect_scale):
    """Draw a ``"synonyms"`` cohort as a sim (see :mod:`._common`)."""
    n = check_cohort(n_patients, mean_visits, max_visits, mean_codes_per_visit, followup)
    world = _world(zipf_exponent)

    index_day = index_days(rng, n)
    index_age = index_day / DAYS_PER_YEAR
    window = history_window(index_day, _HISTORY_YEARS)

    # --- visits: a Poisson process at the patient's rate, more visits in the last year
    # for some (the tempo), and a last visit shortly before the index --------------------
    rate = rng.gamma(_RATE_SHAPE, (mean_visits - 1.0) / _HISTORY_YEARS / _RATE_SHAPE, size=n)
    pat, t = poisson_times(rng, rate, window)
    accelerate = rng.random(n) < _P_ACCELERATE
    pat_acc, t_acc = poisson_times(rng, _ACCELERATE_VISITS * accelerate, np.ones(n))
    last_t = -rng.integers(1, 120, size=n) / DAYS_PER_YEAR
    visits = visits_from_times(np.concatenate([pat, pat_acc, np.arange(n)]),
                               np.concatenate([t, t_acc, last_t]), index_day, int(max_visits))
    pat_of_visit, n_vis = visits["pat_of_visit"], visits["n_vis"]
    years_before = visits["years_before"]
    n_vis_total = len(pat_of_visit)

    # --- background concepts of each visit ------------------------------------------------
    n_per_visit = np.minimum(1 + rng.poisson(mean_codes_per_visit - 1.0, size=n_vis_total), 10)
    slot_visit = np.repeat(np.arange(n_vis_total), n_per_visit)
    slot_concept = rng.choice(world["background"], size=len(slot_visit), p=world["p_background"])

    # --- risk concepts: P and Q, R ---------------------------------------------------------
    # The order of P and Q is drawn apart from their counts: two distinct random visits
    # are their first visits (P at the earlier one with probability 1/2), and each gets
    # Binomial(2, 0.5) more visits among those after *both* first visits, so the counts
    # are alike whichever came first. P or Q alone: a random first visit, more after it.
    u = rng.random(n)
    both = (u < _P_PQ) & (n_vis >= 2)
    only = {"P": (u >= 1 - _P_ONE) & ~both, "Q": (u >= _P_PQ) & (u < _P_PQ + _P_ONE) & ~both}
    pair = np.flatnonzero(_random_visits(rng, pat_of_visit, n_vis, np.where(both, 2, 0)))
    early = np.full(n, -1)
    late = np.full(n, -1)
    early[pat_of_visit[pair[::2]]] = pair[::2]  # chosen visits come in time order
    late[pat_of_visit[pair[1::2]]] = pair[1::2]
    p_first = rng.random(n) < 0.5
    first, occ_visit, occ_concept = {}, [slot_visit], [slot_concept]
    visit_pos = np.arange(n_vis_total)
    for name in ("P", "Q"):
        single = np.flatnonzero(_random_visits(rng, pat_of_visit, n_vis, only[name].astype(int)))
        first[name] = np.where(both, np.where(p_first == (name == "P"), early, late), -1)
        first[name][pat_of_visit[single]] = single
        after = np.where(both, late, first[name])  # more visits only after this one
        more = np.flatnonzero(_random_visits(
            rng, pat_of_visit, n_vis, rng.binomial(2, 0.5, size=n) * (first[name] >= 0),
            allowed=visit_pos > after[pat_of_visit]))
        occ_visit.append(np.concatenate([first[name][first[name] >= 0], more]))
    r_visit = np.flatnonzero(_random_visits(rng, pat_of_visit, n_vis,
                                            (rng.random(n) < _P_R).astype(int)))
    first["R"] = np.full(n, -1)
    first["R"][pat_of_visit[r_visit]] = r_visit
    occ_visit.append(r_visit)
    for concept in range(3):
        visits_c = occ_visit[1 + concept]
        repeat = 1 + (rng.random(len(visits_c)) < _P_SECOND_SYNONYM)
        occ_visit[1 + concept] = np.repeat(visits_c, repeat)
        occ_concept.append(np.full(int(repeat.sum()), concept))
    all_visit = np.concatenate(occ_visit)
    all_code = _codes_of(rng, world, np.concatenate(occ_concept))
    all_visit, all_code, codes_per_visit = unique_per_visit(
        rng, all_visit, all_code, len(world["names"]), n_vis_total
    )

    # --- risk --------------------------------------------------------------------------
    p_before_q = both & p_first
    since_r = np.full(n, np.inf)
    r_ok = first["R"] >= 0
    since_r[r_ok] = years_before[first["R"][r_ok]]
    last_year = np.bincount(pat_of_visit, weights=years_before <= 1.0, minlength=n)
    e = _EFFECTS
    components, true_risk = scaled_risk({
        "age": e["age"] * (index_age - 60.0) / 10.0,
        "P_before_Q": e["P_before_Q"] * p_before_q,
        "R_recency": e["R_recency"] * np.exp(-since_r / _R_DECAY_YEARS),
        "tempo": e["tempo"] * (last_year >= _TEMPO_VISITS),
    }, effect_scale)
    event, time = weibull_outcome(rng, true_risk, _BASELINE_SCALE, _WEIBULL_SHAPE, followup,
                                  dropout_rate)
    codes_of = {
        name: world["names"][world["offsets"][c] : world["offsets"][c] + world["sizes"][c]].tolist()
        for c, name in enumerate(("P", "Q", "R"))
    }
    code_system = {
        "names": world["names"],
        # a follow-up visit draws one synonym of a background concept
        "background": np.concatenate([
            world["offsets"][c] + np.arange(world["sizes"][c]) for c in world["background"]
        ]),
        "p_background": np.concatenate([
            p * np.diff(world["cum"][c, : world["sizes"][c]], prepend=0.0)
            for c, p in zip(world["background"], world["p_background"])
        ]),
    }
    return sim_of(
        code_system, visits, index_day, codes_per_visit, all_code, (event, time),
        true_risk=true_risk, components=components, effects=dict(_EFFECTS), signal_codes=codes_of,
        extra={"concepts": dict(zip("PQR", world["prefixes"][:3]))},
    )
