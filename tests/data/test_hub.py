"""Rows of Hugging Face Hub datasets (``datasets.load_dataset`` replaced by fakes)."""

import pytest

from tdpo.data.hub import HubDatasetError, read_hub
from tdpo.data.records import InvalidRecordCounter

ROWS = [
    {"prompt": "Q1: say, \"hi\"", "chosen": " hi\nthere", "rejected": " bye"},
    {"prompt": "Q2 ünïcødé", "chosen": " yes", "rejected": " no"},
]


def test_hub_rows_go_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, subset=None, *, split, data_dir=None, revision=None):
        calls.append((name, subset, split, data_dir, revision))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    counter = InvalidRecordCounter()
    rows = list(read_hub("openai/summarize_from_feedback", "validation", counter))
    assert calls == [("openai/summarize_from_feedback", "comparisons", "validation", None, None)]
    assert rows[1] == ("openai/summarize_from_feedback[validation] row 1", ROWS[1])
    list(read_hub("Anthropic/hh-rlhf", "test", counter, data_dir="harmless-base", revision="abc"))
    assert calls[-1] == ("Anthropic/hh-rlhf", None, "test", "harmless-base", "abc")


def test_hub_failure_says_what_was_asked(monkeypatch):
    import datasets

    def failing(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(RuntimeError, match=r"'stanfordnlp/SHP'.*split='train'.*no network"):
        list(read_hub("stanfordnlp/SHP", "train", InvalidRecordCounter()))


def test_script_dataset_falls_back_to_its_parquet_conversion(monkeypatch):
    import datasets

    calls = []

    def load_dataset(name, subset=None, *, split, data_dir=None, revision=None):
        calls.append(revision)
        if revision is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found summarize_from_feedback.py")
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    rows = list(read_hub("openai/summarize_from_feedback", "train", InvalidRecordCounter()))
    assert calls == [None, "refs/convert/parquet"] and len(rows) == 2


def test_hub_not_reached_is_one_line_and_a_hint(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Anthropic/hh-rlhf' on the Hub (LocalEntryNotFoundError)")

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(HubDatasetError) as err:
        read_hub("Anthropic/hh-rlhf", "train", InvalidRecordCounter())  # raised by the call itself
    first, hint = str(err.value).splitlines()
    assert first == ("data.source 'Anthropic/hh-rlhf' (split='train'): the Hugging Face Hub could not be reached "
                     "(Couldn't reach 'Anthropic/hh-rlhf' on the Hub (LocalEntryNotFoundError)), and the dataset is "
                     "not in the local cache")
    assert "configs/default.yaml" in hint and err.value.unreachable
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(HubDatasetError, match=r"\(offline mode: HF_DATASETS_OFFLINE=1 is set\)"):
        read_hub("Anthropic/hh-rlhf", "train", InvalidRecordCounter())
