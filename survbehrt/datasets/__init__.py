"""Datasets: synthetic EHR cohorts with a known risk, and real-format samples.

:func:`make_synthetic_ehr` draws a cohort in the package's patient-frame format
(``X``), a survival outcome (``y``) and the true log-hazard multiplier of every
patient, so that models can be compared with the oracle; each kind of cohort has its
own module (:mod:`.clusters`, :mod:`.latent`, :mod:`.synonyms`), helpers shared by all in
:mod:`._common`. :func:`make_unlabelled_pool` draws more patients of the same population
without outcomes. :func:`make_synthetic_events` writes a cohort as a MEDS-style long
event table plus a labels table, for :func:`survbehrt.data.events.from_events`.
:func:`load_synthea_sample` loads the vendored Synthea sample (:mod:`.synthea`) as a
landmark survival task, or as a long event table; :func:`load_mimic_iv_demo` the
MIMIC-IV demo (:mod:`.mimic`).

This module only re-exports.
"""

from .events import make_synthetic_events
from .mimic import load_mimic_iv_demo
from .synthea import SYNTHEA_HISTORY_START, SYNTHEA_LANDMARKS, load_synthea_sample
from .synthetic import make_synthetic_ehr, make_unlabelled_pool

__all__ = [
    "SYNTHEA_HISTORY_START",
    "SYNTHEA_LANDMARKS",
    "load_mimic_iv_demo",
    "load_synthea_sample",
    "make_synthetic_ehr",
    "make_synthetic_events",
    "make_unlabelled_pool",
]
