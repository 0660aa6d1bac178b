"""The benchmark's C intervals: a bootstrap within folds, by subject, paired across models."""

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from survbehrt.benchmark.uncertainty import (
    c_intervals,
    fold_mean_c,
    reference_model,
    stratified_counts,
)
from survbehrt.metrics import harrell_c


def loop_harrell(event, time, risk):
    """Harrell's C from the definition: i an event, j later (or censored at i's time)."""
    num = den = 0.0
    for i in range(len(time)):
        if not event[i]:
            continue
        for j in range(len(time)):
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def cohort(seed=0, folds=3, per_fold=24):
    """Rows in folds, two rows for some subjects (within a fold), tied times and risks."""
    rng = np.random.default_rng(seed)
    n = folds * per_fold
    fold = np.repeat(np.arange(folds), per_fold)
    subject = np.array([f"s{f}-{i // 2 if i < 8 else i}" for f in range(folds) for i in range(per_fold)])
    time = rng.integers(1, 12, size=n).astype(float)
    event = rng.random(n) < 0.5
    event[::per_fold] = True  # every fold has events
    return fold, subject, event, time, rng


def test_fold_mean_c_is_each_folds_c_averaged_on_every_resample():
    fold, subject, event, time, rng = cohort()
    risks = [rng.integers(0, 6, size=len(time)).astype(float), time * -1 + rng.normal(size=len(time))]
    strata = stratified_counts(fold, subject, n_boot=15, random_state=1)
    estimates, reps = fold_mean_c(event, time, risks, strata)
    y = Surv.from_arrays(event, time)
    for k, risk in enumerate(risks):
        per_fold = [harrell_c(y[fold == f], risk[fold == f]) for f in range(3)]
        assert estimates[k] == pytest.approx(np.mean(per_fold))
        for b in range(15):
            values = []
            for rows, counts in strata:
                idx = np.repeat(rows, counts[b])
                values.append(loop_harrell(event[idx], time[idx], risk[idx]))
            assert reps[k, b] == pytest.approx(np.mean(values))
    # each fold's own scale: shifting one fold's risks changes nothing (a pooled C would)
    shifted = [r + 100.0 * (fold == 1) for r in risks]
    estimates2, reps2 = fold_mean_c(event, time, shifted, strata)
    np.testing.assert_allclose(estimates2, estimates)
    np.testing.assert_allclose(reps2, reps)


def test_stratified_counts_draw_whole_subjects_within_their_fold():
    fold, subject, _, _, _ = cohort(folds=2, per_fold=20)
    strata = stratified_counts(fold, subject, n_boot=300, random_state=0)
    assert [rows.tolist() for rows, _ in strata] == [list(range(20)), list(range(20, 40))]
    for rows, counts in strata:
        subjects = subject[rows]
        first = {s: int(np.flatnonzero(subjects == s)[0]) for s in np.unique(subjects)}
        for s, i in first.items():  # a subject's rows come together
            assert (counts[:, subjects == s] == counts[:, [i]]).all()
        # as many subjects drawn as the fold holds
        drawn = sum(counts[:, i] for i in first.values())
        assert (drawn == len(first)).all()
    ungrouped = stratified_counts(fold, None, n_boot=50, random_state=0)
    assert all((counts.sum(axis=1) == len(rows)).all() for rows, counts in ungrouped)
    assert not (strata[0][1] == strata[1][1]).all()  # folds drawn independently


def frame(models, fold, subject, event, time):
    return pd.concat([pd.DataFrame({"model": name, "fold": fold, "row": np.arange(len(fold)),
                                    "event": event, "time": time, "risk": risk, "group": subject})
                      for name, risk in models.items()], ignore_index=True)


def test_c_intervals_pair_the_models_on_the_same_resamples():
    fold, subject, event, time, rng = cohort(seed=3)
    signal = -time + rng.normal(scale=3, size=len(time))
    models = {"CoxPH": signal, "RSF": signal + rng.normal(scale=2, size=len(time)),
              "GBS": rng.normal(size=len(time)), "Cox-age": -time,
              "BEHRT-lora": signal + rng.normal(scale=0.5, size=len(time))}
    predictions = frame(models, fold, subject, event, time).sample(frac=1, random_state=0)
    summary = pd.DataFrame({"harrell_c_mean": [harrell_c(Surv.from_arrays(event, time), r)
                                               for r in models.values()]}, index=list(models))
    reference = reference_model(summary)
    # the best of CoxPH / RSF / GBS by C; Cox-age (the best here) is no count baseline
    count = summary.loc[["CoxPH", "RSF", "GBS"], "harrell_c_mean"]
    assert reference == count.idxmax() and summary["harrell_c_mean"].idxmax() == "Cox-age"
    out = c_intervals(predictions, reference=reference, n_boot=40, random_state=5)
    # the reference: the same resamples as c_intervals draws (rows sorted by fold and row)
    strata = stratified_counts(fold, subject, 40, 5)
    reps = {}
    for name, risk in models.items():
        reps[name] = np.array([np.mean([loop_harrell(event[np.repeat(rows, c[b])], time[np.repeat(rows, c[b])],
                                                     risk[np.repeat(rows, c[b])]) for rows, c in strata])
                               for b in range(40)])
        per_fold = np.mean([harrell_c(Surv.from_arrays(event[fold == f], time[fold == f]),
                                      risk[fold == f]) for f in range(3)])
        assert out.loc[name, "harrell_c_estimate"] == pytest.approx(per_fold)
        assert out.loc[name, ["harrell_c_lower", "harrell_c_upper"]].tolist() == pytest.approx(
            np.quantile(reps[name], [0.025, 0.975]))
    for name in models:
        diff = reps[name] - reps[reference]
        assert out.loc[name, "harrell_c_diff"] == pytest.approx(
            out.loc[name, "harrell_c_estimate"] - out.loc[reference, "harrell_c_estimate"])
        assert out.loc[name, ["harrell_c_diff_lower", "harrell_c_diff_upper"]].tolist() == pytest.approx(
            np.quantile(diff, [0.025, 0.975]))
    assert (out.loc[reference, ["harrell_c_diff", "harrell_c_diff_lower", "harrell_c_diff_upper"]] == 0).all()
    assert (out["reference"] == reference).all()
    assert np.isnan(c_intervals(predictions, n_boot=5)["harrell_c_diff"]).all()


def test_c_intervals_refuse_models_scored_on_different_rows():
    fold, subject, event, time, rng = cohort()
    predictions = frame({"a": rng.normal(size=len(time)), "b": rng.normal(size=len(time))},
                        fold, subject, event, time)
    predictions.loc[predictions.index[-1], "row"] = 999
    with pytest.raises(ValueError, match="'b' was not scored on the same rows"):
        c_intervals(predictions, n_boot=5)


@pytest.mark.slow
def test_the_interval_covers_the_population_c():
    """Known truth: exponential times with hazard exp(x), censoring uniform; the population
    C of the true risk x is the C on a very large sample. The 95 % interval of the mean
    fold C (3 folds of 150) covers it in about 95 % of 200 repetitions."""
    rng = np.random.default_rng(0)

    def draw(n):
        x = rng.normal(size=n)
        t, c = rng.exponential(np.exp(-x)), rng.uniform(0, 3, size=n)
        return x, np.minimum(t, c), t <= c

    big = [draw(4000) for _ in range(5)]
    truth = np.mean([harrell_c(Surv.from_arrays(e, t), x) for x, t, e in big])
    covered = 0
    for rep in range(200):
        x, t, e = draw(450)
        fold = np.repeat(np.arange(3), 150)
        predictions = pd.DataFrame({"model": "m", "fold": fold, "row": np.arange(450),
                                    "event": e, "time": t, "risk": x})
        out = c_intervals(predictions, n_boot=300, random_state=rep)
        covered += out.loc["m", "harrell_c_lower"] <= truth <= out.loc["m", "harrell_c_upper"]
    assert 0.91 <= covered / 200 <= 0.98


def test_an_interrupted_run_s_unfinished_fold_is_left_out():
    fold, subject, event, time, rng = cohort()
    a, b = rng.normal(size=len(time)), rng.normal(size=len(time))
    predictions = frame({"a": a, "b": b}, fold, subject, event, time)
    # the run stopped in fold 2 after model a: b has no fold-2 rows
    cut = predictions[~((predictions["model"] == "b") & (predictions["fold"] == 2))]
    out = c_intervals(cut, reference="a", n_boot=5)
    for name, risk in (("a", a), ("b", b)):
        per_fold = [harrell_c(Surv.from_arrays(event[fold == f], time[fold == f]), risk[fold == f])
                    for f in (0, 1)]
        assert out.loc[name, "harrell_c_estimate"] == pytest.approx(np.mean(per_fold))
