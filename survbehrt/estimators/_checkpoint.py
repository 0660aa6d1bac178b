"""Per-epoch checkpoints that let an interrupted pre-training fit resume (skorch underneath).

skorch's :class:`~skorch.callbacks.Checkpoint` writes the weights, the optimizer state
and the history after every epoch; :class:`~skorch.callbacks.LoadInitState` reads them
back when the next ``fit`` begins. Two things make the resumed fit continue the
interrupted one rather than start over on its weights: it runs only the epochs left
(the caller sets ``max_epochs``), and the per-batch learning-rate schedule restarts at
the step it had reached (skorch would count epochs, not batches).
"""

from __future__ import annotations

import json
from pathlib import Path

from skorch.callbacks import Checkpoint, LoadInitState

__all__ = ["checkpoint_callbacks", "checkpointed_epochs"]

_HISTORY = "history.json"


def checkpointed_epochs(dirname) -> int:
    """Epochs recorded by the checkpoint in ``dirname`` (0 when there is none)."""
    path = Path(dirname) / _HISTORY
    if not path.exists():
        return 0
    with open(path) as f:
        return len(json.load(f))


def checkpoint_callbacks(dirname, callbacks: list, done_epochs: int, steps_per_epoch: int) -> list:
    """``callbacks`` with a loader first and a per-epoch checkpoint last.

    Parameters
    ----------
    dirname : str or path-like
        The checkpoint folder (created when missing).
    callbacks : list of (str, skorch.callbacks.Callback)
        From :func:`~survbehrt.estimators._training.standard_callbacks`; its
        ``lr_schedule`` is moved to step ``done_epochs * steps_per_epoch``.
    done_epochs : int
        Epochs the checkpoint holds (:func:`checkpointed_epochs`).
    steps_per_epoch : int
        Batches per training epoch.

    Returns
    -------
    list of (str, skorch.callbacks.Callback)
    """
    Path(dirname).mkdir(parents=True, exist_ok=True)
    checkpoint = Checkpoint(monitor=None, dirname=str(dirname), f_criterion=None, f_history=_HISTORY)
    for name, callback in callbacks:
        if name == "lr_schedule" and done_epochs:
            # LambdaLR(last_epoch=n - 1) resumes at step n (the optimizer state it needs,
            # 'initial_lr', is loaded first by LoadInitState)
            callback.last_epoch = done_epochs * steps_per_epoch - 1
    return [("resume", LoadInitState(checkpoint)), *callbacks, ("checkpoint", checkpoint)]
