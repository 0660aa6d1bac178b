"""Pre-training tokens/s (time-to-event with K tasks, MLM, next visit) against survival fine-tuning.

Run: ``python benchmarks/pretrain_throughput.py [--n-patients N] [--tasks K] [--threads T]``.

One cohort (``make_synthetic_ehr`` with ``--n-codes`` codes, so that ``K`` tasks exist), one
model (the small config: 64-d, 2 layers, 4 heads, ff 256), in one process, prints the
training tokens/s (cohort tokens / fastest epoch) of:

- ``BEHRTSurvivalEstimator`` fine-tuning (its defaults, no validation);
- ``BEHRTPretrainer`` with ``objective="tte"`` (``tte_tasks=K``, its default sampling of
  visits and tasks), the same with every visit and task (``--no-sampling`` adds it),
  ``"mlm+tte"`` and ``"both"``;

each fitted ``--repeats`` times in turn (round-robin), the fastest epoch of each kept: on a
shared machine the other users' load only slows epochs down, so the fastest is the one
closest to the machine's own speed. Then each pre-training rate as a share of the
fine-tuning rate. The target of issue 28: time-to-event pre-training at least 70 % of
fine-tuning.

``--steps`` adds a steadier comparison of the training steps alone: the survival module
(its likelihood on each patient's last visit) and the TTE pre-training module (sampled
terms, and every term), both built by the estimators above with 0 epochs, take turns on
the same ``--step-batches`` batches of 64 patients, ``--repeats`` passes; the fastest
pass of each is kept.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.data.batching import collate_tokens
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.estimators._training import PretrainingCriterion
from survbehrt.losses import survival_nll

SMALL = dict(embedding_dim=64, num_layers=2, num_heads=4, ff_dim=256)


def tokens_per_second(est, X, fit_args) -> float:
    est.fit(X, *fit_args)
    epoch_s = float(np.min([h["dur"] for h in est.history_]))
    return est.tokenizer_.transform(X).n_tokens / epoch_s


def step_comparison(X, y, tasks, n_batches, repeats):
    """Fastest pass of training steps over the same batches: survival vs TTE pre-training."""
    common = dict(SMALL, max_epochs=0, validation_fraction=0.0, random_state=0)
    pre = BEHRTPretrainer(**common, objective="tte", tte_tasks=tasks).fit(X)
    est = BEHRTSurvivalEstimator(**common, early_stopping=None).fit(X, y)
    tokens = pre.tokenizer_.transform(X)
    rng = np.random.default_rng(0)
    batches = [collate_tokens(tokens, rng.choice(len(X), 64, replace=False)) for _ in range(n_batches)]
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    tte, surv = pre.module_.train(), est.net_.module_.train()
    criterion, cuts = PretrainingCriterion(tte.tte_cuts), est.time_grid_.cuts_
    tte_opt, surv_opt = torch.optim.AdamW(tte.parameters()), torch.optim.AdamW(surv.parameters())
    sampling = (tte.tte_visits, tte.tte_sampled_tasks)

    def survival_step(b):
        surv_opt.zero_grad()
        last = b["visit_mask"].sum(1) - 1
        logits = surv(**b)[torch.arange(len(last)), last]
        survival_nll(logits, torch.rand(len(last)) * 3, torch.rand(len(last)) < 0.3, cuts).backward()
        surv_opt.step()

    def tte_step(b, every_term=False):
        tte.tte_visits, tte.tte_sampled_tasks = (None, None) if every_term else sampling
        tte_opt.zero_grad()
        criterion(tte(**b), b)["loss"].backward()
        tte_opt.step()

    steps = {"survival step": survival_step, "TTE step, sampled terms": tte_step,
             "TTE step, every term": lambda b: tte_step(b, True)}
    seconds = {name: np.zeros(repeats) for name in steps}
    for r in range(repeats):
        for b in batches:
            for name, step in steps.items():
                t0 = time.perf_counter()
                step(b)
                seconds[name][r] += time.perf_counter() - t0
    base = seconds["survival step"].min()
    print(f"\nsteps on the same {n_batches} batches ({n_tokens:,} tokens), fastest of {repeats} passes:")
    for name, values in seconds.items():
        print(f"{name:32s} {n_tokens / values.min():10,.0f} tokens/s   {base / values.min():5.0%} of survival")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-patients", type=int, default=2000)
    parser.add_argument("--n-codes", type=int, default=3000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", action="store_true", help="also compare training steps alone")
    parser.add_argument("--step-batches", type=int, default=6)
    parser.add_argument("--no-sampling", action="store_true",
                        help="also time 'tte' with every visit and task in each batch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, _ = make_synthetic_ehr(n_patients=args.n_patients, n_codes=args.n_codes, random_state=0)
    common = dict(SMALL, max_epochs=args.epochs, batch_size=args.batch_size, validation_fraction=0.0,
                  random_state=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(X)} patients, "
          f"small model {SMALL}, {args.epochs} epochs x {args.repeats} repeats each (fastest epoch)")

    def survival():
        est = BEHRTSurvivalEstimator(**common, early_stopping=None)
        return tokens_per_second(est, X, (y,))

    def pretrain(objective, **extra):
        def run():
            pre = BEHRTPretrainer(**common, objective=objective, tte_tasks=args.tasks, **extra)
            return tokens_per_second(pre, X, ())
        return run

    runs = {"survival fine-tuning": survival, "pre-training 'tte'": pretrain("tte")}
    if args.no_sampling:
        runs["pre-training 'tte', all terms"] = pretrain("tte", tte_visits=None, tte_sampled_tasks=None)
    runs["pre-training 'mlm+tte'"] = pretrain("mlm+tte")
    runs["pre-training 'both'"] = pretrain("both")
    rates = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            rates[name].append(run())
    base = max(rates["survival fine-tuning"])
    for name, values in rates.items():
        share = "" if name.startswith("survival") else f"   {max(values) / base:5.0%} of fine-tuning"
        print(f"{name:32s} {max(values):10,.0f} tokens/s{share}   (each repeat: "
              + ", ".join(f"{v:,.0f}" for v in values) + ")")
    if args.steps:
        step_comparison(X, y, args.tasks, args.step_batches, args.repeats)


if __name__ == "__main__":
    main()
