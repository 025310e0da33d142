"""Tests of tdpo.training.model_card: the front matter of final/README.md parses as YAML with the Hub's
fields for a full-model and a LoRA run, the metrics, the command and the settings appear in the body, the
base model's license is read from its local files, and a tiny training run writes the card into final/."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch
import yaml

from tdpo.config import config_to_dict, load_config
from tdpo.training import checkpoint as ckpt
from tdpo.training import train
from tdpo.training.model_card import (
    base_model_license,
    front_matter_of,
    render_model_card,
    write_model_card,
)
from tdpo.training.run_folder import COMMAND_FILE, launch_command, read_commands, record_command
from tdpo.training.tracking import read_metrics
from tests.train_fixtures import make_model_dir, single_thread, tiny_config, training_data  # noqa: F401


def _split_card(text: str) -> tuple[dict, str]:
    """The front matter (parsed here with yaml.safe_load) and the body of a card."""
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match, "the card does not start with YAML front matter between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def _code_block(body: str, language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", body, re.S)
    assert len(blocks) == 1, f"expected one {language} block, found {len(blocks)}"
    return blocks[0]


def _table(body: str) -> dict[str, tuple[str, str]]:
    """``metric -> (train cell, eval cell)`` of the card's metrics table."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]*) \| ([^|]*) \|$", body, re.M)
    return {name: (train.strip(), evaluation.strip()) for name, train, evaluation in rows}


def _config(*overrides: str) -> dict:
    return config_to_dict(load_config(None, list(overrides)))


def test_full_model_card_front_matter_and_body():
    config = _config("model.name_or_path=HuggingFaceTB/SmolLM2-135M", "data.source=hh", "loss.name=tdpo2",
                     "loss.alpha=0.3", "loss.beta=0.2", "run_name=hh-tdpo2")
    train_metrics = {"loss": 0.6931471805599453, "kl/chosen": 0.125, "grad_norm": None}
    eval_metrics = {"loss": 0.5, "rewards/accuracies": 0.75}
    command = "tdpo train configs/tdpo2.yaml loss.alpha=0.3 loss.beta=0.2"
    text = render_model_card(config, train_metrics=train_metrics, eval_metrics=eval_metrics, step=12,
                             commands=[command], license_info={"license": "apache-2.0"},
                             folder="runs/hh-tdpo2/final")
    front, body = _split_card(text)
    assert front == {"base_model": "HuggingFaceTB/SmolLM2-135M", "library_name": "transformers",
                     "tags": ["tdpo", "tdpo2"], "datasets": ["Anthropic/hh-rlhf"], "license": "apache-2.0"}
    assert body.lstrip().startswith("# hh-tdpo2\n")
    assert "alpha=0.3" in body and "beta=0.2" in body and "12 optimizer step" in body
    assert _code_block(body, "bash").strip() == command
    assert yaml.safe_load(_code_block(body, "yaml")) == config  # the settings load back to the config
    table = _table(body)
    assert set(table) == {"loss", "kl/chosen", "grad_norm", "rewards/accuracies"}
    assert float(table["loss"][0]) == pytest.approx(0.6931471805599453, rel=1e-5)
    assert float(table["loss"][1]) == 0.5
    assert float(table["kl/chosen"][0]) == 0.125 and table["kl/chosen"][1] == ""
    assert table["rewards/accuracies"] == ("", "0.75")
    assert "not finite" in table["grad_norm"][0]
    use = _code_block(body, "python")
    assert 'AutoModelForCausalLM.from_pretrained("runs/hh-tdpo2/final")' in use
    assert 'AutoTokenizer.from_pretrained("runs/hh-tdpo2/final")' in use
    assert "peft" not in use.lower()
    compile(use, "card", "exec")


@pytest.mark.parametrize("merged", [True, False])
def test_lora_card_tags_and_adapter_loading(merged):
    config = _config("model.name_or_path=runs/sft/final", "data.source=examples/pairs.jsonl", "loss.name=dpo",
                     "lora.enabled=true", "lora.r=4")
    text = render_model_card(config, train_metrics={"loss": 0.25}, eval_metrics={}, commands=[], merged=merged,
                             folder="runs/dpo/final")
    front, body = _split_card(text)
    # a local base model keeps its path; a local data file is no hub dataset; no license known
    assert front == {"base_model": "runs/sft/final", "library_name": "transformers",
                     "tags": ["tdpo", "dpo", "peft", "lora"]}
    use = _code_block(body, "python")
    assert 'base = AutoModelForCausalLM.from_pretrained("runs/sft/final")' in use
    assert 'PeftModel.from_pretrained(base, "runs/dpo/final", subfolder="adapter")' in use
    assert ('model = AutoModelForCausalLM.from_pretrained("runs/dpo/final")' in use) == merged
    assert "not recorded" in body and "r=4" in body
    compile(use, "card", "exec")


def test_data_given_by_the_caller_has_no_datasets_and_builtin_names_its_hub_id():
    config = _config("model.name_or_path=builtin", "data.source=stanfordnlp/imdb", "loss.name=sft")
    assert _split_card(render_model_card(config))[0]["datasets"] == ["stanfordnlp/imdb"]
    front, body = _split_card(render_model_card(config, data_from_config=False))
    assert "datasets" not in front and "stanfordnlp/imdb" not in body.split("```yaml")[0]
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "No metrics were logged" in body


def test_license_is_read_from_the_base_models_local_files(tmp_path):
    card = tmp_path / "with_card"
    card.mkdir()
    (card / "README.md").write_text("---\nlicense: other\nlicense_name: custom\nlicense_link: LICENSE\n"
                                    "tags: [x]\n---\n# A model\n")
    (card / "config.json").write_text(json.dumps({"license": "ignored"}))
    assert base_model_license(str(card)) == {"license": "other", "license_name": "custom", "license_link": "LICENSE"}
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "README.md").write_text("# no front matter\n")
    (config_only / "config.json").write_text(json.dumps({"license": "mit", "model_type": "llama"}))
    assert base_model_license(str(config_only)) == {"license": "mit"}
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    (nothing / "config.json").write_text("{}")
    assert base_model_license(str(nothing)) == {}
    assert base_model_license(str(tmp_path / "missing")) == {}
    assert base_model_license("no-such-owner-xyz/no-such-model-xyz") == {}  # not in the cache: unknown


def test_front_matter_of_needs_a_closed_mapping():
    assert front_matter_of("---\na: 1\n---\nbody") == {"a": 1}
    assert front_matter_of("# title\n---\na: 1\n---\n") == {}
    assert front_matter_of("---\na: 1\n") == {}
    assert front_matter_of("---\n- a\n---\n") == {}
    assert front_matter_of("---\na: [\n---\n") == {}


def test_launch_command_and_the_recorded_commands(tmp_path):
    assert launch_command(["/usr/local/bin/tdpo", "train", "my config.yaml", "loss.beta=0.1"]) == \
        "tdpo train 'my config.yaml' loss.beta=0.1"
    assert launch_command(["/site-packages/tdpo/__main__.py", "train", "c.yaml"]) == "python -m tdpo train c.yaml"
    assert launch_command(["/usr/bin/pytest", "-q"]) is None
    assert launch_command([]) is None
    record_command(tmp_path, "tdpo train a.yaml", resumed=False)
    record_command(tmp_path, None, resumed=True)
    record_command(tmp_path, "tdpo train a.yaml --resume", resumed=True)
    assert (tmp_path / COMMAND_FILE).read_text() == "tdpo train a.yaml\ntdpo train a.yaml --resume\n"
    assert read_commands(tmp_path) == ["tdpo train a.yaml", "tdpo train a.yaml --resume"]
    record_command(tmp_path, "tdpo train b.yaml", resumed=False)  # a new run starts the file again
    assert read_commands(tmp_path) == ["tdpo train b.yaml"]
    assert read_commands(tmp_path / "elsewhere") == []
    assert write_model_card(tmp_path, "text\n").read_text() == "text\n"


# --------------------------------------------------------------------------------------------------
# A tiny training run writes the card into final/


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = make_model_dir(tmp_path_factory.mktemp("card") / "tiny", seed=0)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    return folder


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("lora", [False, True])
def test_a_tiny_run_writes_the_card_into_final(lora, model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    argv = ["/opt/bin/tdpo", "train", f"model.name_or_path={model_dir}", "loss.name=tdpo2"]
    monkeypatch.setattr(sys, "argv", argv)
    extra = ["lora.enabled=true", "lora.r=4", "optim.lr=0.05"] if lora else []
    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "schedule.max_steps=2", *extra)
    run = train(cfg, data=training_data(8))
    card = run / "final" / "README.md"
    assert card.is_file()
    step_card = ckpt.checkpoint_dir(run, 2) / "README.md"  # PEFT writes its own card for an adapter
    assert not step_card.exists() or "with [tdpo]" not in step_card.read_text()  # ours is final/'s only
    front, body = _split_card(card.read_text())
    tags = ["tdpo", "tdpo2"] + (["peft", "lora"] if lora else [])
    # the data came from the caller: no datasets; the license is copied from the base model's card
    assert front == {"base_model": str(model_dir), "library_name": "transformers", "tags": tags, "license": "mit"}
    assert _code_block(body, "bash").strip() == "tdpo train model.name_or_path=" + str(model_dir) + " loss.name=tdpo2"
    assert (run / COMMAND_FILE).is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert yaml.safe_load(_code_block(body, "yaml")) == saved
    table = _table(body)
    last_train, last_eval = read_metrics(run, "train")[-1], read_metrics(run, "eval")[-1]
    assert last_eval["step"] == 2
    for name in ("loss", "kl/chosen", "kl/rejected", "rewards/accuracies"):
        assert float(table[name][0]) == pytest.approx(last_train[name], rel=1e-5, abs=1e-12)
        assert float(table[name][1]) == pytest.approx(last_eval[name], rel=1e-5, abs=1e-12)
    assert "lr" in table and "step" not in table and "split" not in table
    use = _code_block(body, "python")
    assert f'AutoModelForCausalLM.from_pretrained("{(run / "final").as_posix()}")' in use
    assert ("PeftModel" in use) == lora
    assert ckpt.is_complete(run / "final")
    loaded: dict = {}
    exec(compile(use, str(card), "exec"), loaded)  # the card's loading code runs as written
    from_card = (loaded["model"].merge_and_unload() if lora else loaded["model"]).state_dict()
    policy = AutoModelForCausalLM.from_pretrained(run / "final").state_dict()
    assert from_card.keys() == policy.keys()
    for name, value in policy.items():  # the card's model has the final weights (merged for LoRA)
        assert torch.allclose(from_card[name], value, atol=1e-6), name


@pytest.mark.usefixtures("single_thread")
def test_a_card_that_fails_to_render_does_not_cost_the_final_model(model_dir, tmp_path, monkeypatch, caplog):
    from tdpo.training.trainer import Trainer

    def broken(self):
        raise ValueError("no card today")

    monkeypatch.setattr(Trainer, "model_card", broken)
    run = train(tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=1"), data=training_data(4))
    assert ckpt.is_complete(run / "final") and not (run / "final" / "README.md").exists()
    assert "no card today" in caplog.text
    assert not (run / COMMAND_FILE).exists()  # started from Python (pytest): no command recorded
