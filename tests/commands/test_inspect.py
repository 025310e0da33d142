"""``tdpo inspect`` from the command line: flags, prompts mode, errors (the numbers themselves are
checked in tests/token_view)."""

from __future__ import annotations

import json
import re

import pytest

from tdpo.cli import main as tdpo_main
from tdpo.commands.inspect import main
from tests.tiny_models import byte_tokenizer, tiny_causal_lm


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    tokenizer = byte_tokenizer()
    for name, seed in (("ref", 1), ("pol", 2)):
        tiny_causal_lm(seed, len(tokenizer), scale=5.0).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


def page_data(path):
    return json.loads(re.search(r'id="tdpo-data">(.*?)</script>', path.read_text(encoding="utf-8"), re.S).group(1))


def test_prompts_mode_samples_each_policy_and_writes_one_page(models, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Review: the film\nA dog\nThird prompt\n")
    out = tmp_path / "view.html"
    code = tdpo_main(["inspect", "--model", str(models / "pol"), "--model", str(models / "ref"), "--name", "policy",
                      "--name", "itself", "--reference", str(models / "ref"), "--prompts", str(prompts),
                      "--prompt-format", "raw", "--max-pairs", "2", "--max-new-tokens", "5", "--seed", "7",
                      "--output", str(out), "--no-progress"])
    assert code == 0
    err = capsys.readouterr().err
    assert f"wrote {out}" in err and out.resolve().as_uri() in err
    data = page_data(out)
    assert data["mode"] == "samples" and data["models"] == ["policy", "itself"] and len(data["items"]) == 2
    assert data["sampling"]["seed"] == 7 and data["sampling"]["max_new_tokens"] == 5
    assert data["items"][0]["prompt"] == "<s>Review: the film"
    itself = data["items"][0]["cells"][1]
    assert itself["stats"]["kl"] == 0 and itself["stats"]["delta"] == 0  # the reference against itself


@pytest.mark.parametrize("flags, message", [
    (["--model", "a", "--name", "x", "--name", "y", "--data", "d"], "2 --name for 1 --model"),
    (["--model", "a", "--model", "a", "--data", "d"], "the model names must differ"),
    (["--model", "a", "--data", "d", "--prompts", "p"], "give --prompts or --data/--config, not both"),
    (["--model", "a"], "give --data SOURCE"),
    (["--model", "a", "--data", "d", "--top-k", "0"], "--top-k must be >= 1"),
])
def test_bad_flags_are_refused_with_status_2(flags, message, capsys):
    assert main(flags) == 2
    assert message in capsys.readouterr().err


def test_a_bad_prompts_file_names_its_line(models, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": \n')
    code = main(["--model", str(models / "pol"), "--reference", str(models / "ref"), "--prompts", str(prompts),
                 "--output", str(tmp_path / "x.html"), "--no-progress"])
    assert code == 1
    assert f"{prompts}, line 2" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
