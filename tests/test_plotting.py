"""Tests for survbehrt.plotting and the benchmark's figures: every plot renders to a PNG,
with the axis labels and titles it should have, and its labels inside the figure."""

import numpy as np
import pytest
from sksurv.util import Surv

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from survbehrt.metrics import calibration_table, evaluate  # noqa: E402
from survbehrt.plotting import (  # noqa: E402
    format_years,
    plot_attribution_timeline,
    plot_auc_curves,
    plot_brier_curves,
    plot_calibration,
    plot_risk_trajectory,
    plot_survival_curves,
    plot_top_codes,
    plot_training_history,
)
from survbehrt.survival import TimeGrid, survival_curves, survival_from_logits  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    t = rng.exponential(3.0, 200)
    c = rng.uniform(0, 8, 200)
    y = Surv.from_arrays(t <= c, np.minimum(t, c))
    grid = TimeGrid(6).fit(y)
    logits = rng.normal(-1.5, 0.4, size=(200, grid.n_bins_))
    surv = survival_from_logits(logits)
    funcs = survival_curves(logits, grid.cuts_, grid.max_time_)
    return y, grid, surv, funcs


def _save_png(ax, path):
    assert isinstance(ax, matplotlib.axes.Axes)
    ax.figure.savefig(path, format="png")
    content = path.read_bytes()
    assert len(content) > len(PNG_MAGIC)
    assert content.startswith(PNG_MAGIC)


def test_plot_survival_curves(data, tmp_path):
    y, _, _, funcs = data
    ax = plot_survival_curves(funcs[:3], y=y, labels=["a", "b", "c"])
    assert len(ax.get_lines()) == 4
    _save_png(ax, tmp_path / "curves.png")
    with pytest.raises(ValueError):
        plot_survival_curves(funcs[:3], labels=["a"])


def _inside_figure(ax, artist):
    """True when ``artist`` (e.g. an axis label) is drawn entirely inside its figure."""
    fig = ax.figure
    fig.canvas.draw()
    box = artist.get_window_extent(fig.canvas.get_renderer())
    width, height = fig.canvas.get_width_height()
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height


def test_plot_calibration_table_and_args(data, tmp_path):
    y, grid, surv, _ = data
    horizon = grid.cuts_[3]
    table = calibration_table(y, surv[:, 2], horizon, n_groups=5)
    ax = plot_calibration(table)
    assert ax.get_xlabel() == f"predicted survival at {format_years(horizon)}"
    assert ax.get_ylabel() == "observed survival (Kaplan-Meier)"
    assert _inside_figure(ax, ax.yaxis.label) and _inside_figure(ax, ax.xaxis.label)
    _save_png(ax, tmp_path / "calib.png")
    fig, ax = plt.subplots()
    out = plot_calibration((y, surv[:, 2], horizon), ax=ax, n_groups=4)
    assert out is ax
    _save_png(out, tmp_path / "calib_args.png")


def test_horizon_is_formatted():
    y = Surv.from_arrays([True, False, True, True], [1.0, 2.0, 2.5, 4.0])
    table = calibration_table(y, [0.9, 0.8, 0.5, 0.3], 2.18771, n_groups=2)
    assert plot_calibration(table).get_xlabel() == "predicted survival at 2.2 years"
    assert [format_years(t) for t in (2.18771, 1.0, 0.96, 10.0)] == [
        "2.2 years", "1 year", "1 year", "10 years"]


def test_plot_risk_trajectory(tmp_path):
    ax = plot_risk_trajectory([0.1, 0.2, 0.5], [60.0, 61.5, 63.0])
    assert len(ax.get_lines()) == 1
    _save_png(ax, tmp_path / "traj.png")
    ax = plot_risk_trajectory(
        [[0.1, 0.3], [0.2, 0.1, 0.4]], [[50, 52], [40, 41, 45]], labels=["p1", "p2"]
    )
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError):
        plot_risk_trajectory([0.1, 0.2], [60.0])


def test_plot_training_history(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 2.0, "valid_loss": 2.1},
        {"epoch": 2, "train_loss": 1.5, "valid_loss": 1.7},
        {"epoch": 3, "train_loss": 1.2},
    ]
    ax = plot_training_history(history)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["train_loss"].get_xdata()) == [1, 2, 3]
    assert list(lines["valid_loss"].get_ydata()) == [2.1, 1.7]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "loss")
    assert not hasattr(ax, "right_ax")
    _save_png(ax, tmp_path / "history.png")


def test_plot_training_history_names_the_axis_after_the_series(tmp_path):
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_nll": 1.5 / e, "valid_cindex": 0.5 + e / 20}
               for e in (1, 2, 3)]
    ax = plot_training_history(history, keys=("valid_cindex",))
    assert ax.get_ylabel() == "C-index"
    # mixed: losses on the left, the C-index on a second axis on the right
    ax = plot_training_history(history, keys=("train_loss", "train_nll", "valid_cindex"))
    assert ax.get_ylabel() == "loss" and ax.right_ax.get_ylabel() == "C-index"
    assert [line.get_label() for line in ax.get_lines()] == ["train_loss", "train_nll"]
    assert [line.get_label() for line in ax.right_ax.get_lines()] == ["valid_cindex"]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == [
        "train_loss", "train_nll", "valid_cindex"]
    assert _inside_figure(ax, ax.right_ax.yaxis.label)
    _save_png(ax, tmp_path / "mixed.png")
    with pytest.raises(ValueError, match="at most two kinds"):
        plot_training_history(history, keys=("train_loss", "valid_cindex", "dur"))


@pytest.fixture(scope="module")
def curves():
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 1))
    t = rng.exponential(np.exp(-x[:, 0]))
    c = rng.uniform(0, 3, 300)
    y = Surv.from_arrays(t <= c, np.minimum(t, c))
    cox = CoxPHSurvivalAnalysis().fit(x[:200], y[:200])
    return {"Cox": evaluate(cox, x[200:], y[200:], y[:200], return_curves=True)}


def test_auc_and_brier_curves(curves, tmp_path):
    ax = plot_auc_curves(curves)
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "Cox")
    np.testing.assert_array_equal(line.get_xdata(), curves["Cox"]["times"])
    np.testing.assert_array_equal(line.get_ydata(), curves["Cox"]["auc"])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("years after prediction time",
                                                   "time-dependent AUC")
    chance = next(ln for ln in ax.get_lines() if ln.get_label() == "chance")
    assert list(chance.get_ydata()) == [0.5, 0.5]
    _save_png(ax, tmp_path / "auc.png")
    ax = plot_brier_curves(curves["Cox"])  # one result, no legend needed
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), curves["Cox"]["brier"])
    assert ax.get_ylabel() == "Brier score" and ax.get_legend() is None
    _save_png(ax, tmp_path / "brier.png")
    with pytest.raises(ValueError, match="return_curves=True"):
        plot_auc_curves({"Cox": {"harrell_c": 0.7}})


def test_benchmark_figures_titles_and_labels(curves):
    import pandas as pd
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from survbehrt.benchmark import _cindex_figure, _fold_figures

    rng = np.random.default_rng(2)
    X = pd.DataFrame({"x": rng.normal(size=120)})
    y = Surv.from_arrays(rng.random(120) < 0.6, rng.exponential(2.0, 120))
    models = {name: CoxPHSurvivalAnalysis(alpha=a).fit(X[:80], y[:80])
              for name, a in (("Cox", 0.0), ("ridge Cox", 10.0))}
    figures = _fold_figures(plt, models, {"Cox": curves["Cox"]}, X[80:], y[80:])
    assert set(figures) == {"calibration.png", "survival_curves.png", "auc.png", "brier.png"}
    horizon = format_years(float(np.median(y[80:]["time"])))
    calibration = figures["calibration.png"]
    suptitle = calibration._suptitle.get_text()  # Figure.get_suptitle needs matplotlib 3.8
    assert suptitle.startswith(f"Calibration at {horizon} (the median test time)")
    axes = [ax for ax in calibration.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Cox", "ridge Cox"]
    assert all(ax.get_xlabel() == f"predicted survival at {horizon}" for ax in axes)
    assert axes[0].get_legend() is not None and axes[1].get_legend() is None  # one legend
    assert all(_inside_figure(ax, ax.yaxis.label) for ax in axes)
    survival = [ax for ax in figures["survival_curves.png"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in survival] == ["Cox", "ridge Cox"]
    assert survival[0].get_ylabel() == "survival probability"
    auc_ax = figures["auc.png"].axes[0]
    assert auc_ax.get_title() == "Time-dependent AUC on the test fold (fold 0)"
    assert auc_ax.get_ylabel() == "time-dependent AUC"
    brier_ax = figures["brier.png"].axes[0]
    assert brier_ax.get_title().startswith("Brier score") and brier_ax.get_ylabel() == "Brier score"
    rows = pd.DataFrame({"model": ["a", "a", "b", "b"], "harrell_c": [0.6, 0.7, 0.5, 0.55]})
    ax = _cindex_figure(plt, rows).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]  # best on top
    assert ax.get_xlabel().startswith("Harrell's C on the test folds")


def test_plot_training_history_skorch(tmp_path):
    skorch = pytest.importorskip("skorch")
    history = skorch.history.History()
    for epoch, loss in enumerate([1.0, 0.8, 0.7], start=1):
        history.new_epoch()
        history.record("epoch", epoch)
        history.record("train_loss", loss)
        history.record("valid_loss", loss + 0.1)
    _save_png(plot_training_history(history), tmp_path / "skorch.png")


def test_stacked_cumulative_incidence():
    from sksurv.functions import StepFunction
    from sksurv.nonparametric import kaplan_meier_estimator

    from survbehrt.data import competing_y
    from survbehrt.plotting import plot_cumulative_incidence

    rng = np.random.default_rng(1)
    t, cause, c = rng.exponential(2.0, 300), rng.integers(1, 3, 300), rng.uniform(0, 6, 300)
    y = competing_y(np.where(t <= c, cause, 0), np.minimum(t, c), causes=["mi", "death"])
    ax = plot_cumulative_incidence(y)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["mi", "death"]
    # the top edge (the summed incidences) is the probability of any event, 1 - KM
    top = ax.get_lines()[-1]
    km_t, km_s = kaplan_meier_estimator(y["event"] > 0, y["time"])
    np.testing.assert_allclose(top.get_xdata(), np.r_[0.0, km_t])
    np.testing.assert_allclose(top.get_ydata(), np.r_[0.0, 1 - km_s], atol=1e-12)
    assert ax.get_ylabel() == "cumulative incidence (stacked)"
    # one patient's predicted incidences as step functions
    x = np.array([0.0, 1.0, 2.0])
    fns = [StepFunction(x, np.array([0.0, 0.1, 0.2])), StepFunction(x, np.array([0.0, 0.3, 0.4]))]
    ax = plot_cumulative_incidence(fns, causes=["a", "b"])
    np.testing.assert_allclose(ax.get_lines()[-1].get_ydata(), [0.0, 0.4, 0.6])
    with pytest.raises(ValueError, match="times is required"):
        plot_cumulative_incidence(np.zeros((2, 3)))


def _attributions():
    """A hand-made frame in the layout of survbehrt.explain.explain (two rows)."""
    import pandas as pd

    return pd.DataFrame({
        "row": [0, 0, 0, 0, 0, 1],
        "token": [1, 2, 2, 4, 4, 2],
        "visit": [-1, 0, 0, 1, 1, 0],
        "age": [np.nan, 50.0, 50.0, 52.5, 52.5, 61.0],
        "code": ["SEX//F", "I10", "I10", "E11", "E11", "I10"],
        "kind": ["static", "code", "code", "code", "code", "code"],
        "part": ["deep", "deep", "wide", "deep", "wide", "deep"],
        "attribution": [0.1, 0.3, 0.2, -0.4, -0.1, 0.05],
    })


def test_plot_attribution_timeline(tmp_path):
    ax = plot_attribution_timeline(_attributions(), row=0)
    # one dot per code token, its parts summed: I10 0.3 + 0.2, E11 -0.4 - 0.1; one static square
    dots, squares = ax.collections[:2]
    np.testing.assert_allclose(dots.get_array(), [0.5, -0.5])
    np.testing.assert_allclose(squares.get_array(), [0.1])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SEX//F", "I10", "E11"]
    assert ax.get_title() == "row 0: total +0.10 log risk above the baseline"
    assert _inside_figure(ax, ax.yaxis.label) and _inside_figure(ax, ax.xaxis.label)
    _save_png(ax, tmp_path / "timeline.png")
    with pytest.raises(ValueError, match="no attributions for row 7"):
        plot_attribution_timeline(_attributions(), row=7)


def test_plot_top_codes(tmp_path):
    from survbehrt.explain import summarize_codes

    summary = summarize_codes(_attributions())
    # per occurrence, parts summed: E11 -0.5; I10 +0.5 (row 0) and +0.05 (row 1)
    assert summary.index.tolist() == ["E11", "I10", "SEX//F"]
    np.testing.assert_allclose(summary["mean_abs"], [0.5, 0.275, 0.1])
    np.testing.assert_allclose(summary["mean"], [-0.5, 0.275, 0.1])
    assert summary["count"].tolist() == [1, 2, 1] and summary["n_rows"].tolist() == [1, 2, 1]
    ax = plot_top_codes(summary, n=2)
    # the largest on top (matplotlib counts bars from the bottom)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["I10 (n=2)", "E11 (n=1)"]
    np.testing.assert_allclose([p.get_width() for p in ax.patches], [0.275, 0.5])
    colors = [p.get_facecolor() for p in ax.patches]
    assert colors[0] != colors[1]  # raises vs lowers the risk
    _save_png(ax, tmp_path / "top.png")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        plot_top_codes(summary, n=0)
