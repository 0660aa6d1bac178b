"""The benchmark command: a real (tiny) run, its files, the summary, PATH data, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from survbehrt.benchmark import BenchmarkSettings, load_benchmark_data, summarize
from survbehrt.cli import main
from survbehrt.datasets import make_synthetic_ehr, make_synthetic_events

TINY = ["--quick", "--n-patients", "160", "--folds", "2", "--epochs", "1",
        "--pretrain-epochs", "1", "--quiet"]
PNG = b"\x89PNG\r\n\x1a\n"


def test_cli_benchmark_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["benchmark", *TINY, "--models", "CoxPH", "BEHRT-frozen", "--out", str(out)])
    assert status == 0
    rows = pd.read_csv(out / "results.csv")
    assert sorted(rows["model"].unique()) == ["BEHRT-frozen", "CoxPH", "oracle"]
    assert sorted(rows["fold"].unique()) == [0, 1]
    assert rows.loc[rows["model"] != "oracle", "harrell_c"].between(0, 1).all()
    payload = json.loads((out / "results.json").read_text())
    assert payload["complete"] is True
    assert {r["model"] for r in payload["summary"]} == {"BEHRT-frozen", "CoxPH", "oracle"}
    assert payload["machine"]["cpu_count"] == os.cpu_count()
    for name in ("cindex.png", "calibration.png", "survival_curves.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    printed = capsys.readouterr().out
    assert "Harrell C" in printed and "BEHRT-frozen" in printed


def test_summarize_matches_a_loop():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"model": np.repeat(["a", "b"], 4), "fold": np.tile(range(4), 2),
                         **{m: rng.random(8) for m in ("harrell_c", "uno_c", "integrated_brier",
                                                       "mean_auc", "d_calibration_p", "fit_time",
                                                       "predict_time")}})
    summary = summarize(rows)
    for name in ("a", "b"):
        values = rows.loc[rows["model"] == name, "harrell_c"].to_numpy()
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        assert summary.loc[name, "harrell_c_mean"] == pytest.approx(mean)
        assert summary.loc[name, "harrell_c_sd"] == pytest.approx(sd)
        assert summary.loc[name, "folds"] == 4
    assert list(summary.index) == sorted(["a", "b"], key=lambda n: -summary.loc[n, "harrell_c_mean"])


def test_path_dataset_round_trip(tmp_path):
    events, labels = make_synthetic_events(n_patients=60, random_state=3)
    events.to_csv(tmp_path / "events.csv", index=False)
    labels.to_parquet(tmp_path / "labels.parquet")
    X, y, risk = load_benchmark_data(str(tmp_path))
    X_ref, y_ref, risk_ref = make_synthetic_ehr(n_patients=60, random_state=3)
    assert len(X) == len(X_ref) == len(y)
    np.testing.assert_allclose(np.sort(y["time"]), np.sort(y_ref["time"]))
    np.testing.assert_allclose(np.sort(risk), np.sort(risk_ref))
    # every history ends before its prediction time: the future rows were dropped
    assert (X["index_age"] >= X["ages"].map(max)).all()


def test_bad_dataset_and_models(tmp_path):
    with pytest.raises(ValueError, match="neither 'synthetic'"):
        load_benchmark_data(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="unknown models"):
        BenchmarkSettings(models=["CoxPH", "DeepSurv"]).resolved()
    with pytest.raises(SystemExit):
        main(["benchmark", "--models", "DeepSurv"])


def test_ctrl_c_keeps_finished_folds(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "survbehrt", "benchmark", "--quick", "--n-patients", "160",
           "--folds", "2", "--models", "CoxPH", "BEHRT-full", "--epochs", "2",
           "--pretrain-epochs", "60", "--no-plots", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
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
