"""The competing-risks module: BEHRT with one hazard head for ``C`` causes.

:class:`BEHRTCompetingModule` is :class:`~survbehrt.model.BEHRTSurvivalModule` whose
hazard head has ``C * K`` outputs, read as ``(..., C, K)``: the hidden layer of the head
is shared by the causes, each cause has its own ``K`` output logits (cause-specific
piecewise-constant hazards, :mod:`survbehrt.competing_hazards`). With one cause it is the
survival module itself (same parameters, drawn in the same order), so that a fit with
one cause reproduces the single-cause estimator's. The wide path has one term per cause,
each added to its cause's ``K`` logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, as_tensor

from .behrt import BEHRTSurvivalModule
from .config import N_SPECIAL, BEHRTConfig
from .wide import WideTerm

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
    wide : bool, default=False
        Add the wide path with one term per cause
        (:class:`~survbehrt.model.wide.WideTerm` with ``n_outputs=C``), each added to
        its cause's logits.
    age_mean, age_scale : float, default=60.0, 15.0
        Standardisation of the age at prediction for the wide path.
    wide_scales : sequence of float, optional
        The wide terms' tempo covariates, as :class:`~survbehrt.model.BEHRTSurvivalModule`'s.
    wide_recency : float, optional
        The wide terms' recent code counts, as :class:`~survbehrt.model.BEHRTSurvivalModule`'s.
    **kwargs
        ``encoder_state_dict``, ``head_hidden_dim``, ``head_dropout`` as
        :class:`~survbehrt.model.BEHRTSurvivalModule`.

    Attributes
    ----------
    n_causes : int
    num_bins : int
    wide : WideTerm or None
    """

    def __init__(self, config: BEHRTConfig | Mapping[str, Any], num_bins: int, n_causes: int,
                 wide: bool = False, age_mean: float = 60.0, age_scale: float = 15.0,
                 wide_scales: Sequence[float] | None = None, wide_recency: float | None = None,
                 **kwargs: Any) -> None:
        if isinstance(n_causes, bool) or int(n_causes) != n_causes or n_causes < 1:
            raise ValueError(f"n_causes must be a positive int, got {n_causes!r}")
        super().__init__(config, int(num_bins) * int(n_causes), **kwargs)
        self.n_causes = int(n_causes)
        self.num_bins = int(num_bins)
        if wide:  # registered after the head, as the survival module's
            self.wide = WideTerm(self.config.vocab_size, N_SPECIAL, age_mean, age_scale,
                                 n_outputs=self.n_causes, scales=wide_scales,
                                 recency=wide_recency)

    def start_from(self, baseline, code_weight=None, covariate_weight=None) -> None:
        """Set the starting hazards: the head's output bias and the wide terms' weights.

        Parameters
        ----------
        baseline : array-like of shape (n_causes, num_bins)
            E.g. :func:`survbehrt.competing_hazards.marginal_competing_logits`: the
            untrained model then answers the Aalen–Johansen incidence.
        code_weight : array-like of shape (vocab_size, n_causes), optional
            Each cause's ``beta`` (then ``rho``: 2 vocab_size rows with ``wide_recency``);
            needs ``wide``.
        covariate_weight : array-like of shape (n_causes, 3 + S), optional
            Each cause's ``gamma``; needs ``wide``.
        """
        baseline = as_tensor(baseline)
        if tuple(baseline.shape) != (self.n_causes, self.num_bins):
            raise ValueError(f"baseline must have shape {(self.n_causes, self.num_bins)}; "
                             f"got {tuple(baseline.shape)}")
        if code_weight is not None or covariate_weight is not None:
            self.wide.start_from(code_weight, covariate_weight)
        super().start_from(baseline.reshape(-1))

    def _shape_logits(self, logits: Tensor) -> Tensor:
        # (..., C * K) -> (..., C, K); the wide terms (..., C) then add to their cause
        return logits.unflatten(-1, (self.n_causes, self.num_bins))
