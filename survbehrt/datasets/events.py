"""Synthetic cohorts as a MEDS-style long event table: :func:`make_synthetic_events`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import DAYS_PER_YEAR, rng_of
from .synthetic import ehr_defaults, simulate

__all__ = ["make_synthetic_events"]


def make_synthetic_events(
    n_patients=4000,
    scenario="sequence",
    random_state=None,
    *,
    start="2012-01-01",
    end="2017-12-31",
    include_future=True,
    **kwargs,
):
    """Draw a synthetic cohort as a MEDS-style long event table plus labels.

    The histories, outcomes and risks are those of :func:`make_synthetic_ehr` with the
    same arguments (same ``random_state`` -> same cohort), written as dated events:
    each patient's prediction (index) date is uniform between ``start`` and ``end``
    (a whole day), the birth date is ``index_day`` days before it (a ``"MEDS_BIRTH"``
    row), and every code of a visit is one row at the visit's date (midnight).
    :func:`survbehrt.data.events.from_events` with ``prediction_times`` from the labels
    gives back ``X`` (indexed by ``subject_id``).

    With ``include_future=True`` the table also holds what happened *after* the
    prediction time, as a real extract would: for patients with the event, an
    ``"OUTCOME"`` row at the event date, and for everyone follow-up visits (Poisson,
    about one a year of follow-up, one or two background codes each) during the
    follow-up. A converter must drop them (they leak the outcome).

    Parameters
    ----------
    n_patients : int, default=4000
        Number of patients.
    scenario : {"sequence", "counts", "latent", "synonyms"}, default="sequence"
        As in :func:`make_synthetic_ehr`.
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed; the same seed gives the same cohort as :func:`make_synthetic_ehr`.
    start, end : str or datetime-like, default="2012-01-01", "2017-12-31"
        Range of the prediction dates.
    include_future : bool, default=True
        Add the post-index rows (follow-up visits and the outcome).
    **kwargs
        Further keyword arguments of :func:`make_synthetic_ehr` (``n_codes``, …).

    Returns
    -------
    events : pandas.DataFrame
        Columns ``subject_id`` (int64), ``time`` (datetime64[ns]) and ``code`` (str),
        sorted by subject and time; the birth row first for each subject.
    labels : pandas.DataFrame
        One row per subject: ``subject_id``, ``prediction_time`` (datetime64[ns]),
        ``event`` (bool), ``time`` (float, years after the prediction time) and
        ``true_risk`` (float).

    See Also
    --------
    make_synthetic_ehr : The same cohort as a patient frame.
    survbehrt.data.events.from_events : Event table to patient frame.

    Examples
    --------
    >>> from survbehrt.datasets import make_synthetic_events
    >>> events, labels = make_synthetic_events(n_patients=20, random_state=0)
    >>> list(events.columns), list(labels.columns)
    (['subject_id', 'time', 'code'], ['subject_id', 'prediction_time', 'event', 'time', 'true_risk'])
    >>> int((events["code"] == "MEDS_BIRTH").sum())
    20
    """
    rng = rng_of(random_state)
    sim = simulate(n_patients, scenario, rng, **ehr_defaults(kwargs))
    n = len(sim["n_vis"])
    # Post-simulation draws use their own stream, so that the cohort equals make_synthetic_ehr's.
    extra = np.random.default_rng(rng.integers(np.iinfo(np.int64).max))
    start_day = pd.Timestamp(start).normalize()
    n_days = (pd.Timestamp(end).normalize() - start_day).days + 1
    pred_date = start_day + pd.to_timedelta(extra.integers(0, n_days, size=n), unit="D")
    birth = pred_date - pd.to_timedelta(sim["index_day"], unit="D")
    pat_of_visit = sim["pat_of_visit"]
    visit_date = (
        birth.to_numpy()[pat_of_visit] + pd.to_timedelta(sim["visit_day"], unit="D").to_numpy()
    )
    code_visit = np.repeat(np.arange(len(pat_of_visit)), sim["codes_per_visit"])
    names = sim["names"]
    parts = [
        pd.DataFrame({"subject_id": np.arange(n), "time": birth.to_numpy(), "code": "MEDS_BIRTH"}),
        pd.DataFrame(
            {
                "subject_id": pat_of_visit[code_visit],
                "time": visit_date[code_visit],
                "code": names[sim["all_code"]],
            }
        ),
    ]
    if include_future:
        n_fu = extra.poisson(sim["time"])
        fu_pat = np.repeat(np.arange(n), n_fu)
        # At least one day after the prediction time: these rows are the future.
        fu_days = 1 + np.floor(extra.uniform(0, sim["time"][fu_pat]) * DAYS_PER_YEAR)
        n_fu_codes = 1 + (extra.random(len(fu_pat)) < 0.5)
        fu_code_pat = np.repeat(fu_pat, n_fu_codes)
        fu_code_day = np.repeat(fu_days, n_fu_codes)
        fu_codes = extra.choice(sim["background"], size=len(fu_code_pat), p=sim["p_background"])
        out = np.flatnonzero(sim["event"])
        out_days = np.maximum(1, np.ceil(sim["time"][out] * DAYS_PER_YEAR))
        pred = pred_date.to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "subject_id": fu_code_pat,
                    "time": pred[fu_code_pat] + pd.to_timedelta(fu_code_day, unit="D").to_numpy(),
                    "code": names[fu_codes],
                }
            )
        )
        parts.append(
            pd.DataFrame(
                {
                    "subject_id": out,
                    "time": pred[out] + pd.to_timedelta(out_days, unit="D").to_numpy(),
                    "code": "OUTCOME",
                }
            )
        )
    events = pd.concat(parts, ignore_index=True)
    events["code"] = events["code"].astype(str)
    events["subject_id"] = events["subject_id"].astype(np.int64)
    events["time"] = events["time"].astype("datetime64[ns]")
    events = events.sort_values(["subject_id", "time"], kind="stable", ignore_index=True)
    labels = pd.DataFrame(
        {
            "subject_id": np.arange(n, dtype=np.int64),
            "prediction_time": pred_date.astype("datetime64[ns]"),
            "event": sim["event"],
            "time": sim["time"],
            "true_risk": sim["true_risk"],
        }
    )
    return events, labels
