"""Plain-Python references for the event-table converters, written from their definitions.

One event is a tuple ``(subject, time, code, value)``; ``time`` is a ``pandas.Timestamp``
or ``None`` (a static row). These loops are slow and obvious on purpose: the tests
compare the columnar implementation against them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

BIRTH = "MEDS_BIRTH"
DAY = pd.Timedelta(days=1)


def years(a, b) -> float:
    """``(a - b)`` in years of 365.25 days."""
    return (a - b) / DAY / 365.25


def births_of(events):
    return {s: t for s, t, c, _ in events if c == BIRTH and t is not None}


def history(events, subject, pt, *, strict):
    """The subject's events known at ``pt`` (all when ``pt`` is None), input order kept."""
    return [
        (t, i, c, v)
        for i, (s, t, c, v) in enumerate(events)
        if s == subject and t is not None and c != BIRTH
        and (pt is None or (t < pt if strict else t <= pt))
    ]


def reference_rows(events, prediction_times, *, strict=False, resolution="exact",
                   deduplicate=True):
    """``{(subject, pt): row}`` of the rows that can be built, and the dropped reasons.

    A row is a dict with ``codes``, ``ages``, ``values``, ``index_age`` and ``static``.
    ``prediction_times`` is a list of (subject, pt) pairs, or None (one row per subject,
    all its events).
    """
    births = births_of(events)
    static = {}
    for s, t, c, _ in events:
        if t is None:
            static.setdefault(s, [])
            if c not in static[s]:
                static[s].append(c)
    if prediction_times is None:
        wanted = []
        for s, _, _, _ in events:
            if (s, None) not in wanted:
                wanted.append((s, None))
    else:
        wanted = list(prediction_times)
    rows, dropped = {}, {}
    for s, pt in wanted:
        if s not in births:
            dropped[(s, pt)] = "no birth time"
            continue
        known = sorted(history(events, s, pt, strict=strict), key=lambda e: (e[0], e[1]))
        if not known:
            dropped[(s, pt)] = "no events"
            continue
        codes, ages, values, keys = [], [], [], []
        for t, _, c, v in known:
            key = t.normalize() if resolution == "day" else t
            if not keys or keys[-1] != key:
                keys.append(key)
                codes.append([])
                values.append([])
                ages.append(years(t, births[s]))
            if deduplicate and c in codes[-1]:
                continue
            codes[-1].append(c)
            values[-1].append(math.nan if v is None else float(v))
        index_age = ages[-1] if pt is None else years(pt, births[s])
        rows[(s, pt)] = {
            "codes": codes, "ages": ages, "values": values, "index_age": index_age,
            "static": list(static.get(s, [])),
        }
    return rows, dropped


def reference_label(events, subject, pt, outcome_codes, *, end=None, horizon_years=None):
    """``(event, time in years)`` of one row, or the reason it has no label."""
    outcomes = sorted(t for s, t, c, _ in events
                      if s == subject and t is not None and c in outcome_codes)
    if any(t <= pt for t in outcomes):
        return "outcome at or before the prediction time"
    last = max(t for s, t, c, _ in events if s == subject and t is not None and c != BIRTH)
    follow_end = last if end is None else end
    if horizon_years is not None:
        follow_end = min(follow_end, pt + pd.Timedelta(days=horizon_years * 365.25))
    after = [t for t in outcomes if t > pt]
    if after and after[0] <= follow_end:
        return True, years(after[0], pt)
    if follow_end <= pt:
        return "no follow-up"
    return False, years(follow_end, pt)


def reference_cause_label(events, subject, pt, causes, *, death_code=None, end=None,
                          horizon_years=None):
    """``(cause 1..K or 0, time in years)`` of one row, or the reason it has no label.

    ``causes`` is a list of code sets, cause ``k`` being ``causes[k - 1]``; where codes
    of several causes share the first time, the lowest ``k`` wins.
    """
    timed = [(t, c) for s, t, c, _ in events if s == subject and t is not None and c != BIRTH]
    outcomes = []  # (time, cause)
    for t, c in timed:
        for k, codes in enumerate(causes, start=1):
            if c in codes:
                outcomes.append((t, k))
    outcomes.sort()
    if any(t <= pt for t, _ in outcomes):
        return "outcome at or before the prediction time"
    deaths = sorted(t for t, c in timed if c == death_code)
    if deaths and deaths[0] <= pt:
        return "death at or before the prediction time"
    follow_end = max(t for t, _ in timed) if end is None else end
    if deaths:
        follow_end = min(follow_end, deaths[0])
    if horizon_years is not None:
        follow_end = min(follow_end, pt + pd.Timedelta(days=horizon_years * 365.25))
    after = [(t, k) for t, k in outcomes if t > pt]
    if after and after[0][0] <= follow_end:
        return after[0][1], years(after[0][0], pt)
    if follow_end <= pt:
        return "no follow-up"
    return 0, years(follow_end, pt)


def random_events(seed, n_subjects=6):
    """A small random table: ties, repeats, static rows, values, events at whole days."""
    rng = np.random.default_rng(seed)
    events = []
    base = pd.Timestamp("2000-01-01")
    codes = ["A", "B", "C", "LAB", "OUT"]
    for s in range(n_subjects):
        subject = int(rng.integers(100, 999)) * 10 + s  # unsorted, unique ids
        if rng.random() < 0.9:
            events.append((subject, base - pd.Timedelta(days=int(rng.integers(5000, 20000))),
                           BIRTH, None))
        if rng.random() < 0.7:
            events.append((subject, None, str(rng.choice(["GENDER//F", "GENDER//M"])), None))
        for _ in range(int(rng.integers(0, 14))):
            # quarter-day grid over 12 days: same-time ties and same-day visits happen
            t = base + pd.Timedelta(hours=6 * int(rng.integers(0, 48)))
            c = str(rng.choice(codes))
            v = None if rng.random() < 0.5 else round(float(rng.normal()), 3)
            events.append((subject, t, c, v))
    order = rng.permutation(len(events))
    return [events[i] for i in order]


def random_prediction_times(events, seed):
    """Zero to three distinct prediction times per subject, some on event times."""
    rng = np.random.default_rng(seed + 1000)
    subjects = list(dict.fromkeys(s for s, _, _, _ in events))
    base = pd.Timestamp("2000-01-01")
    pairs = []
    for s in subjects:
        times = set()
        for _ in range(int(rng.integers(0, 4))):
            times.add(base + pd.Timedelta(hours=3 * int(rng.integers(0, 100))))
        pairs.extend((s, t) for t in times)
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


def to_frame(events) -> pd.DataFrame:
    s, t, c, v = zip(*events)
    return pd.DataFrame(
        {
            "subject_id": np.asarray(s, dtype=np.int64),
            "time": pd.to_datetime(list(t)),
            "code": list(c),
            "numeric_value": np.array([np.nan if x is None else x for x in v], dtype=float),
        }
    )
