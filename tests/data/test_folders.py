"""Folder sources: datasets saved with save_to_disk, and folders of data files read by datasets.load_dataset."""

import json

import pytest

from tdpo.data import DataConfig, load_preference_data, load_sft_data
from tdpo.data.folders import describe_folder, folder_source, read_folder
from tdpo.data.records import InvalidRecordCounter

TRAIN = [
    {"prompt": "Q0: what colour is the sky?", "chosen": " Blue.", "rejected": " Green."},
    {"prompt": "Q1: what is two plus two?", "chosen": " Four.", "rejected": " Five."},
    {"prompt": "Q2: name a fruit.", "chosen": " An apple.", "rejected": " A chair."},
]
TEST = [{"prompt": "Q3: is water wet?", "chosen": " Yes.", "rejected": " No."}]
CHAT = [
    {"prompt": [{"role": "user", "content": "Name a fruit."}],
     "chosen": [{"role": "assistant", "content": "An apple."}],
     "rejected": [{"role": "assistant", "content": "I will not."}]},
    {"prompt": [{"role": "user", "content": "Name a colour."}],
     "chosen": [{"role": "assistant", "content": "Blue."}],
     "rejected": [{"role": "assistant", "content": "No."}]},
]


def saved_dataset(path, rows):
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return str(path)


def saved_dataset_dict(path, **splits):
    import datasets

    datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(path))
    return str(path)


def parquet_folder(path, **files):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir()
    for name, rows in files.items():
        pq.write_table(pa.Table.from_pylist(rows), path / f"{name}.parquet")
    return str(path)


def jsonl_folder(path, **files):
    path.mkdir()
    for name, rows in files.items():
        (path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rows_of(path, split="train"):
    counter = InvalidRecordCounter(skip=False)
    return list(read_folder(path, split, counter))


def cfg(source, **kw):
    kw.setdefault("cache", False)
    kw.setdefault("test_size", 0)
    return DataConfig(source=source, **kw)


# ---------------------------------------------------------------- recognising and reading folders


def test_saved_dataset_rows_and_locations(tmp_path):
    path = saved_dataset(tmp_path / "saved", TRAIN)
    assert folder_source(path).kind == "saved_dataset"
    got = rows_of(path, "whatever")  # one Dataset: the split name does not matter
    assert [row for _, row in got] == TRAIN
    assert [loc for loc, _ in got] == [f"{path} row 0", f"{path} row 1", f"{path} row 2"]
    assert describe_folder(path) == "saved with save_to_disk (Dataset: 3 rows)"


def test_saved_dataset_dict_splits(tmp_path):
    path = saved_dataset_dict(tmp_path / "dd", train=TRAIN, test=TEST)
    source = folder_source(path)
    assert source.kind == "saved_dataset_dict" and set(source.splits) == {"train", "test"}
    assert [row for _, row in rows_of(path, "train")] == TRAIN
    got = rows_of(path, "test")
    assert got == [(f"{path}[test] row 0", TEST[0])]
    assert describe_folder(path) == "saved with save_to_disk (DatasetDict: train 3, test 1)"
    with pytest.raises(ValueError, match=r"no split 'validation'; it has 'train', 'test'"):
        rows_of(path, "validation")


def test_parquet_and_jsonl_folders(tmp_path):
    pq_path = parquet_folder(tmp_path / "pq", **{"train-00000": TRAIN[:2], "train-00001": TRAIN[2:]})
    assert folder_source(pq_path).kind == "data_files"
    assert sorted((row for _, row in rows_of(pq_path)), key=lambda r: r["prompt"]) == TRAIN
    assert describe_folder(pq_path) == "local folder of parquet files (2 files, read with datasets.load_dataset)"

    js_path = jsonl_folder(tmp_path / "js", train=TRAIN, test=TEST)
    assert [row for _, row in rows_of(js_path, "train")] == TRAIN
    assert [row for _, row in rows_of(js_path, "test")] == TEST
    assert describe_folder(js_path) == "local folder of jsonl files (2 files, read with datasets.load_dataset)"


def test_unrecognised_folder_is_named(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.md").write_text("# nothing here\n")
    with pytest.raises(ValueError, match=rf"^data.source: {folder} is a folder but holds neither a dataset saved "
                                         r"with save_to_disk \(dataset_dict.json, or state.json and dataset_info.json\) "
                                         r"nor data files for datasets.load_dataset"):
        folder_source(str(folder))
    with pytest.raises(ValueError, match=rf"^data.source: {folder} is a folder but holds neither"):
        load_preference_data(cfg(str(folder)), None)


# ---------------------------------------------------------------- loading as training does


def test_load_saved_dataset_dict_with_its_test_split(tmp_path, bos_tokenizer):
    path = saved_dataset_dict(tmp_path / "dd", train=TRAIN, test=TEST)
    loaded = load_preference_data(cfg(path, test_split="test"), bos_tokenizer)
    assert loaded.report.shape == "prompt_chosen_rejected"
    assert loaded.report.train_from == f"{path}[train]" and loaded.report.eval_from == f"{path}[test]"
    assert list(loaded.train["chosen"]) == [" Blue.", " Four.", " An apple."]
    assert list(loaded.train["rejected"]) == [" Green.", " Five.", " A chair."]
    assert list(loaded.eval["chosen"]) == [" Yes."] and list(loaded.eval["location"]) == [f"{path}[test] row 0"]
    with pytest.raises(ValueError, match=r"^data.test_split='dev': .* has no such split; it has 'train', 'test'"):
        load_preference_data(cfg(path, test_split="dev"), bos_tokenizer)


def test_load_saved_dataset_holds_out_and_refuses_a_named_split(tmp_path, bos_tokenizer):
    path = saved_dataset(tmp_path / "saved", TRAIN + TEST)
    loaded = load_preference_data(cfg(path, test_size=1, seed=0), bos_tokenizer)
    assert loaded.report.train_from == path
    assert loaded.report.num_train == 3 and loaded.report.num_eval == 1
    assert sorted(list(loaded.train["chosen"]) + list(loaded.eval["chosen"])) == sorted(r["chosen"] for r in TRAIN + TEST)
    with pytest.raises(ValueError, match=r"^data.test_split='test': .* has no named splits"):
        load_preference_data(cfg(path, test_split="test"), bos_tokenizer)


def test_chat_records_from_a_jsonl_folder(tmp_path, bos_tokenizer):
    path = jsonl_folder(tmp_path / "chat", train=CHAT)
    loaded = load_preference_data(cfg(path), bos_tokenizer)
    assert loaded.report.shape == "conversational" and loaded.report.train_from == f"{path}[train]"
    # the template ends assistant turns with EOS; its newline after a turn is trimmed (trim_blocks)
    assert list(loaded.train["prompt"]) == ["<s>[user] Name a fruit.[assistant] ", "<s>[user] Name a colour.[assistant] "]
    assert list(loaded.train["chosen"]) == ["An apple.</s>", "Blue.</s>"]
    assert list(loaded.train["rejected"]) == ["I will not.</s>", "No.</s>"]
    # the same records as from the one file, read by tdpo's own JSONL reader
    single = load_preference_data(cfg(str(tmp_path / "chat" / "train.jsonl")), bos_tokenizer)
    for column in ("prompt", "chosen", "rejected", "prompt_input_ids", "chosen_input_ids", "rejected_input_ids"):
        assert list(loaded.train[column]) == list(single.train[column])


def test_sft_text_from_a_parquet_folder(tmp_path, bos_tokenizer):
    path = parquet_folder(tmp_path / "pq", train=[{"text": "Hello there."}, {"text": "Go away!"}])
    loaded = load_sft_data(cfg(path), bos_tokenizer)
    assert loaded.report.shape == "text" and loaded.report.num_train == 2


def test_cache_key_follows_the_folder_content(tmp_path, bos_tokenizer):
    path = jsonl_folder(tmp_path / "js", train=TRAIN)
    first = load_preference_data(cfg(path, cache=True, cache_dir=str(tmp_path / "cache")), bos_tokenizer)
    again = load_preference_data(cfg(path, cache=True, cache_dir=str(tmp_path / "cache")), bos_tokenizer)
    assert again.report.from_cache and list(again.train["chosen"]) == list(first.train["chosen"])
    (tmp_path / "js" / "train.jsonl").write_text(json.dumps(TEST[0]) + "\n")
    changed = load_preference_data(cfg(path, cache=True, cache_dir=str(tmp_path / "cache")), bos_tokenizer)
    assert not changed.report.from_cache and list(changed.train["chosen"]) == [" Yes."]
