"""The last step of ``fit``: the hazards' calibration slope and level refitted after training.

The network's outputs are fixed; only ``(a, b)`` of :mod:`survbehrt.recalibration`
(each row's hazards times ``exp(a + b x)``, ``x`` its centred log risk score) are fitted
and set on the module, which applies them to every prediction. The ranking, hence the
C-index, does not change.

* The **slope** ``1 + b`` on the validation rows, by the piecewise-exponential
  likelihood: over-fitting spreads the hazards (slope below 1 on new patients) while
  the C-index (which ``early_stopping="cindex"`` watches) stays flat, and only
  held-out rows show it.
* The **level** ``a`` at that slope on every fitted row (training and validation): the
  observed events equal the expected ones. The validation rows alone (a tenth of the
  rows) leave it a sampling error of ``1 / sqrt(events)``, as large as the level error
  it would correct (``benchmarks/calibration_diagnosis.py``).
"""

from __future__ import annotations

import numpy as np

from ..recalibration import (
    MIN_EVENTS,
    MIN_SLOPE,
    PENALTY,
    calibration_of_logits,
    level_of_logits,
)
from ._training import _last_visit_logits, batched_inference, net_device, net_module

__all__ = ["MIN_EVENTS", "PENALTY", "recalibrate"]


def _rows_of(net, dataset):
    logits = batched_inference(net_module(net), dataset.tokens, _last_visit_logits,
                               device=net_device(net), rows=dataset.rows)
    return (logits, np.asarray(dataset.targets["time"], dtype=float),
            np.asarray(dataset.targets["event"], dtype=bool))


def recalibrate(net, train_dataset, valid_dataset, cuts, max_time):
    """Fit the calibration slope and level and set them on ``net``'s module.

    Parameters
    ----------
    net : SurvivalNet
        Trained (its best weights restored).
    train_dataset : EHRDataset
        The training rows.
    valid_dataset : EHRDataset or None
        The rows held out from training.
    cuts : ndarray
        The grid's edges.
    max_time : float
        Follow-up is censored here, where the estimator's curves end.

    Returns
    -------
    survbehrt.recalibration.CalibrationFit or None
        The slope from the validation rows, the intercept from all rows; None (and the
        module left as it is) without validation rows or with fewer than
        :data:`MIN_EVENTS` events among them.
    """
    if valid_dataset is None:
        return None
    logits, time, event = _rows_of(net, valid_dataset)
    if (event & (time <= max_time)).sum() < MIN_EVENTS:
        return None
    fit = calibration_of_logits(logits, cuts, time, event, max_time=max_time, penalty=PENALTY,
                                min_slope=MIN_SLOPE)
    train = _rows_of(net, train_dataset)
    logits, time, event = (np.concatenate([a, b]) for a, b in zip(train, (logits, time, event)))
    level = level_of_logits(logits, cuts, time, event, fit.slope, fit.center, max_time=max_time)
    fit = fit._replace(intercept=level, n_events=int((event & (time <= max_time)).sum()))
    net_module(net).set_calibration(fit.intercept, fit.slope, fit.center)
    return fit
