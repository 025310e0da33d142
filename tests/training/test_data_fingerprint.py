"""Tests of tdpo.training.data_fingerprint: ``--resume`` refuses data that changed since the checkpoint
(files edited in place, records passed in), naming what changed; the records' hash depends on their
values only."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import datasets
import pytest

from tdpo.training import checkpoint as ckpt
from tdpo.training import train
from tdpo.training.data_fingerprint import (
    DataChangedError,
    check_same_data,
    data_changes,
    records_sha256,
)
from tests.train_fixtures import make_model_dir, single_thread, tiny_config, training_data  # noqa: F401

WORDS = [f"w{i}" for i in range(4, 44)]


def _pairs_file(path):
    with path.open("w") as f:
        for i in range(10):
            prompt = " ".join(WORDS[(i + k) % 40] for k in range(3))
            f.write(json.dumps({"prompt": prompt, "chosen": f" {WORDS[i]} {WORDS[i + 1]}",
                                "rejected": f" {WORDS[-1 - i]} {WORDS[-2 - i]}"}) + "\n")
    return path


def _flip_in_place(path):
    """Swap chosen and rejected of every row, keeping the file's size and modification time."""
    st = path.stat()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r["rejected"], "rejected": r["chosen"]}) + "\n"
                            for r in rows))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


@pytest.mark.usefixtures("single_thread")
def test_resume_refuses_a_data_file_changed_in_place_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    model_dir = make_model_dir(tmp_path / "tiny")
    data = _pairs_file(tmp_path / "pairs.jsonl")
    original = data.read_bytes()
    args = [f"data.source={data}", "data.test_size=2", "data.max_length=16", "checkpoint.every_steps=2"]
    run = train(tiny_config(model_dir, tmp_path / "runs", *args))
    saved = ckpt.read_state(ckpt.latest_checkpoint(run))["data"]
    assert saved["files"] == {str(data): hashlib.sha256(original).hexdigest()}

    _flip_in_place(data)
    longer = tiny_config(model_dir, tmp_path / "runs", *args, "schedule.max_steps=6")
    with pytest.raises(DataChangedError) as info:
        train(longer, resume=True)
    message = str(info.value)
    assert message.startswith(f"--resume: the training data changed since "
                              f"{ckpt.latest_checkpoint(run) / ckpt.STATE_FILE} was written: {data} (changed); ")
    assert "\n" not in message
    assert sorted(p.name for p in (run / ckpt.CHECKPOINTS).iterdir()) == ["step-000002", "step-000004"]

    data.write_bytes(original)  # the run's own data again: the resume goes on
    train(longer, resume=True)
    assert ckpt.read_state(ckpt.latest_checkpoint(run))["step"] == 6
    assert ckpt.read_state(ckpt.latest_checkpoint(run))["data"] == saved


@pytest.mark.usefixtures("single_thread")
def test_resume_refuses_other_records_passed_in(tmp_path):
    model_dir = make_model_dir(tmp_path / "tiny")
    cfg = tiny_config(model_dir, tmp_path / "runs", "checkpoint.every_steps=2")
    train(cfg, data=training_data(8))
    longer = tiny_config(model_dir, tmp_path / "runs", "checkpoint.every_steps=2", "schedule.max_steps=6")
    with pytest.raises(DataChangedError, match=r"written: the tokenized train records; the tokenized eval records "
                                               r"\(no data file changed"):
        train(longer, resume=True, data=training_data(8, seed=1))
    train(longer, resume=True, data=training_data(8))


def test_the_changes_are_listed_by_file():
    saved = {"files": {"/d/a.jsonl": "1", "/d/b.jsonl": "2", "/d/c.jsonl": "3"}, "records": {"train": "t", "eval": None}}
    now = {"files": {"/d/a.jsonl": "1", "/d/b.jsonl": "9", "/d/d.jsonl": "4"}, "records": {"train": "u", "eval": None}}
    assert data_changes(saved, now) == ["/d/b.jsonl (changed)", "/d/c.jsonl (removed)", "/d/d.jsonl (added)",
                                        "the tokenized train records"]
    assert data_changes(saved, saved) == []
    with pytest.raises(DataChangedError, match=r"^--resume: .*written: /d/b.jsonl \(changed\); /d/c.jsonl"):
        check_same_data({"data": saved}, now, "run/trainer_state.json")
    check_same_data({"data": saved}, json.loads(json.dumps(saved)), "run/trainer_state.json")


def test_a_checkpoint_without_a_fingerprint_is_resumed_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="tdpo.training.data_fingerprint"):
        check_same_data({"step": 3}, {"files": {}, "records": {"train": "t", "eval": None}}, "old/trainer_state.json")
    assert "old/trainer_state.json records no fingerprint of the training data" in caplog.text


def test_the_records_hash_depends_on_the_values_only(tmp_path):
    rows = {"chosen_input_ids": [[5, 6], [7], [8, 9, 10]], "rejected_input_ids": [[1], [2, 3], [4]],
            "index": [0, 1, 2], "prompt": ["a", "b", "c"]}
    built = datasets.Dataset.from_dict(rows)
    built.save_to_disk(str(tmp_path / "saved"))
    reloaded = datasets.load_from_disk(str(tmp_path / "saved"))
    reordered = built.select([2, 0])  # an indices mapping over the same Arrow table
    same_as_reordered = datasets.Dataset.from_dict({k: [v[2], v[0]] for k, v in rows.items()})
    assert records_sha256(built) == records_sha256(reloaded)
    assert records_sha256(reordered) == records_sha256(same_as_reordered)
    flipped = datasets.Dataset.from_dict(rows | {"chosen_input_ids": rows["rejected_input_ids"],
                                                 "rejected_input_ids": rows["chosen_input_ids"]})
    assert records_sha256(flipped) != records_sha256(built)
    regrouped = datasets.Dataset.from_dict(rows | {"chosen_input_ids": [[5], [6, 7], [8, 9, 10]]})
    assert records_sha256(regrouped) != records_sha256(built)  # same values, other lengths
    as_list = [{k: v[i] for k, v in rows.items()} for i in range(3)]
    assert records_sha256(as_list) == records_sha256([dict(r) for r in as_list])
    assert records_sha256(as_list) != records_sha256(as_list[::-1])
