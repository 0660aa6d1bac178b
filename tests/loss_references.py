"""Loss references written from the definitions (plain loops), shared by the loss tests."""

import math

import numpy as np


def _softplus(a):
    return math.log1p(math.exp(a)) if a < 30 else a + math.log1p(math.exp(-a))


def cumhaz_loop(logits_row, cuts, t):
    """H(t) by walking the bins: a constant rate eta_k / width_k inside bin k."""
    h = 0.0
    for k in range(len(cuts) - 1):
        lo, hi = cuts[k], cuts[k + 1]
        rate = _softplus(float(logits_row[k])) / (hi - lo)
        if t > hi and k < len(cuts) - 2:
            h += rate * (hi - lo)
        else:
            return h + rate * (t - lo), rate
    raise AssertionError("unreachable")


def ranking_reference(logits, time, event, cuts, sigma, form, groups=None, n_current=None):
    """Double loop from the definition: i had the event at t_i, j was at risk after t_i
    (T_j > t_i, or censored at T_j = t_i), both compared at t_i; times past the last edge
    are censored there. With ``n_current``, rows from it on are reference rows that are
    not compared with each other."""
    n = len(time)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool) & (time <= cuts[-1])
    time = np.minimum(time, cuts[-1])
    total, pairs = 0.0, 0
    for i in range(n):
        if not event[i]:
            continue
        for j in range(n):
            if i == j or (groups is not None and groups[i] == groups[j]):
                continue
            if n_current is not None and i >= n_current and j >= n_current:
                continue
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                f_i = 1.0 - math.exp(-cumhaz_loop(logits[i], cuts, time[i])[0])
                f_j = 1.0 - math.exp(-cumhaz_loop(logits[j], cuts, time[i])[0])
                z = -(f_i - f_j) / sigma
                total += math.exp(z) if form == "exp" else math.log1p(math.exp(z))
                pairs += 1
    return total / max(pairs, 1), pairs
