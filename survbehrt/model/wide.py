"""The wide path: an additive term over code counts and the age at prediction.

BEHRT alone has no direct way to say "each diagnosis of X multiplies the hazard by
a constant", which is what a Cox model on code counts exploits on small cohorts.
:class:`WideTerm` adds exactly that, learned jointly with the transformer (wide &
deep): for the history up to visit ``t``,

``w(t) = sum_c beta_c log(1 + n_c(t)) + gamma_1 z + gamma_2 z^2 + gamma_3 log(1 + t)``,

with ``n_c(t)`` the number of times code ``c`` occurred up to visit ``t``, ``z`` the
standardised age at the prediction time and ``1 + t`` the number of (kept) visits up
to visit ``t`` (history length is a strong risk signal in EHR data). ``w(t)`` is added to every one of the
visit's ``K`` hazard logits; since ``softplus(a + w) ~ e^w softplus(a)`` for small
hazards, it acts as a proportional-hazards shift. All weights start at zero, so the
model starts as the transformer alone, and they are regularised by the optimiser's
weight decay.

The count term is computed per token, without a dense (patients x codes) matrix:
``log(1 + n)`` telescopes into ``sum_{k=1..n} log((1 + k) / k)``, so the ``k``-th
occurrence of a code adds ``beta_c log((k + 1) / k)``, and a cumulative sum over
visits gives every visit its own (causal) value.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["WideTerm", "count_features", "covariate_matrix", "fit_wide_start", "occurrence_rank"]

N_COVARIATES = 3


def covariate_matrix(z, n_visits):
    """The wide path's dense covariates ``(z, z^2, log(1 + n_visits))`` (numpy or torch).

    Parameters
    ----------
    z : ndarray or Tensor of shape (...)
        Standardised age at the prediction time.
    n_visits : ndarray or Tensor of shape (...)
        Number of visits in the history so far.

    Returns
    -------
    ndarray or Tensor of shape (..., 3)
    """
    if isinstance(z, torch.Tensor):
        return torch.stack([z, z * z, torch.log1p(n_visits)], dim=-1)
    import numpy as np

    z = np.asarray(z, dtype=float)
    return np.stack([z, z * z, np.log1p(np.asarray(n_visits, dtype=float))], axis=-1)


def occurrence_rank(codes: Tensor, counted: Tensor) -> Tensor:
    """For each token, how many times its code has occurred so far in its row (1, 2, ...).

    Parameters
    ----------
    codes : Tensor of shape (B, L), integer
        Token ids.
    counted : Tensor of shape (B, L), bool
        Tokens that count (real code tokens); others get rank 0 and are not counted.

    Returns
    -------
    Tensor of shape (B, L), int64
        ``1 +`` the number of earlier counted tokens of the row with the same code.
    """
    batch, length = codes.shape
    if codes.numel() == 0:
        return torch.zeros_like(codes, dtype=torch.long)
    rows = torch.arange(batch, device=codes.device)[:, None].expand(batch, length)
    pos = torch.arange(length, device=codes.device)[None, :].expand(batch, length)
    vocab = int(codes.max()) + 1
    # group = (row, code) of counted tokens; uncounted tokens get a group of their own
    group = torch.where(counted, rows * vocab + codes.long(), -1 - (rows * length + pos))
    key = group * length + pos  # sort by group, then by position
    order = torch.argsort(key.reshape(-1))
    sorted_group = group.reshape(-1)[order]
    idx = torch.arange(order.numel(), device=codes.device)
    new_run = torch.ones_like(sorted_group, dtype=torch.bool)
    new_run[1:] = sorted_group[1:] != sorted_group[:-1]
    run_start = torch.cummax(torch.where(new_run, idx, torch.zeros_like(idx)), dim=0).values
    rank_sorted = idx - run_start + 1
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return torch.where(counted, rank.reshape(batch, length), torch.zeros_like(rank.reshape(batch, length)))


class WideTerm(nn.Module):
    """Additive log-count and age term added to every hazard logit (see the module docstring).

    Parameters
    ----------
    vocab_size : int
        Number of token ids.
    n_special : int
        Ids below this are special tokens ([PAD], [CLS], ...), never counted.
    age_mean, age_scale : float, default=60.0, 15.0
        Standardisation of the age at prediction (set from the training rows).

    Attributes
    ----------
    code_weight : torch.nn.Embedding
        ``beta_c``, one scalar per token id (zero-initialised).
    covariate_weight : torch.nn.Linear
        ``gamma`` on ``(z, z^2, log(1 + t))``, no bias (zero-initialised).
    """

    def __init__(self, vocab_size: int, n_special: int, age_mean: float = 60.0,
                 age_scale: float = 15.0) -> None:
        super().__init__()
        self.n_special = int(n_special)
        self.code_weight = nn.Embedding(int(vocab_size), 1)
        self.covariate_weight = nn.Linear(N_COVARIATES, 1, bias=False)
        self.register_buffer("age_mean", torch.tensor(float(age_mean)))
        self.register_buffer("age_scale", torch.tensor(float(age_scale)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weights: the wide term starts at 0."""
        nn.init.zeros_(self.code_weight.weight)
        nn.init.zeros_(self.covariate_weight.weight)

    def forward(self, codes: Tensor, visits: Tensor, attention_mask: Tensor, n_visit_slots: int,
                index_age: Tensor | None = None) -> Tensor:
        """The wide term of every visit.

        Parameters
        ----------
        codes, visits : Tensor of shape (B, L), integer
            Token ids and the visit each token belongs to.
        attention_mask : Tensor of shape (B, L), bool
            Real tokens.
        n_visit_slots : int
            ``V``, the number of visit slots of the batch.
        index_age : Tensor of shape (B,), optional
            Age at the prediction time in years; no age term without it.

        Returns
        -------
        Tensor of shape (B, V)
            ``w(t)`` for every visit slot (the value of the last real visit repeats
            into padding slots).
        """
        counted = attention_mask.bool() & (codes >= self.n_special)
        rank = occurrence_rank(codes, counted).to(self.code_weight.weight.dtype)
        step = torch.where(counted, torch.log1p(1.0 / rank.clamp_min(1.0)), torch.zeros_like(rank))
        contrib = self.code_weight(codes.long()).squeeze(-1) * step  # (B, L)
        batch = codes.shape[0]
        per_visit = contrib.new_zeros(batch, n_visit_slots)
        per_visit.scatter_add_(1, visits.long().clamp(0, n_visit_slots - 1), contrib)
        out = torch.cumsum(per_visit, dim=1)
        z = (out.new_zeros(batch) if index_age is None
             else (index_age.to(out.dtype) - self.age_mean) / self.age_scale)
        n_visits = torch.arange(1, n_visit_slots + 1, device=out.device, dtype=out.dtype)
        covariates = covariate_matrix(z[:, None].expand(batch, n_visit_slots),
                                      n_visits[None, :].expand(batch, n_visit_slots))
        return out + self.covariate_weight(covariates).squeeze(-1)


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
    import numpy as np
    from scipy import sparse

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
    import numpy as np
    from sklearn.model_selection import GroupKFold, KFold

    from ..losses import survival_nll
    from ..survival import marginal_logits

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
    from sksurv.metrics import concordance_index_censored

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
