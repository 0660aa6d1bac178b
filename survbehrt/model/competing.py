"""The competing-risks module: BEHRT with one hazard head for ``C`` causes.

:class:`BEHRTCompetingModule` is :class:`~survbehrt.model.BEHRTSurvivalModule` whose
hazard head has ``C * K`` outputs, read as ``(..., C, K)``: the hidden layer of the head
is shared by the causes, each cause has its own ``K`` output logits (cause-specific
piecewise-constant hazards, :mod:`survbehrt.competing_hazards`). With one cause it is the
survival module itself (same parameters, drawn in the same order), so that a fit with
one cause reproduces the single-cause estimator's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, as_tensor

from .behrt import BEHRTSurvivalModule
from .config import BEHRTConfig

__all__ = ["BEHRTCompetingModule"]


class BEHRTCompetingModule(BEHRTSurvivalModule):
    """BEHRT with cause-specific piecewise-constant hazards on visit-causal representations.

    Parameters
    ----------
    config : BEHRTConfig or mapping
        Encoder configuration.
    num_bins : int
        Number ``K`` of intervals of the time grid (shared by the causes).
    n_causes : int
        Number ``C`` of competing causes.
    **kwargs
        ``encoder_state_dict``, ``head_hidden_dim``, ``head_dropout`` as
        :class:`~survbehrt.model.BEHRTSurvivalModule` (no wide path).

    Attributes
    ----------
    n_causes : int
    num_bins : int
    """

    def __init__(self, config: BEHRTConfig | Mapping[str, Any], num_bins: int, n_causes: int,
                 **kwargs: Any) -> None:
        if isinstance(n_causes, bool) or int(n_causes) != n_causes or n_causes < 1:
            raise ValueError(f"n_causes must be a positive int, got {n_causes!r}")
        super().__init__(config, int(num_bins) * int(n_causes), **kwargs)
        self.n_causes = int(n_causes)
        self.num_bins = int(num_bins)

    def start_from(self, baseline) -> None:
        """Start every patient at ``baseline``, the hazard logits of shape ``(C, K)``.

        Parameters
        ----------
        baseline : array-like of shape (n_causes, num_bins)
            E.g. :func:`survbehrt.competing_hazards.marginal_competing_logits`: the
            untrained model then answers the Aalen–Johansen incidence.
        """
        baseline = as_tensor(baseline)
        if tuple(baseline.shape) != (self.n_causes, self.num_bins):
            raise ValueError(f"baseline must have shape {(self.n_causes, self.num_bins)}; "
                             f"got {tuple(baseline.shape)}")
        super().start_from(baseline.reshape(-1))

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """Hazard logits of every visit and cause.

        Parameters
        ----------
        *args, **kwargs
            The batch, as :meth:`BEHRTSurvivalModule.forward`.

        Returns
        -------
        torch.Tensor
            Logits of shape ``(B, V, C, K)``.
        """
        return super().forward(*args, **kwargs).unflatten(-1, (self.n_causes, self.num_bins))
