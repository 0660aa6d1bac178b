"""Scaling: one training epoch (small config) at 20k, 50k, 100k and 200k synthetic patients.

Run: ``python benchmarks/scale.py [--sizes 20000 50000 100000 200000]``. Each size runs in
a fresh process (so peak memory is per size) and prints patients, tokens, the epoch time,
seconds per million tokens (flat = linear cost) and the process's peak resident memory.
The data are held as flat int32 arrays and batches are cut on the fly.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one_size(n: int) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    from survbehrt import BEHRTSurvivalEstimator
    from survbehrt.datasets import make_synthetic_ehr

    t0 = time.perf_counter()
    X, y, _ = make_synthetic_ehr(n_patients=n, random_state=0)
    gen = time.perf_counter() - t0
    est = BEHRTSurvivalEstimator(embedding_dim=64, num_layers=2, num_heads=4, ff_dim=256,
                                 max_epochs=1, batch_size=64, early_stopping=None,
                                 validation_fraction=0.0, random_state=0)
    t0 = time.perf_counter()
    est.fit(X, y)
    fit = time.perf_counter() - t0
    tokens = est.tokenizer_.transform(X)
    epoch = est.history_[-1]["dur"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB -> MiB (Linux)
    return {"patients": n, "tokens": tokens.n_tokens, "generate_s": gen, "fit_s": fit,
            "epoch_s": epoch, "s_per_Mtok": epoch / tokens.n_tokens * 1e6,
            "token_arrays_MiB": tokens.nbytes() / 2**20, "peak_rss_MiB": rss}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000, 100_000, 200_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one)))
        return
    print(f"{'patients':>9} {'tokens':>11} {'epoch s':>8} {'s/Mtok':>7} {'fit s':>7} "
          f"{'arrays MiB':>10} {'peak RSS MiB':>12}")
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                             text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{r['patients']:>9,} {r['tokens']:>11,} {r['epoch_s']:>8.1f} {r['s_per_Mtok']:>7.1f} "
              f"{r['fit_s']:>7.1f} {r['token_arrays_MiB']:>10.1f} {r['peak_rss_MiB']:>12.0f}", flush=True)
    per = [r["s_per_Mtok"] for r in rows]
    print(f"\ntime per token: min {min(per):.1f}, max {max(per):.1f} s/Mtok "
          f"(spread {max(per) / min(per) - 1:+.0%} of the fastest)")


if __name__ == "__main__":
    main()
