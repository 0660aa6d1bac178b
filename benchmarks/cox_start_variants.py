"""The wide start's C-index under variants of its penalty rule, on every dataset (a probe).

Run: ``OMP_NUM_THREADS=1 python benchmarks/cox_start_variants.py [--datasets ...]
[--variants ...] [--trained]``.

Each variant is the estimator's start alone (``max_epochs=0``; with ``--trained`` the
estimator's defaults, trained from that start) on the benchmark's 5 folds
(4,000 patients per synthetic cohort, the Synthea sample whole), scored by the mean test
Harrell C; the penalty chosen per fold is printed beside it. The variants change
``survbehrt.cox_start`` **by patching its private ``_RidgeFit`` in this process** (a
probe of rules not in the package, kept so that the next step can be measured the same
way; nothing here is used by the package):

- ``current``: the package's rule (codes shrunk by alpha, the dense covariates by a
  fixed weak ridge, alpha by the held-out likelihood);
- ``relaxed``: the same direction, then the baseline and one scale of the predictor
  refitted by maximum likelihood on the same rows (in every inner fold and in the final
  fit): the held-out likelihood scores the scaled predictor;
- ``relaxed-shared``: ``relaxed`` with age, age^2 and log visits sharing alpha;
- ``two-penalties``: a second penalty for the dense covariates on a grid (1 to 1e4), the
  codes' alpha walked for each, the pair with the best held-out likelihood kept;
- ``two-penalties-relaxed``: both.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy import sparse
from sklearn.model_selection import GroupKFold, KFold

import survbehrt.cox_start as cox_start
from survbehrt import BEHRTSurvivalEstimator
from survbehrt.benchmark import load_benchmark_data, make_folds, subject_groups
from survbehrt.metrics import harrell_c

VARIANTS = ("current", "relaxed", "relaxed-shared", "two-penalties", "two-penalties-relaxed")
COVARIATE_GRID = (1.0, 10.0, 100.0, 1e3, 1e4)
_RidgeFit = cox_start._RidgeFit
_ORIGINAL = {name: getattr(_RidgeFit, name) for name in ("fit", "weights", "_penalty")}
_FIT_WIDE_START = cox_start.fit_wide_start
_COVARIATE_ALPHA = {"value": cox_start.COVARIATE_ALPHA, "shared": False}


def _penalty(self, alpha):
    weights = np.full(self.scale_sq.shape[0], alpha if _COVARIATE_ALPHA["shared"]
                      else _COVARIATE_ALPHA["value"])
    weights[: self.n_codes] = alpha
    return weights * self.scale_sq


def _relax(fit):
    """Baseline and scale ``s`` of ``b_k + s * eta`` by Newton on the fit's own likelihood."""
    eta, b, s, free = fit.design @ fit.theta, fit.b.copy(), 1.0, fit.free
    m = int(free.sum())
    for _ in range(50):
        a = b[None, :] + s * eta[:, None]
        grad, hess = fit.lik.derivatives(a)
        g = np.concatenate([grad.sum(0)[free], [(grad * eta[:, None]).sum()]])
        h = np.zeros((m + 1, m + 1))
        h[np.arange(m), np.arange(m)] = hess.sum(0)[free]
        h[-1, :-1] = h[:-1, -1] = (hess * eta[:, None]).sum(0)[free]
        h[-1, -1] = (hess * (eta**2)[:, None]).sum()
        step = np.linalg.solve(h + 1e-9 * np.eye(m + 1), -g)
        value, t = fit.lik.value(a), 1.0
        while True:
            b_new = b.copy()
            b_new[free] += t * step[:-1]
            s_new = s + t * step[-1]
            if fit.lik.value(b_new[None, :] + s_new * eta[:, None]) <= value or t < 1e-8:
                break
            t /= 2
        b, s = b_new, s_new
        if np.abs(step).max() < 1e-8:
            break
    fit.relaxed = (b, s)


class _Scaled:
    """What ``fit`` returns under relaxation: the scaled predictor's logits."""

    def __init__(self, fit):
        self.fit = fit

    def logits(self, design):
        b, s = self.fit.relaxed
        return b[None, :] + s * (design @ self.fit.theta)[:, None]


def _relaxed_fit(self, alpha, **kwargs):
    _ORIGINAL["fit"](self, alpha, **kwargs)
    _relax(self)
    return _Scaled(self)


def _relaxed_weights(self, n_codes, n_covs):
    beta, gamma = _ORIGINAL["weights"](self, n_codes, n_covs)
    if not hasattr(self, "relaxed"):
        return beta, gamma
    self.b = self.relaxed[0]  # read by fit_wide_start right after the weights
    return beta * self.relaxed[1], gamma * self.relaxed[1]


def _two_penalties(features, covariates, time, event, cuts, alphas=None, groups=None,
                   random_state=0, min_rows=5):
    features = sparse.csr_matrix(features, dtype=np.float64)
    covariates = np.asarray(covariates, dtype=float)
    time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=bool)
    data, idx = (features, covariates, time, event, cuts), np.arange(features.shape[0])
    splits = list(GroupKFold(3).split(idx, groups=groups)
                  if groups is not None and len(np.unique(groups)) >= 3
                  else KFold(3, shuffle=True, random_state=random_state).split(idx))
    best = None
    for covariate_alpha in COVARIATE_GRID:
        _COVARIATE_ALPHA["value"] = covariate_alpha
        folds = [(fold, fold.design_of(features, covariates, test),
                  cox_start._PiecewiseExp(time[test], event[test], cuts))
                 for fold, test in ((_RidgeFit(data, train, min_rows), test)
                                    for train, test in splits)]

        def held_out(a, folds=folds):
            return sum(lik.value(fold.fit(a).logits(x)) for fold, x, lik in folds)

        alpha = cox_start._search(held_out)
        score = held_out(alpha)
        if best is None or score < best[0]:
            best = (score, covariate_alpha, alpha)
    _COVARIATE_ALPHA["value"] = best[1]
    out = _FIT_WIDE_START(features, covariates, time, event, cuts, alphas=(best[2],),
                          groups=groups, random_state=random_state, min_rows=min_rows)
    return {**out, "alpha": best[2]}


def use(variant):
    """Patch ``survbehrt.cox_start`` to ``variant`` (``current`` restores the package's rule)."""
    for name, method in _ORIGINAL.items():
        setattr(_RidgeFit, name, method)
    cox_start.fit_wide_start = _FIT_WIDE_START
    _COVARIATE_ALPHA.update(value=cox_start.COVARIATE_ALPHA, shared=variant == "relaxed-shared")
    if variant != "current":
        _RidgeFit._penalty = _penalty
    if "relaxed" in variant:
        _RidgeFit.fit, _RidgeFit.weights = _relaxed_fit, _relaxed_weights
    if variant.startswith("two-penalties"):
        cox_start.fit_wide_start = _two_penalties


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=[
        "synthea-sample", "synthetic", "synthetic-counts", "synthetic-latent",
        "synthetic-synonyms"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--trained", action="store_true",
                        help="the estimator's defaults trained from the start, not the start alone")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    for name in args.datasets:
        X, y, _ = load_benchmark_data(name, 4000, 0)
        groups, folds = subject_groups(X), make_folds(X, y["event"], 5, 0)
        for variant in args.variants:
            use(variant)
            scores, alphas = [], []
            for train, test in folds:
                est = BEHRTSurvivalEstimator(random_state=0, n_threads=1,
                                             **({} if args.trained else {"max_epochs": 0}))
                extra = {} if groups is None else {"groups": groups[train]}
                est.fit(X.iloc[train], y[train], **extra)
                scores.append(harrell_c(y[test], est.predict(X.iloc[test])))
                alphas.append(f"{np.log10(est.wide_alpha_):.1f}")
            what = "trained C" if args.trained else "start C"
            print(f"{name:<20} {variant:<22} {what} {np.mean(scores):.3f} "
                  f"± {np.std(scores, ddof=1):.3f}  "
                  f"log10 alpha by fold {' '.join(alphas)}", flush=True)
    use("current")


if __name__ == "__main__":
    main()
