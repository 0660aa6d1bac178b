"""Data contract, tokenization and batching for patient histories."""

from .batching import BucketBatchSampler, EHRDataset, collate_tokens, padding_fraction
from .tokenizer import N_SPECIAL, EHRTokenizer, TokenizedEHR
from .validation import check_ehr_frame, check_survival_y, flatten_ehr

__all__ = [
    "BucketBatchSampler",
    "EHRDataset",
    "EHRTokenizer",
    "N_SPECIAL",
    "TokenizedEHR",
    "check_ehr_frame",
    "check_survival_y",
    "collate_tokens",
    "flatten_ehr",
    "padding_fraction",
]
