"""The benchmark's competing-risks task: its models, its table, and the single-outcome task unchanged."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis

from survbehrt.benchmark import load_benchmark_data
from survbehrt.benchmark.competing_models import (
    AalenJohansenBaseline,
    CauseSpecificCox,
    cumulative_incidence_from_hazards,
)
from survbehrt.cli import main
from survbehrt.competing_metrics import aalen_johansen
from survbehrt.data import cause_names, cause_specific_y, competing_y
from survbehrt.data.features import CodeCountTransformer
from survbehrt.datasets.competing import make_synthetic_competing


def _nelson_aalen_steps(event, time, n_causes):
    """Each cause's Nelson–Aalen increments d_k(t) / Y(t) at the distinct times (a loop)."""
    grid = np.unique(time)
    steps = np.zeros((n_causes, len(grid)))
    for m, t in enumerate(grid):
        at_risk = sum(1 for s in time if s >= t)
        for k in range(1, n_causes + 1):
            died = sum(1 for e, s in zip(event, time) if s == t and e == k)
            steps[k - 1, m] = died / at_risk
    return grid, steps


def test_the_product_of_nelson_aalen_hazards_is_the_aalen_johansen_estimate():
    rng = np.random.default_rng(1)
    n = 120
    event = rng.integers(0, 4, n)  # three causes and censoring
    time = np.round(rng.exponential(2.0, n), 1)  # ties, also across causes
    y = competing_y(event, time)
    grid, steps = _nelson_aalen_steps(event, time, 3)
    cif = cumulative_incidence_from_hazards(np.cumsum(steps, axis=1)[None])[0]
    aj_grid, aj = aalen_johansen(y)
    np.testing.assert_allclose(grid, aj_grid)
    np.testing.assert_allclose(cif, aj[1:], atol=1e-12)


def test_a_hazard_step_above_one_ends_survival_and_keeps_a_probability():
    # jumps of 0.9 and 0.6 at t_2: all the remaining survival goes, shared 3:2
    cumhaz = np.array([[[0.2, 1.1, 1.5], [0.0, 0.6, 0.6]]])
    cif = cumulative_incidence_from_hazards(cumhaz)[0]
    left = 1 - 0.2
    np.testing.assert_allclose(cif[:, 1], [0.2 + left * 0.6, left * 0.4])
    np.testing.assert_allclose(cif.sum(axis=0)[1:], 1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        cumulative_incidence_from_hazards([[[0.5, 0.2]]])


def _cox():
    return make_pipeline(CodeCountTransformer(min_frequency=5), StandardScaler(),
                         CoxPHSurvivalAnalysis(alpha=10.0))


def test_cause_specific_cox_is_one_cox_per_cause_and_the_product_of_their_hazards():
    X, y, _ = make_synthetic_competing(n_patients=300, random_state=2)
    model = CauseSpecificCox(_cox()).fit(X.iloc[:200], y[:200])
    assert model.causes_ == cause_names(y) == ("outcome", "death")
    X_new = X.iloc[200:205]
    hazards = []
    for k, fitted in enumerate(model.estimators_, start=1):
        own = _cox().fit(X.iloc[:200], cause_specific_y(y[:200], k))  # the other cause censored
        np.testing.assert_allclose(fitted[-1].coef_, own[-1].coef_)
        hazards.append(own.predict_cumulative_hazard_function(X_new))
    cif = model.predict_cumulative_incidence(X_new)
    assert cif.shape == (5, 2)
    times = [0.5, 1.7, 4.0]
    for i in range(5):
        # the Aalen–Johansen-type product, as a loop over the training times
        grid = hazards[0][i].x
        surv, total, ref = 1.0, np.zeros(2), np.zeros((2, len(times)))
        prev = np.zeros(2)
        for t in grid:
            now = np.array([hazards[k][i](t) for k in range(2)])
            step = now - prev
            if step.sum() > 1:  # the rest of the survival goes, shared as the hazards
                step = step / step.sum()
            total += surv * step
            for m, at in enumerate(times):
                if t <= at:
                    ref[:, m] = total
            surv *= 1 - step.sum()
            prev = now
        assert surv >= 0
        got = np.array([[cif[i, k](at) for at in times] for k in range(2)])
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_aalen_johansen_baseline_predicts_the_training_incidence_for_everyone():
    X, y, _ = make_synthetic_competing(n_patients=200, random_state=3)
    model = AalenJohansenBaseline().fit(X, y)
    grid, aj = aalen_johansen(y)
    cif = model.predict_cumulative_incidence(X.iloc[:3])
    for row in cif:
        for k in range(2):
            np.testing.assert_allclose(row[k](grid), aj[k + 1])


def test_the_competing_dataset_is_the_generator_s_cohort():
    X, y, log_hazards = load_benchmark_data("synthetic-competing", n_patients=80, random_state=5)
    X_ref, y_ref, lp_ref = make_synthetic_competing(n_patients=80, random_state=5)
    pd.testing.assert_frame_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(log_hazards, lp_ref)


OLD_HEADER = ("model                Harrell C           Uno C     IBS  mean AUC  D-cal p*    fit s"
              "  pred s")


def test_one_command_runs_both_tasks_and_the_single_outcome_table_keeps_its_format(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["benchmark", "--dataset", "synthetic", "synthetic-competing", "--quick",
                 "--n-patients", "300", "--folds", "2", "--models", "CoxPH", "Cox-age",
                 "--no-plots", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    # the single-outcome task: its table as before (header, one line per model, footnote)
    single = printed[printed.index("== synthetic") + 1:]
    assert single[0] == OLD_HEADER
    assert sorted(line.split()[0] for line in single[1:4]) == ["Cox-age", "CoxPH", "oracle"]
    assert single[4].startswith("* D-calibration test")
    assert set(pd.read_csv(out / "synthetic" / "results.csv")["model"]) == {"CoxPH", "Cox-age",
                                                                          "oracle"}
    # the competing task: every (model, cause) row, in the files and the printed table
    rows = pd.read_csv(out / "synthetic-competing" / "results.csv")
    models = {"CoxPH", "Cox-age", "Aalen-Johansen", "oracle"}
    expected = {(m, c, f) for m in models for c in ("outcome", "death") for f in (0, 1)}
    assert set(zip(rows["model"], rows["cause"], rows["fold"])) == expected
    assert len(rows) == len(expected)
    summary = pd.read_csv(out / "synthetic-competing" / "summary.csv", index_col=[0, 1])
    assert set(summary.index) == {(m, c) for m in models for c in ("outcome", "death")}
    for (model, cause), r in summary.iterrows():
        values = rows.loc[(rows["model"] == model) & (rows["cause"] == cause), "c_index"]
        assert r["c_index_mean"] == pytest.approx(sum(values) / 2)
    competing = printed[printed.index("== synthetic-competing") + 1:]
    table = [line.split() for line in competing[1:9]]
    assert {(line[0], line[1]) for line in table} == {(c, m) for m, c in
                                                     {(m, c) for m, c in summary.index}}
    # a constant incidence ties every pair: C is one half; the truth ranks the outcome
    # (its risk lies in the history) better
    aj = summary.loc[("Aalen-Johansen", "outcome")]
    assert aj["c_index_mean"] == 0.5 and aj["c_index_sd"] == 0.0
    assert summary.loc[("oracle", "outcome"), "c_index_mean"] > aj["c_index_mean"]
    assert summary.loc[("oracle", "outcome"), "brier_mean"] < aj["brier_mean"]
