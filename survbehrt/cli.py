"""Command line: ``survbehrt benchmark ...`` (also ``python -m survbehrt``)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``survbehrt`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    from .benchmark import BASELINES, BEHRT_MODELS

    parser = argparse.ArgumentParser(prog="survbehrt", description="BEHRT survival models for EHR.")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "benchmark",
        help="compare BEHRT with Cox / RSF / boosting baselines on the same folds",
        description="Cross-validated comparison of BEHRT survival models (full, LoRA and frozen "
        "fine-tuning of one pretrainer per fold) with Cox, Random Survival Forest and "
        "gradient-boosted survival baselines on code counts.",
    )
    bench.add_argument("--dataset", default="synthetic",
                       help="'synthetic' (default), 'synthetic-counts', 'synthea-sample' (the "
                            "vendored Synthea sample, folds grouped by patient), or a folder "
                            "with events.(parquet|csv) and labels.(parquet|csv)")
    bench.add_argument("--n-patients", type=int, default=4000, help="synthetic cohort size")
    bench.add_argument("--folds", type=int, default=5)
    bench.add_argument("--models", nargs="+", default=list(BASELINES + BEHRT_MODELS),
                       choices=list(BASELINES + BEHRT_MODELS), metavar="MODEL",
                       help=f"subset of {' '.join(BASELINES + BEHRT_MODELS)}")
    bench.add_argument("--loss", default="hybrid", choices=["nll", "ranking", "hybrid"],
                       help="loss of the BEHRT variants")
    bench.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    bench.add_argument("--pretrain-epochs", type=int, default=None)
    bench.add_argument("--out", default="benchmark_results", help="output folder")
    bench.add_argument("--quick", action="store_true", help="a smoke run (< 3 minutes)")
    bench.add_argument("--quiet", action="store_true", help="no progress output")
    bench.add_argument("--no-plots", action="store_true")
    bench.add_argument("--random-state", type=int, default=0)
    bench.add_argument("--n-jobs", type=int, default=1, help="jobs for the forest baseline")
    return parser


def main(argv=None) -> int:
    """Entry point of the ``survbehrt`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0, or 130 when a benchmark was interrupted (its finished folds
        are saved).
    """
    args = build_parser().parse_args(argv)
    if args.command == "benchmark":
        from .benchmark import BenchmarkSettings, format_table, run_benchmark

        settings = BenchmarkSettings(
            dataset=args.dataset, n_patients=args.n_patients, folds=args.folds, models=args.models,
            loss=args.loss, epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
            quick=args.quick, random_state=args.random_state, n_jobs=args.n_jobs,
        )
        log = (lambda *a, **k: None) if args.quiet else print
        summary = run_benchmark(settings, out=args.out, quiet=args.quiet,
                                plots=not args.no_plots, log=log)
        print(format_table(summary))
        print(f"\nresults: {args.out}/results.csv, results.json and PNG plots")
        return 0 if summary.attrs.get("complete", True) else 130  # 130: interrupted
    return 2  # pragma: no cover (argparse requires a command)


if __name__ == "__main__":
    sys.exit(main())
