"""Scaling with a cohort on disk: token stores of 20 k, 200 k and 2 M synthetic patients.

Run: ``python benchmarks/scale.py [--sizes 20000 200000 2000000] [--dir /tmp/survbehrt_scale]``.

For each size, in a fresh process:

1. **build** (skipped when the store exists): ``make_synthetic_ehr`` in chunks of 20 k
   patients (a new seed per chunk), tokenized by a tokenizer fitted on the first chunk
   and appended to a :class:`~survbehrt.data.TokenStore` (``TokenStoreWriter``); the
   labels are saved beside it (``y.npy``). Only one chunk is in memory at a time.
2. **train** (another fresh process): the store is opened memory-mapped and a small
   ``BEHRTSurvivalEstimator`` (default settings but a small model, one epoch, no
   validation split) is fitted on ``store[rows]``, ``rows`` being 200 batches of 64
   patients drawn at random across the *whole* cohort, then predicts 20 k other random
   rows. A full epoch over 2 M patients on two CPU cores would take hours; a fixed
   number of steps, with rows from anywhere in the store, measures what the issue asks
   (that the cost per token does not grow with the cohort and the memory stays bounded)
   in minutes. The per-epoch work that does depend on the cohort size (the sampler's
   permutation of all rows) is a few milliseconds per million rows.

Printed per size: patients, stored tokens and bytes, build time, the training epoch's
seconds per million tokens (``history_[-1]["dur"]`` over the tokens of the fitted rows),
the prediction's, and the training process's peak resident memory (``VmHWM``: file
pages of the memory map that it touched count too). The store was just written, so its
pages are likely in the page cache: the figures are those of a warm disk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHUNK = 20_000
BATCH, STEPS, PREDICT = 64, 200, 20_000


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(n: int, folder: Path) -> dict:
    import numpy as np

    from survbehrt.data import EHRTokenizer, TokenStoreWriter
    from survbehrt.datasets import make_synthetic_ehr

    t0 = time.perf_counter()
    ys, writer, tok = [], None, None
    for i, start in enumerate(range(0, n, CHUNK)):
        X, y, _ = make_synthetic_ehr(n_patients=min(CHUNK, n - start), random_state=i)
        if tok is None:
            tok = EHRTokenizer().fit(X)
            writer = TokenStoreWriter(folder, tok, overwrite=True, columns=list(X.columns))
        writer.append(tok.transform(X))
        ys.append(y)
    writer.close()
    np.save(folder / "y.npy", np.concatenate(ys))
    return {"build_s": time.perf_counter() - t0, "build_rss_MiB": peak_rss_mib()}


def train(folder: Path) -> dict:
    import numpy as np

    from survbehrt import BEHRTSurvivalEstimator
    from survbehrt.data import TokenStore

    store = TokenStore(folder)
    y = np.load(folder / "y.npy")
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(store))[: BATCH * STEPS + PREDICT]
    fit_rows, pred_rows = np.sort(rows[: BATCH * STEPS]), rows[BATCH * STEPS :]
    est = BEHRTSurvivalEstimator(embedding_dim=32, num_layers=1, num_heads=2, ff_dim=64,
                                 max_epochs=1, batch_size=BATCH, early_stopping=None,
                                 validation_fraction=0.0, random_state=0)
    t0 = time.perf_counter()
    est.fit(store[fit_rows], y[fit_rows])
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    est.predict(store[pred_rows])
    pred_s = time.perf_counter() - t0
    tokens = store.tokens
    fit_tok = int(tokens.lengths_at(fit_rows).sum())
    pred_tok = int(tokens.lengths_at(pred_rows).sum())
    return {"patients": len(store), "tokens": tokens.n_tokens,
            "store_MiB": tokens.nbytes() / 2**20, "fit_s": fit_s,
            "train_s_per_Mtok": est.history_[-1]["dur"] / fit_tok * 1e6,
            "predict_s_per_Mtok": pred_s / pred_tok * 1e6, "peak_rss_MiB": peak_rss_mib()}


def run(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    parser.add_argument("--dir", default="/tmp/survbehrt_scale")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--train", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    if args.build:
        print(json.dumps(build(args.build, Path(args.dir) / str(args.build))))
        return
    if args.train:
        print(json.dumps(train(Path(args.dir) / str(args.train))))
        return
    print(f"{'patients':>9} {'tokens':>11} {'store MiB':>9} {'build s':>7} {'train s/Mtok':>12} "
          f"{'predict s/Mtok':>14} {'peak RSS MiB':>12}")
    rows = []
    for n in args.sizes:
        folder = Path(args.dir) / str(n)
        b = ({"build_s": float("nan")} if (folder / "store.json").exists()
             else run("--build", n, "--dir", args.dir))
        r = {**b, **run("--train", n, "--dir", args.dir)}
        rows.append(r)
        print(f"{r['patients']:>9,} {r['tokens']:>11,} {r['store_MiB']:>9.0f} {r['build_s']:>7.0f} "
              f"{r['train_s_per_Mtok']:>12.1f} {r['predict_s_per_Mtok']:>14.2f} "
              f"{r['peak_rss_MiB']:>12.0f}", flush=True)
    per = [r["train_s_per_Mtok"] for r in rows]
    print(f"\ntraining time per token: min {min(per):.1f}, max {max(per):.1f} s/Mtok "
          f"(spread {max(per) / min(per) - 1:+.0%} of the fastest); "
          f"largest peak RSS {max(r['peak_rss_MiB'] for r in rows):.0f} MiB")


if __name__ == "__main__":
    main()
