import torch

from tdpo.data.collate import IGNORE_INDEX, PreferenceCollator, SFTCollator, column_values

FEATURES = [
    {"prompt_input_ids": [1, 2, 3], "chosen_input_ids": [4, 5, 9], "rejected_input_ids": [6, 9], "index": 7},
    {"prompt_input_ids": [1], "chosen_input_ids": [8, 9], "rejected_input_ids": [10, 11, 12, 13, 9], "index": 2},
]


def expected_rows(features, key, pad):
    rows = []
    for f in features:
        ids = f["prompt_input_ids"] + f[key]
        lab = [IGNORE_INDEX] * len(f["prompt_input_ids"]) + f[key]
        rows.append((ids, lab))
    return rows


def test_preference_batch_layout():
    batch = PreferenceCollator(pad_token_id=0)(FEATURES)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "index"}
    rows = expected_rows(FEATURES, "chosen_input_ids", 0) + expected_rows(FEATURES, "rejected_input_ids", 0)
    width = max(len(ids) for ids, _ in rows)
    assert batch["input_ids"].shape == (4, width) == batch["labels"].shape == batch["attention_mask"].shape
    for i, (ids, lab) in enumerate(rows):
        pad = width - len(ids)
        assert batch["input_ids"][i].tolist() == ids + [0] * pad
        assert batch["labels"][i].tolist() == lab + [IGNORE_INDEX] * pad
        assert batch["attention_mask"][i].tolist() == [1] * len(ids) + [0] * pad
    assert batch["index"].tolist() == [7, 2]
    assert all(t.dtype == torch.long for t in batch.values())


def test_pad_id_is_only_a_filler():
    a = PreferenceCollator(pad_token_id=0)(FEATURES)
    b = PreferenceCollator(pad_token_id=9)(FEATURES)  # e.g. EOS for tokenizers without pad
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["attention_mask"], b["attention_mask"])
    mask = a["attention_mask"].bool()
    assert torch.equal(a["input_ids"][mask], b["input_ids"][mask])
    assert (b["input_ids"][~mask] == 9).all()


def test_pad_to_multiple_of():
    batch = PreferenceCollator(pad_token_id=0, pad_to_multiple_of=8)(FEATURES)
    assert batch["input_ids"].shape == (4, 8)
    rows = expected_rows(FEATURES, "chosen_input_ids", 0) + expected_rows(FEATURES, "rejected_input_ids", 0)
    for i, (ids, lab) in enumerate(rows):
        pad = 8 - len(ids)
        assert batch["input_ids"][i].tolist() == ids + [0] * pad
        assert batch["labels"][i].tolist() == lab + [IGNORE_INDEX] * pad
        assert batch["attention_mask"][i].tolist() == [1] * len(ids) + [0] * pad


def test_sft_batch():
    feats = [
        {"prompt_input_ids": [], "completion_input_ids": [5, 6, 9], "index": 0},
        {"prompt_input_ids": [1, 2], "completion_input_ids": [7, 9], "index": 1},
    ]
    batch = SFTCollator(pad_token_id=3)(feats)
    assert batch["input_ids"].tolist() == [[5, 6, 9, 3], [1, 2, 7, 9]]
    assert batch["labels"].tolist() == [[5, 6, 9, -100], [-100, -100, 7, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["index"].tolist() == [0, 1]


def test_column_values_of_a_dataset_and_of_a_dict():
    import datasets

    lengths = [5, 3, 9, 1]
    ds = datasets.Dataset.from_dict({"length": [0] + lengths}).select(range(1, 5))  # after a selection
    assert column_values(ds, "length") == lengths
    assert column_values({"length": lengths}, "length") == lengths
