"""Beyond one process: an Optuna study shared by two worker processes, joblib's process backend."""

import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from sklearn.model_selection import KFold, cross_val_score

from helpers import random_cohort, tiny_estimator

TESTS = Path(__file__).parent

WORKER = textwrap.dedent(
    """
    import os, sys, warnings
    warnings.simplefilter("ignore")
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    sys.path.insert(0, {tests!r})
    from helpers import random_cohort, tiny_estimator
    from survbehrt.tuning import optuna_objective

    X, y = random_cohort(n=60, seed=0)
    est = tiny_estimator(max_epochs=1)
    storage = JournalStorage(JournalFileBackend({journal!r}))
    study = optuna.load_study(study_name="shared", storage=storage)

    def space(trial):
        trial.set_user_attr("worker", os.getpid())
        return {{"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}}

    study.optimize(optuna_objective(est, X, y, space, cv=2), n_trials=2)
    """
)


def test_optuna_study_shared_by_two_processes(tmp_path):
    journal = str(tmp_path / "study.journal")
    storage = JournalStorage(JournalFileBackend(journal))
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS), journal=journal))
    workers = [subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
               for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()[-2000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both processes contributed
    assert len({t.number for t in done}) == 4
    assert all(np.isfinite(t.value) for t in done)


def test_cross_validation_on_joblib_process_backend():
    X, y = random_cohort(n=80, seed=1)
    cv = KFold(2, shuffle=True, random_state=0)
    est = tiny_estimator(max_epochs=1)
    serial = cross_val_score(est, X, y, cv=cv)
    with joblib.parallel_config(backend="loky", n_jobs=2):
        parallel = cross_val_score(est, X, y, cv=cv)
    np.testing.assert_array_equal(serial, parallel)
