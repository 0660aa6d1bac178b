"""The competing-risks estimator on the synthetic competing cohort, against Cox and the oracle.

Run: ``python benchmarks/competing_fit.py [--n 4000] [--epochs 30] [--seed 0]
[--recipe benchmark|lora|frozen|small] [--wide joint] [--early-stopping loss] [--pool 0]
[--pretrain-epochs E] [--members M] [--project] [--decay-scales YEARS ... |
--no-decay-sums]``.

On :func:`survbehrt.datasets.competing.make_synthetic_competing` (``"outcome"`` driven by
the order and recency of codes in the sequence, ``"death"`` by age, a code's presence and
the visit tempo), one ``BEHRTCompetingRisksEstimator`` is fitted on 75 % of the patients
and scored on the rest (``--recipe benchmark``: the single-cause benchmark's BEHRT-full,
a pretrainer fitted on the training rows, then full fine-tuning at ``lr=5e-4``;
``--pool N``: the pretrainer also sees N unlabelled patients of the same population,
another draw of the generator, as a user's unlabelled records; ``--pretrain-epochs``:
its epochs, the benchmark's by default; ``--decay-scales`` / ``--no-decay-sums``: the
estimator's ``decay_scales``, other scales or none);
``--recipe lora`` / ``frozen``: the benchmark's BEHRT-lora / BEHRT-frozen fine-tuning
instead (strategy, learning rate, adapters) on the same pretrainer;
``--recipe small``: a small model from scratch; ``--members M``: a
:class:`survbehrt.BEHRTEnsemble` of M seeds of the recipe instead of one fit (each
member's C printed beside the ensemble's); ``--wide``: the wide path, one term per
cause, as the survival estimator's default ``"joint"``), cause by cause, with Wolbers' cause-specific concordance
(:func:`survbehrt.competing_metrics.cause_specific_c`, unweighted and with censoring
weights). Beside it: the cause-specific Cox model on code counts (the benchmark's
``CoxPH``: ridge penalty by 3-fold CV, fitted on each cause's ``y`` with the other cause
censored) and the oracle (the true cumulative incidence at 5 years). Single core, a
few minutes.

``--project``: where each cause's gap to the oracle lies. The log of the model's 5-year
cumulative incidence, and the oracle's, are projected by least squares on the history
features of the generating model (age, D present, A before B, C recent, tempo; as
``oracle_gap.py`` does for the single-cause cohort): their weights side by side, the
share of variance the features explain (R2) and the C-index of the projection. The
oracle's incidence of one cause also falls with the other cause's risk (the causes
compete), so its weights are not the ``_CAUSE_EFFECTS``: compare the model's weights
with the oracle's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from survbehrt import BEHRTCompetingRisksEstimator, BEHRTEnsemble
from survbehrt.benchmark import BenchmarkSettings, make_models, make_pretrainer
from survbehrt.competing_metrics import cause_specific_c
from survbehrt.data import cause_names, cause_specific_y
from survbehrt.datasets.competing import make_synthetic_competing, true_cumulative_incidence

sys.path.insert(0, str(Path(__file__).parent))
from label_efficiency import add_decay_arguments, decay_params  # noqa: E402
from oracle_gap import projection  # noqa: E402

HORIZON = 5.0
#: ``--recipe``: the single-cause benchmark's BEHRT model whose fine-tuning it takes
RECIPES = {"benchmark": "BEHRT-full", "lora": "BEHRT-lora", "frozen": "BEHRT-frozen"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", choices=("benchmark", "lora", "frozen", "small"),
                        default="benchmark")
    parser.add_argument("--wide", choices=("joint", "offset", "none"), default="joint")
    parser.add_argument("--early-stopping", choices=("loss", "cindex"), default="loss")
    parser.add_argument("--pool", type=int, default=0,
                        help="unlabelled patients of the same population for pre-training")
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    add_decay_arguments(parser, "the estimator")
    parser.add_argument("--members", type=int, default=1,
                        help="fit a BEHRTEnsemble of this many seeds of the recipe")
    parser.add_argument("--project", action="store_true",
                        help="project each cause's log incidence, the model's and the oracle's, "
                        "on the generating features")
    args = parser.parse_args(argv)

    X, y, lp, info = make_synthetic_competing(n_patients=args.n, random_state=args.seed,
                                              return_info=True)
    train, test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=args.seed,
                                   stratify=y["event"])
    names = cause_names(y)
    print(f"n={args.n}: events {dict(zip(('censored',) + names, np.bincount(y['event'])))}")

    risks = {}
    started = time.perf_counter()
    if args.recipe == "small":
        params = dict(embedding_dim=32, num_layers=2, num_heads=2, ff_dim=64, lr=1e-3, patience=6)
    else:
        settings = BenchmarkSettings(random_state=args.seed, n_threads=1).resolved()
        pretrainer = make_pretrainer(settings)
        if args.pretrain_epochs is not None:
            pretrainer.set_params(max_epochs=args.pretrain_epochs)
        histories = X.iloc[train]
        if args.pool:  # another draw of the same population (its own seed), X only
            pool = make_synthetic_competing(n_patients=args.pool, random_state=args.seed + 1000)[0]
            histories = pd.concat([histories, pool], ignore_index=True)
        # the single-cause benchmark's fine-tuning recipe of that name (its strategy,
        # learning rate and adapters), on the competing-risks estimator
        recipe = make_models(settings)[RECIPES[args.recipe]].get_params()
        params = {k: recipe[k] for k in ("strategy", "lr", "lora_rank", "lora_feedforward",
                                         "patience")}
        params["pretrained"] = pretrainer.fit(histories)
        print(f"pretrainer: {len(histories)} histories, {pretrainer.max_epochs} epochs, "
              f"{time.perf_counter() - started:.0f} s")
    est = BEHRTCompetingRisksEstimator(
        max_epochs=args.epochs, random_state=args.seed, n_threads=1,
        wide=None if args.wide == "none" else args.wide, early_stopping=args.early_stopping,
        **params, **decay_params(args),
    )
    if args.members > 1:  # the same recipe, pooled over seeds drawn from --seed
        est = BEHRTEnsemble(est, n_members=args.members, random_state=args.seed)
    est.fit(X.iloc[train], y[train])
    fit_s = time.perf_counter() - started
    cif = est.predict_cumulative_incidence(X.iloc[test], return_array=False)
    for c, name in enumerate(names, start=1):
        risks[("BEHRT", name)] = _cause_risk(est, c, X.iloc[test])
        risks[("BEHRT F(5y)", name)] = np.array([f(HORIZON) for f in cif[:, c - 1]])
        cox = make_models(BenchmarkSettings(models=["CoxPH"], random_state=args.seed).resolved())["CoxPH"]
        cox.fit(X.iloc[train], cause_specific_y(y[train], c))
        risks[("Cox counts", name)] = cox.predict(X.iloc[test])
        risks[("oracle F(5y)", name)] = true_cumulative_incidence(lp[test], [HORIZON])[:, c - 1, 0]
    for member in getattr(est, "estimators_", [est]):
        print(f"BEHRT fit: {len(member.history_)} epochs (valid C by epoch "
              f"{np.round(member.history_[:, 'valid_cindex'], 3).tolist()})")
    print(f"BEHRT fit(s) {fit_s:.0f} s")
    if args.members > 1:  # each member alone: what one fit of the recipe gives
        for c, name in enumerate(names, start=1):
            single = [cause_specific_c(y[test], _cause_risk(m, c, X.iloc[test]), c)
                      for m in est.estimators_]
            print(f"{name}: members' C {np.round(single, 3).tolist()}, mean {np.mean(single):.3f}"
                  f" -> ensemble {cause_specific_c(y[test], risks[('BEHRT', name)], c):.3f}")
    print(f"{'model':<14}" + "".join(f"{n + ' C':>14}{n + ' C ipcw':>16}" for n in names))
    for model in ("BEHRT", "BEHRT F(5y)", "Cox counts", "oracle F(5y)"):
        cells = []
        for c, name in enumerate(names, start=1):
            r = risks[(model, name)]
            cells.append(f"{cause_specific_c(y[test], r, c):>14.3f}"
                         f"{cause_specific_c(y[test], r, c, y_train=y[train]):>16.3f}")
        print(f"{model:<14}" + "".join(cells))
    if args.project:
        print_projections(y[test], risks, info["features"].iloc[test], names)


def _cause_risk(model, cause, X):
    """``predict`` of one cause, for an estimator or an ensemble of them."""
    if isinstance(model, BEHRTEnsemble):
        return model.set_params(estimator__cause=cause).predict(X)
    return model.set_params(cause=cause).predict(X)


def print_projections(y_test, risks, features, names):
    """Each cause's log 5-year incidence, the model's and the oracle's, on the features."""
    print("log F(5y) projected on the generating features (weights; R2; C of the projection):")
    for c, name in enumerate(names, start=1):
        for model in ("BEHRT F(5y)", "oracle F(5y)"):
            log_risk = np.log(np.clip(risks[(model, name)], 1e-12, None))
            fitted, r2, coef = projection(log_risk, features.to_numpy())
            weights = " ".join(f"{f}={w:+.2f}" for f, w in zip(features.columns, coef))
            print(f"  {name:<8} {model:<13} {weights}  R2 {r2:.2f}  "
                  f"C proj {cause_specific_c(y_test, fitted, c):.3f}")


if __name__ == "__main__":
    main()
