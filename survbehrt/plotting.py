"""Plots: survival curves, calibration, landmark risk trajectories, learning curves.

matplotlib is an optional dependency (``pip install survbehrt[plot]``); it is
imported inside each function. Every function draws on ``ax`` (a new figure's
axes when None) and returns the Axes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "plot_calibration",
    "plot_risk_trajectory",
    "plot_survival_curves",
    "plot_training_history",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "survbehrt.plotting needs matplotlib: pip install 'survbehrt[plot]' "
            "(or pip install matplotlib)"
        ) from exc
    return plt


def _axes(ax):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots()
    return ax


def plot_survival_curves(step_functions, y=None, labels=None, ax=None):
    """Predicted survival curves, with the Kaplan-Meier curve of ``y``.

    Parameters
    ----------
    step_functions : sequence of sksurv.functions.StepFunction
        Survival functions, e.g. ``estimator.predict_survival_function(X)``.
    y : structured array of shape (n_samples,), optional
        Observed outcome; its Kaplan-Meier curve is drawn in black.
    labels : sequence of str, optional
        One legend label per function.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.
    """
    ax = _axes(ax)
    functions = list(step_functions)
    if labels is not None and len(labels) != len(functions):
        raise ValueError(f"got {len(labels)} labels for {len(functions)} functions")
    for i, fn in enumerate(functions):
        x = np.asarray(fn.x, dtype=float)
        lower, upper = fn.domain
        x = np.unique(np.clip(np.concatenate([[lower], x, [upper]]), lower, upper))
        label = None if labels is None else labels[i]
        ax.step(x, fn(x), where="post", label=label, alpha=0.8)
    if y is not None:
        from sksurv.nonparametric import kaplan_meier_estimator
        from sksurv.util import check_y_survival

        event, time = check_y_survival(y, allow_all_censored=True)
        t, s = kaplan_meier_estimator(event, time)
        ax.step(
            np.r_[0.0, t], np.r_[1.0, s], where="post", color="black", lw=2, label="Kaplan-Meier"
        )
    ax.set_xlabel("years after prediction time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(-0.02, 1.02)
    if labels is not None or y is not None:
        ax.legend(loc="best")
    return ax


def plot_calibration(table, ax=None, **kwargs):
    """Predicted vs observed survival at a horizon, by risk group.

    Parameters
    ----------
    table : pandas.DataFrame or tuple
        Output of :func:`survbehrt.metrics.calibration_table`, or the
        arguments ``(y, surv_at_horizon, horizon)`` to compute it.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    **kwargs
        Passed to ``calibration_table`` when ``table`` is a tuple (e.g.
        ``n_groups``).

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.
    """
    if isinstance(table, tuple | list):
        from survbehrt.metrics import calibration_table

        table = calibration_table(*table, **kwargs)
    ax = _axes(ax)
    predicted = np.asarray(table["predicted"], dtype=float)
    observed = np.asarray(table["observed"], dtype=float)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="ideal")
    if "lower" in table and "upper" in table:
        lower = np.asarray(table["lower"], dtype=float)
        upper = np.asarray(table["upper"], dtype=float)
        yerr = np.vstack([observed - lower, upper - observed])
        yerr = np.where(np.isfinite(yerr), np.clip(yerr, 0.0, None), 0.0)
        ax.errorbar(predicted, observed, yerr=yerr, fmt="o", capsize=3, label="risk groups")
    else:
        ax.plot(predicted, observed, "o", label="risk groups")
    horizon = getattr(table, "attrs", {}).get("horizon")
    suffix = "" if horizon is None else f" at {horizon:g} years"
    ax.set_xlabel("predicted survival" + suffix)
    ax.set_ylabel("observed survival (Kaplan-Meier)" + suffix)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="best")
    return ax


def plot_risk_trajectory(risks_per_visit, visit_ages, ax=None, labels=None):
    """Landmark risk predictions over a patient's visits.

    Parameters
    ----------
    risks_per_visit : array-like of shape (n_visits,) or list of such arrays
        Risk (or any per-visit prediction) at each visit of one patient, or
        one array per patient.
    visit_ages : array-like of shape (n_visits,) or list of such arrays
        Age at each visit, matching ``risks_per_visit``.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.
    labels : sequence of str, optional
        One legend label per patient.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.
    """
    ax = _axes(ax)
    first = np.asarray(risks_per_visit[0]) if len(risks_per_visit) else np.asarray([])
    if first.ndim == 0:  # one patient
        risks_per_visit, visit_ages = [risks_per_visit], [visit_ages]
    if len(risks_per_visit) != len(visit_ages):
        raise ValueError("risks_per_visit and visit_ages must describe the same patients")
    for i, (risk, ages) in enumerate(zip(risks_per_visit, visit_ages)):
        risk = np.asarray(risk, dtype=float)
        ages = np.asarray(ages, dtype=float)
        if risk.shape != ages.shape:
            raise ValueError(f"patient {i}: {risk.shape[0]} risks for {ages.shape[0]} visit ages")
        label = None if labels is None else labels[i]
        ax.plot(ages, risk, marker="o", label=label)
    ax.set_xlabel("age at visit (years)")
    ax.set_ylabel("predicted risk")
    if labels is not None:
        ax.legend(loc="best")
    return ax


def plot_training_history(history, keys=("train_loss", "valid_loss"), ax=None):
    """Learning curves from a skorch ``History`` (or a list of dicts).

    Parameters
    ----------
    history : skorch.history.History or list of dict
        One dict per epoch; the x-axis is its ``"epoch"`` entry when present.
    keys : sequence of str, default=("train_loss", "valid_loss")
        Entries to plot; epochs missing a key are skipped for it.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.
    """
    ax = _axes(ax)
    rows = list(history)
    for key in keys:
        xs, ys = [], []
        for i, row in enumerate(rows):
            if key in row and row[key] is not None:
                xs.append(row.get("epoch", i + 1))
                ys.append(float(row[key]))
        if xs:
            ax.plot(xs, ys, marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(loc="best")
    return ax
