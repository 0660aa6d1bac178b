"""Beyond one process: Optuna studies shared by worker processes (a journal file, an RDB URL
with pruning), joblib's process backend, and a Dask cluster (joblib's ``dask`` backend)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import optuna
from dask.distributed import Client, LocalCluster
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate

from helpers import random_cohort, tiny_estimator

TESTS = Path(__file__).parent

WORKER = textwrap.dedent(
    """
    import os, sys, warnings
    warnings.simplefilter("ignore")
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend
    sys.path.insert(0, {tests!r})
    from helpers import random_cohort, tiny_estimator
    from survbehrt.tuning import optuna_objective


    class DoomedPruner(optuna.pruners.BasePruner):
        # a verdict known in advance, read back from the shared storage: the trials
        # marked doomed are pruned at their first report (after the first fold),
        # whichever process runs them
        def prune(self, study, trial):
            return trial.user_attrs["doomed"]


    X, y = random_cohort(n=60, seed=0)
    est = tiny_estimator(max_epochs=1)
    storage = {storage}
    study = optuna.load_study(study_name="shared", storage=storage, pruner=DoomedPruner())

    def space(trial):
        trial.set_user_attr("worker", os.getpid())
        trial.set_user_attr("doomed", {doomed})
        return {{"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}}

    study.optimize(optuna_objective(est, X, y, space, cv=2), n_trials={n_trials})
    """
)


def run_workers(tmp_path, storage: str, doomed: str, n_trials: int, n_workers: int = 2):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS), storage=storage, doomed=doomed,
                                    n_trials=n_trials))
    workers = [subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
               for _ in range(n_workers)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()[-2000:]


def test_optuna_study_shared_by_two_processes(tmp_path):
    journal = str(tmp_path / "study.journal")
    storage = JournalStorage(JournalFileBackend(journal))
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    run_workers(tmp_path, f"JournalStorage(JournalFileBackend({journal!r}))", "False", 2)
    study = optuna.load_study(study_name="shared", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both processes contributed
    assert len({t.number for t in done}) == 4
    assert all(np.isfinite(t.value) for t in done)


def test_optuna_study_on_an_rdb_url_with_pruning(tmp_path):
    # SQLite stands in for PostgreSQL / MySQL: the same URL-based RDBStorage; the timeout
    # lets a process wait for the other's write lock
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = f"RDBStorage({url!r}, engine_kwargs={{'connect_args': {{'timeout': 60}}}})"
    optuna.create_study(study_name="shared", storage=url, direction="maximize")
    run_workers(tmp_path, storage, "trial.number % 2 == 1", 3)
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert len(trials) == 6 and len({t.number for t in trials}) == 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert sum(t.user_attrs["doomed"] for t in trials) == 3  # numbers 1, 3, 5
    for t in trials:
        if t.user_attrs["doomed"]:  # pruned after the first fold: one intermediate value
            assert t.state == optuna.trial.TrialState.PRUNED
            assert list(t.intermediate_values) == [0]
        else:  # both folds reported, then the mean of the two scores
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert list(t.intermediate_values) == [0, 1]
            assert t.value == np.mean(t.user_attrs["cv_scores"])


def test_cross_validation_on_joblib_process_backend():
    X, y = random_cohort(n=80, seed=1)
    cv = KFold(2, shuffle=True, random_state=0)
    est = tiny_estimator(max_epochs=1)
    serial = cross_val_score(est, X, y, cv=cv)
    with joblib.parallel_config(backend="loky", n_jobs=2):
        parallel = cross_val_score(est, X, y, cv=cv)
    np.testing.assert_array_equal(serial, parallel)


def test_search_and_cross_validation_on_a_dask_cluster():
    X, y = random_cohort(n=60, seed=2)
    cv = KFold(2, shuffle=True, random_state=0)
    est = tiny_estimator(max_epochs=1)
    grid = {"lr": [1e-3, 1e-2]}
    serial_search = GridSearchCV(est, grid, cv=cv).fit(X, y)
    serial_cv = cross_validate(est, X, y, cv=cv)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with joblib.parallel_config(backend="dask", n_jobs=-1):
            search = GridSearchCV(est, grid, cv=cv).fit(X, y)
            scores = cross_validate(est, X, y, cv=cv)
        # the fits ran on the cluster's worker processes
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                  serial_search.cv_results_["mean_test_score"])
    assert search.best_params_ == serial_search.best_params_
    np.testing.assert_array_equal(search.predict(X), serial_search.predict(X))
    np.testing.assert_array_equal(scores["test_score"], serial_cv["test_score"])
