"""Pre-training tokens/s (time-to-event with K tasks, MLM, next visit) against survival fine-tuning.

Run: ``python benchmarks/pretrain_throughput.py [--n-patients N] [--tasks K] [--threads T]``.

One cohort (``make_synthetic_ehr`` with ``--n-codes`` codes, so that ``K`` tasks exist), one
model (the small config: 64-d, 2 layers, 4 heads, ff 256), in one process, prints the
training tokens/s (cohort tokens / fastest epoch) of:

- ``BEHRTSurvivalEstimator`` fine-tuning (its defaults, no validation);
- ``BEHRTPretrainer`` with ``objective="tte"`` (``tte_tasks=K``, its default sampling of
  visits and tasks), the same with every visit and task (``--no-sampling`` adds it),
  ``"mlm+tte"``, ``"both"`` and the default, ``"mlm+next_visit+tte"`` (``--code-neighbours
  K`` adds the default with ``code_neighbours=K``);

each fitted ``--repeats`` times in turn (round-robin), the fastest epoch of each kept: on a
shared machine the other users' load only slows epochs down, so the fastest is the one
closest to the machine's own speed. Beside it, the rate by CPU seconds (the fit's less
those of the same fit with no epoch): with ``--threads 1`` it does not depend on the load. Then each pre-training rate as a share of the
fine-tuning rate. The target of issue 28: time-to-event pre-training at least 70 % of
fine-tuning.

``--steps`` adds a steadier comparison of the training steps alone: the survival module
(its likelihood on each patient's last visit) and the TTE pre-training module (sampled
terms, and every term), both built by the estimators above with 0 epochs, take turns on
the same ``--step-batches`` batches of 64 patients, ``--repeats`` passes; the fastest
pass of each is kept, by the wall clock and by this process's CPU seconds (with
``--threads 1`` the CPU seconds are the work alone, whatever else shares the machine);
``--only-steps`` runs that comparison alone.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.base import clone

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.data.batching import collate_tokens
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.estimators._training import PretrainingCriterion
from survbehrt.losses import survival_nll

SMALL = dict(embedding_dim=64, num_layers=2, num_heads=4, ff_dim=256)


def tokens_per_second(est, X, fit_args) -> tuple[float, float]:
    """Training tokens/s of ``est``: by its fastest epoch's wall clock, and by CPU seconds.

    The CPU rate divides the epochs' tokens by the CPU seconds of the fit less those of
    the same fit with no epoch (tokenizing, the start), so what other processes on the
    machine do does not enter it (with one torch thread).
    """
    cpu = time.process_time()
    est.fit(X, *fit_args)
    cpu = time.process_time() - cpu
    setup = time.process_time()
    clone(est).set_params(max_epochs=0).fit(X, *fit_args)
    setup = time.process_time() - setup
    epoch_s = float(np.min([h["dur"] for h in est.history_]))
    n_tokens = est.tokenizer_.transform(X).n_tokens
    return n_tokens / epoch_s, n_tokens * len(est.history_) / max(cpu - setup, 1e-9)


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
    # CPU seconds of this process beside the wall clock: with one torch thread they are
    # the work itself, which other processes sharing the cores do not inflate
    seconds = {(name, clock): np.zeros(repeats) for name in steps for clock in ("wall", "CPU")}
    for r in range(repeats):
        for b in batches:
            for name, step in steps.items():
                t0, c0 = time.perf_counter(), time.process_time()
                step(b)
                seconds[(name, "CPU")][r] += time.process_time() - c0
                seconds[(name, "wall")][r] += time.perf_counter() - t0
    print(f"\nsteps on the same {n_batches} batches ({n_tokens:,} tokens), fastest of {repeats} "
          f"passes ({torch.get_num_threads()} torch thread(s)):")
    for clock in ("wall", "CPU"):
        base = seconds[("survival step", clock)].min()
        for name in steps:
            best = seconds[(name, clock)].min()
            print(f"{name:32s} {clock:>4} {n_tokens / best:10,.0f} tokens/s   "
                  f"{base / best:5.0%} of survival")


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
    parser.add_argument("--only-steps", action="store_true", help="the step comparison alone")
    parser.add_argument("--code-neighbours", type=int, default=None,
                        help="also time the default objective with code_neighbours=K")
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

    if args.only_steps:
        return step_comparison(X, y, args.tasks, args.step_batches, args.repeats)
    runs = {"survival fine-tuning": survival, "pre-training 'tte'": pretrain("tte")}
    if args.no_sampling:
        runs["pre-training 'tte', all terms"] = pretrain("tte", tte_visits=None, tte_sampled_tasks=None)
    runs["pre-training 'mlm+tte'"] = pretrain("mlm+tte")
    runs["pre-training 'both'"] = pretrain("both")
    runs["pre-training (default) 'mlm+next_visit+tte'"] = pretrain("mlm+next_visit+tte")
    if args.code_neighbours:
        runs[f"  the same, code_neighbours={args.code_neighbours}"] = pretrain(
            "mlm+next_visit+tte", code_neighbours=args.code_neighbours)
    rates = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            rates[name].append(run())
    for k, clock in enumerate(("fastest epoch, wall", "CPU seconds")):
        print(f"-- by {clock}:")
        base = max(v[k] for v in rates["survival fine-tuning"])
        for name, values in rates.items():
            best = max(v[k] for v in values)
            share = "" if name.startswith("survival") else f"   {best / base:5.0%} of fine-tuning"
            print(f"{name:44s} {best:10,.0f} tokens/s{share}   (each repeat: "
                  + ", ".join(f"{v[k]:,.0f}" for v in values) + ")")
    if args.steps:
        step_comparison(X, y, args.tasks, args.step_batches, args.repeats)


if __name__ == "__main__":
    main()
