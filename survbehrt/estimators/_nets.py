"""The skorch net an estimator trains: its arguments, callbacks and criterion, and ``train``.

Both estimators build their net here (:func:`survival_net`, :func:`pretraining_net`)
from the pieces in ``_training.py`` (the nets, loaders and callbacks) and, with an
``accelerator``, the accelerated nets of ``_accelerate.py``; :func:`train` fits it.
This module sits above both, so that neither imports the other (``_accelerate.py``
subclasses the nets of ``_training.py``).
"""

from __future__ import annotations

import torch
from skorch.helper import predefined_split

from ..model.tte import objective_parts
from ._checkpoint import checkpoint_callbacks
from ._common import resolve_device
from ._training import (
    BucketedLoader,
    EarlyStoppingFromStart,
    PretrainingCriterion,
    PretrainingNet,
    SurvivalNet,
    ValidationConcordance,
    global_batch_size,
    progress_callbacks,
    standard_callbacks,
)

__all__ = ["net_arguments", "pretraining_net", "survival_callbacks", "survival_net", "train"]


def net_arguments(estimator, seed: int, callbacks: list, train_split=None) -> dict:
    """The skorch ``NeuralNet`` arguments both estimators share.

    AdamW with the estimator's ``lr`` / ``weight_decay``, ``max_epochs``, ``batch_size``,
    length-bucketed training batches in a fresh order each epoch (seeded), validation
    batches in dataset order, the device and the verbosity. With an ``accelerator``,
    also the accelerated net's arguments
    (:func:`survbehrt.estimators._accelerate.accelerator_arguments`).

    Parameters
    ----------
    estimator : BEHRTSurvivalEstimator or BEHRTPretrainer
        Read for its training parameters.
    seed : int
        Seeds the batch order.
    callbacks : list of (str, skorch.callbacks.Callback)
    train_split : callable, optional
        skorch's ``train_split`` (e.g. ``predefined_split(valid_dataset)``).

    Returns
    -------
    dict
    """
    args = dict(
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=estimator.weight_decay,
        lr=estimator.lr,
        max_epochs=estimator.max_epochs,
        batch_size=estimator.batch_size,
        iterator_train=BucketedLoader,
        iterator_train__shuffle=True,
        iterator_train__seed=seed,
        iterator_valid=BucketedLoader,
        train_split=train_split,
        callbacks=callbacks,
        device=resolve_device(estimator.device),
        verbose=int(estimator.verbose > 0),
    )
    if getattr(estimator, "accelerator", None) is not None:
        from ._accelerate import accelerator_arguments  # accelerate is optional

        args.update(accelerator_arguments(estimator.accelerator, estimator.verbose))
    return args


def survival_callbacks(estimator, n_train: int, valid_dataset=None) -> list:
    """The survival estimator's callbacks, in the order they run.

    The standard ones (:func:`~survbehrt.estimators._training.standard_callbacks`), the
    validation C-index, the user's ``callbacks``, early stopping, the progress bar.

    Parameters
    ----------
    estimator : BEHRTSurvivalEstimator
        Read for ``loss``, ``max_epochs``, ``gradient_clip``, ``callbacks``,
        ``early_stopping``, ``patience``, ``verbose``.
    n_train : int
        Training rows (the schedule's length).
    valid_dataset : EHRDataset, optional

    Returns
    -------
    list of (str, skorch.callbacks.Callback)
    """
    has_valid = valid_dataset is not None
    parts = ("nll", "ranking") if estimator.loss == "hybrid" else ()
    callbacks = standard_callbacks(estimator.max_epochs, n_train, global_batch_size(estimator),
                                   estimator.gradient_clip, parts, has_valid)
    if has_valid:
        callbacks.append(("valid_cindex", ValidationConcordance()))
    for i, cb in enumerate(estimator.callbacks or []):
        # After the validation C-index (so they can read it), before early stopping
        # (so they see the epoch that stops training). Used as given: skorch
        # re-initialises callbacks each fit, and one may hold a live Optuna trial.
        callbacks.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))
    if estimator.early_stopping is not None and estimator.max_epochs > 0:
        cindex = estimator.early_stopping == "cindex"
        callbacks.append(("early_stopping", EarlyStoppingFromStart(
            valid_dataset=valid_dataset,
            monitor="valid_cindex" if cindex else "valid_loss",
            lower_is_better=not cindex,
            patience=estimator.patience,
            load_best=True,
        )))
    return callbacks + progress_callbacks(estimator.verbose)


def survival_net(estimator, module, criterion, seed: int, n_train: int = 1, valid_dataset=None):
    """The survival estimator's skorch net (accelerated with an ``accelerator``).

    Parameters
    ----------
    estimator : BEHRTSurvivalEstimator
    module : BEHRTSurvivalModule
    criterion : torch.nn.Module
        The survival loss.
    seed : int
        Seeds the batch order.
    n_train : int, default=1
    valid_dataset : EHRDataset, optional
        The early-stopping rows.

    Returns
    -------
    SurvivalNet
    """
    net_class = SurvivalNet
    if estimator.accelerator is not None:
        from ._accelerate import AcceleratedSurvivalNet as net_class  # accelerate is optional
    return net_class(
        module=module,
        criterion=criterion,
        landmarks=estimator.landmarks,
        **net_arguments(
            estimator, seed, survival_callbacks(estimator, n_train, valid_dataset),
            predefined_split(valid_dataset) if valid_dataset is not None else None,
        ),
    )


def pretraining_net(estimator, module, seed: int, valid_dataset=None, n_train: int = 1,
                    done_epochs: int = 0):
    """The pretrainer's skorch net (accelerated with an ``accelerator``).

    With the estimator's ``checkpoint_dir``, per-epoch checkpoints that a later fit
    resumes from (:mod:`~survbehrt.estimators._checkpoint`).

    Parameters
    ----------
    estimator : BEHRTPretrainer
    module : BEHRTPretrainingModule
    seed : int
        Seeds the batch order.
    valid_dataset : MaskedEHRDataset, optional
        The early-stopping rows.
    n_train : int, default=1
    done_epochs : int, default=0
        Epochs the checkpoint already holds: the schedule resumes after them.

    Returns
    -------
    PretrainingNet
    """
    parts = objective_parts(module.objective) + (("cls",) if module.cls_head is not None else ())
    has_valid = valid_dataset is not None
    callbacks = standard_callbacks(estimator.max_epochs, n_train, global_batch_size(estimator),
                                   estimator.gradient_clip, parts, has_valid=has_valid)
    if getattr(estimator, "checkpoint_dir", None) is not None:
        callbacks = checkpoint_callbacks(estimator.checkpoint_dir, callbacks, done_epochs,
                                         -(-n_train // global_batch_size(estimator)))
    if estimator.early_stopping:
        callbacks.append(("early_stopping", EarlyStoppingFromStart(
            monitor="valid_loss", patience=estimator.patience, load_best=True
        )))
    callbacks += progress_callbacks(estimator.verbose)
    net_class = PretrainingNet
    if estimator.accelerator is not None:
        from ._accelerate import AcceleratedPretrainingNet as net_class  # accelerate is optional
    return net_class(
        module=module,
        criterion=PretrainingCriterion(module.tte_cuts),
        **net_arguments(estimator, seed, callbacks,
                        predefined_split(valid_dataset) if has_valid else None),
    )


def train(net, dataset, accelerator=None):
    """Fit ``net`` on ``dataset``; with an ``accelerator``, release its runtime after.

    Parameters
    ----------
    net : SurvivalNet or PretrainingNet
    dataset : torch.utils.data.Dataset
    accelerator : accelerate.Accelerator, optional

    Returns
    -------
    net
    """
    net.fit(dataset, y=None)
    if accelerator is not None:
        from ._accelerate import release  # accelerate is optional

        release(net)
    return net
