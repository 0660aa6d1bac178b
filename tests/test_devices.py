"""The CPU path never touches CUDA: fit, predict, pre-training and LoRA with ``device="cpu"``.

Every public function of ``torch.cuda`` is replaced by one that raises when survbehrt
calls it, and CUDA's lazy initialisation (which every call that reaches the driver goes
through) raises whoever calls it. torch's own ``torch.manual_seed`` still queues a seed
for the GPUs through ``torch.cuda.manual_seed_all``: that call is deferred and touches
no device until CUDA is initialised, which is what is checked.
"""

import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from helpers import random_cohort, tiny_estimator, tiny_pretrainer

PACKAGE = Path(__file__).resolve().parent.parent / "survbehrt"


def _guard(name, fn):
    def guarded(*args, **kwargs):
        caller = Path(inspect.stack()[1].filename).resolve()
        if caller.is_relative_to(PACKAGE):
            raise AssertionError(f"torch.cuda.{name} called from {caller} on the CPU path")
        return fn(*args, **kwargs)

    return guarded


@pytest.fixture
def no_cuda(monkeypatch):
    for name, fn in vars(torch.cuda).items():
        if not name.startswith("_") and isinstance(fn, types.FunctionType):
            monkeypatch.setattr(torch.cuda, name, _guard(name, fn))

    def refuse(*args, **kwargs):
        raise AssertionError("CUDA initialised on the CPU path")

    monkeypatch.setattr(torch.cuda, "_lazy_init", refuse)


def test_cpu_fit_predict_pretrain_lora_make_no_cuda_call(no_cuda):
    X, y = random_cohort(n=40, seed=3)
    pre = tiny_pretrainer(device="cpu").fit(X)
    pre.transform(X)
    pre.score(X)
    est = tiny_estimator(device="cpu", pretrained=pre, strategy="lora", max_epochs=1,
                         validation_fraction=0.25, early_stopping="cindex").fit(X, y)
    est.predict(X)
    est.predict_survival_function(X.iloc[:3])
    est.predict_visit_risks(X.iloc[:3])
    tiny_estimator(device="cpu", max_epochs=1).fit(X, y).score(X, y)


def test_the_guard_catches_a_cuda_call(no_cuda):
    # the check can fail: survbehrt's own device helper asks CUDA under device="auto"
    from survbehrt.estimators._common import resolve_device

    with pytest.raises(AssertionError, match="is_available"):
        resolve_device("auto")


def test_gpu_throughput_benchmark_runs_on_cpu():
    script = PACKAGE.parent / "benchmarks" / "gpu_throughput.py"
    run = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--quick", "--presets", "small"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {line[:22].strip(): line[22:].split() for line in run.stdout.splitlines()
            if line.startswith(("survival ", "pre-training "))}
    assert set(rows) == {"survival small", "pre-training medium"}
    for label, cells in rows.items():
        tokens_s, flop_s, mfu = (float(cells[i].rstrip("%").replace(",", "")) for i in (1, 4, 5))
        assert tokens_s > 0 and flop_s > 0 and mfu > 0, (label, cells)
