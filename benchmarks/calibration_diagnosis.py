"""Where the BEHRT recipes' survival curves lose calibration, epoch by epoch.

Run: ``python benchmarks/calibration_diagnosis.py [--dataset synthetic] [--n-train 3200]
[--n-test 4000] [--recipes full lora frozen defaults] [--epochs 30] [--pretrain-epochs 15]
[--cv 5] [--params JSON] [--objective OBJ]``.

With ``--cv K`` it runs the benchmark's K folds of ``--n-train`` patients instead (its
folds, recipes and pooled D-calibration: each fold's bin counts summed) and scores every
fit twice, as trained (``recalibrate=False``) and recalibrated (the fit itself: one fit
serves both, as the recalibration only scales the hazards after training). To save the
per-fold pretraining, one pretrainer is fitted on an independent unlabelled cohort of
the same population (``random_state=7``; X only, never a test fold's). The pooled slope
and intercept are fitted on all test rows together.

One pretrainer is fitted on a training cohort (the benchmark's, ``make_pretrainer``, its
objective replaced by ``--objective`` when given);
each recipe is the benchmark's (``make_models``: BEHRT-full, -lora, -frozen with the
pretrainer) or the estimator's defaults without pre-training (``defaults``), or a
variant (``full-nopre``, ``full-hybrid``: the hybrid loss at its default ranking weight).
Every epoch's weights are kept (a callback) and scored afterwards on the validation rows
the fit held out and on an independent test cohort (another seed of the same population;
``--dataset synthea-sample``: the patients of the sample not in training, grouped):
the validation NLL and C, the calibration slope and intercept
(:mod:`survbehrt.recalibration`: Poisson fit of the events with offset ``log H_i(t_i)``
on the centred log risk; calibrated = slope 1, intercept 0) on both, the test C and the
test D-calibration p. The epoch early stopping restored (``*``) and the NLL-best epoch
(``n``) are marked; the rows are the weights as trained (``recalibrate=False``); last, the
fitted estimator itself (``recalibrate=True``: the restored epoch recalibrated on the
validation rows).
"""

import argparse
import copy
import json
import time
import warnings

import numpy as np
import torch
from sklearn.base import clone
from sklearn.model_selection import GroupShuffleSplit
from skorch.callbacks import Callback

from survbehrt import BEHRTSurvivalEstimator
from survbehrt.benchmark import (
    BenchmarkSettings,
    load_benchmark_data,
    make_folds,
    make_models,
    make_pretrainer,
)
from survbehrt.estimators._calibration import PENALTY
from survbehrt.estimators._training import _last_visit_logits, batched_inference
from survbehrt.losses import survival_nll
from survbehrt.metrics import d_calibration, harrell_c
from survbehrt.recalibration import MIN_SLOPE, calibration_of_logits
from survbehrt.survival import risk_score, survival_at


class KeepEpochs(Callback):
    """Keep a copy of the module's weights at the start and after every epoch."""

    def on_train_begin(self, net, **kwargs):
        self.states = [copy.deepcopy(net.module_.state_dict())]

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        self.valid = dataset_valid
        self.states.append(copy.deepcopy(net.module_.state_dict()))


def scores(logits, cuts, max_time, time_, event):
    """NLL, C, calibration (intercept, slope) and D-calibration p of one set of logits."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    t = np.minimum(time_, max_time)
    d = event & (time_ <= max_time)
    nll = float(survival_nll(logits, torch.as_tensor(t), torch.as_tensor(d), cuts))
    cal = calibration_of_logits(logits.numpy(), cuts, time_, event, max_time=max_time)
    surv = survival_at(logits, cuts, torch.as_tensor(t)).numpy()
    y = np.array(list(zip(event, time_)), dtype=[("event", bool), ("time", float)])
    return dict(nll=nll, c=harrell_c(y, risk_score(logits.numpy())), a=cal.intercept,
                slope=cal.slope, dcal=d_calibration(y, surv).p_value)


def split(args):
    X, y, _ = load_benchmark_data(args.dataset, n_patients=args.n_train, random_state=0)
    if args.dataset == "synthea-sample":
        groups = X.index.get_level_values("subject_id")
        train, test = next(GroupShuffleSplit(1, test_size=0.5, random_state=0).split(X, y, groups))
        return X.iloc[train], y[train], X.iloc[test], y[test]
    X_test, y_test, _ = load_benchmark_data(args.dataset, n_patients=args.n_test, random_state=999)
    return X, y, X_test, y_test


def recipes(args, pretrainer):
    settings = BenchmarkSettings(dataset=args.dataset, epochs=args.epochs,
                                 pretrain_epochs=args.pretrain_epochs, n_threads=1).resolved()
    bench = make_models(settings)
    out = {}
    for name in args.recipes:
        if name in ("full", "lora", "frozen"):
            out[name] = clone(bench[f"BEHRT-{name}"]).set_params(pretrained=pretrainer)
        elif name == "full-nopre":
            out[name] = clone(bench["BEHRT-full"])
        elif name == "full-hybrid":
            out[name] = clone(bench["BEHRT-full"]).set_params(pretrained=pretrainer, loss="hybrid")
        elif name == "defaults":
            out[name] = BEHRTSurvivalEstimator(random_state=0, n_threads=1)
    for est in out.values():
        est.set_params(**args.params)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--n-train", type=int, default=3200)
    parser.add_argument("--n-test", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--recipes", nargs="+", default=["full", "lora", "frozen", "defaults"])
    parser.add_argument("--cv", type=int, default=0)
    parser.add_argument("--params", type=json.loads, default={},
                        help='JSON estimator parameters set on every recipe, e.g. '
                        '\'{"early_stopping": "loss"}\'')
    parser.add_argument("--objective", help="the pretrainer's objective instead of the "
                        "benchmark's (e.g. mlm+next_visit+tte)")
    parser.add_argument("--pretrainer", help="a file: loaded when it exists, else written "
                        "after fitting (so that parallel runs share one pretrainer)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(1)
    if args.cv:
        return cross_validated(args)
    X, y, X_test, y_test = split(args)
    print(f"{args.dataset}: train {len(X)} rows ({y['event'].sum()} events), "
          f"test {len(X_test)} rows ({y_test['event'].sum()} events)")
    pretrainer = None
    if any(r in args.recipes for r in ("full", "lora", "frozen", "full-hybrid")):
        pretrainer = fit_pretrainer(args, X)
    event_test, time_test = y_test["event"], y_test["time"]
    for name, est in recipes(args, pretrainer).items():
        keep = KeepEpochs()
        t0 = time.perf_counter()
        est.set_params(callbacks=[("keep", keep)]).fit(X, y)
        grid, module = est.time_grid_, est.net_.module_
        cuts, max_time = grid.cuts_, grid.max_time_
        valid = keep.valid
        ev, tv = np.asarray(valid.targets["event"], bool), np.asarray(valid.targets["time"], float)
        best = est.net_.callbacks_  # the restored epoch
        restored = dict(best)["early_stopping"].best_epoch_ if "early_stopping" in dict(best) else None
        print(f"\n{name}: {len(est.history_)} epochs, fit {time.perf_counter() - t0:.0f} s, "
              f"restored epoch {restored}")
        print(f"{'epoch':>5} {'val NLL':>8} {'val C':>6} {'val a':>6} {'val sl':>6} "
              f"{'test C':>6} {'test a':>6} {'test sl':>7} {'D-cal p':>7}")
        final, calibration = copy.deepcopy(module.state_dict()), module.calibration
        module.calibration = None  # every epoch as trained (recalibrate=False)
        rows = []
        for state in keep.states:
            module.load_state_dict(state)
            lv = batched_inference(module, valid.tokens, _last_visit_logits, rows=valid.rows)
            rows.append((scores(lv, cuts, max_time, tv, ev),
                         scores(est._last_visit_logits(X_test), cuts, max_time, time_test,
                                event_test)))
        nll_best = int(np.argmin([v["nll"] for v, _ in rows]))
        for epoch, (v, t) in enumerate(rows):
            mark = ("*" if epoch == restored else " ") + ("n" if epoch == nll_best else " ")
            print(f"{epoch:>3}{mark} {v['nll']:>8.4f} {v['c']:>6.3f} {v['a']:>6.2f} "
                  f"{v['slope']:>6.2f} {t['c']:>6.3f} {t['a']:>6.2f} {t['slope']:>7.2f} "
                  f"{t['dcal']:>7.3f}")
        module.load_state_dict(final)
        module.calibration = calibration
        fit = est.calibration_
        t = scores(est._last_visit_logits(X_test), cuts, max_time, time_test, event_test)
        print(f"recalibrated on the validation rows (a {fit['intercept']:.2f}, slope "
              f"{fit['slope']:.2f}, {fit['n_events']} events): test C {t['c']:.3f}, "
              f"a {t['a']:.2f}, slope {t['slope']:.2f}, D-cal p {t['dcal']:.3f}", flush=True)


def fit_pretrainer(args, X):
    from pathlib import Path

    from survbehrt import BEHRTPretrainer

    if args.pretrainer and Path(args.pretrainer).exists():
        print(f"pretrainer loaded from {args.pretrainer}", flush=True)
        return BEHRTPretrainer.load(args.pretrainer)
    t0 = time.perf_counter()
    settings = BenchmarkSettings(pretrain_epochs=args.pretrain_epochs, n_threads=1).resolved()
    pretrainer = make_pretrainer(settings)
    if args.objective:
        pretrainer.set_params(objective=args.objective)
    pretrainer.fit(X)
    print(f"pretrainer: {args.pretrain_epochs} epochs in {time.perf_counter() - t0:.0f} s",
          flush=True)
    if args.pretrainer:
        pretrainer.save(args.pretrainer)
    return pretrainer


def cross_validated(args):
    X, y, _ = load_benchmark_data(args.dataset, n_patients=args.n_train, random_state=0)
    pretrainer = None
    if any(r != "defaults" and r != "full-nopre" for r in args.recipes):
        X_pre = (X if args.dataset == "synthea-sample" else
                 load_benchmark_data(args.dataset, n_patients=args.n_train, random_state=7)[0])
        pretrainer = fit_pretrainer(args, X_pre)
    folds = make_folds(X, y["event"], args.cv, random_state=0)
    print(f"{args.dataset}: {len(X)} rows, {y['event'].sum()} events, {args.cv} folds")
    print("per fold, test a / slope / D-cal p: as trained | valid a+slope (both on the "
          "validation rows) | slope+level (slope on the validation rows, level on all fitted "
          "rows); then the fitted intercepts of the two and the slope")
    for name in args.recipes:
        pooled = {}
        for k, (train, test) in enumerate(folds):
            est = recipes(args, pretrainer)[name]
            keep = KeepEpochs()  # for the validation rows
            est.set_params(callbacks=[("keep", keep)]).fit(X.iloc[train], y[train])
            module, grid = est.net_.module_, est.time_grid_
            calibration = module.calibration  # the estimator's: slope+level
            module.calibration = None
            valid = keep.valid
            lv = batched_inference(module, valid.tokens, _last_visit_logits, rows=valid.rows)
            fit = calibration_of_logits(lv, grid.cuts_, np.asarray(valid.targets["time"], float),
                                        np.asarray(valid.targets["event"], bool),
                                        max_time=grid.max_time_, penalty=PENALTY,
                                        min_slope=MIN_SLOPE)
            variants = {"as trained": None,
                        "valid a+slope": (fit.intercept, fit.slope, fit.center),
                        "slope+level": calibration}
            out = {}
            for variant, value in variants.items():
                module.calibration = value
                logits = est._last_visit_logits(X.iloc[test])
                out[variant] = scores(logits, grid.cuts_, grid.max_time_,
                                      y["time"][test], y["event"][test])
                pooled.setdefault(variant, []).append((logits, grid, test))
            module.calibration = calibration
            print(f"{name:>12} {k:>4} {out['as trained']['c']:>6.3f} "
                  + " ".join(f"| {v['a']:>6.2f} {v['slope']:>6.2f} {v['dcal']:>7.3f}"
                             for v in out.values())
                  + " | " + " ".join(f"{c[0]:>6.2f}" for c in variants.values() if c)
                  + f" {calibration[1] if calibration else np.nan:>6.2f}", flush=True)
        for variant, parts in pooled.items():
            print(f"{name:>12} pooled {variant:>13}: " + pooled_scores(parts, y), flush=True)


def pooled_scores(parts, y):
    """Pooled D-calibration (summed bin counts), pooled slope and intercept, mean fold C."""
    from scipy import stats

    from survbehrt.recalibration import fit_calibration
    from survbehrt.survival import cumulative_hazard_at

    counts, d_all, H_all, x_all, cs = 0, [], [], [], []
    for logits, grid, test in parts:
        tt, ee = y["time"][test], y["event"][test]
        t = np.minimum(tt, grid.max_time_)
        d = ee & (tt <= grid.max_time_)
        lg = torch.as_tensor(logits, dtype=torch.float64)
        surv = survival_at(lg, grid.cuts_, torch.as_tensor(t)).numpy()
        yy = np.array(list(zip(ee, tt)), dtype=[("event", bool), ("time", float)])
        counts = counts + d_calibration(yy, surv).counts
        d_all.append(d)
        H_all.append(cumulative_hazard_at(lg, grid.cuts_, torch.as_tensor(t)).numpy())
        x_all.append(np.log(risk_score(lg.numpy())))
        cs.append(harrell_c(yy, risk_score(lg.numpy())))
    fit = fit_calibration(np.concatenate(d_all), np.concatenate(H_all), np.concatenate(x_all))
    p = stats.chisquare(counts).pvalue
    return (f"mean C {np.mean(cs):.3f}, a {fit.intercept:.2f}, slope {fit.slope:.2f}, "
            f"pooled D-cal p {p:.3f} on {int(round(counts.sum()))} patients")


if __name__ == "__main__":
    main()
