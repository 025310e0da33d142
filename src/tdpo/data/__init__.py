"""Preference and SFT data: sources, record shapes, exact tokenization, batching and splits.

Typical use::

    from tdpo.data import DataConfig, PreferenceCollator, load_preference_data, pad_token_id

    train, evaluation, report = load_preference_data(DataConfig(source="hh"), tokenizer)
    collate = PreferenceCollator(pad_token_id(tokenizer))
    batch = collate([train[i] for i in range(8)])  # input_ids/attention_mask/labels [16, T], index [8]
"""

from tdpo.config.data import DataConfig
from tdpo.data.collate import IGNORE_INDEX, PreferenceCollator, SFTCollator, column_values
from tdpo.data.loader import LoadedData, check_source, load_preference_data, load_sft_data
from tdpo.data.records import INVALID_KINDS, InvalidRecord, InvalidRecordCounter, PreferenceRecord, SFTRecord
from tdpo.data.report import DataReport
from tdpo.data.sources import HubDatasetError
from tdpo.data.tokenize import eos_token_id, pad_token_id

__all__ = [
    "IGNORE_INDEX",
    "INVALID_KINDS",
    "DataConfig",
    "DataReport",
    "HubDatasetError",
    "InvalidRecord",
    "InvalidRecordCounter",
    "LoadedData",
    "PreferenceCollator",
    "PreferenceRecord",
    "SFTCollator",
    "SFTRecord",
    "check_source",
    "column_values",
    "eos_token_id",
    "load_preference_data",
    "load_sft_data",
    "pad_token_id",
]
