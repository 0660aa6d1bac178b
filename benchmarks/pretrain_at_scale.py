"""Time-to-event pre-training on an unlabelled cohort far larger than any labelled set.

Run: ``OMP_NUM_THREADS=1 python benchmarks/pretrain_at_scale.py [--patients 60000]
[--scenario latent] [--epochs 2] [--out DIR]``.

Draws ``--patients`` unlabelled histories (:func:`survbehrt.datasets.make_unlabelled_pool`),
tokenizes them into a token store on disk in batches (``write_tokens``: the cohort is then
read memory-mapped, only each batch's patients in memory), and fits
``BEHRTPretrainer(objective="tte")`` (the label-efficiency benchmark's model: 64 wide, 2
layers) on the store with ``checkpoint_dir`` (weights, optimizer and history saved after
every epoch; a ``fit`` that finds them resumes) and ``verbose=2`` (a line per epoch, and a progress bar on a terminal). It then calls the same ``fit`` again: it finds the finished checkpoint, loads
it and trains no epoch (an interrupted fit resumes the same way with the epochs left).
Prints the store's size, each stage's wall-clock and CPU seconds, the training tokens/s
of every epoch and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from survbehrt import BEHRTPretrainer
from survbehrt.data import EHRTokenizer, write_tokens
from survbehrt.datasets import make_unlabelled_pool

ARCH = dict(embedding_dim=64, num_layers=2, num_heads=4, ff_dim=256, max_length=128)


def clocked(label, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    print(f"{label}: {time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU",
          flush=True)
    return out


def build_store(args, out):
    """Draw the pool, fit the vocabulary on it and write it to a token store (memory-mapped)."""
    X = clocked(f"draw {args.patients:,} unlabelled patients ({args.scenario})",
                lambda: make_unlabelled_pool(args.patients, scenario=args.scenario, random_state=0))
    tokenizer = clocked("fit the vocabulary",
                        lambda: EHRTokenizer(max_length=ARCH["max_length"]).fit(X))
    return clocked("write the token store",
                   lambda: write_tokens(tokenizer, X, out / "store", batch_size=20000,
                                        overwrite=True))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=60000)
    parser.add_argument("--scenario", default="latent")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="store and checkpoints (a temp dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="pretrain_at_scale_"))
    store = build_store(args, out)  # the frame is gone: the cohort is read from disk
    size = sum(f.stat().st_size for f in (out / "store").iterdir())
    print(f"store: {len(store):,} patients, {size / 2**20:.0f} MiB on disk", flush=True)
    params = dict(objective="tte", **ARCH, validation_fraction=0.0, random_state=0, n_threads=1,
                  checkpoint_dir=out / "checkpoints", verbose=2)
    pre = clocked(f"pre-train {args.epochs} epochs",
                  lambda: BEHRTPretrainer(max_epochs=args.epochs, **params).fit(store))
    n_tokens = store.meta["n_tokens"]
    for row in pre.history_:
        print(f"  epoch {row['epoch']}: {row['dur']:.0f} s, train loss {row['train_loss']:.4f}, "
              f"{n_tokens / row['dur']:,.0f} tokens/s")
    # the same fit again finds the finished checkpoint: it loads it and trains no epoch
    # (an interrupted fit resumes the same way, with the epochs it had left)
    resumed = clocked("the same fit again, from its checkpoint",
                      lambda: BEHRTPretrainer(max_epochs=args.epochs, **params).fit(store))
    same = all(torch.equal(a, b) for a, b in zip(pre.module_.state_dict().values(),
                                                  resumed.module_.state_dict().values()))
    print(f"  history {[r['epoch'] for r in resumed.history_]}, weights equal to the first fit's: "
          f"{same}")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
