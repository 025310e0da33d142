"""The IMDb experiment's token-level view (tdpo.experiments.imdb.inspect_page) in a hand-made experiment folder, and
the report's link to it."""

from __future__ import annotations

import json
import re
import shutil

from tdpo.experiments.imdb.experiment import ImdbConfig
from tdpo.experiments.imdb.inspect_page import spread_over_prompts, step_inspect
from tdpo.experiments.imdb.layout import paths
from tdpo.experiments.imdb.report import write_report


def test_pairs_are_taken_in_turn_from_every_prompt():
    prompts = ["a", "a", "a", "b", "c", "c", "a"]
    assert spread_over_prompts(prompts, 3) == [0, 3, 4]  # the first pair of each prompt
    assert spread_over_prompts(prompts, 5) == [0, 1, 3, 4, 5]  # then the second of each
    assert spread_over_prompts(prompts, 99) == list(range(7))
    assert spread_over_prompts([], 4) == []


def experiment(tmp_path, tiny_lm_dir, pairs: int) -> ImdbConfig:
    """A folder with an SFT model, a finished DPO run (TDPO2 unfinished) and ``pairs`` held-out pairs over 3
    prefixes: what step_inspect reads."""
    cfg = ImdbConfig(out_dir=str(tmp_path / "exp"), max_new_tokens=6, methods=["dpo:beta=0.2", "tdpo2:beta=0.2"])
    p = paths(cfg)
    for name in ("sft", "dpo_beta0.2"):
        shutil.copytree(tiny_lm_dir, p.final_model(name))
    rows = [{"prompt": f"Prefix {i % 3}", "chosen": f" good film {i}", "rejected": f" bad film {i}"} for i in range(pairs)]
    p.pairs_eval.parent.mkdir(parents=True)
    p.pairs_eval.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return cfg


def test_step_inspect_writes_the_page_of_the_finished_runs_and_the_report_links_it(tmp_path, tiny_lm_dir):
    cfg = experiment(tmp_path, tiny_lm_dir, pairs=20)
    page = step_inspect(cfg, pairs=7)
    assert page == paths(cfg).inspect and page.is_file()
    data = json.loads(re.search(r'id="tdpo-data">(.*?)</script>', page.read_text(encoding="utf-8"), re.S).group(1))
    assert data["models"] == ["DPO (beta=0.2)"] and data["beta"] == 0.2  # TDPO2 has no final model
    assert data["reference"] == str(paths(cfg).final_model("sft")) and data["mode"] == "pairs"
    assert [item["index"] for item in data["items"]] == list(range(7))  # 20 pairs in turn over 3 prefixes
    assert data["source"] == "pairs_eval.jsonl (7 of 20 held-out pairs)"

    results = {"models": [], "reward_model": "r"}
    text = write_report(cfg, results, {}, paths(cfg).report).read_text()
    assert "## Token-level view" in text and "[inspect.html](inspect.html)" in text


def test_no_page_without_held_out_pairs_or_finished_runs(tmp_path, tiny_lm_dir):
    cfg = experiment(tmp_path, tiny_lm_dir, pairs=3)
    shutil.rmtree(paths(cfg).final_model("dpo_beta0.2"))
    assert step_inspect(cfg) is None and not paths(cfg).inspect.exists()
    text = write_report(cfg, {"models": [], "reward_model": "r"}, {}, paths(cfg).report).read_text()
    assert "Token-level view" not in text
