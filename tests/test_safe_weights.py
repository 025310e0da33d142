"""Tests of tdpo.safe_weights: model folders load from safetensors only; pickled weights are refused
with one line naming the file and the conversion, and never unpickled, at every place tdpo loads a model."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest
import torch

from tdpo.model_errors import ModelLoadError
from tests.train_fixtures import make_model_dir, single_thread, tiny_config, training_data  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


class Payload:
    """Unpickling this runs code: it writes the file ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('unpickled')",)


@pytest.fixture
def pickled_dir(tmp_path):
    """A tiny Llama folder with its weights in ``pytorch_model.bin`` (``torch.save``, as transformers wrote
    them before safetensors) and no ``*.safetensors``."""
    from transformers import AutoModelForCausalLM

    folder = make_model_dir(tmp_path / "pickled")
    model = AutoModelForCausalLM.from_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.fixture
def malicious_dir(tmp_path):
    """A model folder whose ``pytorch_model.bin`` runs code when unpickled; returns ``(folder, marker)``."""
    folder = make_model_dir(tmp_path / "malicious")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "marker"
    torch.save({"model.embed_tokens.weight": Payload(str(marker))}, folder / "pytorch_model.bin")
    return folder, marker


@pytest.fixture
def no_unpickling(monkeypatch):
    """Record every call of ``torch.load`` (how transformers reads a pickled weights file)."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("f"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.mark.slow  # a child process that imports torch: about 5 s
def test_the_payload_is_live(malicious_dir, tmp_path):
    """The malicious file really runs code when unpickled without restriction (in a child process)."""
    folder, marker = malicious_dir
    code = f"import torch; torch.load({str(folder / 'pytorch_model.bin')!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=tmp_path, check=False)
    assert marker.read_text() == "unpickled"


def _one_line(err: BaseException, folder) -> str:
    text = str(err)
    assert "\n" not in text
    assert f"{folder / 'pytorch_model.bin'} holds pickled weights" in text
    assert "weights_only" not in text
    return text


@pytest.mark.slow
def test_a_folder_with_pickled_weights_only_is_refused_with_the_conversion(pickled_dir, no_unpickling):
    from tdpo.models import load_causal_lm

    with pytest.raises(ModelLoadError) as info:
        load_causal_lm(str(pickled_dir))
    text = _one_line(info.value, pickled_dir)
    assert no_unpickling == []
    # the conversion it names works (run here on a file we wrote ourselves), and the folder then loads
    command = text[text.index("python -c "):]
    subprocess.run([sys.executable, *shlex.split(command)[1:]], check=True, capture_output=True)
    assert (pickled_dir / "model.safetensors").is_file()
    converted = load_causal_lm(str(pickled_dir))
    original = torch.load(pickled_dir / "pytorch_model.bin", weights_only=True)
    for name, value in converted.state_dict().items():
        assert torch.equal(value, original[name]), name


def test_training_from_a_pickled_folder_is_refused_naming_the_key(pickled_dir, tmp_path, no_unpickling):
    from tdpo.training import train

    cfg = tiny_config(pickled_dir, tmp_path / "runs")
    with pytest.raises(ModelLoadError) as info:
        train(cfg, data=training_data(8))
    assert str(info.value).startswith(f"model.name_or_path: {pickled_dir / 'pytorch_model.bin'} holds pickled")
    _one_line(info.value, pickled_dir)
    ref = tiny_config(make_model_dir(tmp_path / "ok"), tmp_path / "runs2", f"reference.name_or_path={pickled_dir}")
    with pytest.raises(ModelLoadError, match=r"^reference\.name_or_path: .*pytorch_model\.bin holds pickled"):
        train(ref, data=training_data(8))
    assert no_unpickling == []


def test_tdpo_train_says_it_in_one_line_before_loading_data(pickled_dir, tmp_path, capsys, no_unpickling):
    from tdpo.commands.train import main

    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "w4 w5", "chosen": " w6", "rejected": " w7"}) + "\n")
    code = main([f"model.name_or_path={pickled_dir}", f"data.source={data}", f"output_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith(f"tdpo train: error: model.name_or_path: {pickled_dir / 'pytorch_model.bin'} holds "
                             "pickled weights and the folder has no .safetensors file")
    assert "python -c " in err[0] and "save_pretrained" in err[0]
    assert no_unpickling == []


def _load(site: str, folder):
    """Load the model in ``folder`` the way ``site`` (one of :data:`LOAD_SITES`) of tdpo does."""
    import argparse

    from tdpo.commands.judge import _judge_with_reward_model
    from tdpo.experiments.imdb.sentiment import HFSentimentReward
    from tdpo.experiments.imdb.steps import _load_lm
    from tdpo.models import load_causal_lm, load_policy, load_reference

    cfg = tiny_config(folder, folder.parent / "runs", f"reference.name_or_path={folder}")
    if site == "load_causal_lm":
        return load_causal_lm(str(folder))
    if site == "load_policy":
        return load_policy(cfg.model)
    if site == "load_reference":
        return load_reference(cfg.reference, cfg.model)
    if site == "imdb steps":
        return _load_lm(str(folder))
    if site == "imdb sentiment reward":
        return HFSentimentReward(str(folder))
    args = argparse.Namespace(reward_model=str(folder), dtype="float32", batch_size=2, tie_margin=0.0,
                              no_progress=True)
    return _judge_with_reward_model(args, [], [], [], {})


LOAD_SITES = ["load_causal_lm", "load_policy", "load_reference", "imdb steps", "imdb sentiment reward",
              "judge --reward-model"]


@pytest.mark.parametrize("site", LOAD_SITES)
def test_a_malicious_pickle_is_never_unpickled(site, malicious_dir, no_unpickling):
    folder, marker = malicious_dir
    with pytest.raises(ModelLoadError, match="pytorch_model.bin holds pickled weights"):
        _load(site, folder)
    assert not marker.exists()
    assert no_unpickling == []


def test_the_judge_names_its_option(malicious_dir):
    folder, _ = malicious_dir
    with pytest.raises(ModelLoadError, match=r"^--reward-model: .*pytorch_model\.bin holds pickled weights"):
        _load("judge --reward-model", folder)


def test_a_malicious_pickle_beside_safetensors_is_left_alone(malicious_dir, tmp_path, no_unpickling):
    from tdpo.models import load_causal_lm

    folder, marker = malicious_dir
    good = make_model_dir(tmp_path / "good")
    (folder / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    model = load_causal_lm(str(folder))
    assert torch.equal(model.lm_head.weight, load_causal_lm(str(good)).lm_head.weight)
    assert not marker.exists() and no_unpickling == []


def test_a_config_pointing_at_a_pickled_file_is_refused(malicious_dir, tmp_path, no_unpickling):
    from tdpo.models import load_causal_lm

    folder, marker = malicious_dir
    good = make_model_dir(tmp_path / "good")
    (folder / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["transformers_weights"] = "pytorch_model.bin"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="transformers_weights names 'pytorch_model.bin', which is not a "
                                             "safetensors file"):
        load_causal_lm(str(folder))
    assert not marker.exists() and no_unpickling == []


def test_hub_ids_are_asked_for_safetensors(monkeypatch):
    from transformers import AutoModelForCausalLM

    from tdpo.models import load_causal_lm

    asked = {}

    def fake(name, **kwargs):
        asked.update(kwargs, name=name)
        raise OSError("stop here")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake)
    with pytest.raises(OSError):
        load_causal_lm("tdpo-tests/some-model")
    assert asked["name"] == "tdpo-tests/some-model" and asked["use_safetensors"] is True


def test_which_files_count_as_pickled_weights(tmp_path):
    from tdpo.safe_weights import pickled_weight_files

    for name in ("training_args.bin", "optimizer.pt", "pytorch_model-00002-of-00002.bin",
                 "pytorch_model-00001-of-00002.bin", "model.ckpt", "tokenizer.json", "rng_state.pth"):
        (tmp_path / name).write_bytes(b"x")
    assert pickled_weight_files(tmp_path) == ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
                                              "model.ckpt", "optimizer.pt", "rng_state.pth"]
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert pickled_weight_files(tmp_path) == []
