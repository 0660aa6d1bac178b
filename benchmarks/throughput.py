"""Training and inference throughput of BEHRTSurvivalEstimator, against the machine's matmul peak.

Run: ``python benchmarks/throughput.py [--n-patients N] [--threads T] [--device cpu|cuda]``.

Prints, on one machine in one run:
- the fp32 matmul peak (a 2048^3 ``torch.matmul``, GFLOP/s);
- for the small (64-d, 2 layers, 4 heads, ff 256) and medium (128-d, 4 layers, 4 heads,
  ff 512) configs: training tokens/s and patients/s of one epoch of the real
  ``BEHRTSurvivalEstimator.fit`` path, model FLOPs per token (6 x non-embedding
  parameters + the attention term 6 x layers x L x d, with L the mean padded batch
  length), utilisation = achieved FLOP/s / matmul peak, the padding fraction of the
  batches, and inference patients/s of ``predict_survival_function``;
- the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.data import BucketBatchSampler, padding_fraction
from survbehrt.datasets import make_synthetic_ehr

CONFIGS = {
    "small": dict(embedding_dim=64, num_layers=2, num_heads=4, ff_dim=256),
    "medium": dict(embedding_dim=128, num_layers=4, num_heads=4, ff_dim=512),
}


def matmul_peak(n: int = 2048, repeats: int = 5, device="cpu") -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n``^3 fp32 matmul."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def non_embedding_params(module) -> int:
    encoder = module.encoder
    emb = sum(p.numel() for p in encoder.embeddings.parameters())
    return sum(p.numel() for p in module.parameters()) - emb


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def measure(name, X, y, epochs, batch_size, device, peak):
    cfg = CONFIGS[name]
    est = BEHRTSurvivalEstimator(**cfg, max_epochs=epochs, batch_size=batch_size, time_bins=20,
                                 early_stopping=None, validation_fraction=0.0, random_state=0,
                                 device=device)
    t0 = time.perf_counter()
    est.fit(X, y)
    fit_wall = time.perf_counter() - t0
    tokens = est.tokenizer_.transform(X)
    epoch_s = float(np.median([h["dur"] for h in est.history_]))
    tok_s = tokens.n_tokens / epoch_s
    pat_s = len(X) / epoch_s
    batches = BucketBatchSampler(tokens.lengths, batch_size, seed=0).batches()
    pad = padding_fraction(tokens.lengths, batches)
    mean_len = float(np.mean([tokens.lengths[b].max() for b in batches]))
    params = non_embedding_params(est.net_.module_)
    d, layers = cfg["embedding_dim"], cfg["num_layers"]
    flops_tok = 6 * params + 6 * layers * mean_len * d
    util = tok_s * flops_tok / (peak * 1e9)
    t0 = time.perf_counter()
    est.predict_survival_function(X, return_array=True)
    infer_s = len(X) / (time.perf_counter() - t0)
    print(f"\n[{name}] {cfg}")
    print(f"  train epoch            {epoch_s:10.2f} s   (fit wall {fit_wall:.1f} s for {epochs} epochs)")
    print(f"  train tokens/s         {tok_s:10,.0f}")
    print(f"  train patients/s       {pat_s:10,.0f}")
    print(f"  non-embedding params   {params:10,d}")
    print(f"  FLOPs/token            {flops_tok / 1e6:10.2f} M  (mean padded length {mean_len:.0f})")
    print(f"  achieved               {tok_s * flops_tok / 1e9:10.1f} GFLOP/s")
    print(f"  utilisation            {util:10.1%} of matmul peak")
    print(f"  padding fraction       {pad:10.1%}")
    print(f"  inference patients/s   {infer_s:10,.0f}  (predict_survival_function)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-patients", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2, help="the median epoch time is reported")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, _ = make_synthetic_ehr(n_patients=args.n_patients, random_state=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    peak = matmul_peak(device=args.device)
    print(f"fp32 matmul peak (2048^3)  {peak:10.1f} GFLOP/s")
    print(f"cohort: {len(X)} patients")
    for name in args.configs:
        measure(name, X, y, args.epochs, args.batch_size, args.device, peak)
    print(f"\npeak resident memory     {peak_rss_mib():10.0f} MiB")


if __name__ == "__main__":
    main()
