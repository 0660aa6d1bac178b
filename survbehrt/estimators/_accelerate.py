"""Training under a Hugging Face ``accelerate.Accelerator``: one code path for 1 CPU, GPUs, nodes.

An estimator given ``accelerator=`` trains with one of the nets below: skorch's
:class:`~skorch.hf.AccelerateMixin` on top of the estimator's own net. The accelerator
places the module (and wraps it in PyTorch's ``DistributedDataParallel`` when several
processes train together), the optimizer and the mixed-precision autocast; the rest is:

- **batches**: the bucketing loader is not a ``DataLoader``, so the accelerator leaves
  it alone; every process draws the same shuffled batches and keeps its share
  (:class:`~survbehrt.estimators._training.BucketedLoader`'s ``num_processes``). With
  ``Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True))`` each batch is sliced across the processes and
  ``batch_size`` keeps its one-process meaning; by default (accelerate's) each
  process takes whole batches and an optimizer step sees ``batch_size x processes`` rows
  (the learning-rate schedule counts those steps). Validation is not sharded: each
  process scores all the validation rows.
- **history**: with several processes, skorch's :class:`~skorch.history.DistributedHistory`
  shares the per-batch losses through the process group's key-value store, so the epoch
  losses (and early stopping on them) agree everywhere; the validation C-index is
  averaged over the processes. After ``fit`` the history is a plain one again
  (:func:`release`).
- **criteria**: only modules with trainable parameters go through
  ``accelerator.prepare``; a parameter-free loss wrapped in ``DistributedDataParallel``
  raises (PyTorch refuses a module without a parameter that requires a gradient). The
  others are moved to the accelerator's device.
- **files**: ``save`` writes on the main process only (``write_estimator``).

Nothing here is imported unless an accelerator is given: ``accelerate`` is an optional
dependency (``pip install survbehrt[distributed]``).
"""

from __future__ import annotations

import os

import torch
from skorch.hf import AccelerateMixin
from skorch.history import DistributedHistory, History

from ._training import PretrainingNet, SurvivalNet, to_device

__all__ = [
    "AcceleratedSurvivalNet",
    "AcceleratedPretrainingNet",
    "accelerator_arguments",
    "release",
]

# Each fit's DistributedHistory writes under its own prefix of the shared store (keys
# restart at epoch 1 every fit). Every process runs the same fits in the same order, so
# a per-process counter names them alike everywhere.
_FITS = [0]


def _has_trainable_parameters(module) -> bool:
    return any(p.requires_grad for p in module.parameters())


class _PrepareWhatTrains(AccelerateMixin):
    """skorch's ``AccelerateMixin``, preparing only the criteria that have trainable parameters."""

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        criteria = self._criteria
        idle = [name for name in criteria
                if isinstance(getattr(self, name + "_"), torch.nn.Module)
                and not _has_trainable_parameters(getattr(self, name + "_"))]
        for name in idle:
            setattr(self, name + "_", getattr(self, name + "_").to(self.accelerator.device))
        self._criteria = [name for name in criteria if name not in idle]
        try:
            return super()._initialize_accelerator()
        finally:
            self._criteria = criteria

    def infer(self, x, **fit_params):
        # the bucketing loader yields CPU tensors (the accelerator does not move them)
        return super().infer(to_device(x, self.accelerator.device), **fit_params)


class AcceleratedSurvivalNet(_PrepareWhatTrains, SurvivalNet):
    """:class:`~survbehrt.estimators._training.SurvivalNet` trained under an ``Accelerator``."""


class AcceleratedPretrainingNet(_PrepareWhatTrains, PretrainingNet):
    """:class:`~survbehrt.estimators._training.PretrainingNet` trained under an ``Accelerator``."""


def _process_group_store():
    """A client of the key-value store the process group was set up with (env:// rendezvous)."""
    from torch.distributed import PrefixStore, TCPStore

    try:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    except KeyError as exc:
        raise RuntimeError(
            "several processes train together but MASTER_ADDR / MASTER_PORT are not set: "
            "start them with `accelerate launch` or `torchrun`, which set them"
        ) from exc
    store = TCPStore(host, port, is_master=False, wait_for_workers=False)
    _FITS[0] += 1
    return PrefixStore(f"survbehrt-history-{_FITS[0]}", store)


def accelerator_arguments(accelerator, verbose: int = 0) -> dict:
    """The net arguments that train under ``accelerator``.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
    verbose : int, default=0
        With ``verbose``, the epoch table is printed by the main process only.

    Returns
    -------
    dict
        ``accelerator``, ``device=None`` (the accelerator places everything), this
        process's share of the training batches and, with several processes, a
        :class:`~skorch.history.DistributedHistory`.
    """
    n, rank = accelerator.num_processes, accelerator.process_index
    args = dict(
        accelerator=accelerator,
        device=None,
        # skorch prints through a sink other than `print` whatever `verbose` says
        callbacks__print_log__sink=accelerator.print if verbose else print,
        iterator_train__num_processes=n,
        iterator_train__process_index=rank,
        iterator_train__split_batches=bool(accelerator.split_batches),
    )
    if n > 1:
        args["history"] = DistributedHistory(store=_process_group_store(), rank=rank, world_size=n)
    return args


def release(net):
    """After ``fit``: leave ``net`` holding nothing of the accelerator's runtime.

    The history becomes a plain :class:`~skorch.history.History` with the same records
    (a live store cannot be pickled and outlives the process group only as a dead
    connection); the optimizer is the torch optimizer again, not accelerate's wrapper
    (which cannot be pickled), in the learning-rate scheduler too; and the accelerator
    lets go of the prepared objects (``free_memory``), so that the estimator and its
    accelerator pickle and the next fit starts clean.
    """
    if isinstance(net.history_, DistributedHistory):
        net.history_ = History(net.history_.to_list())
    optimizer = getattr(net.optimizer_, "optimizer", net.optimizer_)
    net.optimizer_ = optimizer
    for _, callback in net.callbacks_:
        if isinstance(getattr(callback, "lr_scheduler_", None), torch.optim.lr_scheduler.LRScheduler):
            callback.lr_scheduler_.optimizer = optimizer
    net.accelerator.free_memory()
    return net
