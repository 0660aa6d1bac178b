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

__all__ = ["EpochChoice", "FoldScores", "ValidationLogits", "choose_epochs", "fold_scores"]


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
class FoldScores:
    """What choosing the epochs keeps of one fold's fit (the net itself is let go).

    Attributes
    ----------
    scores : list of float
        The validation score at the start and after each epoch the fold ran.
    n_rows : int
        The fold's validation rows.
    logits : list of ndarray or None
        Their last-visit logits at the same epochs (``validation_logits``), if kept.
    time, event : ndarray
        Their outcome.
    """

    scores: list
    n_rows: int
    logits: list | None
    time: np.ndarray
    event: np.ndarray


def fold_scores(net, valid, monitor: str) -> FoldScores:
    """The :class:`FoldScores` of a fold's trained ``net`` on its validation rows ``valid``.

    The start's score is the ``early_stopping`` callback's measurement before the first
    epoch (NaN if it could not be measured).
    """
    callbacks = dict(net.callbacks_)
    start = getattr(callbacks["early_stopping"], "start_score_", np.nan)
    keeper = callbacks.get("validation_logits")
    return FoldScores([start, *net.history[:, monitor]], len(valid),
                      None if keeper is None else keeper.logits_,
                      np.asarray(valid.targets["time"], dtype=float),
                      np.asarray(valid.targets["event"]))


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


def choose_epochs(folds, lower_is_better: bool, max_epochs: int,
                  weigh_rows: bool = True) -> EpochChoice:
    """The epoch count whose mean validation score over the folds is best.

    Parameters
    ----------
    folds : list of FoldScores
    lower_is_better : bool
    max_epochs : int
    weigh_rows : bool, default=True
        Weigh each fold by its rows (a loss, a mean over rows); else equally (a C-index).

    Returns
    -------
    EpochChoice
        Ties go to the fewest epochs. A score that is not finite (a fold's C-index
        without a comparable pair) counts as the worst.
    """
    worst = np.inf if lower_is_better else -np.inf
    curves = np.vstack([_carried([s if np.isfinite(s) else worst for s in fold.scores],
                                 max_epochs + 1) for fold in folds])
    weights = [fold.n_rows if weigh_rows else 1 for fold in folds]
    curve = np.average(curves, axis=0, weights=weights)
    epochs = int(np.argmin(curve) if lower_is_better else np.argmax(curve))
    held_out = None
    if all(fold.logits is not None for fold in folds):
        held_out = (np.concatenate([f.logits[min(epochs, len(f.logits) - 1)] for f in folds]),
                    np.concatenate([f.time for f in folds]),
                    np.concatenate([f.event for f in folds]) > 0)
    stops = np.array([len(fold.scores) - 1 for fold in folds])
    return EpochChoice(epochs, curve, curves, stops, held_out)
