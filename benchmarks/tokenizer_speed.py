"""Tokenizer throughput: how long fit + transform take on about a million tokens.

Run: ``python benchmarks/tokenizer_speed.py [--n-patients N] [--values]``. Prints tokens, seconds
and tokens/s. The target (issue 2) is one million tokens in under 2 s on a 2-core machine.
``--values`` adds a ``static`` code per patient and a numeric value to 60 % of the codes, so
that the value-bin quantiles (fit) and lookups (transform) are timed too.
"""

import argparse
import time

import numpy as np
import pandas as pd

from survbehrt.data import EHRTokenizer


def add_static_and_values(X: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A ``static`` code per row and a value (NaN for 40 %) per code."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    X["static"] = [["GENDER//F"] if s else ["GENDER//M"] for s in rng.random(len(X)) < 0.5]
    X["values"] = [
        [np.where(rng.random(len(v)) < 0.6, rng.normal(size=len(v)), np.nan).tolist() for v in visits]
        for visits in X["codes"]
    ]
    return X


def cohort(n_patients: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_vis = rng.integers(3, 30, size=n_patients)
    sizes = rng.integers(1, 7, size=int(n_vis.sum()))
    codes = [f"C{c}" for c in rng.zipf(1.4, size=int(sizes.sum())) % 5000]
    it = iter(codes)
    visits = [[next(it) for _ in range(s)] for s in sizes]
    vit = iter(visits)
    rows = [[next(vit) for _ in range(k)] for k in n_vis]
    ages = [np.sort(rng.uniform(18, 90, size=k)).tolist() for k in n_vis]
    return pd.DataFrame({"codes": rows, "ages": ages})


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-patients", type=int, default=17_000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--values", action="store_true", help="add static codes and values")
    args = parser.parse_args()
    X = cohort(args.n_patients)
    if args.values:
        X = add_static_and_values(X)
    tok = EHRTokenizer(max_length=args.max_length)
    t0 = time.perf_counter()
    tok.fit(X)
    t1 = time.perf_counter()
    tokens = tok.transform(X)
    t2 = time.perf_counter()
    n = tokens.n_tokens
    print(f"patients            {len(X):>12,}")
    print(f"tokens              {n:>12,}")
    print(f"vocabulary          {tok.vocab_size_:>12,}")
    print(f"fit (vocabulary)    {t1 - t0:>12.3f} s")
    print(f"transform           {t2 - t1:>12.3f} s   ({n / (t2 - t1):,.0f} tokens/s)")
    print(f"fit + transform     {t2 - t0:>12.3f} s   ({n / (t2 - t0):,.0f} tokens/s)")
    print(f"memory of arrays    {tokens.nbytes() / 2**20:>12.1f} MiB")


if __name__ == "__main__":
    main()
