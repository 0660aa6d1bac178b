"""Data contract, tokenization and batching for patient histories."""

from .batching import BucketBatchSampler, EHRDataset, collate_tokens, padding_fraction
from .competing import cause_names, cause_specific_y, check_competing_y, competing_y
from .events import from_events
from .features import CodeCountTransformer
from .labels import events_to_survival, survival_labels
from .token_store import TokenStore, TokenStoreWriter, load_tokens, write_tokens
from .tokenizer import N_SPECIAL, EHRTokenizer, TokenizedEHR
from .validation import check_ehr_frame, check_survival_y, flatten_ehr

__all__ = [
    "BucketBatchSampler",
    "CodeCountTransformer",
    "EHRDataset",
    "EHRTokenizer",
    "N_SPECIAL",
    "TokenStore",
    "TokenStoreWriter",
    "TokenizedEHR",
    "cause_names",
    "cause_specific_y",
    "check_competing_y",
    "check_ehr_frame",
    "check_survival_y",
    "collate_tokens",
    "competing_y",
    "events_to_survival",
    "flatten_ehr",
    "from_events",
    "load_tokens",
    "padding_fraction",
    "survival_labels",
    "write_tokens",
]
