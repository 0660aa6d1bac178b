"""Training throughput on one device under bf16, against the device's bf16 peak (MFU).

Run on a GPU: ``python benchmarks/gpu_throughput.py`` (``--device cuda``, bf16 autocast).
Smoke run on a CPU: ``python benchmarks/gpu_throughput.py --device cpu --quick``.

Both estimators train through the path a user gets with
``accelerator=Accelerator(mixed_precision="bf16")`` (one process): the survival estimator
for the small / medium / large architecture presets (``BEHRTConfig.preset``), and the
pretrainer (MLM + next visit) for the medium preset, on the synthetic cohort. Printed per
run: the median epoch time, training tokens/s and patients/s, model FLOPs per token
(``benchmarks/throughput.py``'s count: 6 x non-embedding parameters + 6 x layers x L x d
for attention, L the mean padded batch length; the pretrainer's output heads are in its
parameters), the achieved TFLOP/s and the model FLOP utilisation (MFU) against the bf16
peak. The peak is the datasheet's dense bf16 figure for known GPUs, ``--peak-tflops`` when
given, else (CPU, unknown GPU) a measured bf16 matmul rate, said as such. On CUDA it also
says which fused attention kernels (SDPA) accept the encoder's masks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator
from survbehrt.data import BucketBatchSampler, padding_fraction
from survbehrt.datasets import make_synthetic_ehr
from survbehrt.model import PRESETS

sys.path.insert(0, str(Path(__file__).parent))
from throughput import non_embedding_params  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s; matched
# against torch.cuda.get_device_name() in order (first match wins).
BF16_PEAK_TFLOPS = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
    ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0),
)


def bf16_peak(device: str, override: float | None) -> tuple[float, str]:
    """The bf16 peak in TFLOP/s and where it comes from."""
    if override:
        return override, "--peak-tflops"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
        for key, tflops in BF16_PEAK_TFLOPS:
            if key in name:
                return tflops, f"datasheet, {name}"
    n = 1024 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(4):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12, f"measured bf16 {n}^3 matmul, not a datasheet peak"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fused_attention_kernels(device: str, dim: int, heads: int, length: int) -> str:
    """Which SDPA backends run the encoder's attention (bf16, its boolean masks)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from survbehrt.model.encoder import build_attention_mask

    q = torch.randn(8, heads, length, dim // heads, device=device, dtype=torch.bfloat16)
    real = torch.ones(8, length, dtype=torch.bool, device=device)
    real[:, length // 2:] = False
    visits = torch.arange(length, device=device).expand(8, -1) // 4
    out = []
    for label, mask in (("bidirectional", build_attention_mask(real)),
                        ("visit-causal", build_attention_mask(real, visits, causal=True))):
        ok = []
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.CUDNN_ATTENTION):
            try:
                with sdpa_kernel([backend]):
                    torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
                ok.append(backend.name.lower())
            except RuntimeError:
                pass
        out.append(f"{label}: {', '.join(ok) or 'math only'}")
    return "; ".join(out)


def epoch_figures(est, tokens, batch_size, module, dim, layers, peak_tflops):
    epoch_s = float(np.median([h["dur"] for h in est.history_]))
    tok_s = tokens.n_tokens / epoch_s
    batches = BucketBatchSampler(tokens.lengths, batch_size, seed=0).batches()
    mean_len = float(np.mean([tokens.lengths[b].max() for b in batches]))
    flops_tok = 6 * non_embedding_params(module) + 6 * layers * mean_len * dim
    achieved = tok_s * flops_tok / 1e12
    return {
        "epoch s": epoch_s, "tokens/s": tok_s, "patients/s": len(tokens) / epoch_s,
        "GFLOP/token": flops_tok / 1e9, "TFLOP/s": achieved, "MFU": achieved / peak_tflops,
        "padding": padding_fraction(tokens.lengths, batches),
    }


def report(label, figures):
    f = figures
    print(f"{label:<22} {f['epoch s']:8.2f} {f['tokens/s']:12,.0f} {f['patients/s']:11,.0f} "
          f"{f['GFLOP/token']:11.4f} {f['TFLOP/s']:8.3f} {f['MFU']:7.1%} {f['padding']:8.1%}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="tiny cohort and one epoch: checks that the script works")
    parser.add_argument("--presets", nargs="+", default=["small", "medium", "large"],
                        choices=list(PRESETS))
    parser.add_argument("--n-patients", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3, help="the median epoch is reported")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--precision", choices=["bf16", "no"], default="bf16",
                        help="the Accelerator's mixed_precision")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's bf16 peak, when not in the built-in table")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_patients, args.epochs, args.batch_size, args.max_length = 48, 1, 16, 64
    device = args.device
    accelerator = Accelerator(mixed_precision=args.precision, cpu=device == "cpu")
    if str(accelerator.device).split(":")[0] != device.split(":")[0]:
        raise SystemExit(f"--device {device}: the accelerator chose {accelerator.device}")
    peak, source = bf16_peak(device, args.peak_tflops)
    X, y, _ = make_synthetic_ehr(n_patients=args.n_patients, random_state=0)
    print(f"torch {torch.__version__}, device {accelerator.device}, precision {args.precision}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"bf16 peak {peak:.1f} TFLOP/s ({source})")
    print(f"cohort: {len(X)} patients, max_length {args.max_length}, batch {args.batch_size}, "
          f"{args.epochs} epoch(s){' (--quick: a smoke run, not a measurement)' if args.quick else ''}")
    if device.startswith("cuda"):
        cfg = PRESETS[args.presets[-1]]
        print("fused SDPA kernels: " + fused_attention_kernels(
            device, cfg["embedding_dim"], cfg["num_heads"], min(args.max_length, 256)))
    common = dict(max_epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length,
                  random_state=0, accelerator=accelerator, validation_fraction=0.0)
    print(f"\n{'run':<22} {'epoch s':>8} {'tokens/s':>12} {'patients/s':>11} {'GFLOP/token':>11} "
          f"{'TFLOP/s':>8} {'MFU':>7} {'padding':>8}")
    for name in args.presets:
        cfg = PRESETS[name]
        est = BEHRTSurvivalEstimator(**cfg, early_stopping=None, wide=None, **common).fit(X, y)
        tokens = est.tokenizer_.transform(X)
        report(f"survival {name}", epoch_figures(est, tokens, args.batch_size, est.net_.module_,
                                                 cfg["embedding_dim"], cfg["num_layers"], peak))
    cfg = PRESETS["medium"]
    pre = BEHRTPretrainer(**cfg, **common).fit(X)
    tokens = pre.tokenizer_.transform(X)
    report("pre-training medium", epoch_figures(pre, tokens, args.batch_size, pre.module_,
                                                cfg["embedding_dim"], cfg["num_layers"], peak))


if __name__ == "__main__":
    main()
