"""What a patient's history can tell of the ``latent`` cohort's risk: the Bayes filter of the stage.

Run: ``python benchmarks/latent_filter.py [--seeds 0 1] [--test 4000]``.

The ``latent`` generator's risk is the disease stage at the index date, which no code
names. The ``oracle`` row of the benchmarks scores the true stage; no model that reads
the history can reach it, since the stage at the index is only known through noisy
codes. This script computes the best one can do *from the history with the generator's
parameters known*: the posterior of the stage at the index given the visit times and
codes (a forward filter over the hidden Markov process that the generator simulates),
and scores the expected hazard ratio ``age + log sum_s P(s | history) exp(b_s)``.

The filter is exact in the stage process (a continuous-time Markov chain whose rates
scale with a patient's Gamma frailty, integrated over a grid of 16 quantiles), in the
visit process (a Poisson process whose rate depends on the stage: the visits *and the
gaps between them* are evidence) and in which disease code a draw emits. It
approximates two things, so its C is a lower bound of the Bayes ceiling: each visit's
distinct codes are scored as independent draws (the generator drops repeats within a
visit), and a history cut at ``max_visits`` visits starts the filter at its first kept
visit from the stage distribution at that time without the evidence before.

It prints Harrell's C on an independent test cohort of the filter's score, of the true
stage (the oracle), and how often the filter's most likely stage is the true one
(accuracy of its most likely stage), and each stage's posterior mass summed over the
patients against its true count (a filter right on average matches them). Compare with the best model of the label-efficiency
table: the room above a model is ``filter - model``, not ``oracle - model``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.linalg import expm
from scipy.stats import gamma

from survbehrt.datasets import latent, make_synthetic_ehr
from survbehrt.metrics import harrell_c

N_FRAILTY = 16
DEFAULTS = dict(mean_visits=8.0, max_visits=30, mean_codes_per_visit=2.0, zipf_exponent=1.1)


def _generator(frailty):
    """The stage chain's rate matrix for one frailty (rows sum to 0)."""
    n = latent._N_STAGES
    q = np.zeros((n, n))
    for s in range(n):
        if s + 1 < n:
            q[s, s + 1] = latent._UP[s] * frailty
        if s > 0:
            q[s, s - 1] = latent._DOWN[s]
        q[s, s] = -q[s].sum()
    return q


def _emission_tables(zipf_exponent):
    """log P(code | stage) of one draw, shape (n_codes, n_stages), by code index."""
    n_stages = latent._N_STAGES
    n_codes = latent._N_DISEASE + latent._N_BACKGROUND
    p_emit = np.zeros((n_stages, n_stages))  # P(emitting stage e | stage s)
    for s in range(n_stages):
        for step in (-1, 1):
            p_emit[s, int(np.clip(s + step, 0, n_stages - 1))] += latent._P_NEIGHBOUR / 2
        p_emit[s, s] += 1 - latent._P_NEIGHBOUR
    p_code_given_emit = np.zeros((n_stages, latent._N_DISEASE))
    for e, codes in enumerate(latent._STAGE_SETS):
        p_code_given_emit[e, codes] = 1.0 / len(codes)
    table = np.zeros((n_codes, n_stages))
    table[: latent._N_DISEASE] = (latent._P_DISEASE[:, None]
                                  * (p_emit @ p_code_given_emit)).T
    p_background = latent.zipf(latent._N_BACKGROUND, zipf_exponent)
    table[latent._N_DISEASE :] = p_background[:, None] * (1 - latent._P_DISEASE)[None, :]
    with np.errstate(divide="ignore"):
        return np.log(table)


def filter_scores(X, effects, mean_visits, max_visits, mean_codes_per_visit, zipf_exponent):
    """Each row's filtered log hazard ratio and posterior stage probabilities."""
    n_stages = latent._N_STAGES
    index_of = {name: j for j, name in enumerate(latent._names())}
    log_emit = _emission_tables(zipf_exponent)
    base = (mean_visits - 1.0) / latent._HISTORY_YEARS / latent._VISIT_RATE.mean()
    rates = base * latent._VISIT_RATE
    frailties = gamma.ppf((np.arange(N_FRAILTY) + 0.5) / N_FRAILTY, latent._FRAILTY_SHAPE,
                          scale=1 / latent._FRAILTY_SHAPE)
    gens = [_generator(f) for f in frailties]
    extra = latent._EXTRA_CODES * np.arange(n_stages)
    scores, posts = np.zeros(len(X)), np.zeros((len(X), n_stages))
    for i, (codes, ages, index_age) in enumerate(zip(X["codes"], X["ages"], X["index_age"])):
        t = np.asarray(ages) - index_age  # years before the index, negative
        window = min(latent._HISTORY_YEARS, index_age - 18.0)
        cut = len(t) >= max_visits
        after = np.diff(np.r_[t, 0.0])  # the gap after each visit (the last: to the index)
        # log P(codes of each visit | stage): distinct codes as draws, and their number
        # (1 + Poisson(mean - 1 + extra_s), capped at 12; repeats dropped, so approximate)
        lam = mean_codes_per_visit - 1.0 + extra
        log_obs = np.zeros((len(t), n_stages))
        for v, visit in enumerate(codes):
            idx = [index_of[c] for c in visit]
            log_obs[v] = log_emit[idx].sum(axis=0) + (len(idx) - 1) * np.log(lam) - lam
        log_post = np.full((N_FRAILTY, n_stages), -np.inf)
        for g, q in enumerate(gens):
            # no visit in a gap: the chain moves and the (stage-dependent) process stays silent
            move = q - np.diag(rates)
            # up to the first kept visit; in a cut history the visits before it are
            # unknown, so the chain alone (no silence as evidence) gives its prior stage
            before = q if cut else move
            alpha, log_scale = latent._START @ expm(before * (window + t[0])), 0.0
            trans = expm(move[None] * after[:, None, None])
            for v in range(len(t)):
                if v > 0:
                    alpha = alpha @ trans[v - 1]
                # the last visit is the generator's extra one: no Poisson intensity
                intensity = rates if v < len(t) - 1 else np.ones(n_stages)
                alpha = alpha * intensity * np.exp(log_obs[v] - log_obs[v].max())
                total = alpha.sum()
                log_scale += np.log(total) + log_obs[v].max()
                alpha = alpha / total
            alpha = alpha @ trans[-1]
            log_post[g] = np.log(np.maximum(alpha, 1e-300)) + log_scale
        post = np.exp(log_post - log_post.max())
        post = post.sum(axis=0) / post.sum()
        posts[i] = post
        scores[i] = np.log(post @ np.exp(effects))
    return scores, posts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--test", type=int, default=4000, help="test patients (the benchmark's seed 10,000 + s)")
    args = parser.parse_args(argv)
    effects = latent._STAGE_EFFECTS
    for seed in args.seeds:
        t0 = time.perf_counter()
        X, y, true_risk, info = make_synthetic_ehr(args.test, "latent",
                                                   random_state=10_000 + seed, return_info=True)
        age = info["components"]["age"].to_numpy()
        score, post = filter_scores(X, effects, **DEFAULTS)
        stage = info["stage"]
        print(f"latent seed {seed} (test cohort of {len(X)}): C oracle "
              f"{harrell_c(y, true_risk):.3f}, Bayes filter {harrell_c(y, age + score):.3f}, "
              f"age alone {harrell_c(y, age):.3f}; filter's most likely stage right "
              f"for {np.mean(post.argmax(axis=1) == stage):.1%} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        # a filter that is right on average: each stage's posterior mass, summed over the
        # patients, against how many are in it
        print("  patients per stage: posterior sum "
              + " ".join(f"{m:.0f}" for m in post.sum(axis=0)) + ", true "
              + " ".join(str(int(k)) for k in np.bincount(stage, minlength=post.shape[1])),
              flush=True)


if __name__ == "__main__":
    main()
