"""Training under ``accelerate``: two CPU processes (torchrun, gloo) train one model.

The worker fits both estimators under an ``Accelerator`` in each of two processes and
writes what each process holds. Data-parallel training must leave every process with the
same weights; with ``split_batches=True`` and no dropout the two processes take the same
optimizer steps on the same rows as one process does, so the model matches a
one-process fit up to floating-point rounding (the half batches are padded and summed
differently, and Adam's normalised steps turn rounding on near-zero gradients into
steps of size ``lr``).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import accelerate  # noqa: F401  (the `distributed` extra, in `dev`: this test must not skip)
import numpy as np
from scipy.stats import spearmanr
from sksurv.metrics import concordance_index_censored

from helpers import random_cohort, tiny_estimator

TESTS = Path(__file__).parent
SURVIVAL = dict(dropout=0.0, max_epochs=3, validation_fraction=0.2, early_stopping="cindex",
                patience=2)
PRETRAINER = dict(max_epochs=2, early_stopping=True, patience=1)

WORKER = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    from accelerate import Accelerator, DataLoaderConfiguration
    sys.path.insert(0, {tests!r})
    from helpers import random_cohort, tiny_estimator, tiny_pretrainer

    out = {out!r}
    X, y = random_cohort(n=128, seed=0)
    # batch_size is the global batch: each process takes half of every batch
    split = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(split_batches=True))
    est = tiny_estimator(accelerator=split, **{survival!r}).fit(X, y)
    rank = split.process_index
    est.save(f"{{out}}/model.pt")  # the main process writes, the other returns
    # after fit nothing of the runtime is left: a plain history, and the estimator pickles
    import pickle
    from skorch.history import History
    assert type(est.history_) is History
    again = pickle.loads(pickle.dumps(est))
    assert np.array_equal(again.predict(X), est.predict(X))
    # accelerate's default: each process takes whole batches of batch_size
    pre = tiny_pretrainer(accelerator=Accelerator(cpu=True), **{pretrainer!r}).fit(X)
    np.savez(
        f"{{out}}/rank{{rank}}.npz",
        risk=est.predict(X),
        embedding=pre.transform(X),
        epochs=len(est.history_), pre_epochs=len(pre.history_),
        train_loss=np.asarray(est.history_[:, "train_loss"], dtype=float),
        world=split.num_processes,
        **{{f"w_{{k}}": v.numpy() for k, v in est.net_.module_.state_dict().items()}},
        **{{f"p_{{k}}": v.numpy() for k, v in pre.module_.state_dict().items()}},
    )
    """
)


def test_two_processes_train_one_model(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS), out=str(tmp_path), survival=SURVIVAL,
                                    pretrainer=PRETRAINER))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert int(ranks[0]["world"]) == 2
    # one model: every weight (and so every prediction) identical in both processes
    for name in ranks[0].files:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
    assert any(n.startswith("p_") for n in ranks[0].files)
    assert int(ranks[0]["epochs"]) >= 1 and int(ranks[0]["pre_epochs"]) >= 1
    # only the main process wrote the model, and it is the model both processes hold
    from survbehrt import BEHRTSurvivalEstimator

    X, y = random_cohort(n=128, seed=0)
    saved = BEHRTSurvivalEstimator.load(tmp_path / "model.pt")
    assert saved.accelerator is None
    np.testing.assert_allclose(saved.predict(X), ranks[0]["risk"], rtol=1e-6)

    # the same fit in one process, no accelerator
    one = tiny_estimator(**SURVIVAL).fit(X, y)
    assert len(one.history_) == int(ranks[0]["epochs"])
    np.testing.assert_allclose(one.history_[:, "train_loss"], ranks[0]["train_loss"], rtol=1e-2)
    risk_one, risk_two = one.predict(X), ranks[0]["risk"]
    assert spearmanr(risk_one, risk_two).statistic > 0.99
    c_one = concordance_index_censored(y["event"], y["time"], risk_one)[0]
    c_two = concordance_index_censored(y["event"], y["time"], risk_two)[0]
    assert abs(c_one - c_two) < 0.01
