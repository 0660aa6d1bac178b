"""The results of a run: the summary over folds, the text table and the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .settings import CALIBRATION_GROUPS, SUMMARY_METRICS
from .uncertainty import INTERVAL_COLUMNS, c_intervals, reference_model


def _pooled_d_calibration_p(counts) -> float:
    from scipy import stats

    if not counts:
        return float("nan")
    return float(stats.chisquare(np.sum(counts, axis=0)).pvalue)


def summarize(rows: pd.DataFrame, d_calibration_counts=None, predictions=None) -> pd.DataFrame:
    """Mean and standard deviation over folds of every metric, one row per model.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per (model, fold), as :func:`run_benchmark` writes to ``results.csv``.
    d_calibration_counts : dict of str to list of ndarray, optional
        Each model's D-calibration bin counts per test fold
        (``evaluate(..., return_curves=True)["d_calibration_counts"]``).
    predictions : pandas.DataFrame, optional
        Every model's test-fold risks (``predictions.csv``): with them, the columns of
        :func:`~survbehrt.benchmark.uncertainty.c_intervals` (the mean fold C's 95 %
        stratified bootstrap interval, and the paired difference to the best count
        baseline, :func:`~survbehrt.benchmark.uncertainty.reference_model`) are added.

    Returns
    -------
    pandas.DataFrame
        Indexed by model, columns ``<metric>_mean`` / ``<metric>_sd`` for the metrics
        of ``SUMMARY_METRICS`` present in ``rows``, ``d_calibration_pooled_p`` (the
        D-calibration test on the counts summed over folds; NaN without counts) and
        ``folds``, and with ``predictions`` the interval columns; sorted by the mean
        Harrell's C.
    """
    metrics = [m for m in SUMMARY_METRICS if m in rows]
    grouped = rows.groupby("model", sort=False)[metrics]
    mean = grouped.mean().add_suffix("_mean")
    sd = grouped.std(ddof=1).add_suffix("_sd")
    table = pd.concat([mean, sd], axis=1)
    counts = d_calibration_counts or {}
    table["d_calibration_pooled_p"] = [_pooled_d_calibration_p(counts.get(m, [])) for m in table.index]
    table["folds"] = rows.groupby("model", sort=False)["fold"].nunique()
    if predictions is not None and len(predictions):
        intervals = c_intervals(predictions, reference=reference_model(table))
        table = table.join(intervals[list(INTERVAL_COLUMNS)])
    return table.sort_values("harrell_c_mean", ascending=False)


def _plus_minus(row, metric) -> str:
    sd = row[f"{metric}_sd"]
    return f"{row[f'{metric}_mean']:.3f} ± {0.0 if np.isnan(sd) else sd:.3f}"


def _value_or_dash(value, fmt) -> str:
    return "—" if np.isnan(value) else format(value, fmt)


def format_table(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width text table (for the terminal and the README).

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summarize`.

    Returns
    -------
    str
        A header, one line per model (mean ± standard deviation over folds, or the
        mean alone) and a line saying what the D-calibration column is; the
        competing-risks task's summary (indexed by model and cause) gets
        :func:`format_competing_table`.
    """
    if "cause" in summary.index.names:
        return format_competing_table(summary)
    lines = [f"{'model':<14}{'Harrell C':>16}{'Uno C':>16}{'IBS':>8}{'mean AUC':>10}"
             f"{'D-cal p*':>10}{'fit s':>9}{'pred s':>8}"]
    for name, r in summary.iterrows():
        lines.append(f"{name:<14}{_plus_minus(r, 'harrell_c'):>16}{_plus_minus(r, 'uno_c'):>16}"
                     f"{_value_or_dash(r['integrated_brier_mean'], '.3f'):>8}"
                     f"{_value_or_dash(r['mean_auc_mean'], '.3f'):>10}"
                     f"{_value_or_dash(r['d_calibration_pooled_p'], '.3f'):>10}"
                     f"{_value_or_dash(r['fit_time_mean'], '.1f'):>9}"
                     f"{_value_or_dash(r['predict_time_mean'], '.2f'):>8}")
    lines.append("* D-calibration test on the test-fold counts pooled over folds "
                 "(small p = miscalibrated); the other columns are means over folds.")
    if "harrell_c_lower" in summary:
        lines += ["", *_interval_lines(summary)]
    return "\n".join(lines)


def _interval(estimate, lower, upper, sign="") -> str:
    return f"{estimate:{sign}.3f} [{lower:{sign}.3f}, {upper:{sign}.3f}]"


def _interval_lines(summary: pd.DataFrame) -> list:
    """The mean fold C with its interval, and the paired difference to the reference model."""
    reference = summary["reference"].dropna()
    ref = reference.iloc[0] if len(reference) else None
    lines = [f"{'model':<14}{'Harrell C [95% CI]':>24}"
             f"{'' if ref is None else f'C - {ref} [95% CI]':>28}"]
    for name, r in summary.iterrows():
        diff = ("" if ref is None or np.isnan(r["harrell_c_diff"]) else "reference" if name == ref
                else _interval(r["harrell_c_diff"], r["harrell_c_diff_lower"],
                               r["harrell_c_diff_upper"], "+"))
        lines.append(f"{name:<14}"
                     f"{_interval(r['harrell_c_estimate'], r['harrell_c_lower'], r['harrell_c_upper']):>24}"
                     f"{diff:>28}")
    lines.append("Harrell C: mean of the test folds' C; 95% intervals of it and of the paired "
                 "difference: bootstrap within folds (subjects resampled, 1000 draws).")
    if ref is not None:
        lines.append(f"{ref}: the count baseline (CoxPH, RSF, GBS) with the highest mean C on "
                     "these same folds (a selection, which favours the reference).")
    return lines


def format_competing_table(summary: pd.DataFrame) -> str:
    """The competing task's summary as a fixed-width text table.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`~survbehrt.benchmark.competing.summarize_competing` (``attrs["horizon"]``, when set, is printed).

    Returns
    -------
    str
    """
    lines = [f"{'cause':<10}{'model':<16}{'C (Wolbers)':>16}{'C (IPCW)':>16}{'AUC':>8}"
             f"{'Brier':>8}{'calib p*':>10}{'fit s':>8}"]
    for (model, cause), r in summary.iterrows():
        lines.append(f"{cause:<10}{model:<16}{_plus_minus(r, 'c_index'):>16}"
                     f"{_plus_minus(r, 'c_ipcw'):>16}{r['auc_mean']:>8.3f}{r['brier_mean']:>8.3f}"
                     f"{_value_or_dash(r['calibration_pooled_p'], '.3f'):>10}"
                     f"{_value_or_dash(r['fit_time_mean'], '.1f'):>8}")
    horizon = summary.attrs.get("horizon")
    at = "" if horizon is None else f" at {horizon:.2f} years"
    lines.append(f"Each cause's cumulative incidence{at} is the risk; AUC and Brier at that "
                 f"horizon. * CIF calibration test ({CALIBRATION_GROUPS} risk groups against "
                 "Aalen-Johansen) on the test folds pooled (small p = miscalibrated).")
    return "\n".join(lines)


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None without matplotlib (plots are optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")  # nothing cut at the edges


def _panels(plt, n: int, ncols: int = 3):
    """``n`` axes on a grid of at most ``ncols`` columns (unused cells hidden)."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows + 0.4),
                             squeeze=False, layout="constrained")
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _one_legend(ax, i: int, **kwargs) -> None:
    """A legend on the first panel only (the others share its entries)."""
    if i == 0:
        ax.legend(**kwargs)
    elif ax.get_legend() is not None:
        ax.get_legend().remove()


def _fold_figures(plt, models, curves, X_te, y_te) -> dict:
    """The first fold's figures by file name: calibration, survival curves, AUC, Brier."""
    from ..metrics import calibration_table
    from ..plotting import (
        format_years,
        plot_auc_curves,
        plot_brier_curves,
        plot_calibration,
        plot_survival_curves,
    )

    figures = {}
    time_name = y_te.dtype.names[1]
    horizon = float(np.median(y_te[time_name]))
    fig, axes = _panels(plt, len(models))
    for i, (ax, (name, model)) in enumerate(zip(axes, models.items())):
        surv = np.array([fn(horizon) for fn in model.predict_survival_function(X_te)])
        plot_calibration(calibration_table(y_te, surv, horizon), ax=ax)
        ax.set_title(name, fontsize=10)
        _one_legend(ax, i, fontsize=8, loc="upper left")
    fig.suptitle(f"Calibration at {format_years(horizon)} (the median test time), fold 0: "
                 f"10 risk groups, Kaplan-Meier 95% intervals")
    figures["calibration.png"] = fig

    fig, axes = _panels(plt, len(models))
    for i, (ax, (name, model)) in enumerate(zip(axes, models.items())):
        fns = model.predict_survival_function(X_te.iloc[:4])
        plot_survival_curves(fns, y=y_te, labels=[f"patient {i}" for i in range(len(fns))], ax=ax)
        ax.set_title(name, fontsize=10)
        _one_legend(ax, i, fontsize=8, loc="lower left")
    fig.suptitle("Predicted survival of four test patients and the test fold's Kaplan-Meier "
                 "curve (fold 0)")
    figures["survival_curves.png"] = fig

    for file, plot, title in (
        ("auc.png", plot_auc_curves, "Time-dependent AUC on the test fold (fold 0)"),
        ("brier.png", plot_brier_curves, "Brier score on the test fold (fold 0); lower is better"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        plot(curves, ax=ax)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the lines, not on them
        ax.set_title(title)
        figures[file] = fig
    return figures


def _plots(out, models, curves, X_te, y_te) -> set:
    """Write the first fold's figures; the files written (none without matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return set()
    figures = _fold_figures(plt, models, curves, X_te, y_te)
    for file, fig in figures.items():
        _save(fig, out / file)
    plt.close("all")
    return set(figures)


def _cindex_figure(plt, rows):
    """Harrell's C of every model on every test fold, the mean marked."""
    order = rows.groupby("model")["harrell_c"].mean().sort_values().index
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(order) + 1.4), layout="constrained")
    for i, name in enumerate(order):
        vals = rows.loc[rows["model"] == name, "harrell_c"]
        ax.scatter(vals, np.full(len(vals), i), s=14, alpha=0.6)
        ax.plot([vals.mean()] * 2, [i - 0.3, i + 0.3], color="black")
    ax.axvline(0.5, ls="--", color="grey", lw=1)
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("Harrell's C on the test folds (dots: folds; bar: mean; dashed: chance)")
    ax.set_title("Discrimination on each test fold")
    return fig


def _plot_cindex(out, rows) -> set:
    plt = _pyplot()
    if plt is None:
        return set()
    fig = _cindex_figure(plt, rows)
    _save(fig, out / "cindex.png")
    plt.close(fig)
    return {"cindex.png"}
