"""MEDS conversion speed: from_events from a parquet file, 1 M to 50 M events.

Run: ``python benchmarks/meds_speed.py [--sizes 1 5 10 25 50] [--tokenize] [--shuffle]``.

The vendored MIMIC-IV demo (100 patients, ~9,000 events each) is replicated with new
subject ids up to each size (millions of rows, static and birth rows included) and
written to parquet, sorted by subject and time as MEDS shards are (``--shuffle``: in
random order, which costs the converter a sort). Each size then runs in a fresh process:
``from_events(path, labels)`` with one prediction time per subject at its last event (so
every event is converted), then, with ``--tokenize``, ``EHRTokenizer`` fit and transform
on X (static codes and value bins included; ``--max-length`` tokens per row, the default
keeps every event).
Peak memory is the process's peak resident size (VmHWM, reset just before the
conversion) above its size then;
"X MiB" is the resident size left after it (an upper bound on X: the allocator keeps
some freed memory). "cpu s" is the process's CPU time (all threads), a steadier
measure than the wall clock on a shared machine.

With ``--tokenize`` each size then runs conversion and tokenization a second time in
the same process and prints its wall time (memory already touched once).

What a fresh page costs here: a plain 4 KiB page about 1.3 us of system time (400 MiB:
0.13 s); a huge page, when the kernel must compact memory to find one (transparent huge
pages on "madvise", defragmentation on "madvise": a common default), 3 to 5 s per 400 MiB.
numpy advises huge pages for every array of 4 MiB or more, and pyarrow's default pool
(mimalloc) backs its large buffers with them. So ``from_events`` and ``EHRTokenizer``
switch numpy's advice off for the duration of their calls
(``survbehrt.data._pages.plain_pages``, numpy's own ``NUMPY_MADVISE_HUGEPAGE`` switch,
restored after), and the library avoids pyarrow allocations at cohort size (e.g.
``combine_chunks``, pyarrow compute kernels on list offsets), reading Arrow buffers in
place. ``--numpy-advice`` runs with the advice left on, to show what it costs.

The issue's target: >= 5 M events/s on 2 cores for conversion + tokenization, linear
from 1 M to 50 M events, peak memory <= 3x the final token arrays.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    """This process's peak resident size (VmHWM: its own, reset by :func:`_reset_peak`).

    Not ``getrusage``'s ``ru_maxrss``: that survives the exec of a child and starts at
    the parent's size, which here holds the whole replicated table.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    """Reset the peak resident size to the current size (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def write_table(n_events: int, folder: Path, shuffle: bool, seed: int = 0) -> tuple[Path, Path]:
    """Replicate the demo to ``n_events`` rows; write events and labels parquet files."""
    import polars as pl

    from survbehrt.datasets import load_mimic_iv_demo

    demo = load_mimic_iv_demo("polars").drop("table")
    copies = -(-n_events // demo.height)
    span = demo["subject_id"].max() + 1
    events = pl.concat(
        [demo.with_columns(pl.col("subject_id") + k * span) for k in range(copies)]
    ).head(n_events)
    if shuffle:
        events = events.sample(fraction=1.0, shuffle=True, seed=seed)
    labels = events.group_by("subject_id").agg(pl.col("time").max().alias("prediction_time"))
    labels = labels.filter(pl.col("prediction_time").is_not_null())
    path, label_path = folder / f"events_{n_events}.parquet", folder / f"labels_{n_events}.parquet"
    events.write_parquet(path)
    labels.write_parquet(label_path)
    return path, label_path


#: The stages timed apart: (module, attribute, label). Each is wrapped so that its CPU
#: time is added to its label's total (a stage's time excludes the stages inside it).
STAGES = (
    ("survbehrt.data.events", None, "read_events", "read"),
    ("survbehrt.data.events", None, "_cohort", "rows"),
    ("survbehrt.data.events", None, "_build_frame", "build X"),
    ("survbehrt.data.tokenizer", None, "flatten_ehr", "flatten"),
    ("survbehrt.data.tokenizer", "EHRTokenizer", "_fit_flat", "fit"),
    ("survbehrt.data.tokenizer", "EHRTokenizer", "_tokenize", "tokenize"),
)


def _usage() -> np.ndarray:
    """User CPU s, system CPU s and minor page faults of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return np.array([r.ru_utime, r.ru_stime, r.ru_minflt], dtype=np.float64)


def _time_stages() -> dict:
    """Wrap the STAGES in timers; return the dict their (user s, sys s, faults) add up in."""
    import importlib

    totals = {label: np.zeros(3) for *_, label in STAGES}
    stack = []

    def wrap(func, label):
        def timed(*args, **kwargs):
            stack.append(np.zeros(3))  # usage of nested stages
            start = _usage()
            try:
                return func(*args, **kwargs)
            finally:
                spent = _usage() - start
                inner = stack.pop()
                totals[label] += spent - inner
                if stack:
                    stack[-1] += spent
        return timed

    for module, cls, name, label in STAGES:
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        setattr(owner, name, wrap(getattr(owner, name), label))
    return totals


def child(path: str, labels: str, tokenize: bool, max_length: int, values: bool) -> dict:
    """One measurement in this (fresh) process."""
    import polars as pl

    from survbehrt.data import EHRTokenizer, from_events

    stages = _time_stages()

    prediction_times = pl.read_parquet(labels)
    # Warm up on a few rows: thread pools and first calls are not per-event costs.
    head = pl.read_parquet(path, n_rows=1000)
    small = from_events(head, prediction_times.filter(pl.col("subject_id") == head["subject_id"][0]))
    if tokenize:
        EHRTokenizer(max_length=max_length).fit_transform(small)
    del small
    base = _rss_mib()
    _reset_peak()
    for usage in stages.values():
        usage[:] = 0
    c0, t0 = time.process_time(), time.perf_counter()
    X = from_events(path, prediction_times, value_col=None if values else False)
    c1, t1 = time.process_time(), time.perf_counter()
    peak_convert = _peak_mib() - base
    counts = X.attrs["event_counts"]
    out = {
        "events": counts["events"],
        "rows": len(X),
        "used": counts["used"],
        "convert_s": t1 - t0,
        "convert_cpu_s": c1 - c0,
        "peak_convert_mib": peak_convert,
        "x_rss_mib": _rss_mib() - base,
    }
    if tokenize:
        c2, t2 = time.process_time(), time.perf_counter()
        tokenizer = EHRTokenizer(max_length=max_length)
        tokens = tokenizer.fit_transform(X)  # static codes and value bins included
        c3, t3 = time.process_time(), time.perf_counter()
        out.update(
            tokenize_s=t3 - t2,
            tokenize_cpu_s=c3 - c2,
            tokens=int(tokens.n_tokens),
            token_mib=tokens.nbytes() / 2**20,
            peak_total_mib=_peak_mib() - base,
        )
    out["stages"] = {label: usage.tolist() for label, usage in stages.items()}
    if tokenize:
        # The same work again in this process: memory the first run touched is already
        # backed (see the module docstring for what a fresh page costs).
        del X, tokens, tokenizer
        gc.collect()
        t4 = time.perf_counter()
        X = from_events(path, prediction_times, value_col=None if values else False)
        t5 = time.perf_counter()
        EHRTokenizer(max_length=max_length).fit_transform(X)
        out.update(warm_convert_s=t5 - t4, warm_tokenize_s=time.perf_counter() - t5)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 5, 10, 25, 50],
                        help="millions of events (default: 1 5 10 25 50)")
    parser.add_argument("--tokenize", action="store_true", help="also time EHRTokenizer")
    parser.add_argument("--max-length", type=int, default=40_000)
    parser.add_argument("--shuffle", action="store_true", help="unsorted input")
    parser.add_argument("--no-values", action="store_true",
                        help="leave the numeric values out of X (value_col=False)")
    parser.add_argument("--numpy-advice", action="store_true",
                        help="leave numpy's huge-page advice on (NUMPY_MADVISE_HUGEPAGE=1)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.tokenize, args.max_length, not args.no_values)))
        return
    header = (
        f"{'events':>12} {'rows':>6} {'convert s':>9} {'cpu s':>6} {'M ev/s':>7} "
        f"{'peak MiB':>9} {'X MiB':>7}"
    )
    if args.tokenize:
        header += f" {'tok s':>7} {'total M ev/s':>12} {'tokens MiB':>10} {'peak/tokens':>11}"
    print(header)
    stage_lines, warm_lines = [], []
    # The library's own setting unless asked otherwise: no inherited numpy switch.
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if args.numpy_advice:
        env["NUMPY_MADVISE_HUGEPAGE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path, labels = write_table(int(size * 1e6), Path(tmp), args.shuffle)
            cmd = [sys.executable, __file__, "--child", str(path), str(labels),
                   "--max-length", str(args.max_length)] + (["--tokenize"] if args.tokenize else [])
            cmd += ["--no-values"] if args.no_values else []
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, env=env,
                                               text=True).stdout.splitlines()[-1])
            path.unlink()
            line = (
                f"{result['events']:>12,} {result['rows']:>6,} {result['convert_s']:>9.2f} "
                f"{result['convert_cpu_s']:>6.2f} "
                f"{result['events'] / result['convert_s'] / 1e6:>7.2f} "
                f"{result['peak_convert_mib']:>9.0f} {result['x_rss_mib']:>7.0f}"
            )
            if args.tokenize:
                total = result["convert_s"] + result["tokenize_s"]
                line += (
                    f" {result['tokenize_s']:>7.2f} {result['events'] / total / 1e6:>12.2f} "
                    f"{result['token_mib']:>10.0f} "
                    f"{result['peak_total_mib'] / result['token_mib']:>11.1f}"
                )
            print(line, flush=True)
            if args.tokenize:
                warm = result["warm_convert_s"] + result["warm_tokenize_s"]
                warm_lines.append(
                    f"{result['events']:>12,} {result['warm_convert_s']:>9.2f} "
                    f"{result['warm_tokenize_s']:>7.2f} {result['events'] / warm / 1e6:>12.2f}")
            stage_lines.append(
                f"{result['events']:>12,} "
                + " ".join(f"{u:>5.2f}+{sy:<4.2f}" for u, sy, _ in result["stages"].values())
                + f" {sum(f for *_, f in result['stages'].values()) * 4 / 1024:>9,.0f}"
                + f" {result['events'] / sum(map(sum, (u[:2] for u in result['stages'].values()))) / 1e6:>10.2f}"
            )
    if args.tokenize:
        print("\nThe same conversion and tokenization run again in the same process "
              "(memory already touched once):")
        print(f"{'events':>12} {'convert s':>9} {'tok s':>7} {'total M ev/s':>12}")
        print("\n".join(warm_lines))
    print("\nCPU seconds by stage, user+system (each without the stages inside it); "
          "MiB touched: minor page faults x 4 KiB:")
    print(f"{'events':>12} " + " ".join(f"{label:>10}" for *_, label in STAGES)
          + f" {'MiB touched':>9} {'M ev/cpu s':>10}")
    print("\n".join(stage_lines))


if __name__ == "__main__":
    main()
