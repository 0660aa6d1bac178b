"""Plots: survival curves, calibration, time-dependent AUC and Brier curves, landmark
risk trajectories, learning curves, stacked cumulative incidence of competing causes,
attributions (a patient's timeline, a cohort's top codes).

matplotlib is an optional dependency (``pip install survbehrt[plot]``); it is
imported inside each function. Every function draws on ``ax`` (a new figure's
axes, with a layout that keeps the labels inside it, when None) and returns the Axes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "format_years",
    "plot_attribution_timeline",
    "plot_auc_curves",
    "plot_brier_curves",
    "plot_calibration",
    "plot_cumulative_incidence",
    "plot_risk_trajectory",
    "plot_survival_curves",
    "plot_top_codes",
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
    # constrained layout: axis labels and legends stay inside the saved figure
    _, ax = _pyplot().subplots(layout="constrained")
    return ax


def format_years(t: float) -> str:
    """A time in years for a label: one decimal, e.g. ``"2.2 years"``.

    Parameters
    ----------
    t : float
        Years.

    Returns
    -------
    str

    Examples
    --------
    >>> format_years(2.18771), format_years(1.0), format_years(0.5)
    ('2.2 years', '1 year', '0.5 years')
    """
    text = f"{t:.1f}".removesuffix(".0")
    return f"{text} year" if text == "1" else f"{text} years"


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
        The axes drawn on; the x-label names the horizon (``"predicted survival at
        2.2 years"``) when the table carries it.
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
    suffix = "" if horizon is None else f" at {format_years(horizon)}"
    ax.set_xlabel("predicted survival" + suffix)
    ax.set_ylabel("observed survival (Kaplan-Meier)")
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


#: Parts of a loss logged in a history (``train_<part>`` / ``valid_<part>``).
_LOSS_PARTS = ("loss", "nll", "ranking", "mlm", "next_visit", "cls")


def _series_kind(key: str) -> str:
    """The y-axis label of a history entry: ``"loss"``, ``"C-index"`` or the entry itself."""
    name = key.removeprefix("train_").removeprefix("valid_")
    if name.endswith("cindex"):
        return "C-index"
    if name in _LOSS_PARTS or name.endswith("loss"):
        return "loss"
    return key


def plot_training_history(history, keys=("train_loss", "valid_loss"), ax=None):
    """Learning curves from a skorch ``History`` (or a list of dicts).

    The y-axis is named after what is plotted: ``"loss"`` for losses and their parts
    (``train_nll``, ``valid_mlm``, ...), ``"C-index"`` for ``valid_cindex``, else the
    entry's name. Two kinds (e.g. ``("train_loss", "valid_cindex")``) get two y-axes,
    the second on the right (``ax.right_ax``); more than two are refused.

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
        The axes of the first kind of series; with a second kind, ``ax.right_ax`` is
        the twin axes that holds it.

    Raises
    ------
    ValueError
        If ``keys`` mixes more than two kinds of series.

    Examples
    --------
    >>> history = [{"epoch": 1, "train_loss": 2.0, "valid_cindex": 0.6},
    ...            {"epoch": 2, "train_loss": 1.5, "valid_cindex": 0.7}]
    >>> ax = plot_training_history(history, keys=("train_loss", "valid_cindex"))
    >>> ax.get_ylabel(), ax.right_ax.get_ylabel()
    ('loss', 'C-index')
    """
    kinds = list(dict.fromkeys(_series_kind(k) for k in keys))
    if len(kinds) > 2:
        raise ValueError(f"keys {list(keys)} mix {len(kinds)} kinds of series {kinds}; "
                         f"plot at most two kinds (one per y-axis)")
    ax = _axes(ax)
    axes = {kinds[0]: ax}
    if len(kinds) == 2:
        ax.right_ax = axes[kinds[1]] = ax.twinx()
    rows = list(history)
    colors = iter(_pyplot().rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for key in keys:
        xs, ys = [], []
        for i, row in enumerate(rows):
            if key in row and row[key] is not None:
                xs.append(row.get("epoch", i + 1))
                ys.append(float(row[key]))
        if xs:
            axes[_series_kind(key)].plot(xs, ys, marker=".", label=key, color=next(colors))
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for kind, target in axes.items():
        target.set_ylabel(kind)
    handles = [h for a in axes.values() for h in a.get_legend_handles_labels()[0]]
    if handles:
        ax.legend(handles=handles, loc="best")
    return ax


def _curves(results, key, ax, ylabel):
    ax = _axes(ax)
    if isinstance(results, dict) and key in results:  # one model's result
        results = {None: results}
    for label, result in results.items():
        if key not in result or "times" not in result:
            raise ValueError(f"{label}: no {key!r} curve; use evaluate(..., return_curves=True)")
        ax.plot(np.asarray(result["times"], float), np.asarray(result[key], float),
                marker=".", label=label)
    ax.set_xlabel("years after prediction time")
    ax.set_ylabel(ylabel)
    return ax


def plot_auc_curves(results, ax=None):
    """Time-dependent (cumulative/dynamic) AUC against the horizon, one line per model.

    Parameters
    ----------
    results : dict
        ``{label: result}`` with each ``result`` from
        :func:`survbehrt.metrics.evaluate` with ``return_curves=True`` (its
        ``times`` and ``auc``); or one such result.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on; a dashed line marks chance (0.5).
    """
    ax = _curves(results, "auc", ax, "time-dependent AUC")
    ax.axhline(0.5, ls="--", color="grey", lw=1, label="chance")
    ax.legend(loc="best")
    return ax


def plot_brier_curves(results, ax=None):
    """Brier score against the horizon, one line per model (lower is better).

    Parameters
    ----------
    results : dict
        ``{label: result}`` with each ``result`` from
        :func:`survbehrt.metrics.evaluate` with ``return_curves=True`` (its
        ``times`` and ``brier``); or one such result.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.
    """
    ax = _curves(results, "brier", ax, "Brier score")
    ax.set_ylim(bottom=0)
    if any(label is not None for label in ax.get_legend_handles_labels()[1]):
        ax.legend(loc="best")
    return ax


def _incidence_curves(y_or_cif, times, causes):
    """``times``, ``(K, n_times)`` incidences and cause names from any accepted input."""
    data = y_or_cif if isinstance(y_or_cif, (list, tuple)) else np.asarray(y_or_cif)
    if isinstance(data, np.ndarray) and data.dtype.names is not None:
        from .competing_metrics import aalen_johansen
        from .data.competing import cause_names

        times, cif = aalen_johansen(data)
        cif = np.hstack([np.zeros((cif.shape[0], 1)), cif])[1:]  # start at 0 at t = 0
        times = np.r_[0.0, times]
        names = cause_names(data)
        return times, cif, names if causes is None else list(causes)
    functions = list(data)
    if functions and callable(functions[0]):
        if times is None:
            times = np.unique(np.concatenate([[0.0], *[np.asarray(f.x, float) for f in functions]]))
            upper = min(float(f.domain[1]) for f in functions)
            times = times[times <= upper]
        times = np.asarray(times, dtype=float)
        cif = np.vstack([np.asarray(f(times), dtype=float) for f in functions])
    else:
        if times is None:
            raise ValueError("times is required with an array of cumulative incidences")
        times = np.asarray(times, dtype=float)
        cif = np.asarray(data, dtype=float).reshape(-1, len(times))
    names = [str(k) for k in range(1, cif.shape[0] + 1)] if causes is None else list(causes)
    return times, cif, names


def plot_cumulative_incidence(y_or_cif, times=None, causes=None, ax=None):
    """Stacked cumulative incidence of competing causes.

    Cause ``k``'s band lies between the summed incidences of causes ``1..k-1`` and
    ``1..k``; the top edge is the probability of any event, the white space above it
    the probability of being event-free.

    Parameters
    ----------
    y_or_cif : structured ndarray, sequence of StepFunction or ndarray
        A competing-risks outcome (its Aalen–Johansen incidences are drawn); one
        patient's predicted incidences, one step function per cause; or an array of
        shape ``(n_causes, n_times)`` at ``times``.
    times : array-like of shape (n_times,), optional
        Where the curves are evaluated (required with an array).
    causes : sequence of str, optional
        Legend names; default the names of ``y`` (:func:`survbehrt.data.cause_names`)
        or ``"1"``, ``"2"``, ...
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes drawn on.
    """
    times, cif, names = _incidence_curves(y_or_cif, times, causes)
    if len(names) != cif.shape[0]:
        raise ValueError(f"got {len(names)} cause names for {cif.shape[0]} causes")
    ax = _axes(ax)
    stacked = np.vstack([np.zeros(len(times)), np.cumsum(cif, axis=0)])
    for k, name in enumerate(names):
        ax.fill_between(times, stacked[k], stacked[k + 1], step="post", alpha=0.7, label=name)
    ax.step(times, stacked[-1], where="post", color="black", lw=1)
    ax.set_xlabel("years after prediction time")
    ax.set_ylabel("cumulative incidence (stacked)")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return ax


def _token_totals(attributions, row):
    """One line per code token of ``row``: its parts (deep, wide, value) summed."""
    rows = attributions[attributions["row"] == row]
    if rows.empty:
        raise ValueError(f"no attributions for row {row}")
    return (rows.groupby("token", sort=True)
                .agg(code=("code", "first"), age=("age", "first"), visit=("visit", "first"),
                     attribution=("attribution", "sum")))


def plot_attribution_timeline(attributions, row, ax=None, cmap="RdBu_r"):
    """One patient's codes over age, coloured by their attribution to the risk.

    Each code occurrence is a dot at (age of its visit, code), coloured by its
    attribution summed over parts (red raises the risk, blue lowers it, on a scale
    symmetric around 0); static codes are squares left of the first visit.

    Parameters
    ----------
    attributions : pandas.DataFrame
        :func:`survbehrt.explain.explain`'s output.
    row : int
        The patient (``row`` column) to draw.
    ax : matplotlib.axes.Axes, optional
    cmap : str, default="RdBu_r"
        A diverging colour map.

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    ax = _axes(ax)
    tokens = _token_totals(attributions, row)
    codes = list(dict.fromkeys(tokens["code"]))  # first appearance order
    y = tokens["code"].map({c: i for i, c in enumerate(codes)}).to_numpy()
    static = tokens["visit"].to_numpy() < 0
    ages = tokens["age"].to_numpy(dtype=float)
    timed = ages[~static]
    span = np.ptp(timed) if timed.size else 1.0
    x = np.where(static, (timed.min() if timed.size else 0.0) - 0.08 * max(span, 1.0), ages)
    values = tokens["attribution"].to_numpy()
    limit = max(float(np.abs(values).max()), 1e-12)
    for mask, marker in ((~static, "o"), (static, "s")):
        points = ax.scatter(x[mask], y[mask], c=values[mask], cmap=cmap, vmin=-limit, vmax=limit,
                            marker=marker, s=60, edgecolors="k", linewidths=0.3)
    ax.figure.colorbar(points, ax=ax, label="attribution (log risk)")
    ax.set_yticks(range(len(codes)), codes)
    ax.set_xlabel("age at visit (years); squares: static codes")
    ax.set_ylabel("code")
    ax.set_title(f"row {row}: total {values.sum():+.2f} log risk above the baseline")
    return ax


def plot_top_codes(summary, n=15, ax=None):
    """The codes that move a cohort's risk most: mean |attribution| per occurrence.

    Bars are red for codes that raise the risk on average, blue for those that lower
    it; each label carries the number of occurrences.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`survbehrt.explain.summarize_codes`'s output (indexed by code, sorted).
    n : int, default=15
        Number of codes shown.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    ax = _axes(ax)
    top = summary.head(int(n)).iloc[::-1]  # largest on top
    colors = np.where(top["mean"].to_numpy() >= 0, "tab:red", "tab:blue")
    labels = [f"{code} (n={count})" for code, count in zip(top.index, top["count"])]
    ax.barh(range(len(top)), top["mean_abs"].to_numpy(), color=colors)
    ax.set_yticks(range(len(top)), labels)
    ax.set_xlabel("mean |attribution| per occurrence (log risk)")
    ax.set_title("top codes (red: raise the risk, blue: lower it)")
    return ax
