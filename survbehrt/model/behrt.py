"""Composed BEHRT modules: the encoder, the survival module and the pre-training module.

All take the batch keys as keyword arguments (``module(**batch)``, as skorch calls
them) and ignore keys they do not use. (Over 600 lines: the three modules share one
encoder and its calling convention and are read side by side; the objectives' own
logic lives in :mod:`.pretraining` and :mod:`.tte`.)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, as_tensor, nn

from ..recalibration import recalibrate_logits
from .config import N_SPECIAL, PAD_ID, BEHRTConfig, as_config
from .decayed_history import DecayedHistory
from .embeddings import BEHRTEmbeddings
from .encoder import TransformerEncoderLayer, build_attention_mask
from .heads import HazardHead, MLMHead, NextVisitHead
from .lora import LoRALinear, merge_lora
from .pooling import PATIENT_POOLING, code_token_mask, pool_patient, pool_visits
from .tte import TimeToEventHead, objective_parts, tte_outputs
from .wide import WideTerm

__all__ = [
    "OBJECTIVES",
    "BEHRTEncoder",
    "BEHRTPretrainingModule",
    "BEHRTSurvivalModule",
    "init_weights",
]

#: Single values of ``BEHRTPretrainingModule(objective=...)``; several parts combine
#: with ``"+"`` (``"mlm+tte"``, see :func:`~survbehrt.model.tte.objective_parts`).
OBJECTIVES = ("mlm", "next_visit", "both", "tte")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT initialisation of one module (use with ``model.apply``).

    Linear and embedding weights ~ N(0, std), biases zero, LayerNorm (1, 0);
    embedding padding rows are zeroed again.

    Parameters
    ----------
    module : torch.nn.Module
        The module to initialise (not its children).
    std : float, default=0.02
        Standard deviation of the normal initialisation.
    """
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _bool_mask(codes: Tensor, attention_mask: Tensor | None) -> Tensor:
    if attention_mask is None:
        return codes != PAD_ID
    return attention_mask.bool()


class BEHRTEncoder(nn.Module):
    """BEHRT encoder: embeddings, transformer layers, final LayerNorm (pre-norm only).

    Parameters
    ----------
    config : BEHRTConfig or mapping
        Model configuration.

    Attributes
    ----------
    config : BEHRTConfig
    embeddings : BEHRTEmbeddings
    layers : torch.nn.ModuleList of TransformerEncoderLayer
    final_norm : torch.nn.LayerNorm or torch.nn.Identity
        LayerNorm when ``config.norm_first`` (pre-norm leaves the residual stream
        un-normalised), identity otherwise.

    Examples
    --------
    >>> import torch
    >>> enc = BEHRTEncoder(BEHRTConfig.preset("small", vocab_size=20))
    >>> codes = torch.tensor([[1, 7, 8, 2, 9, 2]])
    >>> visits = torch.tensor([[0, 0, 0, 0, 1, 1]])
    >>> hidden = enc(codes=codes, age_bins=torch.ones_like(codes), visits=visits,
    ...              positions=torch.arange(6).unsqueeze(0), time_bins=torch.ones_like(codes),
    ...              attention_mask=codes != 0)
    >>> tuple(hidden.shape)
    (1, 6, 64)
    """

    def __init__(self, config: BEHRTConfig | Mapping[str, Any]) -> None:
        super().__init__()
        config = as_config(config)
        self.config = config
        self.embeddings = BEHRTEmbeddings(config)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                config.embedding_dim,
                config.num_heads,
                config.ff_dim,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                norm_first=config.norm_first,
                layer_norm_eps=config.layer_norm_eps,
            )
            for _ in range(config.num_layers)
        )
        self.final_norm = (
            nn.LayerNorm(config.embedding_dim, eps=config.layer_norm_eps)
            if config.norm_first
            else nn.Identity()
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every weight (BERT initialisation, see :func:`init_weights`)."""
        std = self.config.initializer_range
        for module in self.modules():
            if module is not self:
                init_weights(module, std)
        if self.embeddings.code_shared is not None:  # starts at zero (no draw)
            nn.init.zeros_(self.embeddings.code_shared)

    def forward(
        self,
        codes: Tensor,
        age_bins: Tensor,
        visits: Tensor,
        positions: Tensor,
        time_bins: Tensor | None = None,
        attention_mask: Tensor | None = None,
        causal: bool = False,
        value_bins: Tensor | None = None,
        index_age: Tensor | None = None,
        visit_times: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Contextual token representations.

        Parameters
        ----------
        codes, age_bins, visits, positions, time_bins : torch.Tensor of shape (B, L)
            Batch tensors (docs/dev/interfaces.md); ``time_bins`` may be None when
            the time embedding is off.
        attention_mask : torch.Tensor of shape (B, L), optional
            True for real tokens; default ``codes != 0``.
        causal : bool, default=False
            Visit-causal attention (a token sees its own and earlier visits only)
            instead of bidirectional.
        value_bins : torch.Tensor of shape (B, L), optional
            Value bin of each token (0 = no value), embedded when the configuration
            has ``n_value_bins > 0``.
        index_age, visit_times : torch.Tensor, optional
            ``(B,)`` and ``(B, V)``: used when ``config.continuous_time``.
        **kwargs
            Other batch keys, ignored.

        Returns
        -------
        torch.Tensor
            Hidden states of shape ``(B, L, D)``; values at padding tokens are
            meaningless.
        """
        attention_mask = _bool_mask(codes, attention_mask)
        x = self.embeddings(codes, age_bins, visits, positions, time_bins, value_bins,
                            index_age=index_age, visit_times=visit_times)
        attn_mask = build_attention_mask(attention_mask, visits, causal)  # once per forward
        for layer in self.layers:
            x = layer(x, attn_mask)
        return self.final_norm(x)

    def visit_representations(
        self,
        codes: Tensor,
        age_bins: Tensor,
        visits: Tensor,
        positions: Tensor,
        time_bins: Tensor | None = None,
        attention_mask: Tensor | None = None,
        causal: bool = False,
        visit_mask: Tensor | None = None,
        num_visits: int | None = None,
        value_bins: Tensor | None = None,
        index_age: Tensor | None = None,
        visit_times: Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor]:
        """Mean of each visit's code tokens (specials, static codes and padding excluded).

        Static codes (age bin 0) are not pooled into visit 0: a visit's representation
        describes its own events, and the static codes reach every visit through
        attention (they belong to visit 0, which every visit sees).

        Parameters
        ----------
        codes, age_bins, visits, positions, time_bins, attention_mask, causal, value_bins
            As in :meth:`forward`.
        index_age, visit_times : torch.Tensor, optional
            As in :meth:`forward`.
        visit_mask : torch.Tensor of shape (B, V), optional
            Only its width is used, as the number of visit slots.
        num_visits : int, optional
            Number of visit slots; default ``visit_mask.shape[1]``, else
            ``visits.max() + 1``.
        **kwargs
            Other batch keys, ignored.

        Returns
        -------
        visit_repr : torch.Tensor of shape (B, V, D)
            Visit representations (zeros for empty visit slots).
        visit_mask : torch.Tensor of shape (B, V)
            True for visits that had at least one code token.
        """
        attention_mask = _bool_mask(codes, attention_mask)
        hidden = self(codes, age_bins, visits, positions, time_bins, attention_mask, causal,
                      value_bins=value_bins, index_age=index_age, visit_times=visit_times)
        if num_visits is None and visit_mask is not None:
            num_visits = visit_mask.shape[1]
        # [UNK] tokens count: a code unseen in training still marks a visit (and carries
        # its age and timing); excluding them would leave an all-unknown visit empty.
        token_mask = code_token_mask(codes, attention_mask, include_unknown=True, age_bins=age_bins)
        return pool_visits(hidden, visits, token_mask, num_visits)

    def patient_embedding(
        self,
        codes: Tensor,
        age_bins: Tensor,
        visits: Tensor,
        positions: Tensor,
        time_bins: Tensor | None = None,
        attention_mask: Tensor | None = None,
        value_bins: Tensor | None = None,
        pooling: str = "mean",
        **kwargs: Any,
    ) -> Tensor:
        """One vector per patient from a bidirectional pass over its whole history.

        Parameters
        ----------
        codes, age_bins, visits, positions, time_bins, attention_mask, value_bins
            As in :meth:`forward`; the first token of every row is ``[CLS]`` (as the
            tokenizer writes it).
        pooling : {"mean", "max", "cls"}, default="mean"
            Mean or element-wise maximum of the visit representations (padding
            visits excluded, see :func:`~survbehrt.model.pooling.pool_patient`), or
            the hidden state of the ``[CLS]`` token.
        **kwargs
            Other batch keys (``visit_mask`` included), ignored.

        Returns
        -------
        torch.Tensor
            Shape ``(B, D)``; with ``"mean"`` / ``"max"``, zeros for a patient without
            any code token.
        """
        if pooling not in PATIENT_POOLING:
            raise ValueError(f"pooling must be one of {list(PATIENT_POOLING)}, got {pooling!r}")
        if pooling == "cls":
            hidden = self(codes, age_bins, visits, positions, time_bins, attention_mask, causal=False,
                          value_bins=value_bins, index_age=kwargs.get("index_age"),
                          visit_times=kwargs.get("visit_times"))
            return hidden[:, 0]
        reps, mask = self.visit_representations(
            codes, age_bins, visits, positions, time_bins, attention_mask, causal=False,
            value_bins=value_bins, index_age=kwargs.get("index_age"), visit_times=kwargs.get("visit_times"),
        )
        return pool_patient(reps, mask, pooling)


def _plain_state_dict(encoder: nn.Module) -> dict[str, Tensor]:
    """State dict of ``encoder`` with any LoRA adapters merged (encoder untouched)."""
    if any(isinstance(m, LoRALinear) for m in encoder.modules()):
        encoder = merge_lora(copy.deepcopy(encoder))
    return encoder.state_dict()


class BEHRTSurvivalModule(nn.Module):
    """BEHRT with a piecewise-constant hazard head on visit-causal visit representations.

    Each visit ``t`` sees only itself and earlier visits, so ``logits[:, t]`` is
    the hazard curve of a prediction made at visit ``t`` (no look into the future).
    The estimator reads the last real visit for prediction and may train on
    every visit as a landmark.

    Parameters
    ----------
    config : BEHRTConfig or mapping
        Encoder configuration.
    num_bins : int
        Number ``K`` of intervals of the time grid.
    encoder_state_dict : mapping, optional
        Weights to start the encoder from (e.g. a pre-trained encoder's
        ``state_dict()``; see also :meth:`from_encoder`).
    head_hidden_dim : int, optional
        Hidden width of the hazard MLP; default ``embedding_dim // 2``.
    head_dropout : float, optional
        Dropout in the hazard MLP; default ``config.dropout``.
    wide : bool, default=False
        Add the wide path (:class:`~survbehrt.model.wide.WideTerm`): an additive
        log-count and age-at-prediction term on every visit's logits.
    age_mean, age_scale : float, default=60.0, 15.0
        Standardisation of the age at prediction for the wide path.
    decay_scales : sequence of float, optional
        Add :class:`~survbehrt.model.decayed_history.DecayedHistory` at these time
        scales (years) between the visit representations and the head: decayed counts
        and sums of the visits so far. None: the representations go to the head as
        they are.
    wide_scales : sequence of float, optional
        The wide path's tempo covariates at these time scales (years): the decayed
        visit counts ``asinh(m_s(t))`` (:class:`~survbehrt.model.wide.WideTerm`'s
        ``scales``). None: none, as in files saved before them.
    wide_recency : float, optional
        The wide path's recent code counts at this time scale (years)
        (:class:`~survbehrt.model.wide.WideTerm`'s ``recency``). None: none, as in files
        saved before them.

    Attributes
    ----------
    encoder : BEHRTEncoder
    head : HazardHead
    history : DecayedHistory or None
    wide : WideTerm or None
    calibration : tuple of float or None
        ``(intercept, slope, center)`` applied to the logits of every visit
        (:func:`survbehrt.recalibration.recalibrate_logits`; see :meth:`set_calibration`);
        None: the head's logits as they are. A plain attribute, not in the state dict:
        the estimator that fitted it saves and restores it.
    """

    def __init__(
        self,
        config: BEHRTConfig | Mapping[str, Any],
        num_bins: int,
        encoder_state_dict: Mapping[str, Tensor] | None = None,
        head_hidden_dim: int | None = None,
        head_dropout: float | None = None,
        wide: bool = False,
        age_mean: float = 60.0,
        age_scale: float = 15.0,
        decay_scales: Sequence[float] | None = None,
        wide_scales: Sequence[float] | None = None,
        wide_recency: float | None = None,
    ) -> None:
        super().__init__()
        config = as_config(config)
        self.encoder = BEHRTEncoder(config)
        if encoder_state_dict is not None:
            self.encoder.load_state_dict(encoder_state_dict)
        self.head = HazardHead(
            config.embedding_dim,
            num_bins,
            hidden_dim=head_hidden_dim,
            dropout=config.dropout if head_dropout is None else head_dropout,
        )
        # BERT init for the head too: it starts near hazard 0.5 in every bin for every
        # patient (a neutral start); on the synthetic cohorts it generalised better
        # than PyTorch's default Kaiming init.
        for m in self.head.modules():
            init_weights(m, config.initializer_range)
        # outside the encoder: it trains under every strategy, as the head does
        self.history = (None if decay_scales is None
                        else DecayedHistory(config.embedding_dim, decay_scales))
        if self.history is not None:
            init_weights(self.history.project, config.initializer_range)
        self.wide = (WideTerm(config.vocab_size, N_SPECIAL, age_mean, age_scale,
                              scales=wide_scales, recency=wide_recency) if wide else None)
        self.calibration = None

    def set_calibration(self, intercept: float, slope: float, center: float) -> None:
        """Scale every row's hazards by ``exp(intercept + (slope - 1) (log R - center))``.

        ``R`` is the row's risk score before the scaling: the ranking of the rows is
        unchanged for a positive ``slope``. ``set_calibration(0, 1, 0)`` is the identity.

        Parameters
        ----------
        intercept, slope, center : float
            As :class:`survbehrt.recalibration.CalibrationFit`.
        """
        self.calibration = (float(intercept), float(slope), float(center))

    @property
    def config(self) -> BEHRTConfig:
        """The encoder's configuration."""
        return self.encoder.config

    def start_from(self, baseline, code_weight=None, covariate_weight=None,
                   representation_weight=None) -> None:
        """Set the starting hazards: the head's output bias and the wide term's weights.

        Parameters
        ----------
        baseline : array-like of shape (num_bins,)
            The hazard logits every patient starts at (the head's output bias).
        code_weight, covariate_weight : array-like, optional
            The wide term's ``beta`` (vocab_size,; then ``rho``, another vocab_size, with
            ``wide_recency``) and ``gamma`` (3 + S,); need ``wide``
            (:meth:`~survbehrt.model.wide.WideTerm.start_from`).
        representation_weight : array-like of shape (embedding_dim,), optional
            A linear predictor of the visit representation that the head starts with
            (:meth:`~survbehrt.model.heads.HazardHead.add_linear`), added in every bin.
        """
        if code_weight is not None or covariate_weight is not None:
            self.wide.start_from(code_weight, covariate_weight)
        self.head.output.bias.data.copy_(as_tensor(baseline))
        if representation_weight is not None:
            self.head.add_linear(representation_weight)

    def _shape_logits(self, logits: Tensor) -> Tensor:
        """The head's outputs as the module returns them (a subclass reads them per cause)."""
        return logits

    @classmethod
    def from_encoder(
        cls,
        encoder: BEHRTEncoder,
        num_bins: int,
        config: BEHRTConfig | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> BEHRTSurvivalModule:
        """Start from a (pre-trained) encoder's weights.

        The weights are copied: the new module does not share parameters with
        ``encoder``. LoRA adapters in ``encoder`` are merged into the copy.

        Parameters
        ----------
        encoder : BEHRTEncoder
            Source encoder.
        num_bins : int
            Number of time intervals.
        config : BEHRTConfig or mapping, optional
            Configuration of the new module (e.g. another dropout); must have the
            same architecture. Default ``encoder.config``.
        **kwargs
            ``head_hidden_dim``, ``head_dropout``.

        Returns
        -------
        BEHRTSurvivalModule
            The new module.
        """
        return cls(
            encoder.config if config is None else config,
            num_bins,
            encoder_state_dict=_plain_state_dict(encoder),
            **kwargs,
        )

    def forward(
        self,
        codes: Tensor,
        age_bins: Tensor,
        visits: Tensor,
        positions: Tensor,
        time_bins: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visit_mask: Tensor | None = None,
        value_bins: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Hazard logits of every visit.

        Parameters
        ----------
        codes, age_bins, visits, positions, time_bins, attention_mask, value_bins : torch.Tensor
            Batch tensors of shape ``(B, L)`` (``value_bins`` optional).
        visit_mask : torch.Tensor of shape (B, V), optional
            Fixes the number of visit slots ``V``.
        **kwargs
            Other batch keys; ``index_age`` and ``visit_times`` are used by the
            continuous time encoding, the wide path and the decayed sums (which need
            ``visit_times``).

        Returns
        -------
        torch.Tensor
            Logits of shape ``(B, V, K)``; finite but meaningless at padding visits.
        """
        reps, real_visits = self.encoder.visit_representations(
            codes,
            age_bins,
            visits,
            positions,
            time_bins,
            attention_mask,
            causal=True,
            visit_mask=visit_mask,
            value_bins=value_bins,
            index_age=kwargs.get("index_age"), visit_times=kwargs.get("visit_times"),
        )
        if getattr(self, "history", None) is not None:
            if kwargs.get("visit_times") is None:
                raise ValueError("the decayed sums (decay_scales) need the batch's visit_times: "
                                 "the years from each visit to the prediction time")
            reps = self.history(reps, real_visits, kwargs["visit_times"])
        logits = self._shape_logits(self.head(reps))
        if self.wide is not None:
            logits = logits + self.wide(codes, visits, _bool_mask(codes, attention_mask),
                                        logits.shape[1], kwargs.get("index_age"),
                                        kwargs.get("visit_times"), real_visits,
                                        timed=age_bins > 0)[..., None]
        if getattr(self, "calibration", None) is not None:
            logits = recalibrate_logits(logits, *self.calibration)
        return logits


class BEHRTPretrainingModule(nn.Module):
    """BEHRT with pre-training heads: masked-code (MLM), next-visit and time-to-event prediction.

    - ``mlm``: bidirectional encoder pass on ``masked_codes`` (from
      :func:`~survbehrt.model.pretraining.mask_tokens`) -> ``mlm_logits``.
    - ``next_visit``: visit-causal encoder pass on the unmasked ``codes``; the
      representation of visit ``t`` (history up to ``t``) predicts the codes of
      visit ``t + 1`` -> ``next_visit_logits``.
    - ``both``: the two passes above, i.e. **two encoder passes** per forward. One
      pass cannot serve both: MLM needs bidirectional context, and next-visit
      must not see masked-out codes nor the future.
    - ``tte``: on the same visit-causal pass (shared with ``next_visit``), the
      representation of every complete visit that has a later visit predicts the time
      to the next occurrence of each task (:mod:`~survbehrt.model.tte`) ->
      ``tte_logits`` (N, K, bins) with their targets ``tte_time`` / ``tte_event`` (N, K).
      Parts combine with ``"+"`` (``"mlm+tte"``).
    - with ``cls_head=True``, also ``cls_logits``: the hidden state of the
      ``[CLS]`` token in a bidirectional pass (the MLM pass when there is one, else
      one more pass on ``codes``) predicts which codes the patient's history holds
      (multi-hot). Nothing else trains that token's output: MLM scores only masked
      code tokens, and visit pooling skips special tokens. This is what makes
      ``BEHRTPretrainer(pooling="cls")`` a patient summary.

    Parameters
    ----------
    config : BEHRTConfig or mapping
        Encoder configuration (``tie_mlm_weights`` ties the MLM decoder to the
        code embedding).
    objective : {"mlm", "next_visit", "both"}, default="mlm"
        Which heads to build and compute.
    cls_head : bool, default=False
        Add the ``[CLS]`` objective's head (code-set prediction from ``[CLS]``).
    task_of_code : array-like of int, shape (vocab_size,), optional
        With the ``tte`` objective: the pre-training task of each token id (``-1`` for
        none); ``K = max + 1`` tasks. Kept as a buffer (saved with the weights).
    tte_cuts : array-like of float, optional
        With ``tte``: the edges of the time grid (years, from 0) shared by the tasks.
    tte_rank : int, default=32
        Rank of :class:`~survbehrt.model.tte.TimeToEventHead`.
    tte_visits, tte_sampled_tasks : int, optional
        In training, the TTE loss of a batch uses at most ``tte_visits`` random visits
        per patient and ``tte_sampled_tasks`` random tasks (None: all); see
        :func:`~survbehrt.model.tte.sample_rows` and :func:`~survbehrt.model.tte.sample_tasks`.

    Attributes
    ----------
    encoder : BEHRTEncoder
    mlm_head : MLMHead or None
    next_visit_head : NextVisitHead or None
    tte_head : TimeToEventHead or None
    tte_cuts : tuple of float or None
    cls_head : NextVisitHead or None
        Same architecture as the next-visit head (a representation to multi-hot code
        logits), applied to the ``[CLS]`` hidden state.
    objective : str
    """

    def __init__(
        self, config: BEHRTConfig | Mapping[str, Any], objective: str = "mlm", cls_head: bool = False,
        task_of_code=None, tte_cuts=None, tte_rank: int = 32, tte_visits: int | None = None,
        tte_sampled_tasks: int | None = None,
    ) -> None:
        super().__init__()
        parts = objective_parts(objective)
        config = as_config(config)
        self.objective = objective
        self.encoder = BEHRTEncoder(config)
        self.mlm_head = None
        self.next_visit_head = None
        dim, eps = config.embedding_dim, config.layer_norm_eps
        if "mlm" in parts:
            tied = self.encoder.embeddings.code.weight if config.tie_mlm_weights else None
            self.mlm_head = MLMHead(dim, config.vocab_size, eps, tied_weight=tied)
            for m in (self.mlm_head.dense, self.mlm_head.norm):
                init_weights(m, config.initializer_range)
            if not config.tie_mlm_weights:
                init_weights(self.mlm_head.decoder, config.initializer_range)
            else:  # keep the tied (embedding) weight; only the bias is the head's own
                nn.init.zeros_(self.mlm_head.decoder.bias)
        if "next_visit" in parts:
            self.next_visit_head = NextVisitHead(dim, config.vocab_size, eps)
            for m in self.next_visit_head.modules():
                init_weights(m, config.initializer_range)
        self.tte_head = self.tte_cuts = None
        self.tte_visits, self.tte_sampled_tasks = tte_visits, tte_sampled_tasks
        if "tte" in parts:
            if task_of_code is None or tte_cuts is None:
                raise ValueError("the 'tte' objective needs task_of_code and tte_cuts")
            task_of_code = torch.as_tensor(np.asarray(task_of_code), dtype=torch.long)
            if task_of_code.shape != (config.vocab_size,) or int(task_of_code.max()) < 0:
                raise ValueError(f"task_of_code must have shape ({config.vocab_size},) and name a task")
            self.tte_cuts = tuple(float(c) for c in tte_cuts)
            self.register_buffer("task_of_code", task_of_code)
            self.tte_head = TimeToEventHead(dim, int(task_of_code.max()) + 1,
                                            len(self.tte_cuts) - 1, tte_rank)
            init_weights(self.tte_head.project, config.initializer_range)
        self.cls_head = None
        if cls_head:
            self.cls_head = NextVisitHead(dim, config.vocab_size, eps)
            for m in self.cls_head.modules():
                init_weights(m, config.initializer_range)

    @property
    def config(self) -> BEHRTConfig:
        """The encoder's configuration."""
        return self.encoder.config

    def forward(
        self,
        codes: Tensor,
        age_bins: Tensor,
        visits: Tensor,
        positions: Tensor,
        time_bins: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visit_mask: Tensor | None = None,
        masked_codes: Tensor | None = None,
        value_bins: Tensor | None = None,
        mlm_chosen: Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Tensor]:
        """Pre-training logits.

        Parameters
        ----------
        codes, age_bins, visits, positions, time_bins, attention_mask : torch.Tensor
            Batch tensors of shape ``(B, L)``; ``codes`` unmasked.
        visit_mask : torch.Tensor of shape (B, V), optional
            Fixes the number of visit slots ``V`` of ``next_visit_logits``.
        masked_codes : torch.Tensor of shape (B, L), optional
            MLM input (``mask_tokens(codes, ...)[0]``). When None, the MLM pass
            reads ``codes`` as given (pass already-masked ``codes`` with
            ``objective="mlm"``, or nothing at inference).
        value_bins : torch.Tensor of shape (B, L), optional
            Value bins; in the MLM pass they are dropped (set to 0) wherever
            ``masked_codes`` differs from ``codes``, so a masked code's value does not
            hint at the code.
        mlm_chosen : torch.Tensor of bool, shape (B, L), optional
            The tokens MLM scores (those with a label). With it, ``mlm_logits`` holds
            their rows only, ``(n_chosen, vocab)`` in row-major order: the decoder over
            the vocabulary, which on every token costs more than the encoder, runs on
            the ~15 % that the loss reads.
        **kwargs
            Other batch keys (``mlm_labels``, ...), ignored.

        Returns
        -------
        dict
            ``mlm_logits`` (B, L, vocab), or (n_chosen, vocab) with ``mlm_chosen``,
            and/or ``next_visit_logits`` (B, V, vocab), by objective, and
            ``cls_logits`` (B, vocab) with a ``cls_head``.
        """
        attention_mask = _bool_mask(codes, attention_mask)
        out: dict[str, Tensor] = {}
        hidden = None
        if self.mlm_head is not None:
            mlm_input = codes if masked_codes is None else masked_codes
            mlm_values = value_bins
            if value_bins is not None and masked_codes is not None:
                mlm_values = value_bins.masked_fill(masked_codes != codes, 0)
            hidden = self.encoder(
                mlm_input, age_bins, visits, positions, time_bins, attention_mask, causal=False,
                value_bins=mlm_values, index_age=kwargs.get("index_age"), visit_times=kwargs.get("visit_times"),
            )
            out["mlm_logits"] = self.mlm_head(hidden if mlm_chosen is None
                                              else hidden[mlm_chosen])
        if self.cls_head is not None:
            if hidden is None:  # no MLM pass to share: a bidirectional pass of its own
                hidden = self.encoder(
                    codes, age_bins, visits, positions, time_bins, attention_mask, causal=False,
                    value_bins=value_bins, index_age=kwargs.get("index_age"),
                    visit_times=kwargs.get("visit_times"),
                )
            out["cls_logits"] = self.cls_head(hidden[:, 0])
        if self.next_visit_head is not None or self.tte_head is not None:
            # one visit-causal pass serves next-visit and time-to-event prediction
            reps, _ = self.encoder.visit_representations(
                codes,
                age_bins,
                visits,
                positions,
                time_bins,
                attention_mask,
                causal=True,
                visit_mask=visit_mask,
                value_bins=value_bins,
                index_age=kwargs.get("index_age"), visit_times=kwargs.get("visit_times"),
            )
            if self.next_visit_head is not None:
                out["next_visit_logits"] = self.next_visit_head(reps)
            if self.tte_head is not None:
                out.update(tte_outputs(self, reps, dict(kwargs, codes=codes, visits=visits,
                                                        age_bins=age_bins, visit_mask=visit_mask,
                                                        attention_mask=attention_mask)))
        return out

