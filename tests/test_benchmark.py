"""The benchmark command: a real (tiny) run, its files, the summary, PATH data, Ctrl-C."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import survbehrt
from survbehrt.benchmark import (
    BEHRT_MODELS,
    BenchmarkSettings,
    _warnings_above_bars,
    load_benchmark_data,
    make_models,
    make_pretrainer,
    summarize,
)
from survbehrt.cli import build_parser, closing_lines, main
from survbehrt.datasets import make_synthetic_ehr, make_synthetic_events

TINY = ["--dataset", "synthetic", "--quick", "--n-patients", "160", "--folds", "2", "--epochs", "1",
        "--pretrain-epochs", "1", "--quiet"]
PNG = b"\x89PNG\r\n\x1a\n"


def test_cli_benchmark_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["benchmark", *TINY, "--models", "CoxPH", "BEHRT-frozen", "--out", str(out)])
    assert status == 0
    rows = pd.read_csv(out / "results.csv")
    assert sorted(rows["model"].unique()) == ["BEHRT-frozen", "CoxPH", "oracle"]
    assert sorted(rows["fold"].unique()) == [0, 1]
    assert rows.groupby("model").size().to_dict() == {"BEHRT-frozen": 2, "CoxPH": 2, "oracle": 2}
    payload = json.loads((out / "results.json").read_text())
    assert payload["complete"] is True
    assert {r["model"] for r in payload["summary"]} == {"BEHRT-frozen", "CoxPH", "oracle"}
    assert payload["machine"]["cpu_count"] == os.cpu_count()
    # summary.csv: mean and standard deviation of every metric, as a loop over the folds
    summary = pd.read_csv(out / "summary.csv", index_col="model")
    for metric in ("harrell_c", "uno_c", "integrated_brier", "mean_auc", "fit_time",
                   "predict_time", "pretrain_time"):
        for name in ("CoxPH", "BEHRT-frozen"):
            values = rows.loc[rows["model"] == name, metric].tolist()
            mean = sum(values) / len(values)
            sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
            assert summary.loc[name, f"{metric}_mean"] == pytest.approx(mean), metric
            assert summary.loc[name, f"{metric}_sd"] == pytest.approx(sd, abs=1e-12), metric
    assert "d_calibration_p_mean" not in summary  # a mean of p-values means nothing
    # predictions.csv: every model's risk on every test row once; the intervals come from it
    predictions = pd.read_csv(out / "predictions.csv")
    assert predictions.groupby("model").size().to_dict() == {"BEHRT-frozen": 160, "CoxPH": 160,
                                                            "oracle": 160}
    assert sorted(predictions.loc[predictions["model"] == "CoxPH", "row"]) == list(range(160))
    np.testing.assert_allclose(summary["harrell_c_estimate"], summary["harrell_c_mean"])
    assert (summary["harrell_c_lower"] < summary["harrell_c_mean"]).all()
    assert (summary["harrell_c_mean"] < summary["harrell_c_upper"]).all()
    assert (summary["reference"] == "CoxPH").all()  # the only count baseline that ran
    assert summary.loc["CoxPH", "harrell_c_diff"] == 0
    assert summary.loc["oracle", "harrell_c_diff"] == pytest.approx(
        summary.loc["oracle", "harrell_c_mean"] - summary.loc["CoxPH", "harrell_c_mean"])
    assert summary["d_calibration_pooled_p"].drop("oracle").between(0, 1).all()
    pngs = ("cindex.png", "calibration.png", "survival_curves.png", "auc.png", "brier.png")
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    printed = capsys.readouterr().out
    assert "Harrell C" in printed and "BEHRT-frozen" in printed
    assert "pooled over folds" in printed  # says what the D-calibration column is
    assert "Harrell C [95% CI]" in printed and "C - CoxPH [95% CI]" in printed
    assert printed.startswith("smoke run (--quick)")  # says plainly what --quick is
    closing = printed.strip().splitlines()[-1]
    assert closing.startswith(f"results in {out}/:")
    for name in ("results.csv", "summary.csv", "results.json", "predictions.csv", *pngs):
        assert name in closing


def test_no_plots_claims_no_plots_and_a_full_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["benchmark", *TINY, "--models", "CoxPH", "--no-plots", "--out", str(out)]
    assert main(args) == 0
    assert not list(out.glob("*.png"))
    closing = capsys.readouterr().out.strip().splitlines()[-1]
    assert closing == f"results in {out}/: results.csv, summary.csv, results.json, predictions.csv"
    # a second run into the same folder is refused, and the first run's files stay
    before = (out / "results.csv").read_bytes()
    assert main(args) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == before
    # --overwrite replaces the run's own files and leaves other files alone
    (out / "notes.txt").write_text("mine")
    (out / "calibration.png").write_bytes(b"stale")  # an earlier run's plot
    assert main([*args, "--overwrite", "--random-state", "1"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "calibration.png").exists()  # not passed off as this run's
    assert json.loads((out / "results.json").read_text())["settings"]["random_state"] == 1


def test_closing_lines_say_when_no_plot_was_written():
    summary = pd.DataFrame()
    summary.attrs.update(files=["results.csv", "summary.csv", "results.json"], complete=False)
    lines = closing_lines("out", summary, plots=True)
    assert lines[0] == "results in out/: results.csv, summary.csv, results.json"
    assert "matplotlib is not installed" in lines[1]
    assert "interrupted" in lines[2]
    assert closing_lines("out", summary, plots=False)[1:] == [lines[2]]


def test_summarize_matches_a_loop():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"model": np.repeat(["a", "b"], 4), "fold": np.tile(range(4), 2),
                         **{m: rng.random(8) for m in ("harrell_c", "uno_c", "integrated_brier",
                                                       "mean_auc", "d_calibration_p", "fit_time",
                                                       "predict_time")}})
    counts = {"a": [rng.random(10) * 5 for _ in range(4)]}
    summary = summarize(rows, counts)
    for name in ("a", "b"):
        values = rows.loc[rows["model"] == name, "harrell_c"].to_numpy()
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        assert summary.loc[name, "harrell_c_mean"] == pytest.approx(mean)
        assert summary.loc[name, "harrell_c_sd"] == pytest.approx(sd)
        assert summary.loc[name, "folds"] == 4
    assert list(summary.index) == sorted(["a", "b"], key=lambda n: -summary.loc[n, "harrell_c_mean"])
    # the pooled D-calibration test: Pearson's chi-square of the summed bin counts
    pooled = [sum(fold[k] for fold in counts["a"]) for k in range(10)]
    expected = sum(pooled) / 10
    statistic = sum((c - expected) ** 2 / expected for c in pooled)
    assert summary.loc["a", "d_calibration_pooled_p"] == pytest.approx(stats.chi2.sf(statistic, 9))
    assert np.isnan(summary.loc["b", "d_calibration_pooled_p"])


def test_parser_every_flag_has_help_and_shows_defaults(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"survbehrt {survbehrt.__version__}"
    bench = parser._subparsers._group_actions[0].choices["benchmark"]
    assert issubclass(bench.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    for action in bench._actions:
        assert action.help and action.help.strip(), action.option_strings
    text = bench.format_help()
    assert "(default: 4000)" in text and "(default: benchmark_results)" in text
    assert "(default: None)" not in text
    dataset = next(a for a in bench._actions if "--dataset" in a.option_strings).help
    for column in ("subject_id", "time", "code", "prediction_time", "event", "true_risk"):
        assert column in dataset
    for bad in (["--folds", "1"], ["--n-threads", "0"], ["--epochs", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["benchmark", *bad])


def test_device_and_threads_reach_the_models(monkeypatch):
    seen = {}

    def fake_run(settings, **kwargs):  # records what the CLI asked for; runs nothing
        seen["settings"] = settings
        summary = pd.DataFrame()
        summary.attrs["files"] = []
        return summary

    monkeypatch.setattr("survbehrt.benchmark.run_benchmark", fake_run)
    monkeypatch.setattr("survbehrt.benchmark.format_table", lambda summary: "")
    assert main(["benchmark", "--device", "cuda:1", "--n-threads", "3", "--no-plots"]) == 0
    settings = seen["settings"]
    assert (settings.device, settings.n_threads) == ("cuda:1", 3)
    resolved = BenchmarkSettings(device="cpu", n_threads=2, quick=True).resolved()
    models = make_models(resolved)
    for name in BEHRT_MODELS:
        assert (models[name].device, models[name].n_threads) == ("cpu", 2)
    pre = make_pretrainer(resolved)
    assert (pre.device, pre.n_threads) == ("cpu", 2)


def test_warnings_are_written_above_the_progress_bars(monkeypatch):
    from tqdm.auto import tqdm

    written = []
    monkeypatch.setattr(tqdm, "write", classmethod(lambda cls, s, file=None, **kw: written.append(s)))
    with _warnings_above_bars(True), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a time-grid edge was merged", UserWarning, stacklevel=1)
    assert len(written) == 1 and "a time-grid edge was merged" in written[0]
    with _warnings_above_bars(False), pytest.warns(UserWarning):  # quiet: as usual
        warnings.warn("plain", UserWarning, stacklevel=1)
    assert len(written) == 1


def test_path_dataset_round_trip(tmp_path):
    events, labels = make_synthetic_events(n_patients=60, random_state=3)
    events.to_csv(tmp_path / "events.csv", index=False)
    labels.to_parquet(tmp_path / "labels.parquet")
    X, y, risk = load_benchmark_data(str(tmp_path))
    X_ref, y_ref, risk_ref = make_synthetic_ehr(n_patients=60, random_state=3)
    assert len(X) == len(X_ref) == len(y)
    # row by row, aligned on the subject: the same history, outcome and true risk
    subject = X.index.get_level_values("subject_id").to_numpy()
    np.testing.assert_allclose(y["time"], y_ref["time"][subject])
    np.testing.assert_array_equal(y["event"], y_ref["event"][subject])
    np.testing.assert_allclose(risk, risk_ref[subject])
    assert X["codes"].tolist() == X_ref["codes"].iloc[subject].tolist()
    np.testing.assert_allclose(X["index_age"], X_ref["index_age"].iloc[subject], atol=1e-6)


def test_bad_dataset_and_models(tmp_path):
    with pytest.raises(ValueError, match="neither 'synthetic'"):
        load_benchmark_data(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="unknown models"):
        BenchmarkSettings(models=["CoxPH", "DeepSurv"]).resolved()
    with pytest.raises(SystemExit):
        main(["benchmark", "--models", "DeepSurv"])


def test_ctrl_c_keeps_finished_folds(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "survbehrt", "benchmark", "--dataset", "synthetic", "--quick",
           "--n-patients", "160",
           "--folds", "2", "--models", "CoxPH", "BEHRT-full", "--epochs", "2",
           "--pretrain-epochs", "60", "--no-plots", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 600  # generous: CI machines may be busy
        # fold 0 is written once both models are done; fold 1 then pre-trains for a while
        while not (out / "results.csv").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "results.csv").exists(), proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert b"interrupted: the finished folds are saved." in stdout
    payload = json.loads((out / "results.json").read_text())
    assert payload["complete"] is False
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.loc[rows["fold"] == 0, "model"]) == {"CoxPH", "BEHRT-full", "oracle"}


def test_cli_log_to_a_file_holds_no_warnings_nor_cursor_codes(tmp_path):
    """Output redirected to a file, as a new user runs it: no raw warning, no bar codes."""
    log = tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "survbehrt", "benchmark", *[a for a in TINY if a != "--quiet"],
           "--models", "CoxPH", "BEHRT-frozen", "--no-plots", "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # every warning shows unless caught
    with log.open("w") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True, timeout=600, env=env)
    text = log.read_text()
    assert "\x1b[" not in text and "\r" not in text
    assert "Warning" not in text and "warnings.warn" not in text, text
    # the tiny cohort's time grid merges edges in a BEHRT fit: said in one line, not raised
    notes = [line for line in text.splitlines() if line.startswith("  fold ") and "C=" not in line]
    assert any("time-grid edges merged" in line for line in notes), text


def _cox_search(n_iters, scoring=None):
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from survbehrt.data.features import CodeCountTransformer

    pipe = make_pipeline(CodeCountTransformer(min_frequency=5), StandardScaler(),
                         CoxPHSurvivalAnalysis(alpha=1.0))
    return GridSearchCV(pipe, {"coxphsurvivalanalysis__n_iter": n_iters}, cv=KFold(3),
                        scoring=scoring)


def test_a_cox_search_s_warnings_become_one_line_that_says_whether_the_scored_fit_capped():
    from survbehrt.benchmark.models import fit_noting_warnings

    X, y, _ = make_synthetic_ehr(n_patients=200, random_state=0)
    # one Newton step never meets the 1e-9 tolerance: 3 inner fits and the refit stop at the cap
    search, note = fit_noting_warnings(_cox_search([1]), X, y, None, 0, "fold 0 CoxPH")
    assert note.startswith("  fold 0 CoxPH: 4 of 4 fits") and "\n" not in note
    assert "the scored model stopped at the cap" in note
    # two candidates, the scoring picks the converging one: only the inner fits of n_iter=1 capped
    prefer_long = lambda est, X, y: est[-1].n_iter  # noqa: E731
    search, note = fit_noting_warnings(_cox_search([1, 100], prefer_long), X, y, None, 0, "f")
    assert search.best_params_ == {"coxphsurvivalanalysis__n_iter": 100}
    assert note.startswith("  f: 3 of 7 fits") and "the row is unaffected" in note
    # nothing to say: no line
    _, note = fit_noting_warnings(_cox_search([100]), X, y, None, 0, "f")
    assert note is None


@pytest.mark.parametrize("dataset, scenario", [("synthetic-latent", "latent"),
                                               ("synthetic-synonyms", "synonyms")])
def test_the_new_generators_are_benchmark_datasets(dataset, scenario):
    X, y, risk = load_benchmark_data(dataset, n_patients=120, random_state=4)
    X_ref, y_ref, risk_ref = make_synthetic_ehr(n_patients=120, scenario=scenario, random_state=4)
    pd.testing.assert_frame_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(risk, risk_ref)  # the oracle row's truth
