"""Shared helpers of the training-engine tests: a tiny random Llama with a small word-level
tokenizer saved to a folder, a handful of random preference pairs, and a collator written here
(independently of :mod:`tdpo.data`) that produces the preference-batch contract."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tdpo.config import TrainConfig, load_config
from tests.tiny_models import tiny_llama_config

VOCAB = 48
IGNORE = -100


def make_tokenizer(folder: Path):
    """A word-level tokenizer over ``w0 .. w{VOCAB-4}`` plus pad/bos/eos/unk."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + [f"w{i}" for i in range(VOCAB - len(specials))])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    tok.save_pretrained(folder)
    return tok


def make_model_dir(folder: Path, *, seed: int = 0, tie: bool = False) -> Path:
    """Save a tiny random LlamaForCausalLM and its tokenizer into ``folder``."""
    from transformers import LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = tiny_llama_config(VOCAB, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=tie)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    make_tokenizer(folder)
    return folder


def make_pairs(n: int, *, seed: int = 0, prompt_len=(2, 5), response_len=(1, 4)) -> list[dict]:
    """``n`` random pairs of token ids (chosen differs from rejected), with their dataset index."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt = [rng.randrange(4, VOCAB) for _ in range(rng.randint(*prompt_len))]
        chosen = [rng.randrange(4, VOCAB) for _ in range(rng.randint(*response_len))]
        rejected = list(chosen)
        while rejected == chosen:
            rejected = [rng.randrange(4, VOCAB) for _ in range(rng.randint(*response_len))]
        pairs.append({"index": i, "prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs


def _rows(prompt: list[int], response: list[int]) -> tuple[list[int], list[int]]:
    ids = [1] + prompt + response + [2]
    labels = [IGNORE] * (1 + len(prompt)) + response + [2]
    return ids, labels


def _pad(rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, (ids, lab) in enumerate(rows):
        input_ids[r, :len(ids)] = torch.tensor(ids)
        attention[r, :len(ids)] = 1
        labels[r, :len(lab)] = torch.tensor(lab)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def collate_pairs(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Preference batch: ``[2B, T]`` rows, chosen first, right-padded, prompt/pad labels -100."""
    rows = [_rows(e["prompt"], e["chosen"]) for e in examples] + [_rows(e["prompt"], e["rejected"]) for e in examples]
    batch = _pad(rows)
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    return batch


def collate_sft(examples: list[dict]) -> dict[str, torch.Tensor]:
    """SFT batch of the chosen responses: ``[B, T]``."""
    batch = _pad([_rows(e["prompt"], e["chosen"]) for e in examples])
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    return batch


def tiny_config(model_dir: Path, out_dir: Path, *overrides: str) -> TrainConfig:
    """A fast config on the tiny model: AdamW, no warm-up, no TensorBoard, no progress bar."""
    base = [
        f"model.name_or_path={model_dir}",
        f"output_dir={out_dir}",
        "optim.name=adamw", "optim.lr=0.01", "optim.batch_size=4", "optim.micro_batch_size=2",
        "schedule.warmup_steps=0", "schedule.max_steps=4",
        "eval.every_examples=null", "logging.tensorboard=false", "logging.progress_bar=false",
        "loss.chunk_size=5",
    ]
    return load_config(None, base + list(overrides))


def training_data(n: int = 8, *, seed: int = 0, sft: bool = False, eval_on_train: bool = True):
    from tdpo.training import TrainingData

    pairs = make_pairs(n, seed=seed)
    return TrainingData(train=pairs, eval=pairs if eval_on_train else None,
                        collate=collate_sft if sft else collate_pairs)


def final_parameters(run_dir: Path) -> dict[str, torch.Tensor]:
    """The saved final policy's parameters (loaded with plain transformers)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def single_thread():
    """Run torch on one thread: tiny models on a shared 2-core machine are many times faster so."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class OneProcess:
    """The few accelerator attributes the reference caches use, for a single process."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    device = torch.device("cpu")
    distributed_type = "NO"

    def wait_for_everyone(self) -> None:
        pass


def loss_metrics_grads(cfg, models, wrapper, batch, cache) -> tuple[torch.Tensor, dict, dict[str, torch.Tensor]]:
    """``batch_loss`` of one batch and its backward: the loss, the metrics and every parameter's gradient."""
    from tdpo.training import batch_loss

    wrapper.zero_grad()
    loss, metrics = batch_loss(cfg, models, batch, cache)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in wrapper.named_parameters() if p.grad is not None}
    return loss.detach(), metrics, grads


def assert_same_step(live, cached, metric_names) -> None:
    """Two ``loss_metrics_grads`` results agree: loss and metrics to rtol 1e-5, gradients to 1e-4."""
    (l1, m1, g1), (l2, m2, g2) = live, cached
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
    for name in metric_names:
        torch.testing.assert_close(m1[name], m2[name], rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys() and g1
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-7)


def train_live_and_cached(model_dir: Path, tmp_path: Path, loss: str, switch: str, steps: int = 3) -> dict[bool, Path]:
    """Two ``steps``-step runs of ``loss`` on 8 pairs, ``reference.<switch>`` off and on (the cache in
    ``tmp_path / "cache"``); returns ``{False: live run folder, True: cached run folder}``."""
    from tdpo.training import train

    runs = {}
    for cached in (False, True):
        cfg = tiny_config(model_dir, tmp_path, f"loss.name={loss}", f"reference.{switch}={str(cached).lower()}",
                          f"reference.cache_dir={tmp_path / 'cache'}", f"run_name=cached{int(cached)}",
                          f"schedule.max_steps={steps}")
        runs[cached] = train(cfg, data=training_data(8))
    return runs


def assert_same_training(runs: dict[bool, Path]) -> tuple[list[dict], list[dict]]:
    """The live and cached runs of :func:`train_live_and_cached` logged the same losses (rel 1e-5) and
    saved the same final parameters (1e-5); returns both runs' metrics rows."""
    from tdpo.training.tracking import read_metrics

    a, b = read_metrics(runs[False]), read_metrics(runs[True])
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    pa, pb = final_parameters(runs[False]), final_parameters(runs[True])
    assert max(float((pa[k] - pb[k]).abs().max()) for k in pa) < 1e-5
    return a, b


def call_at_train_step(monkeypatch, at_step: int, action) -> None:
    """Make the trainer call ``action(run_dir)`` right after it logs the train row of ``at_step``."""
    from tdpo.training.tracking import MetricsLogger

    original = MetricsLogger.log

    def log(self, split, step, metrics, **extra):
        row = original(self, split, step, metrics, **extra)
        if split == "train" and step == at_step:
            action(self.run_dir)
        return row

    monkeypatch.setattr(MetricsLogger, "log", log)
