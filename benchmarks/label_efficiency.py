"""Label efficiency: how many labelled patients each recipe needs, with and without pre-training.

Run: ``OMP_NUM_THREADS=1 python benchmarks/label_efficiency.py [--datasets ...] [--sizes ...]
[--pool N] [--test N] [--epochs E] [--pretrain-epochs E] [--code-prefix N] [--decay-scales
YEARS ... | --no-decay-sums] [--jobs J] [--out DIR] [--smoke]``.

For each synthetic generator (``make_synthetic_ehr``'s scenarios ``sequence``, ``counts``,
``latent`` and ``synonyms``; dataset names as in ``survbehrt benchmark``) and seed:

- an unlabelled pool (:func:`survbehrt.datasets.make_unlabelled_pool`, ``--pool``), a
  labelled cohort of ``max(--sizes)`` patients whose first ``n`` rows are the labelled set
  of size ``n`` (the sets are nested), and an independent test cohort (``--test``, its own
  seed) with the generator's true risk (the ``oracle`` row);
- three pretrainers, fitted once on the pool plus the labelled cohort's histories (no
  outcome is read) and shared by every labelled size and recipe: MLM + next-visit
  (``objective="both"``), time-to-event (``objective="tte"``) and the three together
  (only those the ``--recipes`` chosen use);
- per labelled size: ``no-pretrain`` (``BEHRTSurvivalEstimator`` defaults, the same
  model size and epochs as the others), ``mlm-nv-full`` and ``mlm-nv-lora`` (full and LoRA
  fine-tuning of the MLM + next-visit encoder: the like-for-like comparison of the two
  objectives), ``tte-frozen``, ``tte-lora`` and ``tte-full`` (the benchmark's
  ``BEHRT-frozen`` / ``-lora`` / ``-full`` recipes of :func:`survbehrt.benchmark.make_models`
  on the time-to-event encoder), ``all-lora`` (LoRA on an encoder pre-trained on the
  three objectives together, ``"mlm+next_visit+tte"``, the default objective; its
  ``all-frozen`` and ``all-full`` only when ``--recipes`` names them), ``cox`` and ``rsf`` (the benchmark's ``CoxPH`` and ``RSF``:
  log code counts + age, the Cox penalty tuned by inner CV), and ``oracle``.

The vendored Synthea sample (``synthea-sample``, 799 patients, 49 deaths) is too small for
those sizes: its folds are patient-grouped (:func:`survbehrt.benchmark.make_folds`,
``--synthea-folds`` per seed, the ``fold`` column), the labelled sets are nested
prefixes of each fold's training *patients* (``n_labelled`` counts patients, each with up
to four landmark rows): the ``--sizes`` below the smallest fold's count, then all of them.
Its pretrainers are fitted per fold on each training patient's latest row (the longest
history before a landmark; the test patients' histories are never seen). It has no oracle.

The outcome of the synthetic generators is not a code of the history, so no recipe here
can start its head from a pre-training task (``init_head_from_task``); the zero-shot
C-index is measured by ``benchmarks/zero_shot_tte.py``.

Every model is scored by Harrell's C on the test rows. Output (``--out``, default
``label_efficiency/``): ``label_efficiency.csv`` with the tidy rows (``dataset``,
``recipe``, ``n_labelled``, ``seed``, ``harrell_c``, ``fit_s``, ``fold``: the fold of the
seed's split on the Synthea sample, 0 on a simulated cohort; each dataset's rows are
also in ``label_efficiency.<dataset>.csv``, rewritten after every fit, so an interrupted
run keeps its fits), ``label_efficiency.png`` (C against the labelled size, log-x, one
panel per dataset) and a printed table of recipes by sizes per dataset (mean over seeds
and folds), with, where ``cox`` ran, each BEHRT recipe's paired difference to it: the
mean over the same seeds and folds of recipe minus Cox, and on how many it is above; then
issue 28's comparisons per dataset (``format_targets``: the best BEHRT recipe against the
best count model and the oracle at each size, and pre-training with 1,000 labels against
none with 4,000). ``--from-csv a.csv b.csv`` fits nothing and draws the table and plot of runs joined.

**Cost.** Before fitting, the script fits the pretrainers and one estimator for two epochs
on 256 patients, and prints the run's cost extrapolated from the fixed part (tokenizing,
the estimator's wide Cox start) and the per-patient-epoch part, read from the fits'
histories (tokens per patient differ between generators: an estimate). The defaults — a model of 64
dimensions and 2 layers, ``max_length`` 128 (the synthetic histories hold ~25-30 tokens,
95 % under 70), 2 pre-training epochs over pool + labelled histories (~1,400 steps of 64
at the full pool), 6 fine-tuning epochs at the largest labelled size and as many
optimiser steps at every smaller one (``same_steps``; the validation loss picks the
epoch kept) — were sized on this 2-core machine. The full run (pool 40,000, sizes 250 to
4,000, every dataset, ``--jobs 2``) took 53 minutes there (3,201 s), the machine shared
with 2-3 other processes of ours (2026-12-06); the slowest single fit is the Cox
baseline on ``synthetic-synonyms`` at 4,000 labels (~1,500 rare codes, a penalty grid
of 5 x 3 folds). ``--jobs 2`` runs two datasets at once. ``--smoke`` is a
CI run (pool 400, sizes 100 and 200, one or two epochs, ``synthetic`` and
``synthetic-latent``, no wide Cox start, 50 trees, no early stopping) of seconds;
explicit flags override its settings.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import clone

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.benchmark import BenchmarkSettings, _fit, make_folds, make_models, subject_groups
from survbehrt.benchmark.settings import SYNTHETIC
from survbehrt.datasets import load_synthea_sample, make_synthetic_ehr, make_unlabelled_pool
from survbehrt.metrics import harrell_c

DATASETS = (*SYNTHETIC, "synthea-sample")
BEHRT_RECIPES = ("no-pretrain", "mlm-nv-full", "mlm-nv-lora", "tte-frozen", "tte-lora", "tte-full",
                 "all-frozen", "all-lora", "all-full")
RECIPES = (*BEHRT_RECIPES, "cox", "rsf", "oracle")
#: Fitted unless --recipes says otherwise: the default encoder's frozen and full recipes
#: are asked for by name (the full run, sized for an hour, predates them).
DEFAULT_RECIPES = tuple(r for r in RECIPES if r not in ("all-frozen", "all-full"))
#: The benchmark recipe each fine-tuning recipe uses, and its pretrainer's objective.
FINE_TUNING = {"mlm-nv-full": ("BEHRT-full", "both"), "mlm-nv-lora": ("BEHRT-lora", "both"),
               "tte-frozen": ("BEHRT-frozen", "tte"),
               "tte-lora": ("BEHRT-lora", "tte"), "tte-full": ("BEHRT-full", "tte"),
               "all-frozen": ("BEHRT-frozen", "mlm+next_visit+tte"),
               "all-lora": ("BEHRT-lora", "mlm+next_visit+tte"),
               "all-full": ("BEHRT-full", "mlm+next_visit+tte")}
SMOKE = dict(datasets=["synthetic", "synthetic-latent"], sizes=[100, 200], pool=400, test=300,
             epochs=2, pretrain_epochs=1, synthea_folds=2, embedding_dim=16, num_layers=1,
             max_length=64)


def add_decay_arguments(parser, who):
    """``--decay-scales YEARS ...``, ``--no-decay-sums`` and ``--wide-recency YEARS``: the
    ``decay_scales`` and ``wide_recency`` of ``who``."""
    parser.add_argument("--decay-scales", nargs="+", type=float, default=None, metavar="YEARS",
                        help=f"decay_scales of {who} (decayed sums of the visits so far at "
                        "these time scales; default: the estimator's)")
    parser.add_argument("--no-decay-sums", action="store_true",
                        help=f"{who} without decayed sums (decay_scales=None)")
    parser.add_argument("--wide-recency", type=float, default=None, metavar="YEARS",
                        help=f"wide_recency of {who}: the wide path's recent code counts at "
                        "this time scale (default: the estimator's, none)")


def decay_params(args):
    """The estimator parameters those flags ask for (``decay_scales``, ``wide_recency``), or ``{}``."""
    params = {}
    if args.no_decay_sums:
        params["decay_scales"] = None
    elif args.decay_scales:
        params["decay_scales"] = tuple(args.decay_scales)
    if args.wide_recency is not None:
        params["wide_recency"] = args.wide_recency
    return params


def build_parser(description=__doc__):
    """The run's flags (cohorts, sizes, recipes, model, pool; also ``ensemble_gain.py``'s)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES), choices=RECIPES,
                        help="the recipes to fit (default: all but all-frozen and all-full); "
                        "only their pretrainers are fitted")
    parser.add_argument("--pool", type=int, default=40000, help="unlabelled patients")
    parser.add_argument("--test", type=int, default=4000, help="independent test patients")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (LoRA 4/3)")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--tte-prefix", type=int, default=None,
                        help="the time-to-event pretrainer's tte_prefix (tasks are code groups "
                        "by their first N characters, where the codes hold a hierarchy)")
    parser.add_argument("--code-prefix", type=int, default=None,
                        help="code_prefix of every pretrainer and of no-pretrain (each code's "
                        "embedding plus its group's: the codes' first N characters)")
    parser.add_argument("--code-neighbours", type=int, default=None,
                        help="code_neighbours of every pretrainer (each code's embedding plus "
                        "a shared table's rows for its N strongest co-occurring codes)")
    parser.add_argument("--min-cooccurrence", type=int, default=None,
                        help="min_cooccurrence of every pretrainer (with --code-neighbours; "
                        "default: the pretrainer's)")
    add_decay_arguments(parser, "every BEHRT recipe")
    parser.add_argument("--fixed-epochs", action="store_true",
                        help="--epochs at every labelled size (default: the epochs scaled so "
                        "that every size gets the largest size's optimiser steps)")
    parser.add_argument("--synthea-folds", type=int, default=3)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model")
    parser.add_argument("--jobs", type=int, default=1,
                        help="datasets fitted at once, each in its own process")
    parser.add_argument("--out", type=Path, default=Path("label_efficiency"))
    parser.add_argument("--from-csv", nargs="+", type=Path, metavar="CSV",
                        help="fit nothing: the table and plot of these result files (runs joined)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="a tiny CI run (see above)")
    return parser


def finish_args(parser, argv=None):
    """Parse ``argv``: ``--smoke``'s settings where no flag says otherwise, sizes sorted."""
    if parser.parse_args(argv).smoke:
        parser.set_defaults(**SMOKE)
    args = parser.parse_args(argv)
    args.sizes = sorted(set(args.sizes))
    return args


def parse_args(argv=None):
    return finish_args(build_parser(), argv)


class Run:
    """The fitted-model factory of one run (model size, epochs, seeds) and its timing."""

    def __init__(self, args):
        self.args = args
        self.arch = dict(embedding_dim=args.embedding_dim, num_layers=args.num_layers,
                         num_heads=4 if args.embedding_dim % 4 == 0 else 2,
                         ff_dim=4 * args.embedding_dim, max_length=args.max_length,
                         code_prefix=args.code_prefix)

    def settings(self, seed):
        # quick (no early stopping, 50 trees) only for the smoke run: a few hundred
        # patients leave ~30 for validation, too few to stop on
        return BenchmarkSettings(models=["CoxPH", "RSF", "BEHRT-full", "BEHRT-lora",
                                         "BEHRT-frozen"], epochs=self.args.epochs,
                                 quick=self.args.smoke, random_state=seed,
                                 n_threads=self.args.threads).resolved()

    def objectives(self):
        """The pretrainers' objectives that the chosen recipes fine-tune."""
        return sorted({FINE_TUNING[r][1] for r in self.args.recipes if r in FINE_TUNING})

    def pretrainer(self, objective, seed):
        # min_cooccurrence only where given: otherwise the pretrainer's default holds
        given = {"tte_prefix": self.args.tte_prefix} if "tte" in objective else {}
        if self.args.min_cooccurrence is not None:
            given["min_cooccurrence"] = self.args.min_cooccurrence
        return BEHRTPretrainer(objective=objective, **self.arch, **given,
                               code_neighbours=self.args.code_neighbours,
                               max_epochs=self.args.pretrain_epochs, validation_fraction=0.0,
                               random_state=seed, n_threads=self.args.threads)

    def recipes(self, seed, pretrainers):
        """Unfitted models by recipe name (the BEHRT ones hold their fitted pretrainer)."""
        s = self.settings(seed)
        bench = make_models(s)
        models = {"no-pretrain": BEHRTSurvivalEstimator(
            **self.arch, max_epochs=s.epochs, random_state=seed, n_threads=s.n_threads,
            **({"early_stopping": None, "validation_fraction": 0.0} if s.quick else {}))}
        for name, (recipe, objective) in FINE_TUNING.items():
            if name in self.args.recipes:
                models[name] = clone(bench[recipe]).set_params(pretrained=pretrainers[objective])
        models["cox"], models["rsf"] = bench["CoxPH"], bench["RSF"]
        models = {name: m for name, m in models.items() if name in self.args.recipes}
        overrides = decay_params(self.args)
        if s.quick:  # the wide start's penalty search costs seconds per fit, epochs none
            overrides["wide"] = None
        for name in set(BEHRT_RECIPES) & set(models):
            models[name].set_params(**overrides)
        return models


def same_steps(model, n, largest):
    """``model`` (a BEHRT one) with as many optimiser steps on ``n`` labelled rows as on ``largest``.

    A fixed number of epochs gives a small labelled set few updates (6 epochs of 250
    rows are 24 steps of 64): its recipes would be scored barely moved from their start.
    Scaling the epochs by ``largest / n`` gives every size the same budget of steps, and
    early stopping on the validation rows decides how many are used.
    """
    if not isinstance(model, BEHRTSurvivalEstimator) or n >= largest:
        return model
    return clone(model).set_params(max_epochs=int(np.ceil(model.max_epochs * largest / n)))


def timed(fit, *args):
    """``fit(*args)`` and the seconds it took."""
    t0 = time.perf_counter()
    out = fit(*args)
    return out, time.perf_counter() - t0


def fit_pretrainers(run, X_histories, seed, label):
    pretrainers = {}
    for objective in run.objectives():
        pretrainers[objective], secs = timed(run.pretrainer(objective, seed).fit, X_histories)
        print(f"  {label}: pretrainer {objective!r} on {len(X_histories)} histories, "
              f"{secs:.0f} s", flush=True)
    return pretrainers


def fit_and_score(model, X, y, groups, seed, X_test, y_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Cox convergence notes of the penalty grid
        fitted, secs = timed(lambda: _fit(clone(model), X, y, groups, seed))
    fitted = getattr(fitted, "best_estimator_", fitted)
    return harrell_c(y_test, fitted.predict(X_test)), secs


def synthetic_runs(run, dataset, seed):
    """(label, pretraining histories, [(n, X, y, groups)], X_test, y_test, true risk) of one seed."""
    a, scenario = run.args, SYNTHETIC[dataset]
    pool = make_unlabelled_pool(a.pool, scenario=scenario, random_state=seed)
    X, y, _ = make_synthetic_ehr(max(a.sizes), scenario, random_state=seed)
    X_test, y_test, risk = make_synthetic_ehr(a.test, scenario, random_state=10_000 + seed)
    histories = pd.concat([pool, X], ignore_index=True)  # outcome-free: no label is read
    labelled = [(n, X.iloc[:n], y[:n], None) for n in a.sizes]
    yield f"{dataset} seed {seed}", histories, labelled, X_test, y_test, risk


def synthea_runs(run, dataset, seed):
    """One entry per patient-grouped fold of the seed's split; sizes count patients."""
    X, y = load_synthea_sample()
    groups = subject_groups(X)
    folds = make_folds(X, y["event"], run.args.synthea_folds, seed)
    rng = np.random.default_rng(seed)
    patients = []
    for train, _ in folds:  # training patients in a random order: nested prefixes
        p = pd.unique(groups[train])
        patients.append(p[rng.permutation(len(p))])
    cap = min(len(p) for p in patients)
    sizes = [n for n in run.args.sizes if n < cap] + [cap]
    for fold, ((train, test), order) in enumerate(zip(folds, patients)):
        X_tr, y_tr, g_tr = X.iloc[train], y[train], groups[train]
        latest = ~pd.Series(g_tr).duplicated(keep="last").to_numpy()  # rows sorted by landmark
        labelled = []
        for n in sizes:
            keep = np.isin(g_tr, order[:n])
            labelled.append((n, X_tr[keep], y_tr[keep], g_tr[keep]))
        yield fold, X_tr[latest], labelled, X.iloc[test], y[test], None


class LabelledSet(NamedTuple):
    """One labelled size of one cohort, with the recipes to fit on it."""

    fold: int  # the fold of the seed's split on the Synthea sample; 0 on a simulated cohort
    n: int
    models: dict  # recipe name -> unfitted model, its epochs scaled to ``n``
    X: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray | None
    X_test: pd.DataFrame
    y_test: np.ndarray
    risk: np.ndarray | None  # the generator's true risk of the test rows (None on Synthea)


def labelled_sets(run, dataset, seed):
    """Every labelled size of ``dataset`` at ``seed``, its pretrainers fitted once per cohort.

    Yields
    ------
    LabelledSet
        The recipes' epochs scaled so that every size gets the largest size's optimiser
        steps (``same_steps``), unless ``--fixed-epochs``.
    """
    synthea = dataset == "synthea-sample"
    source = synthea_runs if synthea else synthetic_runs
    for label, histories, labelled, X_test, y_test, risk in source(run, dataset, seed):
        pretrainers = fit_pretrainers(run, histories, seed,
                                      f"{dataset} fold {label}" if synthea else label)
        models = run.recipes(seed, pretrainers)
        largest = max(n for n, *_ in labelled)
        for n, X, y, groups in labelled:
            scaled = {recipe: model if run.args.fixed_epochs else same_steps(model, n, largest)
                      for recipe, model in models.items()}
            yield LabelledSet(label if synthea else 0, n, scaled, X, y, groups, X_test,
                              y_test, risk)


def run_dataset(run, dataset, seed, write):
    for s in labelled_sets(run, dataset, seed):
        for recipe, model in s.models.items():
            c, secs = fit_and_score(model, s.X, s.y, s.groups, seed, s.X_test, s.y_test)
            write(dataset, recipe, s.n, seed, s.fold, c, secs)
        if s.risk is not None and "oracle" in run.args.recipes:
            write(dataset, "oracle", s.n, seed, s.fold, harrell_c(s.y_test, s.risk), 0.0)


def estimate_cost(run, n=256, epochs=2):
    """Seconds of one fit: (fixed, per patient-epoch) of pre-training (the chosen recipes'
    objectives) and of fine-tuning.

    Each is fitted for ``epochs`` epochs on ``n`` patients of ``sequence``; the per-epoch
    cost is read from the fit's history (skorch's ``dur`` of each epoch), the rest of the
    fit's time is the fixed cost (tokenizing, the tasks' or the wide Cox start's set-up,
    which dominates a small fit). Differencing the wall times of fits of one and three
    epochs instead drowned the pretrainers' epochs in the fixed cost's noise on a busy
    machine (0.00 ms per patient-epoch printed, a 25-minute run estimated at 7).
    """
    X, y, _ = make_synthetic_ehr(n, "sequence", random_state=123)
    common = dict(**run.arch, validation_fraction=0.0, random_state=0, n_threads=run.args.threads,
                  max_epochs=epochs)
    fits = [lambda o=o: BEHRTPretrainer(objective=o, **common).fit(X) for o in run.objectives()]
    costs = []
    for kind in (fits, [lambda: BEHRTSurvivalEstimator(early_stopping=None, **common).fit(X, y)]):
        fixed = per_epoch = 0.0
        for fit in kind:
            model, secs = timed(fit)
            durations = model.history_[:, "dur"]
            fixed += max(secs - sum(durations), 0.0)
            per_epoch += float(np.mean(durations))
        costs.append((fixed, per_epoch / n))
    return costs


def print_estimate(run, pre, fit):
    """Print the run's BEHRT cost extrapolated from :func:`estimate_cost`."""
    a = run.args
    synthetic = [d for d in a.datasets if d in SYNTHETIC]
    # BEHRT recipes per labelled set, LoRA 4/3 of the epochs
    fits = sum(4 / 3 if r.endswith("lora") else 1.0 for r in a.recipes if r in BEHRT_RECIPES)
    # patient-epochs of fine-tuning: with the epochs scaled (same_steps) every size costs
    # (at most, before early stopping) what the largest does
    rows = sum(a.sizes) if a.fixed_epochs else len(a.sizes) * max(a.sizes)
    # the count baselines and the test predictions are left out (seconds against minutes)
    seconds = len(synthetic) * (
        pre[0] + pre[1] * a.pretrain_epochs * (a.pool + max(a.sizes))
        + len(a.sizes) * 6 * fit[0] + fit[1] * a.epochs * fits * rows)
    if "synthea-sample" in a.datasets:  # ~530 training patients per fold, ~3.7 rows each
        seconds += a.synthea_folds * (pre[0] + pre[1] * a.pretrain_epochs * 530
                                      + 2 * 6 * fit[0] + fit[1] * a.epochs * fits * 2 * 530 * 3.7)
    print(f"measured per fit: pre-training {pre[0]:.1f} s + {1e3 * pre[1]:.2f} ms per "
          f"patient-epoch (the pretrainers), fine-tuning {fit[0]:.1f} s + {1e3 * fit[1]:.2f} ms "
          f"per patient-epoch; estimated run {len(a.seeds) * seconds / 60:.0f} min in one "
          f"process (BEHRT fits, at this machine's current load; --jobs divides it by up "
          f"to the number of free cores)", flush=True)


def format_table(results: pd.DataFrame) -> str:
    """Recipes by labelled sizes, the mean C over seeds (and folds), one block per dataset;
    with the ``cox`` recipe, each BEHRT recipe's paired difference to it below."""
    results = with_folds(results)
    blocks = []
    for dataset, part in results.groupby("dataset", sort=False):
        table = part.pivot_table(index="recipe", columns="n_labelled", values="harrell_c",
                                 aggfunc="mean")
        table = table.reindex([r for r in RECIPES if r in table.index])
        splits = part[["seed", "fold"]].drop_duplicates()
        over = (f"{len(splits)} fold(s) of {splits['seed'].nunique()} seed(s)"
                if splits["fold"].nunique() > 1 else f"{splits['seed'].nunique()} seed(s)")
        block = (f"{dataset} (Harrell's C, mean over {over}):\n"
                 + table.to_string(float_format=lambda v: f"{v:.3f}"))
        paired = paired_to_cox(part)
        if paired is not None:
            block += ("\n- cox, paired (mean of the differences on the same seeds and folds; "
                      "how many above):\n" + paired.to_string())
        blocks.append(block)
    return "\n\n".join(blocks)


#: The recipes on a time-to-event encoder (issue 28's "time-to-event-pre-trained BEHRT").
TTE_RECIPES = tuple(r for r, (_, objective) in FINE_TUNING.items() if "tte" in objective)
COUNT_RECIPES = ("cox", "rsf")


def format_targets(results: pd.DataFrame) -> str:
    """Issue 28's comparisons read off each dataset's mean table (see the module docstring).

    Per labelled size: the best BEHRT recipe and the best count model (``cox``, ``rsf``),
    BEHRT minus count (the target: at least +0.02 where the risk lies in the sequence),
    and the oracle minus the best BEHRT recipe; then the best time-to-event recipe at
    1,000 labels minus ``no-pretrain`` at 4,000 (the target: at least 0), where both
    sizes ran. "Best" is the highest mean C among the recipes run, on the same test
    rows that score it: a maximum over recipes, optimistic by construction. Empty
    where a dataset has no BEHRT or no count rows.
    """
    blocks = []
    for dataset, part in with_folds(results).groupby("dataset", sort=False):
        mean = part.groupby(["recipe", "n_labelled"])["harrell_c"].mean().unstack()
        behrt = mean.reindex([r for r in BEHRT_RECIPES if r in mean.index])
        count = mean.reindex([r for r in COUNT_RECIPES if r in mean.index])
        if behrt.empty or count.empty:
            continue
        rows = {"best BEHRT": [f"{behrt[n].idxmax()} {behrt[n].max():.3f}" for n in mean],
                "best count": [f"{count[n].idxmax()} {count[n].max():.3f}" for n in mean],
                "BEHRT - count": [f"{behrt[n].max() - count[n].max():+.3f}" for n in mean]}
        if "oracle" in mean.index:
            rows["oracle - BEHRT"] = [f"{mean.loc['oracle', n] - behrt[n].max():+.3f}"
                                      for n in mean]
        block = (f"{dataset}, best recipes by labelled size:\n"
                 + pd.DataFrame(rows, index=mean.columns).T.to_string())
        tte = mean.reindex([r for r in TTE_RECIPES if r in mean.index])
        if {1000, 4000} <= set(mean.columns) and not tte.empty and "no-pretrain" in mean.index:
            best, base = tte[1000].idxmax(), mean.loc["no-pretrain", 4000]
            block += (f"\n- time-to-event pre-trained with 1,000 labels ({best} "
                      f"{tte.loc[best, 1000]:.3f}) minus no-pretrain with 4,000 ({base:.3f}): "
                      f"{tte.loc[best, 1000] - base:+.3f}")
        blocks.append(block)
    return "\n\n".join(blocks)


def with_folds(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with its ``fold`` column (0 where a run written before it had none)."""
    return results if "fold" in results else results.assign(fold=0)


def paired_to_cox(part: pd.DataFrame):
    """Each BEHRT recipe's C minus the ``cox`` recipe's on the same (seed, fold, size), by
    recipe and size: the mean difference and how many of the pairs are above, as text
    (``"-0.007 4/12"``); None without ``cox`` rows."""
    key = ["seed", "fold", "n_labelled"]
    cox = part[part["recipe"] == "cox"].set_index(key)["harrell_c"]
    if cox.empty or cox.index.has_duplicates:
        # (a run from before the fold column names the Synthea folds of several seeds alike:
        # its pairs cannot be told apart)
        return None
    cells = {}
    for recipe in [r for r in BEHRT_RECIPES if r in set(part["recipe"])]:
        own = part[part["recipe"] == recipe].set_index(key)["harrell_c"]
        diff = (own - cox).dropna()
        for n, d in diff.groupby(level="n_labelled"):
            cells[(recipe, n)] = f"{d.mean():+.3f} {int((d > 0).sum())}/{len(d)}"
    if not cells:
        return None
    table = pd.Series(cells).unstack()
    return table.reindex([r for r in BEHRT_RECIPES if r in table.index])


def plot(results: pd.DataFrame, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(results["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets) + 1.1, 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = results[results["dataset"] == dataset]
        mean = part.groupby(["recipe", "n_labelled"])["harrell_c"].mean()
        for recipe in [r for r in RECIPES if r in mean.index.get_level_values(0)]:
            curve = mean[recipe]
            style = dict(ls="--", color="k") if recipe == "oracle" else dict(marker="o")
            ax.plot(curve.index, curve.values, label=recipe, **style)
        ax.set_xscale("log")
        sizes = sorted(part["n_labelled"].unique())
        ax.set_xticks(sizes, labels=[f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.set_title(dataset)
        ax.set_xlabel("labelled patients")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Harrell's C (test)")
    widest = max(axes[0], key=lambda ax: len(ax.get_lines()))  # Synthea has no oracle
    fig.legend(*widest.get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - 1.1 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_one_dataset(args, dataset) -> pd.DataFrame:
    """Every seed of one dataset; its rows are written to ``label_efficiency.<dataset>.csv``
    in ``--out`` after every fit (a part file: an interrupted run keeps its fits)."""
    run, rows = Run(args), []
    part = args.out / f"label_efficiency.{dataset}.csv"

    def write(dataset, recipe, n, seed, fold, c, secs):
        rows.append(dict(dataset=dataset, recipe=recipe, n_labelled=n, seed=seed,
                         harrell_c=c, fit_s=round(secs, 1), fold=fold))
        pd.DataFrame(rows).to_csv(part, index=False)
        print(f"    {dataset} n={n} seed={seed} fold={fold} {recipe:<12} C={c:.3f} "
              f"({secs:.0f} s)", flush=True)

    for seed in args.seeds:
        run_dataset(run, dataset, seed, write)
    return pd.DataFrame(rows)


def fit_all(args) -> pd.DataFrame:
    """The datasets one after the other, or ``--jobs`` at a time in their own processes."""
    if args.jobs == 1:
        return pd.concat([run_one_dataset(args, d) for d in args.datasets], ignore_index=True)
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    # spawn, not fork: a forked torch process can hang on the parent's thread pool
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        parts = pool.map(run_one_dataset, [args] * len(args.datasets), args.datasets)
        return pd.concat(list(parts), ignore_index=True)


def main(argv=None) -> pd.DataFrame:
    """Run the benchmark (or re-read ``--from-csv``); return the tidy results (also in ``--out``)."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "label_efficiency.csv"
    t0 = time.perf_counter()
    if args.from_csv:
        results = pd.concat([pd.read_csv(p) for p in args.from_csv], ignore_index=True)
    else:
        run = Run(args)
        print(f"datasets {args.datasets}, sizes {args.sizes}, pool {args.pool}, test "
              f"{args.test}, seeds {args.seeds}; model {run.arch}, {args.pretrain_epochs} "
              f"pre-training and {args.epochs} fine-tuning epochs; {args.jobs} job(s)", flush=True)
        if not args.smoke:  # the timing fits would double the smoke run
            print_estimate(run, *estimate_cost(run))
        results = fit_all(args)
    results.to_csv(csv, index=False)
    report = "\n\n".join(t for t in (format_table(results), format_targets(results)) if t)
    print(f"\n{report}\n\ntotal {time.perf_counter() - t0:.0f} s; rows in {csv}")
    if not args.no_plot:
        plot(results, args.out / "label_efficiency.png")
    return results


if __name__ == "__main__":
    main()
