"""The benchmark: BEHRT survival models against Cox / RSF / boosting, on the same folds.

``survbehrt benchmark`` (see :mod:`survbehrt.cli`) calls :func:`run_benchmark`. Every
model sees the same stratified folds, grouped by subject where a subject has several rows
(the Synthea sample's landmarks); baselines use log code counts + age (+ number of
visits) from :class:`~survbehrt.data.features.CodeCountTransformer`, or the index age
alone (``Cox-age``); the BEHRT variants
are fine-tuned from one :class:`~survbehrt.BEHRTPretrainer` fitted on the training fold's
histories; the ``oracle`` row scores the generating model's true risk (synthetic data).
Results are written after every fold, so an interrupted run keeps its finished folds.
Every model's test-fold risks are kept (``predictions.csv``); at the end of a run they
give each model's Harrell C a 95 % bootstrap interval and a paired difference to the
best count baseline (:mod:`.uncertainty`: resampled within folds, since every fold's
model has its own risk scale).

The D-calibration column is one test per model on the bin counts pooled over the test
folds (each fold's counts from that fold's model): under calibration every fold's
``S_i(T_i)`` is uniform, so the pooled counts are too, and one test on all test patients
has more power than any fold's. A mean of per-fold p-values would mean nothing.

A baseline's warnings (a Cox fit stopped at its iteration cap, an overflow in a
rejected Newton step) are caught where the model is fitted and summed up in one log
line that says whether the scored model is affected; progress bars draw only on a
terminal, so a log file holds neither raw warnings nor cursor codes.

A dataset with competing causes (``"synthetic-competing"``) runs the competing-risks
task instead: per-cause scores of cause-specific models (:mod:`.competing`).

Modules: :mod:`.settings` (names, :class:`BenchmarkSettings`), :mod:`.data` (the
cohort and its folds), :mod:`.models` (the models; fitting and scoring one),
:mod:`.output` (the output folder, the machine record, Ctrl-C), :mod:`.run`
(:func:`run_benchmark`), :mod:`.report` (summary, table, plots), :mod:`.uncertainty`
(the C's bootstrap intervals within folds, paired differences), :mod:`.competing`
and :mod:`.competing_models` (the competing-risks task and its models). This module
only re-exports.
"""


from .data import check_group_split, load_benchmark_data, make_folds, subject_groups
from .models import _fit as _fit  # the scripts in benchmarks/ and the tests use these too
from .models import make_models
from .models import make_pretrainer as make_pretrainer
from .report import _cindex_figure as _cindex_figure
from .report import _fold_figures as _fold_figures
from .report import format_table, summarize
from .run import _warnings_above_bars as _warnings_above_bars
from .run import run_benchmark
from .settings import BASELINES, BEHRT_MODELS, DATASETS, OUTPUT_FILES, BenchmarkSettings
from .settings import METRICS as METRICS
from .settings import ORACLE as ORACLE
from .settings import SUMMARY_METRICS as SUMMARY_METRICS

__all__ = [
    "BASELINES",
    "BEHRT_MODELS",
    "OUTPUT_FILES",
    "DATASETS",
    "BenchmarkSettings",
    "check_group_split",
    "format_table",
    "load_benchmark_data",
    "make_folds",
    "make_models",
    "run_benchmark",
    "subject_groups",
    "summarize",
]
