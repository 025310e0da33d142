"""Tests of tdpo.training (the Trainer) on a tiny random Llama and a handful of local pairs: every method learns,
chunked == full, resume == uninterrupted, DDP with 2 CPU processes == one process, checkpoints load
in plain transformers, NaN stops the run, Ctrl-C saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tdpo.training import TrainingDivergedError, train
from tdpo.training import batch as batch_module
from tdpo.training import checkpoint as ckpt
from tdpo.training.tracking import MetricsLogger, read_metrics
from tests.train_fixtures import final_parameters, make_model_dir, single_thread, tiny_config, training_data  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("trainer") / "tiny", seed=0)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


PREFERENCE_METHODS = ["dpo", "cdpo", "ipo", "dpo_reference_free", "tdpo1", "tdpo2", "fdpo_fkl"]


@pytest.mark.parametrize("method", PREFERENCE_METHODS)
def test_each_preference_method_learns_the_training_pairs(method, model_dir, tmp_path):
    extra = ["loss.label_smoothing=0.1"] if method == "cdpo" else []
    cfg = tiny_config(model_dir, tmp_path, f"loss.name={method}", "schedule.max_steps=16", "eval.at_start=true",
                      "optim.micro_batch_size=4", *extra)
    run = train(cfg, data=training_data(8))  # eval split = the training pairs
    evals = read_metrics(run, "eval")
    assert [r["step"] for r in evals] == [0, 16]
    start, end = evals[0], evals[-1]
    assert end["rewards/accuracies"] == 1.0
    assert end["loss"] < start["loss"]
    train_rows = read_metrics(run, "train")
    assert len(train_rows) == 16
    if method in ("tdpo1", "tdpo2"):
        assert start["kl/chosen"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at the start
        assert end["kl/chosen"] > 0 and end["kl/rejected"] > 0
        assert {"kl/chosen", "kl/rejected", "kl/margin", "tdpo_rewards/accuracies"} <= train_rows[-1].keys()


def test_unlikelihood_run_raises_the_chosen_and_lowers_the_rejected_log_probs(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=unlikelihood", "loss.alpha=0.5", "schedule.max_steps=12",
                      "eval.at_start=true", "optim.micro_batch_size=4")
    run = train(cfg, data=training_data(8))  # no reference model is needed or loaded
    start, end = read_metrics(run, "eval")
    assert end["loss"] < start["loss"]
    assert end["logps/chosen"] > start["logps/chosen"]
    assert end["logps/rejected"] < start["logps/rejected"]
    # not necessarily higher: every response ends with EOS, which the chosen NLL makes likelier
    assert start["log_complement/rejected"] < 0 and end["log_complement/rejected"] < 0
    assert "kl/chosen" not in end


def test_sft_stage_lowers_the_nll(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "loss.name=sft", "schedule.max_steps=10", "eval.at_start=true")
    run = train(cfg, data=training_data(8, sft=True))
    start, end = read_metrics(run, "eval")
    assert end["nll_per_token"] < 0.8 * start["nll_per_token"]


@pytest.mark.parametrize("lora", [False, True])
def test_chunked_and_full_paths_train_to_the_same_parameters(lora, model_dir, tmp_path):
    # LoRA's A matrices get exactly zero gradients on the first step (B starts at zero), where float
    # noise differs between the paths and Adam would blow it up to lr-sized steps: a larger eps damps it.
    extra = ["lora.enabled=true", "lora.r=4", "optim.lr=0.05", "optim.eps=1e-3"] if lora else []
    runs = {}
    for path in ("chunked", "full"):
        cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", f"loss.token_stats={path}", f"run_name={path}",
                          "schedule.max_steps=3", *extra)
        runs[path] = train(cfg, data=training_data(8))
    assert _max_diff(final_parameters(runs["chunked"]), final_parameters(runs["full"])) < 1e-5
    a, b = read_metrics(runs["chunked"], "train"), read_metrics(runs["full"], "train")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)


@pytest.mark.parametrize("loss", ["tdpo2", "sft"])
def test_padding_free_and_padded_runs_train_to_the_same_parameters(loss, model_dir, tmp_path):
    runs = {}
    for padding_free in ("true", "false"):
        cfg = tiny_config(model_dir, tmp_path, f"loss.name={loss}", f"data.padding_free={padding_free}",
                          f"run_name=packed-{padding_free}", "schedule.max_steps=3", "optim.micro_batch_size=4")
        runs[padding_free] = train(cfg, data=training_data(8, sft=loss == "sft"))
    assert _max_diff(final_parameters(runs["true"]), final_parameters(runs["false"])) < 1e-5
    a, b = read_metrics(runs["true"], "train"), read_metrics(runs["false"], "train")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)


@pytest.mark.slow
def test_compiled_model_trains_to_the_parameters_of_the_eager_one(model_dir, tmp_path):
    runs = {}
    for compiled in ("true", "false"):
        cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", f"model.compile={compiled}",
                          f"run_name=compile-{compiled}", "schedule.max_steps=2", "optim.micro_batch_size=4")
        runs[compiled] = train(cfg, data=training_data(4, eval_on_train=False))
    assert _max_diff(final_parameters(runs["true"]), final_parameters(runs["false"])) < 1e-5


def test_gradient_accumulation_equals_one_big_batch(model_dir, tmp_path):
    runs = {}
    for micro in (1, 4):
        cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", f"optim.micro_batch_size={micro}",
                          f"run_name=m{micro}", "schedule.max_steps=3", "optim.name=rmsprop", "optim.lr=1e-3")
        runs[micro] = train(cfg, data=training_data(8))
    assert _max_diff(final_parameters(runs[1]), final_parameters(runs[4])) < 1e-5


def _interrupt_at(monkeypatch, at_step: int) -> None:
    """Send ourselves SIGINT (Ctrl-C) when the train row of ``at_step`` is logged."""
    original = MetricsLogger.log

    def log(self, split, step, metrics, **extra):
        row = original(self, split, step, metrics, **extra)
        if split == "train" and step == at_step:
            os.kill(os.getpid(), signal.SIGINT)
        return row

    monkeypatch.setattr(MetricsLogger, "log", log)


@pytest.mark.parametrize("variant", ["full_model", "lora_with_dropout"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(variant, model_dir, tmp_path, monkeypatch):
    extra = ["lora.enabled=true", "lora.r=4", "lora.dropout=0.2", "optim.lr=0.05"] if variant != "full_model" else []
    common = ["loss.name=tdpo2", "schedule.max_steps=6", "schedule.warmup_steps=2", "optim.name=rmsprop",
              "optim.lr=1e-3", *extra]
    straight = train(tiny_config(model_dir, tmp_path, *common, "run_name=straight"), data=training_data(12))

    cfg = tiny_config(model_dir, tmp_path, *common, "run_name=stopped")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 3)
        run = train(cfg, data=training_data(12))
    assert not (run / "final").exists()
    saved = ckpt.latest_checkpoint(run)
    assert saved is not None and saved.name == "step-000003"
    assert ckpt.read_state(saved)["step"] == 3
    assert [r["step"] for r in read_metrics(run, "train")] == [1, 2, 3]

    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, data=training_data(12))
    resumed = train(cfg, resume=True, data=training_data(12))
    assert _max_diff(final_parameters(straight), final_parameters(resumed)) < 1e-6
    a, b = read_metrics(straight, "train"), read_metrics(resumed, "train")
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(model_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = batch_module.evaluate_loss

    def poisoned(*args, **kwargs):
        loss, metrics = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # one micro-batch per step: step 3
            loss = loss * float("nan")
            metrics = dict(metrics, loss=loss.detach())
        return loss, metrics

    monkeypatch.setattr(batch_module, "evaluate_loss", poisoned)
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "optim.micro_batch_size=4", "schedule.max_steps=6",
                      "checkpoint.every_steps=2")
    with pytest.raises(TrainingDivergedError) as err:
        train(cfg, data=training_data(8))
    message = str(err.value)
    assert "nan" in message and "step 3" in message and "step-000002" in message
    run = cfg.run_dir()
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-000002"]
    assert not (run / "final").exists()


def test_checkpoints_load_in_plain_transformers_and_generate(model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", "schedule.max_steps=5", "checkpoint.every_steps=1",
                      "checkpoint.keep_last=2")
    run = train(cfg, data=training_data(8))
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-000004", "step-000005"]
    assert not list((run / ckpt.CHECKPOINTS).glob(".tmp-*"))
    for folder in (run / "final", run / "checkpoints" / "step-000005"):
        assert (folder / "model.safetensors").is_file()
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        prompt = tokenizer("<s> w1 w2 w3", return_tensors="pt", add_special_tokens=False)
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert out.shape == (1, prompt["input_ids"].shape[1] + 4)
    assert _max_diff(final_parameters(run), {k: v for k, v in AutoModelForCausalLM.from_pretrained(
        run / "checkpoints" / "step-000005").state_dict().items()}) == 0.0
    initial = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    assert _max_diff(final_parameters(run), initial) > 0  # it trained
    assert (run / "config.yaml").is_file() and "dpo" in (run / "config.yaml").read_text()


def test_lora_final_is_merged_and_loads_without_peft_code(model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(model_dir, tmp_path, "loss.name=tdpo2", "lora.enabled=true", "lora.r=4", "optim.lr=0.05",
                      "schedule.max_steps=3")
    run = train(cfg, data=training_data(8))
    merged = AutoModelForCausalLM.from_pretrained(run / "final")
    assert not any("lora" in k for k in merged.state_dict())
    assert (run / "final" / "adapter" / "adapter_config.json").is_file()
    initial = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    assert _max_diff(merged.state_dict(), initial) > 0


def test_length_grouping_needs_lengths(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "data.group_by_length=true")
    with pytest.raises(ValueError, match="data.group_by_length needs a 'length'"):
        train(cfg, data=training_data(8))


def test_batch_sizes_that_do_not_fit_are_rejected(model_dir, tmp_path):
    cfg = tiny_config(model_dir, tmp_path, "optim.batch_size=16", "optim.micro_batch_size=4")
    with pytest.raises(ValueError, match="fewer than optim.batch_size"):
        train(cfg, data=training_data(8))


ROOT = Path(__file__).resolve().parents[2]

TWO_PROCESS_LAUNCHERS = {
    # what the README tells users: accelerate's torchrun launcher, chosen by the config
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(ROOT / "configs" / "accelerate" / "ddp_cpu.yaml"), "--main_process_port", "0"],
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
}


def run_two_processes(launcher: str, worker_args: list[str], report: Path) -> subprocess.CompletedProcess:
    """``train_ddp_worker.py`` under ``launcher`` for 2 processes; checks that both ran, as ranks 0 and 1
    of a world of 2 (each writes what accelerate told it into ``report``)."""
    report.mkdir()
    worker = Path(__file__).parent / "train_ddp_worker.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("ACCELERATE_USE_CPU", None)  # what the launcher does alone
    cmd = [*TWO_PROCESS_LAUNCHERS[launcher], str(worker), worker_args[0], worker_args[1], worker_args[2], "2",
           str(report), *worker_args[3:]]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = {p.name: json.loads(p.read_text()) for p in report.glob("world-*.json")}
    assert sorted(seen) == ["world-0.json", "world-1.json"], done.stderr[-3000:]
    for rank in (0, 1):
        got = seen[f"world-{rank}.json"]
        assert (got["num_processes"], got["process_index"], got["distributed_type"]) == (2, rank, "MULTI_CPU")
    assert seen["world-0.json"]["pid"] != seen["world-1.json"]["pid"]
    assert "(2 processes, DDP)" in done.stderr  # the start line
    return done


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "launcher"), [("tdpo2", "accelerate"), ("dpo_cached", "torchrun")])
def test_ddp_two_cpu_processes_equal_one_process(variant, launcher, model_dir, tmp_path):
    extra = ["loss.name=tdpo2"] if variant == "tdpo2" else ["loss.name=dpo", "reference.cache_logps=true",
                                                             f"reference.cache_dir={tmp_path / 'cache'}"]
    common = [*extra, "schedule.max_steps=3", "optim.batch_size=4"]
    one = train(tiny_config(model_dir, tmp_path, *common, "optim.micro_batch_size=2", "run_name=one"),
                data=training_data(9))
    run_two_processes(launcher, [str(model_dir), str(tmp_path), "9", *common, "optim.micro_batch_size=1",
                                 "run_name=two", f"reference.cache_dir={tmp_path / 'cache2'}"], tmp_path / "ranks")
    two = tmp_path / "two"
    # padding-free rows: one process packs micro-batches of 2 pairs, each of two processes packs 1 pair,
    # so every product has other shapes and rounds differently (1.2e-5 measured after 3 AdamW steps)
    assert _max_diff(final_parameters(one), final_parameters(two)) < 5e-5
    a, b = read_metrics(one, "train"), read_metrics(two, "train")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    assert read_metrics(one, "eval")[-1]["loss"] == pytest.approx(read_metrics(two, "eval")[-1]["loss"], rel=1e-5)
    if variant == "tdpo2":  # the clustered s.e. of the KL means from the pairs of both processes (5 and 4)
        end_one, end_two = read_metrics(one, "eval")[-1], read_metrics(two, "eval")[-1]
        assert end_one["kl/prompts"] == end_two["kl/prompts"] == 9.0
        assert end_one["kl/margin_se"] == pytest.approx(end_two["kl/margin_se"], rel=1e-3) and end_one["kl/margin_se"] > 0


def test_a_separate_reference_model_is_used_frozen(model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    other = make_model_dir(tmp_path / "other", seed=7)
    cfg = tiny_config(model_dir, tmp_path, "loss.name=dpo", f"reference.name_or_path={other}", "eval.at_start=true",
                      "schedule.max_steps=2")
    data = training_data(8)
    run = train(cfg, data=data)
    start, end = read_metrics(run, "eval")
    reference = AutoModelForCausalLM.from_pretrained(other)
    expected = []  # independent: the other model's summed log-probs of each chosen response
    with torch.no_grad():
        for pair in data.train:
            ids = torch.tensor([[1] + pair["prompt"] + pair["chosen"] + [2]])
            logp = torch.log_softmax(reference(input_ids=ids).logits.double()[0], dim=-1)
            first = 1 + len(pair["prompt"])
            expected.append(float(logp[torch.arange(first - 1, ids.shape[1] - 1), ids[0, first:]].sum()))
    mean = sum(expected) / len(expected)
    assert start["logps_ref/chosen"] == pytest.approx(mean, rel=1e-5)
    assert end["logps_ref/chosen"] == pytest.approx(mean, rel=1e-5)  # frozen while the policy trains
    assert start["rewards/chosen"] != 0.0  # policy != reference from the start
