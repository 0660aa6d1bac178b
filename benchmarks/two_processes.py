"""One process against two data-parallel CPU processes (torchrun, gloo): fit time and C-index.

Run: ``python benchmarks/two_processes.py [--n-patients N] [--epochs E]``.

The survival estimator (small preset, no dropout) is fitted on the synthetic cohort's
training rows once in this process (no accelerator) and once by two processes started
with ``torch.distributed.run`` under ``Accelerator(cpu=True)`` with
``split_batches=True``, so that both take the same optimizer steps on the same batches
(each process half of each batch). Printed: the fit wall time of each, the test C-index
of each, the largest difference of their predicted risks, and whether the two processes
ended with identical weights. Each process uses one torch thread, so on a machine with at
least two free cores two processes can be up to twice as fast as one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.model import PRESETS


def data(n_patients: int):
    X, y, _ = make_synthetic_ehr(n_patients=n_patients, random_state=0)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y["event"])


def estimator(epochs: int, **params):
    return BEHRTSurvivalEstimator(**PRESETS["small"], dropout=0.0, max_epochs=epochs,
                                  batch_size=64, early_stopping=None, validation_fraction=0.0,
                                  random_state=0, n_threads=1, **params)


def worker(n_patients: int, epochs: int, out: str) -> None:
    from accelerate import Accelerator, DataLoaderConfiguration

    accelerator = Accelerator(cpu=True,
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    X_train, X_test, y_train, y_test = data(n_patients)
    t0 = time.perf_counter()
    est = estimator(epochs, accelerator=accelerator).fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    weights = torch.cat([p.detach().flatten() for p in est.net_.module_.parameters()]).numpy()
    np.savez(f"{out}/rank{accelerator.process_index}.npz", seconds=seconds, weights=weights,
             risk=est.predict(X_test), cindex=est.score(X_test, y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-patients", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.n_patients, args.epochs, args.worker)
    X_train, X_test, y_train, y_test = data(args.n_patients)
    t0 = time.perf_counter()
    one = estimator(args.epochs).fit(X_train, y_train)
    one_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
             "2", __file__, "--n-patients", str(args.n_patients), "--epochs", str(args.epochs),
             "--worker", out],
            check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
        )
        launch_s = time.perf_counter() - t0
        ranks = [np.load(Path(out) / f"rank{r}.npz") for r in (0, 1)]
    print(f"synthetic cohort: {len(X_train)} training / {len(X_test)} test patients, small "
          f"preset, {args.epochs} epochs, batch 64, one torch thread per process")
    print(f"one process       fit {one_s:7.1f} s   test C-index {one.score(X_test, y_test):.4f}")
    print(f"two processes     fit {float(ranks[0]['seconds']):7.1f} s   test C-index "
          f"{float(ranks[0]['cindex']):.4f}   (torchrun wall, start-up included: {launch_s:.1f} s)")
    same = np.array_equal(ranks[0]["weights"], ranks[1]["weights"])
    risk = one.predict(X_test)
    print(f"weights identical in both processes: {same}")
    print(f"largest relative difference of test risks, one vs two processes: "
          f"{float(np.max(np.abs(ranks[0]['risk'] - risk) / np.abs(risk))):.2e}")


if __name__ == "__main__":
    main()
