"""End-to-end test of the IMDb pipeline (tdpo.experiments.imdb.pipeline, plots, report, commands) on tiny models."""

from __future__ import annotations

import json
import logging

import pytest

from tdpo.experiments.imdb.experiment import ImdbConfig, make_config, parse_method
from tdpo.experiments.imdb.pipeline import results_summary, run_pipeline
from tdpo.experiments.imdb.presets import demo_config


def test_parse_method():
    m = parse_method("tdpo2:beta=0.2,alpha=1")
    assert (m.loss, m.beta, m.alpha, m.name) == ("tdpo2", 0.2, 1.0, "tdpo2_beta0.2_alpha1")
    assert parse_method("DPO").name == "dpo_beta0.1"
    with pytest.raises(ValueError, match="unknown loss 'ppo'"):
        parse_method("ppo:beta=0.1")
    with pytest.raises(ValueError, match=r"dpo does not read gamma \(its parameters: beta\)"):
        parse_method("dpo:gamma=2")
    with pytest.raises(ValueError, match="expected KEY=VALUE with KEY one of beta, alpha, .*gamma.*, lr, seed, got 'foo=2'"):
        parse_method("dpo:foo=2")


def test_a_method_takes_every_parameter_its_loss_reads():
    simpo = parse_method("simpo:beta=2,gamma=1")
    assert simpo.extra == (("gamma", 1.0),) and simpo.name == "simpo_beta2_gamma1"
    assert simpo.label == "SimPO (beta=2, gamma=1)" and simpo.setting == parse_method("simpo:gamma=1,beta=2,seed=3").setting
    assert parse_method("simpo").name == "simpo_beta0.1_gamma0.5"  # the registry's default, written out
    assert parse_method("cdpo:label_smoothing=0.1").name == "cdpo_beta0.1_label_smoothing0.1"
    # the names of the runs the presets train do not change
    assert [parse_method(s).name for s in ("dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.7,seed=1", "unlikelihood:alpha=1",
                                          "preferred_ft", "rloo:beta=0.05")] == [
        "dpo_beta0.1", "tdpo2_beta0.1_alpha0.7_seed1", "unlikelihood_alpha1", "preferred_ft", "rloo_beta0.05"]
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        parse_method("simpo:gamma=-1")
    with pytest.raises(ValueError, match=r"label_smoothing must be a finite number in \[0, 0.5\)"):
        parse_method("robust_dpo:label_smoothing=0.7")


def test_config_from_command_line():
    from tdpo.commands.imdb import build_parser, config_from_args

    ns = build_parser().parse_args(
        ["train", "--out", "x", "--methods", "dpo:beta=0.2", "tdpo1", "--eval-every-steps", "none",
         "--corpus", "c.csv", "--lr", "3e-5"]
    )
    cfg = config_from_args(ns, "demo")
    assert cfg.out_dir == "x" and cfg.methods == ["dpo:beta=0.2", "tdpo1"] and cfg.eval_every_steps is None
    assert cfg.corpus == "c.csv" and cfg.lr == 3e-5
    assert cfg.train_prefixes == demo_config().train_prefixes  # from the demo preset
    with pytest.raises(ValueError, match="batch_size"):
        config_from_args(build_parser().parse_args(["run", "--batch-size", "6", "--micro-batch-size", "4"]), "default")


def _tiny(out, reviews_csv, tiny_lm_dir, **changes) -> ImdbConfig:
    base = dict(
        out_dir=str(out), model=str(tiny_lm_dir), corpus=str(reviews_csv), test_fraction=0.25,
        max_new_tokens=6, sample_batch_size=8, sft_examples=16, sft_steps=2, sft_batch_size=8,
        sft_max_length=24, train_prefixes=6, eval_pair_prefixes=2, samples_per_prefix=3,
        methods=["dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"], train_steps=8, batch_size=4,
        micro_batch_size=2, lr=1e-3, warmup_steps=1, eval_points=8, eval_prefixes=4, eval_samples=2,
        report_samples=2,
    )
    return ImdbConfig(**{**base, **changes})


@pytest.mark.slow
def test_pipeline_end_to_end_on_tiny_models(tmp_path, monkeypatch, reviews_csv, tiny_lm_dir, caplog, capsys):
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "exp"
    # a pre-registered contrast over a window every run covers (each moves off the SFT model at step 1), and
    # Figure 3 on one held-out pair per prefix
    cfg = _tiny(out, reviews_csv, tiny_lm_dir, primary_contrast=["tdpo2:beta=0.1,alpha=0.5", "dpo:beta=0.1"],
                primary_kl_window=[0.0, 1e-6], eval_pair_prefixes=3, eval_pairs_per_prefix=1)
    with caplog.at_level(logging.INFO, logger="tdpo"):
        report = run_pipeline(cfg, command="test")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("tdpo.experiments.imdb")]
    assert "tdpo imdb: --- SFT ---" in messages and any(m.startswith("where the time went:") for m in messages)
    assert any("estimated time (uncalibrated)" in m for m in messages)
    assert any(m.startswith("tdpo imdb: DPO (beta=0.1) step 4/8: reward") for m in messages)
    assert capsys.readouterr().out == ""  # the library logs; the commands print the summary
    printed = results_summary(cfg, report).splitlines()
    assert printed[0].startswith("primary (pre-registered): TDPO2 (beta=0.1, alpha=0.5) minus DPO (beta=0.1)")
    printed = printed[1:]
    assert printed[-1] == f"report: {report}" and printed[0].startswith("SFT ") and "reverse KL" in printed[1]
    assert any(line.startswith("exploratory: TDPO2 (beta=0.1, alpha=0.5) vs DPO (beta=0.1) at reverse KL")
               for line in printed)
    text = report.read_text()
    assert "| SFT |" in text and "DPO (beta=0.1)" in text and "TDPO2 (beta=0.1, alpha=0.5)" in text
    assert "## Where the time went" in text and "## Sample completions" in text
    assert "## Exploratory comparisons: reward at matched reverse KL" in text
    assert "From the Holm-adjusted verdicts only (exploratory):" in text
    assert text.index("## Primary contrast (pre-registered)") < text.index("## Results at the end of training")
    for png in ("frontier.png", "kl_over_training.png", "kl_gap_over_training.png"):
        assert (out / "plots" / png).stat().st_size > 1000
        assert f"plots/{png}" in text

    pairs = [json.loads(line) for line in (out / "data" / "pairs.jsonl").read_text().splitlines()]
    assert 0 < len(pairs) <= 6 * 3
    assert all(p["chosen_score"] > p["rejected_score"] for p in pairs)

    # step 0 (the SFT model, once for every run) and every eighth of each run's training
    assert sorted(f.name for f in (out / "eval").iterdir() if f.is_dir()) == ["dpo_beta0.1", "sft",
                                                                      "tdpo2_beta0.1_alpha0.5"]
    assert [f.name for f in (out / "eval" / "sft").iterdir()] == ["step-000000.json"]
    for name in ("dpo_beta0.1", "tdpo2_beta0.1_alpha0.5"):
        assert sorted(f.name for f in (out / "eval" / name).iterdir()) == [f"step-{s:06d}.json" for s in range(1, 9)]
    results = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["sft", "dpo_beta0.1", "tdpo2_beta0.1_alpha0.5"]
    sft = results["models"][0]
    assert sft["reverse_kl"] == sft["forward_kl"] == sft["log_ratio"] == 0.0
    assert all(m["reverse_kl"] > 0 and m["step"] == 8 for m in results["models"][1:])  # trained policies moved
    assert [[p["step"] for p in c["points"]] for c in results["curves"]] == [list(range(9))] * 2
    assert [len(c["ranges"]) for c in results["exploratory"]["comparisons"]] == [3]
    primary = results["primary"]
    assert primary["runs_a"] == ["tdpo2_beta0.1_alpha0.5"] and primary["runs_b"] == ["dpo_beta0.1"]
    assert primary["verdict"] in ("above", "below", "no difference at this scale") and primary["se"] >= 0
    held_out = [json.loads(line) for line in (out / "data" / "pairs_eval.jsonl").read_text().splitlines()]
    assert 0 < len(held_out) == len({p["prompt"] for p in held_out}) <= 3  # one pair per held-out prefix
    # the token-level view of the held-out pairs under both runs, linked from the report
    view = (out / "inspect.html").read_text(encoding="utf-8")
    view = json.loads(view.split('id="tdpo-data">', 1)[1].split("</script>", 1)[0])
    assert view["models"] == ["DPO (beta=0.1)", "TDPO2 (beta=0.1, alpha=0.5)"] and len(view["items"]) == len(held_out)
    assert "[inspect.html](inspect.html)" in text
    assert {f["name"] for f in results["figure3"]} == {"dpo_beta0.1", "tdpo2_beta0.1_alpha0.5"}
    assert all(p["gap_se"] is not None and p["prompts"] == len(held_out) for f in results["figure3"]
               for p in f["points"] if p["step"] > 0)

    # rewards in the evaluation files are the classifier's scores of prefix + completion
    from tdpo.experiments.imdb.corpus import load_splits
    from tdpo.experiments.imdb.sentiment import builtin_reward_model

    reward = builtin_reward_model(load_splits(reviews_csv, 0.25), verbose=False)
    samples = json.loads((out / "eval" / "dpo_beta0.1" / "step-000008.json").read_text())["samples"]
    assert len(samples) == 4 * 2
    expected = reward.score([s["prompt"] + s["completion"] for s in samples]).tolist()
    assert [s["reward"] for s in samples] == pytest.approx(expected, abs=1e-6)
    assert results["models"][1]["reward"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)

    for name in ("dpo_beta0.1", "tdpo2_beta0.1_alpha0.5"):
        run = out / "runs" / name
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert any(r["split"] == "eval" and r.get("kl/chosen") is not None for r in rows)
        assert (run / "final").is_dir() and not (run / "checkpoints").exists()
    assert "runs/*/final/" in (out / ".gitignore").read_text()
    timings = json.loads((out / "timings.json").read_text())
    assert timings["total"] >= timings["SFT"] > 0 and timings["curve evaluation"] > 0
    assert timings["token-level view"] > 0

    # the report step alone, through the command
    from tdpo.commands.imdb import main

    (out / "report.md").unlink()
    assert main(["report", "--out", str(out), "--methods", "dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"]) == 0
    assert (out / "report.md").is_file()


class Interrupted(Exception):
    """Stands for Ctrl-C or a crash in the middle of a run."""


@pytest.mark.slow
def test_an_interrupted_frontier_resumes_without_redoing_finished_work(tmp_path, monkeypatch, reviews_csv,
                                                                      tiny_lm_dir, caplog):
    from tdpo.experiments.imdb import curves, steps

    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "exp"
    cfg = _tiny(out, reviews_csv, tiny_lm_dir, train_steps=4, eval_points=4)
    evaluations, trained = [], []
    evaluate_policy, train_method = curves.evaluate_policy, steps.train_method

    def evaluate_or_stop(*args, **kwargs):
        if len(evaluations) == 6:  # SFT, DPO's 4 points and TDPO2's first are saved
            raise Interrupted
        evaluations.append(kwargs["desc"])
        return evaluate_policy(*args, **kwargs)

    def train_counted(cfg, method, **kwargs):
        trained.append(method.name)
        return train_method(cfg, method, **kwargs)

    monkeypatch.setattr(curves, "evaluate_policy", evaluate_or_stop)
    monkeypatch.setattr(steps, "train_method", train_counted)
    with pytest.raises(Interrupted):
        run_pipeline(cfg, command="test")
    assert trained == ["dpo_beta0.1", "tdpo2_beta0.1_alpha0.5"] and not (out / "results.json").exists()
    saved = {f: f.stat().st_mtime_ns for f in (out / "eval").rglob("step-*.json")}
    assert len(saved) == 6
    kept = {f: f.stat().st_mtime_ns for f in (out / "data" / "pairs.jsonl", out / "runs" / "sft" / "final",
                                             out / "runs" / "dpo_beta0.1" / "metrics.jsonl")}

    # the pairs are kept for these settings only
    assert steps.saved_pairs(cfg)["settings"] == json.loads(json.dumps(cfg.pair_settings()))
    assert steps.saved_pairs(make_config(cfg, max_new_tokens=cfg.max_new_tokens + 1)) is None

    evaluations.clear(), trained.clear()
    monkeypatch.setattr(curves, "evaluate_policy", lambda *a, **k: evaluations.append(k["desc"]) or evaluate_policy(
        *a, **k))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tdpo"):
        report = run_pipeline(cfg, command="test")
    # the first estimate leaves out what is done: the SFT model and the pairs
    estimate_line = next(r.getMessage() for r in caplog.records if "estimated time (uncalibrated)" in r.getMessage())
    assert "1 to train" in estimate_line and "preference pairs" not in estimate_line and "SFT" not in estimate_line
    assert trained == ["tdpo2_beta0.1_alpha0.5"]  # DPO finished: not trained again
    assert evaluations == [f"evaluating TDPO2 (beta=0.1, alpha=0.5) at step {s}" for s in (2, 3, 4)]
    assert {f: f.stat().st_mtime_ns for f in saved} == saved  # saved points are not written again
    assert {f: f.stat().st_mtime_ns for f in kept} == kept  # nor the pairs, the SFT model or DPO's run
    results = json.loads((out / "results.json").read_text())
    assert [[p["step"] for p in c["points"]] for c in results["curves"]] == [[0, 1, 2, 3, 4]] * 2
    assert report.is_file()
    # timings.json adds up both invocations, the interrupted TDPO2 run's time included
    ledger = [json.loads(line) for line in (out / "timings_ledger.jsonl").read_text().splitlines()]
    first, second = sorted({r["invocation"] for r in ledger}, key=[r["invocation"] for r in ledger].index)
    steps_of = {inv: [r["step"] for r in ledger if r["invocation"] == inv] for inv in (first, second)}
    assert steps_of[first][0] == "reward classifier" and steps_of[first][-1] == "total"
    assert "train TDPO2 (beta=0.1, alpha=0.5)" in steps_of[first] and "SFT" in steps_of[first]
    totals = {inv: next(r["seconds"] for r in ledger if r["invocation"] == inv and r["step"] == "total")
              for inv in (first, second)}
    timings = json.loads((out / "timings.json").read_text())
    assert timings["total"] >= totals[first] + sum(r["seconds"] for r in ledger
                                                   if r["invocation"] == second and r["step"] != "total")
    assert timings["SFT"] == pytest.approx(sum(r["seconds"] for r in ledger if r["step"] == "SFT"))

    # once finished, a rerun evaluates and trains nothing
    evaluations.clear()
    run_pipeline(cfg, command="test")
    assert evaluations == [] and trained == ["tdpo2_beta0.1_alpha0.5"]


@pytest.mark.slow
def test_the_dpo_papers_baselines_train_and_are_evaluated_as_curves(tmp_path, monkeypatch, reviews_csv,
                                                                    tiny_lm_dir):
    """Preferred-FT (sft on the pairs' chosen responses) and unlikelihood run through the whole pipeline
    like DPO: curve points, results.json, the matched-KL comparison against DPO and the report."""
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "exp"
    cfg = _tiny(out, reviews_csv, tiny_lm_dir, methods=["dpo:beta=0.1", "preferred_ft", "unlikelihood:alpha=0.1"],
                train_steps=4, eval_points=2)
    report = run_pipeline(cfg, command="test")
    names = ["dpo_beta0.1", "preferred_ft", "unlikelihood_alpha0.1"]
    assert sorted(f.name for f in (out / "eval").iterdir() if f.is_dir()) == sorted(["sft", *names])
    results = json.loads((out / "results.json").read_text())
    assert [c["name"] for c in results["curves"]] == names
    assert [[p["step"] for p in c["points"]] for c in results["curves"]] == [[0, 2, 4]] * 3
    assert all(m["reverse_kl"] > 0 for m in results["models"][1:])  # every trained policy moved
    assert [(c["a"], c["b"]) for c in results["exploratory"]["comparisons"]] == [
        ("Preferred-FT", "DPO (beta=0.1)"), ("Unlikelihood (alpha=0.1)", "DPO (beta=0.1)")]
    text = report.read_text()
    assert "Preferred-FT" in text and "Unlikelihood (alpha=0.1)" in text

    pairs = [json.loads(line) for line in (out / "data" / "pairs.jsonl").read_text().splitlines()]
    ft_rows = [json.loads(line) for line in (out / "runs" / "preferred_ft" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in ft_rows if r["split"] == "train"]
    assert len(train_rows) == 4 and all("nll_per_token" in r for r in train_rows)  # the sft loss
    config = (out / "runs" / "preferred_ft" / "config.yaml").read_text()
    assert "name: sft" in config and "pairs.jsonl" in config
    report_rows = json.loads((out / "runs" / "preferred_ft" / "data_report.json").read_text())
    assert report_rows["num_train"] == len(pairs)  # one SFT example (prompt + chosen) per pair
    ul_rows = [json.loads(line) for line in
               (out / "runs" / "unlikelihood_alpha0.1" / "metrics.jsonl").read_text().splitlines()]
    assert all("log_complement/rejected" in r for r in ul_rows if r["split"] == "train")


@pytest.mark.slow
def test_listed_curve_points_and_one_training_pair_per_prefix(tmp_path, monkeypatch, reviews_csv, tiny_lm_dir):
    """The frontier's and the demo's own settings on tiny models: curve points at listed steps, the clearest
    training pair of each prefix, no reference-state table, checkpoints every 4 steps."""
    monkeypatch.setenv("TDPO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "exp"
    cfg = _tiny(out, reviews_csv, tiny_lm_dir, methods=["dpo:beta=0.1"], eval_at_steps=[2, 3, 8],
                train_prefixes=16, train_pairs_per_prefix=1, batch_size=2, cache_reference_states=False,
                checkpoint_every_steps=4)
    run_pipeline(cfg, command="test")
    assert sorted(f.name for f in (out / "eval" / "dpo_beta0.1").iterdir()) == [
        "step-000002.json", "step-000003.json", "step-000008.json"]
    pairs = [json.loads(line) for line in (out / "data" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == len({p["prompt"] for p in pairs}) <= cfg.train_prefixes  # one pair per prefix
    for prompt in {p["prompt"] for p in pairs}:  # the kept pair is the prefix's best against its worst
        (pair,) = [p for p in pairs if p["prompt"] == prompt]
        assert pair["chosen_score"] > pair["rejected_score"]
    results = json.loads((out / "results.json").read_text())
    assert [p["step"] for p in results["curves"][0]["points"]] == [0, 2, 3, 8]
    assert not (tmp_path / "cache" / "reference_states").exists()  # no table without cache_reference_states
