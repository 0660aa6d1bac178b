"""Command line: ``survbehrt benchmark ...`` (also ``python -m survbehrt``)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]

DEFAULT_DATASETS = ("synthetic", "synthea-sample")
QUICK_NOTE = (
    "smoke run (--quick): small cohort, 2 folds, few epochs, no early stopping; it shows "
    "that everything runs, and its numbers say little about the models: run without "
    "--quick for the measured comparison"
)

DATASET_HELP = (
    "'synthetic' (risk from the order, recency and tempo of codes), 'synthetic-counts' "
    "(risk from code counts only), 'synthetic-latent' (a hidden disease stage), "
    "'synthetic-synonyms' (order, recency and tempo of concepts spread over rare synonym "
    "codes), 'synthea-sample' (the vendored Synthea sample, folds "
    "grouped by patient), 'synthetic-competing' (two competing causes: the competing-risks "
    "task, per-cause scores of cause-specific Cox, Aalen-Johansen and the oracle), or a folder holding two tables, each .parquet or .csv: "
    "events.* with columns subject_id, time, code (MEDS style, one MEDS_BIRTH row per "
    "subject; time a date or years) and labels.* with columns subject_id, prediction_time, "
    "event (1 = event, 0 = censored), time (years from prediction_time to the event or "
    "censoring) and optionally true_risk"
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _folds(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"cross-validation needs at least 2 folds, got {text}")
    return value


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults in --help, except None and lists (the help says them) and off flags."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or isinstance(action.default, list):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``survbehrt`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    from . import __version__
    from .benchmark import BASELINES, BEHRT_MODELS

    formatter = _Formatter
    parser = argparse.ArgumentParser(prog="survbehrt", description="BEHRT survival models for EHR.",
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "benchmark",
        formatter_class=formatter,
        help="compare BEHRT with Cox / RSF / boosting baselines on the same folds",
        description="Cross-validated comparison of BEHRT survival models (full, LoRA and frozen "
        "fine-tuning of one pretrainer per fold) with Cox, Random Survival Forest and "
        "gradient-boosted survival baselines on code counts. Writes results.csv (one row per "
        "model and fold), summary.csv (mean and standard deviation over folds of every metric), "
        "results.json and PNG plots into --out.",
    )
    models = list(BASELINES + BEHRT_MODELS)
    bench.add_argument("--dataset", nargs="+", default=list(DEFAULT_DATASETS), metavar="DATASET",
                       help=DATASET_HELP + ". Several datasets run one after another, each into "
                       "its own subfolder of --out (default: synthetic synthea-sample)")
    bench.add_argument("--n-patients", type=_positive_int, default=4000,
                       help="size of a synthetic cohort (ignored for a folder)")
    bench.add_argument("--folds", type=_folds, default=5,
                       help="cross-validation folds (stratified on the event)")
    bench.add_argument("--models", nargs="+", default=models, choices=models, metavar="MODEL",
                       help=f"models to run (default: all): {' '.join(models)}")
    bench.add_argument("--loss", default="nll", choices=["nll", "ranking", "hybrid"],
                       help="loss of the BEHRT variants")
    bench.add_argument("--epochs", type=_positive_int, default=None,
                       help="fine-tuning epochs of the BEHRT variants (default 30, LoRA 4/3 of "
                            "it; 10 with --quick)")
    bench.add_argument("--pretrain-epochs", type=_positive_int, default=None,
                       help="pre-training epochs of the per-fold pretrainer (default 15; 5 with "
                            "--quick)")
    bench.add_argument("--out", default="benchmark_results",
                       help="output folder; must not exist or be empty (see --overwrite)")
    bench.add_argument("--overwrite", action="store_true",
                       help="write into a non-empty --out, replacing an earlier run's files")
    bench.add_argument("--quick", action="store_true",
                       help="a smoke run: at most 1500 patients and 2 folds, fewer epochs and "
                            "trees, no early stopping")
    bench.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    bench.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    bench.add_argument("--random-state", type=int, default=0,
                       help="seed of the cohort, the folds and every model")
    bench.add_argument("--device", default="cpu",
                       help="torch device of the BEHRT models: cpu, cuda, cuda:N or auto")
    bench.add_argument("--n-threads", type=_positive_int, default=None,
                       help="torch threads of the BEHRT models (default: torch's choice)")
    bench.add_argument("--n-jobs", type=int, default=1,
                       help="parallel jobs of the Random Survival Forest baseline")
    return parser


def closing_lines(out, summary, plots: bool) -> list[str]:
    """What a finished (or interrupted) run tells the user it wrote.

    Parameters
    ----------
    out : str or path-like
        The output folder.
    summary : pandas.DataFrame
        From :func:`~survbehrt.benchmark.run_benchmark` (its ``attrs["files"]``).
    plots : bool
        Whether plots were asked for.

    Returns
    -------
    list of str
    """
    files = summary.attrs.get("files", [])
    lines = [f"results in {out}/: {', '.join(files)}"]
    if plots and not any(f.endswith(".png") for f in files):
        lines.append("no plots: matplotlib is not installed (pip install 'survbehrt[plot]')")
    if not summary.attrs.get("complete", True):
        lines.append("the run was interrupted: these hold the finished folds only")
    return lines


def main(argv=None) -> int:
    """Entry point of the ``survbehrt`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0; 2 for a refused output folder; 130 when a benchmark was
        interrupted (its finished folds are saved).
    """
    args = build_parser().parse_args(argv)
    if args.command == "benchmark":
        from pathlib import Path

        from .benchmark import BenchmarkSettings, format_table, run_benchmark

        datasets = list(args.dataset)
        status = 0
        if args.quick:
            print(QUICK_NOTE)
        for dataset in datasets:
            settings = BenchmarkSettings(
                dataset=dataset, n_patients=args.n_patients, folds=args.folds,
                models=args.models, loss=args.loss, epochs=args.epochs,
                pretrain_epochs=args.pretrain_epochs, quick=args.quick,
                random_state=args.random_state, n_jobs=args.n_jobs, device=args.device,
                n_threads=args.n_threads,
            )
            out = args.out if len(datasets) == 1 else str(Path(args.out) / Path(dataset).name)
            log = (lambda message: None) if args.quiet else None  # None: tqdm.write
            if len(datasets) > 1:
                print(f"== {dataset}")
            try:
                summary = run_benchmark(settings, out=out, quiet=args.quiet,
                                        plots=not args.no_plots, log=log,
                                        overwrite=args.overwrite)
            except FileExistsError as exc:
                print(f"survbehrt benchmark: error: {exc}", file=sys.stderr)
                return 2
            print(format_table(summary))
            print()
            print("\n".join(closing_lines(out, summary, plots=not args.no_plots)))
            if not summary.attrs.get("complete", True):
                return 130  # interrupted: the finished folds are saved
        return status
    return 2  # pragma: no cover (argparse requires a command)


if __name__ == "__main__":
    sys.exit(main())
