"""Tests of tdpo.training.checkpoint: atomic writes, finding the latest complete checkpoint, pruning."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator

from tdpo.training import checkpoint as ckpt
from tests.train_fixtures import make_model_dir, single_thread, tiny_config, training_data  # noqa: F401


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


# --------------------------------------------------------------------------------------------------
# A checkpoint's state is checked when read back: types, ranges, finite floats; errors name file and field


def _saved_checkpoint(tmp_path):
    """``(accelerator, wrapper, optimizer, folder)``: one AdamW step of a one-layer Llama, saved."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tdpo.training.optim import build_scheduler

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16, tie_word_embeddings=True))
    accelerator = Accelerator()
    wrapper, opt = accelerator.prepare(_Wrapper(model), torch.optim.AdamW(model.parameters(), lr=0.1))
    sched = build_scheduler(opt, 3)
    wrapper.model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    sched.step()
    folder = ckpt.checkpoint_dir(tmp_path, 1)
    state = {"step": 1, "total_steps": 4, "examples": 4, "epoch": 0, "batch_in_epoch": 1, "last_eval_step": None,
             "divergence": {"losses": [0.69], "initial_weight_norm": 3.5, "spikes": 0, "zero_grads": 0}}
    ckpt.save_checkpoint(accelerator, wrapper, None, folder, state, optimizer=opt, scheduler=sched)
    return accelerator, wrapper, opt, folder


def _tree_set(tree, path, value):
    """Set ``path`` (keys / list positions) inside a trainer-state skeleton (``__dict__`` / ``__list__``)."""
    key, rest = path[0], path[1:]
    if isinstance(tree, dict) and "__dict__" in tree:
        for item in tree["__dict__"]:
            if item[0] == key:
                if rest:
                    _tree_set(item[1], rest, value)
                else:
                    item[1] = value
                return
        raise KeyError(key)
    items = tree["__list__"] if isinstance(tree, dict) else tree
    if rest:
        _tree_set(items[key], rest, value)
    else:
        items[key] = value


# (file, where, new value, what the error must say after the file's path)
DAMAGE = [
    ("trainer_state/optimizer.json", ("param_groups", 0, "lr"), float("nan"),
     "param_groups/0/lr is nan, not a finite number"),
    ("trainer_state/optimizer.json", ("param_groups", 0, "lr"), {"__float__": "inf"},
     "param_groups/0/lr is inf, not a finite number"),
    ("trainer_state/optimizer.json", ("param_groups", 0, "lr"), "fast", "param_groups/0/lr is 'fast', expected a number"),
    ("trainer_state/optimizer.json", ("param_groups", 0, "eps"), -1e-8, "param_groups/0/eps is -1e-08, expected a finite"),
    ("trainer_state/optimizer.json", ("param_groups", 0, "betas", 1), 1.5, "param_groups/0/betas/1 is 1.5, expected"),
    ("trainer_state/optimizer.json", ("param_groups", 0, "params", 0), "lm_head", "param_groups/0/params is"),
    ("trainer_state/scheduler.json", ("base_lrs", 0), float("inf"), "base_lrs/0 is inf, not a finite number"),
    ("trainer_state/scheduler.json", ("last_epoch",), -3, "last_epoch is -3, expected at least 0"),
    ("trainer_state/rng-0.json", ("numpy", "cached_gaussian"), float("nan"),
     "numpy/cached_gaussian is nan, not a finite number"),
    ("trainer_state/rng-0.json", ("numpy", "pos"), 9999, "numpy/pos is 9999, expected at least 0 and at most 624"),
    ("trainer_state.json", ("step",), -1, "step is -1, expected at least 0"),
    ("trainer_state.json", ("step",), 5, "step is 5, expected at least 0 and at most 4"),
    ("trainer_state.json", ("step",), 1.0, "step is 1.0, expected an integer"),
    ("trainer_state.json", ("total_steps",), 0, "total_steps is 0, expected at least 1"),
    ("trainer_state.json", ("last_eval_step",), 3, "last_eval_step is 3, expected at least 0 and at most 1"),
    ("trainer_state.json", ("examples",), True, "examples is True, expected an integer"),
    ("trainer_state.json", ("divergence", "losses", 0), float("nan"), "divergence/losses/0 is nan, not a finite"),
    ("trainer_state.json", ("divergence", "initial_weight_norm"), float("-inf"),
     "divergence/initial_weight_norm is -inf, not a finite"),
]


@pytest.mark.parametrize("file, where, value, message", DAMAGE, ids=[f"{d[0]}:{'/'.join(map(str, d[1]))}={d[2]}"
                                                                     for d in DAMAGE])
def test_a_damaged_state_is_refused_naming_file_and_field(file, where, value, message, tmp_path):
    from tdpo.training.optim import build_scheduler
    from tdpo.training.trainer_state import TrainerStateError

    accelerator, wrapper, opt, folder = _saved_checkpoint(tmp_path)
    path = folder / file
    data = json.loads(path.read_text())
    if "format" in data:  # a trainer-state tree: the skeleton with its markers
        _tree_set(data["tree"], list(where), value)
    else:
        target = data
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
    path.write_text(json.dumps(data))  # NaN and Infinity as JSON literals, which Python's json reads back
    with pytest.raises(TrainerStateError) as info:
        ckpt.load_checkpoint(accelerator, wrapper, opt, build_scheduler(opt, 3), folder)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_the_undamaged_state_loads(tmp_path):
    from tdpo.training.optim import build_scheduler

    accelerator, wrapper, opt, folder = _saved_checkpoint(tmp_path)
    assert ckpt.load_checkpoint(accelerator, wrapper, opt, build_scheduler(opt, 3), folder)["step"] == 1


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("damage", ["negative step", "nan lr"])
def test_resuming_a_damaged_run_is_refused_before_training(damage, tmp_path):
    from tdpo.training import train
    from tdpo.training.trainer_state import TrainerStateError

    model_dir = make_model_dir(tmp_path / "tiny")
    cfg = tiny_config(model_dir, tmp_path / "runs", "checkpoint.every_steps=2")
    run = train(cfg, data=training_data(8))
    last = ckpt.latest_checkpoint(run)
    if damage == "negative step":
        file, field = last / ckpt.STATE_FILE, "step is -1"
        state = json.loads(file.read_text())
        file.write_text(json.dumps({**state, "step": -1}))
    else:
        file, field = last / ckpt.STATE_DIR / "optimizer.json", "param_groups/0/lr is nan"
        file.write_text(file.read_text().replace('"lr", 0.01', '"lr", NaN'))
    longer = tiny_config(model_dir, tmp_path / "runs", "checkpoint.every_steps=2", "schedule.max_steps=6")
    with pytest.raises(TrainerStateError, match=f"^{file}: {field}"):
        train(longer, resume=True, data=training_data(8))
    assert sorted(p.name for p in (run / ckpt.CHECKPOINTS).iterdir()) == ["step-000002", "step-000004"]
