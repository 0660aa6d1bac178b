"""The BEHRT model: embeddings, encoder, visit pooling, heads, LoRA and pre-training objectives.

Modules take the batch keys of ``docs/dev/interfaces.md`` as keyword arguments
(``module(**batch)``) and ignore keys they do not use.
"""

from .behrt import (
    OBJECTIVES,
    BEHRTEncoder,
    BEHRTPretrainingModule,
    BEHRTSurvivalModule,
    init_weights,
)
from .competing import BEHRTCompetingModule
from .config import (
    CLS_ID,
    MASK_ID,
    N_SPECIAL,
    PAD_ID,
    PRESETS,
    SEP_ID,
    UNK_ID,
    BEHRTConfig,
    as_config,
)
from .decayed_history import DecayedHistory
from .embeddings import BEHRTEmbeddings, SinusoidalPositionEmbedding, sinusoidal_table
from .encoder import MultiHeadSelfAttention, TransformerEncoderLayer, build_attention_mask
from .heads import HazardHead, MLMHead, NextVisitHead
from .lora import (
    ATTENTION_TARGETS,
    FEEDFORWARD_TARGETS,
    STRATEGIES,
    LoRALinear,
    apply_lora,
    configure_trainable,
    lora_parameters,
    merge_lora,
)
from .pooling import PATIENT_POOLING, code_token_mask, pool_patient, pool_visits
from .pretraining import (
    IGNORE_INDEX,
    mask_tokens,
    next_visit_targets,
    patient_code_targets,
    pretraining_loss,
)
from .tte import OBJECTIVE_PARTS, TimeToEventHead, objective_parts, tte_rows, tte_targets

__all__ = [
    "ATTENTION_TARGETS",
    "CLS_ID",
    "FEEDFORWARD_TARGETS",
    "IGNORE_INDEX",
    "MASK_ID",
    "N_SPECIAL",
    "OBJECTIVES",
    "OBJECTIVE_PARTS",
    "PAD_ID",
    "PATIENT_POOLING",
    "PRESETS",
    "SEP_ID",
    "STRATEGIES",
    "UNK_ID",
    "BEHRTConfig",
    "BEHRTEmbeddings",
    "BEHRTCompetingModule",
    "BEHRTEncoder",
    "BEHRTPretrainingModule",
    "BEHRTSurvivalModule",
    "HazardHead",
    "DecayedHistory",
    "LoRALinear",
    "MLMHead",
    "MultiHeadSelfAttention",
    "NextVisitHead",
    "SinusoidalPositionEmbedding",
    "TimeToEventHead",
    "TransformerEncoderLayer",
    "apply_lora",
    "as_config",
    "build_attention_mask",
    "code_token_mask",
    "configure_trainable",
    "init_weights",
    "lora_parameters",
    "mask_tokens",
    "objective_parts",
    "merge_lora",
    "next_visit_targets",
    "patient_code_targets",
    "pool_patient",
    "pool_visits",
    "pretraining_loss",
    "tte_rows",
    "tte_targets",
    "sinusoidal_table",
]
