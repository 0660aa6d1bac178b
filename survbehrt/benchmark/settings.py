"""What a benchmark run does: the model and dataset names, :class:`BenchmarkSettings`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

BASELINES = ("CoxPH", "Cox-age", "RSF", "GBS")
#: The synthetic datasets and the make_synthetic_ehr scenario each one draws.
SYNTHETIC = {"synthetic": "sequence", "synthetic-counts": "counts",
             "synthetic-latent": "latent", "synthetic-synonyms": "synonyms"}
#: Datasets whose ``y`` has competing causes: they run the competing-risks task
#: (:mod:`survbehrt.benchmark.competing`).
COMPETING = ("synthetic-competing",)
DATASETS = (*SYNTHETIC, "synthea-sample", *COMPETING)
#: Risk groups of the competing task's calibration test of the incidence.
CALIBRATION_GROUPS = 10
BEHRT_MODELS = ("BEHRT-full", "BEHRT-lora", "BEHRT-frozen")
ORACLE = "oracle"
METRICS = ("harrell_c", "uno_c", "integrated_brier", "mean_auc", "d_calibration_p",
           "fit_time", "predict_time")
#: Per-fold columns averaged in the summary (a mean of p-values would mean nothing: the
#: D-calibration test is pooled over folds instead, see :mod:`survbehrt.benchmark`).
SUMMARY_METRICS = ("harrell_c", "uno_c", "integrated_brier", "mean_auc", "fit_time",
                   "predict_time", "pretrain_time")
#: Every file a run may write into its output folder.
OUTPUT_FILES = ("results.csv", "summary.csv", "results.json", "predictions.csv",
                "cindex.png", "calibration.png",
                "survival_curves.png", "auc.png", "brier.png")


@dataclass
class BenchmarkSettings:
    """What one benchmark run does (the CLI's options).

    Parameters
    ----------
    dataset : str, default="synthetic"
        ``"synthetic"`` (risk depends on order, recency and tempo), ``"synthetic-counts"``
        (risk from code counts only), ``"synthetic-latent"`` (a hidden disease stage),
        ``"synthetic-synonyms"`` (order, recency and tempo of concepts spread over rare
        synonym codes; see :func:`survbehrt.datasets.make_synthetic_ehr` for all four),
        ``"synthea-sample"`` (the vendored Synthea sample:
        death within 10 years of a landmark, several landmarks per patient; see
        :func:`survbehrt.datasets.load_synthea_sample`), ``"synthetic-competing"`` (two
        competing causes, the competing-risks task: see
        :mod:`survbehrt.benchmark.competing`) or a path to a folder holding
        ``events`` and ``labels`` tables (parquet or CSV; see :func:`load_benchmark_data`).
    n_patients : int, default=4000
        Size of a synthetic cohort.
    folds : int, default=5
    models : list of str, optional
        Subset of ``BASELINES + BEHRT_MODELS`` (default all); the oracle row is added
        whenever the true risk is known.
    loss : {"nll", "ranking", "hybrid"}, default="nll"
        Loss of the BEHRT variants.
    epochs : int, optional
        Fine-tuning epochs (default 30, LoRA 4/3 of it; 10 with ``quick``), with early
        stopping on the validation C-index.
    pretrain_epochs : int, optional
        Pre-training epochs (default 15; 5 with ``quick``).
    quick : bool, default=False
        A smoke run: 1500 patients, 2 folds, fewer epochs and trees, no early stopping.
    random_state : int, default=0
    n_jobs : int, default=1
        Jobs for the forest baseline.
    device : str, default="cpu"
        torch device of the BEHRT models and the pretrainer (``"cuda"``, ``"auto"``).
    n_threads : int, optional
        torch threads of the BEHRT models and the pretrainer (default: torch's).
    """

    dataset: str = "synthetic"
    n_patients: int = 4000
    folds: int = 5
    models: list = field(default_factory=lambda: list(BASELINES + BEHRT_MODELS))
    loss: str = "nll"
    epochs: int | None = None
    pretrain_epochs: int | None = None
    quick: bool = False
    random_state: int = 0
    n_jobs: int = 1
    device: str = "cpu"
    n_threads: int | None = None

    def resolved(self) -> BenchmarkSettings:
        """A copy with the quick-mode and epoch defaults filled in.

        Returns
        -------
        BenchmarkSettings
        """
        s = BenchmarkSettings(**asdict(self))
        if s.quick:
            s.n_patients = min(s.n_patients, 1500)
            s.folds = min(s.folds, 2)
        if s.epochs is None:
            # quick: 10 keeps the smoke run of both datasets under two minutes on two
            # cores (112 s measured; 140 s with 15) and BEHRT still learns on the
            # synthetic cohort (LoRA 0.708 against Cox 0.671)
            s.epochs = 10 if s.quick else 30
        if s.pretrain_epochs is None:
            s.pretrain_epochs = 5 if s.quick else 15
        unknown = set(s.models) - set(BASELINES + BEHRT_MODELS)
        if unknown:
            raise ValueError(
                f"unknown models {sorted(unknown)}; choose from {list(BASELINES + BEHRT_MODELS)}."
            )
        return s
