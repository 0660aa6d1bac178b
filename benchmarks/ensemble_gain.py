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


def ensemble_row(model, members: int, labelled, dataset: str, recipe: str, seed: int) -> dict:
    """Fit one ensemble of ``model`` on a labelled set (``le.LabelledSet``); score it and
    each of its members on the set's test rows."""
    ens = BEHRTEnsemble(model, n_members=members, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens.fit(labelled.X, labelled.y, groups=labelled.groups)
    scores = [harrell_c(labelled.y_test, m.predict(labelled.X_test)) for m in ens.estimators_]
    c = harrell_c(labelled.y_test, ens.predict(labelled.X_test))
    return dict(dataset=dataset, seed=seed, fold=labelled.fold, n_labelled=labelled.n,
                recipe=recipe, members_mean=np.mean(scores), members_min=min(scores),
                members_max=max(scores), ensemble=c, gain=c - np.mean(scores),
                members=" ".join(f"{m:.3f}" for m in scores))


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    run = le.Run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            for labelled in le.labelled_sets(run, dataset, seed):
                for recipe, model in labelled.models.items():
                    if recipe not in le.BEHRT_RECIPES:
                        continue
                    row = ensemble_row(model, args.members, labelled, dataset, recipe, seed)
                    rows.append(row)
                    print(f"{dataset} {row['seed']} fold {row['fold']} n={row['n_labelled']} "
                          f"{recipe}: members "
                          f"{row['members']} (mean {row['members_mean']:.3f}), ensemble "
                          f"{row['ensemble']:.3f}, gain {row['gain']:+.3f}", flush=True)
                    pd.DataFrame(rows).to_csv(args.out / "ensemble_gain.csv", index=False)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
