"""The ``choose epochs`` step of ``fit`` with ``validation_folds``: the training length cross-fitted.

One held-out split of a small cohort chooses the epoch on a handful of events: with 250
labelled patients, the default tenth is 25 rows, and whether training beats its start
(the wide path's Cox fit, a pre-trained encoder's head) is decided by noise. With
``validation_folds=k`` the rows are split into ``k`` folds (patients kept whole,
stratified on the event); the model is trained ``k`` times, each early-stopped on its
fold, and the folds' per-epoch validation scores are averaged (epoch 0 is the start;
a fold that stopped early keeps its last score for the epochs it did not run). The
epoch count that scores best on the average is the one the final model, trained on
every row, runs for: every row votes on the epoch, and every row trains.

The folds' out-of-fold predictions at that epoch (each row predicted by the model that
did not train on it) are kept: the recalibration's slope is fitted on them, that is on
every row rather than on a tenth (the role ``CalibratedClassifierCV(ensemble=False)``
gives ``cross_val_predict`` in scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skorch.callbacks import Callback

from ._training import _last_visit_logits, batched_inference, net_device, net_module

__all__ = ["EpochChoice", "ValidationLogits", "choose_epochs"]


class ValidationLogits(Callback):
    """Keep the validation rows' last-visit logits at the start and after every epoch.

    Parameters
    ----------
    valid_dataset : EHRDataset
        The fold's validation rows.

    Attributes
    ----------
    logits_ : list of ndarray
        ``logits_[e]``: after epoch ``e`` (``e = 0``: the start).
    """

    def __init__(self, valid_dataset):
        self.valid_dataset = valid_dataset

    def _record(self, net):
        self.logits_.append(batched_inference(
            net_module(net), self.valid_dataset.tokens, _last_visit_logits,
            device=net_device(net), rows=self.valid_dataset.rows))

    def on_train_begin(self, net, **kwargs):
        self.logits_ = []
        self._record(net)

    def on_epoch_end(self, net, **kwargs):
        self._record(net)


@dataclass(frozen=True)
class EpochChoice:
    """What the folds chose.

    Attributes
    ----------
    epochs : int
        The epochs the final model trains for (0: its start is kept).
    curve : ndarray of shape (max_epochs + 1,)
        The folds' validation score per epoch (epoch 0: the start), averaged (a loss
        weighted by the folds' rows).
    fold_curves : ndarray of shape (k, max_epochs + 1)
        Each fold's score, its last one carried past the epoch it stopped at.
    fold_stops : ndarray of int
        The last epoch each fold ran.
    held_out : tuple of ndarray or None
        ``(logits, time, event)`` of every row, out of fold, at ``epochs`` (None when
        the logits were not kept).
    """

    epochs: int
    curve: np.ndarray
    fold_curves: np.ndarray
    fold_stops: np.ndarray
    held_out: tuple | None

    def as_dict(self) -> dict:
        """The choice as the estimator's ``epoch_choice_`` (no predictions)."""
        return {"epochs": self.epochs, "curve": self.curve, "fold_curves": self.fold_curves,
                "fold_stops": self.fold_stops}


def _carried(values: list, length: int) -> np.ndarray:
    """``values`` padded to ``length`` with its last entry."""
    out = np.full(length, values[-1], dtype=float)
    out[: len(values)] = values
    return out


def choose_epochs(fold_nets, monitor: str, lower_is_better: bool, max_epochs: int) -> EpochChoice:
    """The epoch count whose mean validation score over the folds is best.

    Parameters
    ----------
    fold_nets : list of (SurvivalNet, EHRDataset)
        Each fold's trained net (with an ``early_stopping`` callback that measured the
        start, and optionally a ``validation_logits`` one) and its validation rows.
    monitor : {"valid_loss", "valid_cindex"}
    lower_is_better : bool
    max_epochs : int

    Returns
    -------
    EpochChoice
        Ties go to the fewest epochs. A start score that is not finite (a fold's C-index
        without a comparable pair) counts as the worst.
    """
    worst = np.inf if lower_is_better else -np.inf
    curves, weights, stops, logits = [], [], [], []
    for net, valid in fold_nets:
        callbacks = dict(net.callbacks_)
        start = getattr(callbacks["early_stopping"], "start_score_", np.nan)
        scores = [start, *net.history[:, monitor]]
        scores = [s if np.isfinite(s) else worst for s in scores]
        curves.append(_carried(scores, max_epochs + 1))
        weights.append(len(valid) if monitor == "valid_loss" else 1)
        stops.append(len(scores) - 1)
        if "validation_logits" in callbacks:
            logits.append(callbacks["validation_logits"].logits_)
    curves = np.vstack(curves)
    curve = np.average(curves, axis=0, weights=weights)
    # an epoch where some fold is at its worst (infinite) cannot win, unless all are
    epochs = int(np.argmin(curve) if lower_is_better else np.argmax(curve))
    held_out = None
    if len(logits) == len(fold_nets):
        held_out = tuple(np.concatenate(parts) for parts in zip(*(
            (fold[min(epochs, len(fold) - 1)],
             np.asarray(valid.targets["time"], dtype=float),
             np.asarray(valid.targets["event"], dtype=bool))
            for fold, (_, valid) in zip(logits, fold_nets))))
    return EpochChoice(epochs, curve, curves, np.asarray(stops), held_out)
