"""benchmarks/label_efficiency.py: its smoke run, in-process, and its Synthea splits."""

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survbehrt.metrics import harrell_c

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "label_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("label_efficiency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("label_efficiency")
    results = bench.main(["--smoke", "--out", str(out)])
    return results, out, bench.parse_args(["--smoke", "--out", str(out)])


def test_smoke_run_writes_every_dataset_recipe_and_size(smoke, bench):
    results, out, args = smoke
    csv = pd.read_csv(out / "label_efficiency.csv")
    assert list(csv.columns[:5]) == ["dataset", "recipe", "n_labelled", "seed", "harrell_c"]
    assert (csv["fold"] == 0).all()  # one split per seed on a simulated cohort
    pd.testing.assert_frame_equal(csv, results, check_dtype=False)
    expected = set(itertools.product(args.datasets, bench.DEFAULT_RECIPES, args.sizes))
    got = list(zip(csv["dataset"], csv["recipe"], csv["n_labelled"]))
    assert set(got) == expected and len(got) == len(expected)  # each once (one seed)
    assert np.isfinite(csv["harrell_c"]).all()
    assert (out / "label_efficiency.png").stat().st_size > 0
    again = bench.main(["--from-csv", str(out / "label_efficiency.csv"), "--out", str(out / "re")])
    pd.testing.assert_frame_equal(again, csv)


def test_smoke_oracle_beats_random_scores_on_the_same_test_set(smoke, bench):
    results, _, args = smoke
    run = bench.Run(args)
    rng = np.random.default_rng(0)
    for dataset in args.datasets:
        *_, y_test, risk = next(bench.synthetic_runs(run, dataset, args.seeds[0]))
        oracle = results.query("dataset == @dataset and recipe == 'oracle'")["harrell_c"]
        assert np.allclose(oracle, harrell_c(y_test, risk))
        # the oracle's C against the spread of random scores' C on these test rows
        random_c = [harrell_c(y_test, rng.random(len(y_test))) for _ in range(200)]
        assert oracle.min() > np.max(random_c), (dataset, oracle.min(), np.max(random_c))


def test_synthetic_labelled_sets_are_nested_and_apart_from_the_test_set(bench):
    args = bench.parse_args(["--smoke", "--sizes", "30", "60", "--pool", "50", "--test", "40"])
    _, histories, labelled, X_test, y_test, risk = next(
        bench.synthetic_runs(bench.Run(args), "synthetic", 0))
    (n_small, X_small, y_small, _), (n_big, X_big, y_big, _) = labelled
    assert (n_small, n_big) == (30, 60) and len(X_small) == 30 and len(X_big) == 60
    pd.testing.assert_frame_equal(X_small, X_big.iloc[:30])
    assert np.array_equal(y_small, y_big[:30])
    assert len(histories) == 50 + 60 and len(X_test) == len(y_test) == len(risk) == 40
    # the test cohort is a draw of its own, not a copy of labelled or pool patients
    seen = {repr(c) for c in histories["codes"]}
    assert sum(repr(c) in seen for c in X_test["codes"]) < len(X_test) // 4


def test_synthea_folds_keep_test_patients_out_of_pretraining_and_nest_the_sizes(bench):
    from survbehrt.benchmark import subject_groups
    from survbehrt.datasets import load_synthea_sample

    args = bench.parse_args(["--datasets", "synthea-sample", "--synthea-folds", "2",
                             "--sizes", "100", "200", "100000"])
    X_all, _ = load_synthea_sample()
    folds = list(bench.synthea_runs(bench.Run(args), "synthea-sample", 0))
    assert [f[0] for f in folds] == [0, 1]
    caps = []
    for _, histories, labelled, X_test, y_test, risk in folds:
        assert risk is None and len(X_test) == len(y_test)
        test_patients = set(subject_groups(X_test))
        pretrain_patients = histories.index.get_level_values("subject_id")
        assert pretrain_patients.is_unique and not test_patients & set(pretrain_patients)
        sets = []
        for n, X, y, groups in labelled:
            patients = set(groups)
            assert len(patients) == n and len(X) == len(y) == len(groups)
            assert not patients & test_patients
            assert set(X.index.get_level_values("subject_id")) == patients
            sets.append(patients)
        assert all(a < b for a, b in zip(sets, sets[1:]))  # nested, strictly growing
        assert sets[-1] <= set(pretrain_patients)
        # the pretrainer sees each training patient's latest landmark (the longest history)
        latest = X_all.groupby(level="subject_id").tail(1)
        assert histories.index.isin(latest.index).all()
        caps.append(labelled[-1][0])
    sizes = [n for n, *_ in folds[0][2]]
    assert sizes == [100, 200, min(caps)] and min(caps) < 100000


def test_every_labelled_size_gets_the_largest_sizes_optimiser_steps(bench):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from survbehrt import BEHRTSurvivalEstimator

    est = BEHRTSurvivalEstimator(max_epochs=6, batch_size=64)
    for n, largest in [(250, 4000), (1000, 4000), (530, 530), (300, 1000)]:
        scaled = bench.same_steps(est, n, largest)
        # epochs x rows (the steps, up to the last partial batch) at least the largest's
        assert scaled.max_epochs * n >= 6 * largest > (scaled.max_epochs - 1) * n
        assert est.max_epochs == 6  # the recipe itself is left as it was
    cox = CoxPHSurvivalAnalysis()
    assert bench.same_steps(cox, 250, 4000) is cox  # count baselines have no epochs


@pytest.mark.parametrize("flags, expected, recency", [
    ([], (0.25, 1.0, 4.0), None),  # the estimator's defaults
    (["--decay-scales", "0.5", "2"], (0.5, 2.0), None),
    (["--no-decay-sums", "--wide-recency", "1.5"], None, 1.5),
])
def test_decay_flags_reach_every_behrt_recipe_and_no_count_model(bench, flags, expected, recency):
    from survbehrt import BEHRTPretrainer, BEHRTSurvivalEstimator

    run = bench.Run(bench.parse_args(["--recipes", *bench.RECIPES, *flags]))
    pretrainers = {objective: BEHRTPretrainer() for objective in run.objectives()}
    models = run.recipes(0, pretrainers)
    behrt = {name: m for name, m in models.items() if isinstance(m, BEHRTSurvivalEstimator)}
    assert set(behrt) == set(bench.BEHRT_RECIPES)
    assert all(m.decay_scales == expected for m in behrt.values())
    assert all(m.wide_recency == recency for m in behrt.values())
    assert not any("decay_scales" in m.get_params() for name, m in models.items()
                   if name not in behrt)


def test_paired_differences_to_cox_against_a_loop(bench):
    rng = np.random.default_rng(0)
    rows = [dict(dataset="synthea-sample", recipe=r, n_labelled=n, seed=s, fold=f,
                 harrell_c=rng.uniform(0.6, 0.9), fit_s=1.0)
            for s in (3, 7) for f in (0, 1, 2) for n in (100, 250)
            for r in ("no-pretrain", "all-lora", "cox", "rsf")]
    part = pd.DataFrame(rows)
    table = bench.paired_to_cox(part)
    assert list(table.index) == ["no-pretrain", "all-lora"]  # BEHRT recipes only, in order
    c = {}
    for x in rows:
        key = (x["recipe"], x["n_labelled"], x["seed"], x["fold"])
        assert key not in c
        c[key] = x["harrell_c"]
    for recipe in ("no-pretrain", "all-lora"):
        for n in (100, 250):
            diffs = [c[recipe, n, s, f] - c["cox", n, s, f] for s in (3, 7) for f in (0, 1, 2)]
            above = sum(d > 0 for d in diffs)
            assert table.loc[recipe, n] == f"{sum(diffs) / len(diffs):+.3f} {above}/6"
    text = bench.format_table(part)
    assert "mean over 6 fold(s) of 2 seed(s)" in text and "cox, paired" in text
    # rows written before the fold column cannot be paired: no table, not a wrong one
    old = part.drop(columns="fold").assign(seed=part["fold"])
    assert bench.paired_to_cox(bench.with_folds(old)) is None
    assert "paired" not in bench.format_table(old)


def test_synthea_rows_name_their_seed_and_fold(bench):
    args = bench.parse_args(["--smoke", "--datasets", "synthea-sample", "--synthea-folds", "2",
                             "--sizes", "100000", "--recipes", "rsf", "--seeds", "0", "1"])
    run, written = bench.Run(args), []
    for seed in args.seeds:
        bench.run_dataset(run, "synthea-sample", seed,
                          lambda *row: written.append(row))
    keys = [(seed, fold, n) for _, recipe, n, seed, fold, _, _ in written]
    assert sorted({(seed, fold) for seed, fold, _ in keys}) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # one size per fold (all its patients: a small one may hold no event), none alike
    assert len(set(keys)) == len(keys) == 4


def test_targets_against_a_loop(bench):
    rng = np.random.default_rng(1)
    recipes = ("no-pretrain", "mlm-nv-lora", "tte-frozen", "all-lora", "cox", "rsf", "oracle")
    rows = [dict(dataset="synthetic-latent", recipe=r, n_labelled=n, seed=s, fold=0,
                 harrell_c=rng.uniform(0.6, 0.9), fit_s=1.0)
            for s in (0, 1) for n in (250, 1000, 4000) for r in recipes]
    for x in rows:  # the MLM + next-visit recipe the best at 1,000: the comparison below skips it
        x["harrell_c"] += 0.2 * (x["recipe"] == "mlm-nv-lora" and x["n_labelled"] == 1000)
    text = bench.format_targets(pd.DataFrame(rows))
    mean = {}
    for x in rows:  # the mean over seeds, from the definition
        mean.setdefault((x["recipe"], x["n_labelled"]), []).append(x["harrell_c"])
    mean = {k: sum(v) / len(v) for k, v in mean.items()}
    for n in (250, 1000, 4000):
        behrt = max(("no-pretrain", "mlm-nv-lora", "tte-frozen", "all-lora"),
                    key=lambda r: mean[r, n])
        count = max(("cox", "rsf"), key=lambda r: mean[r, n])
        assert f"{behrt} {mean[behrt, n]:.3f}" in text and f"{count} {mean[count, n]:.3f}" in text
        assert f"{mean[behrt, n] - mean[count, n]:+.3f}" in text
        assert f"{mean['oracle', n] - mean[behrt, n]:+.3f}" in text
    # the 1,000-label comparison takes the time-to-event recipes only (not mlm-nv-lora)
    tte = max(("tte-frozen", "all-lora"), key=lambda r: mean[r, 1000])
    assert (f"({tte} {mean[tte, 1000]:.3f}) minus no-pretrain with 4,000 "
            f"({mean['no-pretrain', 4000]:.3f}): "
            f"{mean[tte, 1000] - mean['no-pretrain', 4000]:+.3f}") in text
    # nothing to compare without a count model
    assert bench.format_targets(pd.DataFrame(rows).query("recipe not in ('cox', 'rsf')")) == ""
