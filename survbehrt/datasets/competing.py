"""A synthetic cohort with competing causes whose hazards depend on the history.

The histories are those of :func:`survbehrt.datasets.make_synthetic_ehr`
(``scenario="sequence"``); two causes compete after the index:

- ``"outcome"``: driven by the order and recency signals of the sequence (A before B,
  a recent C) and mildly by age;
- ``"death"``: driven by age, by the presence of D and by a high visit tempo.

Each cause ``k`` has a Weibull cause-specific hazard
``h_k(t | x) = a t^(a-1) b_k^(-a) exp(lp_k(x))`` with a shape ``a`` shared by the causes
(scales ``b_k`` differ). With a shared shape the cumulative incidence has a closed
form, ``F_k(t | x) = pi_k(x) (1 - S(t | x))`` with
``pi_k = b_k^(-a) exp(lp_k) / sum_j b_j^(-a) exp(lp_j)`` and
``S(t | x) = exp(-t^a sum_j b_j^(-a) exp(lp_j))``: the oracle
(:func:`true_cumulative_incidence`) is exact. The event time is the first of the
causes' latent times; censoring (administrative and drop-out) is independent of the
history, as in the single-cause generator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.competing import competing_y
from ._common import rng_of, to_frame
from .clusters import _SEQUENCE_EFFECTS
from .synthetic import ehr_defaults, simulate

__all__ = ["CAUSES", "make_synthetic_competing", "true_cumulative_incidence"]

CAUSES = ("outcome", "death")
# Per-cause log-hazard coefficients of the history features (each a 0/1 indicator,
# except age: per decade above 60).
_CAUSE_EFFECTS = {
    "outcome": {"age": 0.3, "A_before_B": 1.5, "C_recent": 1.8},
    "death": {"age": 0.7, "D_present": 1.2, "tempo": 1.5},
}
_CAUSE_SCALE = np.array([18.0, 25.0])  # years: b_k of "outcome" and "death"
_SHAPE = 1.3


def true_cumulative_incidence(log_hazards, times):
    """The exact cumulative incidence of each cause under the generating model.

    Parameters
    ----------
    log_hazards : array-like, shape (n_samples, 2)
        ``lp_k(x)`` of each cause, as :func:`make_synthetic_competing` returns them.
    times : array-like, shape (n_times,)
        Years after the index.

    Returns
    -------
    cif : ndarray, shape (n_samples, 2, n_times)
        ``cif[i, k - 1, m] = F_k(times[m] | x_i)``; summed over causes, ``1 - S``.

    Examples
    --------
    >>> cif = true_cumulative_incidence([[0.0, 0.0]], [0.0, 1000.0])
    >>> cif[0, :, 0].tolist(), cif[0, :, 1].round(3).tolist()
    ([0.0, 0.0], [0.605, 0.395])
    """
    lp = np.asarray(log_hazards, dtype=float)
    if lp.ndim != 2 or lp.shape[1] != len(CAUSES):
        raise ValueError(f"log_hazards must have shape (n_samples, {len(CAUSES)}); got {lp.shape}.")
    times = np.asarray(times, dtype=float)
    rate = _CAUSE_SCALE ** -_SHAPE * np.exp(lp)  # (n, K): hazard per unit of t^a
    total = rate.sum(axis=1, keepdims=True)
    any_event = 1.0 - np.exp(-total * times[None, :] ** _SHAPE)  # (n, n_times)
    return (rate / total)[:, :, None] * any_event[:, None, :]


def make_synthetic_competing(n_patients=4000, random_state=None, *, return_info=False,
                             **kwargs):
    """Draw a synthetic EHR cohort with two competing causes of known hazards.

    Parameters
    ----------
    n_patients : int, default=4000
        Number of patients.
    random_state : int, numpy.random.Generator or None
        Seed of the cohort (the code system is fixed, as in ``make_synthetic_ehr``).
    return_info : bool, default=False
        Also return a description of the generating model.
    **kwargs
        The keyword arguments of :func:`survbehrt.datasets.make_synthetic_ehr`
        (``followup``, ``dropout_rate``, ``effect_scale``, the history's shape ...).
        ``effect_scale`` multiplies every non-age coefficient.

    Returns
    -------
    X : pandas.DataFrame, shape (n_patients, 3)
        ``codes``, ``ages`` and ``index_age``, as ``make_synthetic_ehr``.
    y : structured ndarray, shape (n_patients,)
        ``event`` (int64: 0 = censored, 1 = ``"outcome"``, 2 = ``"death"``; the names in
        :func:`survbehrt.data.cause_names`) and ``time`` (years after the index).
    log_hazards : ndarray, shape (n_patients, 2)
        ``lp_k(x)``, each cause's true log-hazard ratio (the oracle's risk of cause k);
        :func:`true_cumulative_incidence` turns them into incidences.
    info : dict
        Only with ``return_info=True``: ``"causes"``, ``"effects"`` (cause -> feature ->
        coefficient), ``"features"`` (DataFrame of the history features), ``"scales"``
        and ``"shape"`` of the Weibull hazards.

    Examples
    --------
    >>> from survbehrt.data import cause_names
    >>> X, y, lp = make_synthetic_competing(n_patients=50, random_state=0)
    >>> X.shape, lp.shape, cause_names(y)
    ((50, 3), (50, 2), ('outcome', 'death'))
    """
    params = ehr_defaults(kwargs)
    scale = float(params.pop("effect_scale"))
    rng = rng_of(random_state)
    sim = simulate(n_patients, "sequence", rng, effect_scale=1.0, **params)
    # The single-cause generator's components are coefficient x feature: undo the
    # coefficient to get the features themselves.
    features = pd.DataFrame(
        {name: sim["components"][name] / effect for name, effect in _SEQUENCE_EFFECTS.items()}
    )
    lp = np.column_stack([
        sum(beta * features[name].to_numpy() * (1.0 if name == "age" else scale)
            for name, beta in _CAUSE_EFFECTS[cause].items())
        for cause in CAUSES
    ])
    n = len(lp)
    # Latent times with cumulative hazards (t / b_k)^a exp(lp_k); the first one happens.
    latent = _CAUSE_SCALE * (rng.exponential(size=(n, len(CAUSES))) * np.exp(-lp)) ** (
        1.0 / _SHAPE
    )
    first = latent.min(axis=1)
    cause = 1 + latent.argmin(axis=1)
    f_lo, f_hi = params["followup"]
    rate = params["dropout_rate"]
    censor = rng.uniform(f_lo, f_hi, size=n)
    if rate > 0:
        censor = np.minimum(censor, rng.exponential(1.0 / rate, size=n))
    y = competing_y(np.where(first <= censor, cause, 0), np.minimum(first, censor),
                    causes=CAUSES)
    X = to_frame(sim)
    if not return_info:
        return X, y, lp
    info = {
        "causes": CAUSES,
        "effects": {c: dict(e) for c, e in _CAUSE_EFFECTS.items()},
        "effect_scale": scale,
        "features": features,
        "scales": dict(zip(CAUSES, _CAUSE_SCALE.tolist())),
        "shape": _SHAPE,
    }
    return X, y, lp, info
