"""Tests for survbehrt.plotting: every plot renders to a PNG."""

import numpy as np
import pytest
from sksurv.util import Surv

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from survbehrt.metrics import calibration_table  # noqa: E402
from survbehrt.plotting import (  # noqa: E402
    plot_calibration,
    plot_risk_trajectory,
    plot_survival_curves,
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


def test_plot_calibration_table_and_args(data, tmp_path):
    y, grid, surv, _ = data
    horizon = grid.cuts_[3]
    table = calibration_table(y, surv[:, 2], horizon, n_groups=5)
    _save_png(plot_calibration(table), tmp_path / "calib.png")
    fig, ax = plt.subplots()
    out = plot_calibration((y, surv[:, 2], horizon), ax=ax, n_groups=4)
    assert out is ax
    _save_png(out, tmp_path / "calib_args.png")


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
    _save_png(ax, tmp_path / "history.png")


def test_plot_training_history_skorch(tmp_path):
    skorch = pytest.importorskip("skorch")
    history = skorch.history.History()
    for epoch, loss in enumerate([1.0, 0.8, 0.7], start=1):
        history.new_epoch()
        history.record("epoch", epoch)
        history.record("train_loss", loss)
        history.record("valid_loss", loss + 0.1)
    _save_png(plot_training_history(history), tmp_path / "skorch.png")
