"""The ``"latent"`` kind: hidden disease stages that advance, emit codes noisily and remit.

Every patient carries a disease stage, 0 (none) to 3 (severe), that moves as a
continuous-time Markov chain over the history: up one stage at a rate that varies
between patients, down one (remission) at a fixed rate. Visits come more often in the
higher stages, and each visit records codes of its current stage's set (the sets of
neighbouring stages overlap, and a draw takes a neighbouring stage's set now and then)
among background codes. The outcome's hazard is set by the stage at the index date,
which no code names: it must be inferred from the recent codes, since the counts over
the whole history mix the stages a patient went through (and left). The generating
model is described in :func:`survbehrt.datasets.make_synthetic_ehr`.
"""

from __future__ import annotations

import numpy as np

from ._common import (
    DAYS_PER_YEAR,
    check_cohort,
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

_WORLD_SEED = 20261206
_N_STAGES = 4
_UP = np.array([0.12, 0.18, 0.15, 0.0])  # per year, times the patient's frailty
_DOWN = np.array([0.0, 0.30, 0.15, 0.05])  # per year (remission)
_FRAILTY_SHAPE = 2.0  # Gamma(shape, mean 1) multiplier of the progression rates
_START = np.array([0.55, 0.25, 0.15, 0.05])  # stage at the start of the history
_HISTORY_YEARS = 8.0
_VISIT_RATE = np.array([1.0, 1.3, 1.7, 2.2])  # relative visit rate by stage
_P_DISEASE = np.array([0.15, 0.45, 0.6, 0.7])  # chance that a code draw is a disease code
_P_NEIGHBOUR = 0.25  # chance that a disease draw takes a neighbouring stage's set
_EXTRA_CODES = 0.5  # more codes per visit for each stage
# Disease codes 0..15; stage s emits the codes of _STAGE_SETS[s] (neighbours overlap).
_STAGE_SETS = (np.arange(0, 6), np.arange(2, 10), np.arange(6, 14), np.arange(10, 16))
_N_DISEASE = 16
_N_BACKGROUND = 80
_STAGE_EFFECTS = np.array([0.0, 0.9, 1.8, 2.7])
_AGE_EFFECT = 0.35
_WEIBULL_SHAPE = 1.2
_BASELINE_SCALE = 14.0  # years


def _names():
    world_rng = np.random.default_rng(_WORLD_SEED)
    n_codes = _N_DISEASE + _N_BACKGROUND
    # Opaque names in a random order: nothing in a name says disease or stage.
    return np.array([f"L{j:03d}" for j in world_rng.permutation(n_codes)], dtype=object)


def _stage_paths(rng, window):
    """Jump times (years before the index, negative; inf when unused) and stages after them."""
    n = len(window)
    frailty = rng.gamma(_FRAILTY_SHAPE, 1.0 / _FRAILTY_SHAPE, size=n)
    stage = rng.choice(_N_STAGES, size=n, p=_START)
    start = stage.copy()
    now = -window.copy()
    times, stages = [], []
    while True:
        up, down = _UP[stage] * frailty, _DOWN[stage]
        now = now + rng.exponential(1.0, size=n) / (up + down)
        jumped = now < 0.0
        if not jumped.any():
            break
        nxt = np.where(rng.random(n) * (up + down) < up, stage + 1, stage - 1)
        stage = np.where(jumped, nxt, stage)
        times.append(np.where(jumped, now, np.inf))
        stages.append(stage.copy())
        now = np.where(jumped, now, np.inf)  # a patient past the index stays there
    if not times:
        return start, np.full((n, 0), np.inf), np.zeros((n, 0), np.int64)
    return start, np.column_stack(times), np.column_stack(stages)


def _stage_at(start, jump_t, jump_s, pat, t):
    """The stage of patient ``pat`` at time ``t`` (years before the index, negative)."""
    n_jumps = (jump_t[pat] <= t[:, None]).sum(axis=1)
    # jump times of a patient increase, so the last jump before t is the n_jumps-th
    last = jump_s[pat, np.maximum(n_jumps - 1, 0)] if jump_s.shape[1] else start[pat]
    return np.where(n_jumps > 0, last, start[pat])


def simulate(n_patients, rng, *, mean_visits, max_visits, mean_codes_per_visit, zipf_exponent,
             followup, dropout_rate, effect_scale):
    """Draw a ``"latent"`` cohort as a sim (see :mod:`._common`)."""
    n = check_cohort(n_patients, mean_visits, max_visits, mean_codes_per_visit, followup)
    names = _names()
    disease = np.arange(_N_DISEASE)
    background = np.arange(_N_DISEASE, _N_DISEASE + _N_BACKGROUND)
    p_background = zipf(_N_BACKGROUND, zipf_exponent)

    index_day = index_days(rng, n)
    index_age = index_day / DAYS_PER_YEAR
    window = history_window(index_day, _HISTORY_YEARS)
    start, jump_t, jump_s = _stage_paths(rng, window)

    # --- visits: a Poisson process thinned by the stage's visit rate, plus a last visit
    # shortly before the index (so every patient has one) -----------------------------
    base = (mean_visits - 1.0) / _HISTORY_YEARS / _VISIT_RATE.mean()
    pat, t = poisson_times(rng, base * _VISIT_RATE.max(), window)
    stage_t = _stage_at(start, jump_t, jump_s, pat, t)
    kept = rng.random(len(t)) < _VISIT_RATE[stage_t] / _VISIT_RATE.max()
    last_t = -rng.integers(1, 120, size=n) / DAYS_PER_YEAR
    pat = np.concatenate([pat[kept], np.arange(n)])
    t = np.concatenate([t[kept], last_t])
    visits = visits_from_times(pat, t, index_day, int(max_visits))
    pat_of_visit = visits["pat_of_visit"]
    visit_t = -visits["years_before"]
    visit_stage = _stage_at(start, jump_t, jump_s, pat_of_visit, visit_t)
    n_vis_total = len(pat_of_visit)

    # --- codes: disease codes of the visit's stage (sometimes a neighbour's) among
    # background codes ---------------------------------------------------------------
    n_per_visit = np.minimum(
        1 + rng.poisson(mean_codes_per_visit - 1.0 + _EXTRA_CODES * visit_stage), 12
    )
    slot_visit = np.repeat(np.arange(n_vis_total), n_per_visit)
    slot_stage = visit_stage[slot_visit]
    is_disease = rng.random(len(slot_visit)) < _P_DISEASE[slot_stage]
    step = rng.choice([-1, 1], size=len(slot_visit))
    neighbour = rng.random(len(slot_visit)) < _P_NEIGHBOUR
    emit_stage = np.clip(np.where(neighbour, slot_stage + step, slot_stage), 0, _N_STAGES - 1)
    sizes = np.array([len(s) for s in _STAGE_SETS])
    table = np.full((_N_STAGES, sizes.max()), -1)
    for s, codes in enumerate(_STAGE_SETS):
        table[s, : len(codes)] = codes
    disease_code = table[emit_stage, np.floor(rng.random(len(slot_visit)) * sizes[emit_stage]).astype(int)]
    bg_code = rng.choice(background, size=len(slot_visit), p=p_background)
    all_code = np.where(is_disease, disease[disease_code], bg_code)
    all_visit, all_code, codes_per_visit = unique_per_visit(
        rng, slot_visit, all_code, len(names), n_vis_total
    )

    # --- risk: the stage at the index -------------------------------------------------
    stage_now = _stage_at(start, jump_t, jump_s, np.arange(n), np.zeros(n))
    components, true_risk = scaled_risk(
        {"age": _AGE_EFFECT * (index_age - 60.0) / 10.0, "stage": _STAGE_EFFECTS[stage_now]},
        effect_scale,
    )
    event, time = weibull_outcome(rng, true_risk, _BASELINE_SCALE, _WEIBULL_SHAPE, followup,
                                  dropout_rate)
    code_system = {"names": names, "background": background, "p_background": p_background}
    return sim_of(
        code_system, visits, index_day, codes_per_visit, all_code, (event, time),
        true_risk=true_risk, components=components,
        effects={"age": _AGE_EFFECT, **{f"stage_{s}": float(b) for s, b in enumerate(_STAGE_EFFECTS)}},
        signal_codes={f"stage_{s}": names[codes].tolist() for s, codes in enumerate(_STAGE_SETS)},
        extra={"stage": stage_now, "visit_stage": visit_stage,
               "rates": {"up": _UP.tolist(), "down": _DOWN.tolist()}},
    )
