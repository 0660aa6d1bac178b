"""What pooling seeds buys: ``BEHRTEnsemble`` against its own members, on the label-efficiency cohorts.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ensemble_gain.py [--datasets ...] [--sizes 250 500
1000] [--recipes no-pretrain all-frozen all-lora] [--members 5] [--seeds 0] [--pool N]
[--code-prefix N] [--out DIR]``.

The cohorts, pretrainers and recipes are ``label_efficiency.py``'s (same flags, same
defaults: a pool of 40,000 unlabelled patients per generator and seed, nested labelled
sets, an independent test cohort; the Synthea sample's patient-grouped folds, where the
sizes count patients). Per labelled size and BEHRT recipe, one
:class:`survbehrt.BEHRTEnsemble` of ``--members`` seeds is fitted; its members are scored
one by one (what a single fit of the recipe gives, ``--members`` draws of it) and the
ensemble once, by Harrell's C on the test rows. Printed per fit: the members' C, their
mean and range, the ensemble's C and its gain over the members' mean. Written
(``--out``, default ``ensemble_gain/``): ``ensemble_gain.csv``, one row per fit.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_efficiency as le  # noqa: E402  (the cohorts and recipes, not re-written)

from survbehrt import BEHRTEnsemble  # noqa: E402
from survbehrt.metrics import harrell_c  # noqa: E402


def parse_args(argv=None):
    parser = le.build_parser(__doc__)
    parser.add_argument("--members", type=int, default=5)
    parser.set_defaults(sizes=[250, 500, 1000], recipes=["no-pretrain", "all-frozen", "all-lora"],
                        out=Path("ensemble_gain"))
    return le.finish_args(parser, argv)


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    run = le.Run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in args.datasets:
        source = le.synthea_runs if dataset == "synthea-sample" else le.synthetic_runs
        for seed in args.seeds:
            for label, histories, labelled, X_test, y_test, _ in source(run, dataset, seed):
                pretrainers = le.fit_pretrainers(run, histories, seed, str(label))
                models = run.recipes(seed, pretrainers)
                largest = max(n for n, *_ in labelled)
                for n, X, y, groups in labelled:
                    for recipe, model in models.items():
                        if recipe not in le.BEHRT_RECIPES:
                            continue
                        if not args.fixed_epochs:
                            model = le.same_steps(model, n, largest)
                        ens = BEHRTEnsemble(model, n_members=args.members, random_state=seed)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            ens.fit(X, y, groups=groups)
                        members = [harrell_c(y_test, m.predict(X_test)) for m in ens.estimators_]
                        c = harrell_c(y_test, ens.predict(X_test))
                        where = label if dataset == "synthea-sample" else seed
                        rows.append(dict(dataset=dataset, seed=where, n_labelled=n, recipe=recipe,
                                         members_mean=np.mean(members), members_min=min(members),
                                         members_max=max(members), ensemble=c,
                                         gain=c - np.mean(members),
                                         members=" ".join(f"{m:.3f}" for m in members)))
                        print(f"{dataset} {where} n={n} {recipe}: members "
                              f"{rows[-1]['members']} (mean {np.mean(members):.3f}), ensemble "
                              f"{c:.3f}, gain {c - np.mean(members):+.3f}", flush=True)
                        pd.DataFrame(rows).to_csv(args.out / "ensemble_gain.csv", index=False)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
