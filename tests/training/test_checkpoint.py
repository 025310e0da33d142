"""Tests of tdpo.training.checkpoint: atomic writes, finding the latest complete checkpoint, pruning."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator

from tdpo.training import checkpoint as ckpt


def _fake_checkpoint(run, step, complete=True):
    folder = ckpt.checkpoint_dir(run, step)
    folder.mkdir(parents=True)
    if complete:
        (folder / ckpt.STATE_FILE).write_text(json.dumps({"step": step}))
    return folder


def test_latest_ignores_incomplete_and_temporary_folders(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None
    _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 10)
    _fake_checkpoint(tmp_path, 12, complete=False)  # killed while saving
    (tmp_path / ckpt.CHECKPOINTS / ".tmp-step-000014").mkdir()
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000010"  # 10 > 2 numerically
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000002", "step-000010"]
    assert ckpt.read_state(ckpt.latest_checkpoint(tmp_path)) == {"step": 10}
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        ckpt.read_state(ckpt.checkpoint_dir(tmp_path, 12))


def test_prune_keeps_the_last_k(tmp_path):
    for step in (1, 2, 3, 4):
        _fake_checkpoint(tmp_path, step)
    deleted = ckpt.prune_checkpoints(tmp_path, 2)
    assert [p.name for p in deleted] == ["step-000001", "step-000002"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]


class _Wrapper(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model


def test_save_and_load_round_trip_with_optimizer_and_rng(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tdpo.training.optim import build_scheduler

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16, tie_word_embeddings=True))
    accelerator = Accelerator()
    wrapper = _Wrapper(model)
    opt = torch.optim.AdamW(wrapper.parameters(), lr=0.1)
    wrapper, opt = accelerator.prepare(wrapper, opt)
    sched = build_scheduler(opt, 3)
    wrapper.model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    sched.step()
    folder = ckpt.checkpoint_dir(tmp_path, 1)
    ckpt.save_checkpoint(accelerator, wrapper, None, folder, {"step": 1, "note": "x"}, optimizer=opt, scheduler=sched)
    assert not list(folder.parent.glob(".tmp-*")) and ckpt.is_complete(folder)
    files = sorted(p.name for p in (folder / ckpt.STATE_DIR).iterdir())
    assert files == ["optimizer.json", "optimizer.safetensors", "rng-0.json", "rng-0.safetensors", "scheduler.json"]
    expected_draw = torch.rand(3)  # the RNG state right after saving
    saved = {k: v.clone() for k, v in wrapper.state_dict().items()}
    exp_avg = {id(p): opt.state[p]["exp_avg"].clone() for p in wrapper.parameters()}
    lr = sched.get_last_lr()
    with torch.no_grad():
        for p in wrapper.parameters():
            p.zero_()
    opt.state.clear()
    sched2 = build_scheduler(opt, 3)
    state = ckpt.load_checkpoint(accelerator, wrapper, opt, sched2, folder)
    assert state == {"step": 1, "note": "x"}
    for k, v in wrapper.state_dict().items():
        assert torch.equal(v, saved[k])
    for p in wrapper.parameters():
        assert torch.equal(opt.state[p]["exp_avg"], exp_avg[id(p)])
    assert sched2.get_last_lr() == lr and sched2.last_epoch == 1
    assert torch.equal(torch.rand(3), expected_draw)
    # saving over an existing folder replaces it atomically
    ckpt.save_checkpoint(accelerator, wrapper, None, folder, {"step": 1, "note": "y"})
    assert ckpt.read_state(folder)["note"] == "y"


def test_no_checkpoint_is_written_with_nonfinite_weights_or_optimizer_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    accelerator = Accelerator()
    opt = torch.optim.RMSprop(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    wrapper = _Wrapper(model)
    with torch.no_grad():
        model.bias[0] = float("nan")
    with pytest.raises(ckpt.NonFiniteStateError, match="model.bias"):
        ckpt.save_checkpoint(accelerator, wrapper, None, tmp_path / "a", {"step": 1})
    with torch.no_grad():
        model.bias[0] = 0.0
    opt.state[model.weight]["square_avg"][0, 0] = float("inf")
    with pytest.raises(ckpt.NonFiniteStateError, match="square_avg"):
        ckpt.save_checkpoint(accelerator, wrapper, None, tmp_path / "b", {"step": 1}, optimizer=opt)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".tmp-*"))
