"""The starting point of a survival fit: the population's hazards, or the wide path's Cox fit.

Before training, every patient's hazards start at a fit that needs no transformer:
the marginal (no-covariate) piecewise-constant hazards of the training rows, or, with
the wide path, a penalised proportional-hazards model on the same inputs as
:class:`~survbehrt.model.wide.WideTerm` (log code counts and recent code counts, the
standardised age at the prediction time, the log number of visits and the visit tempo). The transformer then has to add to
what that fit already does. :func:`hazard_start` is the step ``fit`` calls; the rest is
its statistics (:func:`count_features`, :func:`fit_wide_start`). The torch module the
start is written into stays in :mod:`survbehrt.model`; this module only reads its
covariate definition (:func:`~survbehrt.model.wide.covariate_matrix`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg, sparse
from sklearn.model_selection import GroupKFold, KFold

from .data.tokenized import row_chunks
from .model.wide import covariate_matrix
from .recalibration import MIN_EVENTS, MIN_SLOPE, PENALTY, fit_calibration
from .survival import locate, marginal_logits

__all__ = ["HazardStart", "count_features", "fit_wide_start", "hazard_start"]

#: The codes' penalty: where its walk starts, its step (a factor per grid point) and the
#: range it stays within.
FIRST_ALPHA, ALPHA_STEP, ALPHA_RANGE = 1e3, float(np.sqrt(10.0)), (1e-2, 1e8)
#: The dense covariates' penalty (age, its square, the log number of visits, the tempo): its walk
#: starts at 1 (one pseudo-observation's worth, which keeps a fold without events finite)
#: and goes up by factors of 10 to at most 1e8 (where the covariates are out of the model).
FIRST_COVARIATE_ALPHA, COVARIATE_ALPHA_STEP, COVARIATE_ALPHA_RANGE = 1.0, 10.0, (1.0, 1e8)
#: Rounds of the coordinate descent over the two penalties, at most.
MAX_ROUNDS = 4


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
        The wide term's code and covariate weights (None without the wide path); with
        its recent counts, ``beta`` holds the counts' weights and then theirs.
    alpha, covariate_alpha : float or None
        The Cox fit's ridge penalties on the codes and on the dense covariates
        (:func:`fit_wide_start`).
    scale : float or None
        The Cox fit's scale: its weights are the ridge fit's times ``scale``.
    shrinkage : float or None
        The held-out calibration slope that ``scale`` includes (:func:`fit_wide_start`).
    recent : bool or None
        Whether the recent code counts entered the fit: the folds' held-out likelihood
        was better with them than without (their weights are zero otherwise); None
        without them.
    representation_weight : ndarray of shape (d,) or None
        The weights of the encoder's representation of the last visit, fitted with
        the rest (:func:`hazard_start`'s ``representations``); None without them.
    representation_alpha : float or None
        Their ridge penalty.
    representation_used : bool or None
        Whether the representation entered the start: the folds' held-out likelihood
        was better with it than without (otherwise ``representation_weight`` is None and
        the start is the first fit's); None when none was given.
    """

    baseline: np.ndarray
    age_mean: float
    age_scale: float
    beta: np.ndarray | None = None
    gamma: np.ndarray | None = None
    alpha: float | None = None
    covariate_alpha: float | None = None
    scale: float | None = None
    shrinkage: float | None = None
    recent: bool | None = None
    representation_weight: np.ndarray | None = None
    representation_alpha: float | None = None
    representation_used: bool | None = None


def hazard_start(tokens, rows, time, event, cuts, *, wide: bool, n_special: int,
                 vocab_size: int, groups=None, random_state=0, tempo_scales=None,
                 recency=None, representations=None) -> HazardStart:
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
    tempo_scales : sequence of float, optional
        The wide path's tempo covariates at these time scales (years), beside the age
        and the visit count (:class:`~survbehrt.model.wide.WideTerm`'s ``scales``).
    recency : float, optional
        The wide path's recent code counts at this time scale (years), beside the
        counts (:class:`~survbehrt.model.wide.WideTerm`'s ``recency``): ``beta`` then
        holds ``2 vocab_size`` weights, the counts' and then the recent counts'. The fit
        is made with and without them, and the one with the better held-out likelihood
        of :func:`fit_wide_start`'s folds (the same folds) is kept; without them, their
        weights are zero.
    representations : ndarray of shape (len(rows), d), or a callable returning it, optional
        A pre-trained encoder's representation of each row's last visit (what the hazard
        head reads at the start); a callable (no arguments) is called only where the part
        can enter, so that the encoder runs only where it is needed. Then the first fit
        (the wide fit, or nothing) is made again with a linear predictor of them beside its
        own columns, in one penalised fit (:func:`fit_wide_start` with ``representations``:
        their own ridge penalty, chosen by the same rule on the same folds with the
        others): the model starts where a Cox model on the counts and on the encoder's
        features would, and the encoder's part needs no training to count. The features are
        centred on the training rows for the fit (the mean's share of the predictor moves
        into the baseline), so neither the part nor its test depends on where they are
        centred. The joint fit is kept only where those folds' held-out likelihood is
        better than the first fit's, and never with fewer than
        :data:`~survbehrt.recalibration.MIN_EVENTS` events, where no held-out slope can
        shrink it (``representation_used``).

    Returns
    -------
    HazardStart
    """
    train_age = np.asarray(tokens.index_age[rows], dtype=float)
    age_mean, age_scale = float(train_age.mean()), float(max(train_age.std(), 1.0))
    n = len(rows)
    # the held-out likelihood compares the recent counts' fits (of the wide path: without
    # it there are none), and the encoder's part with the first fit where the part can
    # enter
    compare_part = representations is not None and _part_can_enter(time, event, cuts)
    held_out = (wide and recency is not None) or compare_part
    if not wide:
        # every patient at the population's curve (the no-covariate fit)
        start = HazardStart(marginal_logits(time, event, cuts), age_mean, age_scale)
        features, covariates = sparse.csr_matrix((n, 0)), np.zeros((n, 0))
    else:
        # a penalised proportional-hazards fit on the log counts and the age: the
        # transformer then has to add to what Cox does
        covariates = covariate_matrix((train_age - age_mean) / age_scale, tokens.n_visits_at(rows),
                                      None if not tempo_scales
                                      else tokens.decayed_visit_counts_at(rows, tempo_scales))
        features = count_features(tokens, n_special, vocab_size, rows=rows, recency=recency)

    def fit(x, reps=None):
        out = fit_wide_start(x, covariates, time, event, cuts, groups=groups,
                             random_state=random_state, held_out=held_out, representations=reps)
        if x.shape[1] < features.shape[1]:  # the recent counts out: their weights are zero
            out["beta"] = np.concatenate(
                [out["beta"], np.zeros(features.shape[1] - x.shape[1], dtype=out["beta"].dtype)])
        return out

    if not wide:
        first = {"held_out_nll": fit(features)["held_out_nll"]} if compare_part else None
        kept = features
    else:
        first, kept = fit(features), features
        if recency is not None:
            # the recent counts enter only where the same folds' held-out likelihood says
            # they help: on a cohort whose risk is in the whole history's counts they are
            # noise that the codes' one penalty cannot shrink alone
            alone = fit(features[:, :vocab_size])
            recent = not (alone["held_out_nll"] is not None
                          and first["held_out_nll"] is not None
                          and alone["held_out_nll"] <= first["held_out_nll"])
            if not recent:
                first, kept = alone, features[:, :vocab_size]
            first["recent"] = recent
        start = _as_start(first, age_mean, age_scale)
    if representations is None:
        return start
    # (no held-out likelihood where the part cannot enter: it is not compared)
    return _with_representations(start, (first or {}).get("held_out_nll"),
                                 lambda reps: fit(kept, reps), representations, time, event,
                                 cuts)


def _as_start(fit, age_mean, age_scale) -> HazardStart:
    """The :class:`HazardStart` of a :func:`fit_wide_start` result."""
    return HazardStart(fit["baseline"], age_mean, age_scale, beta=fit["beta"],
                       gamma=fit["gamma"], alpha=fit["alpha"],
                       covariate_alpha=fit["covariate_alpha"], scale=fit["scale"],
                       shrinkage=fit["shrinkage"], recent=fit.get("recent"))


def _part_can_enter(time, event, cuts) -> bool:
    """Whether the encoder's part may enter the start: with fewer than ``MIN_EVENTS``
    events there is no held-out slope to shrink it by, and it would enter at its relaxed
    in-sample scale, by a test of a few dozen events' likelihoods (on the Synthea
    sample's 5-fold benchmark, once centred, it entered a fold of 39 events and cost that
    fold 0.06 in C)."""
    return _events_within(time, event, cuts) >= MIN_EVENTS


def _with_representations(start, first_nll, refit, representations, time, event, cuts
                          ) -> HazardStart:
    """``start`` refitted with the encoder's part beside its own columns (``refit(reps)``,
    a :func:`fit_wide_start` on the same folds), where those folds' held-out likelihood is
    better than the first fit's (``first_nll``); ``representations`` a callable is
    called only where the part can enter."""
    if not _part_can_enter(time, event, cuts):
        return replace(start, representation_used=False)
    if callable(representations):
        representations = representations()
    # centred on the training rows: in a fold whose training rows have no event in some
    # interval, that interval keeps the population's hazard, which is the average
    # patient's only for a centred predictor. The encoder's features are far from
    # centred (on `latent` at 250 labels the part's mean was -2.5 with a spread of 0.6),
    # so their predictor's mean was added to those intervals on the held-out rows and
    # the test below charged the part for it. The head reads them uncentred: the mean's
    # share moves into the baseline
    reps = np.asarray(representations, dtype=float)
    mean = reps.mean(axis=0)
    # one fit of the codes, the covariates and the representations together, each block
    # with its penalty: fitted on top of the first fit as a fixed offset, the part was
    # judged against an offset that had seen each fold's held-out rows (on `latent` it
    # then chose the strongest penalty, and the start ranked 0.015 below this fit)
    joint = refit(reps - mean)
    if first_nll is None or joint["held_out_nll"] is None or joint["held_out_nll"] >= first_nll:
        return replace(start, representation_used=False)
    weight = joint["representation_weight"]
    baseline = joint["baseline"] - float(mean @ weight.astype(float))
    wide = {} if start.beta is None else dict(
        beta=joint["beta"], gamma=joint["gamma"], alpha=joint["alpha"],
        covariate_alpha=joint["covariate_alpha"], scale=joint["scale"],
        shrinkage=joint["shrinkage"])
    return replace(start, baseline=baseline.astype(np.float32), representation_weight=weight,
                   representation_alpha=joint["representation_alpha"], representation_used=True,
                   **wide)


def count_features(tokens, n_special: int, vocab_size: int, rows=None, recency=None):
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
    recency : float, optional
        Also each code's recent count at this time scale ``tau`` (years): its
        occurrences weighted ``exp(-r / tau)``, ``r`` the years from the visit to the
        prediction time (static codes have no time and are not counted), as
        :class:`~survbehrt.model.wide.WideTerm`'s ``recency`` reads them.

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_rows, vocab_size), or (n_rows, 2 vocab_size) with ``recency``
        ``log(1 + n_c)``: how often each code occurs in the row (static codes included);
        with ``recency``, the recent counts follow in the next ``vocab_size`` columns.
    """
    rows = np.arange(len(tokens)) if rows is None else np.asarray(rows, dtype=np.int64)
    width = vocab_size if recency is None else 2 * vocab_size
    parts = []
    for part in row_chunks(tokens, rows):
        lengths = part.lengths
        row = np.repeat(np.arange(len(lengths)), lengths)
        codes = part.codes.astype(np.int64)
        keep = codes >= n_special
        key, where, counts = np.unique(row[keep] * vocab_size + codes[keep], return_inverse=True,
                                       return_counts=True)
        r, c, v = key // vocab_size, key % vocab_size, np.log1p(counts)
        if recency is not None:
            # each token's visit in the flat visit arrays: its row's first visit plus its
            # visit index; static codes (age bin 0: no time) weigh nothing
            visit = part.visit_offsets[row[keep]] + part.visits[keep]
            before = np.maximum(part.visit_times[visit].astype(np.float64), 0.0)
            weight = np.exp(-before / float(recency)) * (part.age_bins[keep] > 0)
            recent = np.bincount(where, weights=weight, minlength=len(key))
            r, c, v = (np.concatenate([r, r]), np.concatenate([c, vocab_size + c]),
                       np.concatenate([v, recent]))
        parts.append(sparse.csr_matrix((v, (r, c)), shape=(len(lengths), width)))
    if not parts:
        return sparse.csr_matrix((0, width))
    out = sparse.vstack(parts, format="csr")
    out.eliminate_zeros()  # a static code's zero recent count is no presence
    return out


def fit_wide_start(features, covariates, time, event, cuts, alphas=None, groups=None,
                   random_state=0, min_rows=5, covariate_alphas=None, held_out=False,
                   representations=None):
    """Fit the wide path alone (a penalised proportional-hazards model) to start from.

    The likelihood is the model's own (piecewise-constant hazards on ``cuts``) with the
    logits ``b_k + x beta + c gamma``: per-interval baseline ``b`` and one linear
    predictor shared by all intervals. Two ridge penalties, on standardised columns
    (``s_j`` a column's standard deviation): ``alpha / 2 sum_j (s_j beta_j)^2`` on the
    codes and ``lambda / 2 sum_j (s_j gamma_j)^2`` on the dense covariates (age, its
    square, the log number of visits and, with ``tempo_scales`` in :func:`hazard_start`,
    the tempo at each scale). They are apart because the codes are many and
    sparse and the covariates few and dense: one penalty fit for both either shrinks the
    age with the codes or leaves the codes overfitted.

    The ridge gives the predictor's *direction*; its *scale* and the baseline are then
    refitted by maximum likelihood on the same rows (``b_k + s (x beta + c gamma)``, a
    relaxed ridge): a penalty strong enough to rank well shrinks the hazards' spread,
    which the likelihood (and the curves) punish, so without the refit the criterion
    below trades ranking for scale. The refit is in-sample, so its scale is optimistic
    (the risks too spread on new patients: calibration slopes 0.87–0.95 on 4,000
    patients of the simulated cohorts, docs/model.md). The scale is therefore multiplied
    by the *shrinkage*: the calibration slope (:func:`survbehrt.recalibration.fit_calibration`,
    penalised towards 1 by :data:`~survbehrt.recalibration.PENALTY`) of the three folds'
    relaxed fits at the chosen pair on their held-out rows, pooled (van Houwelingen and
    le Cessie's cross-validated shrinkage factor); the baseline is then refitted at that
    scale. With fewer than :data:`~survbehrt.recalibration.MIN_EVENTS` events the
    shrinkage is 1.

    One rule chooses both penalties: the held-out piecewise-exponential likelihood of
    the relaxed fits in a 3-fold cross-validation (folds by ``groups`` when given), each
    fold's fit at the scale the final fit will have: its relaxed scale times the folds'
    shrinkage at that pair, its baseline refitted at that scale on the fold's training
    rows (with fewer than ``MIN_EVENTS`` events, the relaxed fits as they are). Judged at
    the relaxed scale alone, a weak penalty is charged for its optimistic in-sample
    scale, which the shrinkage then corrects: the rule chose penalties stronger than
    the ones that rank best.
    Inside each fold the codes kept (present in ``min_rows`` training rows or more, not
    constant) and the scales ``s_j`` are computed on the fold's training rows only. By
    default the two are found by coordinate descent: ``alpha`` walks a geometric grid
    (:func:`_search`: factor :data:`ALPHA_STEP`, from :data:`FIRST_ALPHA`, within
    :data:`ALPHA_RANGE`) at the current ``lambda``, then ``lambda`` walks its own (factor
    :data:`COVARIATE_ALPHA_STEP`, from :data:`FIRST_COVARIATE_ALPHA`, within
    :data:`COVARIATE_ALPHA_RANGE`) at that ``alpha``, each walk from where the last one
    ended, until ``lambda`` moves by less than half its step (at most
    :data:`MAX_ROUNDS` rounds). Each walk goes until the criterion turns, and places the
    minimum by the parabola through the best point and its neighbours in ``log``
    penalty. Each fold's fits follow the path, warm-started. The model is refitted (and
    relaxed, and shrunk by the same folds) on all rows at the chosen pair: the result at
    the chosen penalties is the result at those penalties.

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
        Candidate penalties of the codes, instead of the walk: the one with the best
        held-out likelihood is refitted. With a single ``alphas`` and a single
        ``covariate_alphas`` the pair is fitted directly, without cross-validation.
    groups : ndarray of shape (n,), optional
        Patient of each row.
    random_state : int, default=0
        Seeds the folds when there are no groups.
    min_rows : int, default=5
        Codes present in fewer training rows keep a zero coefficient (in each fold, the
        fold's training rows), as a count model drops them: with a scale-aware penalty
        they would be fitted to noise.
    covariate_alphas : sequence of float, optional
        Candidate penalties of the dense covariates, instead of their walk.
    held_out : bool, default=False
        Also return the criterion at the chosen pair (``held_out_nll``), to compare
        designs on the same folds; off, the fit skips its evaluation.
    representations : ndarray of shape (n, d), optional
        Dense features with a ridge penalty of their own (``rho / 2 sum_j (s_j w_j)^2``,
        walked on the codes' grid from :data:`FIRST_ALPHA` after ``lambda`` in each
        round, the rounds going on until ``lambda`` and ``rho`` both settle): an
        encoder's representations beside the codes and the covariates
        (:func:`hazard_start`'s ``representations``). Their weights are returned as
        ``representation_weight`` and the penalty as ``representation_alpha``; ``rho``
        is walked even where ``alphas`` and ``covariate_alphas`` are single values.

    Returns
    -------
    dict
        ``beta`` (n_codes,), ``gamma`` (3,), ``baseline`` (K,) as float32 arrays (the
        relaxed and shrunk fit: the scale is in ``beta`` and ``gamma``), the chosen
        ``alpha`` and ``covariate_alpha``, ``scale``, the factor on the ridge predictor,
        and ``shrinkage``, the held-out slope included in it; with ``held_out``, also
        ``held_out_nll``, the criterion at the chosen pair (the folds' held-out negative
        log-likelihood, summed; None without folds).
    """
    features = sparse.csr_matrix(features, dtype=np.float64)
    covariates = np.asarray(covariates, dtype=float)
    time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=bool)
    cuts = np.asarray(cuts, dtype=float)
    alphas, covariate_alphas = _candidates(alphas, "alphas"), _candidates(
        covariate_alphas, "covariate_alphas")
    n = features.shape[0]
    n_covariates = covariates.shape[1]
    n_reps = 0 if representations is None else np.shape(representations)[1]
    if n_reps:  # dense like the covariates, with a penalty of their own
        covariates = np.hstack([covariates, np.asarray(representations, dtype=float)])
    data = (features, covariates, time, event, cuts)
    full = _RidgeFit(data, np.arange(n), min_rows, n_reps)
    walk = bool(n_reps) or not (alphas is not None and alphas.size == 1
                                and covariate_alphas is not None and covariate_alphas.size == 1)
    folds = []
    # the folds choose the penalties (a walk or candidates) and the scale's shrinkage,
    # which needs MIN_EVENTS events (within the grid, which is the horizon); with fewer the
    # pair alone is fitted without them
    shrunk = _events_within(time, event, cuts) >= MIN_EVENTS
    if walk or shrunk:
        idx = np.arange(n)
        if groups is not None and len(np.unique(groups)) >= 3:
            splits = GroupKFold(3).split(idx, groups=groups)
        else:
            splits = KFold(3, shuffle=True, random_state=random_state).split(idx)
        for train, test in splits:
            fold = _RidgeFit(data, train, min_rows, n_reps)
            folds.append((fold, fold.design_of(features, covariates, test),
                          _PiecewiseExp(time[test], event[test], cuts)))

    def fit_folds(a, lam, rho):
        """The folds fitted at (a, lam, rho); their held-out slope (1 without shrinkage)."""
        for fold, _, _ in folds:
            fold.fit(a, lam, rho)
        return _held_out_slope(folds) if shrunk else 1.0

    def held_out_nll(a, lam, rho):
        # each fold's fit judged at the scale the final fit will have: its relaxed scale
        # times the folds' held-out slope at (a, lam, rho), its baseline refitted at that
        # scale
        slope = fit_folds(a, lam, rho)
        if shrunk:
            for fold, _, _ in folds:
                fold.relax(scale=slope * fold.relaxed[1])
        return sum(lik.value(fold.logits(x)) for fold, x, lik in folds)

    rho = FIRST_ALPHA if n_reps else None  # the representations' penalty
    if not walk:
        alpha, covariate_alpha = float(alphas[0]), float(covariate_alphas[0])
    else:
        # coordinate descent: alpha walked at the current lambda (and rho), then lambda at
        # that alpha, then rho, until lambda (and rho) move by less than half their step
        # (alpha is then at its best for them). A block without columns is not walked:
        # its penalty changes nothing
        alpha, covariate_alpha = FIRST_ALPHA, FIRST_COVARIATE_ALPHA
        for _ in range(MAX_ROUNDS):
            if features.shape[1]:
                alpha = _choose(lambda a, lam=covariate_alpha, r=rho: held_out_nll(a, lam, r),
                                alphas, alpha, ALPHA_STEP, ALPHA_RANGE)
            previous, settled = covariate_alpha, True
            if n_covariates:
                covariate_alpha = _choose(lambda lam, a=alpha, r=rho: held_out_nll(a, lam, r),
                                          covariate_alphas, covariate_alpha,
                                          COVARIATE_ALPHA_STEP, COVARIATE_ALPHA_RANGE)
                settled = (abs(np.log(covariate_alpha / previous))
                           < 0.5 * np.log(COVARIATE_ALPHA_STEP))
            if n_reps:  # each round's walk of rho starts again at FIRST_ALPHA
                previous = rho
                rho = _search(lambda r, a=alpha, lam=covariate_alpha: held_out_nll(a, lam, r))
                settled = settled and abs(np.log(rho / previous)) < 0.5 * np.log(ALPHA_STEP)
            if settled:
                break
    # the in-sample scale is optimistic: shrunk by the folds' held-out slope at the pair
    shrink = fit_folds(alpha, covariate_alpha, rho) if shrunk else 1.0
    if folds:
        # start from the folds' last fits, at or near these penalties (a guess: the
        # optimum is the same)
        fits = [fold for fold, _, _ in folds]
        thetas = [fold.ridge_weights(features.shape[1], covariates.shape[1]) for fold in fits]
        full.theta = np.concatenate([np.mean([w[0] for w in thetas], axis=0)[full.codes],
                                     np.mean([w[1] for w in thetas], axis=0)[full.covs]])
        full.b = np.mean([fold.b for fold in fits], axis=0)
    full.fit(alpha, covariate_alpha, rho)
    if shrink != 1.0:  # (at 1 the relaxed baseline is already the one at that scale)
        full.relax(scale=shrink * full.relaxed[1])
    beta, gamma = full.ridge_weights(features.shape[1], covariates.shape[1])
    baseline, scale = full.relaxed
    out = {"beta": (scale * beta).astype(np.float32),
           "gamma": (scale * gamma).astype(np.float32),
           "baseline": baseline.astype(np.float32), "alpha": float(alpha),
           "covariate_alpha": float(covariate_alpha), "scale": float(scale),
           "shrinkage": float(shrink)}
    if n_reps:
        out["gamma"], out["representation_weight"] = (out["gamma"][:n_covariates],
                                                      out["gamma"][n_covariates:])
        out["representation_alpha"] = float(rho)
    if held_out:  # last, so that it cannot move the fit: the folds are already at the pair
        out["held_out_nll"] = (float(held_out_nll(alpha, covariate_alpha, rho)) if folds
                               else None)
    return out


def _events_within(time, event, cuts) -> int:
    """How many events fall within the grid (its last edge is the modelled horizon)."""
    return int((np.asarray(event, dtype=bool) & (np.asarray(time) <= cuts[-1])).sum())


def _candidates(values, name):
    """Candidate penalties, strongest first (None: walk)."""
    if values is None:
        return None
    values = np.sort(np.asarray(values, dtype=float).ravel())[::-1]
    if values.size == 0 or not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"{name} must be positive finite numbers; got {values.tolist()}.")
    return values


def _held_out_slope(folds) -> float:
    """The calibration slope of the folds' relaxed fits (each as :meth:`_RidgeFit.fit` left
    it), on their held-out rows pooled (:func:`survbehrt.recalibration.fit_calibration`,
    penalised towards 1 as the estimators' recalibration is)."""
    event = np.concatenate([lik.events.any(axis=1) for _, _, lik in folds])
    cumhaz, log_risk = [], []
    for fold, x, lik in folds:
        eta, _ = _PiecewiseExp._softplus(fold.logits(x))
        cumhaz.append((lik.exposure * eta).sum(axis=1))
        log_risk.append(fold.relaxed[1] * (x @ fold.theta))
    return fit_calibration(event, np.concatenate(cumhaz), np.concatenate(log_risk),
                           penalty=PENALTY, min_slope=MIN_SLOPE).slope


def _choose(criterion, candidates, first, step, bounds) -> float:
    """The penalty minimising ``criterion``: the best of ``candidates`` (strongest first;
    ties go to the strongest), or the walk of :func:`_search`."""
    if candidates is None:
        return _search(criterion, first, step, bounds)
    return float(candidates[int(np.argmin([criterion(float(a)) for a in candidates]))])


def _search(criterion, first=FIRST_ALPHA, step=ALPHA_STEP, bounds=ALPHA_RANGE) -> float:
    """The penalty minimising ``criterion``: walk the grid until it turns, then interpolate.

    Grid point ``k`` is ``first * step**k``, within ``bounds``. The walk goes to weaker
    penalties (k = -1, -2, ...) while the criterion falls; when the first step rose (or
    there is no weaker point), it goes to stronger ones instead. The minimum is then
    placed by the parabola through the best point and its two neighbours (in
    ``log alpha``), within half a step of the best point.
    """
    lo, hi = (np.log(b / first) / np.log(step) for b in bounds)
    tried = {0: criterion(first)}
    for direction in (-1, 1):
        k = 0
        while lo <= k + direction <= hi:
            k += direction
            tried[k] = criterion(first * step**k)
            if tried[k] >= tried[k - direction]:
                break
        if tried.get(-1, np.inf) < tried[0]:  # the weaker side fell: the minimum is there
            break
    best = min(tried, key=tried.get)
    offset = 0.0
    if best - 1 in tried and best + 1 in tried:
        below, at, above = tried[best - 1], tried[best], tried[best + 1]
        curvature = below - 2.0 * at + above
        if curvature > 0:
            offset = float(np.clip(0.5 * (below - above) / curvature, -0.5, 0.5))
    return float(first * step ** (best + offset))


def _backtrack(moved, objective, value, decrement):
    """Backtracking (Armijo) line search along a Newton direction.

    ``moved(step)`` is the point at that step, ``value`` the objective at step 0 and
    ``decrement`` the Newton decrement there. Halves the step from 1 until the objective
    falls by the Armijo fraction of the decrement (or the step is below 1e-10); returns
    the point, its objective and the step.
    """
    step = 1.0
    while True:
        point = moved(step)
        trial = objective(point)
        if trial <= value - 1e-4 * step * decrement or step < 1e-10:
            return point, trial, step
        step *= 0.5


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
        self.event_at = (np.flatnonzero(event), k[event])  # (row, interval) of each event
        self.log_width = float(np.log(np.diff(cuts))[k][event].sum())

    @staticmethod
    def _softplus(a):
        """``softplus(a)`` and, from the same exponential, ``sigmoid(a)``."""
        a = np.maximum(a, -700.0)
        e = np.exp(-np.abs(a))
        return np.maximum(a, 0.0) + np.log1p(e), np.where(a >= 0.0, 1.0, e) / (1.0 + e)

    def value(self, a) -> float:
        a = np.maximum(a, -700.0)
        eta = np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))
        return float((self.exposure * eta).sum() - np.log(eta[self.event_at]).sum()
                     + self.log_width)

    def derivatives(self, a):
        """``d/da`` and ``d^2/da^2`` of each row's term (both (n, K); the second >= 0)."""
        eta, sig = self._softplus(a)
        slope = sig * (1.0 - sig)  # d sigma / da
        grad, hess = self.exposure * sig, self.exposure * slope
        # the event terms, at each event's (row, interval) only
        at = self.event_at
        ratio = sig[at] / eta[at]  # d log eta / da
        grad[at] -= ratio
        # -log softplus is convex: ratio^2 >= slope / eta (as log(1 + e^a) <= e^a)
        hess[at] += ratio * ratio - slope[at] / eta[at]
        return grad, hess


def _constant_tol(mean):
    """Below this standard deviation a column is constant (relative to its mean's size)."""
    return 1e-6 * np.maximum(1.0, np.abs(mean))


class _RidgeFit:
    """The penalised fit on one set of training rows, followed along a penalty path.

    The codes kept and the scales of the penalty are computed on these rows only. The
    last ``n_representations`` columns of ``data``'s dense covariates are the
    representations' block, with a penalty of its own.
    """

    def __init__(self, data, rows, min_rows, n_representations=0):
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
        # the last n_representations dense columns are the representations' block
        self.representation = self.covs >= z.shape[1] - n_representations
        self.scale_sq = np.concatenate([sd[self.codes], sd_z[self.covs]]) ** 2
        self.n_codes = self.codes.shape[0]
        self.design = self.design_of(features, covariates, rows)
        self.design_t = self.design.T.tocsr()
        self.lik = _PiecewiseExp(time[rows], event[rows], cuts)
        self.free = self.lik.events.any(axis=0)  # intervals without events keep their start
        self.b = marginal_logits(time[rows], event[rows], cuts).astype(float)
        self.theta = np.zeros(self.design.shape[1])
        self.penalty, self._solve = None, None
        self.relaxed = (self.b, 1.0)

    def design_of(self, features, covariates, rows):
        """The design (kept codes, then kept covariates) of ``rows``."""
        return sparse.hstack([features[rows][:, self.codes],
                              sparse.csr_matrix(covariates[rows][:, self.covs])], format="csr")

    def _penalty(self, alpha, covariate_alpha, representation_alpha=None):
        weights = np.full(self.scale_sq.shape[0], covariate_alpha)
        weights[: self.n_codes] = alpha
        if representation_alpha is not None:
            weights[self.n_codes :][self.representation] = representation_alpha
        return weights * self.scale_sq

    def _objective(self, theta, b, penalty):
        logits = b[None, :] + (self.design @ theta)[:, None]
        return self.lik.value(logits) + 0.5 * float(penalty @ (theta * theta))

    def fit(self, alpha, covariate_alpha, representation_alpha=None, tol=1e-7, max_iter=100):
        """The ridge fit at the penalties, then its relaxed scale and baseline (:meth:`relax`).

        Newton's method from the last fit moved along the path's tangent. The Hessian is
        factorised at the first step and reused while the steps it gives keep shrinking
        fast (a chord method); it is refactorised when they do not.
        """
        penalty = self._penalty(alpha, covariate_alpha, representation_alpha)
        value = self._objective(self.theta, self.b, penalty)
        if self._solve is not None:
            # d(theta, b) for a change dP of the (diagonal) penalty at the last solution:
            # H^-1 applied to -(dP theta); a step along it is a good first guess for a
            # small change, kept only where it is better than the last solution (a large
            # one can overshoot into saturated hazards)
            d_theta, d_b = self._solve(-(penalty - self.penalty) * self.theta,
                                       np.zeros(int(self.free.sum())))
            theta, b = self.theta + d_theta, self.b.copy()
            b[self.free] += d_b
            guess = self._objective(theta, b, penalty)
            if guess < value:
                self.theta, self.b, value = theta, b, guess
        solve, last = None, np.inf
        for _ in range(max_iter):
            # the ridge's own logits (``logits`` gives the relaxed fit's)
            grad, hess = self.lik.derivatives(
                self.b[None, :] + (self.design @ self.theta)[:, None])
            g_theta = self.design_t @ grad.sum(axis=1) + penalty * self.theta
            g_b = grad.sum(axis=0)[self.free]
            fresh = solve is None
            if fresh:
                solve = self._solve = self._newton_system(hess, penalty)
            d_theta, d_b = solve(-g_theta, -g_b)
            decrement = -(g_theta @ d_theta + g_b @ d_b)  # > 0: the factor is positive definite

            def moved(step, d_theta=d_theta, d_b=d_b):
                b = self.b.copy()
                b[self.free] += step * d_b
                return self.theta + step * d_theta, b

            (theta, b), trial, step = _backtrack(
                moved, lambda point: self._objective(*point, penalty), value, decrement)
            if trial <= value:
                self.theta, self.b, value = theta, b, trial
            if decrement < tol * self.design.shape[0]:
                break
            if not fresh and (step < 1.0 or decrement > 0.25 * last):
                solve = None  # the old factor no longer converges fast: refactorise
            last = decrement
        self.penalty = penalty
        self.relax()
        return self

    def relax(self, scale=None, tol=1e-7, max_iter=50):
        """The baseline and scale ``s`` of ``b_k + s * eta`` (``eta`` the ridge predictor)
        that maximise the likelihood on these rows, by Newton's method (``relaxed``); with
        ``scale`` given, the baseline alone at that scale."""
        eta = self.design @ self.theta
        free, spread = self.free, float(eta.std())
        if not spread > 1e-12:  # nothing fitted: the ridge baseline is already the ML one
            self.relaxed = (self.b.copy(), 1.0)
            return
        # Newton on the predictor standardised (a well-conditioned system whatever the
        # penalty's strength), the factor mapped back at the end. It starts from the
        # ridge fit (scale 1) or the last relaxed fit on the path, whichever is better
        eta = eta / spread
        b, s, value = None, None, np.inf
        starts = ((self.b, spread), (self.relaxed[0], self.relaxed[1] * spread))
        if scale is not None:
            starts = ((start_b, scale * spread) for start_b, _ in starts)
        for start_b, start_s in starts:
            start_value = self.lik.value(start_b[None, :] + start_s * eta[:, None])
            if start_value < value:
                b, s, value = start_b.copy(), start_s, start_value
        # every parameter, or (the scale given) all but the scale's row and column
        fitted = slice(None) if scale is None else slice(-1)
        for _ in range(max_iter):
            grad, hess = self.lik.derivatives(b[None, :] + s * eta[:, None])
            g = np.append(grad.sum(axis=0)[free], (grad.sum(axis=1) * eta).sum())
            h = np.diag(np.append(hess.sum(axis=0)[free], (hess.sum(axis=1) * eta**2).sum()))
            h[-1, :-1] = h[:-1, -1] = (hess[:, free] * eta[:, None]).sum(axis=0)
            d = np.zeros_like(g)
            d[fitted] = linalg.solve(h[fitted, fitted], -g[fitted], assume_a="pos",
                                     check_finite=False)
            decrement = -(g @ d)

            def moved(step, b=b, s=s, d=d):
                b_new = b.copy()
                b_new[free] += step * d[:-1]
                return b_new, s + step * d[-1]

            (b_new, s_new), trial, _ = _backtrack(
                moved, lambda point: self.lik.value(point[0][None, :] + point[1] * eta[:, None]),
                value, decrement)
            if trial <= value:
                b, s, value = b_new, s_new, trial
            if decrement < tol * eta.shape[0]:
                break
        self.relaxed = (b, s / spread)

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
        """The current relaxed fit's logits (n, K) on a design of :meth:`design_of`."""
        b, s = self.relaxed
        return b[None, :] + s * (design @ self.theta)[:, None]

    def ridge_weights(self, n_codes, n_covs):
        """The ridge fit's ``beta`` over all codes and ``gamma`` over all covariates (zeros
        where not fitted; not relaxed)."""
        beta, gamma = np.zeros(n_codes), np.zeros(n_covs)
        beta[self.codes] = self.theta[: self.n_codes]
        gamma[self.covs] = self.theta[self.n_codes :]
        return beta, gamma
