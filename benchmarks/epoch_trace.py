"""What each epoch of a fine-tuning recipe does from its start: validation loss and test C.

Run: ``python benchmarks/epoch_trace.py --kind sequence --seed 0 --n 4000 --pool 40000
--recipe lora --settings wide_recency=None wide_recency=1.0``.

One cohort of the label-efficiency benchmark (its labelled rows, its unlabelled pool
and its independent test set of 4,000; ``benchmarks/label_efficiency.py``): the default
pretrainer (masked codes, next visit and time to event, ``--pretrain-epochs``) is fitted
on the pool and the labelled histories, then the benchmark's fine-tuning recipe
(``--recipe``: ``survbehrt.benchmark.make_models``' BEHRT-lora, BEHRT-frozen or
BEHRT-full, or ``no-pretrain``: the estimator's defaults) is fitted once per
``--settings`` entry (estimator parameters, ``name=value`` joined by commas), *without*
early stopping, with the weights of every epoch kept. It prints, for the start (epoch 0)
and each epoch: the validation loss (the rows early stopping reads) and Harrell's C of
those weights on the test set, and the epoch that early stopping on the validation loss
would have restored. It shows whether a recipe learns beyond its start, and when.
"""

from __future__ import annotations

import argparse
import copy
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from skorch.callbacks import Callback

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.benchmark import BenchmarkSettings, make_models
from survbehrt.datasets import make_synthetic_ehr, make_unlabelled_pool
from survbehrt.datasets.synthetic import SCENARIOS
from survbehrt.estimators._training import validation_loss
from survbehrt.metrics import harrell_c

RECIPES = {"lora": "BEHRT-lora", "frozen": "BEHRT-frozen", "full": "BEHRT-full"}


class KeepWeights(Callback):
    """The module's weights at the start and after every epoch, and the start's validation loss."""

    def on_train_begin(self, net, **kwargs):
        self.weights = [copy.deepcopy(net.module_.state_dict())]
        # the validation rows of the net's predefined split, scored as early stopping does
        self.start_loss = validation_loss(net, net.train_split.keywords["valid_ds"])

    def on_epoch_end(self, net, **kwargs):
        self.weights.append(copy.deepcopy(net.module_.state_dict()))


def _value(text):
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_settings(entry):
    """``"a=1,b=None"`` -> ``{"a": 1, "b": None}``."""
    return dict((k, _value(v)) for k, v in (kv.split("=", 1) for kv in entry.split(",") if kv))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="sequence", choices=SCENARIOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=4000, help="labelled patients")
    parser.add_argument("--pool", type=int, default=40000, help="unlabelled patients")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="the benchmark's epochs (LoRA 4/3)")
    parser.add_argument("--recipe", default="lora", choices=[*RECIPES, "no-pretrain"])
    parser.add_argument("--settings", nargs="+", default=[""],
                        help="estimator parameters per fit, e.g. wide_recency=None")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    seed = args.seed
    X, y, _ = make_synthetic_ehr(args.n, args.kind, random_state=seed)
    X_test, y_test, risk = make_synthetic_ehr(4000, args.kind, random_state=10_000 + seed)
    arch = dict(embedding_dim=64, num_layers=2, num_heads=4, ff_dim=256, max_length=128)
    if args.recipe == "no-pretrain":
        base = BEHRTSurvivalEstimator(**arch, max_epochs=args.epochs, random_state=seed,
                                      n_threads=1)
    else:
        pool = make_unlabelled_pool(args.pool, scenario=args.kind, random_state=seed)
        pre = BEHRTPretrainer(objective="mlm+next_visit+tte", **arch,
                              max_epochs=args.pretrain_epochs, validation_fraction=0.0,
                              random_state=seed, n_threads=1)
        pre.fit(pd.concat([pool, X], ignore_index=True))
        settings = BenchmarkSettings(models=[RECIPES[args.recipe]], epochs=args.epochs,
                                     random_state=seed, n_threads=1).resolved()
        base = clone(make_models(settings)[RECIPES[args.recipe]]).set_params(pretrained=pre)
    print(f"{args.kind} seed {seed}, {args.n} labelled, recipe {args.recipe}; oracle C "
          f"{harrell_c(y_test, risk):.3f}")
    for entry in args.settings:
        keep = KeepWeights()
        est = clone(base).set_params(**parse_settings(entry), early_stopping=None,
                                     callbacks=[("keep_weights", keep)])
        est.fit(X, y)
        losses = [h["valid_loss"] for h in est.history_]
        start_loss = keep.start_loss
        cs = []
        module = est.net_.module_
        for weights in keep.weights:
            module.load_state_dict(weights)
            cs.append(harrell_c(y_test, est.predict(X_test)))
        module.load_state_dict(keep.weights[-1])
        best = int(np.argmin([start_loss, *losses]))
        print(f"  {entry or 'defaults'}: wide_recent_ {est.wide_recent_}; early stopping on the "
              f"validation loss keeps epoch {best}")
        print("    epoch       " + " ".join(f"{e:>6}" for e in range(len(cs))))
        print("    valid loss  " + " ".join(f"{v:6.4f}" for v in [start_loss, *losses]))
        print("    test C      " + " ".join(f"{c:6.3f}" for c in cs), flush=True)


if __name__ == "__main__":
    main()
