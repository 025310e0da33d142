"""Tests of tdpo.hashing: content hashes of files, folders and tensors, against hashlib on the bytes."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from tdpo.hashing import file_sha256, folder_files, folder_sha256, tensors_sha256


def test_a_file_hash_is_the_sha256_of_all_its_bytes(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_a_folder_hash_covers_every_visible_file(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    for name, data in (("a.jsonl", b"1"), ("b/c.jsonl", b"2"), (".hidden", b"3"), (".git/x", b"4")):
        (tmp_path / name).write_bytes(data)
    assert folder_files(tmp_path) == ["a.jsonl", "b/c.jsonl"]
    assert folder_sha256(tmp_path) == {"a.jsonl": hashlib.sha256(b"1").hexdigest(),
                                       "b/c.jsonl": hashlib.sha256(b"2").hexdigest()}


def test_a_tensor_hash_follows_values_not_memory_layout():
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = hashlib.sha256()
    expected.update(b'["x", "torch.float32", [3, 4]]')
    expected.update(values.tobytes())
    x = torch.from_numpy(values.copy())
    assert tensors_sha256({"x": x}) == expected.hexdigest()
    assert tensors_sha256({"x": x.t().contiguous().t()}) == expected.hexdigest()  # column-major copy
    changed = x.clone()
    changed[2, 3] = float(np.nextafter(np.float32(11), np.float32(12)))  # one ulp
    assert tensors_sha256({"x": changed}) != expected.hexdigest()
    assert tensors_sha256({"x": x.double()}) != expected.hexdigest()
    assert tensors_sha256({"y": x}) != expected.hexdigest()
    assert tensors_sha256({"x": x, "s": torch.tensor([1])}) == tensors_sha256({"s": torch.tensor([1]), "x": x})
