"""The starting point of a survival fit: the population's hazards, or the wide path's Cox fit.

Before training, every patient's hazards start at a fit that needs no transformer:
the marginal (no-covariate) piecewise-constant hazards of the training rows, or, with
the wide path, a penalised proportional-hazards model on the same inputs as
:class:`~survbehrt.model.wide.WideTerm` (log code counts, the standardised age at the
prediction time and the log number of visits). The transformer then has to add to
what that fit already does. :func:`hazard_start` is the step ``fit`` calls; the rest is
its statistics (:func:`count_features`, :func:`fit_wide_start`). The torch module the
start is written into stays in :mod:`survbehrt.model`; this module only reads its
covariate definition (:func:`~survbehrt.model.wide.covariate_matrix`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from sklearn.model_selection import GroupKFold, KFold
from sksurv.metrics import concordance_index_censored

from .losses import survival_nll
from .model.wide import covariate_matrix
from .survival import marginal_logits

__all__ = ["HazardStart", "count_features", "fit_wide_start", "hazard_start"]


@dataclass(frozen=True)
class HazardStart:
    """Where a survival module starts: its hazard head's bias and the wide term's weights.

    Attributes
    ----------
    baseline : ndarray of shape (K,)
        The hazard head's output bias (logits of the per-interval hazards).
    age_mean, age_scale : float
        Standardisation of the age at the prediction time (training rows).
    beta, gamma : ndarray or None
        The wide term's code and covariate weights (None without the wide path).
    alpha, scale : float or None
        The Cox fit's ridge penalty and calibration slope (:func:`fit_wide_start`).
    """

    baseline: np.ndarray
    age_mean: float
    age_scale: float
    beta: np.ndarray | None = None
    gamma: np.ndarray | None = None
    alpha: float | None = None
    scale: float | None = None


def hazard_start(tokens, rows, time, event, cuts, *, wide: bool, n_special: int,
                 vocab_size: int, groups=None, random_state=0) -> HazardStart:
    """The starting point of a survival fit on the training rows.

    Parameters
    ----------
    tokens : TokenizedEHR
        The tokenized cohort.
    rows : ndarray of int
        The training rows of ``tokens``.
    time, event : ndarray of shape (len(rows),)
        Their follow-up (years) and event indicators.
    cuts : ndarray of shape (K + 1,)
        The time grid's edges.
    wide : bool
        Start from the wide path's Cox fit (:func:`fit_wide_start`) rather than the
        population's hazards.
    n_special, vocab_size : int
        As :class:`~survbehrt.model.wide.WideTerm`.
    groups : ndarray of shape (len(rows),), optional
        Patient of each row (the Cox fit's cross-validation folds keep them whole).
    random_state : int, default=0
        Seeds the Cox fit's folds.

    Returns
    -------
    HazardStart
    """
    train_age = np.asarray(tokens.index_age[rows], dtype=float)
    age_mean, age_scale = float(train_age.mean()), float(max(train_age.std(), 1.0))
    if not wide:
        # every patient at the population's curve (the no-covariate fit)
        return HazardStart(marginal_logits(time, event, cuts), age_mean, age_scale)
    # a penalised proportional-hazards fit on the log counts and the age: the
    # transformer then has to add to what Cox does
    start = fit_wide_start(
        count_features(tokens, n_special, vocab_size, rows=rows),
        covariate_matrix((train_age - age_mean) / age_scale, tokens.n_visits_at(rows)),
        time, event, cuts, groups=groups, random_state=random_state,
    )
    return HazardStart(start["baseline"], age_mean, age_scale, beta=start["beta"],
                       gamma=start["gamma"], alpha=start["alpha"], scale=start["scale"])


def count_features(tokens, n_special: int, vocab_size: int, rows=None):
    """The wide path's inputs at each row's last visit, as a sparse matrix.

    Parameters
    ----------
    tokens : TokenizedEHR
        A tokenized cohort (in memory or memory-mapped).
    n_special, vocab_size : int
        As :class:`WideTerm`.
    rows : array-like of int, optional
        The patients to count, in the output's row order (default: all). They are read
        in chunks of about a million tokens, so the temporaries stay small whatever the
        cohort's size.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_rows, vocab_size)
        ``log(1 + n_c)``: how often each code occurs in the row (static codes included).
    """
    rows = np.arange(len(tokens)) if rows is None else np.asarray(rows, dtype=np.int64)
    sample = tokens.lengths_at(rows[:1024])
    step = max(1, (1 << 20) // max(1, int(sample.mean()) if len(sample) else 1))
    parts = []
    for start in range(0, len(rows), step):
        part = tokens.subset(rows[start : start + step])
        lengths = part.lengths
        row = np.repeat(np.arange(len(lengths)), lengths)
        codes = part.codes.astype(np.int64)
        keep = codes >= n_special
        key, counts = np.unique(row[keep] * vocab_size + codes[keep], return_counts=True)
        parts.append(sparse.csr_matrix((np.log1p(counts), (key // vocab_size, key % vocab_size)),
                                       shape=(len(lengths), vocab_size)))
    if not parts:
        return sparse.csr_matrix((0, vocab_size))
    return sparse.vstack(parts, format="csr")


def fit_wide_start(features, covariates, time, event, cuts,
                   alphas=(1.0, 10.0, 100.0, 1e3, 1e4, 1e5), groups=None, random_state=0,
                   min_rows=5, select="concordance"):
    """Fit the wide path alone (a penalised proportional-hazards model) to start from.

    The likelihood is the model's own (piecewise-constant hazards on ``cuts``) with the
    logits ``b_k + x beta + c gamma``: per-interval baseline ``b`` and one linear
    predictor shared by all intervals, with the ridge penalty
    ``alpha / 2 sum_j (s_j w_j)^2`` on the summed likelihood, ``s_j`` the standard
    deviation of feature ``j`` (as a ridge Cox model on standardised features). ``alpha`` is
    chosen from ``alphas`` by 3-fold cross-validation (folds by ``groups`` when given),
    then the model is refitted on all rows.

    By default (``select="concordance"``) the penalty is the one whose linear predictor
    ranks the held-out rows best (Harrell's C, as a grid search over a Cox model scores
    it; ties go to the stronger penalty). Where that penalty is stronger than the one
    the held-out likelihood prefers, it shrinks the hazard ratios more than they
    warrant, which the curves would otherwise inherit: the refitted predictor is then
    multiplied by its cross-validated calibration slope (``scale`` in the output: the
    geometric mean over the folds of the factor on the fold's predictor that fits the
    held-out rows best), and the baseline is refitted. On the vendored Synthea sample
    (49 deaths) the likelihood picks a weak penalty that ranks 0.02 worse than Cox; on
    the synthetic cohorts (thousands of events) both criteria pick the same penalty
    (``benchmarks/ablation.py``, docs/evaluation.md). ``select="likelihood"``: the
    penalty with the best held-out likelihood, never scaled.

    Parameters
    ----------
    features : scipy.sparse matrix of shape (n, n_codes)
        :func:`count_features` of the training rows.
    covariates : ndarray of shape (n, 3)
        :func:`covariate_matrix` of the training rows.
    time, event : ndarray of shape (n,)
        Follow-up (years) and event indicators.
    cuts : ndarray of shape (K + 1,)
        Grid edges.
    alphas : sequence of float
        Candidate penalties.
    groups : ndarray of shape (n,), optional
        Patient of each row.
    random_state : int, default=0
    min_rows : int, default=5
        Codes present in fewer training rows keep a zero coefficient.
    select : {"concordance", "likelihood"}, default="concordance"
        The cross-validation criterion (see above).

    Returns
    -------
    dict
        ``beta`` (n_codes,), ``gamma`` (3,), ``baseline`` (K,) as float32 arrays, the
        chosen ``alpha`` and the ``scale`` applied (1.0 where both criteria choose the same penalty).
    """
    if select not in ("concordance", "likelihood"):
        raise ValueError(f"select must be 'concordance' or 'likelihood'; got {select!r}.")

    # codes of fewer than ``min_rows`` training rows get no coefficient (kept at 0), as a
    # count model drops them: with a scale-aware penalty they would be fitted to noise
    features = features.tocsc(copy=True)
    rare = np.diff(features.indptr) < min_rows
    for j in np.flatnonzero(rare):
        features.data[features.indptr[j]:features.indptr[j + 1]] = 0.0
    features.eliminate_zeros()

    cuts = np.asarray(cuts, dtype=float)
    # the grid is the modelled horizon: an event after its last edge is censored there
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool) & (time <= cuts[-1])
    time = np.minimum(time, cuts[-1])
    time_t, e = torch.tensor(time, dtype=torch.float32), torch.tensor(event)
    design = torch.tensor(features.toarray(), dtype=torch.float32) if (
        features.shape[0] * features.shape[1] <= 2e7) else None
    sparse_x = features.tocsr()
    zz = torch.tensor(np.asarray(covariates, dtype=float), dtype=torch.float32)
    mean_sq = np.asarray(features.multiply(features).mean(axis=0)).ravel()
    mean = np.asarray(features.mean(axis=0)).ravel()
    scale_beta = torch.tensor(np.sqrt(np.maximum(mean_sq - mean**2, 0.0)), dtype=torch.float32)
    scale_gamma = torch.tensor(np.asarray(covariates, dtype=float).std(axis=0), dtype=torch.float32)

    def rows_design(rows):
        if design is not None:
            return design[rows]
        sub = sparse_x[rows].tocoo()
        return torch.sparse_coo_tensor(np.vstack([sub.row, sub.col]),
                                       sub.data.astype(np.float32), size=sub.shape,
                                       check_invariants=True).coalesce()

    def nll(params, xr, rows):
        beta, gamma, base = params
        lp = (xr @ beta[:, None]).squeeze(1) + zz[rows] @ gamma
        # bounded, so that a line-search step into huge coefficients cannot overflow
        logits = (base[None, :] + lp[:, None]).clamp(-40.0, 40.0)
        return survival_nll(logits, time_t[rows], e[rows], cuts, reduction="sum")

    def fit(rows, alpha, start=None):
        xr = rows_design(rows)
        if start is None:
            start = (torch.zeros(features.shape[1]), torch.zeros(zz.shape[1]),
                     torch.tensor(marginal_logits(time[rows], event[rows], cuts),
                                  dtype=torch.float32))
        params = [p.clone().requires_grad_(True) for p in start]
        opt = torch.optim.LBFGS(params, max_iter=100, tolerance_grad=1e-6,
                                tolerance_change=1e-8, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            beta, gamma, _ = params
            penalty = (beta * scale_beta).square().sum() + (gamma * scale_gamma).square().sum()
            loss = (nll(params, xr, rows) + 0.5 * alpha * penalty) / len(rows)
            loss.backward()
            return loss

        opt.step(closure)
        fitted = tuple(p.detach() for p in params)
        if not all(torch.isfinite(p).all() for p in fitted):
            return tuple(p.clone() for p in start)  # a failed fit keeps its starting point
        return fitted

    n = features.shape[0]
    idx = np.arange(n)
    if groups is not None and len(np.unique(groups)) >= 3:
        splits = list(GroupKFold(3).split(idx, groups=groups))
    else:
        splits = list(KFold(3, shuffle=True, random_state=random_state).split(idx))
    # held-out minus log-likelihood and minus concordance of every penalty, summed over folds
    nll_cv, c_cv = np.zeros(len(alphas)), np.zeros(len(alphas))
    path = {}  # (fold, alpha index) -> the parameters fitted on the fold's training part
    for f, (tr, te) in enumerate(splits):
        start = None
        # strongest penalty first; each fit starts from the previous one (a path)
        for j in np.argsort(alphas)[::-1]:
            start = path[f, j] = fit(tr, float(alphas[j]), start)
            with torch.no_grad():
                nll_cv[j] += float(nll(start, rows_design(te), te))
                lp = (rows_design(te) @ start[0][:, None]).squeeze(1) + zz[te] @ start[1]
                c_cv[j] -= _concordance(event[te], time[te], lp.numpy())

    def best_of(scores):
        scores = np.where(np.isfinite(scores), scores, np.inf)
        order = np.argsort(alphas)[::-1]  # ties go to the strongest penalty
        return int(order[int(np.argmin(scores[order]))])

    by_likelihood = best_of(nll_cv)
    best = by_likelihood if select == "likelihood" else best_of(c_cv)
    alpha = float(alphas[best])
    beta, gamma, base = fit(idx, alpha)
    scale = 1.0
    if best != by_likelihood:
        # Ranking asked for another penalty than the likelihood (on few events, a
        # stronger one), which shrinks the hazard ratios more (or less) than they
        # warrant. Its held-out calibration
        # slope -- the factor on the fold's predictor that fits the held-out rows best --
        # says by how much: the final predictor is scaled by their geometric mean and
        # its baseline refitted. (Where both criteria agree, the likelihood's choice is
        # kept as it is: scaling it too made the joint model's curves miscalibrated on
        # the synthetic cohort, where the transformer adds to the same risk.)
        slopes = [_rescale(nll, rows_design(te), te, path[f, best])[3]
                  for f, (_, te) in enumerate(splits) if event[te].any()]
        scale = float(np.exp(np.mean(np.log(slopes)))) if slopes else 1.0
        beta, gamma, base, scale = _rescale(nll, rows_design(idx), idx, (beta, gamma, base),
                                            scale=scale)
    return {"beta": beta.numpy(), "gamma": gamma.numpy(), "baseline": base.numpy(),
            "alpha": alpha, "scale": scale}


def _concordance(event, time, risk) -> float:
    """Harrell's C, 0.5 where no pair is comparable."""
    if not event.any():
        return 0.5
    return float(concordance_index_censored(event, time, risk)[0])


#: Bound on the calibration slope (and its inverse): a held-out fold with a handful of
#: events can otherwise push it without limit.
MAX_SCALE = 1000.0


def _rescale(nll, design, rows, params, scale=None):
    """``(s beta, s gamma, b, s)``: the baseline ``b`` and, unless ``scale`` fixes it, the
    factor ``s`` (within ``1 / MAX_SCALE .. MAX_SCALE``) fitted by ``nll`` on ``rows``
    along the predictor's direction."""
    beta, gamma, base = params
    bound = float(np.log(MAX_SCALE))
    # log s = bound * tanh(u): smooth, bounded, 0 at u = 0
    u = torch.tensor(0.0 if scale is None
                     else float(np.arctanh(np.clip(np.log(scale) / bound, -0.999999, 0.999999))),
                     requires_grad=scale is None)
    b = base.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([b] if scale is not None else [u, b], max_iter=100,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        s = torch.exp(bound * torch.tanh(u))
        loss = nll((beta * s, gamma * s, b), design, rows) / len(rows)
        loss.backward()
        return loss

    try:
        opt.step(closure)
    except RuntimeError:  # a line search that overflowed: keep the predictor as it is
        return beta, gamma, base, 1.0
    s = torch.exp(bound * torch.tanh(u.detach()))
    if not (torch.isfinite(s) and torch.isfinite(b).all()):
        return beta, gamma, base, 1.0
    return beta * s, gamma * s, b.detach(), float(s)
