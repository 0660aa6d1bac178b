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
from scipy import linalg, sparse
from scipy.special import expit
from sklearn.model_selection import GroupKFold, KFold

from .model.wide import covariate_matrix
from .survival import locate, marginal_logits

__all__ = ["HazardStart", "count_features", "fit_wide_start", "hazard_start"]

#: Ridge penalty of the dense covariates (age, its square, the log number of visits) on
#: their standardised scale: one pseudo-observation's worth, so that a fold without
#: events stays finite, and negligible beside the likelihood of any cohort the start
#: fits. The codes' penalty is the one chosen by cross-validation.
COVARIATE_ALPHA = 1.0
#: Where the walk over the codes' penalty starts, and its step (a factor per grid point).
FIRST_ALPHA, ALPHA_STEP = 1e3, float(np.sqrt(10.0))
#: The walk stays within these penalties.
ALPHA_RANGE = (1e-2, 1e8)


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
    alpha : float or None
        The Cox fit's ridge penalty on the codes (:func:`fit_wide_start`).
    """

    baseline: np.ndarray
    age_mean: float
    age_scale: float
    beta: np.ndarray | None = None
    gamma: np.ndarray | None = None
    alpha: float | None = None


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
                       gamma=start["gamma"], alpha=start["alpha"])


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


def fit_wide_start(features, covariates, time, event, cuts, alphas=None, groups=None,
                   random_state=0, min_rows=5):
    """Fit the wide path alone (a penalised proportional-hazards model) to start from.

    The likelihood is the model's own (piecewise-constant hazards on ``cuts``) with the
    logits ``b_k + x beta + c gamma``: per-interval baseline ``b`` and one linear
    predictor shared by all intervals. The codes carry the ridge penalty
    ``alpha / 2 sum_j (s_j beta_j)^2``, ``s_j`` the standard deviation of code ``j``'s
    column (a ridge Cox model on standardised features); the three dense covariates
    (age, its square, the log number of visits) a fixed, weak one
    (:data:`COVARIATE_ALPHA`): they are few and always informative, and shrinking them
    with the codes' penalty is what made a strong penalty under-scale the predictor.

    One rule chooses ``alpha``: the held-out piecewise-exponential likelihood of a
    3-fold cross-validation (folds by ``groups`` when given). Inside each fold the codes
    kept (present in ``min_rows`` training rows or more, not constant) and the scales
    ``s`` are computed on the fold's training rows only. By default (``alphas=None``)
    the penalty walks a geometric grid (factor :data:`ALPHA_STEP`) from
    :data:`FIRST_ALPHA` towards weaker penalties while the criterion falls, towards
    stronger ones when the first step already rose, stopping where it turns (or at
    :data:`ALPHA_RANGE`); the minimum is then located between its two neighbours by
    the parabola through the three (in ``log alpha``). Each fold's fits follow the path,
    warm-started. The model is refitted on all rows at that penalty, and nothing is
    rescaled afterwards: the fit at the chosen ``alpha`` is the fit at that ``alpha``.

    The fits are Newton steps on the penalised likelihood (convex in all parameters),
    solved through the Schur complement of the diagonal baseline block, with a
    backtracking line search. Their cost grows with the cube of the number of kept codes.

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
    alphas : sequence of float, optional
        Candidate penalties, instead of the walk: the one with the best held-out
        likelihood is refitted (a single candidate is fitted directly, without
        cross-validation).
    groups : ndarray of shape (n,), optional
        Patient of each row.
    random_state : int, default=0
        Seeds the folds when there are no groups.
    min_rows : int, default=5
        Codes present in fewer training rows keep a zero coefficient (in each fold, the
        fold's training rows), as a count model drops them: with a scale-aware penalty
        they would be fitted to noise.

    Returns
    -------
    dict
        ``beta`` (n_codes,), ``gamma`` (3,), ``baseline`` (K,) as float32 arrays and the
        chosen ``alpha``.
    """
    features = sparse.csr_matrix(features, dtype=np.float64)
    covariates = np.asarray(covariates, dtype=float)
    time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=bool)
    cuts = np.asarray(cuts, dtype=float)
    if alphas is not None:
        alphas = np.sort(np.asarray(alphas, dtype=float).ravel())[::-1]  # strongest first
        if alphas.size == 0 or not (np.isfinite(alphas).all() and (alphas > 0).all()):
            raise ValueError(f"alphas must be positive finite numbers; got {alphas.tolist()}.")
    n = features.shape[0]
    data = (features, covariates, time, event, cuts)
    if alphas is not None and alphas.size == 1:
        alpha = float(alphas[0])
    else:
        idx = np.arange(n)
        if groups is not None and len(np.unique(groups)) >= 3:
            splits = GroupKFold(3).split(idx, groups=groups)
        else:
            splits = KFold(3, shuffle=True, random_state=random_state).split(idx)
        folds = []
        for train, test in splits:
            fold = _RidgeFit(data, train, min_rows)
            folds.append((fold, fold.design_of(features, covariates, test),
                          _PiecewiseExp(time[test], event[test], cuts)))

        def held_out_nll(a):
            return sum(lik.value(fold.fit(a).logits(x)) for fold, x, lik in folds)

        alpha = _search(held_out_nll) if alphas is None else _best_of(held_out_nll, alphas)
    full = _RidgeFit(data, np.arange(n), min_rows)
    if alphas is None or alphas.size > 1:
        # start from the folds' last fits, near that penalty (a guess: the optimum is the same)
        fits = [fold for fold, _, _ in folds]
        weights = [fold.weights(features.shape[1], covariates.shape[1]) for fold in fits]
        full.theta = np.concatenate([np.mean([w[0] for w in weights], axis=0)[full.codes],
                                     np.mean([w[1] for w in weights], axis=0)[full.covs]])
        full.b = np.mean([fold.b for fold in fits], axis=0)
    full.fit(alpha)
    beta, gamma = full.weights(features.shape[1], covariates.shape[1])
    return {"beta": beta.astype(np.float32), "gamma": gamma.astype(np.float32),
            "baseline": full.b.astype(np.float32), "alpha": float(alpha)}


def _best_of(criterion, alphas) -> float:
    """The candidate (strongest first) with the lowest criterion; ties go to the strongest."""
    scores = [criterion(float(a)) for a in alphas]
    return float(alphas[int(np.argmin(scores))])


def _search(criterion) -> float:
    """The penalty minimising ``criterion``: walk the grid until it turns, then interpolate.

    Grid point ``k`` is ``FIRST_ALPHA * ALPHA_STEP**k``. The walk goes to weaker
    penalties (k = -1, -2, ...) while the criterion falls; when the very first step
    rose, it goes to stronger ones instead. The minimum is then placed by the parabola
    through the best point and its two neighbours (in ``log alpha``), within half a
    step of the best point.
    """
    lo, hi = (np.log(a / FIRST_ALPHA) / np.log(ALPHA_STEP) for a in ALPHA_RANGE)
    tried = {0: criterion(FIRST_ALPHA)}
    for direction in (-1, 1):
        k = 0
        while lo <= k + direction <= hi:
            k += direction
            tried[k] = criterion(FIRST_ALPHA * ALPHA_STEP**k)
            if tried[k] >= tried[k - direction]:
                break
        if tried[-1] < tried[0]:  # the weaker side fell: the minimum is there
            break
    best = min(tried, key=tried.get)
    offset = 0.0
    if best - 1 in tried and best + 1 in tried:
        below, at, above = tried[best - 1], tried[best], tried[best + 1]
        curvature = below - 2.0 * at + above
        if curvature > 0:
            offset = float(np.clip(0.5 * (below - above) / curvature, -0.5, 0.5))
    return float(FIRST_ALPHA * ALPHA_STEP ** (best + offset))


class _PiecewiseExp:
    """The model's negative log-likelihood as a function of the logits ``a`` (n, K), in
    numpy with its first and second derivatives (each logit enters one row's term).

    Row ``i`` lives through share ``E_ik`` of interval ``k`` (1 before its time's
    interval, the share lived there, 0 after) and has its event, if any, in interval
    ``k_i``: ``-log L_i = sum_k E_ik eta_ik - delta_i log(eta_ik_i / width_k_i)`` with
    ``eta = softplus(a)``, as :func:`survbehrt.losses.survival_nll` computes it.
    """

    def __init__(self, time, event, cuts):
        event = event & (time <= cuts[-1])  # the grid is the horizon: censored at its end
        k, share = locate(np.minimum(time, cuts[-1]), cuts)
        j = np.arange(cuts.shape[0] - 1)[None, :]
        self.exposure = (j < k[:, None]) + (j == k[:, None]) * share[:, None]
        self.events = (j == k[:, None]) & event[:, None]
        self.log_width = float(np.log(np.diff(cuts))[k][event].sum())

    def value(self, a) -> float:
        eta = np.logaddexp(0.0, np.maximum(a, -700.0))
        return float((self.exposure * eta).sum() - np.log(eta[self.events]).sum()
                     + self.log_width)

    def derivatives(self, a):
        """``d/da`` and ``d^2/da^2`` of each row's term (both (n, K); the second >= 0)."""
        a = np.maximum(a, -700.0)
        eta, sig = np.logaddexp(0.0, a), expit(a)
        ratio, slope = sig / eta, sig * (1.0 - sig)  # d log eta / da, d sigma / da
        grad = self.exposure * sig - self.events * ratio
        # -log softplus is convex: ratio^2 >= slope / eta (as log(1 + e^a) <= e^a)
        hess = self.exposure * slope + self.events * (ratio * ratio - slope / eta)
        return grad, hess


def _constant_tol(mean):
    """Below this standard deviation a column is constant (relative to its mean's size)."""
    return 1e-6 * np.maximum(1.0, np.abs(mean))


class _RidgeFit:
    """The penalised fit on one set of training rows, followed along a penalty path.

    The codes kept and the scales of the penalty are computed on these rows only.
    """

    def __init__(self, data, rows, min_rows):
        features, covariates, time, event, cuts = data
        x, z = features[rows], covariates[rows]
        mean = np.asarray(x.mean(axis=0)).ravel()
        sd = np.sqrt(np.maximum(np.asarray(x.multiply(x).mean(axis=0)).ravel() - mean**2, 0.0))
        present = np.bincount(x.indices, minlength=x.shape[1])
        # codes of fewer than min_rows rows (or constant ones) keep a zero weight. "Constant"
        # is relative to the column's size: the one-pass variance above cancels to ~1e-8 of
        # the mean on a column that every row shares, and such a column, kept with its
        # near-zero penalty, makes the Newton system singular
        self.codes = np.flatnonzero((present >= min_rows) & (sd > _constant_tol(mean)))
        sd_z = z.std(axis=0)
        self.covs = np.flatnonzero(sd_z > _constant_tol(z.mean(axis=0)))
        self.scale_sq = np.concatenate([sd[self.codes], sd_z[self.covs]]) ** 2
        self.n_codes = self.codes.shape[0]
        self.design = self.design_of(features, covariates, rows)
        self.design_t = self.design.T.tocsr()
        self.lik = _PiecewiseExp(time[rows], event[rows], cuts)
        self.free = self.lik.events.any(axis=0)  # intervals without events keep their start
        self.b = marginal_logits(time[rows], event[rows], cuts).astype(float)
        self.theta = np.zeros(self.design.shape[1])
        self.alpha, self._solve = None, None

    def design_of(self, features, covariates, rows):
        """The design (kept codes, then kept covariates) of ``rows``."""
        return sparse.hstack([features[rows][:, self.codes],
                              sparse.csr_matrix(covariates[rows][:, self.covs])], format="csr")

    def _penalty(self, alpha):
        weights = np.full(self.scale_sq.shape[0], COVARIATE_ALPHA)
        weights[: self.n_codes] = alpha
        return weights * self.scale_sq

    def _objective(self, theta, b, penalty):
        logits = b[None, :] + (self.design @ theta)[:, None]
        return self.lik.value(logits) + 0.5 * float(penalty @ (theta * theta))

    def fit(self, alpha, tol=1e-7, max_iter=100):
        """Newton's method at ``alpha``, from the last fit moved along the path's tangent.

        The Hessian is factorised at the first step and reused while the steps it gives
        keep shrinking fast (a chord method); it is refactorised when they do not.
        """
        if self._solve is not None:
            # d(theta, b)/d alpha at the last solution: H^-1 applied to -(scale^2 theta) on
            # the codes; a step along it is a good first guess for the new penalty
            dpen = (alpha - self.alpha) * (self._penalty(1.0) - self._penalty(0.0))
            d_theta, d_b = self._solve(-dpen * self.theta, np.zeros(int(self.free.sum())))
            self.theta = self.theta + d_theta
            self.b = self.b.copy()
            self.b[self.free] += d_b
        penalty = self._penalty(alpha)
        value = self._objective(self.theta, self.b, penalty)
        solve, last = None, np.inf
        for _ in range(max_iter):
            grad, hess = self.lik.derivatives(self.logits(self.design))
            g_theta = self.design_t @ grad.sum(axis=1) + penalty * self.theta
            g_b = grad.sum(axis=0)[self.free]
            fresh = solve is None
            if fresh:
                solve = self._solve = self._newton_system(hess, penalty)
            d_theta, d_b = solve(-g_theta, -g_b)
            decrement = -(g_theta @ d_theta + g_b @ d_b)  # > 0: the factor is positive definite
            step = 1.0
            while True:  # backtracking (Armijo) line search
                theta, b = self.theta + step * d_theta, self.b.copy()
                b[self.free] += step * d_b
                trial = self._objective(theta, b, penalty)
                if trial <= value - 1e-4 * step * decrement or step < 1e-10:
                    break
                step *= 0.5
            if trial <= value:
                self.theta, self.b, value = theta, b, trial
            if decrement < tol * self.design.shape[0]:
                break
            if not fresh and (step < 1.0 or decrement > 0.25 * last):
                solve = None  # the old factor no longer converges fast: refactorise
            last = decrement
        self.alpha = alpha
        return self

    def _newton_system(self, hess, penalty):
        """A solver of the Newton system at the current point.

        The Hessian in ``(theta, b_free)`` is ``[[A' W A + P, A' h], [h' A, diag(hb)]]``
        (``W`` the rows' summed second derivatives, ``h`` the (n, K) ones, ``hb`` their
        column sums): the baseline block is diagonal, so the system is solved through its
        Schur complement, one Cholesky factor of the size of ``theta``.
        """
        h = hess[:, self.free]
        hb = h.sum(axis=0)
        cross = self.design_t @ h  # A' h
        weighted = self.design.multiply(hess.sum(axis=1)[:, None]).tocsc()
        schur = (self.design_t @ weighted).toarray()
        schur[np.diag_indices_from(schur)] += penalty
        cross_scaled = cross / hb
        schur -= cross_scaled @ cross.T
        # no column kept (every code rare or shared by all rows): the baseline alone moves;
        # scipy < 1.11 cannot factorise an empty matrix
        factor = linalg.cho_factor(schur, check_finite=False) if schur.size else None

        def solve(r_theta, r_b):
            d_theta = (linalg.cho_solve(factor, r_theta - cross_scaled @ r_b, check_finite=False)
                       if factor is not None else np.zeros(0))
            return d_theta, (r_b - cross.T @ d_theta) / hb

        return solve

    def logits(self, design):
        """The current fit's logits (n, K) on a design of :meth:`design_of`."""
        return self.b[None, :] + (design @ self.theta)[:, None]

    def weights(self, n_codes, n_covs):
        """``beta`` over all codes and ``gamma`` over all covariates (zeros where not fitted)."""
        beta, gamma = np.zeros(n_codes), np.zeros(n_covs)
        beta[self.codes] = self.theta[: self.n_codes]
        gamma[self.covs] = self.theta[self.n_codes :]
        return beta, gamma
