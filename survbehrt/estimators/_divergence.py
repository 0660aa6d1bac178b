"""Stop a diverged fit with a clear warning and keep the last weights that were finite.

At too high a learning rate the weights of a transformer overflow within a few steps;
the loss, then every prediction, is NaN, and the first consumer of the predictions (the
validation C-index, scikit-survival) fails with words about its input, not about the
training. :class:`DivergenceGuard` checks every batch's loss and predictions and the
weights at each epoch's end; at the first non-finite value it stops training (skorch's
``KeyboardInterrupt``, as early stopping does), restores the weights of the last epoch
that ended finite (the start when none did) and warns, naming the learning rate and the
epoch. Early stopping, listed after it, then restores its own best epoch where it has
one, so a fit keeps the best finite state it measured.
"""

from __future__ import annotations

import copy
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from skorch.callbacks import Callback, EarlyStopping

__all__ = ["DivergenceGuard"]


def _finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    return True


def _bare(weights: dict) -> dict:
    # weights copied while an accelerator had the module wrapped carry "module."
    if weights and all(k.startswith("module.") for k in weights):
        return {k[len("module."):]: v for k, v in weights.items()}
    return weights


class DivergenceGuard(Callback):
    """Stop at the first non-finite loss, prediction or weight; keep the last finite weights.

    Warns with a :class:`sklearn.exceptions.ConvergenceWarning` that names the
    learning rate (as set, and the schedule's current one), the epoch and what was
    not finite, and which weights the fit keeps.

    Attributes
    ----------
    diverged_ : str or None
        What diverged, e.g. ``"non-finite training loss at epoch 2, batch 5"``; None when
        training stayed finite.
    """

    def on_train_begin(self, net, **kwargs):
        self.diverged_ = None
        self._kept_epoch = 0  # skorch counts epochs from 1: 0 is the start
        self._weights = copy.deepcopy(net.module_.state_dict())
        self._batches = {True: 0, False: 0}

    def on_epoch_begin(self, net, **kwargs):
        self._batches = {True: 0, False: 0}

    def on_batch_end(self, net, batch=None, training=None, loss=None, y_pred=None, **kwargs):
        self._batches[bool(training)] += 1
        for name, value in (("loss", loss), ("predictions", y_pred)):
            if not _finite(value):
                phase = "training" if training else "validation"
                self._stop(net, f"non-finite {phase} {name} at epoch {self._epoch(net)}, "
                                f"batch {self._batches[bool(training)]}")

    def on_epoch_end(self, net, **kwargs):
        # before the validation C-index, which would fail on NaN predictions
        state = net.module_.state_dict()
        if not _finite(state):
            self._stop(net, f"non-finite weights at the end of epoch {self._epoch(net)}")
        self._weights = copy.deepcopy(state)
        self._kept_epoch = self._epoch(net)

    def on_train_end(self, net, **kwargs):
        if self.diverged_ is None:
            return
        net.module_.load_state_dict(_bare(self._weights))
        kept = self._kept_epoch
        early = [cb for _, cb in getattr(net, "callbacks_", ())
                 if isinstance(cb, EarlyStopping) and cb.load_best
                 and getattr(cb, "best_model_weights_", None) is not None]
        if early:  # it restores its best epoch after this callback
            kept = early[0].best_epoch_
        current = net.optimizer_.param_groups[0]["lr"] if hasattr(net, "optimizer_") else net.lr
        where = "the starting weights" if kept == 0 else f"the weights of epoch {kept}"
        warnings.warn(
            f"Training diverged at lr={net.lr:g} (the schedule's rate then {current:.3g}): "
            f"{self.diverged_}. Training stopped there and the fit keeps "
            f"{where}, the best finite state; lower lr (or gradient_clip) to train further.",
            ConvergenceWarning,
            stacklevel=2,
        )

    @staticmethod
    def _epoch(net) -> int:
        return int(net.history[-1, "epoch"]) if len(net.history) else 0

    def _stop(self, net, what: str):
        self.diverged_ = what
        raise KeyboardInterrupt  # skorch's signal to end training (then on_train_end runs)
