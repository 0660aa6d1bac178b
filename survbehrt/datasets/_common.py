"""Helpers shared by the synthetic generators: seeds, checks, outcome draws, the frame.

Every generator (:mod:`.clusters`, :mod:`.latent`, :mod:`.synonyms`) returns its cohort
as one dictionary of flat arrays, the *sim*:

``n_vis`` (visits per patient), ``pat_of_visit``, ``visit_day`` (days since birth),
``visit_age``, ``index_day``, ``index_age``, ``codes_per_visit``, ``all_code`` (code
ids, visit after visit), ``names`` (code id -> name), ``background`` and
``p_background`` (the codes a follow-up visit draws, see
:func:`~survbehrt.datasets.make_synthetic_events`), ``event``, ``time``, ``true_risk``,
``components`` (name -> per-patient term of ``true_risk``), ``effects`` and
``signal_codes``, plus ``extra`` (further truth for ``info``, may be empty).

:func:`to_frame` turns a sim into the package's patient frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data._flat import group_arange

DAYS_PER_YEAR = 365.25

# The pool of unlabelled patients draws from the seed and this tag, so that it never
# repeats the labelled cohort drawn with the same seed (see make_unlabelled_pool).
_POOL_TAG = 0x5EED_9001


def rng_of(random_state):
    """A numpy Generator from an int, a Generator, a RandomState or None."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


def pool_rng_of(random_state):
    """The unlabelled pool's Generator: independent of :func:`rng_of` on the same seed."""
    if isinstance(random_state, np.random.RandomState):
        random_state = random_state.randint(np.iinfo(np.int32).max)
    if isinstance(random_state, np.random.Generator):
        return np.random.default_rng([int(random_state.integers(np.iinfo(np.int64).max)), _POOL_TAG])
    if random_state is None:
        return np.random.default_rng()
    return np.random.default_rng([int(random_state), _POOL_TAG])


def zipf(n, exponent):
    """Zipf weights ``1 / k ** exponent`` of ``k = 1..n``, normalised."""
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def split(flat, counts):
    """Cut a Python list into consecutive chunks of the given sizes."""
    ends = np.cumsum(counts).tolist()
    starts = [0, *ends[:-1]]
    return [flat[s:e] for s, e in zip(starts, ends)]


def check_cohort(n_patients, mean_visits, max_visits, mean_codes_per_visit, followup):
    """Refuse arguments every generator shares; return ``n`` as an int."""
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
    return int(n_patients)


def index_days(rng, n):
    """Index ages ``20 + 70 * Beta(2.2, 1.6)`` years, in whole days from birth.

    Ages in ``X`` are day / 365.25, as :func:`survbehrt.data.events.from_events`
    computes them.
    """
    return np.round((20.0 + 70.0 * rng.beta(2.2, 1.6, size=n)) * DAYS_PER_YEAR).astype(np.int64)


def weibull_outcome(rng, true_risk, scale0, shape, followup, dropout_rate):
    """Event and time of Weibull proportional hazards with independent censoring.

    Cumulative hazard ``H(t) = (t / scale0) ** shape * exp(true_risk)``, censored at the
    earlier of ``Uniform(*followup)`` and ``Exp(rate=dropout_rate)`` (none when 0).
    """
    n = len(true_risk)
    event_time = scale0 * (rng.exponential(size=n) * np.exp(-true_risk)) ** (1.0 / shape)
    admin = rng.uniform(followup[0], followup[1], size=n)
    dropout = rng.exponential(1.0 / dropout_rate, size=n) if dropout_rate > 0 else np.inf
    censor = np.minimum(admin, dropout)
    event = event_time <= censor
    return event, np.where(event, event_time, censor)


def scaled_risk(components, effect_scale):
    """Multiply every non-age component by ``effect_scale``; their sum is ``true_risk``."""
    scale = float(effect_scale)
    components = {
        name: np.asarray(v, dtype=np.float64) * (1.0 if name == "age" else scale)
        for name, v in components.items()
    }
    return components, np.sum(list(components.values()), axis=0)


def unique_per_visit(rng, all_visit, all_code, n_codes, n_visits):
    """Shuffle the codes within each visit, then keep the first of a code's repeats.

    Returns the visit and code arrays (visit after visit) and the codes per visit.
    """
    order = np.lexsort((rng.random(len(all_visit)), all_visit))
    all_visit, all_code = all_visit[order], all_code[order]
    key = all_visit.astype(np.int64) * n_codes + all_code
    _, first_idx = np.unique(key, return_index=True)
    keep = np.zeros(len(key), bool)
    keep[first_idx] = True
    all_visit, all_code = all_visit[keep], all_code[keep]
    return all_visit, all_code, np.bincount(all_visit, minlength=n_visits)


def to_frame(sim):
    """The patient frame (``codes``, ``ages``, ``index_age``) of a sim."""
    flat_codes = sim["names"][sim["all_code"]].tolist()
    visits = split(flat_codes, sim["codes_per_visit"])
    codes = split(visits, sim["n_vis"])
    ages = split(sim["visit_age"].tolist(), sim["n_vis"])
    return pd.DataFrame({"codes": codes, "ages": ages, "index_age": sim["index_age"]})


def history_window(index_day, years):
    """Years of history before the index: ``years``, shortened to start at age 18."""
    return np.minimum(years, index_day / DAYS_PER_YEAR - 18.0)


def poisson_times(rng, rate, window):
    """Times of a Poisson process of ``rate`` per year on ``(-window, 0)`` (years to index).

    Returns the patient of each time and the times, patient after patient (unsorted
    within a patient).
    """
    count = rng.poisson(rate * window)
    pat = np.repeat(np.arange(len(window)), count)
    return pat, -rng.uniform(0.0, 1.0, size=len(pat)) * window[pat]


def visits_from_times(pat, t, index_day, max_visits):
    """Visits from times in years before the index (negative), at most ``max_visits`` each.

    Times become whole days since birth; a patient's visits on one day are one visit;
    a patient keeps the ``max_visits`` most recent. Every patient must have a time.

    Returns
    -------
    dict
        ``n_vis``, ``pat_of_visit``, ``visit_day``, ``visit_age``, ``years_before``
        (years from the visit to the index) and ``keep`` (which of the input times
        became a visit, in the input's order).
    """
    n = len(index_day)
    day = index_day[pat] + np.floor(t * DAYS_PER_YEAR).astype(np.int64)
    order = np.lexsort((day, pat))
    day_sorted, pat_sorted = day[order], pat[order]
    first_of_day = np.ones(len(order), bool)
    first_of_day[1:] = (pat_sorted[1:] != pat_sorted[:-1]) | (day_sorted[1:] != day_sorted[:-1])
    per_pat = np.bincount(pat_sorted[first_of_day], minlength=n)
    if (per_pat == 0).any():
        raise AssertionError("every patient needs at least one visit")
    # rank from the most recent visit: keep ranks < max_visits
    rank = np.repeat(per_pat, per_pat) - 1 - group_arange(per_pat)
    kept_first = first_of_day.copy()
    kept_first[np.flatnonzero(first_of_day)[rank >= max_visits]] = False
    keep = np.zeros(len(order), bool)
    keep[order[kept_first]] = True
    pat_of_visit = pat_sorted[kept_first]
    visit_day = day_sorted[kept_first]
    return {
        "n_vis": np.bincount(pat_of_visit, minlength=n).astype(np.int64),
        "pat_of_visit": pat_of_visit,
        "visit_day": visit_day,
        "visit_age": visit_day / DAYS_PER_YEAR,
        "years_before": (index_day[pat_of_visit] - visit_day) / DAYS_PER_YEAR,
        "keep": keep,
        "order": order[kept_first],  # input position of each visit
    }


def sim_of(code_system, visits, index_day, codes_per_visit, all_code, outcome, **truth):
    """Assemble a sim (see the module docstring) from a generator's parts.

    ``code_system`` holds ``names``, ``background`` and ``p_background``; ``visits``
    ``n_vis``, ``pat_of_visit``, ``visit_day`` and ``visit_age``; ``outcome`` is
    ``(event, time)``; ``truth`` gives ``true_risk``, ``components``, ``effects``,
    ``signal_codes`` and ``extra``.
    """
    return {
        **{k: code_system[k] for k in ("names", "background", "p_background")},
        **{k: visits[k] for k in ("n_vis", "pat_of_visit", "visit_day", "visit_age")},
        "index_day": index_day,
        "index_age": index_day / DAYS_PER_YEAR,
        "codes_per_visit": codes_per_visit,
        "all_code": all_code,
        "event": outcome[0],
        "time": outcome[1],
        **truth,
    }
